use actix_web::{HttpResponse, web};

use crate::state::AppState;

/// `GET /metrics`: the app server's series in the Prometheus text format 0.0.4. Counts only;
/// still, expose it to the scraper, not the Internet (docs/OPERATIONS.md).
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(download_server::metrics::CONTENT_TYPE)
        .insert_header(("Cache-Control", "no-store"))
        .body(state.metrics.render())
}
