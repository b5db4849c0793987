//! The outbox: what is to be delivered, as rows of `webhook_messages` written in the
//! transaction that records what happened, and the claims and results of deliveries.
//!
//! An event becomes one row per endpoint of its user that subscribed to its type and is not
//! disabled, all with the same `event_id` (`msg_…`, the `webhook-id` of every attempt) and the
//! same body. Events that can only happen once per link or share get an id derived from it
//! (`download.completed` of a link, `share.expired` of a share), so writing one twice (a
//! redelivered outcome, two app servers seeing the same expiry) adds no row: the primary key
//! `(event_id, webhook_id)` keeps one.
//!
//! A delivering app server claims due rows by writing its lease (`lease_id`,
//! `locked_until_ms`); on PostgreSQL the claim reads with `FOR UPDATE SKIP LOCKED`, so app
//! servers claiming at once each get other rows and none waits; on SQLite one process
//! writes. A claim whose server died runs out at `locked_until_ms` and the row is due again.
//! A result is written only by the lease's holder.

use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;
use sha2::{Digest, Sha256};
use shared::record::Outcome;
use sqlx::{AnyConnection, AnyPool};

use super::EventType;
use super::signing::Secret;
use crate::error::AppError;

/// An event's `webhook-id`: derived from what it is about when it can happen only once, so a
/// second write of the same event adds nothing.
fn event_id_for(kind: EventType, about: &str) -> String {
    let digest = Sha256::digest(format!("{}\n{about}", kind.as_str()).as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("msg_{hex}")
}

/// RFC 3339, UTC, to the millisecond.
fn rfc3339_ms(unix_ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(unix_ms).unwrap_or(0));
    humantime::format_rfc3339_millis(at).to_string()
}

/// The body every attempt sends: `{"type", "timestamp", "data"}` (Standard Webhooks).
#[derive(Serialize)]
struct Payload<'a, D> {
    #[serde(rename = "type")]
    kind: &'static str,
    /// When the event happened.
    timestamp: &'a str,
    data: D,
}

fn payload<D: Serialize>(kind: EventType, at_ms: i64, data: D) -> Result<String, AppError> {
    serde_json::to_string(&Payload {
        kind: kind.as_str(),
        timestamp: &rfc3339_ms(at_ms),
        data,
    })
    .map_err(|e| AppError::Internal(format!("webhook payload: {e}")))
}

/// `LIKE` pattern of the endpoints subscribed to `kind` (`events` is space-separated).
fn subscribed(kind: EventType) -> String {
    format!("% {} %", kind.as_str())
}

/// Writes `payload` for every enabled endpoint of `user_id` subscribed to `kind`; returns
/// how many rows were written.
async fn enqueue(
    conn: &mut AnyConnection,
    event_id: &str,
    kind: EventType,
    user_id: &str,
    payload: &str,
) -> Result<u64, AppError> {
    let now = crate::now_millis();
    let written = sqlx::query(
        "INSERT INTO webhook_messages (event_id, webhook_id, event_type, payload, created_ms, \
         state, attempts, next_attempt_ms, locked_until_ms) \
         SELECT $1, id, $2, $3, $4, 'pending', 0, $4, 0 FROM webhooks \
         WHERE user_id = $5 AND disabled_ms IS NULL AND (' ' || events || ' ') LIKE $6 \
         ON CONFLICT (event_id, webhook_id) DO NOTHING",
    )
    .bind(event_id)
    .bind(kind.as_str())
    .bind(payload)
    .bind(now)
    .bind(user_id)
    .bind(subscribed(kind))
    .execute(conn)
    .await?
    .rows_affected();
    Ok(written)
}

/// What a download event says.
#[derive(Serialize)]
struct DownloadData<'a> {
    event_id: &'a str,
    /// The link's token id (`jti`).
    link_id: &'a str,
    /// `None` once the file is deleted.
    file_id: Option<String>,
    file_name: Option<&'a str>,
    /// The share the link was taken from; `None` for the owner's own link.
    share_id: Option<String>,
    /// `ok`, `resumed` (the last part of a resumed download) or `partial`.
    outcome: &'static str,
    /// Bytes sent by this transfer.
    bytes: u64,
    status: u16,
    /// When the transfer ended.
    time: String,
}

