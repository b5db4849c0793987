//! `GET|HEAD /d/{token}` and `GET|HEAD /d` with `Authorization: Bearer <token>`: the request's
//! facts gathered, decided by [`crate::delivery`] (whose module doc is the contract: what is
//! checked in which order), and the decision rendered by [`render`]. Every response's security
//! headers come from `server_kit::headers` (see [`crate::configure`]'s caller).

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::body::SizedStream;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, ResponseError, web};
use bytes::Bytes;
use futures_util::Stream;
use shared::Grant;

use crate::audit::{Client, Outcome};
use crate::delivery::{Decision, Facts, Parcel};
use crate::file::{self, FileStream};
use crate::resume;
use crate::state::AppState;
use crate::store::BurnStore;

pub async fn by_path<S: BurnStore>(
    req: HttpRequest,
    state: web::Data<AppState<S>>,
) -> HttpResponse {
    // The scope is `/d`, so the token is the rest of the path, percent-decoded (RFC 3986
    // section 6.2.2.2: an encoded token is the same link).
    let raw = req.path().strip_prefix("/d/").unwrap_or("");
    if !raw.contains('%') {
        // The usual case, found with one `memchr`: the path is already UTF-8.
        return answer(&req, &state, Some(raw)).await;
    }
    let token = percent_encoding::percent_decode_str(raw).decode_utf8();
    answer(&req, &state, token.as_deref().ok()).await
}

pub async fn by_header<S: BurnStore>(
    req: HttpRequest,
    state: web::Data<AppState<S>>,
) -> HttpResponse {
    // A `Bearer` header with no token is an empty token, which the verifier refuses as
    // malformed (401 `invalid_token`); no header at all is no token (a bare challenge).
    let token = server_kit::bearer::token(req.headers()).map(|t| t.unwrap_or_default());
    answer(&req, &state, token).await
}

/// Gathers the request's facts, has them decided, renders the decision.
async fn answer<S: BurnStore>(
    req: &HttpRequest,
    state: &web::Data<AppState<S>>,
    token: Option<&str>,
) -> HttpResponse {
    let facts = Facts {
        token,
        now_ms: shared::unix_now_ms(),
        head: req.method() == Method::HEAD,
        prefetch: is_prefetch(req),
        range: header_text(req, header::RANGE),
        if_range: header_text(req, header::IF_RANGE),
        cookies: req.headers().get_all(header::COOKIE).as_slice(),
    };
    let decision = state.gate.decide(&facts).await;
    render(req, state, decision)
}

/// The one renderer of decisions: counts and audits each, and answers it.
fn render<S: BurnStore>(
    req: &HttpRequest,
    state: &web::Data<AppState<S>>,
    decision: Decision,
) -> HttpResponse {
    let client = client(req);
    match decision {
        Decision::Refuse { reason, grant } => {
            if grant.is_none() {
                // Never the token itself: it is a bearer credential.
                tracing::info!(outcome = reason.code(), reason = %reason, "download refused");
            }
            let outcome = reason.outcome();
            let status = reason.status_code().as_u16();
            state.metrics.download(outcome);
            state
                .audit
                .record(outcome, grant.as_ref(), status, 0, &client);
            reason.respond(wants_html(req), state.app_url.as_deref())
        }
        Decision::Head(parcel) => {
            let (mut res, status) = describe(&parcel);
            res.insert_header((header::ETAG, resume::etag_value(parcel.file.version.tag)));
            state.metrics.download(Outcome::Head);
            state
                .audit
                .record(Outcome::Head, Some(&parcel.grant), status, 0, &client);
            res.body(SizedStream::new(
                parcel.range().len(),
                futures_util::stream::empty::<Result<Bytes, std::io::Error>>(),
            ))
        }
        Decision::Resume { parcel, secret } => {
            let mut res = describe(&parcel);
            let etag = resume::etag(parcel.file.version.tag, Some(&secret));
            res.0.insert_header((header::ETAG, etag));
            transfer(state, res, parcel, client, Outcome::Resumed)
        }
        Decision::Serve { parcel, secret } => {
            let mut res = describe(&parcel);
            let etag = match &secret {
                Some(secret) => resume::etag(parcel.file.version.tag, Some(secret)).try_into(),
                None => Ok(resume::etag_value(parcel.file.version.tag)),
            };
            if let Ok(etag) = etag {
                res.0.insert_header((header::ETAG, etag));
            }
            if let Some(secret) = &secret {
                let max_age = state.gate.rules.resume_window_ms / 1000;
                let cookie =
                    resume::cookie(&parcel.grant.jti, secret, max_age, state.secure_cookies);
                res.0.insert_header((header::SET_COOKIE, cookie));
            }
            transfer(state, res, parcel, client, Outcome::Ok)
        }
    }
}

