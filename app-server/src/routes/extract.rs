//! Facts the route files read from a request beyond what an extractor gives, and the
//! extractor every page form's POST starts with ([`CheckedForm`]). Not a route: the JSON API
//! (`files.rs`) and the page form (`pages.rs`) both take uploads through it.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header::CONTENT_LENGTH;
use actix_web::{FromRequest, HttpRequest, web};

use super::render::PageError;
use crate::error::AppError;
use crate::files::{Csrf, UploadLimits};
use crate::sessions::{CSRF_FIELD, CSRF_HEADER, MaybeSession, Session};

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

/// A page's urlencoded form as its pairs, for forms whose fields repeat (a ticked box per
/// scope or event). A body that is not a form has no fields. As an extractor it reads the body
/// as `web::Bytes` does, so a body over the app's `PayloadConfig` limit is that extractor's
/// error.
pub struct FormFields(Vec<(String, String)>);

impl FormFields {
    pub fn parse(body: &[u8]) -> FormFields {
        FormFields(serde_urlencoded::from_bytes(body).unwrap_or_default())
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl FromRequest for FormFields {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<FormFields, actix_web::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = web::Bytes::from_request(req, payload);
        Box::pin(async move { Ok(FormFields::parse(&body.await?)) })
    }
}

/// A page form's body as its own extractor reads it, and the CSRF token it echoes. The
/// extractor decides what a body that is not a form answers (no fields, no form, or its error).
pub trait PageForm: FromRequest + 'static {
    /// The `csrf_token` field, if the body has one.
    fn csrf_token(&self) -> Option<&str>;
}

impl PageForm for FormFields {
    fn csrf_token(&self) -> Option<&str> {
        self.get(CSRF_FIELD)
    }
}

/// A page form's POST once the checks every one of them starts with have passed: a live
/// session (else the 401 page) and, in the body `F` reads, that session's CSRF token (else the
/// 403 `csrf` page, the session's own). The session and the body are extracted as a handler's
/// `(MaybeSession, F)` would be, so a body the extractor refuses (too large, too slow) answers
/// that refusal, whether or not the request is logged in.
pub struct CheckedForm<F = FormFields> {
    pub session: Session,
    pub form: F,
}

impl<F: PageForm> FromRequest for CheckedForm<F> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<CheckedForm<F>, actix_web::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let extracted = <(MaybeSession, F)>::from_request(req, payload);
        Box::pin(async move {
            let (MaybeSession(session), form) = extracted.await?;
            let session = session.ok_or_else(|| PageError::new(AppError::Unauthorized, None))?;
            session
                .check_csrf(form.csrf_token())
                .map_err(|e| PageError::new(e, Some(&session)))?;
            Ok(CheckedForm { session, form })
        })
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::StatusCode;
    use actix_web::http::header::CONTENT_TYPE;
    use actix_web::test::{TestRequest, call_service, init_service};
    use actix_web::{App, HttpResponse};
    use sqlx::AnyPool;

    use super::*;
    use crate::sessions::SessionPolicy;

    /// A logged-out request with a form body `len` bytes long, to an app whose bodies may be
    /// 64 bytes. No cookie, so the pool is never asked.
    async fn post_logged_out(len: usize) -> HttpResponse {
        sqlx::any::install_default_drivers();
        let db = AnyPool::connect_lazy("sqlite::memory:").unwrap();
        let policy = SessionPolicy {
            idle_secs: 60,
            max_secs: 60,
            secure_cookies: false,
        };
        let app = init_service(
            App::new()
                .app_data(web::Data::new(db))
                .app_data(web::Data::new(policy))
                .app_data(web::PayloadConfig::new(64))
                .route(
                    "/form",
                    web::post().to(|_: CheckedForm| async { HttpResponse::NoContent().finish() }),
                ),
        )
        .await;
        let req = TestRequest::post()
            .uri("/form")
            .insert_header((CONTENT_TYPE, "application/x-www-form-urlencoded"))
            .set_payload(format!("csrf_token={}", "x".repeat(len - 11)))
            .to_request();
        call_service(&app, req).await.into()
    }

    #[actix_web::test]
    async fn a_logged_out_form_is_the_401_page() {
        let response = post_logged_out(64).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers().get(CONTENT_TYPE).unwrap(),
            "text/html; charset=utf-8"
        );
    }

    #[actix_web::test]
    async fn an_oversize_body_is_the_body_extractors_413_logged_in_or_not() {
        let response = post_logged_out(65).await;
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
}
