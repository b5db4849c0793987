//! Deadlines on reading request bodies, for both servers.
//!
//! actix's `client_request_timeout` covers the request head only: a client that sends its
//! headers and then one body byte every few seconds holds a connection (and a handler waiting
//! in an extractor) for as long as it likes. [`limit`] wraps every request body:
//!
//! - a body must arrive whole within `deadline` (`--body-timeout-secs`): logins and forms are
//!   a few hundred bytes, so ten seconds is generous even on a poor link;
//! - an upload's body (`multipart/form-data`, or a resumable upload's
//!   `application/offset+octet-stream`, up to `--max-upload-bytes`) has no whole-body
//!   deadline, which would cut large files on slow links, but fails after `idle`
//!   (`--upload-idle-secs`) without a byte (an idle timeout, not a rate: a slow but moving
//!   upload is fine).
//!
//! Past either, the body stream yields a `TimedOut` I/O error: the extractor or upload fails
//! with 408 `timeout`, and actix closes the connection after the response, as the body was
//! not read to its end. A body the handler never reads (the download server reads none) also
//! closes the connection after the response rather than being drained while it trickles. A
//! request without a body is not wrapped (no allocation on the download path).

use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::HttpMessage;
use actix_web::body::{BodySize, BoxBody, EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::middleware::Next;
use bytes::Bytes;
use futures_util::Stream;
use tokio::time::{Instant, Sleep};

/// The limits, registered as app data (`App::app_data(BodyTimeouts { .. })`).
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeouts {
    /// Longest time to receive a whole non-multipart body.
    pub deadline: Duration,
    /// Longest time without a byte of a multipart body.
    pub idle: Duration,
}

/// The message of the error a timed-out body yields.
pub const TIMED_OUT: &str = "the request body was not received in time";

/// True when `error` is a body that timed out here.
pub fn is_timeout(error: &PayloadError) -> bool {
    matches!(error, PayloadError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut)
}

/// Middleware (`from_fn(body_timeout::limit)`): wraps the request's body in its deadline.
pub async fn limit(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<KeepBody, impl MessageBody>>, actix_web::Error> {
    if let Some(timeouts) = req.app_data::<BodyTimeouts>().copied()
        && has_body(&req)
    {
        let multipart = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                let v = v.trim_start().to_ascii_lowercase();
                v.starts_with("multipart/") || v.starts_with("application/offset+octet-stream")
            });
        let now = Instant::now();
        let (idle, deadline) = if multipart {
            (timeouts.idle, None)
        } else {
            (timeouts.deadline, Some(now + timeouts.deadline))
        };
        let inner = Rc::new(RefCell::new(req.take_payload()));
        let keep = inner.clone();
        let timed = TimedPayload {
            inner,
            idle,
            deadline,
            timer: Box::pin(tokio::time::sleep_until(now + idle)),
            failed: false,
        };
        let boxed: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> = Box::pin(timed);
        req.set_payload(Payload::from(boxed));
        let res = next.call(req).await?;
        return Ok(res
            .map_body(|_, body| KeepBody {
                body: body.boxed(),
                _request_body: keep,
            })
            .map_into_left_body());
    }
    Ok(next.call(req).await?.map_into_right_body())
}

/// A response body that holds the request's body until the response ends. A body the handler
/// dropped unread would otherwise be drained by actix (a chunked one, to keep the connection
/// alive) for as long as the client trickles it, with no timer; one still held when the
/// response ends makes actix close the connection instead.
pub struct KeepBody {
    body: BoxBody,
    _request_body: Rc<RefCell<Payload>>,
}

impl MessageBody for KeepBody {
    type Error = <BoxBody as MessageBody>::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_next(cx)
    }
}

/// A body is coming: a non-zero `Content-Length` or a `Transfer-Encoding`.
fn has_body(req: &ServiceRequest) -> bool {
    let headers = req.headers();
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

/// A body stream that fails with `TimedOut` when `timer` fires first. The timer is pushed
/// back by `idle` on each chunk, never past `deadline`.
struct TimedPayload {
    inner: Rc<RefCell<Payload>>,
    idle: Duration,
    deadline: Option<Instant>,
    timer: Pin<Box<Sleep>>,
    failed: bool,
}

impl Stream for TimedPayload {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.failed {
            return Poll::Ready(None);
        }
        let polled = Pin::new(&mut *self.inner.borrow_mut()).poll_next(cx);
        match polled {
            Poll::Ready(Some(Ok(chunk))) => {
                let mut next = Instant::now() + self.idle;
                if let Some(deadline) = self.deadline {
                    next = next.min(deadline);
                }
                self.timer.as_mut().reset(next);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(other) => Poll::Ready(other),
            Poll::Pending => match self.timer.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    self.failed = true;
                    Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        TIMED_OUT,
                    )))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}
