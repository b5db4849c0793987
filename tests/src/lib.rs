//! Test harness: starts the real servers in-process on port 0 with a fresh data directory, and
//! gives typed helpers to walk them as a browser, an API client or an attacker would.

pub mod browser;
pub mod logs;
pub mod oidc;
pub mod postgres;
pub mod process;
pub mod s3;
pub mod services;
pub mod tus;

use std::path::{Path, PathBuf};

use file_store::FileStore as _;
use reqwest::{Client, Response, StatusCode, redirect};
use serde_json::Value;
use shared::{Algorithm, Claims, SigningKey};

pub use services::{RedisServer, spawn_download_server};

pub const ALICE: (&str, &str) = ("alice", "alice-password-1");
pub const BOB: (&str, &str) = ("bob", "bob-password-22");

/// One all-in-one app server (with its embedded download server) on ephemeral ports.
pub struct TestApp {
    pub app_url: String,
    pub dl_url: String,
    /// `http://<metrics listener>` when the config set `metrics_bind` (see
    /// [`with_metrics`]); it serves the app's and the embedded download server's series.
    pub metrics_url: Option<String>,
    pub data_dir: PathBuf,
    pub config: app_server::Config,
    /// A client with no cookies, for download URLs and anonymous requests.
    pub anon: Client,
    /// The app's database, to check what a request left behind.
    pub db: sqlx::AnyPool,
    _dir: Option<tempfile::TempDir>,
}

/// The configuration `spawn` uses: loopback, port 0, its own data dir, SQLite there.
pub fn test_config(data_dir: &Path) -> app_server::Config {
    let mut config = app_server::Config::from_defaults();
    config.bind = "127.0.0.1:0".parse().expect("literal address");
    config.download_bind = "127.0.0.1:0".parse().expect("literal address");
    config.service.data_dir = data_dir.to_owned();
    config.database_url = Some(format!(
        "sqlite://{}?mode=rwc",
        data_dir.join("app.db").display()
    ));
    config.public_url = None;
    config.download_url = None;
    config.service.metrics_bind = None;
    config.demo_user = false;
    config.signing_key = None;
    config.alg = Algorithm::EdDSA;
    config.token.issuer = "burnlink-app".into();
    config.token.audience = "burnlink-download".into();
    // Every token these tests mint is dated by this machine's clock, and the embedded download
    // server serves `1 + leeway` seconds after it starts: a test of the leeway sets it.
    config.leeway = 0;
    if s3::s3_under_test() {
        let moto = s3::moto().expect("TEST_FILE_STORE=s3 needs moto (.ci/install-deps)");
        config.file_store = moto.settings(&moto.bucket(), "files");
    }
    config
}

/// The all-in-one app with users alice and bob.
pub async fn spawn() -> TestApp {
    spawn_with(|_| {}).await
}

/// A configuration change for [`spawn_with`]: a metrics listener on a free loopback port.
pub fn with_metrics(config: &mut app_server::Config) {
    config.service.metrics_bind = Some("127.0.0.1:0".parse().expect("literal address"));
}

/// Like [`spawn`], with the configuration adjusted first.
pub async fn spawn_with(adjust: impl FnOnce(&mut app_server::Config)) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(dir.path());
    adjust(&mut config);
    let mut app = start(config).await;
    app._dir = Some(dir);
    app
}

/// Starts an app server with exactly this configuration and creates alice and bob (if they
/// do not exist yet in its database).
pub async fn start(config: app_server::Config) -> TestApp {
    let app = app_server::Application::build(config.clone())
        .await
        .expect("app server starts");
    for (user, password) in [ALICE, BOB] {
        let _ = app.create_user(user, password).await;
    }
    let app_url = format!("http://127.0.0.1:{}", app.port());
    let dl_url = app.download_url().to_owned();
    let metrics_url = app.metrics_address().map(|addr| format!("http://{addr}"));
    let db = app.db().clone();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        app_url,
        dl_url,
        metrics_url,
        data_dir: config.service.data_dir.clone(),
        config,
        anon: client(),
        db,
        _dir: None,
    }
}

/// Waits until the wall clock reads at least `unix_secs` (Unix seconds): for what changes once
/// a whole second has passed (a token's `exp`, a key's retirement), as tokens and servers
/// count time in whole seconds.
pub async fn sleep_until_second(unix_secs: u64) {
    let at = std::time::Duration::from_secs(unix_secs);
    loop {
        let now = std::time::Duration::from_millis(shared::unix_now_ms());
        if now >= at {
            return;
        }
        tokio::time::sleep(at - now).await;
    }
}

