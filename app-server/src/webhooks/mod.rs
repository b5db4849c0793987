//! Webhooks: an owner's endpoints that hear, signed, of what happens to their links and
//! shares (docs/WEBHOOKS.md).
//!
//! - [`signing`]: Standard Webhooks secrets and signatures;
//! - [`ssrf`]: which addresses a delivery may reach, checked when a URL is registered and
//!   again on the address each delivery connects to;
//! - [`outbox`]: events become rows of `webhook_messages` in the same transaction that
//!   records what happened (a download outcome; a share marked announced as exhausted or
//!   expired, read from its state), one per subscribed endpoint, so nothing is announced that
//!   did not happen and nothing that happened is lost to a crash;
//! - [`delivery`]: the background task that claims due rows, sends them and schedules retries.
//!
//! This module holds the endpoints themselves: creating one (its secret shown once), listing,
//! the delivery log, rotating the secret, re-enabling, deleting, and the test event.

pub mod delivery;
pub mod outbox;
pub mod signing;
pub mod ssrf;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sqlx::AnyPool;
use tokio::sync::Notify;

use crate::error::AppError;
use crate::files::FileId;
use signing::Secret;
use ssrf::Reach;

/// Most endpoints one user may keep.
pub const MAX_WEBHOOKS_PER_USER: i64 = 20;
/// Attempts each endpoint's delivery log keeps.
pub const LOG_KEPT: i64 = 100;
/// How long the previous secret still signs after a rotation.
pub const ROTATION_OVERLAP_MS: i64 = 24 * 3600 * 1000;
const MAX_URL_LEN: usize = 2048;
const MAX_DESCRIPTION_CHARS: usize = 200;

/// What an endpoint can hear of. The names are the payload's `type`; none holds a SQL `LIKE`
/// wildcard (`%`, `_`), as subscriptions are matched with `LIKE` ([`outbox`]).
///
/// Adding an event: a variant here (and in [`EventType::SUBSCRIBABLE`]), its payload in
/// [`outbox`], and one call to its `enqueue` inside the transaction that records what
/// happened (as [`outbox::for_outcome`] and [`outbox::for_upload`] do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum EventType {
    /// A link's download was sent whole (at most once per link; a resumed download
    /// completes when its last part is sent).
    #[serde(rename = "download.completed")]
    DownloadCompleted,
    /// A link's download broke off before its end (at most once per link).
    #[serde(rename = "download.partial")]
    DownloadPartial,
    /// A share's last download was taken.
    #[serde(rename = "share.exhausted")]
    ShareExhausted,
    /// A share reached its expiry.
    #[serde(rename = "share.expired")]
    ShareExpired,
    /// A file arrived through one of the owner's upload links.
    #[serde(rename = "upload.received")]
    UploadReceived,
    /// Sent by "send test event" to one endpoint, whatever it subscribed to.
    #[serde(rename = "webhook.test")]
    Test,
}

impl EventType {
    /// What an endpoint may subscribe to.
    pub const SUBSCRIBABLE: [EventType; 5] = [
        EventType::DownloadCompleted,
        EventType::DownloadPartial,
        EventType::ShareExhausted,
        EventType::ShareExpired,
        EventType::UploadReceived,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::DownloadCompleted => "download.completed",
            EventType::DownloadPartial => "download.partial",
            EventType::ShareExhausted => "share.exhausted",
            EventType::ShareExpired => "share.expired",
            EventType::UploadReceived => "upload.received",
            EventType::Test => "webhook.test",
        }
    }

    /// A subscribable event's name; anything else is a 400 that lists them.
    pub fn parse(s: &str) -> Result<EventType, AppError> {
        EventType::SUBSCRIBABLE
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = EventType::SUBSCRIBABLE.iter().map(|e| e.as_str()).collect();
                AppError::BadRequest(format!(
                    "unknown event {s:?}; events are {}",
                    known.join(", ")
                ))
            })
    }
}

/// Wakes the delivery task when a row is written in this process, so an all-in-one server
/// sends at once instead of at its next look (`--webhooks-poll`).
#[derive(Debug, Clone, Default)]
pub struct Wake(Arc<Notify>);

