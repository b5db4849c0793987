//! A real OpenID Provider for the sign-in tests: panva's certified `oidc-provider` (npm,
//! pinned in `tests/oidc/package-lock.json`, installed into `tests/oidc/` by
//! `.ci/install-deps`), run by `tests/oidc/provider.mjs` on loopback, port 0, behind a proxy
//! in this process. The issuer the app is given is the proxy's URL, so everything the app and
//! the browser send to the provider passes through it, and a test can:
//!
//! - take the provider down and bring it back ([`Idp::set_down`]);
//! - rewrite the token endpoint's next answer ([`Idp::rewrite_next_token_answer`]): a
//!   tampered ID token, or a validly signed one from another sign-in or for another client;
//!   or every JSON answer of a path, the discovery document's ([`Idp::rewrite_answers`]);
//! - answer the next key-set fetches with no keys ([`Idp::hide_keys`]), as a provider that
//!   rotated its key looks to a client holding the old set;
//! - read what passed ([`Idp::id_tokens`], [`Idp::hits`]).
//!
//! The provider knows two people: [`CAROL`] (groups `staff` and `burnlink-admins`) and
//! [`MALLORY`] (group `contractors`). Clients are registered after the app starts, when its
//! redirect URI is known ([`Idp::register`]). Without node or the installed package, [`start`]
//! prints `skipped: …` (a failure under `CI=true`).

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::http::StatusCode as ActixStatus;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::TestApp;
use crate::services::{skip, tool_installed};

/// A person the provider knows.
#[derive(Debug, Clone, Copy)]
pub struct IdpUser {
    /// Their login at the provider, and their `sub`.
    pub login: &'static str,
    pub password: &'static str,
    pub email: &'static str,
    pub preferred_username: &'static str,
    pub groups: &'static [&'static str],
}

pub const CAROL: IdpUser = IdpUser {
    login: "carol",
    password: "carol-password-1",
    email: "carol@example.org",
    preferred_username: "carol",
    groups: &["staff", "burnlink-admins"],
};

pub const MALLORY: IdpUser = IdpUser {
    login: "mallory",
    password: "mallory-password-1",
    email: "mallory@example.org",
    preferred_username: "mallory",
    groups: &["contractors"],
};

/// The client id the tests register the app as, and its secret.
pub const CLIENT_ID: &str = "burnlink";
pub const CLIENT_SECRET: &str = "burnlink-client-secret-0123456789";

/// Longest wait for the provider to say it listens.
const START: Duration = Duration::from_secs(30);

/// A change to JSON answers: for the next one only, or for every one until stopped.
enum Rewrite {
    Once(Box<dyn FnOnce(&mut Value) + Send>),
    Every(Arc<dyn Fn(&mut Value) + Send + Sync>),
}

/// What the proxy does and saw.
#[derive(Default)]
struct Control {
    down: AtomicBool,
    hidden_key_sets: AtomicUsize,
    /// By path: what successful JSON answers there go through.
    rewrites: Mutex<HashMap<String, Rewrite>>,
    id_tokens: Mutex<Vec<String>>,
    hits: Mutex<HashMap<String, usize>>,
}

/// The provider and its proxy, stopped when dropped.
pub struct Idp {
    /// The issuer: the proxy's URL.
    pub issuer: String,
    control: Arc<Control>,
    http: Client,
    upstream: String,
    _node: Child,
    proxy: actix_web::dev::ServerHandle,
    secrets: tempfile::TempDir,
}

impl Drop for Idp {
    fn drop(&mut self) {
        // Not awaited: the runtime ends with the test; the node process is killed on drop.
        drop(self.proxy.stop(false));
    }
}

fn oidc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc")
}

