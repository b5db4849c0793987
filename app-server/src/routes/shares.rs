//! Shares: the owner's JSON API (`/api/files/{id}/shares`, `/api/shares/{id}`) and the
//! visitor's page (`/s/<secret>`). See [`crate::shares`] for the rules and
//! [`crate::share_form`] for why the page's form is safe from other sites.

use actix_web::http::StatusCode;
use actix_web::http::header::LOCATION;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use maud::Markup;
use serde::Deserialize;

use super::CONTENT_SECURITY_POLICY;
use crate::error::AppError;
use crate::files::FileId;
use crate::outcomes;
use crate::sessions::{self, Session};
use crate::share_form::{self, Caller};
use crate::shares::{self, DOWNLOADS_SHOWN, NewShare, ShareId, ShareSecret};
use crate::state::AppState;
use crate::views;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/files/{id}/shares")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .route("/api/files/{id}/downloads", web::get().to(file_downloads))
    .route("/api/shares/{id}", web::delete().to(revoke))
    .route("/api/shares/{id}/downloads", web::get().to(share_downloads))
    .service(
        web::resource("/s/{secret}")
            .route(web::get().to(page))
            .route(web::head().to(page))
            .route(web::post().to(take)),
    );
}

fn json_no_store(status: StatusCode, body: &impl serde::Serialize) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header(("Cache-Control", "no-store"))
        .json(body)
}

/// `POST /api/files/{id}/shares`: a JSON body whose fields are all optional; an empty body is
/// all defaults.
#[utoipa::path(
    post, path = "/api/files/{id}/shares", tag = "shares",
    request_body(content = Option<crate::shares::NewShare>, description = "all fields optional; an empty body is all defaults"),
    params(("id" = String, Path, description = "the id"), ("X-CSRF-Token" = Option<String>, Header, description = "the session's CSRF token (not with a bearer token)")),
    responses(
        (status = 201, description = "the share; `url` is shown only now", body = crate::shares::ShareInfo),
        (status = 400, description = "`bad_request`", body = super::openapi::ErrorBody),
        (status = 401, description = "`unauthorized`, `invalid_token`", body = super::openapi::ErrorBody),
        (status = 403, description = "`csrf`, `insufficient_scope`", body = super::openapi::ErrorBody),
        (status = 404, description = "`not_found`", body = super::openapi::ErrorBody),
    )
)]
async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    session.check_csrf_header(&req)?;
    let id = FileId::parse(&id)?;
    let new: NewShare = if body.iter().all(u8::is_ascii_whitespace) {
        NewShare::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| AppError::BadRequest(format!("share settings: {e}")))?
    };
    let share = shares::create(&state.db, &state.shares, &session.user_id, &id, new).await?;
    Ok(json_no_store(StatusCode::CREATED, &share))
}

#[utoipa::path(
    get, path = "/api/files/{id}/shares", tag = "shares",
    params(("id" = String, Path, description = "the id")),
    responses(
        (status = 200, description = "the file's shares", body = Vec<crate::shares::ShareInfo>),
        (status = 401, description = "`unauthorized`, `invalid_token`", body = super::openapi::ErrorBody),
        (status = 403, description = "`insufficient_scope`", body = super::openapi::ErrorBody),
        (status = 404, description = "`not_found`", body = super::openapi::ErrorBody),
    )
)]
async fn list(
    state: web::Data<AppState>,
    session: Session,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = FileId::parse(&id)?;
    let list = shares::list_for_file(&state.db, &state.shares, &session.user_id, &id).await?;
    Ok(json_no_store(StatusCode::OK, &list))
}

