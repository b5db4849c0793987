//! `/api/uploads`: resumable uploads over tus 1.0 ([`crate::uploads`] decides; this file reads
//! the protocol's headers and writes them back). Every answer carries `Tus-Resumable`; every
//! request but OPTIONS must send it (else 412 with `Tus-Version`). Writes with a session echo
//! its CSRF token in `X-CSRF-Token` (tus-js-client sends it through its `headers` option).
//!
//! The same protocol serves uploads through an upload link at `/u/<secret>/uploads` (the
//! endpoint a tus client is given), without an account: the creation is checked as the link's
//! form is (cross-site rules, a browser's form token in `Burnlink-Form-Token`, the password in
//! `Burnlink-Link-Password`, throttled); the upload's URL (`/u/<secret>/uploads/<id>`, 256
//! random bits) is the capability for HEAD, PATCH and DELETE, which stop once the link is
//! revoked or expired (the upload is then removed and its slot given back).

use std::time::{Duration, UNIX_EPOCH};

use actix_web::http::header::{
    CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue, HttpDate, LOCATION,
    TRANSFER_ENCODING,
};
use actix_web::{
    HttpRequest, HttpResponse, HttpResponseBuilder, ResponseError, delete, head, options, patch,
    post, web,
};
use futures_util::StreamExt;
use utoipa_actix_web::service_config::ServiceConfig;

use super::openapi::{ReadRefused, WriteRefused};
use crate::error::{AppError, ErrorBody};
use crate::sessions::{self, Session};
use crate::share_form;
use crate::shares::ShareSecret;
use crate::state::AppState;
use crate::upload_links;
use crate::uploads::{
    self, Creation, Metadata, OFFSET_OCTET_STREAM, Progress, TUS_EXTENSIONS, TUS_VERSION, UploadId,
    Uploader,
};

const TUS_RESUMABLE: HeaderName = HeaderName::from_static("tus-resumable");
const UPLOAD_OFFSET: &str = "Upload-Offset";
const UPLOAD_LENGTH: &str = "Upload-Length";
const UPLOAD_EXPIRES: &str = "Upload-Expires";
/// The file an upload became, on the answer to its last byte and on HEAD after.
pub const FILE_ID_HEADER: &str = "Burnlink-File-Id";
/// The link page's form token, on a browser's creation through an upload link.
pub const FORM_TOKEN_HEADER: &str = "Burnlink-Form-Token";
/// The link's password, on a creation through an upload link that has one.
pub const LINK_PASSWORD_HEADER: &str = "Burnlink-Link-Password";
/// Longest `User-Agent` kept with a received file.
const MAX_AGENT_CHARS: usize = 256;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(tus_options)
        .service(create_upload)
        .service(upload_progress)
        .service(append_upload)
        .service(terminate_upload)
        .service(create_link_upload)
        .service(link_upload_progress)
        .service(append_link_upload)
        .service(terminate_link_upload);
}

#[utoipa::path(
    tag = "uploads",
    responses(
        (status = 204, description = "what this server speaks: `Tus-Version`, `Tus-Extension`, `Tus-Max-Size` (`--max-upload-bytes`)"),
    ),
    security(())
)]
#[options("/api/uploads")]
async fn tus_options(state: web::Data<AppState>) -> HttpResponse {
    tus(Ok(HttpResponse::NoContent()
        .insert_header(("Tus-Version", TUS_VERSION))
        .insert_header(("Tus-Extension", TUS_EXTENSIONS))
        .insert_header(("Tus-Max-Size", state.uploads.max_upload_bytes))
        .finish()))
}

