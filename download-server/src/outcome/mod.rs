//! Where download outcomes go besides the audit log. The contract (the record, the
//! [`OutcomeSink`] trait, the "served" rule) is `shared::record`'s, which both servers read;
//! this server's own backend is [`redis::RedisStreamSink`], a capped Redis Stream the app
//! servers read with a consumer group (a fleet whose burn store is Redis). The all-in-one app
//! hands its own in-process sink over instead ([`crate::Embedded`]).

pub mod redis;

use std::sync::Arc;

use prometheus::IntCounter;
use shared::record::DownloadRecord;
use tokio::sync::mpsc;

pub use shared::record::{OutcomeEvent, OutcomeSink};

/// What both Redis sinks do with a record: queue it as the stream's JSON, on the download's
/// own thread (one allocation): `json` copied when the audit line made it, else serialized
/// here. A record that cannot be written or queued is counted in `dropped`.
pub(crate) fn queue_json(
    tx: &mpsc::Sender<String>,
    record: &DownloadRecord<'_>,
    json: Option<&str>,
    dropped: &IntCounter,
) {
    let json = json.map_or_else(|| serde_json::to_string(record), |j| Ok(j.to_owned()));
    let queued = json.map(|json| tx.try_send(json));
    if !matches!(queued, Ok(Ok(()))) {
        dropped.inc();
    }
}

/// A sink handed over in `Config` (`#[arg(skip)]`): cloneable, and `Debug` without contents.
#[derive(Clone)]
pub struct SinkHandle(pub Arc<dyn OutcomeSink>);

impl std::fmt::Debug for SinkHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SinkHandle")
    }
}
