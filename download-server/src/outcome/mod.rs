//! Where download outcomes go besides the audit log: the seam through which the app server
//! learns what happened to the links it minted (a share's download given back when its link
//! expired unused; the owner's list of who downloaded what).
//!
//! One trait, one file per backend:
//! - in process (all-in-one: the app embeds this server and hands it a sink of its own);
//! - [`redis::RedisStreamSink`]: a capped Redis Stream the app servers read with a consumer
//!   group (a fleet whose burn store is Redis).
//!
//! A sink never slows or refuses a download: it is handed an event and must return at once
//! (queue it, drop it when full). The JSON Lines audit file stays the operator's log.

pub mod redis;

use std::sync::Arc;

/// One download attempt, as the app server stores it: the record both servers agree on
/// ([`shared::record::DownloadRecord`]), owned.
pub type OutcomeEvent = shared::record::DownloadRecord<'static>;

/// Receives every attempt that carried a verified token (attempts without one concern no
/// link). Must not block.
pub trait OutcomeSink: Send + Sync + 'static {
    fn send(&self, event: OutcomeEvent);
}

/// A sink handed over in `Config` (`#[arg(skip)]`): cloneable, and `Debug` without contents.
#[derive(Clone)]
pub struct SinkHandle(pub Arc<dyn OutcomeSink>);

impl std::fmt::Debug for SinkHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SinkHandle")
    }
}
