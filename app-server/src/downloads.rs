//! A user's recent downloads: from the app's database (`download_events`) when download
//! outcomes reach it (all-in-one, or `--outcomes-redis`; see [`crate::outcomes`]), else from
//! the tail of the download servers' audit files, as below.
//!
//! The download server knows no users and has no database: it appends one JSON line per
//! attempt ([`shared::record::DownloadRecord`]) to `<data>/audit/downloads-<instance>.jsonl`,
//! with `sub` = the user id the app put in the token. The app server, which shares the data
//! directory, reads only the *tail* of each file (the last [`TAIL_BYTES`]) and keeps the
//! lines of the logged-in user. So what a user sees is bounded in cost and honest about its
//! reach: their attempts among the most recent ones, not their whole history. Once a file is
//! deleted its name is no longer shown: its attempts stay, without the name.

use std::borrow::Cow;
use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Serialize;
use shared::record::{DownloadRecord, Outcome};
use sqlx::AnyPool;

use crate::error::AppError;

/// Bytes read from the end of each audit file (about 1,000 lines).
pub const TAIL_BYTES: u64 = 256 * 1024;
/// Audit files read at most (one per download server instance).
const MAX_FILES: usize = 64;
/// Entries shown.
pub const SHOWN: usize = 20;

/// One download attempt on one of the user's links, as the user sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RecentDownload {
    /// Unix seconds.
    pub time: i64,
    /// `ok`, `partial`, `used`, `expired`, `not_found`, …
    #[schema(value_type = String)]
    pub outcome: Outcome,
    /// The file name the link carried; `None` once the file is deleted.
    pub name: Option<String>,
    pub bytes: u64,
    pub jti: Option<String>,
    /// The storage key, to tell deleted files; not shown.
    #[serde(skip)]
    file: Option<String>,
}

/// The user's most recent download attempts, newest first, at most [`SHOWN`]: from the
/// database when `stored` (outcomes reach it), else from the audit files' tails. A missing
/// audit directory is simply no history; an unreadable file is skipped (and logged).
pub async fn recent(
    db: &AnyPool,
    audit_dir: &Path,
    user_id: &str,
    stored: bool,
) -> Result<Vec<RecentDownload>, AppError> {
    if stored {
        return recent_stored(db, user_id).await;
    }
    let dir = audit_dir.to_owned();
    let user = user_id.to_owned();
    let mut recent = tokio::task::spawn_blocking(move || recent_blocking(&dir, &user))
        .await
        .map_err(|e| AppError::Internal(format!("reading audit files: {e}")))?;
    if recent.is_empty() {
        return Ok(recent);
    }
    let kept: Vec<(String,)> = sqlx::query_as("SELECT storage_key FROM files WHERE user_id = $1")
        .bind(user_id)
        .fetch_all(db)
        .await?;
    let kept: HashSet<String> = kept.into_iter().map(|(key,)| key).collect();
    for download in &mut recent {
        if !download.file.as_ref().is_some_and(|key| kept.contains(key)) {
            download.name = None;
        }
    }
    Ok(recent)
}

/// The user's attempts as stored, with the name of each file the user still has.
async fn recent_stored(db: &AnyPool, user_id: &str) -> Result<Vec<RecentDownload>, AppError> {
    type Row = (
        i64,
        String,
        i64,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT e.time_ms, e.outcome, e.bytes, e.jti, e.storage_key, f.name \
         FROM download_events e LEFT JOIN files f \
         ON f.storage_key = e.storage_key AND f.user_id = e.user_id \
         WHERE e.user_id = $1 ORDER BY e.time_ms DESC LIMIT $2",
    )
    .bind(user_id)
    .bind(SHOWN as i64)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(time_ms, outcome, bytes, jti, file, name)| {
            let outcome: Outcome =
                serde_json::from_value(serde_json::Value::String(outcome)).ok()?;
            Some(RecentDownload {
                time: time_ms / 1000,
                outcome,
                name,
                bytes: u64::try_from(bytes).unwrap_or(0),
                jti,
                file,
            })
        })
        .collect())
}

fn recent_blocking(dir: &Path, user_id: &str) -> Vec<RecentDownload> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("downloads-") && n.ends_with(".jsonl"))
        })
        .take(MAX_FILES)
        .collect();
    let mut found = Vec::new();
    for path in files {
        match tail(&path, TAIL_BYTES) {
            Ok(text) => found.extend(
                text.lines()
                    .filter_map(|line| serde_json::from_str::<DownloadRecord<'static>>(line).ok())
                    .filter(|r| r.sub.as_deref() == Some(user_id))
                    .map(|r| RecentDownload {
                        time: i64::try_from(r.time_ms / 1000).unwrap_or(i64::MAX),
                        outcome: r.outcome,
                        name: r.name.map(Cow::into_owned),
                        bytes: r.bytes,
                        jti: r.jti.map(Cow::into_owned),
                        file: r.file.map(Cow::into_owned),
                    }),
            ),
            Err(e) => tracing::warn!(error = %e, path = %path.display(), "audit file unreadable"),
        }
    }
    found.sort_by_key(|d| std::cmp::Reverse(d.time));
    found.truncate(SHOWN);
    found
}

/// The last `max` bytes of a file, from the first whole line within them.
fn tail(path: &Path, max: u64) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(max);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::with_capacity(usize::try_from(len - start).unwrap_or(0));
    file.take(max).read_to_end(&mut bytes)?;
    if start > 0 {
        // Cut mid-line: drop the partial first line.
        let first = bytes
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |i| i + 1);
        bytes.drain(..first);
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_users_lines_of_the_tail_newest_first() {
        let dir = tempfile::tempdir().expect("temp dir");
        let line = |t: u64, sub: &str, outcome: &str| {
            format!(
                "{{\"time_ms\":{t},\"outcome\":\"{outcome}\",\"sub\":\"{sub}\",\"name\":\"a.txt\",\
                 \"status\":200,\"bytes\":3}}\n"
            )
        };
        // Old lines beyond the tail, then a partial line, then recent ones.
        let mut text = line(1_000, "u1", "ok").repeat(10_000);
        text.push_str("not json\n");
        text.push_str(&line(2_000_000, "u2", "ok"));
        text.push_str(&line(3_000_000, "u1", "used"));
        text.push_str(&line(4_000_000, "u1", "ok"));
        std::fs::write(dir.path().join("downloads-a.jsonl"), &text).expect("write");
        std::fs::write(dir.path().join("other.log"), line(5_000_000, "u1", "ok")).expect("write");

        let found = recent_blocking(dir.path(), "u1");
        assert_eq!(found.len(), SHOWN);
        assert_eq!((found[0].time, found[0].outcome), (4_000, Outcome::Ok));
        assert_eq!((found[1].time, found[1].outcome), (3_000, Outcome::Used));
        assert!(found[2..].iter().all(|d| d.time == 1));
        assert!(recent_blocking(&dir.path().join("missing"), "u1").is_empty());
    }
}
