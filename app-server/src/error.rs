//! The app server's errors and the one place they become HTTP responses.
//!
//! Every response body is `{"error": CODE, "message": TEXT}` with a stable `CODE`; a 5xx never
//! says why (the cause is logged here instead).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// What a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("unknown user or wrong password")]
    InvalidCredentials,
    #[error("no valid session")]
    Unauthorized,
    #[error("missing or wrong CSRF token")]
    Csrf,
    #[error("a login from another site is refused; log in on this site's own page")]
    CrossSite,
    #[error("not found")]
    NotFound,
    #[error("the upload is larger than {0} bytes")]
    TooLarge(u64),
    #[error("{0}")]
    BadRequest(String),
    #[error("the request body was not received in time")]
    BodyTimeout,
    #[error("user {0:?} already exists")]
    UserExists(String),
    #[error("too many failed logins; try again in {retry_after_secs} s")]
    Throttled { retry_after_secs: u64 },
    #[error("too many logins at once; try again in a second")]
    Busy,
    #[error("you already keep {0} files, the most allowed; delete one first")]
    TooManyFiles(u64),
    #[error("this share is no longer available")]
    ShareGone,
    #[error("wrong password for this share")]
    WrongSharePassword,
    #[error("the server has no room left for this upload")]
    InsufficientStorage,
    #[error("the access token is unknown, revoked or expired")]
    InvalidToken,
    #[error("this access token lacks what this request needs: {0}")]
    InsufficientScope(&'static str),
    #[error("you already hold {0} access tokens, the most allowed; revoke one first")]
    TooManyTokens(u64),
    #[error("password log-in is turned off on this server; sign in through the identity provider")]
    PasswordLoginDisabled,
    #[error("only administrators may do this")]
    AdminOnly,
    /// A sign-in through the identity provider failed; its row is in [`crate::oidc::failure`].
    #[error("{0}")]
    Oidc(#[from] crate::oidc::Failure),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("signing: {0}")]
    Key(#[from] shared::KeyError),
    #[error("internal: {0}")]
    Internal(String),
}

impl AppError {
    /// The stable machine-readable code of the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::InvalidCredentials => "invalid_credentials",
            AppError::Unauthorized => "unauthorized",
            AppError::Csrf => "csrf",
            AppError::CrossSite => "cross_site",
            AppError::NotFound => "not_found",
            AppError::TooLarge(_) => "too_large",
            AppError::BadRequest(_) => "bad_request",
            AppError::BodyTimeout => "timeout",
            AppError::UserExists(_) => "conflict",
            AppError::Throttled { .. } => "throttled",
            AppError::Busy => "busy",
            AppError::TooManyFiles(_) => "too_many_files",
            AppError::InsufficientStorage => "insufficient_storage",
            AppError::ShareGone => "gone",
            AppError::WrongSharePassword => "wrong_password",
            AppError::InvalidToken => "invalid_token",
            AppError::InsufficientScope(_) => "insufficient_scope",
            AppError::TooManyTokens(_) => "too_many_tokens",
            AppError::PasswordLoginDisabled => "password_login_disabled",
            AppError::AdminOnly => "admin_only",
            AppError::Oidc(failure) => failure.facts().code,
            AppError::Database(_) | AppError::Io(_) | AppError::Key(_) | AppError::Internal(_) => {
                "internal"
            }
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: String,
}

/// The only text a client sees for a server-side failure.
const INTERNAL_MESSAGE: &str = "internal server error";

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            AppError::InvalidCredentials
            | AppError::Unauthorized
            | AppError::WrongSharePassword
            | AppError::InvalidToken => StatusCode::UNAUTHORIZED,
            AppError::InsufficientScope(_) => StatusCode::FORBIDDEN,
            AppError::TooManyTokens(_) => StatusCode::CONFLICT,
            AppError::PasswordLoginDisabled | AppError::AdminOnly => StatusCode::FORBIDDEN,
            AppError::Oidc(failure) => failure.facts().status,
            AppError::ShareGone => StatusCode::GONE,
            AppError::Csrf | AppError::CrossSite => StatusCode::FORBIDDEN,
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            AppError::UserExists(_) | AppError::TooManyFiles(_) => StatusCode::CONFLICT,
            AppError::Throttled { .. } | AppError::Busy => StatusCode::TOO_MANY_REQUESTS,
            // RFC 4918 section 11.5: the server cannot store what the request needs.
            AppError::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
            AppError::Database(_) | AppError::Io(_) | AppError::Key(_) | AppError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let message = if status.is_server_error()
            && !matches!(self, AppError::InsufficientStorage | AppError::Oidc(_))
        {
            tracing::error!(error = %self, "request failed");
            INTERNAL_MESSAGE.to_owned()
        } else {
            self.to_string()
        };
        let mut response = HttpResponse::build(status);
        response.insert_header(("Cache-Control", "no-store"));
        match self {
            AppError::Throttled { retry_after_secs } => {
                response.insert_header(("Retry-After", retry_after_secs.to_string()));
            }
            AppError::Busy => {
                response.insert_header(("Retry-After", "1"));
            }
            // RFC 6750 section 3: the error of a refused bearer token.
            AppError::InvalidToken => {
                response.insert_header((
                    "WWW-Authenticate",
                    r#"Bearer realm="burnlink", error="invalid_token""#,
                ));
            }
            AppError::InsufficientScope(_) => {
                response.insert_header((
                    "WWW-Authenticate",
                    r#"Bearer realm="burnlink", error="insufficient_scope""#,
                ));
            }
            _ => {}
        }
        response.json(ErrorBody {
            error: self.code(),
            message,
        })
    }
}

/// Why the server did not start. Printed by `main`, never sent to a client.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("invalid setting {setting}: {reason}")]
    Config {
        setting: &'static str,
        reason: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("signing key: {0}")]
    Key(#[from] shared::KeyError),
    #[error("embedded download server: {0}")]
    DownloadServer(#[from] download_server::StartupError),
    #[error("{0}")]
    Tls(#[from] server_kit::tls::TlsError),
    #[error("{0}")]
    App(#[from] AppError),
    #[error("{0}")]
    FileStore(#[from] file_store::SettingError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;

    #[actix_web::test]
    async fn server_errors_do_not_say_why() {
        let err = AppError::Internal("secret path /var/lib/x".into());
        let response = err.error_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = to_bytes(response.into_body()).await.unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"], "internal");
        assert_eq!(json["message"], INTERNAL_MESSAGE);
    }

    #[actix_web::test]
    async fn client_errors_carry_their_code() {
        let response = AppError::Csrf.error_response();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let body = to_bytes(response.into_body()).await.unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"], "csrf");
    }
}