impl Wake {
    pub fn notify(&self) {
        self.0.notify_one();
    }

    async fn notified(&self) {
        self.0.notified().await;
    }
}

/// What the routes need to register and test endpoints.
#[derive(Clone)]
pub struct WebhookPolicy {
    /// `--webhooks-allow-http`.
    pub allow_http: bool,
    /// `--webhooks-allow-private`.
    pub reach: Reach,
    pub wake: Wake,
}

/// A webhook id as it appears in URLs (same alphabet as file ids); anything else is
/// `NotFound`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookId(String);

impl WebhookId {
    pub fn parse(s: &str) -> Result<WebhookId, AppError> {
        FileId::parse(s).map(|id| WebhookId(id.as_str().to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A checked webhook URL: absolute, `https` (or `http` with `--webhooks-allow-http`), with a
/// host, without credentials or a fragment. Where it may point is checked apart, against its
/// addresses ([`check_reach`]).
#[derive(Debug, Clone)]
pub struct WebhookUrl(reqwest::Url);

impl WebhookUrl {
    pub fn parse(s: &str, allow_http: bool) -> Result<WebhookUrl, AppError> {
        let bad = |why: &str| Err(AppError::BadRequest(format!("url: {why}")));
        if s.len() > MAX_URL_LEN {
            return bad(&format!("longer than {MAX_URL_LEN} characters"));
        }
        let Ok(url) = reqwest::Url::parse(s.trim()) else {
            return bad("not an absolute URL");
        };
        match url.scheme() {
            "https" => {}
            "http" if allow_http => {}
            "http" => {
                return bad(
                    "must be https (plain http is accepted only when the server runs with \
                     --webhooks-allow-http)",
                );
            }
            _ => return bad("must be https"),
        }
        if url.host_str().is_none_or(str::is_empty) {
            return bad("has no host");
        }
        if !url.username().is_empty() || url.password().is_some() {
            return bad("must not carry a user name or password");
        }
        if url.fragment().is_some() {
            return bad("must not have a #fragment");
        }
        Ok(WebhookUrl(url))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The host as a resolver takes it (an IPv6 literal without brackets) and the port.
    fn host_port(&self) -> (String, u16) {
        let host = self.0.host_str().unwrap_or("");
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        (
            host.to_owned(),
            self.0.port_or_known_default().unwrap_or(443),
        )
    }
}

/// Refuses a URL whose host is, or resolves to, an address `reach` does not allow (every
/// address it resolves to is checked: one internal address among public ones is refused), or
/// does not resolve at all: 422 `url_refused`.
pub async fn check_reach(url: &WebhookUrl, reach: Reach) -> Result<(), AppError> {
    let (host, port) = url.host_port();
    let refused = |why: String| AppError::UrlRefused(format!("url: {host}: {why}"));
    let addrs = ssrf::lookup(&host, port)
        .await
        .map_err(|e| refused(e.to_string()))?;
    for addr in addrs {
        reach
            .check(addr.ip())
            .map_err(|why| refused(why.to_string()))?;
    }
    Ok(())
}

/// What an owner asks for.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// Where to send events: `https://…`.
    pub url: String,
    /// At least one of `download.completed`, `download.partial`, `share.exhausted`,
    /// `share.expired`.
    pub events: Vec<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// What an owner changes of an endpoint; what is absent stays. The secret stays too (rotate
/// it apart).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookChange {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
}

/// An endpoint's state as its owner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookStatus {
    /// Its last attempt succeeded, or none failed yet.
    Active,
    /// Its attempts have failed since `failing_since`; disabled if that lasts
    /// `--webhooks-disable-after` (5 days).
    Failing,
    /// Failed for too long: nothing is sent until its owner re-enables it.
    Disabled,
}

/// An endpoint as its owner's API shows it. Never its secret, but once when it is made or
/// rotated. Times are Unix seconds.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WebhookInfo {
    pub id: String,
    pub url: String,
    pub description: String,
    pub events: Vec<EventType>,
    pub created_at: i64,
    pub status: WebhookStatus,
    /// The first failed attempt since the last success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<i64>,
    /// Until when the secret before the last rotation still signs beside the current one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_secret_expires_at: Option<i64>,
}

/// The answer to a creation: the endpoint, and its secret, shown only now. No `Debug`: it
/// holds the secret.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedWebhook {
    #[serde(flatten)]
    pub webhook: WebhookInfo,
    /// `whsec_…`: what the receiver verifies signatures with.
    pub secret: String,
}

/// One delivery attempt, as the log shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeliveryAttempt {
    /// The `webhook-id` it carried.
    pub event_id: String,
    pub event_type: String,
    /// 1 for the first attempt of the event, 2 for its first retry, …
    pub attempt: i64,
    /// Unix milliseconds when it started.
    pub time_ms: i64,
    /// Whether it counted as delivered (a 2xx in time).
    pub ok: bool,
    /// The receiver's HTTP status; absent when none came.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub latency_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An endpoint with its delivery log (newest first, the last 100 attempts) and how many
/// events wait to be delivered.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookDetail {
    #[serde(flatten)]
    pub webhook: WebhookInfo,
    pub pending: i64,
    pub attempts: Vec<DeliveryAttempt>,
}

