//! A plain tus 1.0 client for the protocol's edge tests: each request as the protocol writes
//! it, nothing retried, so a test sees every answer. (The real clients, tuspy and
//! tus-js-client, and the CLI resume by themselves.)

use std::path::Path;
use std::process::{Output, Stdio};

use reqwest::{Body, Client, Method, RequestBuilder, Response, StatusCode};
use tokio::sync::mpsc::Sender;

use crate::{TestApp, User};

/// Who a [`Tus`] client is: a logged-in browser session (its CSRF token echoed) or a bearer
/// access token.
pub enum Auth {
    Session {
        client: Client,
        csrf: String,
    },
    Bearer(String),
    /// No account: an upload link's holder (as curl or a script, no `Origin`).
    Anonymous,
}

/// Requests to one app's `/api/uploads`.
pub struct Tus {
    pub app_url: String,
    /// Where requests go: the app, or a proxy in front of it.
    pub base: String,
    /// The creation endpoint's path: `/api/uploads`, or `/u/<secret>/uploads`.
    pub endpoint: String,
    auth: Auth,
}

impl Tus {
    pub fn session(app: &TestApp, user: &User) -> Tus {
        Tus {
            app_url: app.app_url.clone(),
            base: app.app_url.clone(),
            endpoint: "/api/uploads".into(),
            auth: Auth::Session {
                client: user.client.clone(),
                csrf: user.csrf.clone(),
            },
        }
    }

    pub fn bearer(app: &TestApp, token: &str) -> Tus {
        Tus::bearer_at(&app.app_url, token)
    }

    /// A bearer client of the app at `app_url` (one a test started by itself).
    pub fn bearer_at(app_url: &str, token: &str) -> Tus {
        Tus {
            app_url: app_url.to_owned(),
            base: app_url.to_owned(),
            endpoint: "/api/uploads".into(),
            auth: Auth::Bearer(token.to_owned()),
        }
    }

    /// Uploads through the upload link `link_url` (`<app>/u/<secret>`), without an account.
    pub fn link(app: &TestApp, link_url: &str) -> Tus {
        let path = link_url
            .strip_prefix(&app.app_url)
            .expect("a link of this app");
        Tus {
            app_url: app.app_url.clone(),
            base: app.app_url.clone(),
            endpoint: format!("{path}/uploads"),
            auth: Auth::Anonymous,
        }
    }

    /// A request with `Tus-Resumable: 1.0.0` and the client's authority. `path` is a path
    /// (`/api/uploads`, a `Location`) resolved against [`Tus::base`].
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let url = format!("{}{path}", self.base);
        let builder = match &self.auth {
            Auth::Session { client, csrf } => {
                client.request(method, url).header("X-CSRF-Token", csrf)
            }
            Auth::Bearer(token) => crate::client().request(method, url).bearer_auth(token),
            Auth::Anonymous => crate::client().request(method, url),
        };
        builder.header("Tus-Resumable", "1.0.0")
    }

    /// `POST` to the endpoint `length` bytes named `name`, with `first` as its first bytes
    /// when given (creation-with-upload).
    pub async fn create(&self, length: u64, name: &str, first: Option<Vec<u8>>) -> Response {
        let mut req = self
            .request(Method::POST, &self.endpoint)
            .header("Upload-Length", length)
            .header("Upload-Metadata", metadata(name));
        if let Some(bytes) = first {
            req = req
                .header("Content-Type", "application/offset+octet-stream")
                .body(bytes);
        }
        req.send().await.expect("creation request")
    }

    /// Creates an upload and returns its `Location`, panicking unless 201.
    pub async fn create_ok(&self, length: u64, name: &str) -> String {
        let res = self.create(length, name, None).await;
        assert_eq!(res.status(), StatusCode::CREATED, "create {name}");
        location(&res)
    }

    /// `PATCH location` with `bytes` at `offset`.
    pub async fn patch(&self, location: &str, offset: u64, bytes: Vec<u8>) -> Response {
        self.patch_request(location, offset, bytes)
            .send()
            .await
            .expect("PATCH request")
    }

    /// `PATCH location` with `body` at `offset`, not sent yet: for a body the test streams
    /// ([`held_body`]) or a request whose sending it watches itself.
    pub fn patch_request(
        &self,
        location: &str,
        offset: u64,
        body: impl Into<Body>,
    ) -> RequestBuilder {
        self.request(Method::PATCH, location)
            .header("Upload-Offset", offset)
            .header("Content-Type", "application/offset+octet-stream")
            .body(body)
    }

    /// `HEAD location`.
    pub async fn head(&self, location: &str) -> Response {
        self.request(Method::HEAD, location)
            .send()
            .await
            .expect("HEAD request")
    }

    /// The upload's offset as HEAD says it, panicking unless 200.
    pub async fn offset(&self, location: &str) -> u64 {
        let res = self.head(location).await;
        assert_eq!(res.status(), StatusCode::OK, "HEAD {location}");
        header_u64(&res, "Upload-Offset")
    }

    /// `DELETE location` (termination).
    pub async fn delete(&self, location: &str) -> Response {
        self.request(Method::DELETE, location)
            .send()
            .await
            .expect("DELETE request")
    }
}

