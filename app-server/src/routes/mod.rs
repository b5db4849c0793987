//! The HTTP surface, wired in one place so the binary and the tests serve the same app.
//!
//! One file per resource; each declares its routes beside their handlers and registers them in
//! its `configure`. An API route is an actix route attribute under a `#[utoipa::path]` (see
//! [`openapi`]): registering it also adds it to the OpenAPI document, and its scope is read
//! from there. `render` and `extract` are not routes: they import none.

use actix_web::error::{JsonPayloadError, PayloadError, UrlencodedError};
use actix_web::{App, HttpRequest, HttpResponse, web};
use server_kit::body_timeout::is_timeout;
use utoipa_actix_web::AppExt;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::error::{AppError, StartupError};

pub mod accounts;
pub mod assets;
pub mod downloads;
mod extract;
pub mod files;
pub mod health;
pub mod jwks;
pub mod oidc;
pub mod openapi;
pub mod pages;
pub mod render;
pub mod session;
pub mod shares;
pub mod tokens;
pub mod upload_links;
pub mod uploads;
pub mod webhooks;

/// Largest JSON body (a login is a few hundred bytes).
const MAX_JSON_BYTES: usize = 16 * 1024;
/// Largest urlencoded form body.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// The API as the routes declare it: registers them once, off any server, and reads the
/// document and the scope table from what was registered. Fails on a route whose declaration
/// cannot be served (see [`openapi::Api::read`]).
pub fn api() -> Result<openapi::Api, StartupError> {
    declared(configure)
}

/// [`api`] of the routes `register` registers.
fn declared(register: impl FnOnce(&mut ServiceConfig)) -> Result<openapi::Api, StartupError> {
    let (_, document) = App::new()
        .into_utoipa_app()
        .openapi(openapi::frame())
        .configure(register)
        .split_for_parts();
    openapi::Api::read(document)
}

/// Registers every route and makes extractor failures answer in the app's own error format.
/// Serving needs [`api`]'s two pieces registered beside it (`startup::serve`).
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(MAX_JSON_BYTES)
            .error_handler(|err, _req| json_error(err).into()),
    )
    .app_data(
        web::FormConfig::default()
            .limit(MAX_FORM_BYTES)
            .error_handler(|err, _req| form_error(err).into()),
    )
    .app_data(
        web::QueryConfig::default()
            .error_handler(|err, _req| AppError::BadRequest(err.to_string()).into()),
    )
    .app_data(web::PathConfig::default().error_handler(|_err, _req| AppError::NotFound.into()))
    .app_data(web::PayloadConfig::new(MAX_FORM_BYTES))
    .route("/healthz", web::get().to(health::healthz))
    .route("/readyz", web::get().to(health::readyz))
    .route("/.well-known/jwks.json", web::get().to(jwks::jwks))
    .service(openapi::openapi_json)
    .configure(session::configure)
    .configure(files::configure)
    .configure(uploads::configure)
    .configure(downloads::configure)
    .configure(shares::configure)
    .configure(tokens::configure)
    .configure(webhooks::configure)
    .configure(upload_links::configure)
    .configure(pages::configure)
    .configure(oidc::configure)
    .configure(accounts::configure)
    .configure(assets::configure)
    .default_service(web::to(not_found));
}

fn json_error(err: JsonPayloadError) -> AppError {
    match err {
        JsonPayloadError::OverflowKnownLength { limit, .. }
        | JsonPayloadError::Overflow { limit } => AppError::TooLarge(limit as u64),
        JsonPayloadError::Payload(PayloadError::Overflow) => {
            AppError::TooLarge(MAX_JSON_BYTES as u64)
        }
        JsonPayloadError::Payload(e) if is_timeout(&e) => AppError::BodyTimeout,
        other => AppError::BadRequest(other.to_string()),
    }
}

fn form_error(err: UrlencodedError) -> AppError {
    match err {
        UrlencodedError::Payload(e) if is_timeout(&e) => AppError::BodyTimeout,
        other => AppError::BadRequest(other.to_string()),
    }
}

/// Nothing here: 405 with `Allow` for an API path asked with a method it does not take
/// (each API route is its own resource, so actix cannot tell), else 404.
async fn not_found(req: HttpRequest) -> Result<HttpResponse, AppError> {
    let allow = req
        .app_data::<web::Data<openapi::Document>>()
        .and_then(|document| document.allow(req.path()));
    Err(match allow {
        Some(allow) => AppError::MethodNotAllowed(allow.clone()),
        None => AppError::NotFound,
    })
}

#[cfg(test)]
mod tests {
    use actix_web::http::{Method, StatusCode, header};
    use actix_web::test::{TestRequest, call_service, init_service, read_body_json};
    use actix_web::{HttpResponse, get};
    use serde_json::Value;

    use super::*;
    use crate::tokens::{Scope, TokenGrant};

    #[utoipa::path(responses((status = 204, description = "nothing")))]
    #[get("/api/undeclared")]
    async fn undeclared() -> HttpResponse {
        HttpResponse::NoContent().finish()
    }

