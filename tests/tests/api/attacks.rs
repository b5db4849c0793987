//! What an attacker holding a link, the public key or a stolen token can try at the download
//! server. Every refusal must be a 401 (or the documented code) and burn nothing.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use burnlink_tests::{ALICE, TestApp, error_code, spawn, token_of};
use reqwest::StatusCode;
use shared::{Algorithm, SigningKey};

/// An app with one uploaded file; returns the app, the file's storage key and a valid link.
async fn app_with_file() -> (TestApp, String, String) {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let file = alice.upload_ok("secret.txt", b"top secret".to_vec()).await;
    let url = alice.link_url(&file.id).await;
    let key = app.only_stored_file();
    (app, key, url)
}

fn b64_json(value: &serde_json::Value) -> String {
    B64.encode(serde_json::to_vec(value).unwrap())
}

/// Asserts a 401 `invalid_token` with a Bearer challenge.
async fn assert_invalid(app: &TestApp, token: &str, case: &str) {
    let res = app.download(token).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{case}");
    let challenge = res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.starts_with("Bearer"), "{case}: {challenge}");
    assert_eq!(error_code(res).await, "invalid_token", "{case}");
}

/// The valid link still works afterwards: no refusal burned it.
async fn assert_still_valid(app: &TestApp, url: &str) {
    let res = app.anon.get(url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "top secret");
}

#[tokio::test]
async fn tampered_payload_is_refused() {
    let (app, key, url) = app_with_file().await;
    let token = token_of(&url);
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut claims: serde_json::Value =
        serde_json::from_slice(&B64.decode(&parts[1]).unwrap()).unwrap();
    claims["exp"] = (claims["exp"].as_u64().unwrap() + 3600).into();
    parts[1] = b64_json(&claims);
    assert_invalid(&app, &parts.join("."), "longer exp").await;
    claims["file"] = key.into();
    claims["sub"] = "mallory".into();
    parts[1] = b64_json(&claims);
    assert_invalid(&app, &parts.join("."), "other sub").await;
    assert_still_valid(&app, &url).await;
}

