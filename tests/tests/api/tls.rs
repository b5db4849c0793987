//! TLS listeners (`--tls-cert`, `--tls-key`): both servers answer over https with HSTS, and
//! the session cookie is `Secure` without being asked. A download server fetches the app's
//! JWKS over https, trusting a private CA (`--jwks-ca-file`), and plain http only to loopback
//! unless told otherwise.

use std::path::PathBuf;

use burnlink_tests::services::start_download_server;
use burnlink_tests::{ALICE, sample_bytes, test_config};
use reqwest::{Certificate, Client, StatusCode, redirect};
use serde_json::{Value, json};
use shared::{Algorithm, Claims, SigningKey};

/// A self-signed certificate for 127.0.0.1 and localhost, written as PEM files into `dir`;
/// returns the certificate and key paths and a client that trusts only this certificate.
fn self_signed(dir: &std::path::Path) -> (PathBuf, PathBuf, Client) {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("certificate");
    let cert_pem = made.cert.pem();
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&cert, &cert_pem).expect("write cert");
    std::fs::write(&key, made.signing_key.serialize_pem()).expect("write key");
    let client = Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(Certificate::from_pem(cert_pem.as_bytes()).expect("PEM"))
        .cookie_store(true)
        .redirect(redirect::Policy::none())
        .build()
        .expect("client");
    (cert, key, client)
}

#[tokio::test]
async fn both_servers_answer_over_https_with_hsts_and_secure_cookies() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key, client) = self_signed(dir.path());
    let mut config = test_config(&dir.path().join("data"));
    config.service.tls_cert = Some(cert);
    config.service.tls_key = Some(key);
    assert!(!config.secure_cookies, "not asked for: TLS turns it on");
    let app = app_server::Application::build(config)
        .await
        .expect("app server starts with TLS");
    app.create_user(ALICE.0, ALICE.1).await.expect("alice");
    let (app_url, dl_url) = (app.public_url().to_owned(), app.download_url().to_owned());
    assert!(app_url.starts_with("https://127.0.0.1:"), "{app_url}");
    assert!(dl_url.starts_with("https://127.0.0.1:"), "{dl_url}");
    tokio::spawn(app.run_until_stopped());

    let res = client
        .post(format!("{app_url}/api/login"))
        .json(&json!({ "username": ALICE.0, "password": ALICE.1 }))
        .send()
        .await
        .expect("login over https");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    let cookie = res.headers()["set-cookie"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    assert!(
        cookie
            .split(';')
            .any(|a| a.trim().eq_ignore_ascii_case("secure")),
        "{cookie}"
    );
    let csrf = res.json::<Value>().await.expect("JSON")["csrf_token"]
        .as_str()
        .expect("csrf_token")
        .to_owned();

    let bytes = sample_bytes(3_000);
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(bytes.clone()).file_name("t.bin"),
    );
    let res = client
        .post(format!("{app_url}/api/files"))
        .header("X-CSRF-Token", &csrf)
        .multipart(form)
        .send()
        .await
        .expect("upload");
    assert_eq!(res.status(), StatusCode::CREATED);
    let id = res.json::<Value>().await.expect("JSON")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let res = client
        .post(format!("{app_url}/api/files/{id}/link"))
        .header("X-CSRF-Token", &csrf)
        .send()
        .await
        .expect("link");
    assert_eq!(res.status(), StatusCode::CREATED);
    let url = res.json::<Value>().await.expect("JSON")["url"]
        .as_str()
        .expect("url")
        .to_owned();
    assert!(url.starts_with(&format!("{dl_url}/d/")), "{url}");

    let res = client.get(&url).send().await.expect("download over https");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    assert_eq!(res.bytes().await.expect("body"), bytes);

    // Plain http on the TLS port gets no page.
    let plain = Client::new()
        .get(app_url.replacen("https://", "http://", 1) + "/healthz")
        .send()
        .await;
    assert!(plain.map(|r| r.status() != StatusCode::OK).unwrap_or(true));
}

