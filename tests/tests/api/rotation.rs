//! Key rotation: `app-server keys rotate` while links are in flight, the embedded and a
//! `--jwks-url` download server following it, and unknown `kid`s not turning the download
//! server into a JWKS-fetching amplifier.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use burnlink_tests::services::{download_config, start_download_server};
use burnlink_tests::{ALICE, TestApp, error_code, sample_bytes, spawn_with, token_of};
use reqwest::StatusCode;
use serde_json::Value;
use shared::{Algorithm, SigningKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The `kid`s the app publishes at `/.well-known/jwks.json`.
async fn published_kids(app: &TestApp) -> Vec<String> {
    let jwks: Value = app
        .anon
        .get(format!("{}/.well-known/jwks.json", app.app_url))
        .send()
        .await
        .expect("jwks request")
        .json()
        .await
        .expect("jwks JSON");
    kids_of(&jwks)
}

fn kids_of(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .expect("keys array")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid").to_owned())
        .collect()
}

/// The `kid` in a token's header.
fn kid_of(token: &str) -> String {
    let header = token.split('.').next().expect("header");
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("base64url header"))
            .expect("JSON header");
    header["kid"].as_str().expect("kid").to_owned()
}

/// Waits (bounded) until the app's published key ids satisfy `done`: a running server checks
/// for rotations on an interval, so there is no event to wait on.
async fn wait_for_kids(app: &TestApp, what: &str, done: impl Fn(&[String]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let kids = published_kids(app).await;
        if done(&kids) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: published {kids:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn links_signed_before_a_rotation_keep_working_and_new_links_use_the_new_key() {
    const WINDOW: u64 = 6;
    let app = spawn_with(|c| {
        c.token_ttl = WINDOW;
        c.retired_key_publish_secs = WINDOW;
    })
    .await;
    // A download server that only knows the app's JWKS URL, as a separate fleet would.
    let mut remote = download_config(&app, "memory");
    remote.keys = Vec::new();
    remote.jwks_url = Some(format!("{}/.well-known/jwks.json", app.app_url));
    remote.jwks_min_refresh_secs = 0;
    let remote = start_download_server(remote).await;
    // And one reading the shared data dir's keys/jwks.json, which it re-reads on change.
    let mut shared_dir = download_config(&app, "memory");
    shared_dir.keys = Vec::new();
    shared_dir.jwks_file = Some(app.data_dir.join("keys/jwks.json"));
    let shared_dir = start_download_server(shared_dir).await;

    let alice = app.login(ALICE).await;
    let bytes = sample_bytes(5_000);
    let file = alice.upload_ok("r.bin", bytes.clone()).await;
    let old_kid = app.signing_key().kid().to_owned();
    let old_links = [
        alice.link_url(&file.id).await,
        alice.link_url(&file.id).await,
    ];
    assert_eq!(kid_of(token_of(&old_links[0])), old_kid);

    let rotation = app_server::keys::rotate_configured(&app.config)
        .await
        .expect("keys rotate");
    assert_eq!(rotation.retired_kid, old_kid);
    let new_kid = rotation.active_kid.clone();
    assert_ne!(new_kid, old_kid);
    assert_eq!(
        app.signing_key().kid(),
        new_kid,
        "keys/ed25519.pem is the active key"
    );
    wait_for_kids(&app, "new key published beside the old one", |kids| {
        kids.contains(&new_kid) && kids.contains(&old_kid)
    })
    .await;

    // In flight before the rotation: still good, on the embedded and the remote server.
    let res = app.download(token_of(&old_links[0])).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.bytes().await.expect("body"), bytes);
    let res = app
        .anon
        .get(format!("{remote}/d/{}", token_of(&old_links[1])))
        .send()
        .await
        .expect("remote download");
    assert_eq!(res.status(), StatusCode::OK);

    // Minted after it: the new kid, honoured by both (the remote one learns it on sight).
    let new_links = [
        alice.link_url(&file.id).await,
        alice.link_url(&file.id).await,
    ];
    assert_eq!(kid_of(token_of(&new_links[0])), new_kid);
    let res = app.download(token_of(&new_links[0])).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.bytes().await.expect("body"), bytes);
    let res = app
        .anon
        .get(format!("{remote}/d/{}", token_of(&new_links[1])))
        .send()
        .await
        .expect("remote download");
    assert_eq!(res.status(), StatusCode::OK);

    let third = alice.link_url(&file.id).await;
    let third = format!("{shared_dir}/d/{}", token_of(&third));
    wait_until_head_ok(&app, &third).await;
    let res = app
        .anon
        .get(&third)
        .send()
        .await
        .expect("shared-dir download");
    assert_eq!(res.status(), StatusCode::OK);

    // After the publish window the old key is gone from the endpoint and the file.
    wait_for_kids(&app, "old key unpublished", |kids| {
        kids == std::slice::from_ref(&new_kid)
    })
    .await;
    let file_jwks: Value = serde_json::from_slice(
        &std::fs::read(app.data_dir.join("keys/jwks.json")).expect("keys/jwks.json"),
    )
    .expect("jwks.json is JSON");
    assert_eq!(kids_of(&file_jwks), std::slice::from_ref(&new_kid));
}

#[tokio::test]
async fn the_embedded_download_server_drops_a_retired_key_after_its_window() {
    let app = spawn_with(|c| {
        c.token_ttl = 2;
        c.retired_key_publish_secs = 2;
    })
    .await;
    let old = app.signing_key();
    let key = {
        let alice = app.login(ALICE).await;
        alice.upload_ok("a.txt", sample_bytes(10)).await;
        app.only_stored_file()
    };
    app_server::keys::rotate_configured(&app.config)
        .await
        .expect("keys rotate");
    let old_kid = old.kid().to_owned();
    wait_for_kids(&app, "old key unpublished", |kids| !kids.contains(&old_kid)).await;
    // A token the old key signs now (a stolen retired key) is refused.
    let token = old.mint(&app.claims(&key, "a.txt")).expect("mint");
    let res = app.download(&token).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(res).await, "invalid_token");
}

