//! `GET /api/downloads`: the logged-in user's recent download attempts (see
//! [`crate::downloads`]).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, get, web};
use utoipa_actix_web::service_config::ServiceConfig;

use super::openapi::ReadRefused;
use super::render::json_no_store;
use crate::downloads::{self, RecentDownload};
use crate::error::AppError;
use crate::sessions::Session;
use crate::state::AppState;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(recent_downloads);
}

#[utoipa::path(
    tag = "files",
    responses(
        (status = 200, description = "your recent download attempts", body = Vec<RecentDownload>),
        ReadRefused,
    ),
    security(("bearer" = ["files:read"]), ("session" = []))
)]
#[get("/api/downloads")]
async fn recent_downloads(
    state: web::Data<AppState>,
    session: Session,
) -> Result<HttpResponse, AppError> {
    let recent = downloads::recent(
        &state.db,
        &state.audit_dir,
        &session.user_id,
        state.shares.outcomes_known,
    )
    .await?;
    Ok(json_no_store(StatusCode::OK, &recent))
}
