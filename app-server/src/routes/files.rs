//! `/api/files`: list, upload, delete, and mint download links.

use actix_multipart::Multipart;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};
use utoipa_actix_web::service_config::ServiceConfig;

use super::extract::upload_csrf;
use super::openapi::{ReadRefused, WriteRefused};
use super::render::json_no_store;
use crate::error::{AppError, ErrorBody};
use crate::files::{self, FileId, FileInfo};
use crate::minter::Link;
use crate::sessions::Session;
use crate::state::AppState;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list_files)
        .service(upload_file)
        .service(delete_file)
        .service(mint_link);
}

#[utoipa::path(
    tag = "files",
    responses(
        (status = 200, description = "your files, newest first", body = Vec<FileInfo>),
        ReadRefused,
    ),
    security(("bearer" = ["files:read"]), ("session" = []))
)]
#[get("/api/files")]
async fn list_files(
    state: web::Data<AppState>,
    session: Session,
) -> Result<HttpResponse, AppError> {
    let files = files::list(&state.db, &session.user_id).await?;
    Ok(json_no_store(StatusCode::OK, &files))
}

#[utoipa::path(
    tag = "files",
    request_body(content = String, content_type = "multipart/form-data", description = "one `file` part (with a `csrf_token` part first when the header is not sent)"),
    params(("X-CSRF-Token" = Option<String>, Header, description = "the session's CSRF token (not with a bearer token)")),
    responses(
        (status = 201, description = "stored", body = FileInfo),
        WriteRefused,
    ),
    security(("bearer" = ["files:write"]), ("session" = []))
)]
#[post("/api/files")]
async fn upload_file(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    multipart: Multipart,
) -> Result<HttpResponse, AppError> {
    let csrf = upload_csrf(&req, state.uploads, &session)?;
    let file = files::upload(state.uploads_to(), &session, multipart, csrf).await?;
    Ok(HttpResponse::Created().json(file))
}

#[utoipa::path(
    tag = "files",
    params(("X-CSRF-Token" = Option<String>, Header, description = "the session's CSRF token (not with a bearer token)")),
    responses(
        (status = 204, description = "deleted, with its shares"),
        WriteRefused,
        (status = 404, description = "`not_found`", body = ErrorBody),
    ),
    security(("bearer" = ["files:write"]), ("session" = []))
)]
#[delete("/api/files/{id}")]
async fn delete_file(
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
    tag = "files",
    params(("X-CSRF-Token" = Option<String>, Header, description = "the session's CSRF token (not with a bearer token)")),
    responses(
        (status = 201, description = "a one-time download URL", body = Link),
        WriteRefused,
        (status = 404, description = "`not_found`", body = ErrorBody),
    ),
    security(("bearer" = ["links:mint"]), ("session" = []))
)]
#[post("/api/files/{id}/link")]
async fn mint_link(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    session.check_csrf_header(&req)?;
    let id = FileId::parse(&id)?;
    let link = files::link(&state.db, &state.links, &session.user_id, &id).await?;
    Ok(json_no_store(StatusCode::CREATED, &link))
}
