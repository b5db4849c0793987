//! The `Content-Disposition` header of a download.

use std::fmt::Write as _;

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
