//! `/admin/users`: the administrators' Users page ([`crate::accounts`]). Pages only; a user
//! who is not an administrator gets 403 `admin_only`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};

use crate::accounts::{self, USERS_PATH, UserId};
use crate::error::AppError;
use utoipa_actix_web::service_config::ServiceConfig;

use super::pages::CsrfForm;
use super::render::{PageError, html, see_other};
use crate::sessions::{MaybeSession, Session};
use crate::state::AppState;
use crate::views::accounts as views;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.route(USERS_PATH, web::get().to(page)).route(
        "/admin/users/{id}/end-sessions",
        web::post().to(end_sessions),
    );
}

/// The request's administrator's session: 401 logged out, 403 `admin_only` for anyone else.
async fn admin(session: MaybeSession) -> Result<Session, PageError> {
    let session = session
        .0
        .ok_or_else(|| PageError::new(AppError::Unauthorized, None))?;
    accounts::require_admin(&session).map_err(|e| PageError::new(e, Some(&session)))?;
    Ok(session)
}

async fn page(
    state: web::Data<AppState>,
    session: MaybeSession,
) -> Result<HttpResponse, PageError> {
    let session = admin(session).await?;
    let list = accounts::list(&state.db, &state.sessions)
        .await
        .map_err(|e| PageError::new(e, Some(&session)))?;
    Ok(html(StatusCode::OK, views::users_page(&session, &list)))
}

async fn end_sessions(
    state: web::Data<AppState>,
    session: MaybeSession,
    id: web::Path<String>,
    form: Option<web::Form<CsrfForm>>,
) -> Result<HttpResponse, PageError> {
    let session = admin(session).await?;
    let page_error = |e| PageError::new(e, Some(&session));
    session
        .check_csrf(form.as_ref().and_then(|f| f.csrf_token.as_deref()))
        .map_err(page_error)?;
    let id = UserId::parse(&id).map_err(page_error)?;
    accounts::end_sessions(&state.db, &id)
        .await
        .map_err(page_error)?;
    Ok(see_other(USERS_PATH))
}
