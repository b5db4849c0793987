use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, HttpResponseBuilder, ResponseError};
use maud::{DOCTYPE, PreEscaped, html};
use shared::TokenError;

use crate::audit::Outcome;

/// Every way a download can be refused. Each maps to one status and one stable `error` code
/// (documented in docs/TOKEN.md); the message says what a person can do about it.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("no token")]
    MissingToken,
    #[error(transparent)]
    Token(TokenError),
    #[error("token already used")]
    Used,
    #[error("file not found")]
    NotFound,
    #[error("range not satisfiable")]
    RangeNotSatisfiable { size: u64 },
    #[error("prefetch declined")]
    PrefetchDeclined,
    /// A resume of a download whose file is no longer the version it started on.
    #[error("file changed since the download started")]
    FileChanged,
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl From<TokenError> for DownloadError {
    fn from(e: TokenError) -> Self {
        DownloadError::Token(e)
    }
}

/// Everything said about one refusal, in one place: the status, the stable `error` code
/// (documented in docs/TOKEN.md), the audit outcome, and what a person reads.
pub struct Refusal {
    pub status: StatusCode,
    pub code: &'static str,
    pub outcome: Outcome,
    /// The error page's heading.
    pub title: &'static str,
    /// What happened, for a person.
    pub message: &'static str,
    /// What to do next, after the message (may be empty).
    pub advice: &'static str,
}

const NEW_LINK: &str = "If it is your file, you can make a new link in burnlink.";

impl DownloadError {
    /// The one table of refusals: adding a way to refuse is one variant and one row here.
    pub fn describe(&self) -> Refusal {
        use StatusCode as S;
        let row = |status, code, outcome, title, message, advice| Refusal {
            status,
            code,
            outcome,
            title,
            message,
            advice,
        };
        match self {
            DownloadError::MissingToken => row(
                S::UNAUTHORIZED,
                "invalid_token",
                Outcome::Invalid,
                "Invalid link",
                "This request carries no download link token.",
                "Check that the whole link was copied, or ask for a new one.",
            ),
            DownloadError::Token(TokenError::Expired) => row(
                S::UNAUTHORIZED,
                "token_expired",
                Outcome::Expired,
                "Link expired",
                "This download link has expired. Ask for a new one.",
                NEW_LINK,
            ),
            DownloadError::Token(_) => row(
                S::UNAUTHORIZED,
                "invalid_token",
                Outcome::Invalid,
                "Invalid link",
                "This download link is not valid.",
                "Check that the whole link was copied, or ask for a new one.",
            ),
            DownloadError::Used => row(
                S::GONE,
                "token_used",
                Outcome::Used,
                "Link already used",
                "This download link has already been used. Each link works once: ask for a new one.",
                NEW_LINK,
            ),
            DownloadError::NotFound => row(
                S::NOT_FOUND,
                "not_found",
                Outcome::NotFound,
                "File not found",
                "The file behind this link no longer exists.",
                "",
            ),
            DownloadError::RangeNotSatisfiable { .. } => row(
                S::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                Outcome::RangeNotSatisfiable,
                "Range not satisfiable",
                "The requested byte range lies outside the file.",
                "",
            ),
            DownloadError::PrefetchDeclined => row(
                S::SERVICE_UNAVAILABLE,
                "prefetch_declined",
                Outcome::PrefetchDeclined,
                "Try again",
                "Links are not served to prefetch requests; open the link to download.",
                "",
            ),
            DownloadError::FileChanged => row(
                S::PRECONDITION_FAILED,
                "file_changed",
                Outcome::FileChanged,
                "File changed",
                "The file changed since this download started, so it cannot be resumed.",
                NEW_LINK,
            ),
            DownloadError::Store(_) => row(
                S::SERVICE_UNAVAILABLE,
                "unavailable",
                Outcome::Unavailable,
                "Try again",
                "Downloads are briefly unavailable. Try again in a moment; the link was not used.",
                "",
            ),
            DownloadError::Io(_) => row(
                S::INTERNAL_SERVER_ERROR,
                "internal",
                Outcome::Error,
                "Server error",
                "Something went wrong on our side.",
                "",
            ),
        }
    }

