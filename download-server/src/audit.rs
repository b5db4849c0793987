//! The audit trail: one record per download attempt, whatever its outcome.
//!
//! Each record goes to two places:
//! - the `audit` tracing target (JSON with `--log-format json`), for a log shipper;
//! - an append-only JSON Lines file, `<data>/audit/downloads-<instance>.jsonl` by default
//!   (`--audit-log`), one file per download server so no two processes append to one file
//!   over a network file system. The app server reads the tail of these files to show a user
//!   their own recent downloads: the download server still knows no users and has no database;
//!   `sub` is all it writes, and it is what the token said.
//!
//! The request path never waits for the disk: a record is serialized, handed to a bounded
//! queue and written by one thread. A full queue or a failing disk drops the record, counts it
//! (`burnlink_audit_dropped_total`) and never refuses a download; the tracing event is still
//! emitted.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, SyncSender, TrySendError};

use actix_web::http::header::HeaderValue;
use prometheus::IntCounter;
use serde::{Deserialize, Serialize};
use shared::Grant;

/// How a download attempt ended: the `outcome` of the audit record and of
/// `burnlink_downloads_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The whole requested range was sent.
    Ok = 0,
    /// Burned, but the client went away before the whole range was sent.
    Partial,
    /// Already burned (410).
    Used,
    /// Expired (401).
    Expired,
    /// Missing, malformed, badly signed or otherwise invalid token (401).
    Invalid,
    /// The file is gone (404); nothing burned.
    NotFound,
    /// The burn store could not answer (503); nothing burned, nothing served.
    Unavailable,
    /// 416; nothing burned.
    RangeNotSatisfiable,
    /// A prefetch, refused (503); nothing burned.
    PrefetchDeclined,
    /// A server-side failure (500), e.g. the file could not be read.
    Error,
    /// The rest of an earlier download of the same token, sent whole (206) to the client that
    /// holds its resume secret: one download in several parts, not another download.
    Resumed,
    /// A resume refused because the file changed since the download started (412).
    FileChanged,
    /// A `HEAD` answered (a link checker, a scanner, a probe); nothing burned. Audited so the
    /// owner sees who looked at a link without using it.
    Head,
}

impl Outcome {
    /// Every outcome, in discriminant order (the metrics index by it).
    pub const ALL: [Outcome; 13] = [
        Outcome::Ok,
        Outcome::Partial,
        Outcome::Used,
        Outcome::Expired,
        Outcome::Invalid,
        Outcome::NotFound,
        Outcome::Unavailable,
        Outcome::RangeNotSatisfiable,
        Outcome::PrefetchDeclined,
        Outcome::Error,
        Outcome::Resumed,
        Outcome::FileChanged,
        Outcome::Head,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Partial => "partial",
            Outcome::Used => "used",
            Outcome::Expired => "expired",
            Outcome::Invalid => "invalid",
            Outcome::NotFound => "not_found",
            Outcome::Unavailable => "unavailable",
            Outcome::RangeNotSatisfiable => "range_not_satisfiable",
            Outcome::PrefetchDeclined => "prefetch_declined",
            Outcome::Error => "error",
            Outcome::Resumed => "resumed",
            Outcome::FileChanged => "file_changed",
            Outcome::Head => "head",
        }
    }
}

/// Who asked, captured when the request arrives (the record of a streamed download is written
/// when the body ends, after the request is gone). Cloning header values shares their bytes.
#[derive(Debug, Clone, Default)]
pub struct Client {
    /// The TCP peer: the reverse proxy, when there is one.
    pub peer: Option<IpAddr>,
    /// `X-Forwarded-For` as received, unverified: whatever the proxy (or the client) said.
    pub forwarded_for: Option<HeaderValue>,
    pub user_agent: Option<HeaderValue>,
    /// The request id the response carried as `X-Request-Id`.
    pub request_id: Option<HeaderValue>,
}

/// One audit line, as written. The token itself is never part of it.
#[derive(Serialize)]
struct Line<'a> {
    time_ms: u64,
    outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    jti: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    status: u16,
    bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    client: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    forwarded_for: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
}