/// The event a download outcome makes, if any: a transfer sent whole (`ok`, or `resumed`:
/// the rest of a broken download) is `download.completed`, one broken off is
/// `download.partial`, each at most once per link; refusals (used, expired, invalid, …),
/// `HEAD`s and server errors make none.
pub fn event_of(outcome: Outcome) -> Option<EventType> {
    match outcome {
        Outcome::Ok | Outcome::Resumed => Some(EventType::DownloadCompleted),
        Outcome::Partial => Some(EventType::DownloadPartial),
        _ => None,
    }
}

/// Writes the event a download outcome makes, in the transaction that stores the outcome.
/// Returns how many rows were written (0: no event, or no endpoint listens).
pub async fn for_outcome(
    conn: &mut AnyConnection,
    event: &shared::record::DownloadRecord<'_>,
) -> Result<u64, AppError> {
    let Some(kind) = event_of(event.outcome) else {
        return Ok(0);
    };
    let (Some(jti), Some(user_id)) = (event.jti.as_deref(), event.sub.as_deref()) else {
        return Ok(0);
    };
    // Who listens, and the ids the payload names, in one round trip.
    let (listeners, file_id, share_id): (i64, Option<String>, Option<String>) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM webhooks WHERE user_id = $1 AND disabled_ms IS NULL \
         AND (' ' || events || ' ') LIKE $2), \
         (SELECT id FROM files WHERE storage_key = $3 AND user_id = $1), \
         (SELECT share_id FROM share_takes WHERE jti = $4)",
    )
    .bind(user_id)
    .bind(subscribed(kind))
    .bind(event.file.as_deref().unwrap_or(""))
    .bind(jti)
    .fetch_one(&mut *conn)
    .await?;
    if listeners == 0 {
        return Ok(0);
    }
    let event_id = event_id_for(kind, jti);
    let time_ms = i64::try_from(event.time_ms).unwrap_or(i64::MAX);
    let body = payload(
        kind,
        time_ms,
        DownloadData {
            event_id: &event_id,
            link_id: jti,
            file_id,
            file_name: event.name.as_deref(),
            share_id,
            outcome: event.outcome.as_str(),
            bytes: event.bytes,
            status: event.status,
            time: rfc3339_ms(time_ms),
        },
    )?;
    enqueue(conn, &event_id, kind, user_id, &body).await
}

/// A file that arrived through an upload link, as its event describes it.
pub struct UploadFacts<'a> {
    /// The link's owner, who now owns the file.
    pub user_id: &'a str,
    pub file_id: &'a str,
    pub file_name: &'a str,
    pub link_id: &'a str,
    pub bytes: u64,
}

#[derive(Serialize)]
struct UploadData<'a> {
    event_id: &'a str,
    file_id: &'a str,
    file_name: &'a str,
    /// The upload link's id.
    link_id: &'a str,
    /// The file's size: the bytes received.
    bytes: u64,
    /// When the file was recorded.
    time: String,
}

/// Writes `upload.received` for a file that arrived through an upload link, in the
/// transaction that records the file (once per file: its id names the event). Returns how
/// many rows were written.
pub async fn for_upload(
    conn: &mut AnyConnection,
    upload: &UploadFacts<'_>,
) -> Result<u64, AppError> {
    let kind = EventType::UploadReceived;
    let event_id = event_id_for(kind, upload.file_id);
    let now = crate::now_millis();
    let body = payload(
        kind,
        now,
        UploadData {
            event_id: &event_id,
            file_id: upload.file_id,
            file_name: upload.file_name,
            link_id: upload.link_id,
            bytes: upload.bytes,
            time: rfc3339_ms(now),
        },
    )?;
    enqueue(conn, &event_id, kind, upload.user_id, &body).await
}

/// A share as its events describe it.
pub struct ShareFacts<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub file_id: &'a str,
    pub downloads: i64,
    pub max_downloads: i64,
    /// Unix seconds.
    pub expires_at: i64,
}

#[derive(Serialize)]
struct ShareData<'a> {
    event_id: &'a str,
    share_id: &'a str,
    file_id: &'a str,
    /// Downloads taken (links handed out and not given back).
    downloads: i64,
    max_downloads: i64,
    expires_at: String,
    time: String,
}

