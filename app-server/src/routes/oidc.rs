//! `GET /oidc/login` and `GET /oidc/callback`: sign-in through the identity provider
//! ([`crate::oidc`]). Pages, not API: a failure answers with a page that says what failed and
//! which setting to check.

use actix_web::{HttpRequest, HttpResponse, web};

use utoipa_actix_web::service_config::ServiceConfig;

use super::render::{PageError, see_other};
use crate::error::AppError;
use crate::oidc::{self, Answer, BROWSER_COOKIE, Oidc};
use crate::sessions;
use crate::state::AppState;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.route(oidc::LOGIN_PATH, web::get().to(start))
        .route(oidc::CALLBACK_PATH, web::get().to(callback));
}

/// The configured sign-in, or 404 when there is none.
fn configured(state: &AppState) -> Result<&Oidc, AppError> {
    state.oidc.as_ref().ok_or(AppError::NotFound)
}

fn browser(req: &HttpRequest) -> Option<String> {
    req.cookie(BROWSER_COOKIE).map(|c| c.value().to_owned())
}

/// A GET, not a form: browsers hold a form's redirects to the page's `form-action`, and this
/// one goes to the provider. Starting a sign-in changes nothing but a short-lived row.
async fn start(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, PageError> {
    let oidc = configured(&state).map_err(|e| PageError::new(e, None))?;
    let started = oidc
        .start(&state.db, browser(&req).as_deref())
        .await
        .map_err(|e| PageError::new(e, None))?;
    let mut response = see_other(&started.url);
    response
        .add_cookie(&Oidc::browser_cookie(started.browser, &state.sessions))
        .map_err(|e| PageError::new(AppError::Internal(format!("cookie: {e}")), None))?;
    Ok(response)
}

async fn callback(
    req: HttpRequest,
    state: web::Data<AppState>,
    answer: web::Query<Answer>,
) -> Result<HttpResponse, PageError> {
    let oidc = configured(&state).map_err(|e| PageError::new(e, None))?;
    let previous = sessions::cookie_value(&req);
    let (_, session) = oidc
        .finish(
            &state.db,
            &state.sessions,
            answer.into_inner(),
            browser(&req).as_deref(),
            previous.as_deref(),
        )
        .await
        .map_err(|e| PageError::new(e, None))?;
    let mut response = see_other("/");
    response
        .add_cookie(&state.sessions.cookie(session.id))
        .map_err(|e| PageError::new(AppError::Internal(format!("session cookie: {e}")), None))?;
    Ok(response)
}
