//! `/api/webhooks`: the owner's webhook endpoints, and the Webhooks page (`/webhooks`). See
//! [`crate::webhooks`] for the rules and docs/WEBHOOKS.md for what a receiver gets.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use utoipa_actix_web::service_config::ServiceConfig;

use super::extract::CheckedForm;
use super::openapi::{ReadRefused, WriteRefused};
use super::render::{PageError, error_html, html, json_no_store, see_other};
use crate::error::{AppError, ErrorBody};
use crate::sessions::{MaybeSession, Session};
use crate::state::AppState;
use crate::views::webhooks as views;
use crate::webhooks::{
    self, CreatedWebhook, NewWebhook, RotatedSecret, TestEvent, WebhookChange, WebhookDetail,
    WebhookId, WebhookInfo,
};

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(create_webhook)
        .service(list_webhooks)
        .service(get_webhook)
        .service(update_webhook)
        .service(delete_webhook)
        .service(rotate_secret)
        .service(send_test)
        .service(enable_webhook)
        .map(|cfg| {
            cfg.service(
                web::resource("/webhooks")
                    .route(web::get().to(page))
                    .route(web::post().to(create_from_form)),
            )
            .route("/webhooks/{id}", web::get().to(detail_page))
            .route("/webhooks/{id}/{action}", web::post().to(act_from_form))
        });
}

/// Registers an endpoint; the answer is the only time its signing secret is shown.
#[utoipa::path(tag = "webhooks",
    request_body = NewWebhook,
    params(("X-CSRF-Token" = Option<String>, Header, description = "the session's CSRF token (not with a bearer token)")),
    responses(
        (status = 201, description = "created; `secret` is shown only now", body = CreatedWebhook),
        (status = 400, description = "`bad_request`: not https (or http without --webhooks-allow-http), no host, credentials in the URL, unknown or no events", body = ErrorBody),
        WriteRefused,
        (status = 409, description = "`too_many_webhooks`", body = ErrorBody),
        (status = 422, description = "`url_refused`: the host is, or resolves to, an address deliveries may not reach (loopback, private, link-local, metadata, …), or does not resolve", body = ErrorBody),
    ),
    security(("bearer" = ["webhooks:write"]), ("session" = []))
)]
#[post("/api/webhooks")]
async fn create_webhook(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    // Parsed after the CSRF check, so a forged request is `csrf` whatever it carries.
    session.check_csrf_header(&req)?;
    let new: NewWebhook = serde_json::from_slice(&body)
        .map_err(|e| AppError::BadRequest(format!("webhook settings: {e}")))?;
    let created = webhooks::create(&state.db, &state.webhooks, &session.user_id, new).await?;
    Ok(json_no_store(StatusCode::CREATED, &created))
}

/// The user's endpoints, newest first (never their secrets).
#[utoipa::path(tag = "webhooks",
    responses(
        (status = 200, description = "the endpoints", body = Vec<WebhookInfo>),
        ReadRefused,
    ),
    security(("bearer" = ["webhooks:read"]), ("session" = []))
)]
#[get("/api/webhooks")]
async fn list_webhooks(
    state: web::Data<AppState>,
    session: Session,
) -> Result<HttpResponse, AppError> {
    let list = webhooks::list(&state.db, &session.user_id).await?;
    Ok(json_no_store(StatusCode::OK, &list))
}

/// One endpoint with its delivery log: the last 100 attempts, newest first.
#[utoipa::path(tag = "webhooks",
    responses(
        (status = 200, description = "the endpoint and its delivery log", body = WebhookDetail),
        ReadRefused,
        (status = 404, description = "`not_found`", body = ErrorBody),
    ),
    security(("bearer" = ["webhooks:read"]), ("session" = []))
)]
#[get("/api/webhooks/{id}")]
async fn get_webhook(
    state: web::Data<AppState>,
    session: Session,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = WebhookId::parse(&id)?;
    let detail = webhooks::detail(&state.db, &session.user_id, &id).await?;
    Ok(json_no_store(StatusCode::OK, &detail))
}

