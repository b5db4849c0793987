//! Upload links: the owner's JSON API (`/api/upload-links`), the owner's page
//! (`/upload-links`), and the uploader's page (`/u/<secret>`). See [`crate::upload_links`]
//! for the rules and [`crate::share_form`] for why the page's form is safe from other sites.

use actix_multipart::Multipart;
use actix_web::http::StatusCode;
use actix_web::http::header::{ACCEPT, CACHE_CONTROL, CONTENT_LENGTH, USER_AGENT};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, delete, get, post, web};
use maud::Markup;
use utoipa_actix_web::service_config::ServiceConfig;

use super::extract::{CheckedForm, FormFields};
use super::openapi::{ReadRefused, WriteRefused};
use super::render::{PageError, error_html, html, json_no_store, see_other};
use crate::error::{AppError, ErrorBody};
use crate::sessions::{self, MaybeSession, Session};
use crate::share_form;
use crate::shares::ShareSecret;
use crate::state::AppState;
use crate::upload_links::{
    self, LinkPolicy, LinkVisit, NewUploadLink, UploadLinkId, UploadLinkInfo, Uploader,
};
use crate::views::upload_links as views;

/// The owner's page.
pub const PAGE_PATH: &str = "/upload-links";
/// Room for multipart boundaries, headers and the small fields around the file's bytes.
const MULTIPART_OVERHEAD: u64 = 64 * 1024;
/// Longest `User-Agent` kept with a received file.
const MAX_AGENT_CHARS: usize = 256;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(create_link)
        .service(list_links)
        .service(revoke_link)
        .map(|cfg| {
            cfg.service(
                web::resource(PAGE_PATH)
                    .route(web::get().to(page))
                    .route(web::post().to(create_from_form)),
            )
            .route(
                "/upload-links/{id}/revoke",
                web::post().to(revoke_from_form),
            )
            .service(
                web::resource("/u/{secret}")
                    .route(web::get().to(uploader_page))
                    .route(web::head().to(uploader_page))
                    .route(web::post().to(receive)),
            )
        });
}

fn policy(state: &AppState) -> LinkPolicy<'_> {
    LinkPolicy {
        max_secs: state.shares.max_secs,
        max_upload_bytes: state.uploads.max_upload_bytes,
        public_url: &state.shares.public_url,
    }
}

/// `POST /api/upload-links`: a JSON body whose fields are all optional; an empty body is all
/// defaults.
#[utoipa::path(
    tag = "upload links",
    request_body(content = Option<NewUploadLink>, description = "all fields optional; an empty body is all defaults"),
    params(("X-CSRF-Token" = Option<String>, Header, description = "the session's CSRF token (not with a bearer token)")),
    responses(
        (status = 201, description = "the link; `url` is shown only now", body = UploadLinkInfo),
        (status = 400, description = "`bad_request`", body = ErrorBody),
        WriteRefused,
    ),
    security(("bearer" = ["uploads:write"]), ("session" = []))
)]
#[post("/api/upload-links")]
async fn create_link(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    session.check_csrf_header(&req)?;
    let new: NewUploadLink = if body.iter().all(u8::is_ascii_whitespace) {
        NewUploadLink::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| AppError::BadRequest(format!("upload link settings: {e}")))?
    };
    let link = upload_links::create(&state.db, policy(&state), &session.user_id, new).await?;
    Ok(json_no_store(StatusCode::CREATED, &link))
}

#[utoipa::path(
    tag = "upload links",
    responses(
        (status = 200, description = "your upload links, newest first, each with the files that arrived through it", body = Vec<UploadLinkInfo>),
        ReadRefused,
    ),
    security(("bearer" = ["files:read"]), ("session" = []))
)]
#[get("/api/upload-links")]
async fn list_links(
    state: web::Data<AppState>,
    session: Session,
) -> Result<HttpResponse, AppError> {
    let list = upload_links::list(&state.db, &session.user_id).await?;
    Ok(json_no_store(StatusCode::OK, &list))
}

