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
use shared::{Grant, TokenError};

use crate::audit::{Client, Outcome};
use crate::error::DownloadError;
use file_store::FileStore as _;

use crate::file::{self, ByteRange, FileStream, RangeRequest};
use crate::resume::{self, Offer};
use crate::state::AppState;
use crate::store::{Burn, BurnRequest, BurnStore, ResumeGrant, keep_until_ms};
use server_kit::telemetry::RequestId;

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
    // One reading of the clock decides the token's validity and how long its burn is kept.
    let now_ms = shared::unix_now_ms();
    let verified = match token {
        Some(t) => (state
            .verifier
            .verify_allowing_expiry_at(t, now_ms / 1000)
            .await)
            .map_err(DownloadError::from),
        None => Err(DownloadError::MissingToken),
    };
    // An expired token goes further only to resume, with a secret its first response carried.
    let verified = verified.and_then(|(grant, expired)| {
        // Only a range request can resume: a plain GET does not look for a secret at all.
        let resuming = state.resume_window_ms > 0 && req.headers().contains_key(header::RANGE);
        let offer = resuming.then(|| Offer::of(req, &grant.jti)).flatten();
        match (expired, offer) {
            (true, None) => Err(DownloadError::Token(TokenError::Expired)),
            (expired, offer) => Ok((grant, expired, offer)),
        }
    });
    let result = match verified {
        Ok((grant, expired, offer)) => {
            deliver(req, state, grant, now_ms, expired, offer, client).await
        }
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
    now_ms: u64,
    expired: bool,
    offer: Option<Offer>,
    client: Client,
) -> Result<HttpResponse, DownloadError> {
    let refused = |e: DownloadError, grant: &Grant| refused(state, e, Some(grant), &client);
    let ticket = BurnRequest {
        jti: &grant.jti,
        iat: grant.iat,
        now_ms,
        keep_until_ms: keep_until_ms(grant.exp, state.verifier.policy().leeway, state.clock_skew),
    };
    // A whole-file GET reads its first chunk with the open: one blocking hop for a small file.
    let prefetch = is_prefetch(req);
    let plain_get =
        req.method() == Method::GET && !req.headers().contains_key(header::RANGE) && !prefetch;
    let head = if plain_get { state.read_buffer } else { 0 };
    let stored = match state.files.open(&grant.file, head).await {
        Ok(stored) => stored,
        Err(e) => return Err(refused(e.into(), &grant)),
    };
    let Some(stored) = stored else {
        return Err(refused(DownloadError::NotFound, &grant));
    };
    let size = stored.size;
    let version = stored.version;
    // A resume: the rest of the download this token started, for the client holding its
    // secret, while the grant lasts; nothing is burned again. Anything else is an ordinary
    // request (and so, for a burned token, 410).
    let resumed = match offer {
        Some(offer) if req.method() == Method::GET && req.headers().contains_key(header::RANGE) => {
            match state.store.resume_grant(&ticket).await {
                Err(e) => return Err(refused(DownloadError::Store(e), &grant)),
                Ok(Some(g)) if g.until_ms > now_ms => match offer.proves(&g) {
                    // Never bytes of two versions: the one granted is the only one resumed.
                    Some(_) if g.version != version.tag => {
                        return Err(refused(DownloadError::FileChanged, &grant));
                    }
                    Some(_) if offer.if_range_version.is_some_and(|v| v != g.version) => {
                        return Err(refused(DownloadError::FileChanged, &grant));
                    }
                    Some(secret) => Some(secret.to_owned()),
                    None => None,
                },
                Ok(_) => None,
            }
        }
        _ => None,
    };
    if expired && resumed.is_none() {
        return Err(refused(DownloadError::Token(TokenError::Expired), &grant));
    }
    let range_header = if resumed.is_some() {
        // `If-Range` has been matched: it was the grant's own validator.
        file::parse_range(header_str(req, header::RANGE), size)
    } else {
        requested_range(req, size)
    };
    let (status, range) = match range_header {
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
    res.insert_header((
        header::LAST_MODIFIED,
        header::HttpDate::from(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(version.modified.max(0) as u64),
        ),
    ));
    if let Some(secret) = &resumed {
        res.insert_header((header::ETAG, resume::etag(version.tag, Some(secret))));
        return Ok(transfer(
            state,
            res,
            stored,
            range,
            status,
            grant,
            client,
            Outcome::Resumed,
        ));
    }

    // Link scanners send HEAD and browsers prefetch: neither may consume the download, but
    // both learn whether it has been consumed.
    let head = req.method() == Method::HEAD;
    if head || prefetch {
        match state.store.is_burned(&ticket).await {
            Ok(false) => {}
            Ok(true) => return Err(refused(DownloadError::Used, &grant)),
            Err(e) => return Err(refused(DownloadError::Store(e), &grant)),
        }
    }
    if head {
        res.insert_header((header::ETAG, resume::etag(version.tag, None)));
        state.metrics.download(Outcome::Head);
        state
            .audit
            .record(Outcome::Head, Some(&grant), status.as_u16(), 0, &client);
        return Ok(res.body(SizedStream::new(
            range.len(),
            futures_util::stream::empty::<Result<Bytes, std::io::Error>>(),
        )));
    }
    if prefetch {
        return Err(refused(DownloadError::PrefetchDeclined, &grant));
    }

    // The grant is made with the burn, in the same write, for this response's client alone.
    let resumable = state.resume_window_ms > 0 && size >= state.resume_min_bytes;
    let secret = resumable.then(resume::new_secret);
    let resume_grant = secret.as_deref().map(|secret| ResumeGrant {
        version: version.tag,
        proof: resume::proof(secret),
        until_ms: now_ms.saturating_add(state.resume_window_ms),
    });
    let burning = Instant::now();
    let burned = state.store.burn(&ticket, resume_grant.as_ref()).await;
    state
        .metrics
        .burn_seconds
        .observe(burning.elapsed().as_secs_f64());
    let refusal = match burned {
        Ok(Burn::Fresh) => None,
        Ok(Burn::AlreadyUsed) => Some(DownloadError::Used),
        Ok(Burn::Expired) => Some(DownloadError::Token(TokenError::Expired)),
        Ok(Burn::IssuedBeforeLoss) => Some(DownloadError::Token(TokenError::IssuedBeforeStart)),
        Err(e) => Some(DownloadError::Store(e)),
    };
    if let Some(e) = refusal {
        return Err(refused(e, &grant));
    }
    res.insert_header((header::ETAG, resume::etag(version.tag, secret.as_deref())));
    if let Some(secret) = &secret {
        let max_age = state.resume_window_ms / 1000;
        let cookie = resume::cookie(&grant.jti, secret, max_age, state.secure_cookies);
        res.insert_header((header::SET_COOKIE, cookie));
    }
    Ok(transfer(
        state,
        res,
        stored,
        range,
        status,
        grant,
        client,
        Outcome::Ok,
    ))
}

/// The response streaming `range` of `stored`, recorded as `done` when it is sent whole.
#[allow(clippy::too_many_arguments)]
fn transfer<S: BurnStore>(
    state: &web::Data<AppState<S>>,
    mut res: actix_web::HttpResponseBuilder,
    stored: file::StoredFile,
    range: ByteRange,
    status: StatusCode,
    grant: Grant,
    client: Client,
    done: Outcome,
) -> HttpResponse {
    let body = stored.stream(range, state.read_buffer);
    let len = range.len();
    state.metrics.active_streams.inc();
    res.body(SizedStream::new(
        len,
        Transfer {
            body,
            grant,
            status: status.as_u16(),
            expected: len,
            done,
            state: state.clone(),
            client,
            span: tracing::Span::current(),
        },
    ))
}

fn header_str(req: &HttpRequest, name: header::HeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The range to serve. `If-Range` is honoured by ignoring `Range`: only a resume (above) can
/// match it, since our validators carry a secret this request did not prove (RFC 9110
/// section 13.1.5).
fn requested_range(req: &HttpRequest, size: u64) -> RangeRequest {
    if req.headers().contains_key(header::IF_RANGE) {
        return RangeRequest::Full;
    }
    file::parse_range(header_str(req, header::RANGE), size)
}

/// A request a browser makes ahead of the person: `Sec-Purpose: prefetch` (Fetch standard;
/// also `prefetch;prerender`), the older `Purpose: prefetch`, Firefox's `X-Moz: prefetch` and
/// Safari's `X-Purpose: preview`. Prefetches are refused with a 503, which browsers treat as
/// "prefetch failed" and then load the link for real when the user clicks; a 2xx would hand
/// them a body we cannot send without burning.
fn is_prefetch(req: &HttpRequest) -> bool {
    const MARKERS: [(&str, &str); 4] = [
        ("sec-purpose", "prefetch"),
        ("purpose", "prefetch"),
        ("x-moz", "prefetch"),
        ("x-purpose", "preview"),
    ];
    MARKERS.iter().any(|(name, marker)| {
        req.headers()
            .get_all(*name)
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