/// Waits (bounded) until `HEAD url` answers 200: `HEAD` burns nothing, and a server reading a
/// key file checks it on an interval.
async fn wait_until_head_ok(app: &TestApp, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = app.anon.head(url).send().await.expect("HEAD").status();
        if status == StatusCode::OK {
            return;
        }
        assert!(Instant::now() < deadline, "HEAD {url}: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A JWKS server for one test that counts the requests it answers.
async fn counting_jwks_server(jwks: String) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/.well-known/jwks.json",
        listener.local_addr().expect("addr")
    );
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let (jwks, count) = (jwks.clone(), counted.clone());
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                count.fetch_add(1, Ordering::SeqCst);
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{jwks}",
                    jwks.len()
                );
                let _ = conn.write_all(response.as_bytes()).await;
            });
        }
    });
    (url, count)
}

#[tokio::test]
async fn unknown_kids_fetch_the_jwks_at_most_once_per_min_refresh_interval() {
    let app = spawn_with(|_| {}).await;
    let jwks = serde_json::to_string(&shared::jwks([app.signing_key().verifying_key()]))
        .expect("jwks JSON");
    let (jwks_url, fetches) = counting_jwks_server(jwks).await;
    let mut config = download_config(&app, "memory");
    config.keys = Vec::new();
    config.jwks_url = Some(jwks_url);
    config.jwks_min_refresh_secs = 2;
    let server = start_download_server(config).await;
    assert_eq!(fetches.load(Ordering::SeqCst), 1, "one fetch at start");

    let stranger = SigningKey::generate(Algorithm::EdDSA);
    let garbage = |n: usize| {
        (0..n)
            .map(|_| stranger.mint(&app.claims("abc", "a.txt")).expect("mint"))
            .collect::<Vec<_>>()
    };
    let send_all = |tokens: Vec<String>| {
        let (anon, server) = (app.anon.clone(), server.clone());
        async move {
            let requests = tokens.into_iter().map(|t| {
                let (anon, server) = (anon.clone(), server.clone());
                async move {
                    anon.get(format!("{server}/d/{t}"))
                        .send()
                        .await
                        .expect("download request")
                        .status()
                }
            });
            futures_util::future::join_all(requests).await
        }
    };
    let started = Instant::now();
    let statuses = send_all(garbage(30)).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::UNAUTHORIZED));
    if started.elapsed() < Duration::from_millis(1500) {
        assert_eq!(
            fetches.load(Ordering::SeqCst),
            1,
            "unknown kids right after a fetch fetch nothing"
        );
    }

    tokio::time::sleep(Duration::from_millis(2200)).await;
    let statuses = send_all(garbage(30)).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::UNAUTHORIZED));
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        2,
        "30 unknown kids after the interval: exactly one more fetch"
    );

    // The app's own key still verifies there (no fetch needed).
    let key = {
        let alice = app.login(ALICE).await;
        alice.upload_ok("a.txt", sample_bytes(10)).await;
        app.only_stored_file()
    };
    let res = app
        .anon
        .get(format!(
            "{server}/d/{}",
            app.mint(&app.claims(&key, "a.txt"))
        ))
        .send()
        .await
        .expect("download request");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

