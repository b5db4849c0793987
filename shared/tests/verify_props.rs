//! Property tests of the one validation function, run by `cargo test` as the CI fuzzing (the
//! libFuzzer targets in `fuzz/` need nightly). Each property runs `PROPTEST_CASES` cases
//! (default [`DEFAULT_CASES`]).
//!
//! - Any string: `verify` never panics.
//! - A valid token with random damage: never panics, and accepted only if unchanged.
//! - Arbitrary header and payload shapes, really signed: accepted exactly when an independent
//!   reading of docs/TOKEN.md (the oracle below) says the token is valid, and then the grant
//!   is what the claims say.

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ed25519_dalek::Signer;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::Value;
use shared::{Policy, SigningKey, Verifier};

const ISS: &str = "burnlink-app";
const AUD: &str = "burnlink-download";
const LEEWAY: i64 = 5;
const MAX_LIFETIME: i64 = 300;
const DEFAULT_CASES: u32 = 3000;

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

struct Keys {
    ours: ed25519_dalek::SigningKey,
    kid: String,
    verifier: Verifier,
}

fn keys() -> &'static Keys {
    static KEYS: std::sync::OnceLock<Keys> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let ours = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let pem = ours
            .to_pkcs8_pem(Default::default())
            .expect("encodes")
            .to_string();
        let signing = SigningKey::ed25519_from_pem(&pem).expect("our key");
        let kid = signing.kid().to_owned();
        let verifier = Verifier::new([signing.verifying_key().clone()], Policy::new(ISS, AUD));
        Keys {
            ours,
            kid,
            verifier,
        }
    })
}

/// One member's value: JSON text as sent (so `1e30`, `18446744073709551616` or `1.0` reach
/// the parser verbatim), or a time relative to the moment of the check.
#[derive(Debug, Clone)]
enum Gen {
    Raw(String),
    Ours,
    Time(i64),
}

fn raw(json: &str) -> Gen {
    Gen::Raw(json.to_owned())
}

fn text(s: &str) -> Gen {
    Gen::Raw(serde_json::to_string(s).expect("a string serializes"))
}

/// A member: its name as JSON text (possibly escaped) and its value. `None`: left out.
type Member = (String, Gen);

fn name(n: &str) -> String {
    format!("\"{n}\"")
}

fn member(n: &'static str, values: BoxedStrategy<Gen>) -> BoxedStrategy<Option<Member>> {
    prop_oneof![
        30 => values.prop_map(move |v| Some((name(n), v))),
        1 => Just(None),
    ]
    .boxed()
}

fn time_member(n: &'static str, offsets: &'static [i64]) -> BoxedStrategy<Option<Member>> {
    let values = prop_oneof![
        20 => prop::sample::select(offsets).prop_map(Gen::Time),
        1 => prop::sample::select(vec![
            raw("\"1700000000\""),
            raw("1.5"),
            raw("1e30"),
            raw("18446744073709551616"),
            raw("-1"),
            raw("null"),
            raw("[1]"),
            raw("18446744073709551615"),
            raw("0"),
        ]),
    ]
    .boxed();
    member(n, values)
}

fn string_member(
    n: &'static str,
    valid: BoxedStrategy<String>,
    extra: Vec<Gen>,
) -> BoxedStrategy<Option<Member>> {
    let values = prop_oneof![
        30 => valid.prop_map(|s| text(&s)),
        1 => any::<String>().prop_map(|s| text(&s)),
        1 => prop::sample::select(extra),
    ]
    .boxed();
    member(n, values)
}

