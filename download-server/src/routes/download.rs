//! `GET|HEAD /d/{token}` and `GET|HEAD /d` with `Authorization: Bearer <token>`.
//!
//! Order matters and is the contract: verify the token; open the file (missing: 404, nothing
//! burned); settle the range (unsatisfiable: 416, nothing burned); answer HEAD and prefetch
//! without burning; burn the `jti` (already burned: 410; store down: 503, nothing served);
//! stream.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use actix_web::body::SizedStream;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, ResponseError, web};
use bytes::Bytes;
use futures_util::Stream;
use shared::Grant;

use crate::audit::{Client, Outcome};
use crate::error::DownloadError;
use crate::file::{self, ByteRange, FileStream, RangeRequest};
use crate::state::AppState;
use crate::store::{Burn, BurnStore};
use crate::telemetry::RequestId;

pub async fn by_path<S: BurnStore>(
    req: HttpRequest,
    state: web::Data<AppState<S>>,
) -> HttpResponse {
    // The scope is `/d`, so the token is the rest of the path, percent-decoded (RFC 3986
    // section 6.2.2.2: an encoded token is the same link); no allocation when nothing is
    // encoded.
    let raw = req.path().strip_prefix("/d/").unwrap_or("");
    let token = percent_encoding::percent_decode_str(raw).decode_utf8();
    answer(&req, &state, token.as_deref().ok()).await
}

pub async fn by_header<S: BurnStore>(
    req: HttpRequest,
    state: web::Data<AppState<S>>,
) -> HttpResponse {
    answer(&req, &state, bearer_token(&req)).await
}