    /// The stable code clients and the metrics see.
    pub fn code(&self) -> &'static str {
        self.describe().code
    }

    /// The outcome the audit trail and `burnlink_downloads_total` record.
    pub fn outcome(&self) -> Outcome {
        self.describe().outcome
    }

    /// The refusal's own headers; the security headers every response carries are added by
    /// `server_kit::headers::defaults`.
    fn builder(&self) -> HttpResponseBuilder {
        let mut res = HttpResponse::build(self.status_code());
        match self {
            // RFC 6750 section 3: a challenge on every 401; no error code when no token came.
            DownloadError::MissingToken => {
                res.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            DownloadError::Token(_) => {
                res.insert_header((header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\""));
            }
            DownloadError::RangeNotSatisfiable { size } => {
                res.insert_header((header::CONTENT_RANGE, format!("bytes */{size}")));
            }
            DownloadError::Store(_) | DownloadError::PrefetchDeclined => {
                res.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
            }
            _ => {}
        }
        res
    }

    /// The response: a small HTML page for browsers (which show it to a person), with a way
    /// back to the app when `app_url` is known; JSON for everything else.
    pub fn respond(&self, html: bool, app_url: Option<&str>) -> HttpResponse {
        // A store outage is logged once by the store; prefetch refusals are routine.
        if let DownloadError::Io(e) = self {
            tracing::error!(error = %e, "download failed");
        }
        if !html {
            return self.error_response();
        }
        // The page's own CSP, in place of the server's default: it allows the page's style.
        self.builder()
            .insert_header((header::CONTENT_SECURITY_POLICY, PAGE_CSP))
            .content_type("text/html; charset=utf-8")
            .body(self.page(app_url))
    }

    /// The error page: the same shape as the app's pages, rendered by maud (which escapes
    /// every value it is given).
    fn page(&self, app_url: Option<&str>) -> String {
        let refusal = self.describe();
        let page = html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    meta name="referrer" content="no-referrer";
                    title { (refusal.title) " · burnlink" }
                    style { (PreEscaped(PAGE_STYLE)) }
                }
                body {
                    main {
                        p.brand { "burnlink" }
                        h1 { (refusal.title) }
                        p { (refusal.message) }
                        @if !refusal.advice.is_empty() {
                            p.muted { (refusal.advice) }
                        }
                        @if let Some(url) = app_url {
                            p { a.btn href={ (url) "/" } { "Go to burnlink" } }
                        }
                    }
                }
            }
        };
        page.into_string()
    }
}

/// The error page's only style, inline: no request for a stylesheet from a server that
/// serves nothing but downloads.
const PAGE_STYLE: &str = "body{margin:0;font:16px/1.5 system-ui,sans-serif;color:#1d2127;\
background:#f5f6f8}main{max-width:30rem;margin:3rem auto;padding:1.5rem;background:#fff;\
border:1px solid #dde1e7;border-radius:10px}.brand{font-weight:700;color:#9a3412;margin:0}\
h1{font-size:1.5rem;margin:.25rem 0 .75rem}.muted{color:#5b6270}.btn{display:inline-block;\
padding:.55rem 1rem;border-radius:8px;background:#c2410c;color:#fff;font-weight:600;\
text-decoration:none}.btn:hover{background:#9a3412}a:focus-visible{outline:3px solid #1d4ed8;\
outline-offset:2px}@media (max-width:32rem){main{margin:1rem;padding:1rem}}";

/// The error page's CSP: nothing but [`PAGE_STYLE`], allowed by its hash (CSP Level 3
/// section 8.2), so no injected script or style could run.
const PAGE_CSP: &str = "default-src 'none'; \
     style-src 'sha256-0osVv5fbd0O7uZqBdYIAb14wXgDRkDgVcff7y4LCeyA='; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

impl ResponseError for DownloadError {
    fn status_code(&self) -> StatusCode {
        self.describe().status
    }

    fn error_response(&self) -> HttpResponse {
        let refusal = self.describe();
        self.builder().json(serde_json::json!({
            "error": refusal.code,
            "message": refusal.message,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;
    use base64::Engine;
    use sha2::{Digest, Sha256};

    #[test]
    fn csp_allows_exactly_the_page_style() {
        let hash =
            base64::engine::general_purpose::STANDARD.encode(Sha256::digest(PAGE_STYLE.as_bytes()));
        assert!(
            PAGE_CSP.contains(&format!("'sha256-{hash}'")),
            "update PAGE_CSP: the style's hash is {hash}"
        );
    }

    #[actix_web::test]
    async fn html_pages_link_back_to_the_app_escaped() {
        let response = DownloadError::Used.respond(true, Some("https://app.example/x?\"<"));
        assert_eq!(response.status(), StatusCode::GONE);
        let body = to_bytes(response.into_body()).await.unwrap();
        let body = std::str::from_utf8(&body).unwrap();
        assert!(body.contains("already been used"), "{body}");
        assert!(
            body.contains("href=\"https://app.example/x?&quot;&lt;/\""),
            "{body}"
        );

        let response = DownloadError::Used.respond(true, None);
        let body = to_bytes(response.into_body()).await.unwrap();
        assert!(!std::str::from_utf8(&body).unwrap().contains("href"));
    }
}