fn header() -> impl Strategy<Value = Vec<Member>> {
    let alg = member(
        "alg",
        prop_oneof![
            30 => Just(text("EdDSA")),
            1 => prop::sample::select(vec![text("HS256"), text("none"), text("eddsa"), raw("1")]),
        ]
        .boxed(),
    );
    let typ = member(
        "typ",
        prop::sample::select(vec![
            text("dl+jwt"),
            text("dl+jwt"),
            text("dl+jwt"),
            text("dl+jwt"),
            text("dl+jwt"),
            text("dl+jwt"),
            text("dl+jwt"),
            text("application/dl+jwt"),
            text("Application/DL+JWT"),
            text("JWT"),
            text("dl+jwt "),
            raw("null"),
            raw("5"),
        ])
        .boxed(),
    );
    let kid = member(
        "kid",
        prop_oneof![
            30 => Just(Gen::Ours),
            1 => prop::sample::select(vec![
                text("../../keys/ed25519.pem"),
                text("https://evil.example/key"),
                text("' OR '1'='1"),
                raw("null"),
            ]),
        ]
        .boxed(),
    );
    let crit = prop_oneof![
        30 => Just(None),
        1 => prop::sample::select(vec![raw("[\"exp\"]"), raw("[]"), raw("null")])
            .prop_map(|v| Some((name("crit"), v))),
    ];
    // Members the verifier must ignore, all well-formed.
    let extras = prop::sample::subsequence(
        vec![
            (name("jku"), text("https://evil.example/jwks.json")),
            (name("x5u"), text("https://evil.example/cert.pem")),
            (
                name("jwk"),
                raw(
                    r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#,
                ),
            ),
            (name("cty"), text("JWT")),
            (name("b64"), raw("false")),
            (name("x-custom"), raw("{\"nested\":[1,2,{\"a\":null}]}")),
        ],
        0..=3,
    );
    (alg, typ, kid, crit, extras, duplicate())
        .prop_map(|(alg, typ, kid, crit, extras, dup)| {
            let mut members: Vec<Member> = [alg, typ, kid, crit].into_iter().flatten().collect();
            members.extend(extras);
            add_duplicate(&mut members, dup);
            members
        })
        .prop_shuffle()
}

/// Which member to repeat, if any, and how: verbatim, with another value, or under an escaped
/// spelling of its name.
fn duplicate() -> impl Strategy<Value = Option<(usize, u8)>> {
    prop_oneof![30 => Just(None), 1 => (any::<usize>(), 0u8..3).prop_map(Some)]
}

fn add_duplicate(members: &mut Vec<Member>, dup: Option<(usize, u8)>) {
    let Some((index, how)) = dup else { return };
    if members.is_empty() {
        return;
    }
    let (n, v) = members[index % members.len()].clone();
    let copy = match how {
        0 => (n, v),
        1 => (n, text("other")),
        // `"kid"` becomes `"\u006bid"`: the same name once unescaped.
        _ => (format!("\"\\u{:04x}{}", n.as_bytes()[1], &n[2..]), v),
    };
    members.push(copy);
}

