//! Download outcomes, as the download servers report them, stored once in the app's database
//! (`download_events`): what a share's owner sees of each download, and what tells a share
//! whether a link it handed out was served ([`crate::shares::settle`]).
//!
//! Two ways in, one store:
//! - all-in-one: the embedded download server is given an [`InProcessSink`];
//! - a fleet: download servers append to the Redis Stream `burnlink:outcomes`
//!   (the download server's `outcome::redis`); each app server reads it in the consumer group
//!   `burnlink-app` ([`spawn_stream_reader`]), so each entry is delivered to one app server,
//!   stored (keyed by its stream id, so a redelivery stores nothing twice) and then acked.
//!   Entries a crashed app server read but never acked are claimed by another after a minute
//!   (`XAUTOCLAIM`).

use std::time::Duration;

use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use serde::Serialize;
use shared::record::{DownloadRecord, Outcome, OutcomeEvent, OutcomeSink, stream_records};
use sqlx::AnyPool;
use tokio::sync::mpsc;

use crate::error::AppError;
use crate::webhooks::Wake;

/// The served outcomes ([`Outcome::served`]) as an SQL list for `IN`, `('ok', 'partial', …)`:
/// written out from the rule, so the queries and the code cannot disagree.
pub const SERVED_OUTCOMES: ServedOutcomes = ServedOutcomes;

/// See [`SERVED_OUTCOMES`].
pub struct ServedOutcomes;

impl std::fmt::Display for ServedOutcomes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let served = Outcome::ALL.iter().filter(|o| o.served());
        for (i, outcome) in served.enumerate() {
            // The names are `snake_case` identifiers: nothing in them needs quoting.
            f.write_str(if i == 0 { "('" } else { ", '" })?;
            f.write_str(outcome.as_str())?;
            f.write_str("'")?;
        }
        f.write_str(")")
    }
}

/// The stream's consumer group, shared by every app server.
pub const GROUP: &str = "burnlink-app";
pub use shared::record::OUTCOME_STREAM as STREAM_KEY;
/// Events queued for the database at most (all-in-one).
const QUEUE: usize = 4096;
/// How long one `XREADGROUP` waits for new entries (ms), and how long the client waits for
/// any answer.
const BLOCK_MS: u64 = 1000;
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// An entry read but not acked for this long is claimed by another app server.
const CLAIM_IDLE_MS: u64 = 60_000;

/// Stores one event under `event_id` (once: a second delivery is a no-op). A served outcome
/// for a link whose download had been given back takes it again: the download did happen.
/// The webhook events the outcome makes are written in the same transaction
/// ([`crate::webhooks::outbox::for_outcome`]): stored with its events, or not at all.
pub async fn store(
    db: &AnyPool,
    wake: &Wake,
    event_id: &str,
    event: &OutcomeEvent,
) -> Result<(), AppError> {
    let mut tx = db.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO download_events (event_id, jti, user_id, storage_key, outcome, status, \
         bytes, time_ms, client, user_agent) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(event_id)
    .bind(event.jti.as_deref().map(str::to_owned))
    .bind(event.sub.as_deref().map(str::to_owned))
    .bind(event.file.as_deref().map(str::to_owned))
    .bind(event.outcome.as_str())
    .bind(i64::from(event.status))
    .bind(i64::try_from(event.bytes).unwrap_or(i64::MAX))
    .bind(i64::try_from(event.time_ms).unwrap_or(i64::MAX))
    .bind(event.client.map(|ip| ip.to_string()))
    .bind(event.user_agent.as_deref().map(str::to_owned))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 1
        && event.outcome.served()
        && let Some(jti) = event.jti.as_deref()
    {
        let retaken =
            sqlx::query("UPDATE share_takes SET given_back = 0 WHERE jti = $1 AND given_back = 1")
                .bind(jti)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if retaken == 1 {
            sqlx::query(
                "UPDATE shares SET downloads = downloads + 1 WHERE id = \
                 (SELECT share_id FROM share_takes WHERE jti = $1)",
            )
            .bind(jti)
            .execute(&mut *tx)
            .await?;
        }
    }
    let events = if inserted == 1 {
        crate::webhooks::outbox::for_outcome(&mut tx, event).await?
    } else {
        0
    };
    tx.commit().await?;
    if events > 0 {
        wake.notify();
    }
    Ok(())
}

