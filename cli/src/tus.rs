//! `burnlink upload` of a large file: tus 1.0 (`/api/uploads`, or `<link>/uploads` for
//! `--to LINK`; docs/UPLOADS.md), so a broken connection costs only the request it broke. The
//! upload resumes by itself: after a failure it asks the server where the upload stands (HEAD)
//! and sends the rest from there, a bounded number of times in a row. With a token it also
//! resumes across runs: the upload's URL is remembered under `$XDG_STATE_HOME/burnlink/uploads`
//! (else `~/.local/state/burnlink/uploads`), keyed by the server, the file's path, size and
//! modification time, and forgotten once the file is whole. An upload through a link is not
//! remembered: its URL holds the link's secret, which is not written to disk.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::api::{Api, Failure, segment};

/// Files from this size on go through tus; smaller ones in one multipart request.
pub const THRESHOLD: u64 = 4 * 1024 * 1024;
/// Bytes sent per PATCH: what one broken request can cost.
const CHUNK: u64 = 16 * 1024 * 1024;

/// Where a tus upload is created: the creation endpoint's path on `api`, the creation's extra
/// headers (a link's password), and whether its URL may be remembered across runs.
pub struct Endpoint<'a> {
    pub api: &'a Api,
    pub path: String,
    pub headers: Vec<(&'static str, String)>,
    pub remember: bool,
}

impl<'a> Endpoint<'a> {
    /// The owner's own `/api/uploads` (a token).
    pub fn own(api: &'a Api) -> Endpoint<'a> {
        Endpoint {
            api,
            path: "/api/uploads".into(),
            headers: Vec::new(),
            remember: true,
        }
    }
}

/// Uploads `file` through tus, resuming after up to `retries` failures in a row. Returns the
/// file as `{"id", "name", "size"}` (no `id` through a link: the sender learns none).
pub async fn upload(to: &Endpoint<'_>, file: &Path, retries: u32) -> Result<Value, Failure> {
    let api = to.api;
    let local = |e: std::io::Error| Failure::Local(format!("{}: {e}", file.display()));
    let meta = tokio::fs::metadata(file).await.map_err(local)?;
    let len = meta.len();
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Failure::Usage(format!("{} names no file", file.display())))?;
    let canonical = tokio::fs::canonicalize(file).await.map_err(local)?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let key = format!(
        "{} {} {len} {modified}",
        segment(api.base()),
        segment(&canonical.to_string_lossy())
    );
    let memory = Remembered::at_default().filter(|_| to.remember);
    let bar = crate::get::bar(len, &name);
    let mut location = memory.as_ref().and_then(|m| m.get(&key));
    let mut failures = 0;
    let mut offset = None;
    let result = loop {
        let step = async {
            let here = match &location {
                Some(here) => here.clone(),
                None => {
                    let here = create(to, len, &name).await?;
                    if let Some(memory) = &memory {
                        memory.put(&key, &here);
                    }
                    location = Some(here.clone());
                    offset = Some(0);
                    here
                }
            };
            let at = match offset {
                Some(at) => at,
                None => match head(api, &here).await? {
                    Where::At(at) if at == len => return Ok(Some(None)),
                    Where::At(at) => at,
                    Where::Done(id) => return Ok(Some(Some(id))),
                    Where::Gone => {
                        location = None;
                        return Ok(None);
                    }
                },
            };
            bar.set_position(at);
            let (next, id) = patch(api, &here, file, at, len).await?;
            offset = Some(next);
            bar.set_position(next);
            Ok::<_, Failure>((id.is_some() || next == len).then_some(id))
        };
        match step.await {
            Ok(Some(id)) => break Ok(id),
            Ok(None) => failures = 0,
            Err(e @ (Failure::Refused { .. } | Failure::Usage(_) | Failure::Local(_)))
                if !retryable(&e) =>
            {
                break Err(e);
            }
            Err(e) => {
                failures += 1;
                if failures > retries {
                    break Err(e);
                }
                eprintln!("upload interrupted ({e}); resuming");
                offset = None;
                tokio::time::sleep(Duration::from_millis(500 * u64::from(failures.min(10)))).await;
            }
        }
    };
    bar.finish_and_clear();
    let id = result?;
    if let Some(memory) = &memory {
        memory.forget(&key);
    }
    Ok(match id {
        Some(id) => json!({ "id": id, "name": name, "size": len }),
        None => json!({ "name": name, "size": len }),
    })
}

/// A refusal worth another try: the upload busy (a cut request still holds it), its offset
/// moved (ask again), the server failing.
fn retryable(e: &Failure) -> bool {
    match e {
        Failure::Refused { status, .. } => *status == 409 || *status == 423 || *status >= 500,
        _ => false,
    }
}