#[tokio::test]
async fn a_certificate_without_its_key_stops_start_up_naming_the_setting() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, _, _) = self_signed(dir.path());
    let mut config = test_config(&dir.path().join("data"));
    config.service.tls_cert = Some(cert);
    let err = app_server::Application::build(config)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("--tls-key"), "{err}");

    let mut config = download_server::Config::from_defaults();
    config.bind = "127.0.0.1:0".parse().expect("address");
    config.service.tls_cert = Some(dir.path().join("missing.crt"));
    config.service.tls_key = Some(dir.path().join("missing.key"));
    let err = download_server::Application::build(config)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("--tls-cert (TLS_CERT)"), "{err}");
}

/// A download server of the app at `app_url` (same data dir), knowing its keys only from
/// `jwks_url`.
fn jwks_url_download_config(
    data_dir: &std::path::Path,
    jwks_url: String,
) -> download_server::Config {
    let mut config = download_server::Config::from_defaults();
    config.bind = "127.0.0.1:0".parse().expect("address");
    config.service.data_dir = data_dir.to_owned();
    config.jwks_url = Some(jwks_url);
    config.jwks_min_refresh_secs = 0;
    config
}

#[tokio::test]
async fn a_download_server_fetches_the_jwks_over_https_trusting_the_given_ca() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key, _) = self_signed(dir.path());
    let data_dir = dir.path().join("data");
    let mut config = test_config(&data_dir);
    config.service.tls_cert = Some(cert.clone());
    config.service.tls_key = Some(key);
    let app = app_server::Application::build(config)
        .await
        .expect("app server starts with TLS");
    let jwks_url = format!("{}/.well-known/jwks.json", app.public_url());
    assert!(jwks_url.starts_with("https://"), "{jwks_url}");
    tokio::spawn(app.run_until_stopped());

    // A stored file and a link to it, signed with the key the app made.
    let bytes = sample_bytes(2_000);
    std::fs::write(data_dir.join("files/tlsjwks"), &bytes).expect("stored file");
    let signer = SigningKey::load(&data_dir.join("keys/ed25519.pem"), Algorithm::EdDSA)
        .expect("the app's key");
    let mint = || {
        let now = shared::unix_now();
        let claims = Claims {
            iss: "burnlink-app".into(),
            aud: "burnlink-download".into(),
            sub: "test".into(),
            jti: shared::Jti::generate().as_str().to_owned(),
            iat: now,
            nbf: now,
            exp: now + 60,
            file: "tlsjwks".into(),
            name: "t.bin".into(),
        };
        signer.mint(&claims).expect("mint")
    };
    let client = Client::new();

    let mut trusting = jwks_url_download_config(&data_dir, jwks_url.clone());
    trusting.jwks_ca_file = Some(cert);
    let server = start_download_server(trusting).await;
    let res = client
        .get(format!("{server}/d/{}", mint()))
        .send()
        .await
        .expect("download");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.bytes().await.expect("body"), bytes);

    // Without the CA the certificate is refused, so no key is learned: nothing verifies.
    let server = start_download_server(jwks_url_download_config(&data_dir, jwks_url)).await;
    let res = client
        .get(format!("{server}/d/{}", mint()))
        .send()
        .await
        .expect("download");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_plain_http_jwks_url_to_another_host_stops_start_up_naming_the_setting() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = jwks_url_download_config(
        dir.path(),
        "http://app.internal:8080/.well-known/jwks.json".into(),
    );
    let err = download_server::Application::build(config)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.starts_with("--jwks-url (JWKS_URL): "), "{err}");
    assert!(err.contains("--jwks-allow-http (JWKS_ALLOW_HTTP)"), "{err}");

    let mut config = jwks_url_download_config(dir.path(), "https://127.0.0.1:1/jwks".into());
    config.jwks_ca_file = Some(dir.path().join("missing-ca.pem"));
    let err = download_server::Application::build(config)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("--jwks-ca-file (JWKS_CA_FILE)"), "{err}");
}