    #[utoipa::path(
        responses((status = 204, description = "nothing")),
        security(("bearer" = ["files:raed"]), ("session" = []))
    )]
    #[get("/api/misspelt")]
    async fn misspelt() -> HttpResponse {
        HttpResponse::NoContent().finish()
    }

    #[utoipa::path(
        responses((status = 204, description = "nothing")),
        security(("bearer" = []), ("session" = []))
    )]
    #[get("/api/any-token")]
    async fn any_token() -> HttpResponse {
        HttpResponse::NoContent().finish()
    }

    #[test]
    fn a_route_that_forgets_its_security_stops_the_start() {
        type Register = fn(&mut ServiceConfig);
        let routes: [(&str, Register); 3] = [
            ("GET /api/undeclared", |cfg| {
                cfg.service(undeclared);
            }),
            ("GET /api/misspelt", |cfg| {
                cfg.service(misspelt);
            }),
            ("GET /api/any-token", |cfg| {
                cfg.service(any_token);
            }),
        ];
        for (route, register) in routes {
            match declared(register) {
                Err(StartupError::Route { route: refused, .. }) => assert_eq!(refused, route),
                Err(other) => panic!("{route}: {other}"),
                Ok(_) => panic!("{route} was accepted"),
            }
        }
    }

    /// Every `/api` operation the app registers says who may call it: anyone (those listed
    /// here, among them the tus routes under an upload link, whose link is the permission), a
    /// browser session only, or a token with the one scope the scope check then asks for.
    #[test]
    fn every_api_route_has_a_scope_or_is_session_only() {
        let api = api().expect("the routes' declarations");
        let document: Value = serde_json::from_slice(api.document.json()).expect("JSON");
        let (mut public, mut session_only, mut scoped) = (Vec::new(), Vec::new(), Vec::new());
        for (path, item) in document["paths"].as_object().expect("paths") {
            assert!(
                path.starts_with("/api/") || path.starts_with("/u/{secret}/uploads"),
                "{path}"
            );
            for (method, operation) in item.as_object().expect("path item") {
                let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                let route = format!("{method} {path}");
                let security = operation["security"].as_array().expect(&route).clone();
                let required = api.scopes.required(&method, path);
                match (security.as_slice(), required) {
                    ([only], None) if only == &serde_json::json!({}) => public.push(route),
                    ([only], None) if only == &serde_json::json!({"session": []}) => {
                        session_only.push(route)
                    }
                    ([bearer, session], Some(scope)) => {
                        assert_eq!(bearer, &serde_json::json!({"bearer": [scope.as_str()]}));
                        assert_eq!(session, &serde_json::json!({"session": []}), "{route}");
                        scoped.push(route);
                    }
                    other => panic!("{route}: {other:?}"),
                }
            }
        }
        public.sort();
        assert_eq!(
            public,
            [
                "DELETE /u/{secret}/uploads/{id}",
                "GET /api/openapi.json",
                "HEAD /u/{secret}/uploads/{id}",
                "OPTIONS /api/uploads",
                "PATCH /u/{secret}/uploads/{id}",
                "POST /api/login",
                "POST /u/{secret}/uploads"
            ]
        );
        assert!(session_only.contains(&"POST /api/tokens".to_owned()));
        assert!(scoped.len() >= 10, "{scoped:?}");
    }

    /// Every `$ref` in the document names a schema the document holds: a type used in a
    /// declaration but never registered would leave a client's generator a hole.
    #[test]
    fn every_schema_reference_resolves() {
        fn refs(value: &Value, out: &mut Vec<String>) {
            match value {
                Value::Object(map) => {
                    for (key, item) in map {
                        match (key.as_str(), item) {
                            ("$ref", Value::String(target)) => out.push(target.clone()),
                            _ => refs(item, out),
                        }
                    }
                }
                Value::Array(items) => items.iter().for_each(|item| refs(item, out)),
                _ => {}
            }
        }
        let api = api().expect("the routes' declarations");
        let document: Value = serde_json::from_slice(api.document.json()).expect("JSON");
        let mut found = Vec::new();
        refs(&document, &mut found);
        assert!(
            found.iter().any(|r| r.ends_with("/UploadLinkInfo")),
            "{found:?}"
        );
        for target in found {
            let name = target
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("{target}"));
            assert!(
                document["components"]["schemas"][name].is_object(),
                "{target} is not in the document"
            );
        }
    }

    #[test]
    fn token_routes_are_refused_to_every_token() {
        let api = api().expect("the routes' declarations");
        let grant = TokenGrant {
            token_id: "t".into(),
            user_id: "u".into(),
            username: "alice".into(),
            scopes: Scope::ALL.to_vec(),
        };
        for (method, path) in [
            (Method::POST, "/api/tokens"),
            (Method::GET, "/api/tokens"),
            (Method::DELETE, "/api/tokens/{id}"),
            (Method::POST, "/api/logout"),
            (Method::GET, "/api/me"),
        ] {
            assert!(matches!(
                grant.allow(api.scopes.required(&method, path)),
                Err(AppError::InsufficientScope(_))
            ));
        }
        assert!(
            grant
                .allow(api.scopes.required(&Method::GET, "/api/files"))
                .is_ok()
        );
    }

    #[actix_web::test]
    async fn an_api_path_asked_with_another_method_is_405_with_allow() {
        let api = api().expect("the routes' declarations");
        let app = init_service(
            App::new()
                .app_data(api.document.clone())
                .into_utoipa_app()
                .configure(configure)
                .into_app(),
        )
        .await;
        let req = TestRequest::put().uri("/api/files/abc").to_request();
        let res = call_service(&app, req).await;
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(res.headers().get(header::ALLOW).unwrap(), "DELETE");
        let body: Value = read_body_json(res).await;
        assert_eq!(body["error"], "method_not_allowed");

        let req = TestRequest::put().uri("/api/nothing").to_request();
        let res = call_service(&app, req).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        assert!(res.headers().get(header::ALLOW).is_none());
    }
}
