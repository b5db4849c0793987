//! Logs of both servers (the app server reuses this module): the subscriber set-up and the
//! request middleware that gives every line of a request its request id.
//!
//! What is never logged: a download token (it is in the path of `/d/{token}`, so requests are
//! logged by route pattern, never by path or query), a password, a cookie or any header value
//! other than the user agent in the audit record.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing::{Instrument, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// `--log-format` (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, with the request span (`request_id`) on every line.
    Json,
}

/// Logs to standard error, filtered by `RUST_LOG` (default `info`). A second call (tests,
/// all-in-one mode) keeps the first subscriber.
pub fn init(format: LogFormat) {
    let _ = try_init(format, std::io::stderr);
}

/// Like [`init`], writing to `writer` (tests capture logs with it). Fails if a global
/// subscriber is already set.
pub fn try_init<W>(
    format: LogFormat,
    writer: W,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::registry()
        .with(layer(format, writer))
        .try_init()?;
    Ok(())
}

/// The servers' log output as a layer: `format` to `writer`, filtered by `RUST_LOG` (default
/// `info`) on its own, so a test can set up a subscriber with other layers beside it (one
/// that counts a request's SQL statements, say) and still see exactly what the servers log.
pub fn layer<S, W>(format: LogFormat, writer: W) -> Box<dyn Layer<S> + Send + Sync + 'static>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(writer);
    match format {
        LogFormat::Text => fmt.with_filter(filter).boxed(),
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(filter)
            .boxed(),
    }
}

/// The response header carrying the request id.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    /// The id of the request being answered, set by [`request_span`] around the services it
    /// calls: a task-local rather than a request extension, whose map costs two allocations
    /// on every request (issue 29).
    static REQUEST: HeaderValue;
}

/// The id of the request being answered, for handlers that write their own records (the
/// audit trail); `None` outside [`request_span`].
pub fn current_request_id() -> Option<HeaderValue> {
    REQUEST.try_with(HeaderValue::clone).ok()
}

/// Middleware (`middleware::from_fn(telemetry::request_span)`): runs the request inside a
/// `request` span carrying a request id, answers it as `X-Request-Id`, and logs one line per
/// request with the method, the route *pattern* (`/d/{token}`, never the path: it may
/// hold a token), the status and the latency.
///
/// The id is the incoming `X-Request-Id` when a proxy set a plausible one (1 to 64 of
/// `[A-Za-z0-9._-]`, far shorter than any token), else 16 random characters.
///
/// Not `tracing-actix-web`: its root span records `http.target`, the path and query, which
/// for `/d/{token}` is the bearer token.
pub async fn request_span(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .filter(|v| plausible_id(v.as_bytes()))
        .cloned()
        .unwrap_or_else(new_request_id);
    let span = tracing::info_span!("request", request_id = id.to_str().unwrap_or("-"));
    let method = req.method().clone();
    let start = Instant::now();
    let result = REQUEST
        .scope(id.clone(), next.call(req).instrument(span.clone()))
        .await;
    let _entered = span.enter();
    let latency_ms = start.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok(mut res) => {
            // Only when the line is logged: the pattern is a new `String` (issue 29).
            if tracing::enabled!(tracing::Level::INFO) {
                let route = res.request().match_pattern();
                // Downloads are served by the `/d` scope's default service (a prefix match,
                // no regex), which has no pattern of its own: name it, never print the path.
                let route = match route.as_deref() {
                    Some(pattern) => pattern,
                    None if res.request().path().starts_with("/d/") => "/d/{token}",
                    None => "unmatched",
                };
                tracing::info!(
                    method = %method,
                    route,
                    status = res.status().as_u16(),
                    latency_ms,
                    "request"
                );
            }
            res.headers_mut().insert(REQUEST_ID, id);
            Ok(res)
        }
        Err(e) => {
            tracing::info!(
                method = %method,
                status = e.as_response_error().status_code().as_u16(),
                latency_ms,
                "request failed"
            );
            Err(e)
        }
    }
}

/// A fresh request id: 16 characters of base64url (96 random bits). Made 64 at a time into
/// one buffer the ids share by reference count, so a request allocates none of its own; the
/// copies its response header and its records take share it too.
fn new_request_id() -> HeaderValue {
    use std::cell::RefCell;
    const ID: usize = 16;
    const BATCH: usize = 64;
    thread_local! {
        static FRESH: RefCell<bytes::Bytes> = const { RefCell::new(bytes::Bytes::new()) };
    }
    FRESH.with_borrow_mut(|fresh| {
        if fresh.len() < ID {
            use base64::Engine;
            // 12 random bytes are exactly 16 characters, so each id is its own bytes' text.
            let mut random = [0u8; ID / 4 * 3 * BATCH];
            rand::fill(&mut random);
            let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random);
            *fresh = bytes::Bytes::from_owner(text);
        }
        let id = fresh.split_to(ID);
        HeaderValue::from_maybe_shared(id).unwrap_or_else(|_| HeaderValue::from_static("-"))
    })
}

fn plausible_id(id: &[u8]) -> bool {
    (1..=64).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}