#[utoipa::path(
    tag = "uploads",
    request_body(content = String, content_type = "application/offset+octet-stream", description = "optional: the first bytes (tus creation-with-upload)"),
    params(
        ("Tus-Resumable" = String, Header, description = "`1.0.0`"),
        ("Upload-Length" = u64, Header, description = "the file's size in bytes, at most `Tus-Max-Size`"),
        ("Upload-Metadata" = Option<String>, Header, description = "`filename` and `filetype`, base64 (tus creation)"),
        ("X-CSRF-Token" = Option<String>, Header, description = "the session's CSRF token (not with a bearer token)"),
    ),
    responses(
        (status = 201, description = "created: `Location` is the upload's URL; `Upload-Offset`, `Upload-Expires`; `Burnlink-File-Id` when the body held every byte"),
        WriteRefused,
        (status = 412, description = "`tus_version`: no Tus-Resumable header saying 1.0.0", body = ErrorBody),
        (status = 413, description = "`too_large`: over Tus-Max-Size", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: a body in another media type than application/offset+octet-stream", body = ErrorBody),
    ),
    security(("bearer" = ["files:write"]), ("session" = []))
)]
#[post("/api/uploads")]
async fn create_upload(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Result<Session, AppError>,
    body: web::Payload,
) -> HttpResponse {
    tus(create(req, state, session, body).await)
}

async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Result<Session, AppError>,
    body: web::Payload,
) -> Result<HttpResponse, AppError> {
    let uploader = writer(&req, session)?;
    creation(req, state, uploader, body, "/api/uploads").await
}

/// A creation by `uploader`, whose upload's URL is under `base`.
async fn creation(
    req: HttpRequest,
    state: web::Data<AppState>,
    uploader: Uploader,
    body: web::Payload,
    base: &str,
) -> Result<HttpResponse, AppError> {
    let length = number(&req, UPLOAD_LENGTH)?.ok_or_else(|| {
        AppError::BadRequest(if req.headers().contains_key("Upload-Defer-Length") {
            "Upload-Defer-Length is not supported: send Upload-Length".into()
        } else {
            "Upload-Length is required".into()
        })
    })?;
    let metadata = match req.headers().get("Upload-Metadata") {
        Some(value) => Metadata::parse(
            value
                .to_str()
                .map_err(|_| AppError::BadRequest("Upload-Metadata is not ASCII".into()))?,
        )?,
        None => Metadata::default(),
    };
    let with_body = has_body(&req);
    if with_body {
        offset_stream(&req)?;
        // Refused before the upload exists: a client never holds an upload it cannot finish.
        if number(&req, CONTENT_LENGTH.as_str())?.is_some_and(|declared| declared > length) {
            return Err(AppError::BadRequest(format!(
                "the body runs past Upload-Length ({length} bytes)"
            )));
        }
    }
    let created = uploads::create(
        &state.uploads_to(),
        state.upload_policy,
        &uploader,
        Creation { length, metadata },
    )
    .await?;
    let location = format!("{base}/{}", created.id.as_str());
    let progress = if with_body {
        append(&req, state, uploader, created.id, 0, body).await?
    } else {
        created.progress
    };
    let mut response = HttpResponse::Created();
    response.insert_header((LOCATION, location));
    Ok(with_progress(&mut response, &progress).finish())
}

#[utoipa::path(
    tag = "uploads",
    params(
        ("id" = String, Path, description = "the upload's id, from its `Location`"),
        ("Tus-Resumable" = String, Header, description = "`1.0.0`"),
    ),
    responses(
        (status = 200, description = "`Upload-Offset` (bytes received and kept), `Upload-Length`, `Upload-Expires`; `Burnlink-File-Id` once whole"),
        ReadRefused,
        (status = 404, description = "`not_found`: no such upload of yours", body = ErrorBody),
        (status = 410, description = "`upload_expired`", body = ErrorBody),
    ),
    security(("bearer" = ["files:write"]), ("session" = []))
)]
#[head("/api/uploads/{id}")]
async fn upload_progress(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Result<Session, AppError>,
    id: web::Path<String>,
) -> HttpResponse {
    tus(async {
        version(&req)?;
        let uploader = Uploader::Owner {
            user_id: session?.user_id,
        };
        let id = UploadId::parse(&id)?;
        let progress = uploads::progress(&state.db, &uploader, &id).await?;
        Ok(with_progress(&mut HttpResponse::Ok(), &progress).finish())
    }
    .await)
}

