//! Facts the route files read from a request beyond what an extractor gives. Not a route: the
//! JSON API (`files.rs`) and the page form (`pages.rs`) both take uploads through it.

use actix_web::HttpRequest;
use actix_web::http::header::CONTENT_LENGTH;

use crate::error::AppError;
use crate::files::{Csrf, UploadLimits};
use crate::sessions::{CSRF_HEADER, Session};

/// Room for multipart boundaries, headers and the CSRF field around the file's bytes.
const MULTIPART_OVERHEAD: u64 = 64 * 1024;

/// How an upload proves its CSRF token: the header if it has one, else a `csrf_token` field
/// ahead of the file. Also refuses a body whose declared length is already over the limit, so
/// nothing is written for it.
pub fn upload_csrf(
    req: &HttpRequest,
    limits: UploadLimits,
    session: &Session,
) -> Result<Csrf, AppError> {
    let mode = if session.token().is_some() || req.headers().contains_key(CSRF_HEADER) {
        session.check_csrf_header(req)?;
        Csrf::CheckedHeader
    } else {
        Csrf::ExpectField
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(length) = declared
        && length > limits.max_upload_bytes.saturating_add(MULTIPART_OVERHEAD)
    {
        return Err(AppError::TooLarge(limits.max_upload_bytes));
    }
    Ok(mode)
}