fn payload() -> impl Strategy<Value = Vec<Member>> {
    let url_safe = |min: usize, max: usize| {
        proptest::string::string_regex(&format!("[A-Za-z0-9_-]{{{min},{max}}}"))
            .expect("regex")
            .boxed()
    };
    let iss = string_member(
        "iss",
        Just(ISS.to_owned()).boxed(),
        vec![raw("[\"burnlink-app\"]")],
    );
    let aud = string_member(
        "aud",
        Just(AUD.to_owned()).boxed(),
        vec![
            raw("[\"burnlink-download\"]"),
            raw("[\"burnlink-download\",\"other\"]"),
            raw("null"),
        ],
    );
    let sub = string_member(
        "sub",
        prop::sample::select(vec![
            "u1".to_owned(),
            "\u{202E}lla".to_owned(),
            String::new(),
        ])
        .boxed(),
        vec![raw("1")],
    );
    let jti = string_member(
        "jti",
        url_safe(14, 130),
        vec![raw("12345678901234567890"), raw("null")],
    );
    let file = string_member(
        "file",
        prop_oneof![
            20 => url_safe(0, 130),
            1 => proptest::string::string_regex("[A-Za-z0-9_./\\\\-]{1,12}").expect("regex"),
        ]
        .boxed(),
        vec![raw("[\"a\"]")],
    );
    let name = string_member(
        "name",
        prop_oneof![
            20 => proptest::string::string_regex("[^\\p{Cc}]{1,40}").expect("regex"),
            1 => Just("📷 Été.jpg".to_owned()),
            1 => (250usize..260).prop_map(|n| "é".repeat(n)),
            1 => Just("a\u{202E}b".to_owned()),
        ]
        .boxed(),
        vec![raw("7")],
    );
    // Mostly the valid neighbourhood, with every boundary (±leeway, max lifetime) in reach.
    let starts = &[-400, -100, -10, -3, -3, 0, 0, 0, 0, 0, 0, 0, 0, 3, 10, 100];
    let iat = time_member("iat", starts);
    let nbf = time_member("nbf", starts);
    let exp = time_member(
        "exp",
        &[
            -400, -100, -10, -3, 0, 3, 10, 60, 60, 60, 60, 60, 60, 60, 100, 290, 300, 310, 400,
        ],
    );
    let extras = prop::sample::subsequence(
        vec![
            (name_of("scope"), text("admin")),
            (name_of("x"), raw("{\"y\":[1,\"2\"]}")),
        ],
        0..=2,
    );
    (
        (iss, aud, sub, jti, file, name),
        (iat, nbf, exp),
        extras,
        duplicate(),
    )
        .prop_map(|((a, b, c, d, e, f), (g, h, i), extras, dup)| {
            let mut members: Vec<Member> =
                [a, b, c, d, e, f, g, h, i].into_iter().flatten().collect();
            members.extend(extras);
            add_duplicate(&mut members, dup);
            members
        })
        .prop_shuffle()
}

fn name_of(n: &str) -> String {
    name(n)
}

fn value_text(value: &Gen, now: i64, kid: &str) -> String {
    match value {
        Gen::Raw(json) => json.clone(),
        Gen::Ours => serde_json::to_string(kid).expect("a string serializes"),
        Gen::Time(offset) => (now + offset).to_string(),
    }
}

fn object_text(members: &[Member], now: i64, kid: &str) -> String {
    let body: Vec<String> = members
        .iter()
        .map(|(n, v)| format!("{n}:{}", value_text(v, now, kid)))
        .collect();
    format!("{{{}}}", body.join(","))
}

/// The object as a map, or `None` when it is not one or a member name repeats.
fn parse_unique(json: &str) -> Option<serde_json::Map<String, Value>> {
    // serde_json keeps the last of duplicates: count the names on the side.
    let map: serde_json::Map<String, Value> = serde_json::from_str(json).ok()?;
    let names = raw_names(json)?;
    let unique: HashSet<&String> = names.iter().collect();
    (unique.len() == names.len()).then_some(map)
}

/// Top-level member names, unescaped, in order, repeats included.
fn raw_names(json: &str) -> Option<Vec<String>> {
    struct Names(Vec<String>);
    impl<'de> serde::Deserialize<'de> for Names {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Names;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut m: A,
                ) -> Result<Names, A::Error> {
                    let mut out = Vec::new();
                    while let Some(k) = m.next_key::<String>()? {
                        m.next_value::<serde::de::IgnoredAny>()?;
                        out.push(k);
                    }
                    Ok(Names(out))
                }
            }
            d.deserialize_map(V)
        }
    }
    serde_json::from_str::<Names>(json).ok().map(|n| n.0)
}