/// Changes an endpoint's URL, events or description (the secret stays); absent fields stay.
#[utoipa::path(tag = "webhooks",
    request_body = WebhookChange,
    params(("X-CSRF-Token" = Option<String>, Header, description = "the session's CSRF token (not with a bearer token)")),
    responses(
        (status = 200, description = "the endpoint as changed", body = WebhookInfo),
        (status = 400, description = "`bad_request`", body = ErrorBody),
        WriteRefused,
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 422, description = "`url_refused`", body = ErrorBody),
    ),
    security(("bearer" = ["webhooks:write"]), ("session" = []))
)]
#[patch("/api/webhooks/{id}")]
async fn update_webhook(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    session.check_csrf_header(&req)?;
    let change: WebhookChange = serde_json::from_slice(&body)
        .map_err(|e| AppError::BadRequest(format!("webhook settings: {e}")))?;
    let id = WebhookId::parse(&id)?;
    let info = webhooks::update(&state.db, &state.webhooks, &session.user_id, &id, change).await?;
    Ok(json_no_store(StatusCode::OK, &info))
}

/// Deletes an endpoint: nothing more is sent to it, events waiting included.
#[utoipa::path(tag = "webhooks",
    params(("X-CSRF-Token" = Option<String>, Header, description = "the session's CSRF token (not with a bearer token)")),
    responses(
        (status = 204, description = "deleted"),
        WriteRefused,
        (status = 404, description = "`not_found`", body = ErrorBody),
    ),
    security(("bearer" = ["webhooks:write"]), ("session" = []))
)]
#[delete("/api/webhooks/{id}")]
async fn delete_webhook(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    session.check_csrf_header(&req)?;
    let id = WebhookId::parse(&id)?;
    webhooks::delete(&state.db, &session.user_id, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A new signing secret, shown only now; the previous one signs beside it for 24 hours.
#[utoipa::path(tag = "webhooks",
    params(("X-CSRF-Token" = Option<String>, Header, description = "the session's CSRF token (not with a bearer token)")),
    responses(
        (status = 200, description = "the new secret", body = RotatedSecret),
        WriteRefused,
        (status = 404, description = "`not_found`", body = ErrorBody),
    ),
    security(("bearer" = ["webhooks:write"]), ("session" = []))
)]
#[post("/api/webhooks/{id}/rotate")]
async fn rotate_secret(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    session.check_csrf_header(&req)?;
    let id = WebhookId::parse(&id)?;
    let rotated = webhooks::rotate(&state.db, &session.user_id, &id).await?;
    Ok(json_no_store(StatusCode::OK, &rotated))
}

/// Queues a `webhook.test` event for the endpoint, delivered as every event is.
#[utoipa::path(tag = "webhooks",
    params(("X-CSRF-Token" = Option<String>, Header, description = "the session's CSRF token (not with a bearer token)")),
    responses(
        (status = 202, description = "queued; its `webhook-id`", body = TestEvent),
        WriteRefused,
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 409, description = "`webhook_disabled`: re-enable it first", body = ErrorBody),
    ),
    security(("bearer" = ["webhooks:write"]), ("session" = []))
)]
#[post("/api/webhooks/{id}/test")]
async fn send_test(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    session.check_csrf_header(&req)?;
    let id = WebhookId::parse(&id)?;
    let sent = webhooks::send_test(&state.db, &state.webhooks.wake, &session.user_id, &id).await?;
    Ok(json_no_store(StatusCode::ACCEPTED, &sent))
}

/// Re-enables an endpoint disabled after failing too long; waiting events are sent again.
#[utoipa::path(tag = "webhooks",
    params(("X-CSRF-Token" = Option<String>, Header, description = "the session's CSRF token (not with a bearer token)")),
    responses(
        (status = 200, description = "enabled", body = WebhookInfo),
        WriteRefused,
        (status = 404, description = "`not_found`", body = ErrorBody),
    ),
    security(("bearer" = ["webhooks:write"]), ("session" = []))
)]
#[post("/api/webhooks/{id}/enable")]
async fn enable_webhook(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    session.check_csrf_header(&req)?;
    let id = WebhookId::parse(&id)?;
    let info = webhooks::enable(&state.db, &state.webhooks.wake, &session.user_id, &id).await?;
    Ok(json_no_store(StatusCode::OK, &info))
}

