//! `GET /api/openapi.json`: the OpenAPI 3.1 document of the JSON API, and what else is read
//! from the same declarations.
//!
//! Each API handler is declared once: its actix attribute (`#[get("/api/files")]`) gives the
//! method and path, the `#[utoipa::path]` above it the responses, with the real request and
//! response types, and the `security` it takes, and `routes::configure` registers it through
//! utoipa-actix-web, which adds its operation to the document in the same call. The scope a
//! route needs from a token is its `bearer` requirement there, read back into
//! [`RouteScopes`] at start-up ([`Api::read`]), so the document, the router and the scope
//! check cannot disagree; a route that declares no `security` stops the server from starting.
//! The integration tests check that every `/api` route in `routes/` is in the document and
//! drive each documented error code (`tests/tests/api/openapi.rs`).
//!
//! Error responses are all [`ErrorBody`]; the description of each lists, in backticks, the
//! stable codes that status carries on that route. The refusals every signed-in route shares
//! are [`ReadRefused`] and [`WriteRefused`].

use actix_web::dev::ResourceDef;
use actix_web::http::Method;
use actix_web::http::header::HeaderValue;
use actix_web::{HttpResponse, get, web};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::{IntoResponses, Modify, OpenApi};

use crate::error::{ErrorBody, StartupError};
use crate::sessions::COOKIE_NAME;
use crate::tokens::{RouteScopes, Scope};

/// The document's frame; its paths come from the routes as they are registered.
pub fn frame() -> utoipa::openapi::OpenApi {
    Frame::openapi()
}

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A personal access token (`blpat_…`, made on the Access tokens page or \
                         at POST /api/tokens); no CSRF token needed. An operation that takes \
                         tokens lists the one scope it needs under `bearer`; any other is \
                         refused to every token.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            SESSION,
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                COOKIE_NAME,
                "The browser session from POST /api/login; state-changing requests also send \
                 X-CSRF-Token.",
            ))),
        );
    }
}

const BEARER: &str = "bearer";
const SESSION: &str = "session";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "burnlink",
        description = "Files behind single-use download links: the app server's JSON API."
    ),
    components(schemas(ErrorBody, Scope)),
    modifiers(&Security)
)]
struct Frame;

/// The refusals of a route that only reads, besides its own: no live session or token (401),
/// a token without the route's scope (403).
#[derive(IntoResponses)]
pub enum ReadRefused {
    #[response(status = 401, description = "`unauthorized`, `invalid_token`")]
    Unauthorized(ErrorBody),
    #[response(status = 403, description = "`insufficient_scope`")]
    Forbidden(ErrorBody),
}

/// The refusals of a route that changes something, besides its own: those of [`ReadRefused`],
/// and a session's request without its CSRF token (403 `csrf`).
#[derive(IntoResponses)]
pub enum WriteRefused {
    #[response(status = 401, description = "`unauthorized`, `invalid_token`")]
    Unauthorized(ErrorBody),
    #[response(status = 403, description = "`csrf`, `insufficient_scope`")]
    Forbidden(ErrorBody),
}

/// The API as its routes declare it, read once at start-up.
pub struct Api {
    /// What `Session` checks a token against.
    pub scopes: web::Data<RouteScopes>,
    /// What `/api/openapi.json` serves and a 405 answers.
    pub document: web::Data<Document>,
}

/// The document as served, and the methods each of its paths takes.
pub struct Document {
    json: web::Bytes,
    methods: Vec<(ResourceDef, HeaderValue)>,
}

impl Document {
    /// The document, serialized.
    pub fn json(&self) -> &web::Bytes {
        &self.json
    }

    /// The `Allow` value of the API path `path` matches, if it is one.
    pub fn allow(&self, path: &str) -> Option<&HeaderValue> {
        self.methods
            .iter()
            .find(|(def, _)| def.is_match(path))
            .map(|(_, allow)| allow)
    }
}

impl Api {
    /// Reads the scope table and the allowed methods from `document`. Refuses an operation
    /// that declares no `security` (say `security(())` for a public one,
    /// `security(("session" = []))` for one no token may use), a `bearer` requirement that
    /// does not name exactly one known [`Scope`], and an unknown scheme.
    pub fn read(document: utoipa::openapi::OpenApi) -> Result<Api, StartupError> {
        let mut scopes = RouteScopes::default();
        let mut methods = Vec::new();
        for (path, item) in &document.paths.paths {
            let operations = [
                (Method::GET, &item.get),
                (Method::PUT, &item.put),
                (Method::POST, &item.post),
                (Method::DELETE, &item.delete),
                (Method::OPTIONS, &item.options),
                (Method::HEAD, &item.head),
                (Method::PATCH, &item.patch),
                (Method::TRACE, &item.trace),
            ];
            let mut allow = Vec::new();
            for (method, operation) in operations {
                let Some(operation) = operation else {
                    continue;
                };
                let route = || format!("{method} {path}");
                let wrong = |why: String| StartupError::Route {
                    route: route(),
                    why,
                };
                allow.push(method.to_string());
                if let Some(scope) = token_scope(operation).map_err(wrong)? {
                    scopes.insert(method, path, scope);
                }
            }
            let allow =
                HeaderValue::from_str(&allow.join(", ")).map_err(|e| StartupError::Route {
                    route: path.clone(),
                    why: e.to_string(),
                })?;
            methods.push((ResourceDef::new(path.as_str()), allow));
        }
        let json = serde_json::to_vec(&document).map_err(|e| StartupError::Route {
            route: "GET /api/openapi.json".into(),
            why: e.to_string(),
        })?;
        Ok(Api {
            scopes: web::Data::new(scopes),
            document: web::Data::new(Document {
                json: json.into(),
                methods,
            }),
        })
    }
}

/// The scope `operation` needs from a token; `None`: no token may use it.
fn token_scope(operation: &Operation) -> Result<Option<Scope>, String> {
    let Some(security) = &operation.security else {
        return Err(
            "declares no security: give its #[utoipa::path] `security(...)`: a token \
                    scope with the session (`(\"bearer\" = [\"files:read\"]), (\"session\" = \
                    [])`), the session alone, or `()` for a public route"
                .into(),
        );
    };
    let mut scope = None;
    for requirement in security {
        for (scheme, scopes) in schemes(requirement)? {
            match (scheme.as_str(), scopes.as_slice()) {
                (SESSION, []) => {}
                (BEARER, [one]) => {
                    scope = Some(Scope::parse(one).map_err(|e| e.to_string())?);
                }
                (BEARER, _) => return Err("names no or several token scopes".into()),
                (other, _) => return Err(format!("names an unknown security scheme {other:?}")),
            }
        }
    }
    Ok(scope)
}

/// A requirement's schemes and their scopes (utoipa keeps them private but serializes them).
fn schemes(requirement: &SecurityRequirement) -> Result<Vec<(String, Vec<String>)>, String> {
    let value = serde_json::to_value(requirement).map_err(|e| e.to_string())?;
    let map: std::collections::BTreeMap<String, Vec<String>> =
        serde_json::from_value(value).map_err(|e| e.to_string())?;
    Ok(map.into_iter().collect())
}

/// This document.
#[utoipa::path(tag = "meta",
    responses((status = 200, description = "the OpenAPI 3.1 document")),
    security(())
)]
#[get("/api/openapi.json")]
pub async fn openapi_json(document: web::Data<Document>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document.json().clone())
}