#[utoipa::path(
    tag = "uploads",
    request_body(content = String, content_type = "application/offset+octet-stream", description = "the bytes from `Upload-Offset` on"),
    params(
        ("id" = String, Path, description = "the upload's id, from its `Location`"),
        ("Tus-Resumable" = String, Header, description = "`1.0.0`"),
        ("Upload-Offset" = u64, Header, description = "where the body's bytes go: the upload's offset, as HEAD says it"),
        ("X-CSRF-Token" = Option<String>, Header, description = "the session's CSRF token (not with a bearer token)"),
    ),
    responses(
        (status = 204, description = "kept: `Upload-Offset` is the new offset; `Burnlink-File-Id` when it was the last byte"),
        WriteRefused,
        (status = 404, description = "`not_found`: no such upload of yours", body = ErrorBody),
        (status = 409, description = "`offset_mismatch`: Upload-Offset is not the upload's offset; nothing was written", body = ErrorBody),
        (status = 410, description = "`upload_expired`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not application/offset+octet-stream", body = ErrorBody),
        (status = 423, description = "`upload_busy`: another request is writing this upload", body = ErrorBody),
    ),
    security(("bearer" = ["files:write"]), ("session" = []))
)]
#[patch("/api/uploads/{id}")]
async fn append_upload(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Result<Session, AppError>,
    id: web::Path<String>,
    body: web::Payload,
) -> HttpResponse {
    tus(async {
        let uploader = writer(&req, session)?;
        offset_stream(&req)?;
        let id = UploadId::parse(&id)?;
        let presented = number(&req, UPLOAD_OFFSET)?
            .ok_or_else(|| AppError::BadRequest("Upload-Offset is required".into()))?;
        let progress = append(&req, state, uploader, id, presented, body).await?;
        Ok(with_progress(&mut HttpResponse::NoContent(), &progress).finish())
    }
    .await)
}

#[utoipa::path(
    tag = "uploads",
    params(
        ("id" = String, Path, description = "the upload's id, from its `Location`"),
        ("Tus-Resumable" = String, Header, description = "`1.0.0`"),
        ("X-CSRF-Token" = Option<String>, Header, description = "the session's CSRF token (not with a bearer token)"),
    ),
    responses(
        (status = 204, description = "terminated: the bytes so far are removed (a finished upload's file stays)"),
        WriteRefused,
        (status = 404, description = "`not_found`: no such upload of yours", body = ErrorBody),
        (status = 423, description = "`upload_busy`: a request is writing it", body = ErrorBody),
    ),
    security(("bearer" = ["files:write"]), ("session" = []))
)]
#[delete("/api/uploads/{id}")]
async fn terminate_upload(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Result<Session, AppError>,
    id: web::Path<String>,
) -> HttpResponse {
    tus(async {
        let uploader = writer(&req, session)?;
        let id = UploadId::parse(&id)?;
        uploads::terminate(&state.db, &state.files, &uploader, &id).await?;
        Ok(HttpResponse::NoContent().finish())
    }
    .await)
}

