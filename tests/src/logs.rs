//! What the servers of this test process log, captured: every line as the servers write it
//! (`LOG_FORMAT=json`, filtered by `RUST_LOG` as in production), and each request's SQL
//! statements as sqlx logs them (target `sqlx::query`), keyed by the request's id.
//!
//! One global subscriber per test binary, installed by the first test that asks. Servers run
//! in-process on the test runtime, so their lines land here; each test asserts only on its own
//! (a request id it chose, a path it made).
//!
//! Statements are counted per request because a server shares nothing else with the test:
//! sqlx runs a request's statements inside its `request` span (PostgreSQL on the request's
//! task; SQLite on a worker thread that enters the span sent with each command), so the span's
//! `request_id` names them on both databases. A connection the pool opens during a request
//! runs set-up statements (SQLite's `PRAGMA`s): those are the connection's, not the request's,
//! and are left out. `BEGIN` goes to neither database through sqlx's statement log; `COMMIT`
//! does on PostgreSQL only.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use server_kit::telemetry::{LogFormat, layer};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// The target sqlx logs each statement under.
const STATEMENTS: &str = "sqlx::query";
/// The span `server_kit::telemetry::request_span` runs each request in.
const REQUEST_SPAN: &str = "request";

struct Captured {
    lines: Arc<Mutex<Vec<u8>>>,
    statements: Arc<Mutex<HashMap<String, Vec<String>>>>,
}

fn captured() -> &'static Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED.get_or_init(|| {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let statements = Arc::new(Mutex::new(HashMap::new()));
        let sink = lines.clone();
        let counter = StatementsByRequest(statements.clone()).with_filter(filter_fn(|meta| {
            meta.target() == STATEMENTS || (meta.is_span() && meta.name() == REQUEST_SPAN)
        }));
        tracing_subscriber::registry()
            .with(layer(LogFormat::Json, move || Capture(sink.clone())))
            .with(counter)
            .try_init()
            .expect("no other global subscriber in this test process");
        Captured { lines, statements }
    })
}

/// Every log line of this process, as JSON, from the first test that asks on.
pub fn lines() -> Arc<Mutex<Vec<u8>>> {
    captured().lines.clone()
}

/// The captured lines so far, parsed.
pub fn json_lines() -> Vec<serde_json::Value> {
    let bytes = captured().lines.lock().expect("log buffer").clone();
    String::from_utf8_lossy(&bytes)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Starts capturing statements (if nothing captured yet); call before the requests to count.
pub fn capture_statements() {
    captured();
}

/// The SQL statements run for the request whose `X-Request-Id` was `request_id`, in order
/// (after [`capture_statements`]).
pub fn statements_of(request_id: &str) -> Vec<String> {
    captured()
        .statements
        .lock()
        .expect("statement log")
        .get(request_id)
        .cloned()
        .unwrap_or_default()
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A request span's id, kept in the span's extensions.
struct RequestId(String);

/// Appends each `sqlx::query` event to the statements of the request span it ran in.
struct StatementsByRequest(Arc<Mutex<HashMap<String, Vec<String>>>>);

impl<S> Layer<S> for StatementsByRequest
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let (Some(request_id), Some(span)) = (fields.request_id, ctx.span(id)) {
            span.extensions_mut().insert(RequestId(request_id));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(scope) = ctx.event_scope(event) else {
            return;
        };
        let Some(request_id) = scope
            .into_iter()
            .find_map(|span| span.extensions().get::<RequestId>().map(|r| r.0.clone()))
        else {
            return;
        };
        let mut fields = Fields::default();
        event.record(&mut fields);
        let statement = match fields.statement.filter(|s| !s.trim().is_empty()) {
            Some(full) => full.trim().to_owned(),
            None => fields.summary.unwrap_or_default(),
        };
        if statement
            .trim_start()
            .to_ascii_uppercase()
            .starts_with("PRAGMA")
        {
            return;
        }
        self.0
            .lock()
            .expect("statement log")
            .entry(request_id)
            .or_default()
            .push(statement);
    }
}

/// The fields this layer reads: the request span's `request_id`, a statement's `summary` (its
/// first words, or all of a short one) and `db.statement` (the whole of a longer one).
#[derive(Default)]
struct Fields {
    request_id: Option<String>,
    summary: Option<String>,
    statement: Option<String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "request_id" => self.request_id = Some(value.to_owned()),
            "summary" => self.summary = Some(value.to_owned()),
            "db.statement" => self.statement = Some(value.to_owned()),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}
