//! `/api/openapi.json`: it lists every `/api` route the app registers (and the tus routes under
//! an upload link, `/u/{secret}/uploads`), and every error code it
//! documents is what the route answers when that error is driven.

use std::collections::BTreeSet;

use burnlink_tests::{ALICE, User, spawn, spawn_with};
use reqwest::{Client, Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};

async fn document(app_url: &str) -> Value {
    let res = Client::new()
        .get(format!("{app_url}/api/openapi.json"))
        .send()
        .await
        .expect("document");
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.expect("JSON")
}

/// `(METHOD, pattern)` of every `/api` route in `app-server/src/routes/*.rs`, read from the
/// source as registered: an actix route attribute (`#[get("/api/…")]`, how an API handler is
/// declared), and, in each file's `configure`, a `"/api/…"` pattern followed by the
/// `web::get()`/`web::post()`/… that serve it, up to the next pattern (a route registered
/// without a declaration). Unit tests' routes are not served and not counted.
fn registered_routes() -> BTreeSet<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../app-server/src/routes");
    let mut routes = BTreeSet::new();
    for entry in std::fs::read_dir(dir).expect("routes dir") {
        let source = std::fs::read_to_string(entry.expect("entry").path()).expect("source");
        // What the app serves, not what its unit tests declare.
        let source = source.split("#[cfg(test)]").next().unwrap_or_default();
        for method in METHODS {
            let attribute = format!("#[{method}(\"");
            let mut rest = source;
            while let Some(at) = rest.find(&attribute) {
                let after = &rest[at + attribute.len()..];
                let pattern = &after[..after.find('"').expect("closing quote")];
                if pattern.starts_with("/api/") || pattern.starts_with(LINK_UPLOADS) {
                    routes.insert((method.to_uppercase(), pattern.to_owned()));
                }
                rest = after;
            }
        }
        let Some(start) = source.find("pub fn configure(") else {
            continue;
        };
        let body = &source[start..];
        let body = &body[..body.find("\n}\n").expect("end of configure")];
        let mut rest = body;
        while let Some(at) = rest.find("\"/") {
            let after = &rest[at + 1..];
            let end = after.find('"').expect("closing quote");
            let pattern = &after[..end];
            let tail = &after[end + 1..];
            let span = &tail[..tail.find("\"/").unwrap_or(tail.len())];
            if pattern.starts_with("/api/") {
                for method in METHODS {
                    if span.contains(&format!("web::{method}()")) {
                        routes.insert((method.to_uppercase(), pattern.to_owned()));
                    }
                }
            }
            rest = tail;
        }
    }
    routes
}

/// The tus routes under an upload link: public, but an API (tus clients), so documented.
const LINK_UPLOADS: &str = "/u/{secret}/uploads";

const METHODS: [&str; 7] = ["get", "post", "put", "patch", "delete", "head", "options"];

fn documented_routes(doc: &Value) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            routes.insert((method.to_uppercase(), path.clone()));
        }
    }
    routes
}

#[tokio::test]
async fn every_registered_api_route_is_in_the_openapi_document() {
    let app = spawn().await;
    let doc = document(&app.app_url).await;
    assert!(
        doc["openapi"].as_str().expect("version").starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let registered = registered_routes();
    assert!(registered.len() >= 17, "{registered:?}");
    assert!(registered.contains(&("POST".into(), "/api/tokens".into())));
    let documented = documented_routes(&doc);
    let missing: Vec<_> = registered.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "registered but not documented: {missing:?}"
    );
    let extra: Vec<_> = documented.difference(&registered).collect();
    assert!(extra.is_empty(), "documented but not registered: {extra:?}");
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
}

/// What each request is sent with.
struct Fixture {
    app_url: String,
    alice: User,
    /// One token per scope.
    tokens: Vec<String>,
    /// The app's database, for the states a request alone cannot reach quickly.
    db: sqlx::AnyPool,
    /// An app with `--password-login false` (and so an identity provider, here one that is
    /// not there: the app starts all the same).
    password_off_url: String,
}

impl Fixture {
    fn request(
        &self,
        client: &Client,
        method: &str,
        path: &str,
        multipart: bool,
    ) -> RequestBuilder {
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let tus = path.starts_with("/api/uploads");
        let path = path.replace("{id}", "unknown-id");
        let req = client.request(method.clone(), format!("{}{path}", self.app_url));
        if tus {
            // tus requests as a client sends them (Tus-Resumable is added by `drive`).
            match method {
                Method::POST => req.header("Upload-Length", 10),
                Method::PATCH => req
                    .header("Upload-Offset", 0)
                    .header("Content-Type", "application/offset+octet-stream")
                    .body("x"),
                _ => req,
            }
        } else if multipart {
            let part = reqwest::multipart::Part::bytes(b"x".to_vec()).file_name("x.txt");
            req.multipart(reqwest::multipart::Form::new().part("file", part))
        } else {
            req.json(&json!({}))
        }
    }