/// The app's published JWK Set, as JSON.
async fn published_jwks(app: &TestApp) -> Value {
    app.anon
        .get(format!("{}/.well-known/jwks.json", app.app_url))
        .send()
        .await
        .expect("jwks request")
        .json()
        .await
        .expect("jwks JSON")
}

/// The `retired_at` the set gives the key `kid`, if any.
fn retired_at_of(jwks: &Value, kid: &str) -> Option<u64> {
    jwks["keys"]
        .as_array()
        .expect("keys array")
        .iter()
        .find(|k| k["kid"] == kid)
        .and_then(|k| k["retired_at"].as_u64())
}

/// Two download servers that only know the app's keys from outside, started now: one on its
/// JWKS URL (refreshed every second), one on `keys/jwks.json`.
async fn outside_download_servers(app: &TestApp) -> [String; 2] {
    let mut by_url = download_config(app, "memory");
    by_url.keys = Vec::new();
    by_url.jwks_url = Some(format!("{}/.well-known/jwks.json", app.app_url));
    by_url.jwks_refresh_secs = 1;
    by_url.jwks_min_refresh_secs = 0;
    let mut by_file = download_config(app, "memory");
    by_file.keys = Vec::new();
    by_file.jwks_file = Some(app.data_dir.join("keys/jwks.json"));
    // Links in flight across a rotation are what these serve, not a restart: they serve at once.
    by_url.accept_tokens_issued_before_start = true;
    by_file.accept_tokens_issued_before_start = true;
    [
        start_download_server(by_url).await,
        start_download_server(by_file).await,
    ]
}

/// The status `GET {server}/d/{token}` answers.
async fn status_of(app: &TestApp, server: &str, token: &str) -> StatusCode {
    app.anon
        .get(format!("{server}/d/{token}"))
        .send()
        .await
        .expect("download request")
        .status()
}