/// Writes a share event (`share.exhausted`, `share.expired`), at most once per share, in the
/// transaction that marks it announced ([`announce_shares`]).
async fn for_share(
    conn: &mut AnyConnection,
    kind: EventType,
    share: &ShareFacts<'_>,
) -> Result<u64, AppError> {
    let event_id = event_id_for(kind, share.id);
    let now = crate::now_millis();
    let body = payload(
        kind,
        now,
        ShareData {
            event_id: &event_id,
            share_id: share.id,
            file_id: share.file_id,
            downloads: share.downloads,
            max_downloads: share.max_downloads,
            expires_at: rfc3339_ms(share.expires_at.saturating_mul(1000)),
            time: rfc3339_ms(now),
        },
    )?;
    enqueue(conn, &event_id, kind, share.user_id, &body).await
}

/// Announces what the shares' own state says happened and was not announced yet, at most
/// `limit` of each kind per call: `share.exhausted` for a share whose last download was
/// taken, `share.expired` for one past its expiry. Each is marked and its events written in
/// one transaction, once, whichever app server gets there first: the take and the clock
/// change the share, and this reads the change, so a crash between the two loses nothing
/// and a race announces nothing twice. Revoked shares are marked, not announced. Returns how
/// many rows were written.
pub async fn announce_shares(db: &AnyPool, limit: i64) -> Result<u64, AppError> {
    type Row = (String, String, String, i64, i64, i64, Option<i64>);
    const COLUMNS: &str = "id, user_id, file_id, downloads, max_downloads, expires_at, revoked_at";
    let exhausted: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM shares WHERE exhaustion_announced_ms IS NULL \
         AND downloads >= max_downloads LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(db)
    .await?;
    let expired: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM shares WHERE expiry_announced_ms IS NULL \
         AND expires_at <= $1 LIMIT $2"
    ))
    .bind(crate::now())
    .bind(limit)
    .fetch_all(db)
    .await?;
    let due = exhausted
        .into_iter()
        .map(|row| (EventType::ShareExhausted, "exhaustion_announced_ms", row))
        .chain(
            expired
                .into_iter()
                .map(|row| (EventType::ShareExpired, "expiry_announced_ms", row)),
        );
    let mut written = 0;
    for (kind, column, row) in due {
        let (id, user_id, file_id, downloads, max_downloads, expires_at, revoked_at) = row;
        let mut tx = db.begin().await?;
        let mine = sqlx::query(&format!(
            "UPDATE shares SET {column} = $1 WHERE id = $2 AND {column} IS NULL"
        ))
        .bind(crate::now_millis())
        .bind(&id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if mine == 1 && revoked_at.is_none() {
            let share = ShareFacts {
                id: &id,
                user_id: &user_id,
                file_id: &file_id,
                downloads,
                max_downloads,
                expires_at,
            };
            written += for_share(&mut tx, kind, &share).await?;
        }
        tx.commit().await?;
    }
    Ok(written)
}

#[derive(Serialize)]
struct TestData<'a> {
    event_id: &'a str,
    webhook_id: &'a str,
    time: String,
}

/// Writes a `webhook.test` event for one endpoint; returns its `webhook-id`.
pub async fn enqueue_test(conn: &mut AnyConnection, webhook_id: &str) -> Result<String, AppError> {
    let event_id = format!("msg_{}", shared::random_token(16));
    let now = crate::now_millis();
    let body = payload(
        EventType::Test,
        now,
        TestData {
            event_id: &event_id,
            webhook_id,
            time: rfc3339_ms(now),
        },
    )?;
    sqlx::query(
        "INSERT INTO webhook_messages (event_id, webhook_id, event_type, payload, created_ms, \
         state, attempts, next_attempt_ms, locked_until_ms) \
         VALUES ($1, $2, $3, $4, $5, 'pending', 0, $5, 0)",
    )
    .bind(&event_id)
    .bind(webhook_id)
    .bind(EventType::Test.as_str())
    .bind(&body)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(event_id)
}

/// A claimed row: what to send, and how many attempts it had.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub event_id: String,
    pub webhook_id: String,
    pub event_type: String,
    pub payload: String,
    pub attempts: i64,
}