/// Starts the provider behind its proxy, or says why the test is skipped.
pub async fn start() -> Option<Idp> {
    if !tool_installed("oidc-provider") {
        skip("oidc-provider not installed in tests/oidc/node_modules (.ci/install-deps)");
        return None;
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("proxy binds");
    let issuer = format!("http://{}", listener.local_addr().expect("proxy address"));
    let users: Vec<Value> = [CAROL, MALLORY]
        .iter()
        .map(|u| {
            json!({
                "id": u.login,
                "password": u.password,
                "email": u.email,
                "preferred_username": u.preferred_username,
                "name": u.login,
                "groups": u.groups,
            })
        })
        .collect();
    let config = json!({ "issuer": issuer, "users": users }).to_string();
    let spawned = Command::new("node")
        .arg("provider.mjs")
        .arg(&config)
        .current_dir(oidc_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut node = match spawned {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            skip("node not installed");
            return None;
        }
        Err(e) => panic!("starting node: {e}"),
    };
    let mut stdout = BufReader::new(node.stdout.take().expect("piped")).lines();
    let mut stderr = BufReader::new(node.stderr.take().expect("piped")).lines();
    let upstream = tokio::time::timeout(START, async {
        while let Some(line) = stdout.next_line().await.expect("provider output") {
            if let Some(url) = line.strip_prefix("listening on ") {
                return url.trim().to_owned();
            }
        }
        let mut said = Vec::new();
        while let Ok(Some(line)) = stderr.next_line().await {
            said.push(line);
        }
        panic!("the provider exited: {}", said.join("\n"));
    })
    .await
    .expect("the provider says it listens in time");
    // Keep draining its output so it never blocks on a full pipe; its errors go to the
    // test's output.
    tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
    tokio::spawn(async move {
        while let Ok(Some(line)) = stderr.next_line().await {
            if !line.contains("Unsupported runtime") {
                eprintln!("oidc-provider: {line}");
            }
        }
    });

    let control = Arc::new(Control::default());
    let (shared, to) = (control.clone(), upstream.clone());
    let server = HttpServer::new(move || {
        // A client per worker: its connections live on the worker's runtime.
        let proxy = web::Data::new(Proxy {
            control: shared.clone(),
            http: no_redirects(),
            upstream: to.clone(),
        });
        App::new()
            .app_data(proxy)
            .app_data(web::PayloadConfig::new(1 << 20))
            .default_service(web::to(forward))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .expect("proxy listens")
    .run();
    let proxy = server.handle();
    tokio::spawn(server);
    Some(Idp {
        issuer,
        control,
        http: no_redirects(),
        upstream,
        _node: node,
        proxy,
        secrets: tempfile::tempdir().expect("temp dir"),
    })
}

fn no_redirects() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(crate::POOL_IDLE)
        .build()
        .expect("client builds")
}

struct Proxy {
    control: Arc<Control>,
    http: Client,
    upstream: String,
}

/// Headers that belong to one connection, not to the message (RFC 9110 section 7.6.1), and
/// the length, which the sender recomputes.
fn hop_by_hop(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "content-length"
    )
}

/// Passes a request to the provider, Host kept (its URLs then name the proxy), and its answer
/// back, through the test's hooks.
async fn forward(req: HttpRequest, body: web::Bytes, proxy: web::Data<Proxy>) -> HttpResponse {
    let control = &proxy.control;
    let path = req.path().to_owned();
    *control
        .hits
        .lock()
        .expect("not poisoned")
        .entry(path.clone())
        .or_default() += 1;
    if control.down.load(Ordering::SeqCst) {
        return HttpResponse::ServiceUnavailable().body("the provider is down (test)");
    }
    let target = format!(
        "{}{}",
        proxy.upstream,
        req.uri()
            .path_and_query()
            .map_or(path.as_str(), |p| p.as_str())
    );
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes()).expect("method");
    let mut outgoing = proxy.http.request(method, target).body(body.to_vec());
    for (name, value) in req.headers() {
        if !hop_by_hop(name.as_str()) {
            outgoing = outgoing.header(name.as_str(), value.as_bytes());
        }
    }
    let answer = match outgoing.send().await {
        Ok(answer) => answer,
        Err(e) => return HttpResponse::BadGateway().body(format!("proxy: {e}")),
    };
    let status = answer.status();
    let headers = answer.headers().clone();
    let mut bytes = answer.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
    if path == "/token" && status == StatusCode::OK {
        let json: Value = serde_json::from_slice(&bytes).expect("a JSON token answer");
        if let Some(id_token) = json["id_token"].as_str() {
            control
                .id_tokens
                .lock()
                .expect("not poisoned")
                .push(id_token.to_owned());
        }
    }
    let rewrite = match status {
        StatusCode::OK => {
            let mut rewrites = control.rewrites.lock().expect("not poisoned");
            match rewrites.remove(&path) {
                Some(Rewrite::Every(f)) => {
                    rewrites.insert(path.clone(), Rewrite::Every(f.clone()));
                    Some(Rewrite::Every(f))
                }
                other => other,
            }
        }
        _ => None,
    };
    if let Some(rewrite) = rewrite {
        let mut json: Value = serde_json::from_slice(&bytes).expect("a JSON answer");
        match rewrite {
            Rewrite::Once(f) => f(&mut json),
            Rewrite::Every(f) => f(&mut json),
        }
        bytes = json.to_string().into_bytes();
    }
    if path == "/jwks"
        && control
            .hidden_key_sets
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    {
        bytes = br#"{"keys":[]}"#.to_vec();
    }
    let mut response =
        HttpResponse::build(ActixStatus::from_u16(status.as_u16()).expect("a status"));
    for (name, value) in &headers {
        if !hop_by_hop(name.as_str()) {
            response.append_header((name.as_str(), value.as_bytes()));
        }
    }
    response.body(bytes)
}