#[tokio::test]
async fn alg_none_is_refused() {
    let (app, key, url) = app_with_file().await;
    let kid = app.signing_key().kid().to_owned();
    let claims = serde_json::to_value(app.claims(&key, "x.txt")).unwrap();
    for alg in ["none", "None", "NONE"] {
        let header = serde_json::json!({ "alg": alg, "typ": "dl+jwt", "kid": kid });
        let token = format!("{}.{}.", b64_json(&header), b64_json(&claims));
        assert_invalid(&app, &token, alg).await;
        assert_invalid(&app, token.trim_end_matches('.'), alg).await;
    }
    assert_still_valid(&app, &url).await;
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_refused() {
    let (app, key, url) = app_with_file().await;
    let signing = app.signing_key();
    let public = signing.verifying_key();
    let claims = app.claims(&key, "x.txt");
    let jwk = serde_json::to_string(public.public_jwk().unwrap()).unwrap();
    let pem = public.to_pem().unwrap();
    let x = match &public.public_jwk().unwrap().algorithm {
        jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(p) => B64.decode(&p.x).unwrap(),
        _ => unreachable!("an Ed25519 key"),
    };
    for (what, secret) in [
        ("raw", x),
        ("pem", pem.into_bytes()),
        ("jwk", jwk.into_bytes()),
    ] {
        for alg in [
            jsonwebtoken::Algorithm::HS256,
            jsonwebtoken::Algorithm::HS512,
        ] {
            let mut header = jsonwebtoken::Header::new(alg);
            header.typ = Some("dl+jwt".into());
            header.kid = Some(signing.kid().to_owned());
            let token = jsonwebtoken::encode(
                &header,
                &claims,
                &jsonwebtoken::EncodingKey::from_secret(&secret),
            )
            .unwrap();
            assert_invalid(&app, &token, &format!("{alg:?} with {what} public key")).await;
        }
    }
    assert_still_valid(&app, &url).await;
}

#[tokio::test]
async fn unknown_kid_and_foreign_key_are_refused() {
    let (app, key, url) = app_with_file().await;
    let claims = app.claims(&key, "x.txt");
    let stranger = SigningKey::generate(Algorithm::EdDSA);
    assert_invalid(&app, &stranger.mint(&claims).unwrap(), "unknown kid").await;

    // Our kid, a stranger's signature.
    let forged = stranger.mint(&claims).unwrap();
    let ours = app.mint(&claims);
    let spliced = format!(
        "{}.{}",
        ours.rsplit_once('.').unwrap().0,
        forged.rsplit_once('.').unwrap().1
    );
    assert_invalid(&app, &spliced, "signature from another key").await;
    assert_still_valid(&app, &url).await;
}

#[tokio::test]
async fn wrong_audience_issuer_and_type_are_refused() {
    let (app, key, url) = app_with_file().await;
    let mut claims = app.claims(&key, "x.txt");
    claims.aud = "someone-else".into();
    assert_invalid(&app, &app.mint(&claims), "wrong aud").await;

    let mut claims = app.claims(&key, "x.txt");
    claims.iss = "evil-app".into();
    assert_invalid(&app, &app.mint(&claims), "wrong iss").await;

    // A correctly signed JWT of another type (here "JWT") is not a download token.
    let signing = app.signing_key();
    let token = app.mint(&app.claims(&key, "x.txt"));
    let mut header: serde_json::Value =
        serde_json::from_slice(&B64.decode(token.split('.').next().unwrap()).unwrap()).unwrap();
    header["typ"] = "JWT".into();
    let signed = {
        let head = b64_json(&header);
        let body = token.split('.').nth(1).unwrap();
        let pem = std::fs::read_to_string(app.data_dir.join("keys/ed25519.pem")).unwrap();
        let key: ed25519_dalek::SigningKey =
            ed25519_dalek::pkcs8::DecodePrivateKey::from_pkcs8_pem(&pem).unwrap();
        use ed25519_dalek::Signer;
        let sig = key.sign(format!("{head}.{body}").as_bytes());
        format!("{head}.{body}.{}", B64.encode(sig.to_bytes()))
    };
    assert_eq!(signing.kid(), header["kid"]);
    assert_invalid(&app, &signed, "typ JWT").await;
    assert_still_valid(&app, &url).await;
}

#[tokio::test]
async fn expired_and_not_yet_valid_tokens_are_refused() {
    let (app, key, url) = app_with_file().await;
    let now = shared::unix_now();
    let mut claims = app.claims(&key, "x.txt");
    (claims.iat, claims.nbf, claims.exp) = (now - 70, now - 70, now - 10);
    let res = app.download(&app.mint(&claims)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(res).await, "token_expired");

    let mut claims = app.claims(&key, "x.txt");
    claims.nbf = now + 30;
    assert_invalid(&app, &app.mint(&claims), "nbf in the future").await;

    let mut claims = app.claims(&key, "x.txt");
    claims.exp = now + 3600;
    assert_invalid(&app, &app.mint(&claims), "an hour-long token").await;
    assert_still_valid(&app, &url).await;
}

#[tokio::test]
async fn short_ttl_link_expires() {
    let app = burnlink_tests::spawn_with(|c| {
        c.token_ttl = 1;
        c.leeway = 5; // the default
    })
    .await;
    let alice = app.login(ALICE).await;
    let file = alice.upload_ok("a.txt", b"x".to_vec()).await;
    let url = alice.link_url(&file.id).await;
    // exp = iat + 1, plus the download server's 5 s leeway.
    tokio::time::sleep(std::time::Duration::from_secs(8)).await;
    let res = app.anon.get(&url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(res).await, "token_expired");
}

#[tokio::test]
async fn the_apps_leeway_is_its_embedded_download_servers() {
    let app = burnlink_tests::spawn_with(|c| c.leeway = 2).await;
    let alice = app.login(ALICE).await;
    alice.upload_ok("a.txt", b"x".to_vec()).await;
    let key = app.only_stored_file();
    let ahead = |secs| app.mint_ahead(&key, "a.txt", secs);
    // 4 s: past 2 (a second tick between minting and checking still leaves it past), inside
    // the download server's default 5.
    assert_invalid(&app, &ahead(4), "iat 4 s ahead, leeway 2").await;
    let res = app.download(&ahead(2)).await;
    assert_eq!(res.status(), StatusCode::OK, "iat 2 s ahead, leeway 2");
}

#[tokio::test]
async fn oversized_and_malformed_tokens_are_refused() {
    let (app, key, url) = app_with_file().await;
    let mut claims = app.claims(&key, "x.txt");
    claims.name = "n".repeat(5000);
    assert_invalid(&app, &app.mint(&claims), "5 KB token").await;
    for junk in [
        "",
        "a",
        "a.b",
        "a.b.c.d.e",
        "....",
        "eyJ.eyJ.sig",
        "%00.%00.%00",
        "a/b.c.d",
        "a%2Fb.c.d",
    ] {
        assert_invalid(&app, junk, junk).await;
    }
    assert_still_valid(&app, &url).await;
}

#[tokio::test]
async fn traversal_looking_storage_key_is_refused_even_when_signed() {
    let (app, _key, url) = app_with_file().await;
    std::fs::write(app.data_dir.join("outside.txt"), "outside").unwrap();
    for key in [
        "../outside.txt",
        "..",
        "../app.db",
        "/etc/passwd",
        "a\0b",
        "files/../x",
    ] {
        let claims = app.claims(key, "x.txt");
        assert_invalid(&app, &app.mint(&claims), key).await;
    }
    assert_still_valid(&app, &url).await;
}

#[tokio::test]
async fn no_token_gets_a_bare_bearer_challenge() {
    let app = spawn().await;
    let res = app
        .anon
        .get(format!("{}/d", app.dl_url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    assert_eq!(error_code(res).await, "invalid_token");
}

/// `Authorization: Bearer` with nothing after it is read as the app reads it (one parser,
/// `server_kit::bearer`): a token that is not valid, not an absent one.
#[tokio::test]
async fn a_bearer_header_without_a_token_is_an_invalid_token() {
    let app = spawn().await;
    for value in ["Bearer", "Bearer ", "Bearerx"] {
        let res = app
            .anon
            .get(format!("{}/d", app.dl_url))
            .header("Authorization", value)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{value}");
        assert_eq!(
            res.headers()["www-authenticate"],
            "Bearer error=\"invalid_token\"",
            "{value}"
        );
        assert_eq!(error_code(res).await, "invalid_token", "{value}");
    }
}

// ---------------------------------------------------------------------------------------------
// Hand-built tokens: any header and payload text, signed with our key or an attacker's.
// ---------------------------------------------------------------------------------------------

/// The app's Ed25519 key as the data dir holds it.
fn our_key(app: &TestApp) -> ed25519_dalek::SigningKey {
    let pem = std::fs::read_to_string(app.data_dir.join("keys/ed25519.pem")).unwrap();
    ed25519_dalek::pkcs8::DecodePrivateKey::from_pkcs8_pem(&pem).unwrap()
}

fn attacker_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&rand_bytes())
}

fn rand_bytes() -> [u8; 32] {
    let mut seed = [0u8; 32];
    let fresh = shared::random_token(32);
    seed.copy_from_slice(&fresh.as_bytes()[..32]);
    seed
}

/// `header.payload.signature` over exactly these JSON texts (duplicates and odd numbers
/// reach the server verbatim).
fn sign_text(key: &ed25519_dalek::SigningKey, header: &str, payload: &str) -> String {
    use ed25519_dalek::Signer;
    let input = format!("{}.{}", B64.encode(header), B64.encode(payload));
    let sig = key.sign(input.as_bytes());
    format!("{input}.{}", B64.encode(sig.to_bytes()))
}

fn our_header(app: &TestApp) -> String {
    format!(
        r#"{{"alg":"EdDSA","typ":"dl+jwt","kid":"{}"}}"#,
        app.signing_key().kid()
    )
}

/// A valid payload for `key` as JSON text, with `extra` members spliced in before the end
/// (so a member can appear twice) and the members named in `without` left out.
fn payload_text(app: &TestApp, key: &str, extra: &str, without: &[&str]) -> String {
    let claims = serde_json::to_value(app.claims(key, "x.txt")).unwrap();
    let mut members: Vec<String> = claims
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, _)| !without.contains(&name.as_str()))
        .map(|(name, value)| format!("{}:{value}", serde_json::to_string(name).unwrap()))
        .collect();
    if !extra.is_empty() {
        members.push(extra.to_owned());
    }
    format!("{{{}}}", members.join(","))
}