    /// Drives `code` on `method path` and returns the statuses and codes seen.
    async fn drive(
        &self,
        method: &str,
        path: &str,
        multipart: bool,
        code: &str,
    ) -> Vec<(u16, String)> {
        if path.starts_with(LINK_UPLOADS) {
            return self.through_link(code, method).await;
        }
        let anon = Client::new();
        let session = &self.alice.client;
        let csrf = &self.alice.csrf;
        let requests: Vec<RequestBuilder> = match code {
            "unauthorized" => vec![self.request(&anon, method, path, multipart)],
            "invalid_token" => vec![
                self.request(&anon, method, path, multipart)
                    .bearer_auth("blpat_unknown"),
            ],
            "insufficient_scope" => self
                .tokens
                .iter()
                .map(|t| self.request(&anon, method, path, multipart).bearer_auth(t))
                .collect(),
            "csrf" => vec![self.request(session, method, path, multipart)],
            "not_found" => vec![
                self.request(session, method, path, multipart)
                    .header("X-CSRF-Token", csrf),
            ],
            "bad_request" => vec![
                self.request(session, method, path, multipart)
                    .header("X-CSRF-Token", csrf)
                    .header("Content-Type", "application/json")
                    .body("{"),
            ],
            "invalid_credentials" => vec![
                self.request(&anon, method, path, multipart)
                    .json(&json!({"username": ALICE.0, "password": "wrong-password"})),
            ],
            "cross_site" => vec![
                self.request(&anon, method, path, multipart)
                    .header("Origin", "https://evil.example")
                    .json(&json!({"username": ALICE.0, "password": ALICE.1})),
            ],
            "url_refused" => vec![
                self.request(session, method, path, multipart)
                    .header("X-CSRF-Token", csrf)
                    .json(&json!({"url": "https://127.0.0.1/hook", "events": ["share.expired"]})),
            ],
            "too_many_webhooks" | "webhook_disabled" => {
                return self.with_webhooks(code, method, path).await;
            }
            "tus_version" => vec![
                self.request(session, method, path, multipart)
                    .header("X-CSRF-Token", csrf),
            ],
            // A creation longer than Tus-Max-Size (the one route documenting `too_large` in a
            // header rather than a body).
            "too_large" => vec![
                session
                    .post(format!("{}{path}", self.app_url))
                    .header("X-CSRF-Token", csrf)
                    .header("Upload-Length", 1u64 << 50),
            ],
            // A tus body in another media type (built whole: headers are appended, not set).
            "unsupported_media_type" => vec![
                session
                    .request(
                        Method::from_bytes(method.to_uppercase().as_bytes()).expect("method"),
                        format!("{}{}", self.app_url, path.replace("{id}", "unknown-id")),
                    )
                    .header("X-CSRF-Token", csrf)
                    .header("Upload-Length", 10)
                    .header("Upload-Offset", 0)
                    .header("Content-Type", "application/json")
                    .body("{}"),
            ],
            "offset_mismatch" | "upload_expired" | "upload_busy" => {
                return self.with_upload(code, method).await;
            }
            "password_login_disabled" => vec![
                anon.request(
                    Method::from_bytes(method.to_uppercase().as_bytes()).expect("method"),
                    format!("{}{path}", self.password_off_url),
                )
                .json(&json!({"username": ALICE.0, "password": ALICE.1})),
            ],
            other => panic!("{method} {path} documents {other:?}, which this test cannot drive"),
        };
        let mut seen = Vec::new();
        for mut req in requests {
            if path.starts_with("/api/uploads") && code != "tus_version" {
                req = req.header("Tus-Resumable", "1.0.0");
            }
            let res = req.send().await.expect("request");
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            seen.push((status, body["error"].as_str().unwrap_or("").to_owned()));
        }
        seen
    }
}