impl Idp {
    /// Points `config` at this provider as client [`CLIENT_ID`]: the default scopes, only
    /// `staff` let in, `burnlink-admins` administrators, "Test IdP" on the login page.
    pub fn configure(&self, config: &mut app_server::Config) {
        self.configure_as(config, CLIENT_ID);
    }

    /// Like [`Idp::configure`], registered as `client_id` (with the same secret).
    pub fn configure_as(&self, config: &mut app_server::Config, client_id: &str) {
        let secret = self.secrets.path().join("client-secret");
        std::fs::write(&secret, format!("{CLIENT_SECRET}\n")).expect("write secret");
        let sign_in = &mut config.sign_in;
        sign_in.oidc_issuer = Some(self.issuer.clone());
        sign_in.oidc_client_id = Some(client_id.to_owned());
        sign_in.oidc_client_secret_file = Some(secret);
        sign_in.oidc_allowed_groups = vec!["staff".into()];
        sign_in.oidc_admin_groups = vec!["burnlink-admins".into()];
        sign_in.oidc_name = Some("Test IdP".into());
    }

    /// Registers `app` at the provider as `client_id`: its redirect URI, its page as the place
    /// to come back to after a logout, PKCE required (the provider's setting for all).
    pub async fn register(&self, app: &TestApp, client_id: &str) {
        let client = json!({
            "client_id": client_id,
            "client_secret": CLIENT_SECRET,
            "redirect_uris": [format!("{}/oidc/callback", app.app_url)],
            "post_logout_redirect_uris": [format!("{}/", app.app_url)],
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_basic",
        });
        let res = self
            .http
            .post(format!("{}/test/clients", self.upstream))
            .json(&client)
            .send()
            .await
            .expect("register a client");
        assert_eq!(res.status(), StatusCode::NO_CONTENT, "client registered");
    }

    /// Every request the proxy gets is answered 503 (`true`), or passed on again.
    pub fn set_down(&self, down: bool) {
        self.control.down.store(down, Ordering::SeqCst);
    }

    /// The token endpoint's next successful answer, as JSON, goes through `rewrite` first.
    pub fn rewrite_next_token_answer(&self, rewrite: impl FnOnce(&mut Value) + Send + 'static) {
        self.set_rewrite("/token", Some(Rewrite::Once(Box::new(rewrite))));
    }

