use actix_web::{HttpResponse, web};

use crate::state::AppState;

/// The public keys download servers verify tokens with (RFC 7517 section 5): the active key
/// and keys retired less than `--retired-key-publish-secs` ago. Cached for five minutes;
/// download servers fetching it directly (`--jwks-url`) refetch on an unknown `kid`.
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(("Cache-Control", "public, max-age=300"))
        .body(state.links.keys.jwks_json().as_str().to_owned())
}