/// Waits (bounded) until `HEAD {server}/d/{token}` answers `want`: servers follow a key
/// change on an interval (file stat, JWKS refresh), so there is no event to wait on.
async fn wait_for_head(app: &TestApp, server: &str, token: &str, want: StatusCode) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = app
            .anon
            .head(format!("{server}/d/{token}"))
            .send()
            .await
            .expect("HEAD")
            .status();
        if status == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "HEAD {server}: {status}, waiting for {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_retired_key_mints_nothing_dated_after_its_rotation() {
    // The embedded server allows what the outside ones do: `iat` 5 s ahead.
    let app = spawn_with(|c| c.leeway = 5).await;
    let key = {
        let alice = app.login(ALICE).await;
        alice.upload_ok("a.txt", sample_bytes(10)).await;
        app.only_stored_file()
    };
    let old = app.signing_key();
    let old_kid = old.kid().to_owned();
    let rotated = shared::unix_now();
    let rotation = app_server::keys::rotate_configured(&app.config)
        .await
        .expect("keys rotate");
    let new_kid = rotation.active_kid.clone();
    wait_for_kids(&app, "both keys published", |kids| {
        kids.contains(&new_kid) && kids.contains(&old_kid)
    })
    .await;
    // The set says when the old key stopped signing, on the endpoint and in the file.
    let jwks = published_jwks(&app).await;
    let retired_at = retired_at_of(&jwks, &old_kid).expect("retired_at of the old key");
    assert!(retired_at >= rotated, "{jwks}");
    assert_eq!(retired_at_of(&jwks, &new_kid), None, "{jwks}");
    let file: Value = serde_json::from_slice(
        &std::fs::read(app.data_dir.join("keys/jwks.json")).expect("keys/jwks.json"),
    )
    .expect("jwks.json is JSON");
    assert_eq!(retired_at_of(&file, &old_kid), Some(retired_at));
    let [by_url, by_file] = outside_download_servers(&app).await;
    let servers = [app.dl_url.clone(), by_url, by_file];

    // Signed before the rotation took effect (a link in flight): still good everywhere.
    for server in &servers {
        let token = old.mint(&app.claims(&key, "a.txt")).expect("mint");
        assert_eq!(
            status_of(&app, server, &token).await,
            StatusCode::OK,
            "{server}"
        );
    }

    // A stolen copy of the old key dating a token after its retirement (+ the 5 s leeway,
    // which `iat` may also be ahead of the clock by): refused everywhere.
    burnlink_tests::sleep_until_second(retired_at + 1).await;
    let dated_after = |signer: &SigningKey| {
        let mut claims = app.claims(&key, "a.txt");
        claims.iat = shared::unix_now() + 5;
        signer.mint(&claims).expect("mint")
    };
    for server in &servers {
        let res = app
            .anon
            .get(format!("{server}/d/{}", dated_after(&old)))
            .send()
            .await
            .expect("download request");
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{server}");
        assert_eq!(error_code(res).await, "invalid_token");
        // The same claims from the active key pass: only the retirement refused it.
        let token = dated_after(&app.signing_key());
        assert_eq!(
            status_of(&app, server, &token).await,
            StatusCode::OK,
            "{server}"
        );
    }
}

