use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, HttpResponseBuilder, ResponseError};
use shared::TokenError;

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

impl DownloadError {
    /// The stable code clients and the metrics see.
    pub fn code(&self) -> &'static str {
        match self {
            DownloadError::MissingToken => "invalid_token",
            DownloadError::Token(TokenError::Expired) => "token_expired",
            DownloadError::Token(_) => "invalid_token",
            DownloadError::Used => "token_used",
            DownloadError::NotFound => "not_found",
            DownloadError::RangeNotSatisfiable { .. } => "range_not_satisfiable",
            DownloadError::PrefetchDeclined => "prefetch_declined",
            DownloadError::Store(_) => "unavailable",
            DownloadError::Io(_) => "internal",
        }
    }

    fn message(&self) -> &'static str {
        match self {
            DownloadError::MissingToken => "This request carries no download link token.",
            DownloadError::Token(TokenError::Expired) => {
                "This download link has expired. Ask for a new one."
            }
            DownloadError::Token(_) => "This download link is not valid.",
            DownloadError::Used => {
                "This download link has already been used. Each link works once: ask for a new one."
            }
            DownloadError::NotFound => "The file behind this link no longer exists.",
            DownloadError::RangeNotSatisfiable { .. } => {
                "The requested byte range lies outside the file."
            }
            DownloadError::PrefetchDeclined => {
                "Links are not served to prefetch requests; open the link to download."
            }
            DownloadError::Store(_) => {
                "Downloads are briefly unavailable. Try again in a moment; the link was not used."
            }
            DownloadError::Io(_) => "Something went wrong on our side.",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            DownloadError::Token(TokenError::Expired) => "Link expired",
            DownloadError::MissingToken | DownloadError::Token(_) => "Invalid link",
            DownloadError::Used => "Link already used",
            DownloadError::NotFound => "File not found",
            DownloadError::RangeNotSatisfiable { .. } => "Range not satisfiable",
            DownloadError::PrefetchDeclined | DownloadError::Store(_) => "Try again",
            DownloadError::Io(_) => "Server error",
        }
    }

    fn builder(&self) -> HttpResponseBuilder {
        let mut res = HttpResponse::build(self.status_code());
        res.insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::REFERRER_POLICY, "no-referrer"))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
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

    /// The response: a small HTML page for browsers (which show it to a person), JSON for
    /// everything else.
    pub fn respond(&self, html: bool) -> HttpResponse {
        if self.status_code().is_server_error() {
            tracing::error!(error = %self, code = self.code(), "download failed");
        }
        if !html {
            return self.error_response();
        }
        let page = format!(
            "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
             <title>{title}</title>\
             <body style=\"font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem\">\
             <h1>{title}</h1><p>{message}</p></body></html>",
            title = self.title(),
            message = self.message(),
        );
        self.builder()
            .insert_header((
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
            ))
            .content_type("text/html; charset=utf-8")
            .body(page)
    }
}

impl ResponseError for DownloadError {
    fn status_code(&self) -> StatusCode {
        match self {
            DownloadError::MissingToken | DownloadError::Token(_) => StatusCode::UNAUTHORIZED,
            DownloadError::Used => StatusCode::GONE,
            DownloadError::NotFound => StatusCode::NOT_FOUND,
            DownloadError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            DownloadError::PrefetchDeclined | DownloadError::Store(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            DownloadError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        self.builder().json(serde_json::json!({
            "error": self.code(),
            "message": self.message(),
        }))
    }
}