/// Where an upload stands.
enum Where {
    At(u64),
    Done(String),
    /// Expired or unknown: start again.
    Gone,
}

fn tus(api: &Api, method: Method, path: &str) -> reqwest::RequestBuilder {
    api.request(method, path).header("Tus-Resumable", "1.0.0")
}

async fn create(to: &Endpoint<'_>, len: u64, name: &str) -> Result<String, Failure> {
    let mut req = tus(to.api, Method::POST, &to.path)
        .header("Upload-Length", len)
        .header(
            "Upload-Metadata",
            format!("filename {}", base64(name.as_bytes())),
        );
    for (name, value) in &to.headers {
        req = req.header(*name, value);
    }
    let res = req.send().await.map_err(Failure::network)?;
    if res.status() != StatusCode::CREATED {
        return Err(Failure::from_response(res).await);
    }
    header(&res, "Location")
        .ok_or_else(|| Failure::Network("the server's answer has no Location".into()))
}

async fn head(api: &Api, location: &str) -> Result<Where, Failure> {
    let res = tus(api, Method::HEAD, location)
        .send()
        .await
        .map_err(Failure::network)?;
    match res.status() {
        StatusCode::OK => Ok(match header(&res, "Burnlink-File-Id") {
            Some(id) => Where::Done(id),
            None => Where::At(offset_of(&res)?),
        }),
        StatusCode::NOT_FOUND | StatusCode::GONE => Ok(Where::Gone),
        _ => Err(Failure::from_response(res).await),
    }
}

/// Sends up to [`CHUNK`] bytes of `file` from `at`; the new offset, and the file's id when
/// that was the last byte.
async fn patch(
    api: &Api,
    location: &str,
    file: &Path,
    at: u64,
    len: u64,
) -> Result<(u64, Option<String>), Failure> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let local = |e: std::io::Error| Failure::Local(format!("{}: {e}", file.display()));
    let mut handle = tokio::fs::File::open(file).await.map_err(local)?;
    handle
        .seek(std::io::SeekFrom::Start(at))
        .await
        .map_err(local)?;
    let size = CHUNK.min(len - at);
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(handle.take(size)));
    let res = tus(api, Method::PATCH, location)
        .header("Upload-Offset", at)
        .header("Content-Type", "application/offset+octet-stream")
        .header("Content-Length", size)
        .body(body)
        .send()
        .await
        .map_err(Failure::network)?;
    if res.status() != StatusCode::NO_CONTENT {
        return Err(Failure::from_response(res).await);
    }
    Ok((offset_of(&res)?, header(&res, "Burnlink-File-Id")))
}

fn header(res: &Response, name: &str) -> Option<String> {
    res.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn offset_of(res: &Response) -> Result<u64, Failure> {
    header(res, "Upload-Offset")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Failure::Network("the server's answer has no Upload-Offset".into()))
}

/// Standard base64 (tus metadata values).
fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Upload URLs remembered between runs: a line per upload, `key<TAB>location`. Neither holds a
/// secret (the URL needs the token to use), but the file is private to its user.
struct Remembered {
    file: PathBuf,
}

impl Remembered {
    /// `$XDG_STATE_HOME/burnlink/uploads`, else `~/.local/state/burnlink/uploads`; `None`
    /// without either (the upload still resumes within this run).
    fn at_default() -> Option<Remembered> {
        let state = std::env::var_os("XDG_STATE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state"))
            })?;
        Some(Remembered {
            file: state.join("burnlink").join("uploads"),
        })
    }

    fn lines(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(&self.file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn get(&self, key: &str) -> Option<String> {
        self.lines()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    fn put(&self, key: &str, location: &str) {
        let mut lines = self.lines();
        lines.retain(|(k, _)| k != key);
        lines.push((key.to_owned(), location.to_owned()));
        self.write(&lines);
    }

    fn forget(&self, key: &str) {
        let mut lines = self.lines();
        lines.retain(|(k, _)| k != key);
        self.write(&lines);
    }

    /// Rewrites the file whole (a temporary file renamed over it); a failure only costs
    /// resuming across runs, so it is said, not fatal.
    fn write(&self, lines: &[(String, String)]) {
        let written = (|| {
            let dir = self
                .file
                .parent()
                .ok_or_else(|| std::io::Error::other("no folder"))?;
            std::fs::create_dir_all(dir)?;
            let temp = dir.join(format!(".uploads-{}", std::process::id()));
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut out = options.open(&temp)?;
            for (k, v) in lines {
                std::io::Write::write_all(&mut out, format!("{k}\t{v}\n").as_bytes())?;
            }
            std::fs::rename(&temp, &self.file)
        })();
        if let Err(e) = written {
            eprintln!(
                "could not remember the upload in {}: {e}",
                self.file.display()
            );
        }
    }
}
