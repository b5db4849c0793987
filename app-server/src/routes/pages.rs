//! The browser interface: server-rendered pages (see `views.rs`) and plain HTML forms that work
//! without JavaScript.
//!
//! Forms echo the session's CSRF token in a hidden `csrf_token` field; the security headers
//! (strict CSP included) come from the `DefaultHeaders` middleware set in `startup.rs`. A form
//! that fails answers with the same status as the JSON API would, but as a page that says what
//! happened and links back ([`PageError`]).

use actix_multipart::Multipart;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde::Deserialize;
use utoipa_actix_web::service_config::ServiceConfig;

use super::extract::{CheckedForm, PageForm, upload_csrf};
use super::render::{PageError, error_html, html, see_other};
use crate::error::AppError;
use crate::files::{self, FileId};
use crate::sessions::{self, MaybeSession, Session};
use crate::state::AppState;
use crate::views;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/login", web::post().to(login))
        .route("/logout", web::post().to(logout))
        .route("/files", web::post().to(upload))
        .route("/files/{id}/delete", web::post().to(delete))
        .route("/files/{id}/download", web::get().to(download))
        .route("/files/{id}/share", web::get().to(share_form))
        .route("/files/{id}/shares", web::post().to(create_share))
        .route("/shares/{id}/revoke", web::post().to(revoke_share));
}

/// A login form. No `Debug`: it holds a password.
#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
}

/// A form that only carries the CSRF token. Optional, so that a missing field answers 403
/// `csrf`, not 400.
#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf_token: Option<String>,
}

fn csrf_of(form: &Option<web::Form<CsrfForm>>) -> Option<&str> {
    form.as_ref().and_then(|f| f.csrf_token.as_deref())
}

/// A body that is not such a form (or is too large for one) carries no token: 403 `csrf`, not
/// 400.
impl PageForm for Option<web::Form<CsrfForm>> {
    fn csrf_token(&self) -> Option<&str> {
        csrf_of(self)
    }
}

async fn index(
    state: web::Data<AppState>,
    session: MaybeSession,
) -> Result<HttpResponse, PageError> {
    let body = match &session.0 {
        Some(session) => {
            let files = files::list(&state.db, &session.user_id)
                .await
                .map_err(|e| PageError::new(e, Some(session)))?;
            let recent = crate::downloads::recent(
                &state.db,
                &state.audit_dir,
                &session.user_id,
                state.shares.outcomes_known,
            )
            .await
            .map_err(|e| PageError::new(e, Some(session)))?;
            let shares = crate::shares::for_file_list(&state.db, &state.shares, &session.user_id)
                .await
                .map_err(|e| PageError::new(e, Some(session)))?;
            let file_downloads =
                crate::outcomes::for_user_files(&state.db, &session.user_id, FILE_DOWNLOADS_SHOWN)
                    .await
                    .map_err(|e| PageError::new(e, Some(session)))?;
            views::files_page(
                session,
                &files,
                &shares,
                &file_downloads,
                &recent,
                state.uploads.max_upload_bytes,
                &share_choices(&state),
            )
        }
        None => views::login_page(None, "", &login_choices(&state)),
    };
    Ok(html(StatusCode::OK, body))
}

/// What the login page offers: `--password-login`, and the identity provider if configured.
fn login_choices(state: &AppState) -> views::LoginChoices<'_> {
    views::LoginChoices {
        password: state.login.password_login,
        provider: state.oidc.as_ref().map(|oidc| oidc.name()),
    }
}

async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, PageError> {
    // Refused (another site, bad credentials, too many attempts, …): the form again, with
    // the reason, the status and headers the API would send, and the username kept.
    let again = |e: &AppError| {
        error_html(e, |facts| {
            views::login_page(Some(&facts.page), &form.username, &login_choices(&state))
        })
    };
    if let Err(e) = crate::login::check_origin(&req, &state.public_origin) {
        return Ok(again(&e));
    }
    let previous = sessions::cookie_value(&req);
    let credentials = crate::login::Credentials {
        client: sessions::client_ip(&req),
        username: &form.username,
        password: &form.password,
        previous_session: previous.as_deref(),
    };
    match crate::login::login(
        &state.db,
        &state.sessions,
        &state.login,
        &state.metrics,
        credentials,
    )
    .await
    {
        Ok((_, session)) => {
            let mut response = see_other("/");
            response
                .add_cookie(&state.sessions.cookie(session.id))
                .map_err(|e| AppError::Internal(format!("session cookie: {e}")))
                .map_err(|e| PageError::new(e, None))?;
            Ok(response)
        }
        Err(e) if e.status_code().is_client_error() => Ok(again(&e)),
        Err(e) => Err(PageError::new(e, None)),
    }
}

async fn logout(
    state: web::Data<AppState>,
    session: MaybeSession,
    form: Option<web::Form<CsrfForm>>,
) -> Result<HttpResponse, PageError> {
    let mut after = None;
    if let Some(session) = session.0 {
        session
            .check_csrf(csrf_of(&form))
            .map_err(|e| PageError::new(e, Some(&session)))?;
        // A session from the identity provider ends there too (RP-initiated logout).
        if let Some(oidc) = &state.oidc {
            after = oidc.logout_url(&state.db, &session).await;
        }
        session
            .end(&state.db)
            .await
            .map_err(|e| PageError::new(e, None))?;
    }
    let mut response = see_other(after.as_deref().unwrap_or("/"));
    response
        .add_removal_cookie(&state.sessions.removal_cookie())
        .map_err(|e| PageError::new(AppError::Internal(format!("session cookie: {e}")), None))?;
    Ok(response)
}

