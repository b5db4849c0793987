//! `/api/login`, `/api/logout`, `/api/me`.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use crate::error::AppError;
use crate::login::{self, Credentials};
use crate::sessions::{self, Session};
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/login", web::post().to(login))
        .route("/api/logout", web::post().to(logout))
        .route("/api/me", web::get().to(me));
}

/// A login request. No `Debug`: it holds a password.
#[derive(Deserialize)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

/// Who is logged in, and the CSRF token their state-changing requests must carry.
#[derive(Serialize)]
pub struct Me<'a> {
    pub username: &'a str,
    pub csrf_token: &'a str,
}

#[utoipa::path(
    post, path = "/api/login", tag = "session",
    request_body = super::openapi::LoginBody,
    responses(
        (status = 200, description = "logged in; sets the session cookie", body = super::openapi::MeBody),
        (status = 400, description = "`bad_request`", body = super::openapi::ErrorBody),
        (status = 401, description = "`invalid_credentials`", body = super::openapi::ErrorBody),
        (status = 403, description = "`cross_site`, `password_login_disabled`", body = super::openapi::ErrorBody),
    ),
    security(())
)]
async fn login(
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
    post, path = "/api/logout", tag = "session",
    params(("X-CSRF-Token" = Option<String>, Header, description = "the session's CSRF token (not with a bearer token)")),
    responses(
        (status = 204, description = "logged out"),
        (status = 401, description = "`unauthorized`, `invalid_token`", body = super::openapi::ErrorBody),
        (status = 403, description = "`csrf`, `insufficient_scope`", body = super::openapi::ErrorBody),
    )
)]
async fn logout(
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
    get, path = "/api/me", tag = "session",
    responses(
        (status = 200, description = "who is logged in, and the CSRF token", body = super::openapi::MeBody),
        (status = 401, description = "`unauthorized`, `invalid_token`", body = super::openapi::ErrorBody),
        (status = 403, description = "`insufficient_scope`", body = super::openapi::ErrorBody),
    )
)]
async fn me(session: Session) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(Me {
            username: session.username.as_str(),
            csrf_token: session.csrf_token(),
        })
}
