//! `/api/tokens`: the owner's personal access tokens (see [`crate::tokens`]). Only a browser
//! session may use these routes: [`crate::tokens::required_scope`] names none of them, so a
//! token is refused here (403 `insufficient_scope`) and can never mint another.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::error::AppError;
use crate::sessions::Session;
use crate::state::AppState;
use crate::tokens::{self, CreatedToken, NewToken, TokenId, TokenInfo};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/tokens")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .route("/api/tokens/{id}", web::delete().to(revoke));
}

/// Creates a token; the answer is the only time its secret is shown.
#[utoipa::path(post, path = "/api/tokens", tag = "tokens",
    request_body = NewToken,
    params(("X-CSRF-Token" = String, Header, description = "the session's CSRF token")),
    responses(
        (status = 201, description = "created; `token` is shown only now", body = CreatedToken),
        (status = 400, description = "`bad_request`", body = super::openapi::ErrorBody),
        (status = 401, description = "`unauthorized`, `invalid_token`", body = super::openapi::ErrorBody),
        (status = 403, description = "`csrf`, `insufficient_scope`", body = super::openapi::ErrorBody),
    ),
    security(("session" = []))
)]
pub(crate) async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    // The body is read as bytes and parsed only after the CSRF check, so a forged request is
    // `csrf` whatever it carries.
    session.check_csrf_header(&req)?;
    let new: NewToken = serde_json::from_slice(&body)
        .map_err(|e| AppError::BadRequest(format!("token settings: {e}")))?;
    let created = tokens::create(&state.db, &session.user_id, new).await?;
    Ok(no_store(StatusCode::CREATED, &created))
}

/// The user's tokens, newest first, with when each was last used (never the secrets).
#[utoipa::path(get, path = "/api/tokens", tag = "tokens",
    responses(
        (status = 200, description = "the tokens", body = Vec<TokenInfo>),
        (status = 401, description = "`unauthorized`, `invalid_token`", body = super::openapi::ErrorBody),
        (status = 403, description = "`insufficient_scope`", body = super::openapi::ErrorBody),
    ),
    security(("session" = []))
)]
pub(crate) async fn list(
    state: web::Data<AppState>,
    session: Session,
) -> Result<HttpResponse, AppError> {
    let list = tokens::list(&state.db, &session.user_id).await?;
    Ok(no_store(StatusCode::OK, &list))
}

/// Revokes a token at once: its next request is 401 `invalid_token`.
#[utoipa::path(delete, path = "/api/tokens/{id}", tag = "tokens",
    params(
        ("id" = String, Path, description = "the token's id"),
        ("X-CSRF-Token" = String, Header, description = "the session's CSRF token"),
    ),
    responses(
        (status = 204, description = "revoked"),
        (status = 401, description = "`unauthorized`, `invalid_token`", body = super::openapi::ErrorBody),
        (status = 403, description = "`csrf`, `insufficient_scope`", body = super::openapi::ErrorBody),
        (status = 404, description = "`not_found`", body = super::openapi::ErrorBody),
    ),
    security(("session" = []))
)]
pub(crate) async fn revoke(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    session.check_csrf_header(&req)?;
    let id = TokenId::parse(&id)?;
    tokens::revoke(&state.db, &session.user_id, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

fn no_store(status: StatusCode, body: &impl serde::Serialize) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header(("Cache-Control", "no-store"))
        .json(body)
}