/// A rotation's answer: the new secret, shown only now. No `Debug`: it holds the secret.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RotatedSecret {
    pub secret: String,
    /// Unix seconds until which the previous secret also signs.
    pub previous_secret_expires_at: i64,
}

/// The test event queued: its `webhook-id`, to find it in the log and at the receiver.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TestEvent {
    pub event_id: String,
}

/// Changes one of the user's endpoints: the new URL is checked as a new endpoint's is, and
/// the events waiting go to it.
pub async fn update(
    db: &AnyPool,
    policy: &WebhookPolicy,
    user_id: &str,
    id: &WebhookId,
    change: WebhookChange,
) -> Result<WebhookInfo, AppError> {
    // A new URL is checked before anything is looked up: a refused address is refused
    // whichever endpoint it was meant for.
    if let Some(url) = &change.url {
        check_reach(&WebhookUrl::parse(url, policy.allow_http)?, policy.reach).await?;
    }
    let current = one(db, user_id, id).await?;
    let new = NewWebhook {
        url: change.url.unwrap_or(current.url),
        events: match change.events {
            Some(events) => events,
            None => current
                .events
                .iter()
                .map(|e| e.as_str().to_owned())
                .collect(),
        },
        description: Some(change.description.unwrap_or(current.description)),
    };
    let checked = check(policy, new)?;
    let changed = sqlx::query(
        "UPDATE webhooks SET url = $1, events = $2, description = $3 \
         WHERE id = $4 AND user_id = $5",
    )
    .bind(checked.url.as_str())
    .bind(events_text(&checked.events))
    .bind(&checked.description)
    .bind(id.as_str())
    .bind(user_id)
    .execute(db)
    .await?
    .rows_affected();
    if changed == 0 {
        return Err(AppError::NotFound);
    }
    tracing::info!(webhook = id.as_str(), user = user_id, "webhook changed");
    one(db, user_id, id).await
}

/// Checked settings of a new endpoint.
struct Checked {
    url: WebhookUrl,
    events: Vec<EventType>,
    description: String,
}

fn check(policy: &WebhookPolicy, new: NewWebhook) -> Result<Checked, AppError> {
    let url = WebhookUrl::parse(&new.url, policy.allow_http)?;
    let mut events = Vec::new();
    for name in &new.events {
        let event = EventType::parse(name.trim())?;
        if !events.contains(&event) {
            events.push(event);
        }
    }
    if events.is_empty() {
        return Err(AppError::BadRequest(
            "events: name at least one event to send".into(),
        ));
    }
    let description = new.description.unwrap_or_default().trim().to_owned();
    if description.chars().count() > MAX_DESCRIPTION_CHARS
        || description.chars().any(char::is_control)
    {
        return Err(AppError::BadRequest(format!(
            "description: at most {MAX_DESCRIPTION_CHARS} characters, no control characters"
        )));
    }
    Ok(Checked {
        url,
        events,
        description,
    })
}

