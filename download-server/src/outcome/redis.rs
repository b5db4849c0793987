//! Outcomes to a capped Redis Stream, `burnlink:outcomes`: one `XADD … MAXLEN ~ N * e <lines>`
//! per batch of attempts, their records as JSON Lines ([`shared::record::stream_entry`]). App
//! servers read it with one consumer group (`XREADGROUP`, `XACK`), so each outcome is stored
//! once however many app servers there are; the cap bounds Redis memory if no app server
//! reads for a while (the oldest entries go first).
//!
//! The request path only queues the event; one task writes what is queued, one entry at a
//! time. A full queue or an unreachable Redis drops events (logged, counted in
//! `burnlink_outcomes_dropped_total`): a download is never slowed or refused for it.

use prometheus::IntCounter;
use redis::ConnectionInfo;
use redis::aio::ConnectionManager;
use tokio::sync::mpsc;

use super::OutcomeSink;
use shared::record::{DownloadRecord, stream_entry, stream_maxlen};

pub use shared::record::OUTCOME_STREAM as STREAM_KEY;
/// Events waiting for the writer task, at most.
const QUEUE: usize = 4096;
/// Events in one entry, at most.
const BATCH: usize = 256;

pub struct RedisStreamSink {
    /// Each record as the stream's JSON.
    tx: mpsc::Sender<String>,
    dropped: IntCounter,
}

impl RedisStreamSink {
    /// Starts the writer task on the current runtime. Connects on first use, and again after
    /// a failure.
    pub fn start(
        info: ConnectionInfo,
        maxlen: u64,
        dropped: IntCounter,
    ) -> Result<RedisStreamSink, redis::RedisError> {
        let client = redis::Client::open(info)?;
        let (tx, mut rx) = mpsc::channel::<String>(QUEUE);
        let lost = dropped.clone();
        tokio::spawn(async move {
            let mut conn: Option<ConnectionManager> = None;
            let mut batch = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut batch, BATCH).await > 0 {
                if conn.is_none() {
                    conn = ConnectionManager::new(client.clone()).await.ok();
                }
                let Some(c) = conn.as_mut() else {
                    lost.inc_by(batch.len() as u64);
                    tracing::warn!(events = batch.len(), "outcome stream unreachable: dropped");
                    batch.clear();
                    continue;
                };
                let added = redis::cmd("XADD")
                    .arg(STREAM_KEY)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(stream_maxlen(maxlen, batch.len()))
                    .arg("*")
                    .arg("e")
                    .arg(stream_entry(&batch))
                    .query_async::<()>(c)
                    .await;
                if let Err(e) = added {
                    lost.inc_by(batch.len() as u64);
                    tracing::warn!(error = %e, events = batch.len(), "outcomes not written");
                    conn = None;
                }
                batch.clear();
            }
        });
        Ok(RedisStreamSink { tx, dropped })
    }
}

impl OutcomeSink for RedisStreamSink {
    fn send(&self, record: &DownloadRecord<'_>, json: Option<&str>) {
        super::queue_json(&self.tx, record, json, &self.dropped);
    }
}
