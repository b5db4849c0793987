//! Logging in and out, sessions, CSRF.

use burnlink_tests::{ALICE, BOB, client, error_code, spawn};
use reqwest::StatusCode;

#[tokio::test]
async fn bad_credentials_are_401_alike_for_unknown_users() {
    let app = spawn().await;
    for (user, password) in [("alice", "wrong-password"), ("nobody", "whatever-password")] {
        let res = app
            .anon
            .post(format!("{}/api/login", app.app_url))
            .json(&serde_json::json!({ "username": user, "password": password }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{user}");
        assert!(res.headers().get("set-cookie").is_none());
        assert_eq!(error_code(res).await, "invalid_credentials");
    }
}

#[tokio::test]
async fn session_cookie_is_http_only_and_lax() {
    let app = spawn().await;
    let res = client()
        .post(format!("{}/api/login", app.app_url))
        .json(&serde_json::json!({ "username": ALICE.0, "password": ALICE.1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("burnlink_session="), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(!cookie.contains("Secure"), "no TLS here: {cookie}");
}

#[tokio::test]
async fn no_session_is_401_on_every_api_route() {
    let app = spawn().await;
    let base = &app.app_url;
    let anon = &app.anon;
    for req in [
        anon.get(format!("{base}/api/me")),
        anon.get(format!("{base}/api/files")),
        anon.post(format!("{base}/api/files")),
        anon.delete(format!("{base}/api/files/x")),
        anon.post(format!("{base}/api/files/x/link")),
        anon.post(format!("{base}/api/logout")),
    ] {
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(error_code(res).await, "unauthorized");
    }
}

#[tokio::test]
async fn state_changing_requests_without_csrf_are_403() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let file = alice.upload_ok("a.txt", b"x".to_vec()).await;
    let base = &app.app_url;
    for token in [None, Some("wrong-token")] {
        let with = |req: reqwest::RequestBuilder| match token {
            Some(t) => req.header("X-CSRF-Token", t),
            None => req,
        };
        for req in [
            with(
                alice
                    .client
                    .post(format!("{base}/api/files/{}/link", file.id)),
            ),
            with(alice.client.delete(format!("{base}/api/files/{}", file.id))),
            with(alice.client.post(format!("{base}/api/logout"))),
        ] {
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), StatusCode::FORBIDDEN, "csrf {token:?}");
            assert_eq!(error_code(res).await, "csrf");
        }
    }
    // Nothing happened: the file is there and the session alive.
    assert_eq!(alice.list().await.status(), StatusCode::OK);
    let listed: serde_json::Value = alice.list().await.json().await.unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn logout_kills_the_session() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let cookie_before = alice
        .client
        .get(format!("{}/api/me", app.app_url))
        .send()
        .await
        .unwrap();
    assert_eq!(cookie_before.status(), StatusCode::OK);
    assert_eq!(alice.logout().await.status(), StatusCode::NO_CONTENT);
    let res = alice
        .client
        .get(format!("{}/api/me", app.app_url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn logout_revokes_the_session_server_side_not_just_the_cookie() {
    let app = spawn().await;
    let res = app
        .anon
        .post(format!("{}/api/login", app.app_url))
        .json(&serde_json::json!({ "username": ALICE.0, "password": ALICE.1 }))
        .send()
        .await
        .unwrap();
    let cookie = res.headers()["set-cookie"].to_str().unwrap();
    let pair = cookie.split(';').next().unwrap().to_owned();
    let csrf = res.json::<serde_json::Value>().await.unwrap()["csrf_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let me = || {
        reqwest::Client::new()
            .get(format!("{}/api/me", app.app_url))
            .header("Cookie", &pair)
            .send()
    };
    assert_eq!(me().await.unwrap().status(), StatusCode::OK);
    let out = reqwest::Client::new()
        .post(format!("{}/api/logout", app.app_url))
        .header("Cookie", &pair)
        .header("X-CSRF-Token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    // Replaying the old cookie value by hand: the server forgot it.
    assert_eq!(me().await.unwrap().status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn login_rotates_the_session_id() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let first: serde_json::Value = alice.get_json(format!("{}/api/me", app.app_url)).await;
    let again = alice
        .client
        .post(format!("{}/api/login", app.app_url))
        .json(&serde_json::json!({ "username": BOB.0, "password": BOB.1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    let second: serde_json::Value = again.json().await.unwrap();
    assert_ne!(first["csrf_token"], second["csrf_token"]);
    assert_eq!(second["username"], "bob");
}

#[tokio::test]
async fn jwks_publishes_the_signing_key() {
    let app = spawn().await;
    let jwks: serde_json::Value = app
        .anon
        .get(format!("{}/.well-known/jwks.json", app.app_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kid"], app.signing_key().kid());
    assert_eq!(keys[0]["kty"], "OKP");
    assert_eq!(keys[0]["crv"], "Ed25519");
    assert!(keys[0].get("d").is_none(), "private part published: {jwks}");
}