impl Fixture {
    /// Drives `code` on a tus route under a fresh upload link of alice's (a password, one
    /// file of at most 100 bytes): the creation, or a request on an upload made through it.
    async fn through_link(&self, code: &str, method: &str) -> Vec<(u16, String)> {
        const PASSWORD: (&str, &str) = ("Burnlink-Link-Password", "open sesame");
        let res = self
            .alice
            .client
            .post(format!("{}/api/upload-links", self.app_url))
            .header("X-CSRF-Token", &self.alice.csrf)
            .json(&json!({"password": PASSWORD.1, "max_files": 1, "max_bytes": 100}))
            .send()
            .await
            .expect("link");
        let link: Value = res.json().await.expect("link JSON");
        let link_id = link["id"].as_str().expect("id").to_owned();
        let mut base = link["url"].as_str().expect("url").to_owned();
        if code == "not_found" && method == "post" {
            base = format!("{}/u/{}", self.app_url, "A".repeat(43));
        }
        let anon = Client::new();
        let tus = |method: Method, url: String| {
            let req = anon.request(method, url);
            if code == "tus_version" {
                req
            } else {
                req.header("Tus-Resumable", "1.0.0")
            }
        };
        let create = || {
            let req = anon.post(format!("{base}/uploads"));
            // The upload a later request is refused on is made whole; the creation refused
            // for `tus_version` is this one without the header.
            let req = if code == "tus_version" && method == "post" {
                req
            } else {
                req.header("Tus-Resumable", "1.0.0")
            };
            req.header(PASSWORD.0, PASSWORD.1)
                .header("Upload-Length", 10)
        };
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let mut requests = Vec::new();
        if method == Method::POST {
            if code == "upload_link_full" {
                assert_eq!(create().send().await.unwrap().status(), 201, "the one slot");
            }
            if code == "upload_link_gone" {
                sqlx::query("UPDATE upload_links SET revoked_at = 1 WHERE id = $1")
                    .bind(&link_id)
                    .execute(&self.db)
                    .await
                    .expect("revoke");
            }
            requests = match code {
                "bad_request" => vec![
                    tus(Method::POST, format!("{base}/uploads")).header(PASSWORD.0, PASSWORD.1),
                ],
                "wrong_password" => vec![tus(Method::POST, format!("{base}/uploads"))],
                // From another loopback address: the throttle counts per client address too,
                // and the other requests here come from 127.0.0.1.
                "throttled" => {
                    let elsewhere = Client::builder()
                        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
                        .build()
                        .expect("client");
                    (0..20)
                        .map(|_| {
                            elsewhere
                                .post(format!("{base}/uploads"))
                                .header("Tus-Resumable", "1.0.0")
                                .header(PASSWORD.0, "wrong guess!")
                                .header("Upload-Length", 10)
                        })
                        .collect()
                }
                "csrf" => vec![
                    create()
                        .header("Origin", "null")
                        .header("Sec-Fetch-Site", "same-origin"),
                ],
                "cross_site" => vec![create().header("Origin", "https://evil.example")],
                "too_large" => vec![
                    tus(Method::POST, format!("{base}/uploads"))
                        .header(PASSWORD.0, PASSWORD.1)
                        .header("Upload-Length", 1000),
                ],
                _ => vec![create()],
            };
        } else {
            let res = create().send().await.expect("create");
            let location = res
                .headers()
                .get("Location")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            let mut url = format!("{}{location}", self.app_url);
            match code {
                "not_found" => url = format!("{base}/uploads/{}", "A".repeat(43)),
                "upload_link_gone" => {
                    sqlx::query("UPDATE upload_links SET revoked_at = 1 WHERE id = $1")
                        .bind(&link_id)
                        .execute(&self.db)
                        .await
                        .expect("revoke");
                }
                "upload_expired" => {
                    sqlx::query("UPDATE uploads SET expires_ms = 1 WHERE via_link = $1")
                        .bind(&link_id)
                        .execute(&self.db)
                        .await
                        .expect("expire");
                }
                "upload_busy" => {
                    sqlx::query(
                        "UPDATE uploads SET lease_id = 'other', lease_until_ms = 9000000000000000 \
                         WHERE via_link = $1",
                    )
                    .bind(&link_id)
                    .execute(&self.db)
                    .await
                    .expect("hold");
                }
                _ => {}
            }
            let mut req = tus(method.clone(), url);
            if method == Method::PATCH {
                let offset = if code == "offset_mismatch" { 5 } else { 0 };
                let media = if code == "unsupported_media_type" {
                    "application/json"
                } else {
                    "application/offset+octet-stream"
                };
                req = req.header("Content-Type", media).body("x");
                if code != "bad_request" {
                    req = req.header("Upload-Offset", offset);
                }
            }
            requests.push(req);
        }
        let mut seen = Vec::new();
        for req in requests {
            let res = req.send().await.expect("request");
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            seen.push((status, body["error"].as_str().unwrap_or("").to_owned()));
        }
        sqlx::query("UPDATE uploads SET lease_id = NULL, lease_until_ms = 0")
            .execute(&self.db)
            .await
            .expect("free");
        seen
    }