/// The all-in-one sink: queues events for a task that stores them. A full queue drops the
/// event (logged); a download is never slowed for it.
pub struct InProcessSink {
    tx: mpsc::Sender<OutcomeEvent>,
}

impl InProcessSink {
    /// Starts the storing task on the current runtime.
    pub fn start(db: AnyPool, wake: Wake) -> InProcessSink {
        let (tx, mut rx) = mpsc::channel::<OutcomeEvent>(QUEUE);
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                let id = format!("local-{}", shared::random_token(12));
                if let Err(e) = store(&db, &wake, &id, &event).await {
                    tracing::warn!(error = %e, jti = ?event.jti, "download outcome not stored");
                }
            }
        });
        InProcessSink { tx }
    }
}

impl OutcomeSink for InProcessSink {
    fn send(&self, record: &DownloadRecord<'_>, _json: Option<&str>) {
        if self.tx.try_send(record.clone().into_owned()).is_err() {
            tracing::warn!("download outcome queue full: event dropped");
        }
    }
}

/// Reads the outcome stream in the consumer group for as long as the process runs; Redis
/// down means retrying every second, not failing.
pub fn spawn_stream_reader(
    db: AnyPool,
    wake: Wake,
    info: redis::ConnectionInfo,
) -> Result<(), AppError> {
    let client = redis::Client::open(info)
        .map_err(|e| AppError::Internal(format!("outcomes Redis: {e}")))?;
    let consumer = format!("app-{}", shared::random_token(6));
    tokio::spawn(async move {
        loop {
            if let Err(e) = read_stream(&db, &wake, &client, &consumer).await {
                tracing::warn!(error = %e, "outcome stream: retrying in 1 s");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    Ok(())
}

async fn read_stream(
    db: &AnyPool,
    wake: &Wake,
    client: &redis::Client,
    consumer: &str,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // Longer than the `BLOCK` below: the client's default 500 ms would cut every idle read.
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(READ_TIMEOUT));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let created: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(STREAM_KEY)
        .arg(GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut conn)
        .await;
    if let Err(e) = created
        && e.code() != Some("BUSYGROUP")
    {
        return Err(e.into());
    }
    loop {
        // Another app server's unacked entries, once they have waited a minute.
        let claimed: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(STREAM_KEY)
            .arg(GROUP)
            .arg(consumer)
            .arg(CLAIM_IDLE_MS)
            .arg("0-0")
            .arg("COUNT")
            .arg(100)
            .query_async(&mut conn)
            .await?;
        handle(db, wake, &mut conn, &claimed.claimed).await?;
        let read: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(100)
            .arg("BLOCK")
            .arg(BLOCK_MS)
            .arg("STREAMS")
            .arg(STREAM_KEY)
            .arg(">")
            .query_async(&mut conn)
            .await?;
        for key in read.map(|r| r.keys).unwrap_or_default() {
            handle(db, wake, &mut conn, &key.ids).await?;
        }
    }
}

/// Stores each entry's records, then acks the entry; a record that is not an event (or an
/// entry without records) is skipped, logged.
async fn handle(
    db: &AnyPool,
    wake: &Wake,
    conn: &mut redis::aio::MultiplexedConnection,
    entries: &[StreamId],
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    for entry in entries {
        let lines = entry.get::<String>("e");
        if lines.is_none() {
            tracing::warn!(id = %entry.id, "outcome stream entry without records: skipped");
        }
        for (id, line) in lines.iter().flat_map(|l| stream_records(&entry.id, l)) {
            match serde_json::from_str::<OutcomeEvent>(line) {
                Ok(event) => store(db, wake, &id, &event).await?,
                Err(e) => tracing::warn!(%id, error = %e, "outcome record unreadable: skipped"),
            }
        }
        let _: i64 = redis::cmd("XACK")
            .arg(STREAM_KEY)
            .arg(GROUP)
            .arg(&entry.id)
            .query_async(conn)
            .await?;
    }
    Ok(())
}

/// One download of a share's (or a file's) links, as its owner sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ShareDownload {
    /// Unix milliseconds.
    pub time_ms: i64,
    pub outcome: String,
    pub complete: bool,
    pub bytes: i64,
    pub client: Option<String>,
    pub user_agent: Option<String>,
    /// The share the link came from; `None` for the owner's own download.
    pub share_id: Option<String>,
}

type EventRow = (
    i64,
    String,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn download((time_ms, outcome, bytes, client, user_agent, share_id): EventRow) -> ShareDownload {
    ShareDownload {
        complete: outcome == Outcome::Ok.as_str(),
        time_ms,
        outcome,
        bytes,
        client,
        user_agent,
        share_id,
    }
}

/// Served attempts (complete or partial) on links of one of the user's files, newest first,
/// at most `limit`; `share_id` narrows them to one share's links.
pub async fn for_file(
    db: &AnyPool,
    user_id: &str,
    storage_key: &str,
    share_id: Option<&str>,
    limit: i64,
) -> Result<Vec<ShareDownload>, AppError> {
    let rows: Vec<EventRow> = sqlx::query_as(&format!(
        "SELECT e.time_ms, e.outcome, e.bytes, e.client, e.user_agent, t.share_id \
         FROM download_events e LEFT JOIN share_takes t ON t.jti = e.jti \
         WHERE e.user_id = $1 AND e.storage_key = $2 AND e.outcome IN {SERVED_OUTCOMES} \
         AND ($3 = '' OR t.share_id = $3) ORDER BY e.time_ms DESC LIMIT $4"
    ))
    .bind(user_id)
    .bind(storage_key)
    .bind(share_id.unwrap_or(""))
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(download).collect())
}

/// Served downloads of each of the user's files, newest first, at most `limit` in all: the
/// file list's per-file history. Pairs of (file id, download).
pub async fn for_user_files(
    db: &AnyPool,
    user_id: &str,
    limit: i64,
) -> Result<Vec<(String, ShareDownload)>, AppError> {
    type Row = (
        String,
        i64,
        String,
        i64,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT f.id, e.time_ms, e.outcome, e.bytes, e.client, e.user_agent, t.share_id \
         FROM download_events e JOIN files f \
         ON f.storage_key = e.storage_key AND f.user_id = e.user_id \
         LEFT JOIN share_takes t ON t.jti = e.jti \
         WHERE e.user_id = $1 AND e.outcome IN {SERVED_OUTCOMES} \
         ORDER BY e.time_ms DESC LIMIT $2"
    ))
    .bind(user_id)
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(file, time_ms, outcome, bytes, client, agent, share)| {
            (
                file,
                download((time_ms, outcome, bytes, client, agent, share)),
            )
        })
        .collect())
}

