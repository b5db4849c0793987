//! `/api/files`: list, upload, delete, and mint download links.

use actix_multipart::Multipart;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::error::AppError;
use crate::files::{self, Csrf, FileId};
use crate::sessions::{CSRF_HEADER, Session};
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/files")
            .route(web::get().to(list))
            .route(web::post().to(upload)),
    )
    .route("/api/files/{id}", web::delete().to(delete))
    .route("/api/files/{id}/link", web::post().to(link));
}

#[utoipa::path(
    get, path = "/api/files", tag = "files",
    responses(
        (status = 200, description = "your files, newest first", body = Vec<crate::files::FileInfo>),
        (status = 401, description = "`unauthorized`, `invalid_token`", body = super::openapi::ErrorBody),
        (status = 403, description = "`insufficient_scope`", body = super::openapi::ErrorBody),
    )
)]
async fn list(state: web::Data<AppState>, session: Session) -> Result<HttpResponse, AppError> {
    let files = files::list(&state.db, &session.user_id).await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(files))
}

#[utoipa::path(
    post, path = "/api/files", tag = "files",
    request_body(content = String, content_type = "multipart/form-data", description = "one `file` part (with a `csrf_token` part first when the header is not sent)"),
    params(("X-CSRF-Token" = Option<String>, Header, description = "the session's CSRF token (not with a bearer token)")),
    responses(
        (status = 201, description = "stored", body = crate::files::FileInfo),
        (status = 401, description = "`unauthorized`, `invalid_token`", body = super::openapi::ErrorBody),
        (status = 403, description = "`csrf`, `insufficient_scope`", body = super::openapi::ErrorBody),
    )
)]
async fn upload(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    multipart: Multipart,
) -> Result<HttpResponse, AppError> {
    let csrf = upload_csrf(&req, state.uploads, &session)?;
    let file = files::upload(state.uploads_to(), &session, multipart, csrf).await?;
    Ok(HttpResponse::Created().json(file))
}

/// How an upload proves its CSRF token: the header if it has one, else a `csrf_token` field
/// ahead of the file. Also refuses a body whose declared length is already over the limit, so
/// nothing is written for it.
pub(crate) fn upload_csrf(
    req: &HttpRequest,
    limits: files::UploadLimits,
    session: &Session,
) -> Result<Csrf, AppError> {
    let mode = if session.token().is_some() || req.headers().contains_key(CSRF_HEADER) {
        session.check_csrf_header(req)?;
        Csrf::CheckedHeader
    } else {
        Csrf::ExpectField
    };
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(length) = declared
        && length > limits.max_upload_bytes.saturating_add(MULTIPART_OVERHEAD)
    {
        return Err(AppError::TooLarge(limits.max_upload_bytes));
    }
    Ok(mode)
}

/// Room for multipart boundaries, headers and the CSRF field around the file's bytes.
const MULTIPART_OVERHEAD: u64 = 64 * 1024;

#[utoipa::path(
    delete, path = "/api/files/{id}", tag = "files",
    params(("id" = String, Path, description = "the id"), ("X-CSRF-Token" = Option<String>, Header, description = "the session's CSRF token (not with a bearer token)")),
    responses(
        (status = 204, description = "deleted, with its shares"),
        (status = 401, description = "`unauthorized`, `invalid_token`", body = super::openapi::ErrorBody),
        (status = 403, description = "`csrf`, `insufficient_scope`", body = super::openapi::ErrorBody),
        (status = 404, description = "`not_found`", body = super::openapi::ErrorBody),
    )
)]
async fn delete(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    session.check_csrf_header(&req)?;
    let id = FileId::parse(&id)?;
    files::delete(&state.db, &state.files, &session.user_id, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    post, path = "/api/files/{id}/link", tag = "files",
    params(("id" = String, Path, description = "the id"), ("X-CSRF-Token" = Option<String>, Header, description = "the session's CSRF token (not with a bearer token)")),
    responses(
        (status = 201, description = "a one-time download URL", body = crate::files::Link),
        (status = 401, description = "`unauthorized`, `invalid_token`", body = super::openapi::ErrorBody),
        (status = 403, description = "`csrf`, `insufficient_scope`", body = super::openapi::ErrorBody),
        (status = 404, description = "`not_found`", body = super::openapi::ErrorBody),
    )
)]
async fn link(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    session.check_csrf_header(&req)?;
    let id = FileId::parse(&id)?;
    let link = files::link(&state.db, &state.links, &session.user_id, &id).await?;
    Ok(HttpResponse::Created()
        .insert_header(("Cache-Control", "no-store"))
        .json(link))
}
