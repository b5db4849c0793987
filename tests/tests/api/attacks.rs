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
    let app = burnlink_tests::spawn_with(|c| c.token_ttl = 1).await;
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
    ] {
        let res = app.download(junk).await;
        assert!(
            matches!(
                res.status(),
                StatusCode::UNAUTHORIZED | StatusCode::NOT_FOUND
            ),
            "{junk:?}: {}",
            res.status()
        );
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
