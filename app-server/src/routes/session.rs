//! `/api/login`, `/api/logout`, `/api/me`.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use super::openapi::{ReadRefused, WriteRefused};
use crate::error::{AppError, ErrorBody};
use crate::login::{self, Credentials};
use crate::sessions::{self, Session};
use crate::state::AppState;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(log_in).service(log_out).service(me);
}

/// What `POST /api/login` takes.
// No `Debug`: it holds a password.
#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    pub username: String,
    #[schema(format = Password)]
    pub password: String,
}

/// Who is logged in, and the CSRF token their state-changing requests must echo in
/// `X-CSRF-Token`.
#[derive(Serialize, ToSchema)]
pub struct Me<'a> {
    pub username: &'a str,
    pub csrf_token: &'a str,
}

#[utoipa::path(
    tag = "session",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "logged in; sets the session cookie", body = Me),
        (status = 400, description = "`bad_request`", body = ErrorBody),
        (status = 401, description = "`invalid_credentials`", body = ErrorBody),
        (status = 403, description = "`cross_site`, `password_login_disabled`", body = ErrorBody),
    ),
    security(())
)]
#[post("/api/login")]
async fn log_in(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<LoginRequest>,
) -> Result<HttpResponse, AppError> {
    login::check_origin(&req, &state.public_origin)?;
    let previous = sessions::cookie_value(&req);
    let credentials = Credentials {
        client: sessions::client_ip(&req),
        username: &body.username,
        password: &body.password,
        previous_session: previous.as_deref(),
    };
    let (user, session) = login::login(
        &state.db,
        &state.sessions,
        &state.login,
        &state.metrics,
        credentials,
    )
    .await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .cookie(state.sessions.cookie(session.id))
        .json(Me {
            username: user.username.as_str(),
            csrf_token: &session.csrf_token,
        }))
}

#[utoipa::path(
    tag = "session",
    params(("X-CSRF-Token" = String, Header, description = "the session's CSRF token")),
    responses(
        (status = 204, description = "logged out"),
        WriteRefused,
    ),
    security(("session" = []))
)]
#[post("/api/logout")]
async fn log_out(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
) -> Result<HttpResponse, AppError> {
    session.check_csrf_header(&req)?;
    session.end(&state.db).await?;
    Ok(HttpResponse::NoContent()
        .cookie(state.sessions.removal_cookie())
        .finish())
}

#[utoipa::path(
    tag = "session",
    responses(
        (status = 200, description = "who is logged in, and the CSRF token", body = Me),
        ReadRefused,
    ),
    security(("session" = []))
)]
#[get("/api/me")]
async fn me(session: Session) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(Me {
            username: session.username.as_str(),
            csrf_token: session.csrf_token(),
        })
}