#[utoipa::path(
    tag = "upload links",
    params(("X-CSRF-Token" = Option<String>, Header, description = "the session's CSRF token (not with a bearer token)")),
    responses(
        (status = 204, description = "revoked: no upload through it starts or completes any more"),
        WriteRefused,
        (status = 404, description = "`not_found`", body = ErrorBody),
    ),
    security(("bearer" = ["uploads:write"]), ("session" = []))
)]
#[delete("/api/upload-links/{id}")]
async fn revoke_link(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    session.check_csrf_header(&req)?;
    let id = UploadLinkId::parse(&id)?;
    upload_links::revoke(&state.db, &session.user_id, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

fn not_logged_in() -> PageError {
    PageError::new(AppError::Unauthorized, None)
}

/// The owner's page, with a message above the form after a refused one.
async fn owner_page(
    state: &AppState,
    session: &Session,
    status: StatusCode,
    error: Option<&AppError>,
) -> Result<HttpResponse, PageError> {
    let list = upload_links::list(&state.db, &session.user_id)
        .await
        .map_err(|e| PageError::new(e, Some(session)))?;
    let choices = views::LinkChoices {
        max_secs: state.shares.max_secs,
        max_upload_bytes: state.uploads.max_upload_bytes,
    };
    Ok(match error {
        Some(e) => error_html(e, |facts| {
            views::links_page(session, &list, &choices, Some(&facts.page))
        }),
        None => html(status, views::links_page(session, &list, &choices, None)),
    })
}

/// `GET /upload-links`: make, list and revoke links.
async fn page(
    state: web::Data<AppState>,
    session: MaybeSession,
) -> Result<HttpResponse, PageError> {
    let session = session.0.ok_or_else(not_logged_in)?;
    owner_page(&state, &session, StatusCode::OK, None).await
}

/// The page's form: `expires_in_secs`, `max_files`, `max_mib` (the total in MiB), `password`,
/// `note`. An empty field is the default.
fn new_link_of(form: &FormFields) -> Result<NewUploadLink, AppError> {
    let number = |name: &str| -> Result<Option<u64>, AppError> {
        match form.get(name).map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| AppError::BadRequest(format!("{name} must be a whole number"))),
        }
    };
    let max_bytes = match number("max_mib")? {
        Some(mib) => Some(
            mib.checked_mul(1024 * 1024)
                .ok_or_else(|| AppError::BadRequest("max_mib is too large".into()))?,
        ),
        None => None,
    };
    Ok(NewUploadLink {
        expires_in_secs: number("expires_in_secs")?,
        max_files: number("max_files")?,
        max_bytes,
        password: form.get("password").map(str::to_owned),
        note: form.get("note").map(str::to_owned),
    })
}

/// `POST /upload-links`: makes a link and shows its URL, once (201); a refused form is the
/// page again with why, and the status the API would send.
async fn create_from_form(
    state: web::Data<AppState>,
    CheckedForm { session, form }: CheckedForm,
) -> Result<HttpResponse, PageError> {
    let created = match new_link_of(&form) {
        Ok(new) => upload_links::create(&state.db, policy(&state), &session.user_id, new).await,
        Err(e) => Err(e),
    };
    match created {
        Ok(link) => Ok(html(
            StatusCode::CREATED,
            views::link_created_page(&session, &link),
        )),
        Err(e) if actix_web::ResponseError::status_code(&e).is_client_error() => {
            owner_page(&state, &session, StatusCode::BAD_REQUEST, Some(&e)).await
        }
        Err(e) => Err(PageError::new(e, Some(&session))),
    }
}

/// `POST /upload-links/{id}/revoke`.
async fn revoke_from_form(
    state: web::Data<AppState>,
    id: web::Path<String>,
    CheckedForm { session, .. }: CheckedForm,
) -> Result<HttpResponse, PageError> {
    let page_error = |e| PageError::new(e, Some(&session));
    let id = UploadLinkId::parse(&id).map_err(page_error)?;
    upload_links::revoke(&state.db, &session.user_id, &id)
        .await
        .map_err(page_error)?;
    Ok(see_other(PAGE_PATH))
}

/// An uploader's page: `no-store`, `noindex`, no-referrer from the middleware.
fn visitor_page(mut response: HttpResponseBuilder, body: Markup) -> HttpResponse {
    response
        .content_type("text/html; charset=utf-8")
        .insert_header((CACHE_CONTROL, "no-store"))
        .insert_header(("X-Robots-Tag", "noindex, nofollow"))
        .body(body.into_string())
}