async fn upload(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: MaybeSession,
    multipart: Multipart,
) -> Result<HttpResponse, PageError> {
    let session = session
        .0
        .ok_or_else(|| PageError::new(AppError::Unauthorized, None))?;
    let page_error = |e| PageError::new(e, Some(&session));
    let csrf = upload_csrf(&req, state.uploads, &session).map_err(page_error)?;
    files::upload(state.uploads_to(), &session, multipart, csrf)
        .await
        .map_err(page_error)?;
    Ok(see_other("/"))
}

async fn delete(
    state: web::Data<AppState>,
    id: web::Path<String>,
    CheckedForm { session, .. }: CheckedForm<Option<web::Form<CsrfForm>>>,
) -> Result<HttpResponse, PageError> {
    let page_error = |e| PageError::new(e, Some(&session));
    let id = FileId::parse(&id).map_err(page_error)?;
    files::delete(&state.db, &state.files, &session.user_id, &id)
        .await
        .map_err(page_error)?;
    Ok(see_other("/"))
}

/// A plain link to a file: mints a fresh single-use URL and redirects there, so downloading
/// needs no JavaScript. Logged out: back to the login page.
async fn download(
    state: web::Data<AppState>,
    session: MaybeSession,
    id: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let Some(session) = session.0 else {
        return Ok(see_other("/"));
    };
    let page_error = |e| PageError::new(e, Some(&session));
    let id = FileId::parse(&id).map_err(page_error)?;
    let link = files::link(&state.db, &state.links, &session.user_id, &id)
        .await
        .map_err(page_error)?;
    Ok(see_other(&link.url))
}

/// Served downloads the file list shows, over all files.
const FILE_DOWNLOADS_SHOWN: i64 = 200;

fn share_choices(state: &AppState) -> views::ShareChoices {
    views::ShareChoices {
        max_secs: state.shares.max_secs,
        max_downloads: state.shares.max_downloads,
    }
}

/// One of the user's files, for a page (`NotFound` for another user's).
async fn own_file(
    state: &AppState,
    session: &Session,
    id: &str,
) -> Result<files::FileInfo, AppError> {
    let id = FileId::parse(id)?;
    files::list(&state.db, &session.user_id)
        .await?
        .into_iter()
        .find(|f| f.id == id.as_str())
        .ok_or(AppError::NotFound)
}

/// `GET /files/{id}/share`: the share form without script.
async fn share_form(
    state: web::Data<AppState>,
    session: MaybeSession,
    id: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let Some(session) = session.0 else {
        return Ok(see_other("/"));
    };
    let file = own_file(&state, &session, &id)
        .await
        .map_err(|e| PageError::new(e, Some(&session)))?;
    Ok(html(
        StatusCode::OK,
        views::share_form_page(&session, &file, &share_choices(&state), None),
    ))
}

/// The share form as posted. No `Debug`: it holds a password.
#[derive(Deserialize)]
pub struct ShareForm {
    #[serde(default)]
    pub csrf_token: Option<String>,
    #[serde(default)]
    pub expires_in_secs: Option<u64>,
    #[serde(default)]
    pub max_downloads: Option<u64>,
    #[serde(default)]
    pub password: Option<String>,
}

/// A body that is not such a form is refused by the app's `FormConfig` (400), logged in or
/// not.
impl PageForm for web::Form<ShareForm> {
    fn csrf_token(&self) -> Option<&str> {
        self.csrf_token.as_deref()
    }
}

/// `POST /files/{id}/shares`: creates the share and shows its URL (201), or the form again
/// with why (400).
async fn create_share(
    state: web::Data<AppState>,
    id: web::Path<String>,
    CheckedForm { session, form }: CheckedForm<web::Form<ShareForm>>,
) -> Result<HttpResponse, PageError> {
    let page_error = |e| PageError::new(e, Some(&session));
    let file = own_file(&state, &session, &id).await.map_err(page_error)?;
    let form = form.into_inner();
    let new = crate::shares::NewShare {
        expires_in_secs: form.expires_in_secs,
        max_downloads: form.max_downloads,
        password: form.password,
    };
    let file_id = FileId::parse(&file.id).map_err(page_error)?;
    match crate::shares::create(&state.db, &state.shares, &session.user_id, &file_id, new).await {
        Ok(share) => Ok(html(
            StatusCode::CREATED,
            views::share_created_page(&session, &file.name, &share),
        )),
        Err(AppError::BadRequest(why)) => Ok(html(
            StatusCode::BAD_REQUEST,
            views::share_form_page(&session, &file, &share_choices(&state), Some(&why)),
        )),
        Err(e) => Err(page_error(e)),
    }
}

/// `POST /shares/{id}/revoke`: revokes at once and goes back to the file list.
async fn revoke_share(
    state: web::Data<AppState>,
    id: web::Path<String>,
    CheckedForm { session, .. }: CheckedForm<Option<web::Form<CsrfForm>>>,
) -> Result<HttpResponse, PageError> {
    let page_error = |e| PageError::new(e, Some(&session));
    let id = crate::shares::ShareId::parse(&id).map_err(page_error)?;
    crate::shares::revoke(&state.db, &session.user_id, &id)
        .await
        .map_err(page_error)?;
    Ok(see_other("/"))
}