fn not_logged_in() -> PageError {
    PageError::new(AppError::Unauthorized, None)
}

/// `GET /webhooks`: the Webhooks page.
async fn page(
    state: web::Data<AppState>,
    session: MaybeSession,
) -> Result<HttpResponse, PageError> {
    let session = session.0.ok_or_else(not_logged_in)?;
    let list = webhooks::list(&state.db, &session.user_id)
        .await
        .map_err(|e| PageError::new(e, Some(&session)))?;
    Ok(html(
        StatusCode::OK,
        views::webhooks_page(&session, &list, None, state.webhooks.allow_http),
    ))
}

/// `POST /webhooks`: the page's form (`url`, one `event` per ticked box, `description`).
/// Shows the secret once; a refused form is the page again with why, and the API's status.
async fn create_from_form(
    state: web::Data<AppState>,
    CheckedForm { session, form }: CheckedForm,
) -> Result<HttpResponse, PageError> {
    let new = NewWebhook {
        url: form.get("url").unwrap_or("").to_owned(),
        events: form.all("event").map(str::to_owned).collect(),
        description: form.get("description").map(str::to_owned),
    };
    match webhooks::create(&state.db, &state.webhooks, &session.user_id, new).await {
        Ok(created) => Ok(html(
            StatusCode::CREATED,
            views::secret_page(&session, &created.webhook, &created.secret, None),
        )),
        Err(e) if actix_web::ResponseError::status_code(&e).is_client_error() => {
            let list = webhooks::list(&state.db, &session.user_id)
                .await
                .map_err(|e| PageError::new(e, Some(&session)))?;
            Ok(error_html(&e, |facts| {
                views::webhooks_page(
                    &session,
                    &list,
                    Some(&facts.page),
                    state.webhooks.allow_http,
                )
            }))
        }
        Err(e) => Err(PageError::new(e, Some(&session))),
    }
}

/// `GET /webhooks/{id}`: one endpoint, its state and its delivery log.
async fn detail_page(
    state: web::Data<AppState>,
    session: MaybeSession,
    id: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let session = session.0.ok_or_else(not_logged_in)?;
    let page_error = |e| PageError::new(e, Some(&session));
    let id = WebhookId::parse(&id).map_err(page_error)?;
    let detail = webhooks::detail(&state.db, &session.user_id, &id)
        .await
        .map_err(page_error)?;
    Ok(html(StatusCode::OK, views::webhook_page(&session, &detail)))
}

/// `POST /webhooks/{id}/{rotate,test,enable,delete}`: the page's buttons.
async fn act_from_form(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    CheckedForm { session, .. }: CheckedForm,
) -> Result<HttpResponse, PageError> {
    let page_error = |e| PageError::new(e, Some(&session));
    let (id, action) = path.into_inner();
    let id = WebhookId::parse(&id).map_err(page_error)?;
    let (db, user, wake) = (&state.db, &session.user_id, &state.webhooks.wake);
    let back = format!("/webhooks/{}", id.as_str());
    match action.as_str() {
        "rotate" => {
            let rotated = webhooks::rotate(db, user, &id).await.map_err(page_error)?;
            let detail = webhooks::detail(db, user, &id).await.map_err(page_error)?;
            Ok(html(
                StatusCode::OK,
                views::secret_page(
                    &session,
                    &detail.webhook,
                    &rotated.secret,
                    Some(rotated.previous_secret_expires_at),
                ),
            ))
        }
        "test" => {
            webhooks::send_test(db, wake, user, &id)
                .await
                .map_err(page_error)?;
            Ok(see_other(&back))
        }
        "enable" => {
            webhooks::enable(db, wake, user, &id)
                .await
                .map_err(page_error)?;
            Ok(see_other(&back))
        }
        "delete" => {
            webhooks::delete(db, user, &id).await.map_err(page_error)?;
            Ok(see_other("/webhooks"))
        }
        _ => Err(page_error(AppError::NotFound)),
    }
}