/// Asserts that our own correctly signed token is accepted, so the refusals around it are
/// about what they change and nothing else. Burns that token, not the app's link.
async fn assert_control_accepted(app: &TestApp, key: &str) {
    let token = sign_text(
        &our_key(app),
        &our_header(app),
        &payload_text(app, key, "", &[]),
    );
    let res = app.download(&token).await;
    assert_eq!(res.status(), StatusCode::OK, "the hand-built control token");
}

#[tokio::test]
async fn kid_naming_a_path_url_or_query_is_refused() {
    let (app, key, url) = app_with_file().await;
    assert_control_accepted(&app, &key).await;
    let payload = payload_text(&app, &key, "", &[]);
    let cases = [
        "../../keys/ed25519.pem",
        "/dev/null",
        "file:///etc/passwd",
        "https://evil.example/jwks.json#k1",
        "' OR '1'='1",
        "x\"; DROP TABLE files; --",
        "",
    ];
    for kid in cases {
        let header = serde_json::json!({ "alg": "EdDSA", "typ": "dl+jwt", "kid": kid });
        for signer in [our_key(&app), attacker_key()] {
            let token = sign_text(&signer, &header.to_string(), &payload);
            assert_invalid(&app, &token, &format!("kid {kid:?}")).await;
        }
    }
    assert_still_valid(&app, &url).await;
}

