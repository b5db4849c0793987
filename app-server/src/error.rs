//! The app server's errors and the one table of what each answers ([`AppError::describe`]):
//! status, code, headers, page text and what a share's visitor reads.
//!
//! Every JSON error body is an [`ErrorBody`], `{"error": CODE, "message": TEXT}` with a stable
//! `CODE`; a server-side failure never says why (the cause is logged here instead).

use std::borrow::Cow;

use actix_web::http::StatusCode;
use actix_web::http::header::{
    ALLOW, CACHE_CONTROL, HeaderName, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE,
};
use actix_web::{HttpResponse, HttpResponseBuilder, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

// The sign-in failures' own module imports nothing of the app's: no circle through here.
use crate::oidc::failure::{CLIENT, Failure, ISSUER, said};
use crate::views::size::human_size;

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
    #[error("this upload link can no longer be used: it expired, was revoked or is full")]
    UploadLinkGone,
    #[error("this upload link is taking all the files it allows right now; nothing was stored")]
    UploadLinkFull,
    #[error("wrong password for this upload link")]
    WrongUploadPassword,
    #[error("the server has no room left for this upload")]
    InsufficientStorage,
    #[error("the access token is unknown, revoked or expired")]
    InvalidToken,
    #[error("this access token lacks what this request needs: {0}")]
    InsufficientScope(&'static str),
    #[error("you already hold {0} access tokens, the most allowed; revoke one first")]
    TooManyTokens(u64),
    /// A webhook URL whose host is, or resolves to, an address deliveries may not reach.
    #[error("{0}")]
    UrlRefused(String),
    #[error("you already have {0} webhooks, the most allowed; delete one first")]
    TooManyWebhooks(u64),
    #[error("this webhook is disabled after failing for too long; re-enable it first")]
    WebhookDisabled,
    /// A known `/api` path asked with a method it does not take; carries the `Allow` value.
    #[error("this URL does not take that method")]
    MethodNotAllowed(HeaderValue),
    #[error("password log-in is turned off on this server; sign in through the identity provider")]
    PasswordLoginDisabled,
    #[error("only administrators may do this")]
    AdminOnly,
    /// A tus request without `Tus-Resumable: 1.0.0` (tus 1.0 core: 412 with `Tus-Version`).
    #[error("this server speaks tus 1.0.0: send Tus-Resumable: 1.0.0")]
    TusVersion,
    /// A PATCH whose `Upload-Offset` is not the upload's: nothing was written.
    #[error("Upload-Offset {presented} is not the upload's offset, {offset}; ask with HEAD")]
    OffsetMismatch { presented: u64, offset: u64 },
    /// Another request is writing this upload right now.
    #[error("another request is writing this upload; try again when it ends")]
    UploadBusy,
    /// The upload ran past `--upload-expiry-secs` before its last byte.
    #[error("this upload expired before it was complete; start it again")]
    UploadExpired,
    /// A request body in a media type the route does not take.
    #[error("the body must be {0}")]
    UnsupportedMediaType(&'static str),
    /// A sign-in through the identity provider failed ([`crate::oidc::failure`]).
    #[error("{0}")]
    Oidc(#[from] Failure),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("signing: {0}")]
    Key(#[from] shared::KeyError),
    #[error("internal: {0}")]
    Internal(String),
}

/// Everything the app says about one error, in one place: the JSON API, the pages and a
/// share's visitor page all read it. Adding an error is one variant and one row in
/// [`AppError::describe`].
#[derive(Debug)]
pub struct ErrorFacts {
    pub status: StatusCode,
    /// The stable `error` code of the JSON body.
    pub code: &'static str,
    /// A header this status needs beside `Cache-Control: no-store`.
    pub header: Option<(HeaderName, HeaderValue)>,
    /// A server-side failure: the cause is logged and no answer says it.
    pub internal: bool,
    /// A page's heading.
    pub title: &'static str,
    /// What a page says: what happened and what a person can do.
    pub page: Cow<'static, str>,
    /// What a share's visitor reads; `None`: the one neutral page that does not tell an
    /// unknown share from one that is no more.
    pub visitor: Option<Cow<'static, str>>,
}

impl ErrorFacts {
    fn header(mut self, name: HeaderName, value: HeaderValue) -> ErrorFacts {
        self.header = Some((name, value));
        self
    }

    fn visitor(mut self, text: impl Into<Cow<'static, str>>) -> ErrorFacts {
        self.visitor = Some(text.into());
        self
    }

    fn neutral_to_visitors(mut self) -> ErrorFacts {
        self.visitor = None;
        self
    }
}

/// tus 1.0 core: the protocol versions a server speaks, sent with a 412.
const TUS_VERSION: HeaderName = HeaderName::from_static("tus-version");

/// The only text a client sees for a server-side failure.
const INTERNAL_MESSAGE: &str = "internal server error";

/// RFC 6750 section 3: the challenge of a refused bearer token.
const INVALID_TOKEN: HeaderValue =
    HeaderValue::from_static(r#"Bearer realm="burnlink", error="invalid_token""#);
const INSUFFICIENT_SCOPE: HeaderValue =
    HeaderValue::from_static(r#"Bearer realm="burnlink", error="insufficient_scope""#);

impl AppError {
    /// The one table of the app's errors.
    pub fn describe(&self) -> ErrorFacts {
        use StatusCode as S;
        // The visitor reads what a page says unless the row says otherwise.
        let row = |status, code, title, page: Cow<'static, str>| ErrorFacts {
            status,
            code,
            header: None,
            internal: false,
            title,
            visitor: Some(page.clone()),
            page,
        };
        // The error's own words, for errors a person meets rarely in the browser.
        let refused = |status, code| row(status, code, "Request refused", self.to_string().into());
        match self {
            AppError::InvalidCredentials => row(
                S::UNAUTHORIZED,
                "invalid_credentials",
                "Log in failed",
                "Unknown user or wrong password.".into(),
            ),
            AppError::Unauthorized => row(
                S::UNAUTHORIZED,
                "unauthorized",
                "Logged out",
                "Your session has ended (it expires after a while without use). Log in again."
                    .into(),
            ),
            AppError::Csrf => row(
                S::FORBIDDEN,
                "csrf",
                "Page out of date",
                "This form was out of date (your session changed since the page was loaded), so \
                 nothing was done. Go back, reload the page and try again."
                    .into(),
            )
            .visitor("This page was out of date, so nothing was used. Press Download again."),
            AppError::CrossSite => row(
                S::FORBIDDEN,
                "cross_site",
                "Request refused",
                "That log-in was sent from another site, so it was refused. Log in on this page."
                    .into(),
            )
            .visitor(
                "This download was started from another site, so nothing was used. Open the \
                 link itself and press Download.",
            ),
            AppError::NotFound => row(
                S::NOT_FOUND,
                "not_found",
                "Not found",
                "That file does not exist: it may have been deleted.".into(),
            )
            .neutral_to_visitors(),
            AppError::TooLarge(limit) => row(
                S::PAYLOAD_TOO_LARGE,
                "too_large",
                "File too large",
                format!(
                    "That file is too large: the limit is {}. Nothing was stored.",
                    human_size(*limit)
                )
                .into(),
            ),
            AppError::BadRequest(why) => row(
                S::BAD_REQUEST,
                "bad_request",
                "Bad request",
                format!("The request was refused: {why}.").into(),
            ),
            AppError::BodyTimeout => refused(S::REQUEST_TIMEOUT, "timeout"),
            AppError::UserExists(_) => refused(S::CONFLICT, "conflict"),
            AppError::Throttled { retry_after_secs } => row(
                S::TOO_MANY_REQUESTS,
                "throttled",
                "Too many attempts",
                format!(
                    "Too many failed log-ins in a short time. Wait {retry_after_secs} seconds \
                     and try again."
                )
                .into(),
            )
            .header(RETRY_AFTER, HeaderValue::from(*retry_after_secs))
            // Only a share's password is throttled on a share's page.
            .visitor(format!(
                "Too many wrong passwords. Wait {retry_after_secs} seconds and try again."
            )),
            AppError::Busy => row(
                S::TOO_MANY_REQUESTS,
                "busy",
                "Too many log-ins at once",
                "The server is checking many log-ins right now. Try again in a second.".into(),
            )
            .header(RETRY_AFTER, HeaderValue::from_static("1")),
            AppError::TooManyFiles(most) => row(
                S::CONFLICT,
                "too_many_files",
                "Too many files",
                format!("You already keep {most} files, the most allowed. Delete one first.")
                    .into(),
            ),
            AppError::ShareGone => refused(S::GONE, "gone").neutral_to_visitors(),
            AppError::WrongSharePassword => refused(S::UNAUTHORIZED, "wrong_password")
                .visitor("Wrong password. Nothing was used; try again."),
            // Unlike a share's, the uploader is told what happened: the link names no file.
            AppError::UploadLinkGone => row(
                S::GONE,
                "upload_link_gone",
                "Link not available",
                "This upload link can no longer be used: it has expired, been withdrawn, or \
                 received all it allows. Nothing was stored. Ask the person who sent it for a \
                 new one."
                    .into(),
            ),
            AppError::UploadLinkFull => row(
                S::CONFLICT,
                "upload_link_full",
                "Link full",
                "This upload link is receiving as many files as it allows right now, so \
                 nothing was stored. If one of them fails, its place frees up: try again in a \
                 moment."
                    .into(),
            ),
            AppError::WrongUploadPassword => refused(S::UNAUTHORIZED, "wrong_password")
                .visitor("Wrong password. Nothing was stored; try again."),
            // RFC 4918 section 11.5: the server cannot store what the request needs. Not a
            // fault to hide: the client can act on it.
            AppError::InsufficientStorage => row(
                S::INSUFFICIENT_STORAGE,
                "insufficient_storage",
                "No room left",
                "The server has no room left for this upload. Nothing was stored; try again \
                 later."
                    .into(),
            ),
            AppError::InvalidToken => {
                refused(S::UNAUTHORIZED, "invalid_token").header(WWW_AUTHENTICATE, INVALID_TOKEN)
            }
            AppError::InsufficientScope(_) => refused(S::FORBIDDEN, "insufficient_scope")
                .header(WWW_AUTHENTICATE, INSUFFICIENT_SCOPE),
            AppError::TooManyTokens(_) => refused(S::CONFLICT, "too_many_tokens"),
            // RFC 9110 section 15.5.21: the request is well-formed, but where it points is
            // not a place this server will send to.
            AppError::UrlRefused(why) => row(
                S::UNPROCESSABLE_ENTITY,
                "url_refused",
                "Address refused",
                format!("That webhook URL was refused: {why}.").into(),
            ),
            AppError::TooManyWebhooks(_) => refused(S::CONFLICT, "too_many_webhooks"),
            AppError::WebhookDisabled => refused(S::CONFLICT, "webhook_disabled"),
            // RFC 9110 section 15.5.6: a 405 lists the methods the resource takes.
            AppError::MethodNotAllowed(allow) => {
                refused(S::METHOD_NOT_ALLOWED, "method_not_allowed").header(ALLOW, allow.clone())
            }
            AppError::PasswordLoginDisabled => row(
                S::FORBIDDEN,
                "password_login_disabled",
                "Password log-in turned off",
                "Log-in with a password is turned off on this server. Sign in through your \
                 identity provider instead."
                    .into(),
            ),
            AppError::AdminOnly => row(
                S::FORBIDDEN,
                "admin_only",
                "Administrators only",
                "Only administrators may see this page.".into(),
            ),
            AppError::TusVersion => refused(S::PRECONDITION_FAILED, "tus_version")
                .header(TUS_VERSION, HeaderValue::from_static("1.0.0")),
            // tus 1.0 core: a wrong offset is 409 and changes nothing.
            AppError::OffsetMismatch { .. } => refused(S::CONFLICT, "offset_mismatch"),
            // RFC 4918 section 11.3: the resource is locked (by the PATCH holding it).
            AppError::UploadBusy => refused(S::LOCKED, "upload_busy"),
            AppError::UploadExpired => refused(S::GONE, "upload_expired"),
            AppError::UnsupportedMediaType(_) => {
                refused(S::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            AppError::Oidc(failure) => oidc_row(failure, row),
            AppError::Database(_) | AppError::Io(_) | AppError::Key(_) | AppError::Internal(_) => {
                ErrorFacts {
                    internal: true,
                    ..row(
                        S::INTERNAL_SERVER_ERROR,
                        "internal",
                        "Something went wrong",
                        "Something went wrong on our side. Try again in a moment.".into(),
                    )
                }
                .visitor(
                    "Something went wrong on our side. Nothing was used; try again in a moment.",
                )
            }
        }
    }

    /// The stable machine-readable code of the JSON body.
    pub fn code(&self) -> &'static str {
        self.describe().code
    }

    /// The start of every answer to this error, whatever its body (JSON, a page, a visitor's
    /// page): its status, its header and `no-store`, with its row. A server-side failure's
    /// cause is logged here, once, and goes no further.
    pub fn answer(&self) -> (HttpResponseBuilder, ErrorFacts) {
        let facts = self.describe();
        if facts.internal {
            tracing::error!(error = %self, "request failed");
        }
        let mut response = HttpResponse::build(facts.status);
        response.insert_header((CACHE_CONTROL, "no-store"));
        if let Some(header) = facts.header.clone() {
            response.insert_header(header);
        }
        (response, facts)
    }
}

/// The rows of the sign-ins through the identity provider: what failed, and the setting to
/// check. A provider that cannot be reached or answers wrongly is 502, not a fault of ours to
/// hide (its cause is logged where it is found).
fn oidc_row(
    failure: &Failure,
    row: impl Fn(StatusCode, &'static str, &'static str, Cow<'static, str>) -> ErrorFacts,
) -> ErrorFacts {
    use Failure as F;
    use StatusCode as S;
    match failure {
        F::Denied { error, description } => row(
            S::FORBIDDEN,
            "oidc_denied",
            "Sign-in refused",
            format!(
                "The identity provider did not sign you in ({error}{}). Nothing was changed \
                 here; sign in again, or ask your administrator.",
                said(description)
            )
            .into(),
        ),
        F::Callback(why) => row(
            S::BAD_REQUEST,
            "bad_request",
            "Sign-in refused",
            format!("This sign-in answer is malformed ({why}). Sign in again.").into(),
        ),
        F::State => row(
            S::BAD_REQUEST,
            "oidc_state",
            "Sign-in expired",
            "This sign-in answer does not belong to a sign-in started in this browser in the \
             last ten minutes, or it was used already. Sign in again."
                .into(),
        ),
        F::Unreachable(endpoint) => row(
            S::BAD_GATEWAY,
            "oidc_unreachable",
            "Identity provider unreachable",
            format!(
                "The identity provider's {} could not be reached, so nobody can sign in \
                 through it right now. Try again in a moment; if it persists, check {ISSUER} \
                 and that this server reaches the provider.",
                endpoint.name()
            )
            .into(),
        ),
        F::Discovery(why) => row(
            S::BAD_GATEWAY,
            "oidc_discovery",
            "Identity provider misconfigured",
            format!(
                "The identity provider's discovery document cannot be used: {why}. Check \
                 {ISSUER}: it must be the provider's issuer exactly as the document names it."
            )
            .into(),
        ),
        F::TokenRefused { error, description } => match error.as_str() {
            "invalid_grant" => row(
                S::BAD_REQUEST,
                "oidc_token",
                "Sign-in expired",
                format!(
                    "The identity provider refused the sign-in code ({error}{}): it was used \
                     already or has expired. Sign in again.",
                    said(description)
                )
                .into(),
            ),
            "invalid_client" | "unauthorized_client" => row(
                S::BAD_GATEWAY,
                "oidc_token",
                "Identity provider refused this server",
                format!(
                    "The identity provider did not accept this server as its client \
                     ({error}{}). Check {CLIENT} against the client registered at the \
                     provider.",
                    said(description)
                )
                .into(),
            ),
            _ => row(
                S::BAD_GATEWAY,
                "oidc_token",
                "Sign-in failed",
                format!(
                    "The identity provider refused to finish the sign-in ({error}{}). Check \
                     the client registered at the provider ({CLIENT}, its redirect URI).",
                    said(description)
                )
                .into(),
            ),
        },
        F::TokenAnswer => row(
            S::BAD_GATEWAY,
            "oidc_token",
            "Sign-in failed",
            format!(
                "The identity provider's token endpoint sent an answer that is not an OpenID \
                 Connect token response. Check {ISSUER}."
            )
            .into(),
        ),
        F::IdToken(problem) => row(
            S::BAD_GATEWAY,
            "oidc_id_token",
            "Sign-in refused",
            format!(
                "The identity provider's ID token was refused: {}",
                problem.text()
            )
            .into(),
        ),
        F::NotAllowed {
            claim_present: true,
        } => row(
            S::FORBIDDEN,
            "oidc_not_allowed",
            "Not allowed",
            "Your account is not in a group allowed to use this service \
             (--oidc-allowed-groups). Ask your administrator."
                .into(),
        ),
        F::NotAllowed {
            claim_present: false,
        } => row(
            S::FORBIDDEN,
            "oidc_not_allowed",
            "Not allowed",
            "The identity provider sent no groups for your account, and only members of some \
             groups may use this service (--oidc-allowed-groups). Ask your administrator to \
             have the provider send the groups claim (--oidc-groups-claim)."
                .into(),
        ),
        F::Busy => row(
            S::TOO_MANY_REQUESTS,
            "busy",
            "Too many sign-ins at once",
            "Too many sign-ins are in progress right now. Try again in a minute.".into(),
        ),
    }
}

/// Every error body of the JSON API, as sent and as the OpenAPI document describes it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable, machine-readable: `unauthorized`, `invalid_token`, `insufficient_scope`, …
    #[schema(value_type = String)]
    pub error: &'static str,
    /// For people; may change. A server-side failure says only "internal server error".
    pub message: String,
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        self.describe().status
    }

    fn error_response(&self) -> HttpResponse {
        let (mut response, facts) = self.answer();
        let message = if facts.internal {
            INTERNAL_MESSAGE.to_owned()
        } else {
            self.to_string()
        };
        response.json(ErrorBody {
            error: facts.code,
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
    /// A route's declaration beside its handler cannot be served (`routes::api`).
    #[error("route {route}: {why}")]
    Route { route: String, why: String },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oidc::failure::{Endpoint, IdTokenProblem};
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

    /// One of each variant.
    fn every_error() -> Vec<AppError> {
        vec![
            AppError::InvalidCredentials,
            AppError::Unauthorized,
            AppError::Csrf,
            AppError::CrossSite,
            AppError::NotFound,
            AppError::TooLarge(1024),
            AppError::BadRequest("why".into()),
            AppError::BodyTimeout,
            AppError::UserExists("alice".into()),
            AppError::Throttled {
                retry_after_secs: 7,
            },
            AppError::Busy,
            AppError::TooManyFiles(3),
            AppError::ShareGone,
            AppError::WrongSharePassword,
            AppError::UploadLinkGone,
            AppError::UploadLinkFull,
            AppError::WrongUploadPassword,
            AppError::InsufficientStorage,
            AppError::InvalidToken,
            AppError::InsufficientScope("files:read"),
            AppError::TooManyTokens(50),
            AppError::UrlRefused("127.0.0.1 is a loopback address".into()),
            AppError::TooManyWebhooks(20),
            AppError::WebhookDisabled,
            AppError::MethodNotAllowed(HeaderValue::from_static("GET")),
            AppError::PasswordLoginDisabled,
            AppError::AdminOnly,
            AppError::TusVersion,
            AppError::OffsetMismatch {
                presented: 1,
                offset: 2,
            },
            AppError::UploadBusy,
            AppError::UploadExpired,
            AppError::UnsupportedMediaType("application/offset+octet-stream"),
            AppError::Oidc(Failure::State),
            AppError::Oidc(Failure::Unreachable(Endpoint::Token)),
            AppError::Database(sqlx::Error::PoolTimedOut),
            AppError::Io(std::io::Error::other("secret /var/x")),
            AppError::Internal("secret /var/x".into()),
        ]
    }

    /// What every row promises: a server-side failure is a 500 whose words, on every surface,
    /// never carry its cause; anything else is not a 500 and says what happened.
    #[test]
    fn every_row_keeps_the_tables_promises() {
        for error in every_error() {
            let facts = error.describe();
            assert_eq!(
                facts.internal,
                facts.status == StatusCode::INTERNAL_SERVER_ERROR,
                "{error:?}"
            );
            assert!(facts.status.is_client_error() || facts.status.is_server_error());
            assert!(
                !facts.title.is_empty() && !facts.page.is_empty(),
                "{error:?}"
            );
            if facts.internal {
                assert_eq!(facts.code, "internal");
                for words in [Some(&facts.page), facts.visitor.as_ref()] {
                    assert!(!words.unwrap().contains("secret"), "{error:?}");
                }
            }
        }
    }

    #[actix_web::test]
    async fn each_row_sends_its_header() {
        let response = AppError::Busy.error_response();
        assert_eq!(response.headers().get(RETRY_AFTER).unwrap(), "1");
        let response = AppError::InsufficientScope("files:read").error_response();
        assert_eq!(
            response.headers().get(WWW_AUTHENTICATE).unwrap(),
            INSUFFICIENT_SCOPE
        );
        let allow = HeaderValue::from_static("GET, POST");
        let response = AppError::MethodNotAllowed(allow.clone()).error_response();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers().get(ALLOW).unwrap(), allow);
        assert_eq!(response.headers().get(CACHE_CONTROL).unwrap(), "no-store");
    }

    #[test]
    fn each_sign_in_setting_problem_names_its_setting() {
        let cases = [
            (Failure::Unreachable(Endpoint::Discovery), "OIDC_ISSUER"),
            (
                Failure::Discovery("unexpected issuer".into()),
                "OIDC_ISSUER",
            ),
            (
                Failure::TokenRefused {
                    error: "invalid_client".into(),
                    description: None,
                },
                "OIDC_CLIENT_SECRET_FILE",
            ),
            (
                Failure::IdToken(IdTokenProblem::Audience("other".into())),
                "OIDC_CLIENT_ID",
            ),
            (
                Failure::NotAllowed {
                    claim_present: false,
                },
                "--oidc-groups-claim",
            ),
        ];
        for (failure, setting) in cases {
            let facts = AppError::from(failure.clone()).describe();
            assert!(facts.page.contains(setting), "{failure:?}: {}", facts.page);
            assert!(!facts.internal, "{failure:?}");
        }
    }

    #[test]
    fn a_used_sign_in_code_is_the_client_s_mistake() {
        let facts = AppError::from(Failure::TokenRefused {
            error: "invalid_grant".into(),
            description: Some("grant request is invalid".into()),
        })
        .describe();
        assert_eq!(facts.status, StatusCode::BAD_REQUEST);
        assert!(
            facts
                .page
                .contains("invalid_grant: grant request is invalid")
        );
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