#[utoipa::path(
    delete, path = "/api/shares/{id}", tag = "shares",
    params(("id" = String, Path, description = "the id"), ("X-CSRF-Token" = Option<String>, Header, description = "the session's CSRF token (not with a bearer token)")),
    responses(
        (status = 204, description = "revoked"),
        (status = 401, description = "`unauthorized`, `invalid_token`", body = super::openapi::ErrorBody),
        (status = 403, description = "`csrf`, `insufficient_scope`", body = super::openapi::ErrorBody),
        (status = 404, description = "`not_found`", body = super::openapi::ErrorBody),
    )
)]
async fn revoke(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    session.check_csrf_header(&req)?;
    let id = ShareId::parse(&id)?;
    shares::revoke(&state.db, &session.user_id, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /api/files/{id}/downloads`: served downloads of the file's links (the owner's own and
/// its shares'), newest first.
#[utoipa::path(
    get, path = "/api/files/{id}/downloads", tag = "shares",
    params(("id" = String, Path, description = "the id")),
    responses(
        (status = 200, description = "served downloads of the file, newest first", body = Vec<Object>),
        (status = 401, description = "`unauthorized`, `invalid_token`", body = super::openapi::ErrorBody),
        (status = 403, description = "`insufficient_scope`", body = super::openapi::ErrorBody),
        (status = 404, description = "`not_found`", body = super::openapi::ErrorBody),
    )
)]
async fn file_downloads(
    state: web::Data<AppState>,
    session: Session,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = FileId::parse(&id)?;
    let key = shares::storage_key_of(&state.db, &session.user_id, &id).await?;
    let list = outcomes::for_file(&state.db, &session.user_id, &key, None, DOWNLOADS_SHOWN).await?;
    Ok(json_no_store(StatusCode::OK, &list))
}

/// `GET /api/shares/{id}/downloads`: served downloads through one share, newest first.
#[utoipa::path(
    get, path = "/api/shares/{id}/downloads", tag = "shares",
    params(("id" = String, Path, description = "the id")),
    responses(
        (status = 200, description = "served downloads through the share, newest first", body = Vec<Object>),
        (status = 401, description = "`unauthorized`, `invalid_token`", body = super::openapi::ErrorBody),
        (status = 403, description = "`insufficient_scope`", body = super::openapi::ErrorBody),
        (status = 404, description = "`not_found`", body = super::openapi::ErrorBody),
    )
)]
async fn share_downloads(
    state: web::Data<AppState>,
    session: Session,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = ShareId::parse(&id)?;
    let list = shares::downloads(&state.db, &session.user_id, &id).await?;
    Ok(json_no_store(StatusCode::OK, &list))
}

/// A visitor's page: `no-store` (a shared cache must not keep it), `noindex` (RFC 9309 does
/// not cover it; the header is what search engines honour), no-referrer from the middleware,
/// and the app's CSP with one addition: the form may be redirected to the download server
/// (browsers apply `form-action` to the redirects of a form submission, CSP 3 section 6.4.2).
fn visitor_page(state: &AppState, status: StatusCode, body: Markup) -> HttpResponse {
    let csp = CONTENT_SECURITY_POLICY.replace(
        "form-action 'self'",
        &format!(
            "form-action 'self' {}",
            share_form::origin_of(&state.links.download_url)
        ),
    );
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header(("Content-Security-Policy", csp))
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("X-Robots-Tag", "noindex, nofollow"))
        .body(body.into_string())
}

/// The neutral page, with 404 for an unknown share and 410 for one that is no more.
fn gone(state: &AppState, error: &AppError) -> HttpResponse {
    let status = match error {
        AppError::ShareGone => StatusCode::GONE,
        _ => StatusCode::NOT_FOUND,
    };
    visitor_page(state, status, views::share_gone_page())
}

/// A server-side failure met by a visitor: the API's status (and its logging of the cause),
/// as a page that says nothing about why.
fn failed(state: &AppState, error: &AppError) -> HttpResponse {
    let status = error.error_response().status();
    visitor_page(
        state,
        status,
        views::error_page(
            "Something went wrong",
            "Something went wrong on our side. Nothing was used; try again in a moment.",
            None,
        ),
    )
}

/// `GET`/`HEAD /s/<secret>`: reads only, whoever asks (see [`crate::shares::visit`]).
async fn page(
    state: web::Data<AppState>,
    secret: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let path = format!("/s/{secret}");
    let Ok(secret) = ShareSecret::parse(&secret) else {
        return Ok(gone(&state, &AppError::NotFound));
    };
    match shares::visit(&state.db, &state.shares, &secret).await {
        Ok(visit) => {
            let token = state.form_key.issue(&visit.id, crate::now());
            Ok(visitor_page(
                &state,
                StatusCode::OK,
                views::share_page(&visit, &path, &token, None),
            ))
        }
        Err(e @ (AppError::NotFound | AppError::ShareGone)) => Ok(gone(&state, &e)),
        Err(e) => Ok(failed(&state, &e)),
    }
}

/// The share page's form. Optional fields, so a bare `curl -X POST` (no body at all) works.
/// No `Debug`: it holds a password.
#[derive(Deserialize, Default)]
struct TakeForm {
    #[serde(default)]
    form_token: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// `POST /s/<secret>`: takes one download and answers 303 to a fresh single-use link.
async fn take(
    req: HttpRequest,
    state: web::Data<AppState>,
    secret: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let path = format!("/s/{secret}");
    let Ok(secret) = ShareSecret::parse(&secret) else {
        return Ok(gone(&state, &AppError::NotFound));
    };
    let caller = match share_form::caller(&req, &state.shares.public_url) {
        Ok(caller) => caller,
        Err(_) => {
            tracing::info!("cross-site share POST refused");
            return Ok(visitor_page(
                &state,
                StatusCode::FORBIDDEN,
                views::error_page(
                    "Request refused",
                    "This download was started from another site, so nothing was used. Open \
                     the link itself and press Download.",
                    None,
                ),
            ));
        }
    };
    let form: TakeForm = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    // The page the visitor sees again when the form was refused, with why.
    let again = |status: StatusCode, message: &str, visit: &shares::Visit| {
        let token = state.form_key.issue(&visit.id, crate::now());
        visitor_page(
            &state,
            status,
            views::share_page(visit, &path, &token, Some(message)),
        )
    };
    let visit = match shares::visit(&state.db, &state.shares, &secret).await {
        Ok(visit) => visit,
        Err(e @ (AppError::NotFound | AppError::ShareGone)) => return Ok(gone(&state, &e)),
        Err(e) => return Ok(failed(&state, &e)),
    };
    if caller == Caller::Browser {
        let fresh = form
            .form_token
            .as_deref()
            .is_some_and(|t| state.form_key.verify(t, &visit.id, crate::now()));
        if !fresh {
            return Ok(again(
                StatusCode::FORBIDDEN,
                "This page was out of date, so nothing was used. Press Download again.",
                &visit,
            ));
        }
    }
    let client = sessions::client_ip(&req);
    let taken = shares::take(
        &state.db,
        &state.share_throttle,
        &state.links,
        &visit,
        form.password.as_deref(),
        client,
    );
    match taken.await {
        Ok(link) => Ok(HttpResponse::SeeOther()
            .insert_header((LOCATION, link.url))
            .insert_header(("Cache-Control", "no-store"))
            .insert_header(("X-Robots-Tag", "noindex, nofollow"))
            .finish()),
        Err(AppError::WrongSharePassword) => Ok(again(
            StatusCode::UNAUTHORIZED,
            "Wrong password. Nothing was used; try again.",
            &visit,
        )),
        Err(AppError::Throttled { retry_after_secs }) => {
            let mut res = again(
                StatusCode::TOO_MANY_REQUESTS,
                &format!(
                    "Too many wrong passwords. Wait {retry_after_secs} seconds and try again."
                ),
                &visit,
            );
            res.headers_mut().insert(
                actix_web::http::header::RETRY_AFTER,
                actix_web::http::header::HeaderValue::from(retry_after_secs),
            );
            Ok(res)
        }
        Err(e @ (AppError::NotFound | AppError::ShareGone)) => Ok(gone(&state, &e)),
        Err(e) => Ok(failed(&state, &e)),
    }
}