/// One audit line, as read back (by the app server's "recent downloads").
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct Record {
    /// Unix time of the end of the attempt, in milliseconds.
    pub time_ms: u64,
    pub outcome: Outcome,
    #[serde(default)]
    pub jti: Option<String>,
    #[serde(default)]
    pub sub: Option<String>,
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    pub status: u16,
    pub bytes: u64,
}

/// The audit file name of one download server instance.
pub fn file_name(instance: &str) -> String {
    format!("downloads-{instance}.jsonl")
}

/// Where the audit files of every download server sharing `data_dir` live.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("audit")
}

/// Lines waiting for the writer thread, at most.
const QUEUE: usize = 4096;

/// The audit sink of one server.
pub struct AuditLog {
    file: Option<SyncSender<Vec<u8>>>,
    writer: Option<std::thread::JoinHandle<()>>,
    dropped: IntCounter,
    /// Where outcomes of attempts with a verified token also go (see [`crate::outcome`]).
    outcomes: Option<crate::outcome::SinkHandle>,
}

impl AuditLog {
    /// Opens (creating it and its directory) `path` for appending and starts its writer
    /// thread; `None`: the tracing target only.
    pub fn open(path: Option<&Path>, dropped: IntCounter) -> std::io::Result<AuditLog> {
        let Some(path) = path else {
            return Ok(AuditLog {
                file: None,
                writer: None,
                dropped,
                outcomes: None,
            });
        };
        if let Some(parent) = path.parent() {
            server_kit::permissions::create_dir_all(parent)?;
        }
        let mut file = server_kit::permissions::create_options(server_kit::permissions::AUDIT_MODE)
            .append(true)
            .create(true)
            .open(path)?;
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(QUEUE);
        let lost = dropped.clone();
        let shown = path.display().to_string();
        let writer = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || {
                // Lines are written in batches, one `write` of whole lines on an `O_APPEND`
                // file (lines from a restart overlapping its predecessor do not interleave).
                // The pause between batches means a busy server wakes this thread about 50
                // times a second, not once per download: profiling showed the per-line
                // wake-ups costing a tenth of the server's CPU.
                let mut batch = Vec::with_capacity(64 * 1024);
                while let Ok(line) = rx.recv() {
                    batch.extend_from_slice(&line);
                    let mut lines = 1;
                    for line in rx.try_iter() {
                        batch.extend_from_slice(&line);
                        lines += 1;
                    }
                    if let Err(e) = file.write_all(&batch) {
                        lost.inc_by(lines);
                        tracing::error!(error = %e, path = %shown, "audit lines not written");
                    }
                    batch.clear();
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            })?;
        Ok(AuditLog {
            file: Some(tx),
            writer: Some(writer),
            dropped,
            outcomes: None,
        })
    }

    /// Also hands every attempt that carried a verified token to `sink`.
    pub fn with_outcomes(mut self, sink: Option<crate::outcome::SinkHandle>) -> AuditLog {
        self.outcomes = sink;
        self
    }

    /// Writes what is queued and stops the writer.
    pub fn close(mut self) {
        self.file = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }

    /// Records one attempt: the `audit` tracing event, then the file line. Never blocks.
    pub fn record(
        &self,
        outcome: Outcome,
        grant: Option<&Grant>,
        status: u16,
        bytes: u64,
        client: &Client,
    ) {
        let line = Line {
            time_ms: unix_ms(),
            outcome,
            jti: grant.map(|g| g.jti.as_str()),
            sub: grant.map(|g| g.sub.as_str()),
            file: grant.map(|g| g.file.as_str()),
            name: grant.map(|g| g.name.as_str()),
            status,
            bytes,
            client: client.peer,
            forwarded_for: header_str(&client.forwarded_for),
            user_agent: header_str(&client.user_agent),
            request_id: header_str(&client.request_id),
        };
        tracing::info!(
            target: "audit",
            outcome = outcome.as_str(),
            jti = line.jti,
            sub = line.sub,
            file = line.file,
            status,
            bytes,
            client = line.client.map(tracing::field::display),
            forwarded_for = line.forwarded_for,
            user_agent = line.user_agent,
            "download"
        );
        if let (Some(sink), Some(grant)) = (&self.outcomes, grant) {
            sink.0.send(crate::outcome::OutcomeEvent {
                time_ms: line.time_ms,
                outcome,
                status,
                bytes,
                jti: Some(grant.jti.as_str().to_owned()),
                sub: Some(grant.sub.as_str().to_owned()),
                file: Some(grant.file.as_str().to_owned()),
                client: client.peer,
                forwarded_for: line.forwarded_for.map(str::to_owned),
                user_agent: line.user_agent.map(str::to_owned),
            });
        }
        let Some(tx) = &self.file else {
            return;
        };
        let mut buf = Vec::with_capacity(256);
        if serde_json::to_writer(&mut buf, &line).is_err() {
            self.dropped.inc();
            return;
        }
        buf.push(b'\n');
        match tx.try_send(buf) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }
}