fn url_safe(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn bidi(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// docs/TOKEN.md, read independently of `shared::verify`.
fn oracle(header: &str, payload: &str, now: i64, kid: &str) -> bool {
    let (Some(h), Some(p)) = (parse_unique(header), parse_unique(payload)) else {
        return false;
    };
    let header_ok = h.get("alg") == Some(&Value::from("EdDSA"))
        && h.get("typ").and_then(Value::as_str).is_some_and(|t| {
            let t = t.to_ascii_lowercase();
            t == "dl+jwt" || t == "application/dl+jwt"
        })
        && h.get("kid") == Some(&Value::from(kid))
        && !h.contains_key("crit");
    let s = |k: &str| p.get(k).and_then(Value::as_str);
    let t = |k: &str| p.get(k).and_then(Value::as_u64);
    let (Some(iat), Some(nbf), Some(exp)) = (t("iat"), t("nbf"), t("exp")) else {
        return false;
    };
    let (iat, nbf, exp) = (iat as i128, nbf as i128, exp as i128);
    let now = now as i128;
    let (leeway, max_lifetime) = (LEEWAY as i128, MAX_LIFETIME as i128);
    header_ok
        && s("iss") == Some(ISS)
        && s("aud") == Some(AUD)
        && s("sub").is_some()
        && s("jti").is_some_and(|j| url_safe(j, 16, 128))
        && s("file").is_some_and(|f| url_safe(f, 1, 128))
        && s("name").is_some_and(|n| {
            (1..=255).contains(&n.chars().count()) && !n.chars().any(|c| c.is_control() || bidi(c))
        })
        && exp >= now - leeway
        && nbf <= now + leeway
        && iat <= now + leeway
        && exp - iat <= max_lifetime
}

fn sign(key: &ed25519_dalek::SigningKey, header: &str, payload: &str) -> String {
    let signing_input = format!("{}.{}", B64.encode(header), B64.encode(payload));
    let signature = key.sign(signing_input.as_bytes());
    format!("{signing_input}.{}", B64.encode(signature.to_bytes()))
}

fn now() -> i64 {
    shared::unix_now() as i64
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_strings_never_panic(s in any::<String>()) {
        prop_assert!(keys().verifier.verify(&s).is_err());
    }

    #[test]
    fn token_shaped_strings_never_panic(
        s in proptest::string::string_regex("[A-Za-z0-9_=+/. -]{0,300}").expect("regex"),
    ) {
        prop_assert!(keys().verifier.verify(&s).is_err());
    }

    #[test]
    fn a_damaged_token_is_refused(
        at in any::<prop::sample::Index>(),
        with in any::<char>(),
        how in 0u8..3,
    ) {
        let k = keys();
        let now = now();
        let header = format!(r#"{{"alg":"EdDSA","typ":"dl+jwt","kid":"{}"}}"#, k.kid);
        let payload = format!(
            r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"u","jti":"abcdefghijklmnopqrstuv","iat":{now},"nbf":{now},"exp":{},"file":"f","name":"a.txt"}}"#,
            now + 60
        );
        let token = sign(&k.ours, &header, &payload);
        prop_assert!(k.verifier.verify(&token).is_ok());
        let mut chars: Vec<char> = token.chars().collect();
        let i = at.index(chars.len());
        match how {
            0 => { chars.remove(i); }
            1 => chars.insert(i, with),
            _ => chars[i] = with,
        }
        let damaged: String = chars.into_iter().collect();
        let result = k.verifier.verify(&damaged);
        // Damage that decodes to the same bytes is no damage (base64 is only decoded by us
        // in canonical form, so this is the unchanged string).
        prop_assert_eq!(result.is_ok(), damaged == token, "{}", damaged);
    }

    #[test]
    fn another_keys_signature_is_refused(seed in any::<[u8; 32]>()) {
        let k = keys();
        let stranger = ed25519_dalek::SigningKey::from_bytes(&seed);
        prop_assume!(stranger.verifying_key() != k.ours.verifying_key());
        let now = now();
        let header = format!(r#"{{"alg":"EdDSA","typ":"dl+jwt","kid":"{}"}}"#, k.kid);
        let payload = format!(
            r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"u","jti":"abcdefghijklmnopqrstuv","iat":{now},"nbf":{now},"exp":{},"file":"f","name":"a.txt"}}"#,
            now + 60
        );
        prop_assert!(k.verifier.verify(&sign(&stranger, &header, &payload)).is_err());
    }
}

