//! `/api/tokens`: the owner's personal access tokens (see [`crate::tokens`]). Only a browser
//! session may use these routes: each declares `security(("session" = []))` and no token
//! scope, so a token is refused here (403 `insufficient_scope`) and can never mint another.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};
use utoipa_actix_web::service_config::ServiceConfig;

use super::extract::{CheckedForm, FormFields};
use super::openapi::{ReadRefused, WriteRefused};
use super::render::{PageError, error_html, html, json_no_store, see_other};
use crate::error::{AppError, ErrorBody};
use crate::sessions::{MaybeSession, Session};
use crate::state::AppState;
use crate::tokens::{self, CreatedToken, NewToken, TokenId, TokenInfo};
use crate::views::tokens as views;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(create_token)
        .service(list_tokens)
        .service(revoke_token)
        .map(|cfg| {
            cfg.service(
                web::resource("/tokens")
                    .route(web::get().to(page))
                    .route(web::post().to(create_from_form)),
            )
            .route("/tokens/{id}/revoke", web::post().to(revoke_from_form))
        });
}

/// Creates a token; the answer is the only time its secret is shown.
#[utoipa::path(tag = "tokens",
    request_body = NewToken,
    params(("X-CSRF-Token" = String, Header, description = "the session's CSRF token")),
    responses(
        (status = 201, description = "created; `token` is shown only now", body = CreatedToken),
        (status = 400, description = "`bad_request`", body = ErrorBody),
        WriteRefused,
    ),
    security(("session" = []))
)]
#[post("/api/tokens")]
async fn create_token(
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
    Ok(json_no_store(StatusCode::CREATED, &created))
}

/// The user's tokens, newest first, with when each was last used (never the secrets).
#[utoipa::path(tag = "tokens",
    responses(
        (status = 200, description = "the tokens", body = Vec<TokenInfo>),
        ReadRefused,
    ),
    security(("session" = []))
)]
#[get("/api/tokens")]
async fn list_tokens(
    state: web::Data<AppState>,
    session: Session,
) -> Result<HttpResponse, AppError> {
    let list = tokens::list(&state.db, &session.user_id).await?;
    Ok(json_no_store(StatusCode::OK, &list))
}

/// Revokes a token at once: its next request is 401 `invalid_token`.
#[utoipa::path(tag = "tokens",
    params(("X-CSRF-Token" = String, Header, description = "the session's CSRF token")),
    responses(
        (status = 204, description = "revoked"),
        WriteRefused,
        (status = 404, description = "`not_found`", body = ErrorBody),
    ),
    security(("session" = []))
)]
#[delete("/api/tokens/{id}")]
async fn revoke_token(
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

fn not_logged_in() -> PageError {
    PageError::new(AppError::Unauthorized, None)
}

/// `GET /tokens`: the Access tokens page.
async fn page(
    state: web::Data<AppState>,
    session: MaybeSession,
) -> Result<HttpResponse, PageError> {
    let session = session.0.ok_or_else(not_logged_in)?;
    let list = tokens::list(&state.db, &session.user_id)
        .await
        .map_err(|e| PageError::new(e, Some(&session)))?;
    Ok(html(
        StatusCode::OK,
        views::tokens_page(&session, &list, None),
    ))
}

/// The page's form: `name`, one `scope` per ticked box, `expires_days` (a number or
/// `never`), and the CSRF token.
fn new_token_of(form: &FormFields) -> Result<NewToken, AppError> {
    let expires_in_secs = match form.get("expires_days").unwrap_or("never") {
        "never" => None,
        days => Some(
            days.parse::<u64>()
                .ok()
                .filter(|d| views::EXPIRY_DAYS.contains(d))
                .ok_or_else(|| AppError::BadRequest("choose an expiry from the list".into()))?
                * 86_400,
        ),
    };
    Ok(NewToken {
        name: form.get("name").unwrap_or("").to_owned(),
        scopes: form.all("scope").map(str::to_owned).collect(),
        expires_in_secs,
    })
}

/// `POST /tokens`: makes a token and shows it, once; a refused form is the page again with
/// why, and the status the API would send.
async fn create_from_form(
    state: web::Data<AppState>,
    CheckedForm { session, form }: CheckedForm,
) -> Result<HttpResponse, PageError> {
    let created = match new_token_of(&form) {
        Ok(new) => tokens::create(&state.db, &session.user_id, new).await,
        Err(e) => Err(e),
    };
    match created {
        Ok(created) => Ok(html(
            StatusCode::CREATED,
            views::token_created_page(&session, &created),
        )),
        Err(e) if actix_web::ResponseError::status_code(&e).is_client_error() => {
            let list = tokens::list(&state.db, &session.user_id)
                .await
                .map_err(|e| PageError::new(e, Some(&session)))?;
            Ok(error_html(&e, |facts| {
                views::tokens_page(&session, &list, Some(&facts.page))
            }))
        }
        Err(e) => Err(PageError::new(e, Some(&session))),
    }
}

/// `POST /tokens/{id}/revoke`.
async fn revoke_from_form(
    state: web::Data<AppState>,
    id: web::Path<String>,
    CheckedForm { session, .. }: CheckedForm,
) -> Result<HttpResponse, PageError> {
    let page_error = |e| PageError::new(e, Some(&session));
    let id = TokenId::parse(&id).map_err(page_error)?;
    tokens::revoke(&state.db, &session.user_id, &id)
        .await
        .map_err(page_error)?;
    Ok(see_other("/tokens"))
}
