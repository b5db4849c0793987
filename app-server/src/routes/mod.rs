//! The HTTP surface, wired in one place so the binary and the tests serve the same app.

use actix_web::error::{JsonPayloadError, PayloadError, UrlencodedError};
use actix_web::{HttpResponse, web};
use server_kit::body_timeout::is_timeout;

use crate::error::AppError;

pub mod accounts;
pub mod assets;
pub mod downloads;
pub mod files;
pub mod health;
pub mod jwks;
pub mod oidc;
pub mod openapi;
pub mod pages;
pub mod session;
pub mod shares;
pub mod tokens;

/// Content-Security-Policy of every response: script, style, images and requests only from
/// this origin (`/static/…`; nothing inline, so an injected tag or attribute cannot run);
/// forms post only to us; never framed; no `<base>` rewriting links.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// Largest JSON body (a login is a few hundred bytes).
const MAX_JSON_BYTES: usize = 16 * 1024;
/// Largest urlencoded form body.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// Registers every route and makes extractor failures answer in the app's own error format.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(MAX_JSON_BYTES)
            .error_handler(|err, _req| json_error(err).into()),
    )
    .app_data(
        web::FormConfig::default()
            .limit(MAX_FORM_BYTES)
            .error_handler(|err, _req| form_error(err).into()),
    )
    .app_data(
        web::QueryConfig::default()
            .error_handler(|err, _req| AppError::BadRequest(err.to_string()).into()),
    )
    .app_data(web::PathConfig::default().error_handler(|_err, _req| AppError::NotFound.into()))
    .app_data(web::PayloadConfig::new(MAX_FORM_BYTES))
    .route("/healthz", web::get().to(health::healthz))
    .route("/readyz", web::get().to(health::readyz))
    .route("/.well-known/jwks.json", web::get().to(jwks::jwks))
    .configure(session::configure)
    .configure(files::configure)
    .configure(downloads::configure)
    .configure(shares::configure)
    .configure(tokens::configure)
    .configure(openapi::configure)
    .configure(pages::configure)
    .configure(oidc::configure)
    .configure(accounts::configure)
    .configure(assets::configure)
    .default_service(web::to(not_found));
}

fn json_error(err: JsonPayloadError) -> AppError {
    match err {
        JsonPayloadError::OverflowKnownLength { limit, .. }
        | JsonPayloadError::Overflow { limit } => AppError::TooLarge(limit as u64),
        JsonPayloadError::Payload(PayloadError::Overflow) => {
            AppError::TooLarge(MAX_JSON_BYTES as u64)
        }
        JsonPayloadError::Payload(e) if is_timeout(&e) => AppError::BodyTimeout,
        other => AppError::BadRequest(other.to_string()),
    }
}

fn form_error(err: UrlencodedError) -> AppError {
    match err {
        UrlencodedError::Payload(e) if is_timeout(&e) => AppError::BodyTimeout,
        other => AppError::BadRequest(other.to_string()),
    }
}

async fn not_found() -> Result<HttpResponse, AppError> {
    Err(AppError::NotFound)
}