#[tokio::test]
async fn keys_carried_in_the_header_are_ignored() {
    let (app, key, url) = app_with_file().await;
    let payload = payload_text(&app, &key, "", &[]);
    let attacker = attacker_key();
    let x = B64.encode(attacker.verifying_key().as_bytes());
    let jwk = serde_json::json!({ "kty": "OKP", "crv": "Ed25519", "x": x });
    let our_kid = app.signing_key().kid().to_owned();
    // Their key's RFC 7638 thumbprint, as a kid the attacker controls.
    let their_kid = {
        use sha2::Digest;
        let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
        B64.encode(sha2::Sha256::digest(canonical.as_bytes()))
    };
    let carriers = [
        ("jku", serde_json::json!("https://evil.example/jwks.json")),
        ("jwk", jwk.clone()),
        ("x5u", serde_json::json!("https://evil.example/cert.pem")),
        ("x5c", serde_json::json!(["MIIBAA=="])),
    ];
    for (member, value) in carriers {
        for kid in [&our_kid, &their_kid] {
            let mut header = serde_json::json!({ "alg": "EdDSA", "typ": "dl+jwt", "kid": kid });
            header[member] = value.clone();
            let token = sign_text(&attacker, &header.to_string(), &payload);
            assert_invalid(&app, &token, &format!("{member} with kid {kid}")).await;
        }
    }
    // No kid at all, only the embedded key.
    let header = serde_json::json!({ "alg": "EdDSA", "typ": "dl+jwt", "jwk": jwk });
    let token = sign_text(&attacker, &header.to_string(), &payload);
    assert_invalid(&app, &token, "jwk without kid").await;
    assert_still_valid(&app, &url).await;
}

#[tokio::test]
async fn critical_extensions_are_refused() {
    let (app, key, url) = app_with_file().await;
    assert_control_accepted(&app, &key).await;
    let payload = payload_text(&app, &key, "", &[]);
    let kid = app.signing_key().kid().to_owned();
    for crit in [
        serde_json::json!(["exp"]),
        serde_json::json!(["b64"]),
        serde_json::json!(["urn:example:unknown"]),
        serde_json::json!([]),
        serde_json::Value::Null,
    ] {
        let mut header = serde_json::json!({ "alg": "EdDSA", "typ": "dl+jwt", "kid": kid });
        header["crit"] = crit.clone();
        if crit == serde_json::json!(["b64"]) {
            header["b64"] = false.into();
        }
        let token = sign_text(&our_key(&app), &header.to_string(), &payload);
        assert_invalid(&app, &token, &format!("crit {crit}")).await;
    }
    assert_still_valid(&app, &url).await;
}

