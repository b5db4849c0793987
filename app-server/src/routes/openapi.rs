//! `GET /api/openapi.json`: the OpenAPI 3.1 document of the JSON API, derived at compile time
//! from the `#[utoipa::path]` attribute on each handler, so that it lists what the code
//! serves. The integration tests check that every `/api` route registered in `routes/` is in
//! it and drive each documented error code (`tests/tests/api/openapi.rs`).
//!
//! Error responses are all [`ErrorBody`]; the description of each lists, in backticks, the
//! stable codes that status carries on that route.

use actix_web::{HttpResponse, web};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::sessions::COOKIE_NAME;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/openapi.json", web::get().to(document));
}

/// Every error body: `{"error": CODE, "message": TEXT}` (see [`crate::error`]).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    /// Stable, machine-readable: `unauthorized`, `invalid_token`, `insufficient_scope`, …
    error: String,
    /// For people; may change.
    message: String,
}

/// `POST /api/login` body.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct LoginBody {
    username: String,
    password: String,
}

/// Who is logged in, and the CSRF token their state-changing requests must echo in
/// `X-CSRF-Token`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct MeBody {
    username: String,
    csrf_token: String,
}

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A personal access token (`blpat_…`, made on the Access tokens page or \
                         at POST /api/tokens); no CSRF token needed. Each route needs the scope \
                         its description names.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                COOKIE_NAME,
                "The browser session from POST /api/login; state-changing requests also send \
                 X-CSRF-Token.",
            ))),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "burnlink",
        description = "Files behind single-use download links: the app server's JSON API."
    ),
    paths(
        super::session::login,
        super::session::logout,
        super::session::me,
        super::files::list,
        super::files::upload,
        super::files::delete,
        super::files::link,
        super::shares::create,
        super::shares::list,
        super::shares::revoke,
        super::shares::file_downloads,
        super::shares::share_downloads,
        super::downloads::recent,
        super::tokens::create,
        super::tokens::list,
        super::tokens::revoke,
        document,
    ),
    components(schemas(ErrorBody, crate::tokens::Scope)),
    modifiers(&Security),
    security(("bearer" = []), ("session" = []))
)]
pub struct ApiDoc;

/// The document, as served.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "meta",
    responses((status = 200, description = "the OpenAPI 3.1 document")),
    security(())
)]
async fn document() -> HttpResponse {
    HttpResponse::Ok().json(openapi())
}
