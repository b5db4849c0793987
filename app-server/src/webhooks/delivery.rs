//! The delivery task: claims due outbox rows, sends each as a signed POST, and records what
//! came back (a retry, a delivery, a give-up, a disabled endpoint).
//!
//! One task per app server, started by `Application::build` and stopped when the server
//! stops (it claims nothing more and lets the attempts in flight end, each within
//! `--webhooks-timeout`). It runs a round when woken by a row written in this process
//! ([`super::Wake`]), when an attempt ends, when the next retry falls due, and at least every
//! `--webhooks-poll` (rows other app servers wrote; shares that ran out of downloads or
//! expired, announced from their state: [`outbox::announce_shares`]). Attempts in flight
//! are bounded per app server overall (`--webhooks-max-in-flight`) and per endpoint
//! (`--webhooks-max-in-flight-per-endpoint`).
//!
//! An attempt counts when a 2xx arrives within `--webhooks-timeout` (10 s). Anything else is
//! retried on `--webhooks-retry-schedule` (the Standard Webhooks schedule: at once, 5 s, 5 min,
//! 30 min, 2 h, 5 h, 10 h, 10 h), each delay with ±20 % jitter so a recovering receiver is not
//! hit by every retry at once: a non-2xx status, a redirect (never followed: it could lead
//! anywhere, RFC 9110 section 15.4 lets a client decline), a timeout, a refused address, a
//! connection or TLS failure. At most 64 KiB of an answer's body is read.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_TYPE, LOCATION};
use sqlx::AnyPool;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::Wake;
use super::outbox::{self, Attempt, Claimed, Endpoint, Finished, Next};
use super::signing::signature_header;
use super::ssrf::{self, CheckedResolver, Reach};
use crate::error::StartupError;

/// Body bytes of an answer read at most.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Shares announced (of each kind) per look.
const SWEEP_BATCH: i64 = 100;
/// Endpoints with due rows looked at per round.
const ENDPOINTS_PER_ROUND: i64 = 100;

/// How deliveries run, checked once at start (`Config::check`).
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// The delay before each attempt: the first (usually 0), then each retry's.
    pub schedule: Vec<Duration>,
    /// An attempt's deadline, connection to the end of the answer's status.
    pub timeout: Duration,
    /// How long an endpoint may fail without a success before it is disabled.
    pub disable_after: Duration,
    pub max_in_flight: usize,
    pub max_in_flight_per_endpoint: usize,
    /// How often to look for rows other servers wrote and for expired shares.
    pub poll: Duration,
    pub reach: Reach,
    pub allow_http: bool,
}

impl DeliverySettings {
    /// How long a claim holds a row: an attempt's deadline, with room for the database on
    /// either side. A server that dies holding rows delays them this long.
    fn lease(&self) -> Duration {
        self.timeout * 3
    }

    /// What follows failed attempt number `attempt` (1 for the first): a retry after the
    /// schedule's next delay, jittered, or giving up when the schedule has no more.
    fn after_failure(&self, attempt: i64, now_ms: i64) -> Next {
        let next = usize::try_from(attempt).unwrap_or(usize::MAX);
        match self.schedule.get(next) {
            Some(delay) => {
                let jittered = delay.mul_f64(0.8 + 0.4 * rand::random::<f64>());
                let ms = i64::try_from(jittered.as_millis()).unwrap_or(i64::MAX);
                Next::RetryAt(now_ms.saturating_add(ms))
            }
            None => Next::GiveUp,
        }
    }
}

