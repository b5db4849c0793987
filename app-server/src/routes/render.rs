//! How the route files answer: JSON that no cache keeps, pages, redirects, and an error met
//! by a page ([`PageError`]). Not a route: it imports none, so every route file can use it.
//!
//! What an error answers (status, headers, words) is [`AppError::describe`]'s table; this
//! module only gives it a body.

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, LOCATION};
use actix_web::{HttpResponse, ResponseError};
use maud::Markup;

use crate::error::{AppError, ErrorFacts};
use crate::sessions::Session;
use crate::views;

/// Content-Security-Policy of every response: script, style, images and requests only from
/// this origin (`/static/…`; nothing inline, so an injected tag or attribute cannot run);
/// forms post only to us; never framed; no `<base>` rewriting links.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// A JSON answer about one user's things: no cache keeps it.
pub fn json_no_store(status: StatusCode, body: &impl serde::Serialize) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((CACHE_CONTROL, "no-store"))
        .json(body)
}

/// 303 to `location` (after a form, or to a fresh download link).
pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((LOCATION, location))
        .insert_header((CACHE_CONTROL, "no-store"))
        .finish()
}

/// A page.
pub fn html(status: StatusCode, body: Markup) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((CACHE_CONTROL, "no-store"))
        .body(body.into_string())
}

/// `error`'s status and headers (`Retry-After` included) with `page` as the body.
pub fn error_html(error: &AppError, page: impl FnOnce(&ErrorFacts) -> Markup) -> HttpResponse {
    let (mut response, facts) = error.answer();
    response
        .content_type("text/html; charset=utf-8")
        .body(page(&facts).into_string())
}

/// An [`AppError`] met by a page or a form, answered as HTML: the status and headers the
/// JSON API would send, with the table's page a person can act on.
#[derive(Debug)]
pub struct PageError {
    error: AppError,
    session: Option<Session>,
}

impl PageError {
    pub fn new(error: AppError, session: Option<&Session>) -> PageError {
        PageError {
            error,
            session: session.cloned(),
        }
    }
}

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        self.error.status_code()
    }

    fn error_response(&self) -> HttpResponse {
        error_html(&self.error, |facts| {
            views::error_page(facts.title, &facts.page, self.session.as_ref())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;
    use actix_web::http::header::CONTENT_TYPE;

    #[actix_web::test]
    async fn page_errors_are_html_with_the_api_status() {
        let response = PageError::new(AppError::TooLarge(1024), None).error_response();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            response.headers().get(CONTENT_TYPE).unwrap(),
            "text/html; charset=utf-8"
        );
        let body = to_bytes(response.into_body()).await.unwrap();
        let body = std::str::from_utf8(&body).unwrap();
        assert!(body.contains("the limit is 1.0 KiB"), "{body}");
    }

    #[actix_web::test]
    async fn throttled_pages_keep_retry_after() {
        let error = AppError::Throttled {
            retry_after_secs: 30,
        };
        let response = PageError::new(error, None).error_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers().get("Retry-After").unwrap(), "30");
        let body = to_bytes(response.into_body()).await.unwrap();
        let body = std::str::from_utf8(&body).unwrap();
        assert!(body.contains("Wait 30 seconds"), "{body}");
    }

    #[actix_web::test]
    async fn server_error_pages_do_not_say_why() {
        let response =
            PageError::new(AppError::Internal("secret /var/x".into()), None).error_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = to_bytes(response.into_body()).await.unwrap();
        assert!(!std::str::from_utf8(&body).unwrap().contains("secret"));
    }
}