/// Endpoints with rows due now, not disabled, at most `limit`.
pub async fn due_endpoints(db: &AnyPool, now_ms: i64, limit: i64) -> Result<Vec<String>, AppError> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT DISTINCT m.webhook_id FROM webhook_messages m JOIN webhooks w \
         ON w.id = m.webhook_id WHERE m.state = 'pending' AND m.next_attempt_ms <= $1 \
         AND m.locked_until_ms <= $1 AND w.disabled_ms IS NULL LIMIT $2",
    )
    .bind(now_ms)
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// When the next row becomes due (its retry time, or a live lease's end), if any is pending.
pub async fn next_due(db: &AnyPool) -> Result<Option<i64>, AppError> {
    let (due,): (Option<i64>,) = sqlx::query_as(
        "SELECT MIN(CASE WHEN m.locked_until_ms > m.next_attempt_ms THEN m.locked_until_ms \
         ELSE m.next_attempt_ms END) FROM webhook_messages m JOIN webhooks w \
         ON w.id = m.webhook_id WHERE m.state = 'pending' AND w.disabled_ms IS NULL",
    )
    .fetch_one(db)
    .await?;
    Ok(due)
}

/// Claims up to `limit` due rows of one endpoint under `lease_id` until `lease_until_ms`,
/// oldest due first.
pub async fn claim(
    db: &AnyPool,
    postgres: bool,
    webhook_id: &str,
    lease_id: &str,
    now_ms: i64,
    lease_until_ms: i64,
    limit: i64,
) -> Result<Vec<Claimed>, AppError> {
    // PostgreSQL: rows another server is claiming right now are skipped, not waited for.
    let lock = if postgres {
        "FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    let rows: Vec<(String, String, String, String, i64)> = sqlx::query_as(&format!(
        "UPDATE webhook_messages SET locked_until_ms = $1, lease_id = $2 \
         WHERE webhook_id = $3 AND event_id IN (SELECT event_id FROM webhook_messages \
         WHERE webhook_id = $3 AND state = 'pending' AND next_attempt_ms <= $4 \
         AND locked_until_ms <= $4 ORDER BY next_attempt_ms LIMIT $5 {lock}) \
         RETURNING event_id, webhook_id, event_type, payload, attempts"
    ))
    .bind(lease_until_ms)
    .bind(lease_id)
    .bind(webhook_id)
    .bind(now_ms)
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(event_id, webhook_id, event_type, payload, attempts)| Claimed {
                event_id,
                webhook_id,
                event_type,
                payload,
                attempts,
            },
        )
        .collect())
}

/// Where and how to send to one endpoint.
pub struct Endpoint {
    pub url: String,
    /// The current secret, then the previous one while it still signs.
    pub secrets: Vec<Secret>,
}

/// The endpoint's URL and signing secrets; `None` when it was deleted or disabled since.
pub async fn endpoint(
    db: &AnyPool,
    webhook_id: &str,
    now_ms: i64,
) -> Result<Option<Endpoint>, AppError> {
    let row: Option<(String, String, Option<String>, Option<i64>)> = sqlx::query_as(
        "SELECT url, secret, previous_secret, previous_until_ms FROM webhooks \
         WHERE id = $1 AND disabled_ms IS NULL",
    )
    .bind(webhook_id)
    .fetch_optional(db)
    .await?;
    let Some((url, secret, previous, previous_until)) = row else {
        return Ok(None);
    };
    let mut secrets = Vec::with_capacity(2);
    secrets.extend(Secret::parse(&secret));
    if previous_until.is_some_and(|until| until > now_ms) {
        secrets.extend(previous.as_deref().and_then(Secret::parse));
    }
    if secrets.is_empty() {
        return Err(AppError::Internal(format!(
            "webhook {webhook_id} has no usable secret"
        )));
    }
    Ok(Some(Endpoint { url, secrets }))
}

/// What one attempt got.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub started_ms: i64,
    pub status: Option<u16>,
    pub latency_ms: i64,
    /// Why it did not count: `None` for a 2xx in time.
    pub error: Option<String>,
}

/// What becomes of a row after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Delivered,
    RetryAt(i64),
    /// Out of retries.
    GiveUp,
}

/// What [`finish`] did to the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    Recorded,
    /// This failure made the endpoint's streak reach `--webhooks-disable-after`.
    Disabled,
    /// The lease ran out and another server took the row: nothing written.
    LeaseLost,
}