/// The running delivery task.
pub struct Delivery {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Delivery {
    /// Builds the HTTP client and starts the task on the current runtime.
    pub fn start(
        db: AnyPool,
        postgres: bool,
        settings: DeliverySettings,
        wake: Wake,
    ) -> Result<Delivery, StartupError> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve the name itself, past the address check.
            .no_proxy()
            .dns_resolver(Arc::new(CheckedResolver {
                reach: settings.reach,
            }))
            .https_only(!settings.allow_http)
            .use_rustls_tls()
            .user_agent(concat!("burnlink-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| StartupError::Io {
                what: "building the webhook client".into(),
                source: std::io::Error::other(e),
            })?;
        let (stop, stopped) = watch::channel(false);
        let worker = Worker {
            db,
            postgres,
            client,
            settings: Arc::new(settings),
            wake,
            stopped,
        };
        Ok(Delivery {
            stop,
            task: tokio::spawn(worker.run()),
        })
    }

    /// Claims nothing more and waits for the attempts in flight to end and be recorded.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

struct Worker {
    db: AnyPool,
    postgres: bool,
    client: reqwest::Client,
    settings: Arc<DeliverySettings>,
    wake: Wake,
    stopped: watch::Receiver<bool>,
}

impl Worker {
    async fn run(mut self) {
        let lease_id = format!("lease-{}", shared::random_token(9));
        let mut in_flight = InFlight::default();
        let mut last_look: Option<Instant> = None;
        let mut woken = false;
        loop {
            if *self.stopped.borrow() {
                break;
            }
            if woken || last_look.is_none_or(|at| at.elapsed() >= self.settings.poll) {
                last_look = Some(Instant::now());
                if let Err(e) = outbox::announce_shares(&self.db, SWEEP_BATCH).await {
                    tracing::warn!(error = %e, "webhooks: announcing shares failed");
                }
            }
            woken = false;
            let wait = match self.round(&lease_id, &mut in_flight).await {
                Ok(wait) => wait,
                Err(e) => {
                    tracing::warn!(error = %e, "webhooks: claiming deliveries failed");
                    self.settings.poll
                }
            };
            tokio::select! {
                _ = self.wake.notified() => woken = true,
                Some(done) = in_flight.tasks.join_next_with_id(), if !in_flight.tasks.is_empty() => {
                    in_flight.ended(done);
                }
                _ = tokio::time::sleep(wait) => {}
                _ = self.stopped.changed() => {}
            }
        }
        while let Some(done) = in_flight.tasks.join_next_with_id().await {
            in_flight.ended(done);
        }
    }

    /// Claims what this server has room for and starts sending it; returns how long to wait
    /// before the next round if nothing else wakes the task.
    async fn round(
        &self,
        lease_id: &str,
        in_flight: &mut InFlight,
    ) -> Result<Duration, crate::error::AppError> {
        let settings = &self.settings;
        let now = crate::now_millis();
        let lease_until = now.saturating_add(millis(settings.lease()));
        for webhook_id in outbox::due_endpoints(&self.db, now, ENDPOINTS_PER_ROUND).await? {
            let free_overall = settings.max_in_flight.saturating_sub(in_flight.tasks.len());
            if free_overall == 0 {
                break;
            }
            let busy = in_flight.to(&webhook_id);
            let free = settings
                .max_in_flight_per_endpoint
                .saturating_sub(busy)
                .min(free_overall);
            if free == 0 {
                continue;
            }
            let Some(endpoint) = outbox::endpoint(&self.db, &webhook_id, now).await? else {
                continue;
            };
            let claimed = outbox::claim(
                &self.db,
                self.postgres,
                &webhook_id,
                lease_id,
                now,
                lease_until,
                i64::try_from(free).unwrap_or(1),
            )
            .await?;
            let endpoint = Arc::new(endpoint);
            for row in claimed {
                let job = Job {
                    db: self.db.clone(),
                    client: self.client.clone(),
                    settings: self.settings.clone(),
                    endpoint: endpoint.clone(),
                    row,
                    lease_id: lease_id.to_owned(),
                };
                in_flight.start(job);
            }
        }
        // Until the next row falls due; rows due now that found no room wait for an attempt
        // to end, which wakes the task anyway.
        let wait = match outbox::next_due(&self.db).await? {
            Some(due) if due > now => Duration::from_millis(u64::try_from(due - now).unwrap_or(0)),
            _ => settings.poll,
        };
        Ok(wait.min(settings.poll))
    }
}

/// The attempts running, and how many go to each endpoint.
#[derive(Default)]
struct InFlight {
    tasks: JoinSet<()>,
    endpoint_of: HashMap<tokio::task::Id, String>,
    per_endpoint: HashMap<String, usize>,
}

impl InFlight {
    fn to(&self, webhook_id: &str) -> usize {
        self.per_endpoint.get(webhook_id).copied().unwrap_or(0)
    }