/// How long test clients keep an idle connection: under actix-web's default keep-alive (5 s).
pub const POOL_IDLE: std::time::Duration = std::time::Duration::from_secs(2);

/// A client that keeps cookies and never follows redirects (tests look at each hop).
pub fn client() -> Client {
    Client::builder()
        .cookie_store(true)
        .redirect(redirect::Policy::none())
        // Idle connections are dropped before the servers' 5 s keep-alive ends: a request
        // sent on one the server is closing at that instant fails (IncompleteMessage, seen
        // after a browser walk left the client idle).
        .pool_idle_timeout(POOL_IDLE)
        .build()
        .expect("client builds")
}

/// A logged-in user: its own cookie jar and CSRF token.
pub struct User {
    pub client: Client,
    pub csrf: String,
    pub app_url: String,
}

/// `bytes` as the file `name` in a fresh temporary directory, for a tool or a browser that
/// reads a file from disk; the directory is removed when the returned guard is dropped.
pub fn temp_file(name: &str, bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).expect("write the file");
    (dir, path)
}

/// A file as the API lists it.
#[derive(Debug, Clone)]
pub struct FileInfo {
    pub id: String,
    pub name: String,
    pub size: u64,
}

impl TestApp {
    pub fn files_dir(&self) -> PathBuf {
        shared::DataDir::new(&self.data_dir).files()
    }

    /// Logs in over the JSON API, panicking unless it works.
    pub async fn login(&self, (user, password): (&str, &str)) -> User {
        let client = client();
        let res = client
            .post(format!("{}/api/login", self.app_url))
            .json(&serde_json::json!({ "username": user, "password": password }))
            .send()
            .await
            .expect("login request");
        assert_eq!(res.status(), StatusCode::OK, "login as {user}");
        let body: Value = res.json().await.expect("login JSON");
        User {
            client,
            csrf: body["csrf_token"].as_str().expect("csrf_token").to_owned(),
            app_url: self.app_url.clone(),
        }
    }

    /// The app's current signing key, read from the data dir as the app wrote it.
    pub fn signing_key(&self) -> SigningKey {
        match self.config.alg {
            Algorithm::EdDSA => {
                SigningKey::load(&self.data_dir.join("keys/ed25519.pem"), Algorithm::EdDSA)
            }
            Algorithm::HS256 => {
                SigningKey::load(&self.data_dir.join("keys/hs256.key"), Algorithm::HS256)
            }
        }
        .expect("signing key in the data dir")
    }

    /// Claims like the app's, for a file, valid from now for a minute.
    pub fn claims(&self, storage_key: &str, name: &str) -> Claims {
        let now = shared::unix_now();
        Claims {
            iss: self.config.token.issuer.clone(),
            aud: self.config.token.audience.clone(),
            sub: "test".into(),
            jti: shared::Jti::generate().as_str().to_owned(),
            iat: now,
            nbf: now,
            exp: now + 60,
            file: storage_key.into(),
            name: name.into(),
        }
    }

    pub fn mint(&self, claims: &Claims) -> String {
        self.signing_key().mint(claims).expect("mint")
    }

    /// A token for a file, minted by a clock `secs` seconds ahead of this one.
    pub fn mint_ahead(&self, storage_key: &str, name: &str, secs: u64) -> String {
        let mut claims = self.claims(storage_key, name);
        claims.iat += secs;
        claims.nbf += secs;
        claims.exp += secs;
        self.mint(&claims)
    }

    /// `GET <download server>/d/<token>` with no cookies.
    pub async fn download(&self, token: &str) -> Response {
        self.anon
            .get(format!("{}/d/{token}", self.dl_url))
            .send()
            .await
            .expect("download request")
    }

    /// How many rows `table` holds (`files`, `sessions`, `users`).
    pub async fn count_rows(&self, table: &str) -> i64 {
        assert!(
            table.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{table}"
        );
        let (count,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&self.db)
            .await
            .expect("count rows");
        count
    }

    /// `GET url` with no cookies and one extra request header.
    pub async fn get_with(&self, url: &str, (name, value): (&str, &str)) -> Response {
        self.anon
            .get(url)
            .header(name, value)
            .send()
            .await
            .expect("request")
    }

