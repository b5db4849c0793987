//! `GET /api/downloads`: the logged-in user's recent download attempts (see
//! [`crate::downloads`]).

use actix_web::{HttpResponse, web};

use crate::downloads;
use crate::error::AppError;
use crate::sessions::Session;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/downloads", web::get().to(recent));
}

#[utoipa::path(
    get, path = "/api/downloads", tag = "files",
    responses(
        (status = 200, description = "your recent download attempts", body = Vec<Object>),
        (status = 401, description = "`unauthorized`, `invalid_token`", body = super::openapi::ErrorBody),
        (status = 403, description = "`insufficient_scope`", body = super::openapi::ErrorBody),
    )
)]
async fn recent(state: web::Data<AppState>, session: Session) -> Result<HttpResponse, AppError> {
    let recent = downloads::recent(
        &state.db,
        &state.audit_dir,
        &session.user_id,
        state.shares.outcomes_known,
    )
    .await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(recent))
}
