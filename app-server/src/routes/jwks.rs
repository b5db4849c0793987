use actix_web::{HttpResponse, web};

use crate::state::AppState;

/// The public keys download servers verify tokens with (RFC 7517 section 5). Cached for five
/// minutes: a rotated key is published before it signs anything.
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(("Cache-Control", "public, max-age=300"))
        .body(state.jwks_json.clone())
}
