use actix_web::{HttpResponse, web};

use crate::state::AppState;
use crate::store::BurnStore;

/// Liveness: the process answers.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// Readiness: the burn store answers too. A load balancer should stop sending downloads to a
/// server that is not ready, since it would refuse them all (fail closed).
pub async fn readyz<S: BurnStore>(state: web::Data<AppState<S>>) -> HttpResponse {
    match state.gate.store.ready().await {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({ "status": "ready" })),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            HttpResponse::ServiceUnavailable()
                .json(serde_json::json!({ "status": "unavailable", "error": "unavailable" }))
        }
    }
}