    /// Drives an upload's state: one of alice's uploads, asked at the wrong offset, past its
    /// expiry, or while another request holds it.
    async fn with_upload(&self, code: &str, method: &str) -> Vec<(u16, String)> {
        let tus = |method: Method, path: &str| {
            self.alice
                .client
                .request(method, format!("{}{path}", self.app_url))
                .header("X-CSRF-Token", &self.alice.csrf)
                .header("Tus-Resumable", "1.0.0")
        };
        let res = tus(Method::POST, "/api/uploads")
            .header("Upload-Length", 10)
            .send()
            .await
            .expect("create");
        assert_eq!(res.status(), StatusCode::CREATED);
        let location = res.headers()["Location"].to_str().unwrap().to_owned();
        let state = match code {
            "upload_expired" => "UPDATE uploads SET expires_ms = 1",
            "upload_busy" => {
                "UPDATE uploads SET lease_id = 'other', lease_until_ms = 9000000000000000"
            }
            _ => "UPDATE uploads SET upload_offset = 0",
        };
        sqlx::query(state).execute(&self.db).await.expect("state");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let mut req = tus(method.clone(), &location);
        if method == Method::PATCH {
            let offset = if code == "offset_mismatch" { 5 } else { 0 };
            req = req
                .header("Upload-Offset", offset)
                .header("Content-Type", "application/offset+octet-stream")
                .body("x");
        }
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        sqlx::query("DELETE FROM uploads")
            .execute(&self.db)
            .await
            .expect("delete");
        vec![(status, body["error"].as_str().unwrap_or("").to_owned())]
    }

    /// Drives a webhook state: alice at her most webhooks, or her webhook `unknown-id`
    /// disabled; the rows are removed again after the one request.
    async fn with_webhooks(&self, code: &str, method: &str, path: &str) -> Vec<(u16, String)> {
        let (user,): (String,) = sqlx::query_as("SELECT id FROM users WHERE username = $1")
            .bind(ALICE.0)
            .fetch_one(&self.db)
            .await
            .expect("alice");
        let rows: Vec<(String, Option<i64>)> = match code {
            "too_many_webhooks" => (0..20).map(|i| (format!("full-{i}"), None)).collect(),
            _ => vec![("unknown-id".into(), Some(1))],
        };
        for (id, disabled) in &rows {
            sqlx::query(
                "INSERT INTO webhooks (id, user_id, url, description, events, secret, \
                 created_ms, disabled_ms) VALUES ($1, $2, 'https://hooks.example/', '', \
                 'share.expired', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 0, $3)",
            )
            .bind(id)
            .bind(&user)
            .bind(*disabled)
            .execute(&self.db)
            .await
            .expect("insert");
        }
        let res = self
            .request(&self.alice.client, method, path, false)
            .header("X-CSRF-Token", &self.alice.csrf)
            .json(&json!({"url": "https://127.0.0.1/hook", "events": ["share.expired"]}))
            .send()
            .await
            .expect("request");
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        sqlx::query("DELETE FROM webhooks WHERE user_id = $1")
            .bind(&user)
            .execute(&self.db)
            .await
            .expect("delete");
        vec![(status, body["error"].as_str().unwrap_or("").to_owned())]
    }
}

/// The codes a response's description names in backticks.
fn codes(description: &str) -> Vec<&str> {
    description.split('`').skip(1).step_by(2).collect()
}

#[tokio::test]
async fn each_documented_error_code_is_what_the_route_returns() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let mut tokens = Vec::new();
    for scope in ["files:read", "files:write", "shares:write", "links:mint"] {
        tokens.push(alice.create_token(&[scope]).await);
    }
    let password_off = spawn_with(|c| {
        let secret = c.service.data_dir.join("oidc-client-secret");
        std::fs::write(&secret, "s3cret\n").expect("write secret");
        c.sign_in.password_login = false;
        c.sign_in.oidc_issuer = Some("http://127.0.0.1:9".into());
        c.sign_in.oidc_client_id = Some("burnlink".into());
        c.sign_in.oidc_client_secret_file = Some(secret);
    })
    .await;
    let fixture = Fixture {
        app_url: app.app_url.clone(),
        alice,
        tokens,
        db: app.db.clone(),
        password_off_url: password_off.app_url.clone(),
    };
    let doc = document(&app.app_url).await;
    let mut driven = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("item") {
            let multipart = op["requestBody"]["content"]["multipart/form-data"].is_object();
            for (status, response) in op["responses"].as_object().expect("responses") {
                let status: u16 = status.parse().expect("numeric status");
                if status < 400 {
                    continue;
                }
                let description = response["description"].as_str().expect("description");
                let listed = codes(description);
                assert!(!listed.is_empty(), "{method} {path} {status} names no code");
                assert_eq!(
                    response["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{method} {path} {status}"
                );
                for code in listed {
                    let seen = fixture.drive(method, path, multipart, code).await;
                    // An answer to HEAD has no body (RFC 9110 section 9.3.2): its status is
                    // what a client sees.
                    let head = method == "head";
                    assert!(
                        seen.iter()
                            .any(|(s, c)| *s == status && (c == code || head)),
                        "{method} {path}: documented {status} `{code}`, got {seen:?}"
                    );
                    driven += 1;
                }
            }
        }
    }
    assert!(driven >= 40, "only {driven} error cases driven");
}