/// The credentials of `Authorization: Bearer <token>` (RFC 6750 section 2.1; the scheme is
/// case-insensitive).
fn bearer_token(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

async fn answer<S: BurnStore>(
    req: &HttpRequest,
    state: &web::Data<AppState<S>>,
    token: Option<&str>,
) -> HttpResponse {
    let client = client(req);
    let verified = match token {
        Some(t) => state.verifier.verify(t).await.map_err(DownloadError::from),
        None => Err(DownloadError::MissingToken),
    };
    let result = match verified {
        Ok(grant) => deliver(req, state, grant, client).await,
        Err(e) => {
            // Never the token itself: it is a bearer credential.
            tracing::info!(outcome = e.code(), reason = %e, "download refused");
            Err(refused(state, e, None, &client))
        }
    };
    result.unwrap_or_else(|e| e.respond(wants_html(req), state.app_url.as_deref()))
}

/// Who asked, for the audit record.
fn client(req: &HttpRequest) -> Client {
    Client {
        peer: req.peer_addr().map(|a| a.ip()),
        forwarded_for: req
            .headers()
            .get(header::HeaderName::from_static("x-forwarded-for"))
            .cloned(),
        user_agent: req.headers().get(header::USER_AGENT).cloned(),
        request_id: req.extensions().get::<RequestId>().map(|id| id.0.clone()),
    }
}

/// Counts and audits a refused attempt; hands the error back for the response.
fn refused<S>(
    state: &AppState<S>,
    e: DownloadError,
    grant: Option<&Grant>,
    client: &Client,
) -> DownloadError {
    let outcome = e.outcome();
    state.metrics.download(outcome);
    state
        .audit
        .record(outcome, grant, e.status_code().as_u16(), 0, client);
    e
}

async fn deliver<S: BurnStore>(
    req: &HttpRequest,
    state: &web::Data<AppState<S>>,
    grant: Grant,
    client: Client,
) -> Result<HttpResponse, DownloadError> {
    let refused = |e: DownloadError, grant: &Grant| refused(state, e, Some(grant), &client);
    // A whole-file GET reads its first chunk with the open: one blocking hop for a small file.
    let plain_get = req.method() == Method::GET
        && !req.headers().contains_key(header::RANGE)
        && !is_prefetch(req);
    let head = if plain_get { state.read_buffer } else { 0 };
    let stored = match file::open(&state.files, &grant.file, head).await {
        Ok(stored) => stored,
        Err(e) => return Err(refused(e.into(), &grant)),
    };
    let Some(stored) = stored else {
        return Err(refused(DownloadError::NotFound, &grant));
    };
    let size = stored.size;
    let (status, range) = match requested_range(req, size) {
        RangeRequest::Full => (StatusCode::OK, ByteRange::whole(size)),
        RangeRequest::Partial(r) => (StatusCode::PARTIAL_CONTENT, r),
        RangeRequest::Unsatisfiable => {
            return Err(refused(DownloadError::RangeNotSatisfiable { size }, &grant));
        }
    };

    let mut res = HttpResponse::build(status);
    let content_type = mime_guess::from_path(grant.name.as_str())
        .first_raw()
        .unwrap_or("application/octet-stream");
    res.insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((
            header::CONTENT_DISPOSITION,
            file::content_disposition(grant.name.as_str()),
        ))
        .insert_header((header::ACCEPT_RANGES, HeaderValue::from_static("bytes")))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .insert_header((
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .insert_header((
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        // An uploaded HTML file opened in place must not run script on this origin.
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; sandbox"),
        ));
    if status == StatusCode::PARTIAL_CONTENT {
        res.insert_header((header::CONTENT_RANGE, range.content_range(size)));
    }

    // Link scanners send HEAD and browsers prefetch: neither may consume the download, but
    // both learn whether it has been consumed.
    let head = req.method() == Method::HEAD;
    if head || is_prefetch(req) {
        match state.store.is_burned(&grant.jti).await {
            Ok(false) => {}
            Ok(true) => return Err(refused(DownloadError::Used, &grant)),
            Err(e) => return Err(refused(DownloadError::Store(e), &grant)),
        }
    }
    if head {
        state.metrics.download(Outcome::Head);
        state
            .audit
            .record(Outcome::Head, Some(&grant), status.as_u16(), 0, &client);
        return Ok(res.body(SizedStream::new(
            range.len(),
            futures_util::stream::empty::<Result<Bytes, std::io::Error>>(),
        )));
    }
    if is_prefetch(req) {
        return Err(refused(DownloadError::PrefetchDeclined, &grant));
    }

    let keep_until = grant.exp + state.verifier.policy().leeway;
    let burning = Instant::now();
    let burned = state.store.burn(&grant.jti, keep_until).await;
    state
        .metrics
        .burn_seconds
        .observe(burning.elapsed().as_secs_f64());
    match burned {
        Ok(Burn::Fresh) => {}
        Ok(Burn::AlreadyUsed) => return Err(refused(DownloadError::Used, &grant)),
        Err(e) => return Err(refused(DownloadError::Store(e), &grant)),
    }
    let body = stored.stream(range, state.read_buffer);
    let len = range.len();
    state.metrics.active_streams.inc();
    Ok(res.body(SizedStream::new(
        len,
        Transfer {
            body,
            grant,
            status: status.as_u16(),
            expected: len,
            state: state.clone(),
            client,
            span: tracing::Span::current(),
        },
    )))
}

/// The range to serve. `If-Range` is honoured by ignoring `Range`: we send no validators, so
/// no `If-Range` can match (RFC 9110 section 13.1.5).
fn requested_range(req: &HttpRequest, size: u64) -> RangeRequest {
    if req.headers().contains_key(header::IF_RANGE) {
        return RangeRequest::Full;
    }
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok());
    file::parse_range(range, size)
}

/// `Sec-Purpose: prefetch` (Fetch standard) or the older `Purpose: prefetch`. Prefetches are
/// refused with a 503, which browsers treat as "prefetch failed" and then load the link for
/// real when the user clicks; a 2xx would hand them a body we cannot send without burning.
fn is_prefetch(req: &HttpRequest) -> bool {
    [
        header::HeaderName::from_static("sec-purpose"),
        header::HeaderName::from_static("purpose"),
    ]
    .iter()
    .filter_map(|name| req.headers().get(name))
    .filter_map(|v| v.to_str().ok())
    .any(|v| {
        v.split([';', ','])
            .any(|t| t.trim().eq_ignore_ascii_case("prefetch"))
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
        let outcome = if self.body.sent == self.expected {
            Outcome::Ok
        } else {
            Outcome::Partial
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