#[tokio::test]
async fn duplicate_members_are_refused() {
    let (app, key, url) = app_with_file().await;
    assert_control_accepted(&app, &key).await;
    let kid = app.signing_key().kid().to_owned();
    let stranger = SigningKey::generate(Algorithm::EdDSA);
    let ours = our_key(&app);
    let good_payload = payload_text(&app, &key, "", &[]);
    let headers = [
        format!(
            r#"{{"alg":"EdDSA","typ":"dl+jwt","kid":"{kid}","kid":"{}"}}"#,
            stranger.kid()
        ),
        format!(
            r#"{{"alg":"EdDSA","typ":"dl+jwt","kid":"{}","kid":"{kid}"}}"#,
            stranger.kid()
        ),
        format!(r#"{{"alg":"EdDSA","typ":"dl+jwt","kid":"{kid}","kid":"{kid}"}}"#),
        format!(r#"{{"alg":"HS256","alg":"EdDSA","typ":"dl+jwt","kid":"{kid}"}}"#),
        format!(r#"{{"alg":"EdDSA","typ":"JWT","typ":"dl+jwt","kid":"{kid}"}}"#),
        // The same name once unescaped.
        format!(r#"{{"alg":"EdDSA","typ":"dl+jwt","kid":"{kid}","k\u0069d":"{kid}"}}"#),
        format!(r#"{{"alg":"EdDSA","typ":"dl+jwt","kid":"{kid}","x":1,"x":2}}"#),
    ];
    for header in &headers {
        let token = sign_text(&ours, header, &good_payload);
        assert_invalid(&app, &token, header).await;
    }
    let far = shared::unix_now() + 100_000;
    let payloads = [
        payload_text(&app, &key, &format!(r#""exp":{far}"#), &[]),
        payload_text(&app, &key, r#""file":"../outside""#, &[]),
        payload_text(&app, &key, &format!(r#""file":"{key}""#), &[]),
        payload_text(&app, &key, r#""aud":"someone-else""#, &[]),
        payload_text(&app, &key, r#""jti":"AAAAAAAAAAAAAAAAAAAAAA""#, &[]),
        payload_text(&app, &key, r#""\u0066ile":"other-key""#, &[]),
        payload_text(&app, &key, r#""note":1,"note":2"#, &[]),
    ];
    for payload in &payloads {
        let token = sign_text(&ours, &our_header(&app), payload);
        assert_invalid(&app, &token, payload).await;
    }
    assert_still_valid(&app, &url).await;
}

#[tokio::test]
async fn audience_as_an_array_is_refused_even_with_ours_in_it() {
    let (app, key, url) = app_with_file().await;
    assert_control_accepted(&app, &key).await;
    for aud in [
        r#"["burnlink-download"]"#,
        r#"["burnlink-download","other-service"]"#,
        r#"["other-service","burnlink-download"]"#,
        r#"[]"#,
        r#"null"#,
    ] {
        let payload = payload_text(&app, &key, &format!(r#""aud":{aud}"#), &["aud"]);
        let token = sign_text(&our_key(&app), &our_header(&app), &payload);
        assert_invalid(&app, &token, &format!("aud {aud}")).await;
    }
    assert_still_valid(&app, &url).await;
}

#[tokio::test]
async fn ill_typed_time_claims_are_refused() {
    let (app, key, url) = app_with_file().await;
    assert_control_accepted(&app, &key).await;
    let now = shared::unix_now();
    let soon = now + 60;
    let values = [
        format!(r#""{soon}""#),
        format!("{soon}.0"),
        format!("{soon}.5"),
        "1e30".to_owned(),
        "18446744073709551616".to_owned(),
        "18446744073709551615".to_owned(),
        "-1".to_owned(),
        format!("-{soon}"),
        "null".to_owned(),
        "true".to_owned(),
        format!("[{soon}]"),
    ];
    for claim in ["exp", "iat", "nbf"] {
        for value in &values {
            let payload = payload_text(&app, &key, &format!(r#""{claim}":{value}"#), &[claim]);
            let token = sign_text(&our_key(&app), &our_header(&app), &payload);
            assert_invalid(&app, &token, &format!("{claim} {value}")).await;
        }
    }
    assert_still_valid(&app, &url).await;
}

#[tokio::test]
async fn missing_or_oversized_claims_are_refused() {
    let (app, key, url) = app_with_file().await;
    assert_control_accepted(&app, &key).await;
    let ours = our_key(&app);
    for claim in [
        "jti", "iss", "aud", "sub", "iat", "nbf", "exp", "file", "name",
    ] {
        let token = sign_text(
            &ours,
            &our_header(&app),
            &payload_text(&app, &key, "", &[claim]),
        );
        assert_invalid(&app, &token, &format!("no {claim}")).await;
    }
    for (claim, value) in [
        ("jti", "j".repeat(10 * 1024)),
        ("jti", "j".repeat(129)),
        ("jti", "j".repeat(15)),
        ("jti", "jti with spaces and ünicode".to_owned()),
        ("name", "n".repeat(256)),
        ("file", "f".repeat(129)),
    ] {
        let extra = format!(r#""{claim}":"{value}""#);
        let payload = payload_text(&app, &key, &extra, &[claim]);
        let token = sign_text(&ours, &our_header(&app), &payload);
        assert_invalid(&app, &token, &format!("{claim} of {} bytes", value.len())).await;
    }
    assert_still_valid(&app, &url).await;
}

#[tokio::test]
async fn bad_encodings_and_shapes_are_refused() {
    let (app, key, url) = app_with_file().await;
    let good = sign_text(
        &our_key(&app),
        &our_header(&app),
        &payload_text(&app, &key, "", &[]),
    );
    let (head, rest) = good.split_once('.').unwrap();
    let (body, sig) = rest.split_once('.').unwrap();
    let jwe_header = b64_json(&serde_json::json!({ "alg": "RSA-OAEP", "enc": "A256GCM" }));
    let cases: Vec<(String, String)> = vec![
        (
            "padding on the header".into(),
            format!("{head}=.{body}.{sig}"),
        ),
        (
            "padding on the signature".into(),
            format!("{head}.{body}.{sig}=="),
        ),
        (
            // A '+' or '/' is always in the token, whatever the signature's bytes.
            "standard base64 alphabet".into(),
            format!("{head}.{body}.+/{}", &sig[2..]),
        ),
        ("a '!' inside".into(), format!("{head}.{body}!.{sig}")),
        ("a '*' inside".into(), format!("{head}*.{body}.{sig}")),
        (
            "JWE-shaped, 5 parts".into(),
            format!("{jwe_header}.{body}.{sig}.{body}.{sig}"),
        ),
        ("4 parts".into(), format!("{good}.{sig}")),
        ("2 parts".into(), format!("{head}.{body}")),
        ("empty signature".into(), format!("{head}.{body}.")),
        ("leading space".into(), format!("%20{good}")),
        ("trailing space".into(), format!("{good}%20")),
        ("tab inside".into(), format!("{head}.%09{body}.{sig}")),
        ("newline inside".into(), format!("{head}.{body}%0A.{sig}")),
        ("NUL at the end".into(), format!("{good}%00")),
        (
            "encoded dot (%2E) and slash".into(),
            format!("{head}%2F{body}.{sig}"),
        ),
        ("non-ASCII".into(), format!("{head}.{body}.{sig}é")),
    ];
    for (case, token) in &cases {
        assert_invalid(&app, token, case).await;
    }
    // Through the bearer header too, where whitespace around the token is trimmed
    // (RFC 6750 section 2.1 has one space after the scheme).
    for value in [
        format!("Bearer {head}.{body}.{sig}=="),
        format!("Bearer {head} .{body}.{sig}"),
    ] {
        let res = app
            .anon
            .get(format!("{}/d", app.dl_url))
            .header("Authorization", value.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{value}");
    }
    // The good token was never burned by its damaged copies.
    let res = app.download(&good).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_still_valid(&app, &url).await;
}

#[tokio::test]
async fn unicode_names_work_and_direction_overrides_do_not() {
    let (app, key, url) = app_with_file().await;
    let ours = our_key(&app);
    let with = |name: &str, sub: &str| {
        let mut claims = app.claims(&key, name);
        claims.sub = sub.into();
        sign_text(
            &ours,
            &our_header(&app),
            &serde_json::to_string(&claims).unwrap(),
        )
    };
    // An emoji and accents in the name: served, with the RFC 8187 name.
    let res = app.download(&with("📷 Été.txt", "u1")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()["content-disposition"],
        "attachment; filename=\"_ _t_.txt\"; filename*=UTF-8''%F0%9F%93%B7%20%C3%89t%C3%A9.txt"
    );
    assert_eq!(res.text().await.unwrap(), "top secret");
    // `sub` is only logged (escaped): odd characters there do not matter.
    let res = app
        .download(&with("a.txt", "\u{202E}nimda \u{1F600}\n"))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    // A name that would display reversed, or carries control characters: refused.
    for name in [
        "invoice\u{202E}fdp.exe",
        "a\u{2066}b.txt",
        "a\nb.txt",
        "a\u{0}b.txt",
        "\u{7f}",
    ] {
        assert_invalid(&app, &with(name, "u1"), &format!("name {name:?}")).await;
    }
    assert_still_valid(&app, &url).await;
}

#[tokio::test]
async fn a_percent_encoded_token_is_the_same_token() {
    // Decision (docs/TOKEN.md): the path is percent-decoded before the token is read, as for
    // any URL (RFC 3986 section 6.2.2.2): `%41` is `A`. It is the same link, burned once.
    let (app, _key, url) = app_with_file().await;
    let token = token_of(&url);
    let encoded: String = token.bytes().map(|b| format!("%{b:02X}")).collect();
    let res = app.download(&encoded).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "top secret");
    let replay = app.download(token).await;
    assert_eq!(replay.status(), StatusCode::GONE);
    let replay = app.download(&encoded.to_lowercase()).await;
    assert_eq!(replay.status(), StatusCode::GONE);
}