    /// The bucket and prefix of the app's files when they are in S3.
    fn bucket(&self) -> Option<(&'static s3::Moto, String, String)> {
        match file_store::Location::parse(&self.config.file_store.file_store).ok()? {
            file_store::Location::S3 { bucket, prefix } => {
                Some((s3::moto().expect("moto runs"), bucket, prefix))
            }
            _ => None,
        }
    }

    /// Everything in the app's file store, sorted: entries of `<data>/files` (temporary files
    /// included) or the objects under the bucket's prefix.
    pub fn stored_objects(&self) -> Vec<String> {
        match self.bucket() {
            Some((moto, bucket, prefix)) => moto.list(&bucket, &prefix),
            None => stored_files(&self.files_dir()),
        }
    }

    /// Multipart uploads begun and neither completed nor aborted in the app's bucket (0 for
    /// the local store).
    pub fn open_multipart_uploads(&self) -> usize {
        match self.bucket() {
            Some((moto, bucket, _)) => moto.open_uploads(&bucket),
            None => 0,
        }
    }

    /// The app's file store when it is S3, signed as the servers sign (moto refuses unsigned
    /// overwrites and deletes).
    fn s3_store(&self) -> Option<file_store::Files> {
        self.bucket()?;
        Some(
            self.config
                .file_store
                .build(self.files_dir())
                .expect("the app's settings"),
        )
    }

    /// Writes (or replaces, as a new version) the stored file `key`, behind the servers' back.
    pub async fn put_stored(&self, key: &str, bytes: &[u8]) {
        match self.s3_store() {
            Some(s3) => {
                let key = shared::StorageKey::parse(key).expect("a storage key");
                let mut upload = s3.create(&key).await.expect("put");
                upload.write(bytes.to_vec().into()).await.expect("put");
                upload.finish().await.expect("put");
            }
            None => {
                let temp = self.files_dir().join(".test-replacement");
                std::fs::write(&temp, bytes).expect("write");
                std::fs::rename(&temp, self.files_dir().join(key)).expect("replace");
            }
        }
    }

    /// Removes the stored file `key`, behind the servers' back.
    pub async fn remove_stored(&self, key: &str) {
        match self.s3_store() {
            Some(s3) => {
                let key = shared::StorageKey::parse(key).expect("a storage key");
                s3.delete(&key).await.expect("delete");
            }
            None => std::fs::remove_file(self.files_dir().join(key)).expect("remove"),
        }
    }

    /// The storage key of the only file in the store (uploaded files are never named by
    /// their user name, so the test finds them by listing).
    pub fn only_stored_file(&self) -> String {
        let names = self.stored_objects();
        assert_eq!(names.len(), 1, "expected one stored file, found {names:?}");
        names.into_iter().next().expect("one file")
    }
}

/// Every entry of a directory (temporary files included), sorted.
pub fn stored_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