#[utoipa::path(
    tag = "upload links",
    request_body(content = String, content_type = "application/offset+octet-stream", description = "optional: the first bytes (tus creation-with-upload)"),
    params(
        ("secret" = String, Path, description = "the link's secret, from its URL"),
        ("Tus-Resumable" = String, Header, description = "`1.0.0`"),
        ("Upload-Length" = u64, Header, description = "the file's size in bytes, at most what the link has left and `Tus-Max-Size`"),
        ("Upload-Metadata" = Option<String>, Header, description = "`filename` and `filetype`, base64 (tus creation)"),
        ("Burnlink-Form-Token" = Option<String>, Header, description = "from a browser: the link page's form token"),
        ("Burnlink-Link-Password" = Option<String>, Header, description = "the link's password, when it has one"),
    ),
    responses(
        (status = 201, description = "created, holding one of the link's file slots: `Location` is the upload's URL (`/u/<secret>/uploads/<id>`); `Upload-Offset`, `Upload-Expires`. No `Burnlink-File-Id`: the file is the owner's"),
        (status = 400, description = "`bad_request`", body = ErrorBody),
        (status = 401, description = "`wrong_password`", body = ErrorBody),
        (status = 403, description = "`csrf` or `cross_site`: a browser's request without a fresh form token, or from another site", body = ErrorBody),
        (status = 404, description = "`not_found`: no such link", body = ErrorBody),
        (status = 409, description = "`upload_link_full`: all its files are received or being received", body = ErrorBody),
        (status = 410, description = "`upload_link_gone`: revoked or expired", body = ErrorBody),
        (status = 412, description = "`tus_version`", body = ErrorBody),
        (status = 413, description = "`too_large`: more than the link has left or Tus-Max-Size", body = ErrorBody),
        (status = 429, description = "`throttled`: too many wrong passwords (see Retry-After)", body = ErrorBody),
    ),
    security(())
)]
#[post("/u/{secret}/uploads")]
async fn create_link_upload(
    req: HttpRequest,
    state: web::Data<AppState>,
    secret: web::Path<String>,
    body: web::Payload,
) -> HttpResponse {
    tus(async {
        version(&req)?;
        let secret = ShareSecret::parse(&secret).map_err(|_| AppError::NotFound)?;
        let caller =
            share_form::caller(&req, &state.shares.public_url).map_err(|_| AppError::CrossSite)?;
        let visit = upload_links::visit(&state.db, &secret).await?;
        let gate = upload_links::Uploader {
            caller,
            client: sessions::client_ip(&req),
            user_agent: user_agent(&req),
            form_key: &state.form_key,
            throttle: &state.share_throttle,
        };
        let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
        upload_links::admit(
            &visit,
            &gate,
            header(FORM_TOKEN_HEADER),
            header(LINK_PASSWORD_HEADER),
        )
        .await?;
        let uploader = Uploader::Link {
            user_id: visit.owner().to_owned(),
            link_id: visit.id.clone(),
            client: gate.client.map(|ip| ip.to_string()),
            user_agent: gate.user_agent,
        };
        let base = format!("/u/{}/uploads", secret.expose());
        let mut response = creation(req.clone(), state.clone(), uploader, body, &base).await?;
        // As with the form, the sender learns no file id: the file is the owner's.
        if response
            .headers_mut()
            .remove(FILE_ID_HEADER)
            .next()
            .is_some()
        {
            state.webhooks.wake.notify();
        }
        Ok(response)
    }
    .await)
}

#[utoipa::path(
    tag = "upload links",
    params(
        ("secret" = String, Path, description = "the link's secret"),
        ("id" = String, Path, description = "the upload's id, from its `Location`"),
        ("Tus-Resumable" = String, Header, description = "`1.0.0`"),
    ),
    responses(
        (status = 200, description = "`Upload-Offset`, `Upload-Length`, `Upload-Expires` (none once whole)"),
        (status = 404, description = "`not_found`: no such upload through this link", body = ErrorBody),
        (status = 410, description = "`upload_expired`, or `upload_link_gone`: the link was revoked or expired (the upload is removed)", body = ErrorBody),
        (status = 412, description = "`tus_version`", body = ErrorBody),
    ),
    security(())
)]
#[head("/u/{secret}/uploads/{id}")]
async fn link_upload_progress(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    tus(async {
        let (uploader, id) = link_upload(&req, &state, &path).await?;
        let mut progress = uploads::progress(&state.db, &uploader, &id).await?;
        progress.file_id = None;
        Ok(with_progress(&mut HttpResponse::Ok(), &progress).finish())
    }
    .await)
}

