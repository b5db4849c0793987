//! The security headers of every response of both servers, in one table: files, JSON errors,
//! HTML pages, health checks and metrics alike. Added by `DefaultHeaders`, which leaves a
//! header a handler set alone (a page with a style of its own sets its own CSP; static assets
//! their own caching).

use actix_web::middleware::DefaultHeaders;

/// `Cache-Control: no-store`: nothing either server answers, errors and health checks
/// included, belongs in a shared cache (RFC 9111 section 5.2.2.5).
pub const NO_STORE: (&str, &str) = ("Cache-Control", "no-store");

/// `Strict-Transport-Security` of every response served over TLS: browsers keep to https for
/// a year (RFC 6797 section 6.1).
pub const HSTS: (&str, &str) = ("Strict-Transport-Security", "max-age=31536000");

/// The headers every response carries whatever it is, beside its Content-Security-Policy:
/// no shared caching ([`NO_STORE`]); no content sniffing, so a file is never run as the type
/// a browser guesses; no `Referer` carrying a link's token to another site; never framed.
pub const ALWAYS: [(&str, &str); 4] = [
    NO_STORE,
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
];

/// The defaults of one server: [`ALWAYS`], its `Content-Security-Policy` (the app's names its
/// identity provider when it has one, so it is made at start), and [`HSTS`] when served over
/// TLS.
pub fn defaults(tls: bool, content_security_policy: &str) -> DefaultHeaders {
    let headers = ALWAYS
        .into_iter()
        .fold(DefaultHeaders::new(), DefaultHeaders::add)
        .add(("Content-Security-Policy", content_security_policy));
    if tls { headers.add(HSTS) } else { headers }
}

#[cfg(test)]
mod tests {
    use actix_web::{App, HttpResponse, test, web};

    use super::*;

    /// Every header of the table reaches a response that set none, and a handler's own
    /// header is kept.
    #[actix_web::test]
    async fn every_response_gets_the_table_and_keeps_its_own() {
        let app = test::init_service(
            App::new()
                .wrap(defaults(true, "default-src 'none'"))
                .route("/plain", web::get().to(HttpResponse::Ok))
                .route(
                    "/own",
                    web::get().to(|| async {
                        HttpResponse::Ok()
                            .insert_header(("Content-Security-Policy", "style-src 'self'"))
                            .finish()
                    }),
                ),
        )
        .await;
        let header = |res: &actix_web::dev::ServiceResponse, name: &str| {
            let value = res.headers().get(name).map(|v| v.to_str().unwrap());
            value.unwrap_or_default().to_owned()
        };
        let res =
            test::call_service(&app, test::TestRequest::get().uri("/plain").to_request()).await;
        for (name, value) in ALWAYS.into_iter().chain([HSTS]) {
            assert_eq!(header(&res, name), value, "{name}");
        }
        assert_eq!(
            header(&res, "content-security-policy"),
            "default-src 'none'"
        );
        let res = test::call_service(&app, test::TestRequest::get().uri("/own").to_request()).await;
        assert_eq!(header(&res, "content-security-policy"), "style-src 'self'");
        assert_eq!(header(&res, "x-content-type-options"), "nosniff");
    }
}