#[tokio::test]
async fn keys_revoke_cuts_a_key_off_at_once() {
    // Links the old key signs within the leeway after the rotation are in flight, as above.
    let app = spawn_with(|c| c.leeway = 5).await;
    let key = {
        let alice = app.login(ALICE).await;
        alice.upload_ok("a.txt", sample_bytes(10)).await;
        app.only_stored_file()
    };
    let old = app.signing_key();
    let old_kid = old.kid().to_owned();
    let rotation = app_server::keys::rotate_configured(&app.config)
        .await
        .expect("keys rotate");
    wait_for_kids(&app, "both keys published", |kids| {
        kids.contains(&rotation.active_kid) && kids.contains(&old_kid)
    })
    .await;
    let [by_url, by_file] = outside_download_servers(&app).await;
    let servers = [app.dl_url.clone(), by_url, by_file];
    let token = old.mint(&app.claims(&key, "a.txt")).expect("mint");
    for server in &servers {
        wait_for_head(&app, server, &token, StatusCode::OK).await;
    }

    let revoked = app_server::keys::revoke_configured(&app.config, &old_kid)
        .await
        .expect("keys revoke");
    assert!(revoked.rotated_to.is_none());
    // Written at once, even with no app server running.
    let file: Value = serde_json::from_slice(
        &std::fs::read(app.data_dir.join("keys/jwks.json")).expect("keys/jwks.json"),
    )
    .expect("jwks.json is JSON");
    assert_eq!(kids_of(&file), std::slice::from_ref(&rotation.active_kid));
    wait_for_kids(&app, "revoked key unpublished", |kids| {
        kids == std::slice::from_ref(&rotation.active_kid)
    })
    .await;
    for server in &servers {
        wait_for_head(&app, server, &token, StatusCode::UNAUTHORIZED).await;
        let res = app
            .anon
            .get(format!("{server}/d/{token}"))
            .send()
            .await
            .expect("download request");
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{server}");
        assert_eq!(error_code(res).await, "invalid_token");
    }

    // Revoking the active key rotates it out first: links it signed die, new links work.
    let active = app.signing_key();
    let token = active.mint(&app.claims(&key, "a.txt")).expect("mint");
    let revoked = app_server::keys::revoke_configured(&app.config, active.kid())
        .await
        .expect("keys revoke of the active key");
    let new_kid = revoked.rotated_to.expect("rotated to a new key");
    assert_eq!(app.signing_key().kid(), new_kid);
    wait_for_kids(&app, "only the new key published", |kids| {
        kids == std::slice::from_ref(&new_kid)
    })
    .await;
    wait_for_head(&app, &app.dl_url, &token, StatusCode::UNAUTHORIZED).await;
    let fresh = app.mint(&app.claims(&key, "a.txt"));
    wait_for_head(&app, &app.dl_url, &fresh, StatusCode::OK).await;
}

/// Body bytes [`endless_jwks_server`] writes at most, so that a reader without a limit
/// cannot take the machine down while the test shows it has none.
const ENDLESS_CAP: u64 = 64 << 20;

/// A JWKS URL that answers 200 with a chunked body that never ends (64 KiB chunks, up to
/// [`ENDLESS_CAP`]). The receiver gets how many body bytes were written before the reader
/// hung up.
async fn endless_jwks_server() -> (String, tokio::sync::oneshot::Receiver<u64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/.well-known/jwks.json",
        listener.local_addr().expect("addr")
    );
    let (done, written) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let Ok((mut conn, _)) = listener.accept().await else {
            return;
        };
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                    transfer-encoding: chunked\r\n\r\n";
        if conn.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let mut chunk = b"10000\r\n".to_vec();
        chunk.extend(std::iter::repeat_n(b' ', 0x10000));
        chunk.extend_from_slice(b"\r\n");
        let mut sent = 0u64;
        while sent < ENDLESS_CAP && conn.write_all(&chunk).await.is_ok() {
            sent += 0x10000;
        }
        let _ = done.send(sent);
    });
    (url, written)
}

#[tokio::test]
async fn an_endless_jwks_body_is_cut_at_the_limit_and_the_server_keeps_its_keys() {
    let app = spawn_with(|_| {}).await;
    let (jwks_url, written) = endless_jwks_server().await;
    // The app's key in-process, so the server has one while its URL misbehaves.
    let mut config = download_config(&app, "memory");
    config.jwks_url = Some(jwks_url);
    let started = Instant::now();
    let server = start_download_server(config).await;
    let written = tokio::time::timeout(Duration::from_secs(10), written)
        .await
        .expect("the reader hung up")
        .expect("a count");
    // 256 KiB read, plus what the two sockets' buffers held when it hung up.
    assert!(
        written < 16 << 20,
        "{written} bytes were taken before giving up"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "gave up at the limit, not at the fetch deadline: {:?}",
        started.elapsed()
    );

    let key = {
        let alice = app.login(ALICE).await;
        alice.upload_ok("a.txt", sample_bytes(10)).await;
        app.only_stored_file()
    };
    let token = app.mint(&app.claims(&key, "a.txt"));
    assert_eq!(status_of(&app, &server, &token).await, StatusCode::OK);
}
