use actix_web::HttpResponse;

/// Liveness: answers as long as the server accepts requests.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("ok")
}
