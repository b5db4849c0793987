//! `Authorization: Bearer <token>` (RFC 6750 section 2.1), read the same way by both servers:
//! the download server's `GET /d` and the app's access tokens.

use actix_web::http::header::{AUTHORIZATION, HeaderMap};

/// A `Bearer` header with no token after the scheme (`Bearer`, `Bearer `, `Bearerxyz`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// The token of the request's `Authorization: Bearer …` header, whitespace around it trimmed
/// (the scheme is case-insensitive, RFC 9110 section 11.1). `None` without the header, or
/// with another scheme (`Basic` from a reverse proxy's own login is not ours to judge);
/// `Some(Err(Malformed))` for the `Bearer` scheme with no token after a space.
pub fn token(headers: &HeaderMap) -> Option<Result<&str, Malformed>> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim_start();
    let rest = value
        .get(..6)
        .filter(|scheme| scheme.eq_ignore_ascii_case("bearer"))
        .map(|scheme| &value[scheme.len()..])?;
    let token = rest.trim();
    Some(if token.is_empty() || !rest.starts_with(' ') {
        Err(Malformed)
    } else {
        Ok(token)
    })
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderValue;

    use super::*;

    fn read(value: &[u8]) -> Option<Result<String, Malformed>> {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_bytes(value).unwrap());
        token(&headers).map(|t| t.map(str::to_owned))
    }

    #[test]
    fn the_token_is_what_follows_the_scheme_trimmed() {
        assert_eq!(read(b"Bearer abc"), Some(Ok("abc".into())));
        assert_eq!(read(b"bEaReR  abc "), Some(Ok("abc".into())));
        assert_eq!(read(b"Bearer a b"), Some(Ok("a b".into())));
    }

    #[test]
    fn a_bearer_header_without_a_token_is_malformed() {
        for value in [&b"Bearer"[..], b"Bearer ", b"Bearerabc", b"Bearer\tabc"] {
            assert_eq!(read(value), Some(Err(Malformed)), "{value:?}");
        }
    }

    #[test]
    fn no_header_or_another_scheme_is_none() {
        assert_eq!(token(&HeaderMap::new()), None);
        assert_eq!(read(b"Basic YWxpY2U6eA=="), None);
        assert_eq!(read(b"Bear"), None);
        assert_eq!(read("Bearer é".as_bytes()), None);
    }
}