/// A request body the test sends piece by piece through the returned sender; it ends when the
/// sender is dropped. For a PATCH held open mid-body.
pub fn held_body() -> (Sender<Result<Vec<u8>, std::io::Error>>, Body) {
    let (send, mut receive) = tokio::sync::mpsc::channel(4);
    let pieces = futures_util::stream::poll_fn(move |cx| receive.poll_recv(cx));
    (send, Body::wrap_stream(pieces))
}

/// Runs tuspy (`tests/tus/upload.py`, installed by `.ci/install-deps`): sends `file` to the
/// creation URL `endpoint` in PATCHes of at most `chunk` bytes, with `token` as its bearer
/// token (`-` for none). What it printed, and how it ended.
pub async fn tuspy(endpoint: &str, token: &str, file: &Path, chunk: usize) -> Output {
    let tus_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tus");
    tokio::process::Command::new("python3")
        .arg(tus_dir.join("upload.py"))
        .arg(endpoint)
        .arg(token)
        .arg(file)
        .arg(chunk.to_string())
        .env("PYTHONPATH", tus_dir.join("python"))
        .stdin(Stdio::null())
        .output()
        .await
        .expect("python3 runs tuspy")
}

/// `Upload-Metadata` naming the file.
pub fn metadata(name: &str) -> String {
    use base64::Engine as _;
    format!(
        "filename {}",
        base64::engine::general_purpose::STANDARD.encode(name)
    )
}

/// A creation's `Location`, panicking without one.
pub fn location(res: &Response) -> String {
    res.headers()
        .get("Location")
        .expect("a Location")
        .to_str()
        .expect("ASCII")
        .to_owned()
}

/// A header holding a number, panicking without one.
pub fn header_u64(res: &Response, name: &str) -> u64 {
    res.headers()
        .get(name)
        .unwrap_or_else(|| panic!("a {name} header"))
        .to_str()
        .expect("ASCII")
        .parse()
        .expect("a number")
}

/// The file an upload became (`Burnlink-File-Id`), if the answer names one.
pub fn file_id(res: &Response) -> Option<String> {
    res.headers()
        .get("Burnlink-File-Id")
        .map(|v| v.to_str().expect("ASCII").to_owned())
}

/// Resumable uploads' bytes so far, in either store: `.part-*` files of the local directory;
/// with S3, the open multipart uploads and the `.tail-*` files their last bytes wait in.
pub fn parts(app: &TestApp) -> Vec<String> {
    let mut parts: Vec<String> = crate::stored_files(&app.files_dir())
        .into_iter()
        .filter(|name| name.starts_with(".part-") || name.starts_with(".tail-"))
        .collect();
    parts.extend((0..app.open_multipart_uploads()).map(|i| format!("multipart upload {i}")));
    parts
}

/// Waits (bounded) until `check` holds, asking again every 50 ms.
pub async fn until<F: std::future::Future<Output = bool>>(
    what: &str,
    mut check: impl FnMut() -> F,
) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "{what} within 20 s");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
