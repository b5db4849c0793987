//! Headers every response of both servers carries unless a handler set its own.

use actix_web::middleware::DefaultHeaders;

/// `Cache-Control: no-store` for every response that sets no caching of its own (added by
/// `DefaultHeaders`, which leaves a handler's header alone): nothing either server answers,
/// errors and health checks included, belongs in a shared cache (RFC 9111 section 5.2.2.5).
pub const NO_STORE: (&str, &str) = ("Cache-Control", "no-store");

/// `Strict-Transport-Security` of every response served over TLS: browsers keep to https for
/// a year (RFC 6797 section 6.1).
pub const HSTS: (&str, &str) = ("Strict-Transport-Security", "max-age=31536000");

/// The defaults both servers start from: [`NO_STORE`], and [`HSTS`] when served over TLS.
pub fn defaults(tls: bool) -> DefaultHeaders {
    let headers = DefaultHeaders::new().add(NO_STORE);
    if tls { headers.add(HSTS) } else { headers }
}
