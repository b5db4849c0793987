use std::time::Duration;

use actix_web::{HttpResponse, web};

use crate::state::AppState;

/// Liveness: answers as long as the server accepts requests.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("ok")
}

/// Longest wait for the database on a readiness check.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Readiness: the database answers a trivial query in time. A load balancer should stop
/// sending requests to an app server that is not ready: every page needs the database.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let check = sqlx::query("SELECT 1").execute(&state.db);
    let failure = match tokio::time::timeout(READY_TIMEOUT, check).await {
        Ok(Ok(_)) => {
            return HttpResponse::Ok()
                .insert_header(("Cache-Control", "no-store"))
                .json(serde_json::json!({ "status": "ready" }));
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {READY_TIMEOUT:?}"),
    };
    // The cause is for the operator's log, not the response.
    tracing::warn!(error = %failure, "not ready: database");
    HttpResponse::ServiceUnavailable()
        .insert_header(("Cache-Control", "no-store"))
        .json(serde_json::json!({ "status": "unavailable", "error": "unavailable" }))
}
