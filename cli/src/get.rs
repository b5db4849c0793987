//! `burnlink get URL -o FILE`: a one-time URL (`…/d/<token>`) is downloaded as is; a share URL
//! (`…/s/<secret>`) is first POSTed, as docs/SHARES.md says, and the one-time link it answers
//! with (303) is downloaded. When the connection breaks, the rest is fetched with `Range`,
//! `If-Range: <ETag>` and the download server's resume cookie, which only the client that
//! received the first response holds (docs/TOKEN.md, "Resuming a download").

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::header::{CONTENT_RANGE, ETAG, IF_RANGE, LOCATION, RANGE};
use reqwest::{Client, StatusCode};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use crate::api::Failure;

/// Resumes tried after the first response before giving up.
const MAX_RESUMES: u32 = 5;

pub struct Done {
    pub bytes: u64,
    pub resumed: u32,
}

/// A progress bar on stderr when a person watches; hidden otherwise.
pub fn bar(len: u64, name: &str) -> ProgressBar {
    if !crate::show_progress() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(name.to_owned());
    bar
}

fn is_share(url: &reqwest::Url) -> bool {
    let segments: Vec<&str> = url
        .path_segments()
        .map(Iterator::collect)
        .unwrap_or_default();
    segments.len() >= 2 && segments[segments.len() - 2] == "s"
}

/// A share's refusal: the visitor page is HTML, so the message comes from the status.
fn share_refusal(status: StatusCode) -> Failure {
    let (code, message) = match status {
        StatusCode::NOT_FOUND => ("not_found", "there is no such share"),
        StatusCode::GONE => ("gone", "this share is no longer available"),
        StatusCode::UNAUTHORIZED => (
            "wrong_password",
            "wrong password for this share (--password-stdin)",
        ),
        StatusCode::TOO_MANY_REQUESTS => ("throttled", "too many wrong passwords; try again later"),
        StatusCode::FORBIDDEN => ("forbidden", "the share refused the request"),
        _ => ("error", "the share could not be used"),
    };
    Failure::Refused {
        status: status.as_u16(),
        code: code.into(),
        message: message.into(),
    }
}

/// Takes one download of a share: its one-time URL.
async fn take_share(
    client: &Client,
    url: &reqwest::Url,
    password: Option<&str>,
) -> Result<String, Failure> {
    let mut req = client.post(url.clone());
    req = match password {
        Some(password) => req.form(&[("password", password)]),
        None => req.header(reqwest::header::CONTENT_LENGTH, "0"),
    };
    let res = req.send().await.map_err(Failure::network)?;
    if res.status() != StatusCode::SEE_OTHER {
        return Err(share_refusal(res.status()));
    }
    let location = res
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Failure::Network("the share answered without a link".into()))?;
    url.join(location)
        .map(String::from)
        .map_err(|e| Failure::Network(format!("the share's link is not a URL: {e}")))
}

fn part_path(output: &Path) -> PathBuf {
    let mut name = output.as_os_str().to_owned();
    name.push(".part");
    PathBuf::from(name)
}

/// The total size from `Content-Range: bytes A-B/N`, if the range starts at `from`.
fn range_total(value: &str, from: u64) -> Option<u64> {
    let rest = value.strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let start: u64 = range.split_once('-')?.0.parse().ok()?;
    (start == from).then(|| total.parse().ok())?
}

pub async fn download(url: &str, output: &Path, password: Option<&str>) -> Result<Done, Failure> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| Failure::Usage(format!("{url:?} is not a URL: {e}")))?;
    // The resume cookie (`blr_<jti>`) is kept in this client's jar.
    let client = Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(Failure::network)?;
    let url = if is_share(&parsed) {
        take_share(&client, &parsed, password).await?
    } else {
        url.to_owned()
    };

    let local = |e: std::io::Error| Failure::Local(format!("{}: {e}", output.display()));
    let part = part_path(output);
    let mut file = tokio::fs::File::create(&part).await.map_err(local)?;
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let bar = bar(0, &name);
    let mut written: u64 = 0;
    let mut etag: Option<String> = None;
    let mut resumed: u32 = 0;
    let result = loop {
        let mut req = client.get(&url);
        if written > 0 {
            req = req.header(RANGE, format!("bytes={written}-"));
            if let Some(etag) = &etag {
                req = req.header(IF_RANGE, etag);
            }
        }
        let res = match req.send().await {
            Ok(res) => res,
            Err(e) if written > 0 && resumed < MAX_RESUMES => {
                resumed += 1;
                tokio::time::sleep(Duration::from_millis(200 * u64::from(resumed))).await;
                note_retry(&e);
                continue;
            }
            Err(e) => break Err(Failure::network(e)),
        };
        let total: Option<u64>;
        match res.status() {
            StatusCode::OK => {
                if written > 0 {
                    // The file changed or the server ignored the range: start again.
                    file.set_len(0).await.map_err(local)?;
                    file.seek(std::io::SeekFrom::Start(0))
                        .await
                        .map_err(local)?;
                    written = 0;
                    bar.set_position(0);
                }
                etag = res
                    .headers()
                    .get(ETAG)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                total = res.content_length();
            }
            StatusCode::PARTIAL_CONTENT => {
                let range = res
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok());
                match range.and_then(|r| range_total(r, written)) {
                    Some(n) => total = Some(n),
                    None => {
                        break Err(Failure::Network(
                            "the server resumed at the wrong place".into(),
                        ));
                    }
                }
            }
            _ => break Err(Failure::from_response(res).await),
        }
        if let Some(total) = total {
            bar.set_length(total);
        }
        let mut body = res.bytes_stream();
        let mut broke = None;
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(chunk) => {
                    file.write_all(&chunk).await.map_err(local)?;
                    written += chunk.len() as u64;
                    bar.set_position(written);
                }
                Err(e) => {
                    broke = Some(e);
                    break;
                }
            }
        }
        let short = total.is_some_and(|t| written < t);
        if broke.is_none() && !short {
            break Ok(());
        }
        if resumed >= MAX_RESUMES {
            break Err(Failure::Network(format!(
                "the download broke off after {written} bytes, {resumed} resumes tried; the rest is in {}",
                part.display()
            )));
        }
        resumed += 1;
    };
    bar.finish_and_clear();
    result?;
    file.flush().await.map_err(local)?;
    drop(file);
    tokio::fs::rename(&part, output).await.map_err(local)?;
    Ok(Done {
        bytes: written,
        resumed,
    })
}

/// What a retried request failed with, for a person watching.
fn note_retry(e: &reqwest::Error) {
    if crate::show_progress() {
        eprintln!("burnlink: retrying: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_urls_are_told_apart() {
        let url = |s: &str| reqwest::Url::parse(s).unwrap();
        assert!(is_share(&url("https://files.example/s/abc")));
        assert!(is_share(&url("https://files.example/app/s/abc")));
        assert!(!is_share(&url("https://dl.example/d/eyJ.x.y")));
    }

    #[test]
    fn content_range() {
        assert_eq!(range_total("bytes 100-199/200", 100), Some(200));
        assert_eq!(range_total("bytes 0-199/200", 100), None);
        assert_eq!(range_total("bytes 100-199/*", 100), None);
    }
}
