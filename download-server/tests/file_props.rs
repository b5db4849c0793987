//! Property tests of the pure header code of `file.rs`, run by `cargo test` as the CI fuzzing
//! (the libFuzzer targets in `fuzz/` need nightly). `PROPTEST_CASES` cases per property
//! (default [`DEFAULT_CASES`]).

use actix_web::http::header::HeaderValue;
use download_server::file::{ByteRange, RangeRequest, content_disposition, parse_range};
use percent_encoding::percent_decode_str;
use proptest::prelude::*;
use proptest::test_runner::Config;

const DEFAULT_CASES: u32 = 5000;

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// File sizes with the edges over-represented.
fn size() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        0u64..2048,
        any::<u64>(),
        Just(u64::MAX),
    ]
}

/// A number as a client might write it: small, huge, beyond u64, or with junk around it.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0u64..4096).prop_map(|n| n.to_string()),
        2 => any::<u64>().prop_map(|n| n.to_string()),
        1 => Just("18446744073709551616".to_owned()),
        1 => Just(String::new()),
        1 => "[ 0-9+-]{0,6}",
        1 => "\\PC{0,4}",
    ]
}

/// `Range` values: mostly `bytes=<a>-<b>` shapes, some free text.
fn range_header() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (
            prop::sample::select(vec!["bytes=", "bytes= ", "BYTES=", "items=", " bytes="]),
            number(),
            prop::sample::select(vec!["-", " - ", "--", ""]),
            number(),
            prop::sample::select(vec!["", ",0-1", ", 5-", " "]),
        )
            .prop_map(|(unit, a, dash, b, tail)| format!("{unit}{a}{dash}{b}{tail}")),
        1 => any::<String>(),
    ]
}

fn check_range(header: Option<&str>, size: u64) -> Result<(), TestCaseError> {
    match parse_range(header, size) {
        RangeRequest::Partial(ByteRange { start, end }) => {
            prop_assert!(start < end, "empty range {start}..{end} for {header:?}");
            prop_assert!(end <= size, "{start}..{end} beyond {size} for {header:?}");
            let r = ByteRange { start, end };
            prop_assert_eq!(r.len(), end - start);
            let shown = r.content_range(size);
            prop_assert!(HeaderValue::from_str(&shown).is_ok(), "{}", shown);
        }
        RangeRequest::Unsatisfiable => {
            // Only ever for a single well-formed `bytes=` range.
            let spec = header.map(str::trim).unwrap_or_default();
            prop_assert!(spec.starts_with("bytes="), "416 for {header:?}");
        }
        RangeRequest::Full => {}
    }
    Ok(())
}

/// The `filename*` value, percent-decoded, if the header has one.
fn extended_name(disposition: &str) -> Option<String> {
    let (_, encoded) = disposition.split_once("; filename*=UTF-8''")?;
    Some(
        percent_decode_str(encoded)
            .decode_utf8()
            .expect("filename* decodes to UTF-8")
            .into_owned(),
    )
}

/// The quoted `filename` fallback.
fn fallback_name(disposition: &str) -> &str {
    let rest = disposition
        .strip_prefix("attachment; filename=\"")
        .expect("starts with the fallback");
    &rest[..rest.find('"').expect("closing quote")]
}

fn check_disposition(name: &str) -> Result<(), TestCaseError> {
    let header = content_disposition(name);
    prop_assert!(header.is_ascii(), "{}", header);
    prop_assert!(
        HeaderValue::from_str(&header).is_ok(),
        "not a header value: {}",
        header
    );
    // Nothing a header parser could split on or end early at.
    prop_assert!(!header.contains(['\r', '\n', '\0']), "{}", header);
    let fallback = fallback_name(&header);
    prop_assert_eq!(fallback.chars().count(), name.chars().count());
    prop_assert!(!fallback.contains(['"', '\\', '%']), "{}", fallback);
    match extended_name(&header) {
        Some(decoded) => prop_assert_eq!(decoded, name),
        None => prop_assert_eq!(fallback, name),
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn ranges_lie_within_the_file(header in range_header(), size in size()) {
        check_range(Some(&header), size)?;
    }

    #[test]
    fn any_text_as_a_range_is_harmless(header in any::<String>(), size in size()) {
        check_range(Some(&header), size)?;
        check_range(None, size)?;
    }

    #[test]
    fn well_formed_ranges_mean_what_they_say(a in 0u64..3000, b in 0u64..3000, size in 0u64..2000) {
        let got = parse_range(Some(&format!("bytes={a}-{b}")), size);
        let want = if b < a {
            RangeRequest::Full
        } else if a >= size {
            RangeRequest::Unsatisfiable
        } else {
            RangeRequest::Partial(ByteRange { start: a, end: (b + 1).min(size) })
        };
        prop_assert_eq!(got, want);
        let suffix = parse_range(Some(&format!("bytes=-{b}")), size);
        let want = if b == 0 || size == 0 {
            RangeRequest::Unsatisfiable
        } else {
            RangeRequest::Partial(ByteRange { start: size.saturating_sub(b), end: size })
        };
        prop_assert_eq!(suffix, want);
    }

    #[test]
    fn content_disposition_is_a_safe_ascii_header(name in any::<String>()) {
        check_disposition(&name)?;
    }

    #[test]
    fn content_disposition_round_trips_download_names(
        name in prop_oneof![
            "[a-zA-Z0-9 ._()-]{1,40}",
            "[\"%\\\\;=' a-z]{1,20}",
            "\\PC{1,80}",
        ],
    ) {
        prop_assume!(shared::DownloadName::parse(&name).is_ok());
        check_disposition(&name)?;
    }
}
