//! The JSON API with a bearer token, and what a failure means to a script.

use std::path::Path;

use futures_util::TryStreamExt;
use reqwest::{Client, Response, StatusCode};
use serde_json::Value;

/// Why a command failed; each kind has its own exit code.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The server answered with an error: its message and code, as it said them.
    #[error("{message} ({status} {code})")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    #[error("{0}")]
    Usage(String),
    /// Nothing usable came back: no connection, a broken transfer, an unreadable answer.
    #[error("{0}")]
    Network(String),
    #[error("{0}")]
    Local(String),
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Refused { .. } => 1,
            Failure::Usage(_) => 2,
            Failure::Network(_) => 3,
            Failure::Local(_) => 4,
        }
    }

    pub fn network(e: reqwest::Error) -> Failure {
        Failure::Network(format!("the server could not be reached or broke off: {e}"))
    }

    /// A failed response as a failure: the body's `{"error","message"}` when it has one.
    pub async fn from_response(res: Response) -> Failure {
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let code = body["error"].as_str().unwrap_or("").to_owned();
        let message = body["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
        Failure::Refused {
            status: status.as_u16(),
            code,
            message,
        }
    }
}

/// A path segment, percent-encoded (an id typed by hand must not change the route).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The HTTP client of every command: redirects are answers to show, not to follow; the
/// user agent says who we are (an owner's file list shows each sender's).
fn client() -> Result<Client, Failure> {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("burnlink/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(Failure::network)
}

/// The app's JSON API, authenticated by a token.
pub struct Api {
    base: String,
    token: String,
    client: Client,
}

impl Api {
    pub fn new(url: &str, token: Option<&str>) -> Result<Api, Failure> {
        let token = token.filter(|t| !t.is_empty()).ok_or_else(|| {
            Failure::Usage("this command needs --token or BURNLINK_TOKEN (an access token from the app's Access tokens page)".into())
        })?;
        let client = client()?;
        Ok(Api {
            base: url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            client,
        })
    }

    /// The app at `url` without an account (an upload link's requests).
    pub fn anonymous(url: &str) -> Result<Api, Failure> {
        Ok(Api {
            base: url.trim_end_matches('/').to_owned(),
            token: String::new(),
            client: client()?,
        })
    }

    /// The app's URL, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.client.request(method, format!("{}{path}", self.base));
        if self.token.is_empty() {
            req
        } else {
            req.bearer_auth(&self.token)
        }
    }

    async fn json_of(res: Response) -> Result<Value, Failure> {
        if !res.status().is_success() {
            return Err(Failure::from_response(res).await);
        }
        res.json()
            .await
            .map_err(|e| Failure::Network(format!("the server's answer is not JSON: {e}")))
    }

    pub async fn get_json(&self, path: &str) -> Result<Value, Failure> {
        let res = self
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .map_err(Failure::network)?;
        Api::json_of(res).await
    }

    pub async fn post_json(&self, path: &str, body: Option<Value>) -> Result<Value, Failure> {
        let mut req = self.request(reqwest::Method::POST, path);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.map_err(Failure::network)?;
        Api::json_of(res).await
    }

    pub async fn delete(&self, path: &str) -> Result<(), Failure> {
        let res = self
            .request(reqwest::Method::DELETE, path)
            .send()
            .await
            .map_err(Failure::network)?;
        if res.status() == StatusCode::NO_CONTENT || res.status().is_success() {
            Ok(())
        } else {
            Err(Failure::from_response(res).await)
        }
    }

    /// Streams `file` as the `file` part of a multipart upload, with a progress bar.
    pub async fn upload(&self, file: &Path) -> Result<Value, Failure> {
        let (form, bar) = file_form(reqwest::multipart::Form::new(), file).await?;
        let res = self
            .request(reqwest::Method::POST, "/api/files")
            .multipart(form)
            .send()
            .await
            .map_err(Failure::network);
        bar.finish_and_clear();
        Api::json_of(res?).await
    }
}

/// `form` with `file` streamed as its last part, `file`, and the progress bar it moves.
async fn file_form(
    form: reqwest::multipart::Form,
    file: &Path,
) -> Result<(reqwest::multipart::Form, indicatif::ProgressBar), Failure> {
    let local = |e: std::io::Error| Failure::Local(format!("{}: {e}", file.display()));
    let handle = tokio::fs::File::open(file).await.map_err(local)?;
    let len = handle.metadata().await.map_err(local)?.len();
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Failure::Usage(format!("{} names no file", file.display())))?;
    let bar = crate::get::bar(len, &name);
    let progress = bar.clone();
    let stream = tokio_util::io::ReaderStream::new(handle).inspect_ok(move |chunk| {
        progress.inc(chunk.len() as u64);
    });
    let part =
        reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(stream), len)
            .file_name(name);
    Ok((form.part("file", part), bar))
}

/// Sends `file` through an upload link (`<app>/u/<secret>`): no token, the link is the
/// permission. The password, when the link has one, goes ahead of the file, as the server
/// checks it before it stores a byte. From [`crate::tus::THRESHOLD`] on, the file goes through
/// tus (`<link>/uploads`, the password in `Burnlink-Link-Password`) and resumes by itself
/// after up to `retries` failures in a row.
pub async fn upload_to(
    link: &str,
    file: &Path,
    password: Option<&str>,
    retries: u32,
) -> Result<Value, Failure> {
    let Some(at) = link.find("/u/") else {
        return Err(Failure::Usage(format!(
            "--to {link:?} is not an upload link (<app>/u/<secret>)"
        )));
    };
    let len = tokio::fs::metadata(file)
        .await
        .map_err(|e| Failure::Local(format!("{}: {e}", file.display())))?
        .len();
    if len >= crate::tus::THRESHOLD {
        let api = Api::anonymous(&link[..at])?;
        let to = crate::tus::Endpoint {
            api: &api,
            path: format!("{}/uploads", link[at..].trim_end_matches('/')),
            headers: password
                .map(|p| ("Burnlink-Link-Password", p.to_owned()))
                .into_iter()
                .collect(),
            remember: false,
        };
        return crate::tus::upload(&to, file, retries).await;
    }
    let client = client()?;
    let mut form = reqwest::multipart::Form::new();
    if let Some(password) = password {
        form = form.text("password", password.to_owned());
    }
    let (form, bar) = file_form(form, file).await?;
    let res = client
        .post(link)
        .header(reqwest::header::ACCEPT, "application/json")
        .multipart(form)
        .send()
        .await
        .map_err(Failure::network);
    bar.finish_and_clear();
    Api::json_of(res?).await
}