#[utoipa::path(
    tag = "upload links",
    request_body(content = String, content_type = "application/offset+octet-stream", description = "the bytes from `Upload-Offset` on"),
    params(
        ("secret" = String, Path, description = "the link's secret"),
        ("id" = String, Path, description = "the upload's id, from its `Location`"),
        ("Tus-Resumable" = String, Header, description = "`1.0.0`"),
        ("Upload-Offset" = u64, Header, description = "the upload's offset, as HEAD says it"),
    ),
    responses(
        (status = 204, description = "kept: `Upload-Offset` is the new offset; at `Upload-Length` the file is the link owner's, marked received"),
        (status = 400, description = "`bad_request`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such upload through this link", body = ErrorBody),
        (status = 409, description = "`offset_mismatch`", body = ErrorBody),
        (status = 410, description = "`upload_expired`, or `upload_link_gone`: the link was revoked or expired (the upload is removed)", body = ErrorBody),
        (status = 412, description = "`tus_version`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 423, description = "`upload_busy`", body = ErrorBody),
    ),
    security(())
)]
#[patch("/u/{secret}/uploads/{id}")]
async fn append_link_upload(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Payload,
) -> HttpResponse {
    tus(async {
        let (uploader, id) = link_upload(&req, &state, &path).await?;
        offset_stream(&req)?;
        let presented = number(&req, UPLOAD_OFFSET)?
            .ok_or_else(|| AppError::BadRequest("Upload-Offset is required".into()))?;
        let mut progress = append(&req, state.clone(), uploader, id, presented, body).await?;
        // Whole when `Upload-Offset` reaches `Upload-Length`; the file's id stays the owner's.
        if progress.file_id.take().is_some() {
            state.webhooks.wake.notify();
        }
        Ok(with_progress(&mut HttpResponse::NoContent(), &progress).finish())
    }
    .await)
}

#[utoipa::path(
    tag = "upload links",
    params(
        ("secret" = String, Path, description = "the link's secret"),
        ("id" = String, Path, description = "the upload's id, from its `Location`"),
        ("Tus-Resumable" = String, Header, description = "`1.0.0`"),
    ),
    responses(
        (status = 204, description = "terminated: the bytes so far are removed and the link's slot given back"),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 410, description = "`upload_link_gone`: the link was revoked or expired (the upload is removed)", body = ErrorBody),
        (status = 412, description = "`tus_version`", body = ErrorBody),
        (status = 423, description = "`upload_busy`", body = ErrorBody),
    ),
    security(())
)]
#[delete("/u/{secret}/uploads/{id}")]
async fn terminate_link_upload(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    tus(async {
        let (uploader, id) = link_upload(&req, &state, &path).await?;
        uploads::terminate(&state.db, &state.files, &uploader, &id).await?;
        Ok(HttpResponse::NoContent().finish())
    }
    .await)
}

/// A request on an upload through a link: the version said, the link known, the upload's id
/// well formed. A link revoked or expired since is `UploadLinkGone`, and the upload is removed
/// now (its slot given back) unless a request holds it (then the sweep does).
async fn link_upload(
    req: &HttpRequest,
    state: &AppState,
    path: &(String, String),
) -> Result<(Uploader, UploadId), AppError> {
    version(req)?;
    let secret = ShareSecret::parse(&path.0).map_err(|_| AppError::NotFound)?;
    let id = UploadId::parse(&path.1)?;
    let link = upload_links::open(&state.db, &secret).await?;
    let uploader = Uploader::Link {
        user_id: link.owner,
        link_id: link.id,
        client: sessions::client_ip(req).map(|ip| ip.to_string()),
        user_agent: user_agent(req),
    };
    if !link.live {
        if let Err(e) = uploads::terminate(&state.db, &state.files, &uploader, &id).await {
            tracing::info!(error = %e, "an upload through a gone link is left to the sweep");
        }
        return Err(AppError::UploadLinkGone);
    }
    Ok((uploader, id))
}

