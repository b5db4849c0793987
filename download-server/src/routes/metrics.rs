use actix_web::{HttpResponse, web};

use crate::metrics::CONTENT_TYPE;
use crate::state::AppState;

/// `GET /metrics`: this server's series in the Prometheus text format 0.0.4. Counts only, no
/// token, user or file; still, expose it to the scraper, not the Internet (docs/OPERATIONS.md).
pub async fn metrics<S>(state: web::Data<AppState<S>>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .insert_header(("Cache-Control", "no-store"))
        .body(state.metrics.render())
}
