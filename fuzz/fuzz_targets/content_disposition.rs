//! Any name: the `Content-Disposition` value is ASCII, a valid header value, and its
//! `filename*` percent-decodes back to the name.
#![no_main]

use actix_web::http::header::HeaderValue;
use download_server::file::content_disposition;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|name: &str| {
    let header = content_disposition(name);
    assert!(header.is_ascii());
    assert!(HeaderValue::from_str(&header).is_ok(), "{header}");
    if let Some((_, encoded)) = header.split_once("; filename*=UTF-8''") {
        let decoded: Vec<u8> = percent_decode(encoded.as_bytes());
        assert_eq!(decoded, name.as_bytes());
    }
});

fn percent_decode(s: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match (s[i], s.get(i + 1).copied().and_then(hex), s.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push(h << 4 | l);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}