impl User {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.app_url)
    }

    pub async fn upload(&self, name: &str, bytes: Vec<u8>) -> Response {
        let part = reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned());
        let form = reqwest::multipart::Form::new().part("file", part);
        self.client
            .post(self.url("/api/files"))
            .header("X-CSRF-Token", &self.csrf)
            .multipart(form)
            .send()
            .await
            .expect("upload request")
    }

    /// Uploads and returns the file as the API answered it, panicking unless 201.
    pub async fn upload_ok(&self, name: &str, bytes: Vec<u8>) -> FileInfo {
        let res = self.upload(name, bytes).await;
        assert_eq!(res.status(), StatusCode::CREATED, "upload {name}");
        let body: Value = res.json().await.expect("upload JSON");
        FileInfo {
            id: body["id"].as_str().expect("id").to_owned(),
            name: body["name"].as_str().expect("name").to_owned(),
            size: body["size"].as_u64().expect("size"),
        }
    }

    /// The file list page (`GET /`) as HTML, panicking unless 200.
    pub async fn files_page(&self) -> String {
        let url = format!("{}/", self.app_url);
        let res = self
            .client
            .get(url)
            .send()
            .await
            .expect("file list request");
        assert_eq!(res.status(), StatusCode::OK, "file list");
        res.text().await.expect("file list page")
    }

    /// `GET url` with this user's session, its JSON body read as `T`.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, url: impl reqwest::IntoUrl) -> T {
        self.client
            .get(url)
            .send()
            .await
            .expect("GET request")
            .json()
            .await
            .expect("a JSON body")
    }

    pub async fn list(&self) -> Response {
        self.client
            .get(self.url("/api/files"))
            .send()
            .await
            .expect("list request")
    }

    pub async fn link(&self, file_id: &str) -> Response {
        self.client
            .post(self.url(&format!("/api/files/{file_id}/link")))
            .header("X-CSRF-Token", &self.csrf)
            .send()
            .await
            .expect("link request")
    }

    /// Mints a link and returns its URL, panicking unless 201.
    pub async fn link_url(&self, file_id: &str) -> String {
        let res = self.link(file_id).await;
        assert_eq!(res.status(), StatusCode::CREATED, "link for {file_id}");
        let body: Value = res.json().await.expect("link JSON");
        body["url"].as_str().expect("url").to_owned()
    }

    pub async fn delete(&self, file_id: &str) -> Response {
        self.delete_at(&format!("/api/files/{file_id}")).await
    }

    /// `DELETE path` (a share, an upload link, …) with the session's CSRF token.
    pub async fn delete_at(&self, path: &str) -> Response {
        self.client
            .delete(self.url(path))
            .header("X-CSRF-Token", &self.csrf)
            .send()
            .await
            .expect("delete request")
    }

    /// `POST path` with `body` as JSON and the session's CSRF token, as the page's script
    /// sends it.
    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .header("X-CSRF-Token", &self.csrf)
            .json(body)
            .send()
            .await
            .expect("JSON POST request")
    }

    /// `POST path` as a page's form posts it: `fields` urlencoded, exactly as given (the
    /// CSRF token only when the test puts it there).
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Response {
        self.client
            .post(self.url(path))
            .form(fields)
            .send()
            .await
            .expect("form POST request")
    }

    /// Creates a personal access token with these scopes and returns its secret, panicking
    /// unless 201.
    pub async fn create_token(&self, scopes: &[&str]) -> String {
        let res = self
            .client
            .post(self.url("/api/tokens"))
            .header("X-CSRF-Token", &self.csrf)
            .json(&serde_json::json!({ "name": "test", "scopes": scopes }))
            .send()
            .await
            .expect("token request");
        assert_eq!(res.status(), StatusCode::CREATED, "token {scopes:?}");
        let body: Value = res.json().await.expect("token JSON");
        body["token"].as_str().expect("token").to_owned()
    }

    pub async fn logout(&self) -> Response {
        self.client
            .post(self.url("/api/logout"))
            .header("X-CSRF-Token", &self.csrf)
            .send()
            .await
            .expect("logout request")
    }
}

/// The one fenced code block of `lang` in `docs/<doc>`: the recipes and receivers the docs
/// give, which the tests run as written.
pub fn doc_block(doc: &str, lang: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs")
        .join(doc);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("docs/{doc}: {e}"));
    let opening = format!("```{lang}");
    let mut blocks = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim_end() == opening {
            let body: Vec<&str> = lines
                .by_ref()
                .take_while(|l| l.trim_end() != "```")
                .collect();
            blocks.push(body.join("\n") + "\n");
        }
    }
    assert_eq!(blocks.len(), 1, "one ```{lang} block in docs/{doc}");
    blocks.remove(0)
}

/// `GET url` with `client`: the status and the body as text (a page).
pub async fn get_text(client: &Client, url: &str) -> (StatusCode, String) {
    let res = client.get(url).send().await.expect("GET request");
    (res.status(), res.text().await.expect("a text body"))
}

/// The token part of a download URL.
pub fn token_of(url: &str) -> &str {
    url.rsplit_once("/d/").expect("a /d/ URL").1
}

/// The `error` code of a JSON error body.
pub async fn error_code(res: Response) -> String {
    let body: Value = res.json().await.expect("JSON error body");
    body["error"].as_str().expect("error code").to_owned()
}

/// Some bytes that are not all alike, so a misplaced range shows.
pub fn sample_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// Waits (bounded) until `done` holds, for what no event tells the test about: the server
/// closing a stream when it notices the peer has gone, a dropped upload tidied away in the
/// background.
pub async fn eventually(what: &str, limit: std::time::Duration, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} within {limit:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