/// Not a `proptest!` block: it also counts outcomes, so a generator that drifted into only
/// producing invalid tokens (which would make the property vacuous) fails the test.
#[test]
fn a_signed_token_is_accepted_exactly_when_valid() {
    use std::sync::atomic::{AtomicU32, Ordering};
    let (accepted, refused) = (AtomicU32::new(0), AtomicU32::new(0));
    let mut runner = proptest::test_runner::TestRunner::new(config());
    let result = runner.run(&(header(), payload()), |(header, payload)| {
        let k = keys();
        let now = now();
        let header = object_text(&header, now, &k.kid);
        let payload = object_text(&payload, now, &k.kid);
        let token = sign(&k.ours, &header, &payload);
        let expected =
            token.len() <= shared::MAX_TOKEN_BYTES && oracle(&header, &payload, now, &k.kid);
        let result = k.verifier.verify(&token);
        prop_assert_eq!(
            result.is_ok(),
            expected,
            "{} {} -> {:?}",
            header,
            payload,
            result
        );
        let Ok(grant) = result else {
            refused.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        };
        accepted.fetch_add(1, Ordering::Relaxed);
        let p: Value = serde_json::from_str(&payload).expect("valid JSON");
        prop_assert_eq!(grant.jti.as_str(), p["jti"].as_str().unwrap_or_default());
        prop_assert_eq!(grant.file.as_str(), p["file"].as_str().unwrap_or_default());
        prop_assert_eq!(grant.name.as_str(), p["name"].as_str().unwrap_or_default());
        prop_assert_eq!(&grant.sub, p["sub"].as_str().unwrap_or_default());
        prop_assert_eq!(Some(grant.exp), p["exp"].as_u64());
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let (accepted, refused) = (accepted.into_inner(), refused.into_inner());
    eprintln!("signed shapes: {accepted} accepted, {refused} refused");
    let total = accepted + refused;
    assert!(
        accepted * 50 >= total && refused * 50 >= total,
        "too one-sided to test anything: {accepted} accepted, {refused} refused"
    );
}

fn valid_token(key: &ed25519_dalek::SigningKey, kid: &str, now: i64, jti: usize) -> String {
    let header = format!(r#"{{"alg":"EdDSA","typ":"dl+jwt","kid":"{kid}"}}"#);
    let payload = format!(
        r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"u","jti":"batch-{jti:016}","iat":{now},"nbf":{now},"exp":{},"file":"f","name":"a.txt"}}"#,
        now + 60
    );
    sign(key, &header, &payload)
}

/// Batch verification changes the cost, never the answer: every token of a batch (any shape
/// from the generators above, valid ones, another key's forgeries, HS256 tokens) gets what
/// `verify_allowing_expiry_at` alone says, refusal reason included.
#[test]
fn a_batch_answers_for_each_token_what_it_alone_gets() {
    use std::sync::atomic::{AtomicU32, Ordering};
    let batched = AtomicU32::new(0);
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    let hs = SigningKey::generate(shared::Algorithm::HS256);
    let mut runner = proptest::test_runner::TestRunner::new(config());
    let cases = (
        header(),
        payload(),
        0usize..5,
        0u8..4,
        any::<prop::sample::Index>(),
    );
    let result = runner.run(&cases, |(header, payload, valid, extra, at)| {
        let k = keys();
        let now = now();
        let header = object_text(&header, now, &k.kid);
        let payload = object_text(&payload, now, &k.kid);
        let mut tokens: Vec<String> = (0..valid)
            .map(|i| valid_token(&k.ours, &k.kid, now, i))
            .collect();
        match extra {
            0 => tokens.push(valid_token(&stranger, &k.kid, now, 99)),
            1 => {
                let c = shared::Claims::new(
                    ISS,
                    AUD,
                    "u",
                    &shared::StorageKey::parse("f").expect("a key"),
                    &shared::DownloadName::parse("a.txt").expect("a name"),
                    now as u64,
                    60,
                );
                tokens.push(hs.mint(&c).expect("mints"));
            }
            _ => {}
        }
        let i = at.index(tokens.len() + 1);
        tokens.insert(i, sign(&k.ours, &header, &payload));
        // Each token with its own clock reading, one of them a second later.
        let refs: Vec<(&str, u64)> = tokens
            .iter()
            .enumerate()
            .map(|(n, t)| (t.as_str(), now as u64 + u64::from(n == i)))
            .collect();
        let alone: Vec<_> = refs
            .iter()
            .map(|&(t, now)| k.verifier.verify_allowing_expiry_at(t, now))
            .collect();
        let together = k.verifier.verify_batch_allowing_expiry_at(&refs);
        if valid > 0 {
            batched.fetch_add(1, Ordering::Relaxed);
        }
        prop_assert_eq!(together, alone, "{} {}", header, payload);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(batched.into_inner() > 0, "no case had a batch to check");
}

proptest! {
    #![proptest_config(config())]

    /// A damaged or forged token in a batch of good ones is refused, and the good ones still
    /// pass (the failed batch is checked again token by token).
    #[test]
    fn a_damaged_token_in_a_batch_is_refused_alone(
        at in any::<prop::sample::Index>(),
        with in any::<char>(),
        how in 0u8..3,
        size in 1usize..8,
    ) {
        let k = keys();
        let now = now();
        let mut tokens: Vec<String> =
            (0..size).map(|i| valid_token(&k.ours, &k.kid, now, i)).collect();
        let victim = at.index(size);
        let mut chars: Vec<char> = tokens[victim].chars().collect();
        let i = at.index(chars.len());
        match how {
            0 => { chars.remove(i); }
            1 => chars.insert(i, with),
            _ => chars[i] = with,
        }
        let damaged: String = chars.into_iter().collect();
        let unchanged = damaged == tokens[victim];
        tokens[victim] = damaged;
        let refs: Vec<(&str, u64)> = tokens.iter().map(|t| (t.as_str(), now as u64)).collect();
        let results = k.verifier.verify_batch_allowing_expiry_at(&refs);
        for (n, r) in results.iter().enumerate() {
            prop_assert_eq!(r.is_ok(), n != victim || unchanged, "{}: {:?}", n, r);
        }
    }
}

/// The verifier checks each token itself (each part decoded once, the HMAC keyed and the
/// Ed25519 point decompressed at load) instead of through `jsonwebtoken::decode`: issue 18's
/// cost. This holds it to the old path, answer for answer and refusal reason for reason, over
/// every shape the generators make (signed with Ed25519, and the same shapes as HS256), random
/// damage of good tokens of both kinds, arbitrary strings, and the fuzzing corpus.
mod the_fast_path_answers_as_jsonwebtoken_does {
    use super::*;
    use hmac::Mac;

    const HS_SECRET: [u8; 32] = [5u8; 32];

    struct Both {
        hs_kid: String,
        verifier: Verifier,
    }

    fn both() -> &'static Both {
        static BOTH: std::sync::OnceLock<Both> = std::sync::OnceLock::new();
        BOTH.get_or_init(|| {
            let hs = shared::VerifyingKey::hs256(&HS_SECRET).expect("a 32-byte secret");
            let ed = SigningKey::ed25519_from_pem(
                &keys()
                    .ours
                    .to_pkcs8_pem(Default::default())
                    .expect("encodes"),
            )
            .expect("our key");
            Both {
                hs_kid: hs.kid().to_owned(),
                verifier: Verifier::new([ed.verifying_key().clone(), hs], Policy::new(ISS, AUD)),
            }
        })
    }

    fn hs_sign(header: &str, payload: &str) -> String {
        let signing_input = format!("{}.{}", B64.encode(header), B64.encode(payload));
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&HS_SECRET).expect("any size");
        mac.update(signing_input.as_bytes());
        let tag = mac.finalize().into_bytes();
        format!("{signing_input}.{}", B64.encode(tag))
    }

    /// The same answer from both paths, at `now` and on either side of an expiry.
    fn same(token: &str, now: u64) -> Result<(), TestCaseError> {
        let v = &both().verifier;
        for at in [now, now + 61, now + 70] {
            prop_assert_eq!(
                v.verify_allowing_expiry_at(token, at),
                v.verify_with_jsonwebtoken_at(token, at),
                "{}",
                token
            );
        }
        Ok(())
    }

    fn damage(token: &str, at: prop::sample::Index, with: char, how: u8) -> String {
        let mut chars: Vec<char> = token.chars().collect();
        let i = at.index(chars.len());
        match how {
            0 => {
                chars.remove(i);
            }
            1 => chars.insert(i, with),
            _ => chars[i] = with,
        }
        chars.into_iter().collect()
    }

    #[test]
    fn over_generated_shapes_of_both_algorithms() {
        let mut runner = proptest::test_runner::TestRunner::new(config());
        // Header members jsonwebtoken types (and so refuses ill-typed) where ours ignores them.
        let typed = prop::option::of(prop::sample::select(vec![
            r#""jwk":5"#,
            r#""jwk":{"kty":"OKP"}"#,
            r#""x5c":"one""#,
            r#""x5c":[1]"#,
            r#""cty":1"#,
            r#""jku":null"#,
            r#""enc":"A1""#,
            r#""x5t#S256":[]"#,
        ]));
        // A member the claims type ignores, twice: only the duplicate-member check sees it.
        let twice = prop::option::of(prop::sample::select(vec![
            r#""x":1,"x":2"#,
            r#""x":1,"\u0078":1"#,
        ]));
        let cases = (header(), payload(), typed, twice);
        let result = runner.run(&cases, |(header, payload, typed, twice)| {
            let (k, b) = (keys(), both());
            let now = now();
            let with_typed = |text: String| match typed {
                Some(member) if text.len() > 2 => text.replacen('{', &format!("{{{member},"), 1),
                Some(member) => format!("{{{member}}}"),
                None => text,
            };
            let header_text = with_typed(object_text(&header, now, &k.kid));
            let payload_text = match (object_text(&payload, now, &k.kid), twice) {
                (text, Some(members)) if text.len() > 2 => {
                    text.replacen('{', &format!("{{{members},"), 1)
                }
                (text, _) => text,
            };
            same(&sign(&k.ours, &header_text, &payload_text), now as u64)?;
            // The same shape as an HS256 token under the HS256 key.
            let hs_header =
                with_typed(object_text(&header, now, &b.hs_kid)).replace("\"EdDSA\"", "\"HS256\"");
            same(&hs_sign(&hs_header, &payload_text), now as u64)?;
            Ok(())
        });
        if let Err(e) = result {
            panic!("{e}");
        }
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn over_damaged_tokens(
            at in any::<prop::sample::Index>(),
            with in any::<char>(),
            how in 0u8..3,
            hs in any::<bool>(),
        ) {
            let (k, b) = (keys(), both());
            let now = now();
            let payload = format!(
                r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"u","jti":"abcdefghijklmnopqrstuv","iat":{now},"nbf":{now},"exp":{},"file":"f","name":"a.txt"}}"#,
                now + 60
            );
            let token = if hs {
                hs_sign(&format!(r#"{{"alg":"HS256","typ":"dl+jwt","kid":"{}"}}"#, b.hs_kid), &payload)
            } else {
                sign(&k.ours, &format!(r#"{{"alg":"EdDSA","typ":"dl+jwt","kid":"{}"}}"#, k.kid), &payload)
            };
            prop_assert!(b.verifier.verify(&token).is_ok());
            same(&damage(&token, at, with, how), now as u64)?;
        }

        #[test]
        fn over_arbitrary_strings(
            s in proptest::string::string_regex("[A-Za-z0-9_=+/. -]{0,300}").expect("regex"),
        ) {
            same(&s, now() as u64)?;
        }
    }

    #[test]
    fn over_the_fuzzing_corpus() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/verify_token");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("the corpus is in the repository") {
            let bytes = std::fs::read(entry.expect("an entry").path()).expect("readable");
            let token = String::from_utf8_lossy(&bytes);
            if let Err(e) = same(token.trim(), now() as u64) {
                panic!("{e}");
            }
            seen += 1;
        }
        assert!(seen >= 9, "only {seen} corpus entries");
    }
}