fn user_agent(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get(actix_web::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(MAX_AGENT_CHARS).collect())
}

/// The body appended in a task of its own: a client that goes away mid-body does not stop the
/// saving and recording of what arrived (the dropped handler would).
async fn append(
    req: &HttpRequest,
    state: web::Data<AppState>,
    uploader: Uploader,
    id: UploadId,
    presented: u64,
    body: web::Payload,
) -> Result<Progress, AppError> {
    let declared = number(req, CONTENT_LENGTH.as_str())?;
    let task = actix_web::rt::spawn(async move {
        let body = body.map(|chunk| chunk.map_err(body_error));
        uploads::append(
            &state.uploads_to(),
            state.upload_policy,
            &uploader,
            &id,
            presented,
            declared,
            body,
        )
        .await
    });
    task.await
        .map_err(|e| AppError::Internal(format!("an upload's task failed: {e}")))?
}

fn body_error(e: actix_web::error::PayloadError) -> AppError {
    if server_kit::body_timeout::is_timeout(&e) {
        AppError::BodyTimeout
    } else {
        AppError::BadRequest(format!("the body broke off: {e}"))
    }
}

/// Every answer, error or not: `Tus-Resumable` and `no-store`.
fn tus(result: Result<HttpResponse, AppError>) -> HttpResponse {
    let mut response = result.unwrap_or_else(|e| e.error_response());
    let headers = response.headers_mut();
    headers.insert(TUS_RESUMABLE, HeaderValue::from_static(TUS_VERSION));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// tus 1.0 core: every request but OPTIONS says which version it speaks.
fn version(req: &HttpRequest) -> Result<(), AppError> {
    match req.headers().get(TUS_RESUMABLE) {
        Some(v) if v.as_bytes() == TUS_VERSION.as_bytes() => Ok(()),
        _ => Err(AppError::TusVersion),
    }
}

/// A writing request's uploader: the version said, logged in, and with a session, its CSRF
/// token echoed (a token's scope was checked by the extractor).
fn writer(req: &HttpRequest, session: Result<Session, AppError>) -> Result<Uploader, AppError> {
    version(req)?;
    let session = session?;
    session.check_csrf_header(req)?;
    Ok(Uploader::Owner {
        user_id: session.user_id,
    })
}

/// A header holding a non-negative integer (tus: digits only), if present.
fn number(req: &HttpRequest, name: &str) -> Result<Option<u64>, AppError> {
    let Some(value) = req.headers().get(name) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("");
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AppError::BadRequest(format!(
            "{name} must be a non-negative integer"
        )));
    }
    text.parse()
        .map(Some)
        .map_err(|_| AppError::BadRequest(format!("{name} is too large")))
}

fn has_body(req: &HttpRequest) -> bool {
    req.headers().contains_key(TRANSFER_ENCODING)
        || number(req, CONTENT_LENGTH.as_str()).is_ok_and(|n| n.unwrap_or(0) > 0)
}

/// A body must be `application/offset+octet-stream` (415 otherwise).
fn offset_stream(req: &HttpRequest) -> Result<(), AppError> {
    let essence = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    match essence {
        Some(t) if t.eq_ignore_ascii_case(OFFSET_OCTET_STREAM) => Ok(()),
        _ => Err(AppError::UnsupportedMediaType(OFFSET_OCTET_STREAM)),
    }
}

fn with_progress<'a>(
    response: &'a mut HttpResponseBuilder,
    progress: &Progress,
) -> &'a mut HttpResponseBuilder {
    response
        .insert_header((UPLOAD_OFFSET, progress.offset))
        .insert_header((UPLOAD_LENGTH, progress.length));
    if let Some(ms) = progress.expires_ms {
        let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
        response.insert_header((UPLOAD_EXPIRES, HttpDate::from(at).to_string()));
    }
    if let Some(file) = &progress.file_id {
        response.insert_header((FILE_ID_HEADER, file.as_str()));
    }
    response
}
