//! The `Content-Disposition` header of a download.

use std::fmt::Write as _;

use actix_web::http::header::HeaderValue;
use bytes::BytesMut;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// RFC 8187 `attr-char`: what may stand unencoded in `filename*`.
const ATTR_CHAR_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// [`content_disposition`] as a header value. The usual name (printable ASCII, none of
/// `"`, `\\`, `%`) is written straight into a buffer of its exact size: one allocation.
pub fn content_disposition_value(name: &str) -> HeaderValue {
    const PREFIX: &[u8] = b"attachment; filename=\"";
    let plain = name
        .bytes()
        .all(|b| (b.is_ascii_graphic() || b == b' ') && !matches!(b, b'"' | b'\\' | b'%'));
    let value = if plain {
        let mut out = BytesMut::with_capacity(PREFIX.len() + name.len() + 1);
        out.extend_from_slice(PREFIX);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\"");
        HeaderValue::from_maybe_shared(out.freeze())
    } else {
        HeaderValue::try_from(content_disposition(name))
    };
    // Built of printable ASCII only: always valid.
    value.unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

/// `attachment; filename="<ascii fallback>"; filename*=UTF-8''<percent-encoded>` (RFC 6266
/// section 4.3): old clients get a safe ASCII name, every current browser the real one.
pub fn content_disposition(name: &str) -> String {
    let mut out = String::with_capacity(32 + name.len() * 4);
    out.push_str("attachment; filename=\"");
    for c in name.chars() {
        out.push(match c {
            ' '..='~' if c != '"' && c != '\\' && c != '%' => c,
            _ => '_',
        });
    }
    out.push('"');
    if !name.bytes().all(|b| b.is_ascii_graphic() || b == b' ') || name.contains(['"', '\\', '%']) {
        let _ = write!(
            out,
            "; filename*=UTF-8''{}",
            utf8_percent_encode(name, ATTR_CHAR_ESCAPE)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-allocation value is the same header as the general one, whatever the name.
    #[test]
    fn the_header_value_is_the_disposition() {
        for name in [
            "report.pdf",
            "a b.txt",
            "50%.txt",
            "q\"uote",
            "back\\slash",
            "Résumé.pdf",
            "",
        ] {
            assert_eq!(
                content_disposition_value(name).to_str().unwrap(),
                content_disposition(name),
                "{name}"
            );
        }
    }

    #[test]
    fn disposition_has_an_ascii_fallback_and_the_real_name() {
        assert_eq!(
            content_disposition("report.pdf"),
            "attachment; filename=\"report.pdf\""
        );
        assert_eq!(
            content_disposition("Résumé \"final\".pdf"),
            "attachment; filename=\"R_sum_ _final_.pdf\"; filename*=UTF-8''R%C3%A9sum%C3%A9%20%22final%22.pdf"
        );
        assert_eq!(
            content_disposition("写真.jpg"),
            "attachment; filename=\"__.jpg\"; filename*=UTF-8''%E5%86%99%E7%9C%9F.jpg"
        );
    }
}
