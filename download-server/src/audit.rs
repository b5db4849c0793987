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
use std::path::Path;
use std::sync::mpsc::{self, SyncSender, TrySendError};

use actix_web::http::header::HeaderValue;
use prometheus::IntCounter;
use shared::Grant;
pub use shared::record::{DownloadRecord, Outcome};
use std::borrow::Cow;

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

/// One audit line as read back: the record type both servers agree on.
pub type Record = DownloadRecord<'static>;

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
        let line = DownloadRecord {
            time_ms: unix_ms(),
            outcome,
            jti: grant.map(|g| Cow::Borrowed(g.jti.as_str())),
            sub: grant.map(|g| Cow::Borrowed(g.sub.as_str())),
            file: grant.map(|g| Cow::Borrowed(g.file.as_str())),
            name: grant.map(|g| Cow::Borrowed(g.name.as_str())),
            status,
            bytes,
            client: client.peer,
            forwarded_for: header_str(&client.forwarded_for).map(Cow::Borrowed),
            user_agent: header_str(&client.user_agent).map(Cow::Borrowed),
            request_id: header_str(&client.request_id).map(Cow::Borrowed),
        };
        tracing::info!(
            target: "audit",
            outcome = outcome.as_str(),
            jti = line.jti.as_deref(),
            sub = line.sub.as_deref(),
            file = line.file.as_deref(),
            status,
            bytes,
            client = line.client.map(tracing::field::display),
            forwarded_for = line.forwarded_for.as_deref(),
            user_agent = line.user_agent.as_deref(),
            "download"
        );
        // The file's line, serialized once: a sink that queues JSON copies the same text.
        let json = self.file.as_ref().and_then(|_| {
            serde_json::to_string(&line)
                .inspect_err(|_| self.dropped.inc())
                .ok()
        });
        if let (Some(sink), Some(_)) = (&self.outcomes, grant) {
            sink.0.send(&line, json.as_deref());
        }
        let (Some(tx), Some(json)) = (&self.file, json) else {
            return;
        };
        let mut buf = json.into_bytes();
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

    /// Every attempt with a verified token reaches the outcome sink; attempts without one
    /// concern no link and do not.
    #[test]
    fn attempts_with_a_grant_reach_the_outcome_sink() {
        use std::sync::{Arc, Mutex};

        use crate::outcome::SinkHandle;
        use shared::record::{DownloadRecord, OutcomeEvent, OutcomeSink};

        #[derive(Default)]
        struct Collect(Mutex<Vec<(OutcomeEvent, Option<String>)>>);
        impl OutcomeSink for Collect {
            fn send(&self, record: &DownloadRecord<'_>, json: Option<&str>) {
                let record = record.clone().into_owned();
                self.0
                    .lock()
                    .unwrap()
                    .push((record, json.map(str::to_owned)));
            }
        }
        let sink = Arc::new(Collect::default());
        let dir = tempfile::tempdir().expect("temp dir");
        let path = shared::DataDir::new(dir.path()).audit_file("test");
        let log = AuditLog::open(Some(&path), IntCounter::new("x", "x").expect("counter"))
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
        log.close();
        let events = sink.0.lock().unwrap();
        assert_eq!(events.len(), 1);
        let (e, json) = &events[0];
        // The sink was handed the audit file's own line (serialized once), without its newline.
        let lines = std::fs::read_to_string(&path).expect("audit file");
        assert_eq!(json.as_deref(), lines.lines().nth(1));
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
        let path = shared::DataDir::new(dir.path()).audit_file("test");
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
