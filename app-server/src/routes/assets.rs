//! `/static/app.js` and `/static/app.css`: the pages' script and style, compiled into the
//! binary (no front-end build step, nothing fetched from elsewhere: the CSP allows `'self'`
//! only); and `/static/tus.min.js`, tus-js-client as its npm package publishes it (pinned and
//! licensed in `static/vendor/`), which the upload form uses for large files.
//!
//! Pages link them as `/static/app.js?v=<content hash>`. A request carrying the current hash
//! may be cached for a year (`immutable`): a new build changes the hash, hence the URL. Any
//! other request (no or an old `v`) gets the current file with `no-cache`, so nothing stale
//! sticks.

use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::{HttpRequest, HttpResponse, web};
use shared::fnv1a;
use utoipa_actix_web::service_config::ServiceConfig;

const JS: &str = include_str!("../../static/app.js");
const CSS: &str = include_str!("../../static/app.css");
const TUS: &str = include_str!("../../static/vendor/tus-js-client.min.js");
// FNV-1a at compile time: a cache key, not a security measure.
const JS_HASH: u64 = fnv1a(JS.as_bytes());
const CSS_HASH: u64 = fnv1a(CSS.as_bytes());
const TUS_HASH: u64 = fnv1a(TUS.as_bytes());

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.route("/static/app.js", web::get().to(js))
        .route("/static/app.css", web::get().to(css))
        .route("/static/tus.min.js", web::get().to(tus));
}

/// The script's URL, versioned by its content.
pub fn js_url() -> String {
    format!("/static/app.js?v={JS_HASH:016x}")
}

/// tus-js-client's URL, versioned by its content.
pub fn tus_url() -> String {
    format!("/static/tus.min.js?v={TUS_HASH:016x}")
}

/// The stylesheet's URL, versioned by its content.
pub fn css_url() -> String {
    format!("/static/app.css?v={CSS_HASH:016x}")
}

async fn js(req: HttpRequest) -> HttpResponse {
    asset(&req, JS, JS_HASH, "text/javascript; charset=utf-8")
}

async fn tus(req: HttpRequest) -> HttpResponse {
    asset(&req, TUS, TUS_HASH, "text/javascript; charset=utf-8")
}

async fn css(req: HttpRequest) -> HttpResponse {
    asset(&req, CSS, CSS_HASH, "text/css; charset=utf-8")
}

fn asset(req: &HttpRequest, body: &'static str, hash: u64, content_type: &str) -> HttpResponse {
    let current = format!("v={hash:016x}");
    let cache = if req.query_string() == current {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, content_type))
        .insert_header((CACHE_CONTROL, cache))
        .body(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_carry_the_content_hash() {
        assert!(js_url().starts_with("/static/app.js?v="));
        assert_eq!(js_url().len(), "/static/app.js?v=".len() + 16);
        assert_ne!(js_url(), css_url());
    }
}