/// Served downloads through each of the user's shares live at `now` (neither revoked nor
/// expired), newest first, at most `per_share` of each: every share history of the file list
/// in one statement.
pub async fn for_live_shares(
    db: &AnyPool,
    user_id: &str,
    now: i64,
    per_share: i64,
) -> Result<Vec<ShareDownload>, AppError> {
    let rows: Vec<EventRow> = sqlx::query_as(&format!(
        "SELECT time_ms, outcome, bytes, client, user_agent, share_id FROM (\
         SELECT e.time_ms, e.outcome, e.bytes, e.client, e.user_agent, t.share_id, \
         ROW_NUMBER() OVER (PARTITION BY t.share_id ORDER BY e.time_ms DESC) AS nth \
         FROM shares s JOIN files f ON f.id = s.file_id \
         JOIN share_takes t ON t.share_id = s.id JOIN download_events e ON e.jti = t.jti \
         WHERE s.user_id = $1 AND s.revoked_at IS NULL AND s.expires_at > $2 \
         AND e.user_id = $1 AND e.storage_key = f.storage_key \
         AND e.outcome IN {SERVED_OUTCOMES}) shown \
         WHERE nth <= $3 ORDER BY time_ms DESC"
    ))
    .bind(user_id)
    .bind(now)
    .bind(per_share)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(download).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SQL the queries splice in is the rule's list, quoted for `IN`.
    #[test]
    fn the_served_sql_list_is_the_served_rule() {
        assert_eq!(SERVED_OUTCOMES.to_string(), "('ok', 'partial', 'error')");
        for outcome in Outcome::ALL {
            let quoted = format!("'{}'", outcome.as_str());
            assert_eq!(
                SERVED_OUTCOMES.to_string().contains(&quoted),
                outcome.served(),
                "{outcome:?}"
            );
        }
    }
}