/// Records an attempt under `lease_id`: the row's new state, the endpoint's failure streak
/// (cleared by a success; a failure streak as long as `disable_after_ms` disables it) and
/// the log line (the log keeps the endpoint's last [`super::LOG_KEPT`]), in one transaction.
pub async fn finish(
    db: &AnyPool,
    claimed: &Claimed,
    lease_id: &str,
    attempt: &Attempt,
    next: Next,
    disable_after_ms: i64,
) -> Result<Finished, AppError> {
    let mut tx = db.begin().await?;
    let (state, next_ms) = match next {
        Next::Delivered => ("delivered", 0),
        Next::RetryAt(at) => ("pending", at),
        Next::GiveUp => ("failed", 0),
    };
    let updated = sqlx::query(
        "UPDATE webhook_messages SET state = $1, attempts = attempts + 1, \
         next_attempt_ms = $2, locked_until_ms = 0, lease_id = NULL \
         WHERE event_id = $3 AND webhook_id = $4 AND lease_id = $5",
    )
    .bind(state)
    .bind(next_ms)
    .bind(&claimed.event_id)
    .bind(&claimed.webhook_id)
    .bind(lease_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if updated == 0 {
        return Ok(Finished::LeaseLost);
    }
    let now = crate::now_millis();
    let mut finished = Finished::Recorded;
    if next == Next::Delivered {
        sqlx::query("UPDATE webhooks SET failing_since_ms = NULL WHERE id = $1")
            .bind(&claimed.webhook_id)
            .execute(&mut *tx)
            .await?;
    } else {
        let disabled = sqlx::query(
            "UPDATE webhooks SET failing_since_ms = COALESCE(failing_since_ms, $1), \
             disabled_ms = $2 WHERE id = $3 AND disabled_ms IS NULL \
             AND COALESCE(failing_since_ms, $1) <= $2 - $4",
        )
        .bind(attempt.started_ms)
        .bind(now)
        .bind(&claimed.webhook_id)
        .bind(disable_after_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if disabled == 1 {
            finished = Finished::Disabled;
        } else {
            sqlx::query(
                "UPDATE webhooks SET failing_since_ms = COALESCE(failing_since_ms, $1) \
                 WHERE id = $2",
            )
            .bind(attempt.started_ms)
            .bind(&claimed.webhook_id)
            .execute(&mut *tx)
            .await?;
        }
    }
    sqlx::query(
        "INSERT INTO webhook_attempts (id, webhook_id, event_id, event_type, attempt, \
         started_ms, started_us, status, latency_ms, error) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(shared::random_token(12))
    .bind(&claimed.webhook_id)
    .bind(&claimed.event_id)
    .bind(&claimed.event_type)
    .bind(claimed.attempts + 1)
    .bind(attempt.started_ms)
    .bind(crate::now_micros())
    .bind(attempt.status.map(i64::from))
    .bind(attempt.latency_ms)
    .bind(attempt.error.clone())
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "DELETE FROM webhook_attempts WHERE webhook_id = $1 AND id NOT IN \
         (SELECT id FROM webhook_attempts WHERE webhook_id = $1 \
         ORDER BY started_us DESC LIMIT $2)",
    )
    .bind(&claimed.webhook_id)
    .bind(super::LOG_KEPT)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(finished)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_only_events_have_stable_distinct_ids() {
        let a = event_id_for(EventType::DownloadCompleted, "jti-1");
        assert_eq!(a, event_id_for(EventType::DownloadCompleted, "jti-1"));
        assert_ne!(a, event_id_for(EventType::DownloadPartial, "jti-1"));
        assert_ne!(a, event_id_for(EventType::DownloadCompleted, "jti-2"));
        assert!(a.starts_with("msg_") && a.len() == 36, "{a}");
    }

    #[test]
    fn which_outcomes_make_which_events() {
        use EventType::*;
        for &outcome in Outcome::ALL {
            let expected = match outcome {
                Outcome::Ok | Outcome::Resumed => Some(DownloadCompleted),
                Outcome::Partial => Some(DownloadPartial),
                _ => None,
            };
            assert_eq!(event_of(outcome), expected, "{outcome:?}");
        }
    }

    #[test]
    fn payloads_follow_the_standard_shape() {
        let body = payload(
            EventType::Test,
            1_614_265_330_123,
            TestData {
                event_id: "msg_x",
                webhook_id: "w",
                time: rfc3339_ms(1_614_265_330_123),
            },
        )
        .unwrap();
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["type"], "webhook.test");
        assert_eq!(json["timestamp"], "2021-02-25T15:02:10.123Z");
        assert_eq!(json["data"]["event_id"], "msg_x");
    }
}