fn events_text(events: &[EventType]) -> String {
    events
        .iter()
        .map(|e| e.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

type WebhookRow = (
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

const WEBHOOK_COLUMNS: &str =
    "id, url, description, events, created_ms, failing_since_ms, disabled_ms, previous_until_ms";

fn info(row: WebhookRow, now_ms: i64) -> WebhookInfo {
    let (id, url, description, events, created_ms, failing_since, disabled, previous_until) = row;
    let status = match (disabled, failing_since) {
        (Some(_), _) => WebhookStatus::Disabled,
        (None, Some(_)) => WebhookStatus::Failing,
        (None, None) => WebhookStatus::Active,
    };
    WebhookInfo {
        id,
        url,
        description,
        events: events
            .split_whitespace()
            .filter_map(|name| EventType::parse(name).ok())
            .collect(),
        created_at: created_ms / 1000,
        status,
        failing_since: failing_since.map(|ms| ms / 1000),
        disabled_at: disabled.map(|ms| ms / 1000),
        previous_secret_expires_at: previous_until
            .filter(|until| *until > now_ms)
            .map(|ms| ms / 1000),
    }
}

/// Registers an endpoint for the user: checks the URL (syntax, then its addresses), makes
/// its secret and returns it, the only time it is shown. 409 `too_many_webhooks` past
/// [`MAX_WEBHOOKS_PER_USER`].
pub async fn create(
    db: &AnyPool,
    policy: &WebhookPolicy,
    user_id: &str,
    new: NewWebhook,
) -> Result<CreatedWebhook, AppError> {
    let checked = check(policy, new)?;
    let (kept,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM webhooks WHERE user_id = $1")
        .bind(user_id)
        .fetch_one(db)
        .await?;
    if kept >= MAX_WEBHOOKS_PER_USER {
        return Err(AppError::TooManyWebhooks(MAX_WEBHOOKS_PER_USER as u64));
    }
    check_reach(&checked.url, policy.reach).await?;
    let secret = Secret::generate();
    let id = shared::random_token(16);
    let now = crate::now_millis();
    // The count and the insert in one statement: parallel requests cannot pass the limit.
    let inserted = sqlx::query(
        "INSERT INTO webhooks (id, user_id, url, description, events, secret, created_ms) \
         SELECT $1, $2, $3, $4, $5, $6, $7 \
         WHERE (SELECT COUNT(*) FROM webhooks WHERE user_id = $2) < $8",
    )
    .bind(&id)
    .bind(user_id)
    .bind(checked.url.as_str())
    .bind(&checked.description)
    .bind(events_text(&checked.events))
    .bind(secret.expose())
    .bind(now)
    .bind(MAX_WEBHOOKS_PER_USER)
    .execute(db)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Err(AppError::TooManyWebhooks(MAX_WEBHOOKS_PER_USER as u64));
    }
    tracing::info!(webhook = %id, user = user_id, "webhook created");
    Ok(CreatedWebhook {
        webhook: WebhookInfo {
            id,
            url: checked.url.as_str().to_owned(),
            description: checked.description,
            events: checked.events,
            created_at: now / 1000,
            status: WebhookStatus::Active,
            failing_since: None,
            disabled_at: None,
            previous_secret_expires_at: None,
        },
        secret: secret.expose(),
    })
}

/// The user's endpoints, newest first.
pub async fn list(db: &AnyPool, user_id: &str) -> Result<Vec<WebhookInfo>, AppError> {
    let rows: Vec<WebhookRow> = sqlx::query_as(&format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE user_id = $1 ORDER BY created_ms DESC"
    ))
    .bind(user_id)
    .fetch_all(db)
    .await?;
    let now = crate::now_millis();
    Ok(rows.into_iter().map(|row| info(row, now)).collect())
}

async fn one(db: &AnyPool, user_id: &str, id: &WebhookId) -> Result<WebhookInfo, AppError> {
    let row: Option<WebhookRow> = sqlx::query_as(&format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1 AND user_id = $2"
    ))
    .bind(id.as_str())
    .bind(user_id)
    .fetch_optional(db)
    .await?;
    row.map(|row| info(row, crate::now_millis()))
        .ok_or(AppError::NotFound)
}

/// One of the user's endpoints with its delivery log; another user's is `NotFound`.
pub async fn detail(
    db: &AnyPool,
    user_id: &str,
    id: &WebhookId,
) -> Result<WebhookDetail, AppError> {
    let webhook = one(db, user_id, id).await?;
    let (pending,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM webhook_messages WHERE webhook_id = $1 AND state = 'pending'",
    )
    .bind(id.as_str())
    .fetch_one(db)
    .await?;
    type AttemptRow = (String, String, i64, i64, Option<i64>, i64, Option<String>);
    let rows: Vec<AttemptRow> = sqlx::query_as(
        "SELECT event_id, event_type, attempt, started_ms, status, latency_ms, error \
         FROM webhook_attempts WHERE webhook_id = $1 ORDER BY started_us DESC LIMIT $2",
    )
    .bind(id.as_str())
    .bind(LOG_KEPT)
    .fetch_all(db)
    .await?;
    let attempts = rows
        .into_iter()
        .map(
            |(event_id, event_type, attempt, time_ms, status, latency_ms, error)| {
                let status = status.and_then(|s| u16::try_from(s).ok());
                DeliveryAttempt {
                    ok: error.is_none() && status.is_some_and(|s| (200..300).contains(&s)),
                    event_id,
                    event_type,
                    attempt,
                    time_ms,
                    status,
                    latency_ms,
                    error,
                }
            },
        )
        .collect();
    Ok(WebhookDetail {
        webhook,
        pending,
        attempts,
    })
}

/// A new secret for one of the user's endpoints. The one it replaces keeps signing beside it
/// for [`ROTATION_OVERLAP_MS`] (a rotation within that time drops the one before).
pub async fn rotate(
    db: &AnyPool,
    user_id: &str,
    id: &WebhookId,
) -> Result<RotatedSecret, AppError> {
    let secret = Secret::generate();
    let until = crate::now_millis().saturating_add(ROTATION_OVERLAP_MS);
    let rotated = sqlx::query(
        "UPDATE webhooks SET previous_secret = secret, previous_until_ms = $1, secret = $2 \
         WHERE id = $3 AND user_id = $4",
    )
    .bind(until)
    .bind(secret.expose())
    .bind(id.as_str())
    .bind(user_id)
    .execute(db)
    .await?
    .rows_affected();
    if rotated == 0 {
        return Err(AppError::NotFound);
    }
    tracing::info!(
        webhook = id.as_str(),
        user = user_id,
        "webhook secret rotated"
    );
    Ok(RotatedSecret {
        secret: secret.expose(),
        previous_secret_expires_at: until / 1000,
    })
}

/// Deletes one of the user's endpoints; its outbox rows and log go with it (`ON DELETE
/// CASCADE`, enforced on SQLite too: `db::connect` turns foreign keys on). One statement:
/// a transaction that read first could not become a writer beside the delivery task's
/// writes on SQLite.
pub async fn delete(db: &AnyPool, user_id: &str, id: &WebhookId) -> Result<(), AppError> {
    let deleted = sqlx::query("DELETE FROM webhooks WHERE id = $1 AND user_id = $2")
        .bind(id.as_str())
        .bind(user_id)
        .execute(db)
        .await?
        .rows_affected();
    if deleted == 0 {
        return Err(AppError::NotFound);
    }
    tracing::info!(webhook = id.as_str(), user = user_id, "webhook deleted");
    Ok(())
}

/// Re-enables one of the user's endpoints that was disabled after failing for too long: its
/// failure streak starts over, and the events still waiting are sent again.
pub async fn enable(
    db: &AnyPool,
    wake: &Wake,
    user_id: &str,
    id: &WebhookId,
) -> Result<WebhookInfo, AppError> {
    let changed = sqlx::query(
        "UPDATE webhooks SET disabled_ms = NULL, failing_since_ms = NULL \
         WHERE id = $1 AND user_id = $2",
    )
    .bind(id.as_str())
    .bind(user_id)
    .execute(db)
    .await?
    .rows_affected();
    if changed == 0 {
        return Err(AppError::NotFound);
    }
    tracing::info!(webhook = id.as_str(), user = user_id, "webhook re-enabled");
    wake.notify();
    one(db, user_id, id).await
}

/// Queues a `webhook.test` event for one of the user's endpoints, through the same outbox
/// as every event. A disabled endpoint is re-enabled first (409 `webhook_disabled`).
pub async fn send_test(
    db: &AnyPool,
    wake: &Wake,
    user_id: &str,
    id: &WebhookId,
) -> Result<TestEvent, AppError> {
    let webhook = one(db, user_id, id).await?;
    if webhook.status == WebhookStatus::Disabled {
        return Err(AppError::WebhookDisabled);
    }
    let mut tx = db.begin().await?;
    let event_id = outbox::enqueue_test(&mut tx, id.as_str()).await?;
    tx.commit().await?;
    wake.notify();
    Ok(TestEvent { event_id })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow_http: bool) -> WebhookPolicy {
        WebhookPolicy {
            allow_http,
            reach: Reach {
                allow_private: false,
            },
            wake: Wake::default(),
        }
    }

    fn new(url: &str, events: &[&str]) -> NewWebhook {
        NewWebhook {
            url: url.into(),
            events: events.iter().map(|e| (*e).to_owned()).collect(),
            description: None,
        }
    }

    #[test]
    fn event_names_are_no_like_patterns() {
        for event in EventType::SUBSCRIBABLE.into_iter().chain([EventType::Test]) {
            let name = event.as_str();
            assert!(!name.contains(['%', '_', ' ']), "{name}");
            let json = serde_json::to_value(event).unwrap();
            assert_eq!(json, name);
        }
        assert!(
            EventType::parse("webhook.test").is_err(),
            "not subscribable"
        );
    }

    #[test]
    fn urls_must_be_https_with_a_host_and_no_credentials() {
        let strict = policy(false);
        assert!(
            check(
                &strict,
                new("https://hooks.example/in?x=1", &["share.expired"])
            )
            .is_ok()
        );
        for url in [
            "http://hooks.example/in",
            "ftp://hooks.example/in",
            "hooks.example/in",
            "https://user:pw@hooks.example/in",
            "https://hooks.example/in#part",
            "https://",
            &format!("https://hooks.example/{}", "a".repeat(MAX_URL_LEN)),
        ] {
            let err = check(&strict, new(url, &["share.expired"])).err();
            assert!(
                matches!(err, Some(AppError::BadRequest(_))),
                "{url}: {err:?}"
            );
        }
        assert!(
            check(
                &policy(true),
                new("http://hooks.example/in", &["share.expired"])
            )
            .is_ok()
        );
    }

    #[test]
    fn events_are_known_and_at_least_one() {
        let strict = policy(false);
        let url = "https://hooks.example/in";
        let checked = check(
            &strict,
            new(
                url,
                &["download.completed", "download.completed", "share.expired"],
            ),
        )
        .unwrap();
        assert_eq!(
            checked.events,
            [EventType::DownloadCompleted, EventType::ShareExpired]
        );
        assert!(check(&strict, new(url, &[])).is_err());
        assert!(check(&strict, new(url, &["download.started"])).is_err());
    }

    #[tokio::test]
    async fn addresses_are_checked_without_connecting() {
        let strict = Reach {
            allow_private: false,
        };
        for url in [
            "https://127.0.0.1/in",
            "https://[::1]:8443/in",
            "https://0.0.0.0/in",
            "https://[::ffff:127.0.0.1]/in",
            "https://169.254.169.254/latest/meta-data",
            "https://localhost/in",
        ] {
            let url = WebhookUrl::parse(url, false).unwrap();
            let err = check_reach(&url, strict).await.unwrap_err();
            assert!(matches!(err, AppError::UrlRefused(_)), "{url:?}: {err:?}");
        }
        let open = Reach {
            allow_private: true,
        };
        let url = WebhookUrl::parse("https://127.0.0.1:9/in", false).unwrap();
        assert!(check_reach(&url, open).await.is_ok());
        let url = WebhookUrl::parse("https://[fd00:ec2::254]/", false).unwrap();
        assert!(check_reach(&url, open).await.is_err(), "metadata, always");
    }
}