/// The headers that describe a parcel (type, name, range, date), with its status.
fn describe(parcel: &Parcel) -> (HttpResponseBuilder, u16) {
    let status = match parcel.part {
        None => StatusCode::OK,
        Some(_) => StatusCode::PARTIAL_CONTENT,
    };
    let name = parcel.grant.name.as_str();
    let content_type = mime_guess::from_path(name)
        .first_raw()
        .unwrap_or("application/octet-stream");
    let modified = parcel.file.version.modified.max(0) as u64;
    let mut res = HttpResponse::build(status);
    // Each value made with one allocation, its exact bytes (issue 29: a `String` turned into
    // a header value is two, and actix's `HttpDate` value two as well).
    res.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(content_type)))
        .insert_header((
            header::CONTENT_DISPOSITION,
            file::content_disposition_value(name),
        ))
        .insert_header((header::ACCEPT_RANGES, HeaderValue::from_static("bytes")));
    if let Some(date) = http_date(modified) {
        res.insert_header((header::LAST_MODIFIED, date));
    }
    if let Some(part) = parcel.part {
        res.insert_header((header::CONTENT_RANGE, part.content_range(parcel.file.size)));
    }
    (res, status.as_u16())
}

/// `Last-Modified`'s value (IMF-fixdate, RFC 9110 section 5.6.7), written on the stack.
fn http_date(unix_secs: u64) -> Option<HeaderValue> {
    use std::io::Write as _;
    let date =
        header::HttpDate::from(std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_secs));
    let mut buf = [0u8; 32];
    let mut out = &mut buf[..];
    write!(out, "{date}").ok()?;
    let len = 32 - out.len();
    HeaderValue::from_bytes(&buf[..len]).ok()
}

/// Who asked, for the audit record.
fn client(req: &HttpRequest) -> Client {
    Client {
        peer: req.peer_addr().map(|a| a.ip()),
        forwarded_for: req
            .headers()
            .get(HeaderName::from_static("x-forwarded-for"))
            .cloned(),
        user_agent: req.headers().get(header::USER_AGENT).cloned(),
        request_id: server_kit::telemetry::current_request_id(),
    }
}

/// The response streaming the parcel, recorded as `done` when it is sent whole.
fn transfer<S: BurnStore>(
    state: &web::Data<AppState<S>>,
    (mut res, status): (HttpResponseBuilder, u16),
    parcel: Parcel,
    client: Client,
    done: Outcome,
) -> HttpResponse {
    let range = parcel.range();
    let body = parcel.file.stream(range, state.gate.rules.read_buffer);
    let len = range.len();
    state.metrics.active_streams.inc();
    res.body(SizedStream::new(
        len,
        Transfer {
            body,
            grant: parcel.grant,
            status,
            expected: len,
            done,
            state: state.clone(),
            client,
            span: tracing::Span::current(),
        },
    ))
}

/// A header's text when the request has it; a value that is not text reads as `""`, which
/// says nothing we read but still counts as present.
fn header_text(req: &HttpRequest, name: HeaderName) -> Option<&str> {
    req.headers().get(name).map(|v| v.to_str().unwrap_or(""))
}

/// A request a browser makes ahead of the person: `Sec-Purpose: prefetch` (Fetch standard;
/// also `prefetch;prerender`), the older `Purpose: prefetch`, Firefox's `X-Moz: prefetch` and
/// Safari's `X-Purpose: preview`. Prefetches are refused with a 503, which browsers treat as
/// "prefetch failed" and then load the link for real when the user clicks; a 2xx would hand
/// them a body we cannot send without burning.
fn is_prefetch(req: &HttpRequest) -> bool {
    // Names made at compile time: looking up a `&str` name that is not a standard header
    // allocates it first (four allocations per download, issue 29).
    const MARKERS: [(HeaderName, &str); 4] = [
        (HeaderName::from_static("sec-purpose"), "prefetch"),
        (HeaderName::from_static("purpose"), "prefetch"),
        (HeaderName::from_static("x-moz"), "prefetch"),
        (HeaderName::from_static("x-purpose"), "preview"),
    ];
    MARKERS.iter().any(|(name, marker)| {
        req.headers()
            .get_all(name)
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split([';', ',']))
            .any(|t| t.trim().eq_ignore_ascii_case(marker))
    })
}

fn wants_html(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// The streamed body. Counts bytes as they go and records the transfer when it ends (in the
/// request's span, which has ended by then), including a client that went away mid-download
/// (the body is dropped early and `sent < expected`).
struct Transfer<S> {
    body: FileStream,
    grant: Grant,
    status: u16,
    expected: u64,
    /// What a transfer sent whole is recorded as: a download, or a resumed part of one.
    done: Outcome,
    state: web::Data<AppState<S>>,
    client: Client,
    span: tracing::Span,
}

impl<S> Stream for Transfer<S> {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = Pin::new(&mut self.body).poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &next {
            self.state.metrics.bytes_sent.inc_by(chunk.len() as u64);
        }
        next
    }
}

impl<S> Drop for Transfer<S> {
    fn drop(&mut self) {
        let _entered = self.span.enter();
        let outcome = match self.done {
            _ if self.body.sent < self.expected => Outcome::Partial,
            done => done,
        };
        let metrics = &self.state.metrics;
        metrics.active_streams.dec();
        metrics.download(outcome);
        self.state.audit.record(
            outcome,
            Some(&self.grant),
            self.status,
            self.body.sent,
            &self.client,
        );
    }
}
