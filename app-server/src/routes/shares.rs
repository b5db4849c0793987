//! Shares: the owner's JSON API (`/api/files/{id}/shares`, `/api/shares/{id}`) and the
//! visitor's page (`/s/<secret>`). See [`crate::shares`] for the rules and
//! [`crate::share_form`] for why the page's form is safe from other sites.

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, LOCATION};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, delete, get, post, web};
use maud::Markup;
use serde::Deserialize;
use utoipa_actix_web::service_config::ServiceConfig;

use super::openapi::{ReadRefused, WriteRefused};
use super::render::{CONTENT_SECURITY_POLICY, json_no_store};
use crate::error::{AppError, ErrorBody};
use crate::files::FileId;
use crate::outcomes::{self, ShareDownload};
use crate::sessions::{self, Session};
use crate::share_form::{self, Caller};
use crate::shares::{self, DOWNLOADS_SHOWN, NewShare, ShareId, ShareInfo, ShareSecret, Visit};
use crate::state::AppState;
use crate::views;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(create_share)
        .service(list_shares)
        .service(file_downloads)
        .service(revoke_share)
        .service(share_downloads)
        .map(|cfg| {
            cfg.service(
                web::resource("/s/{secret}")
                    .route(web::get().to(page))
                    .route(web::head().to(page))
                    .route(web::post().to(take)),
            )
        });
}

/// `POST /api/files/{id}/shares`: a JSON body whose fields are all optional; an empty body is
/// all defaults.
#[utoipa::path(
    tag = "shares",
    request_body(content = Option<NewShare>, description = "all fields optional; an empty body is all defaults"),
    params(("X-CSRF-Token" = Option<String>, Header, description = "the session's CSRF token (not with a bearer token)")),
    responses(
        (status = 201, description = "the share; `url` is shown only now", body = ShareInfo),
        (status = 400, description = "`bad_request`", body = ErrorBody),
        WriteRefused,
        (status = 404, description = "`not_found`", body = ErrorBody),
    ),
    security(("bearer" = ["shares:write"]), ("session" = []))
)]
#[post("/api/files/{id}/shares")]
async fn create_share(
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
    tag = "shares",
    responses(
        (status = 200, description = "the file's shares", body = Vec<ShareInfo>),
        ReadRefused,
        (status = 404, description = "`not_found`", body = ErrorBody),
    ),
    security(("bearer" = ["files:read"]), ("session" = []))
)]
#[get("/api/files/{id}/shares")]
async fn list_shares(
    state: web::Data<AppState>,
    session: Session,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = FileId::parse(&id)?;
    let list = shares::list_for_file(&state.db, &state.shares, &session.user_id, &id).await?;
    Ok(json_no_store(StatusCode::OK, &list))
}

#[utoipa::path(
    tag = "shares",
    params(("X-CSRF-Token" = Option<String>, Header, description = "the session's CSRF token (not with a bearer token)")),
    responses(
        (status = 204, description = "revoked"),
        WriteRefused,
        (status = 404, description = "`not_found`", body = ErrorBody),
    ),
    security(("bearer" = ["shares:write"]), ("session" = []))
)]
#[delete("/api/shares/{id}")]
async fn revoke_share(
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
    tag = "shares",
    responses(
        (status = 200, description = "served downloads of the file, newest first", body = Vec<ShareDownload>),
        ReadRefused,
        (status = 404, description = "`not_found`", body = ErrorBody),
    ),
    security(("bearer" = ["files:read"]), ("session" = []))
)]
#[get("/api/files/{id}/downloads")]
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
    tag = "shares",
    responses(
        (status = 200, description = "served downloads through the share, newest first", body = Vec<ShareDownload>),
        ReadRefused,
        (status = 404, description = "`not_found`", body = ErrorBody),
    ),
    security(("bearer" = ["files:read"]), ("session" = []))
)]
#[get("/api/shares/{id}/downloads")]
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
fn visitor_page(state: &AppState, mut response: HttpResponseBuilder, body: Markup) -> HttpResponse {
    let csp = CONTENT_SECURITY_POLICY.replace(
        "form-action 'self'",
        &format!(
            "form-action 'self' {}",
            share_form::origin_of(&state.links.download_url)
        ),
    );
    response
        .content_type("text/html; charset=utf-8")
        .insert_header(("Content-Security-Policy", csp))
        .insert_header((CACHE_CONTROL, "no-store"))
        .insert_header(ROBOTS)
        .body(body.into_string())
}

/// Search engines neither index a share nor follow its links.
const ROBOTS: (&str, &str) = ("X-Robots-Tag", "noindex, nofollow");

/// The share's page, with a fresh form token and, after a refused try, why.
fn share_page(state: &AppState, visit: &Visit, path: &str, message: Option<&str>) -> Markup {
    let token = state.form_key.issue(&visit.id, crate::now());
    views::share_page(visit, path, &token, message)
}

/// `error` met by a visitor, in the words the error table has for visitors: the one neutral
/// page for a share that is unknown or no more; the share's page again with why when the
/// visitor has it in front of them (`again`); else a page that says what happened (never why
/// a server failed).
fn refused(state: &AppState, error: &AppError, again: Option<(&Visit, &str)>) -> HttpResponse {
    let (response, facts) = error.answer();
    let body = match (&facts.visitor, again) {
        (None, _) => views::share_gone_page(),
        (Some(why), Some((visit, path))) if !facts.internal => {
            share_page(state, visit, path, Some(why))
        }
        (Some(why), _) => views::error_page(facts.title, why, None),
    };
    visitor_page(state, response, body)
}

/// `GET`/`HEAD /s/<secret>`: reads only, whoever asks (see [`crate::shares::visit`]).
async fn page(state: web::Data<AppState>, secret: web::Path<String>) -> HttpResponse {
    let path = format!("/s/{secret}");
    let Ok(secret) = ShareSecret::parse(&secret) else {
        return refused(&state, &AppError::NotFound, None);
    };
    match shares::visit(&state.db, &state.shares, &secret).await {
        Ok(visit) => visitor_page(
            &state,
            HttpResponse::Ok(),
            share_page(&state, &visit, &path, None),
        ),
        Err(e) => refused(&state, &e, None),
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
) -> HttpResponse {
    let path = format!("/s/{secret}");
    let Ok(secret) = ShareSecret::parse(&secret) else {
        return refused(&state, &AppError::NotFound, None);
    };
    // Refused as `Csrf` by the check, worded for a visitor as what it is: another site's.
    let Ok(caller) = share_form::caller(&req, &state.shares.public_url) else {
        tracing::info!("cross-site share POST refused");
        return refused(&state, &AppError::CrossSite, None);
    };
    let form: TakeForm = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let visit = match shares::visit(&state.db, &state.shares, &secret).await {
        Ok(visit) => visit,
        Err(e) => return refused(&state, &e, None),
    };
    let again = Some((&visit, path.as_str()));
    if caller == Caller::Browser {
        let fresh = form
            .form_token
            .as_deref()
            .is_some_and(|t| state.form_key.verify(t, &visit.id, crate::now()));
        if !fresh {
            return refused(&state, &AppError::Csrf, again);
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
        Ok(link) => HttpResponse::SeeOther()
            .insert_header((LOCATION, link.url))
            .insert_header((CACHE_CONTROL, "no-store"))
            .insert_header(ROBOTS)
            .finish(),
        Err(e) => refused(&state, &e, again),
    }
}