    /// Every successful JSON answer for `path` goes through `rewrite` first, until
    /// [`Idp::stop_rewriting`].
    pub fn rewrite_answers(
        &self,
        path: &str,
        rewrite: impl Fn(&mut Value) + Send + Sync + 'static,
    ) {
        self.set_rewrite(path, Some(Rewrite::Every(Arc::new(rewrite))));
    }

    /// Answers for `path` pass unchanged again.
    pub fn stop_rewriting(&self, path: &str) {
        self.set_rewrite(path, None);
    }

    fn set_rewrite(&self, path: &str, rewrite: Option<Rewrite>) {
        let mut rewrites = self.control.rewrites.lock().expect("not poisoned");
        match rewrite {
            Some(rewrite) => rewrites.insert(path.to_owned(), rewrite),
            None => rewrites.remove(path),
        };
    }

    /// The next `n` fetches of the key set get `{"keys": []}`.
    pub fn hide_keys(&self, n: usize) {
        self.control.hidden_key_sets.store(n, Ordering::SeqCst);
    }

    /// The ID tokens the token endpoint handed out so far, oldest first (as sent, before any
    /// rewrite).
    pub fn id_tokens(&self) -> Vec<String> {
        self.control.id_tokens.lock().expect("not poisoned").clone()
    }

    /// How many requests for `path` reached the proxy.
    pub fn hits(&self, path: &str) -> usize {
        self.control
            .hits
            .lock()
            .expect("not poisoned")
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// Walks a sign-in as a browser with `browser`'s cookies: `GET <app>/oidc/login`, the
    /// provider's redirects and login form (as `user`, or "Cancel" when `None`), up to the
    /// provider's redirect back to the app's `/oidc/callback`, whose URL is returned, not
    /// followed.
    pub async fn authorize(
        &self,
        browser: &Client,
        app_url: &str,
        user: Option<IdpUser>,
    ) -> String {
        let mut url = format!("{app_url}/oidc/login");
        let mut res = browser.get(&url).send().await.expect("sign-in request");
        for _ in 0..20 {
            if res.status().is_redirection() {
                let location = res.headers()["location"]
                    .to_str()
                    .expect("ASCII")
                    .to_owned();
                let next = reqwest::Url::parse(&url)
                    .and_then(|base| base.join(&location))
                    .expect("a URL");
                // The app's redirect URI (whichever app server of a fleet it names).
                if next.path() == "/oidc/callback" {
                    return next.into();
                }
                url = next.into();
                res = browser.get(&url).send().await.expect("redirect");
                continue;
            }
            let status = res.status();
            let body = res.text().await.unwrap_or_default();
            assert!(
                status == StatusCode::OK && body.contains("id=\"login\""),
                "expected the provider's login form at {url}, got {status}: {body}"
            );
            res = match user {
                Some(user) => browser
                    .post(format!("{url}/login"))
                    .form(&[("login", user.login), ("password", user.password)])
                    .send()
                    .await
                    .expect("sign in at the provider"),
                None => browser
                    .post(format!("{url}/abort"))
                    .send()
                    .await
                    .expect("cancel at the provider"),
            };
        }
        panic!("no way back to the app after 20 steps; last at {url}");
    }

    /// A whole sign-in as `user` with `browser`: returns the app's answer to the callback.
    pub async fn sign_in(&self, browser: &Client, app_url: &str, user: IdpUser) -> Response {
        let callback = self.authorize(browser, app_url, Some(user)).await;
        browser.get(callback).send().await.expect("callback")
    }
}

/// One app using the provider as client [`CLIENT_ID`], registered, with `adjust` applied.
pub async fn spawn_with_idp(
    adjust: impl FnOnce(&mut app_server::Config),
) -> Option<(Idp, TestApp)> {
    let idp = start().await?;
    let app = crate::spawn_with(|config| {
        idp.configure(config);
        adjust(config);
    })
    .await;
    idp.register(&app, CLIENT_ID).await;
    Some((idp, app))
}