    fn start(&mut self, job: Job) {
        let webhook_id = job.row.webhook_id.clone();
        let task = self.tasks.spawn(job.run());
        *self.per_endpoint.entry(webhook_id.clone()).or_default() += 1;
        self.endpoint_of.insert(task.id(), webhook_id);
    }

    /// An attempt ended (or panicked: its row's lease runs out and it is tried again).
    fn ended(&mut self, done: Result<(tokio::task::Id, ()), tokio::task::JoinError>) {
        let id = match done {
            Ok((id, ())) => id,
            Err(e) => {
                tracing::error!(error = %e, "webhooks: a delivery task failed");
                e.id()
            }
        };
        let Some(webhook_id) = self.endpoint_of.remove(&id) else {
            return;
        };
        if let Some(busy) = self.per_endpoint.get_mut(&webhook_id) {
            *busy = busy.saturating_sub(1);
            if *busy == 0 {
                self.per_endpoint.remove(&webhook_id);
            }
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// One attempt at one row.
struct Job {
    db: AnyPool,
    client: reqwest::Client,
    settings: Arc<DeliverySettings>,
    endpoint: Arc<Endpoint>,
    row: Claimed,
    lease_id: String,
}

impl Job {
    /// Sends and records.
    async fn run(self) {
        let attempt = send(&self.client, &self.settings, &self.endpoint, &self.row).await;
        let number = self.row.attempts + 1;
        let next = match &attempt.error {
            None => Next::Delivered,
            Some(_) => self.settings.after_failure(number, crate::now_millis()),
        };
        let (event, webhook) = (&self.row.event_id, &self.row.webhook_id);
        match &attempt.error {
            None => tracing::info!(webhook, event, attempt = number, status = ?attempt.status,
                latency_ms = attempt.latency_ms, "webhook delivered"),
            Some(error) => {
                tracing::info!(webhook, event, attempt = number, status = ?attempt.status,
                %error, ?next, "webhook attempt failed")
            }
        }
        let disable_after = millis(self.settings.disable_after);
        match outbox::finish(
            &self.db,
            &self.row,
            &self.lease_id,
            &attempt,
            next,
            disable_after,
        )
        .await
        {
            Ok(Finished::Recorded) => {}
            Ok(Finished::Disabled) => {
                tracing::warn!(
                    webhook,
                    "webhook disabled: it failed for --webhooks-disable-after"
                )
            }
            Ok(Finished::LeaseLost) => {
                tracing::warn!(
                    webhook,
                    event,
                    "webhook attempt outlived its lease; not recorded"
                )
            }
            // The lease runs out and the row is tried again: at least once, never lost.
            Err(e) => tracing::warn!(webhook, event, error = %e, "webhook attempt not recorded"),
        }
    }
}

/// One signed POST of `row` to `endpoint`, and what came of it.
async fn send(
    client: &reqwest::Client,
    settings: &DeliverySettings,
    endpoint: &Endpoint,
    row: &Claimed,
) -> Attempt {
    let started_ms = crate::now_millis();
    let clock = Instant::now();
    let result = post(client, settings, endpoint, row).await;
    let latency_ms = millis(clock.elapsed());
    let (status, error) = match result {
        Ok(status) if status.is_success() => (Some(status.as_u16()), None),
        Ok(status) => (Some(status.as_u16()), Some(format!("answered {status}"))),
        Err(Failure::Redirect(status, location)) => (
            Some(status.as_u16()),
            Some(format!(
                "answered {status}, a redirect (to {location}), which is not followed"
            )),
        ),
        Err(failure) => (None, Some(failure.to_string())),
    };
    Attempt {
        started_ms,
        status,
        latency_ms,
        error,
    }
}

#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("redirect")]
    Redirect(reqwest::StatusCode, String),
    #[error("{0}")]
    Refused(String),
    #[error("no answer within {0} ms")]
    Timeout(u128),
    #[error("{0}")]
    Http(String),
}

async fn post(
    client: &reqwest::Client,
    settings: &DeliverySettings,
    endpoint: &Endpoint,
    row: &Claimed,
) -> Result<reqwest::StatusCode, Failure> {
    let url = reqwest::Url::parse(&endpoint.url)
        .map_err(|e| Failure::Refused(format!("the URL no longer parses: {e}")))?;
    // An IP literal is not resolved, so the resolver's check does not see it: check it here.
    let host = url.host_str().unwrap_or("");
    let port = url.port_or_known_default().unwrap_or(443);
    if host.starts_with('[') || host.parse::<std::net::IpAddr>().is_ok() {
        ssrf::resolve(settings.reach, host, port)
            .await
            .map_err(|e| Failure::Refused(e.to_string()))?;
    }
    let timestamp = crate::now();
    let signature = signature_header(
        &endpoint.secrets,
        &row.event_id,
        timestamp,
        row.payload.as_bytes(),
    );
    let sent = client
        .post(url)
        .header(CONTENT_TYPE, "application/json")
        .header("webhook-id", &row.event_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(row.payload.clone())
        .send()
        .await;
    let mut res = sent.map_err(|e| failure(e, settings.timeout))?;
    let status = res.status();
    if status.is_redirection() {
        let location = res
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("nowhere")
            .chars()
            .take(200)
            .collect();
        return Err(Failure::Redirect(status, location));
    }
    // Read (and drop) at most 64 KiB of the answer, so the connection can be reused; a body
    // that breaks off does not undo the status that came in time.
    let mut read = 0;
    while read < MAX_ANSWER_BYTES {
        match res.chunk().await {
            Ok(Some(chunk)) => read += chunk.len(),
            Ok(None) | Err(_) => break,
        }
    }
    Ok(status)
}

/// Why a request got no answer, in words for the delivery log: the causes' chain, without the
/// URL (the log shows it already).
fn failure(e: reqwest::Error, timeout: Duration) -> Failure {
    if e.is_timeout() {
        return Failure::Timeout(timeout.as_millis());
    }
    let e = e.without_url();
    let mut why = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !why.contains(&text) {
            why.push_str(": ");
            why.push_str(&text);
        }
        source = cause.source();
    }
    Failure::Http(why)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(schedule: &[u64]) -> DeliverySettings {
        DeliverySettings {
            schedule: schedule.iter().map(|s| Duration::from_secs(*s)).collect(),
            timeout: Duration::from_secs(10),
            disable_after: Duration::from_secs(5 * 86_400),
            max_in_flight: 32,
            max_in_flight_per_endpoint: 4,
            poll: Duration::from_secs(5),
            reach: Reach {
                allow_private: false,
            },
            allow_http: false,
        }
    }

    #[test]
    fn retries_follow_the_schedule_with_jitter_then_give_up() {
        let s = settings(&[0, 5, 300]);
        for _ in 0..100 {
            let Next::RetryAt(at) = s.after_failure(1, 1_000_000) else {
                panic!("a retry after the first attempt");
            };
            assert!((1_004_000..=1_006_000).contains(&at), "{at}");
            let Next::RetryAt(at) = s.after_failure(2, 0) else {
                panic!("a retry after the second attempt");
            };
            assert!((240_000..=360_000).contains(&at), "{at}");
        }
        assert_eq!(s.after_failure(3, 0), Next::GiveUp);
        assert_eq!(settings(&[0]).after_failure(1, 0), Next::GiveUp);
    }
}
