//! docs/TOKEN.md holds: a token built by hand from that document, with nothing from `shared`,
//! is accepted, as an app in another language would build it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use burnlink_tests::{ALICE, spawn, spawn_with};
use ed25519_dalek::Signer;
use reqwest::StatusCode;
use sha2::{Digest, Sha256};

#[tokio::test]
async fn token_built_by_hand_from_the_docs_is_accepted_once() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    alice.upload_ok("hand.txt", b"made by hand".to_vec()).await;
    let storage_key = app.only_stored_file();

    // The private key as the app server stores it (PKCS#8 PEM), read with a plain Ed25519
    // library.
    let pem = std::fs::read_to_string(app.data_dir.join("keys/ed25519.pem")).unwrap();
    let key: ed25519_dalek::SigningKey =
        ed25519_dalek::pkcs8::DecodePrivateKey::from_pkcs8_pem(&pem).unwrap();
    // kid: the RFC 7638 JWK thumbprint, as docs/TOKEN.md says.
    let x = B64.encode(key.verifying_key().as_bytes());
    let thumbprint_input = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    let kid = B64.encode(Sha256::digest(thumbprint_input.as_bytes()));

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = format!(r#"{{"alg":"EdDSA","typ":"dl+jwt","kid":"{kid}"}}"#);
    let payload = format!(
        r#"{{"iss":"burnlink-app","aud":"burnlink-download","sub":"partner-app","jti":"hand-made-0000000001","iat":{now},"nbf":{now},"exp":{},"file":"{storage_key}","name":"from the docs.txt"}}"#,
        now + 60
    );
    let signing_input = format!("{}.{}", B64.encode(header), B64.encode(payload));
    let signature = key.sign(signing_input.as_bytes());
    let token = format!("{signing_input}.{}", B64.encode(signature.to_bytes()));

    let res = app.download(&token).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()["content-disposition"],
        "attachment; filename=\"from the docs.txt\""
    );
    assert_eq!(res.text().await.unwrap(), "made by hand");
    assert_eq!(app.download(&token).await.status(), StatusCode::GONE);
}

#[tokio::test]
async fn hs256_token_built_by_hand_is_accepted() {
    let app = spawn_with(|c| c.alg = shared::Algorithm::HS256).await;
    let alice = app.login(ALICE).await;
    alice.upload_ok("hand.txt", b"hmac".to_vec()).await;
    let storage_key = app.only_stored_file();

    let secret_b64 = std::fs::read_to_string(app.data_dir.join("keys/hs256.key")).unwrap();
    let secret = B64.decode(secret_b64.trim()).unwrap();
    let thumbprint_input = format!(r#"{{"k":"{}","kty":"oct"}}"#, secret_b64.trim());
    let kid = format!(
        "hs-{}",
        B64.encode(Sha256::digest(thumbprint_input.as_bytes()))
    );

    let now = shared::unix_now();
    let header = format!(r#"{{"alg":"HS256","typ":"dl+jwt","kid":"{kid}"}}"#);
    let payload = format!(
        r#"{{"iss":"burnlink-app","aud":"burnlink-download","sub":"u","jti":"6f1c2a4e-0b7d-4c1e-9a55-3d2f6e8b9c10","iat":{now},"nbf":{now},"exp":{},"file":"{storage_key}","name":"h.txt"}}"#,
        now + 60
    );
    let signing_input = format!("{}.{}", B64.encode(header), B64.encode(payload));
    let mac = hmac_sha256(&secret, signing_input.as_bytes());
    let token = format!("{signing_input}.{}", B64.encode(mac));
    let res = app.download(&token).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "hmac");
}

/// HMAC-SHA-256 (RFC 2104) written out, so this test shares no code with the server's.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}