fn header_str(value: &Option<HeaderValue>) -> Option<&str> {
    value.as_ref().and_then(|v| v.to_str().ok())
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_listed_in_discriminant_order() {
        for (i, outcome) in Outcome::ALL.iter().enumerate() {
            assert_eq!(*outcome as usize, i, "{outcome:?}");
            let json = serde_json::to_string(outcome).expect("serializes");
            assert_eq!(json, format!("\"{}\"", outcome.as_str()));
        }
    }

    /// Every attempt with a verified token reaches the outcome sink; attempts without one
    /// concern no link and do not.
    #[test]
    fn attempts_with_a_grant_reach_the_outcome_sink() {
        use std::sync::{Arc, Mutex};

        use crate::outcome::{OutcomeEvent, OutcomeSink, SinkHandle};

        #[derive(Default)]
        struct Collect(Mutex<Vec<OutcomeEvent>>);
        impl OutcomeSink for Collect {
            fn send(&self, event: OutcomeEvent) {
                self.0.lock().unwrap().push(event);
            }
        }
        let sink = Arc::new(Collect::default());
        let log = AuditLog::open(None, IntCounter::new("x", "x").expect("counter"))
            .expect("opens")
            .with_outcomes(Some(SinkHandle(sink.clone())));
        let grant = Grant {
            jti: shared::Jti::generate(),
            sub: "u1".into(),
            file: shared::StorageKey::generate(),
            name: shared::DownloadName::sanitize("a.txt"),
            iat: 1,
            exp: 2,
        };
        let client = Client {
            peer: Some("10.0.0.9".parse().unwrap()),
            user_agent: Some(HeaderValue::from_static("curl/8")),
            ..Client::default()
        };
        log.record(Outcome::Invalid, None, 401, 0, &client);
        log.record(Outcome::Partial, Some(&grant), 200, 1234, &client);
        let events = sink.0.lock().unwrap();
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(
            (e.outcome, e.status, e.bytes),
            (Outcome::Partial, 200, 1234)
        );
        assert_eq!(e.jti.as_deref(), Some(grant.jti.as_str()));
        assert_eq!(e.sub.as_deref(), Some("u1"));
        assert_eq!(e.file.as_deref(), Some(grant.file.as_str()));
        assert_eq!(e.client, client.peer);
        assert_eq!(e.user_agent.as_deref(), Some("curl/8"));
        // As the stream carries it: JSON, read back the same.
        let json = serde_json::to_string(e).unwrap();
        assert_eq!(&serde_json::from_str::<OutcomeEvent>(&json).unwrap(), e);
    }

    #[test]
    fn a_written_line_reads_back_as_a_record() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("audit").join(file_name("test"));
        let log = AuditLog::open(Some(&path), IntCounter::new("x", "x").expect("counter"))
            .expect("opens");
        let client = Client {
            user_agent: Some(HeaderValue::from_static("curl/8")),
            ..Client::default()
        };
        log.record(Outcome::Invalid, None, 401, 0, &client);
        log.close();
        let text = std::fs::read_to_string(&path).expect("audit file");
        let record: Record = serde_json::from_str(text.trim_end()).expect("one JSON line");
        assert_eq!(record.outcome, Outcome::Invalid);
        assert_eq!((record.status, record.bytes, record.sub), (401, 0, None));
        assert!(text.contains("\"user_agent\":\"curl/8\""), "{text}");
    }
}