/// The link's page with a fresh form token and, after a refused try, why.
fn link_page(state: &AppState, visit: &LinkVisit, path: &str, message: Option<&str>) -> Markup {
    let token = state.form_key.issue(&visit.id, crate::now());
    views::uploader_page(visit, path, &token, state.uploads.max_upload_bytes, message)
}

/// Whether the caller reads pages (a browser's form) rather than JSON (curl, the CLI, the
/// page's script).
fn wants_html(req: &HttpRequest) -> bool {
    req.headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// `error` met by an uploader: JSON for a script; for a browser, the one neutral page for an
/// unknown link, the link's page again with why when it is still usable (`again`), else a
/// page that says what happened (never why a server failed).
fn refused(
    state: &AppState,
    req: &HttpRequest,
    error: &AppError,
    again: Option<(&LinkVisit, &str)>,
) -> HttpResponse {
    if !wants_html(req) && req.method() == actix_web::http::Method::POST {
        return actix_web::ResponseError::error_response(error);
    }
    let (response, facts) = error.answer();
    let body = match (&facts.visitor, again) {
        (None, _) => views::unknown_link_page(),
        (Some(why), Some((visit, path))) if !facts.internal => {
            link_page(state, visit, path, Some(why))
        }
        (Some(why), _) => crate::views::error_page(facts.title, why, None),
    };
    visitor_page(response, body)
}

/// `GET`/`HEAD /u/<secret>`: reads only, whoever asks.
async fn uploader_page(
    req: HttpRequest,
    state: web::Data<AppState>,
    secret: web::Path<String>,
) -> HttpResponse {
    let path = format!("/u/{secret}");
    let Ok(secret) = ShareSecret::parse(&secret) else {
        return refused(&state, &req, &AppError::NotFound, None);
    };
    match upload_links::visit(&state.db, &secret).await {
        Ok(visit) => visitor_page(HttpResponse::Ok(), link_page(&state, &visit, &path, None)),
        Err(e) => refused(&state, &req, &e, None),
    }
}

/// `POST /u/<secret>`: one file (`file`, after `form_token` and `password` when they are
/// sent), 201 with what arrived: a page for a browser's form, JSON otherwise.
async fn receive(
    req: HttpRequest,
    state: web::Data<AppState>,
    secret: web::Path<String>,
    multipart: Multipart,
) -> HttpResponse {
    let path = format!("/u/{secret}");
    let Ok(secret) = ShareSecret::parse(&secret) else {
        return refused(&state, &req, &AppError::NotFound, None);
    };
    let Ok(caller) = share_form::caller(&req, &state.shares.public_url) else {
        tracing::info!("cross-site upload link POST refused");
        return refused(&state, &req, &AppError::CrossSite, None);
    };
    let visit = match upload_links::visit(&state.db, &secret).await {
        Ok(visit) => visit,
        Err(e) => return refused(&state, &req, &e, None),
    };
    let again = Some((&visit, path.as_str()));
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let cap = u64::try_from(visit.bytes_left)
        .unwrap_or(0)
        .min(state.uploads.max_upload_bytes);
    if let Some(length) = declared
        && length > cap.saturating_add(MULTIPART_OVERHEAD)
    {
        return refused(&state, &req, &AppError::TooLarge(cap), again);
    }
    let uploader = Uploader {
        caller,
        client: sessions::client_ip(&req),
        user_agent: req
            .headers()
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(MAX_AGENT_CHARS).collect()),
        form_key: &state.form_key,
        throttle: &state.share_throttle,
    };
    match upload_links::upload(state.uploads_to(), &visit, uploader, multipart).await {
        Ok(arrived) => {
            state.webhooks.wake.notify();
            if wants_html(&req) {
                visitor_page(
                    HttpResponse::Created(),
                    views::received_page(&arrived, &path),
                )
            } else {
                json_no_store(StatusCode::CREATED, &arrived)
            }
        }
        Err(e) => refused(&state, &req, &e, again),
    }
}
