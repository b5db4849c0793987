//! Personal access tokens: `Authorization: Bearer blpat_…` on `/api/*`, scopes enforced per
//! route, revocation and expiry, and never a token in the logs.

use burnlink_tests::{ALICE, User, error_code, spawn};
use reqwest::{Client, Method, Response, StatusCode};
use serde_json::{Value, json};

/// A request with only the bearer token: no cookie, no CSRF token.
async fn bearer(
    app_url: &str,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Response {
    let mut req = Client::new()
        .request(method, format!("{app_url}{path}"))
        .bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.expect("request")
}

async fn upload_with(app_url: &str, token: &str, name: &str) -> Response {
    let part = reqwest::multipart::Part::bytes(b"hello".to_vec()).file_name(name.to_owned());
    Client::new()
        .post(format!("{app_url}/api/files"))
        .bearer_auth(token)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .expect("upload")
}

async fn share_id(alice: &User, file_id: &str) -> String {
    let res = alice
        .client
        .post(format!("{}/api/files/{file_id}/shares", alice.app_url))
        .header("X-CSRF-Token", &alice.csrf)
        .json(&json!({}))
        .send()
        .await
        .expect("share");
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.expect("share JSON");
    body["id"].as_str().expect("id").to_owned()
}

/// Each request a token may make, with the one scope it needs; every token tries all of them.
#[tokio::test]
async fn each_scope_allows_what_it_names_and_nothing_else() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let url = &app.app_url;
    for scope in ["files:read", "files:write", "shares:write", "links:mint"] {
        let token = alice.create_token(&[scope]).await;
        let file = alice.upload_ok("a.txt", b"abc".to_vec()).await;
        let share = share_id(&alice, &file.id).await;
        let f = &file.id;
        let cases: Vec<(&str, Response)> = vec![
            (
                "files:read",
                bearer(url, &token, Method::GET, "/api/files", None).await,
            ),
            (
                "files:read",
                bearer(
                    url,
                    &token,
                    Method::GET,
                    &format!("/api/files/{f}/shares"),
                    None,
                )
                .await,
            ),
            (
                "files:read",
                bearer(
                    url,
                    &token,
                    Method::GET,
                    &format!("/api/shares/{share}/downloads"),
                    None,
                )
                .await,
            ),
            (
                "files:read",
                bearer(url, &token, Method::GET, "/api/downloads", None).await,
            ),
            ("files:write", upload_with(url, &token, "b.txt").await),
            (
                "links:mint",
                bearer(
                    url,
                    &token,
                    Method::POST,
                    &format!("/api/files/{f}/link"),
                    None,
                )
                .await,
            ),
            (
                "shares:write",
                bearer(
                    url,
                    &token,
                    Method::POST,
                    &format!("/api/files/{f}/shares"),
                    Some(json!({"max_downloads": 2})),
                )
                .await,
            ),
            (
                "shares:write",
                bearer(
                    url,
                    &token,
                    Method::DELETE,
                    &format!("/api/shares/{share}"),
                    None,
                )
                .await,
            ),
            (
                "files:write",
                bearer(
                    url,
                    &token,
                    Method::DELETE,
                    &format!("/api/files/{f}"),
                    None,
                )
                .await,
            ),
        ];
        for (needs, res) in cases {
            let status = res.status();
            if needs == scope {
                assert!(status.is_success(), "{scope} on a {needs} route: {status}");
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "{scope} on a {needs} route");
                assert!(
                    res.headers()["www-authenticate"]
                        .to_str()
                        .expect("ascii")
                        .contains("insufficient_scope")
                );
                assert_eq!(error_code(res).await, "insufficient_scope");
            }
        }
    }
}

#[tokio::test]
async fn no_token_can_make_tokens_log_out_or_read_the_csrf_token() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let all = ["files:read", "files:write", "shares:write", "links:mint"];
    let token = alice.create_token(&all).await;
    let url = &app.app_url;
    let new = json!({"name": "more", "scopes": all});
    for (method, path, body) in [
        (Method::POST, "/api/tokens", Some(new)),
        (Method::GET, "/api/tokens", None),
        (Method::DELETE, "/api/tokens/whatever", None),
        (Method::POST, "/api/logout", None),
        (Method::GET, "/api/me", None),
    ] {
        let res = bearer(url, &token, method.clone(), path, body).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{method} {path}");
        assert_eq!(error_code(res).await, "insufficient_scope");
    }
    // Still one token, and the session still works.
    let list: Vec<Value> = alice
        .client
        .get(format!("{url}/api/tokens"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("JSON");
    assert_eq!(list.len(), 1);
}

#[tokio::test]
async fn a_token_is_shown_once_listed_with_last_use_and_stored_hashed() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let res = alice
        .client
        .post(format!("{}/api/tokens", app.app_url))
        .header("X-CSRF-Token", &alice.csrf)
        .json(&json!({"name": "backup job", "scopes": ["files:read"], "expires_in_secs": 3600}))
        .send()
        .await
        .expect("create");
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.expect("JSON");
    let token = created["token"].as_str().expect("token");
    assert!(
        token.starts_with("blpat_") && token.len() >= 6 + 43,
        "{token}"
    );
    assert_eq!(created["scopes"], json!(["files:read"]));
    assert!(created["expires_at"].as_i64().is_some());

    let list = |alice: &User| {
        let req = alice.client.get(format!("{}/api/tokens", alice.app_url));
        async move {
            req.send()
                .await
                .expect("list")
                .json::<Vec<Value>>()
                .await
                .expect("JSON")
        }
    };
    let before = list(&alice).await;
    assert_eq!(before[0]["name"], "backup job");
    assert!(before[0]["last_used_at"].is_null());
    assert!(!before[0].to_string().contains(token));
    let res = bearer(&app.app_url, token, Method::GET, "/api/files", None).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(list(&alice).await[0]["last_used_at"].as_i64().is_some());

    let (stored,): (String,) = sqlx::query_as("SELECT token_hash FROM access_tokens")
        .fetch_one(&app.db)
        .await
        .expect("row");
    assert_eq!(stored.len(), 64);
    assert!(!stored.contains(&token[6..]));
}

#[tokio::test]
async fn bad_token_requests_are_400_and_csrf_is_still_needed_with_a_session() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let url = format!("{}/api/tokens", app.app_url);
    let post = |body: Value, csrf: bool| {
        let mut req = alice.client.post(&url).json(&body);
        if csrf {
            req = req.header("X-CSRF-Token", &alice.csrf);
        }
        async move { req.send().await.expect("request") }
    };
    for body in [
        json!({"name": "x", "scopes": ["files:*"]}),
        json!({"name": "x", "scopes": []}),
        json!({"name": "", "scopes": ["files:read"]}),
        json!({"name": "x", "scopes": ["files:read"], "expires_in_secs": 0}),
    ] {
        let res = post(body.clone(), true).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(error_code(res).await, "bad_request");
    }
    let res = post(json!({"name": "x", "scopes": ["files:read"]}), false).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(res).await, "csrf");
    assert_eq!(app.count_rows("access_tokens").await, 0);
}

#[tokio::test]
async fn revoked_expired_and_unknown_tokens_are_401() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let url = &app.app_url;
    let ok = |token: String| async move {
        bearer(url, &token, Method::GET, "/api/files", None)
            .await
            .status()
    };
    let refused = |token: String| async move {
        let res = bearer(url, &token, Method::GET, "/api/files", None).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{token}");
        assert!(
            res.headers()["www-authenticate"]
                .to_str()
                .expect("ascii")
                .starts_with("Bearer")
        );
        assert_eq!(error_code(res).await, "invalid_token");
    };

    // Revoked.
    let token = alice.create_token(&["files:read"]).await;
    assert_eq!(ok(token.clone()).await, StatusCode::OK);
    let list: Vec<Value> = alice
        .client
        .get(format!("{url}/api/tokens"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("JSON");
    let id = list[0]["id"].as_str().expect("id");
    let res = alice
        .client
        .delete(format!("{url}/api/tokens/{id}"))
        .header("X-CSRF-Token", &alice.csrf)
        .send()
        .await
        .expect("revoke");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    refused(token).await;

    // Expired: its expiry moved into the past, as time would.
    let token = alice.create_token(&["files:read"]).await;
    assert_eq!(ok(token.clone()).await, StatusCode::OK);
    sqlx::query("UPDATE access_tokens SET expires_at = 1")
        .execute(&app.db)
        .await
        .expect("update");
    refused(token).await;

    // Unknown, malformed, another scheme; a cookie alongside changes nothing.
    refused(format!("blpat_{}", "A".repeat(43))).await;
    refused("not-a-token".into()).await;
    let res = alice
        .client
        .get(format!("{url}/api/files"))
        .header("Authorization", "Bearer ")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(res).await, "invalid_token");
}

/// A reverse proxy's own login (`Authorization: Basic`, sent by the browser on every request)
/// does not stand in the way of the session.
#[tokio::test]
async fn another_authorization_scheme_leaves_the_session_in_charge() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let res = alice
        .client
        .get(format!("{}/api/files", app.app_url))
        .header("Authorization", "Basic YWxpY2U6eA==")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .anon
        .get(format!("{}/api/files", app.app_url))
        .header("Authorization", "Basic YWxpY2U6eA==")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(res).await, "unauthorized");
}

#[tokio::test]
async fn a_password_change_or_the_users_deletion_revokes_their_tokens() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let url = &app.app_url;
    let token = alice.create_token(&["files:read"]).await;
    let status = |token: String| async move {
        bearer(url, &token, Method::GET, "/api/files", None)
            .await
            .status()
    };
    assert_eq!(status(token.clone()).await, StatusCode::OK);
    let alice_name = app_server::users::Username::parse(ALICE.0).expect("name");
    let password = app_server::users::Password::parse("a-new-password").expect("password");
    app_server::users::change_password(&app.db, &alice_name, password)
        .await
        .expect("change");
    assert_eq!(status(token).await, StatusCode::UNAUTHORIZED);

    let alice = app.login((ALICE.0, "a-new-password")).await;
    let token = alice.create_token(&["files:read"]).await;
    assert_eq!(status(token.clone()).await, StatusCode::OK);
    let files = app
        .config
        .file_store
        .open(app.files_dir())
        .await
        .expect("the app's file store");
    app_server::users::delete(&app.db, &files, &alice_name)
        .await
        .expect("delete");
    assert_eq!(status(token).await, StatusCode::UNAUTHORIZED);
    assert_eq!(app.count_rows("access_tokens").await, 0);
}

#[tokio::test]
async fn tokens_never_appear_in_logs() {
    let logs = burnlink_tests::logs::lines();
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let token = alice.create_token(&["files:read"]).await;
    let url = &app.app_url;
    assert_eq!(
        bearer(url, &token, Method::GET, "/api/files", None)
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        bearer(url, &token, Method::POST, "/api/tokens", Some(json!({})))
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    sqlx::query("DELETE FROM access_tokens")
        .execute(&app.db)
        .await
        .expect("delete");
    assert_eq!(
        bearer(url, &token, Method::GET, "/api/files", None)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let text = String::from_utf8_lossy(&logs.lock().expect("logs")).into_owned();
    assert!(
        text.contains("access token created"),
        "token creation is logged"
    );
    assert!(!text.contains(&token[6..]), "a token was logged");
}

#[tokio::test]
async fn the_access_tokens_page_makes_a_token_shows_it_once_and_revokes_it() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let url = &app.app_url;
    let page = alice
        .client
        .get(format!("{url}/tokens"))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.expect("HTML").contains("name=\"scope\""));

    let form = |csrf: &str| {
        format!(
            "csrf_token={csrf}&name=nightly+backup&scope=files%3Aread&scope=links%3Amint&expires_days=7"
        )
    };
    let post = |body: String| {
        alice
            .client
            .post(format!("{url}/tokens"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let forged = post(form("wrong")).await.expect("post");
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.count_rows("access_tokens").await, 0);

    let created = post(form(&alice.csrf)).await.expect("post");
    assert_eq!(created.status(), StatusCode::CREATED);
    let html = created.text().await.expect("HTML");
    let start = html.find("blpat_").expect("the token is shown");
    let token: String = html[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    let files = bearer(url, &token, Method::GET, "/api/files", None).await;
    assert_eq!(files.status(), StatusCode::OK);

    let page = alice
        .client
        .get(format!("{url}/tokens"))
        .send()
        .await
        .expect("page");
    let html = page.text().await.expect("HTML");
    assert!(html.contains("nightly backup") && html.contains("files:read, links:mint"));
    assert!(!html.contains(&token), "the secret is shown only once");
    let list: Vec<Value> = alice
        .client
        .get(format!("{url}/api/tokens"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("JSON");
    let id = list[0]["id"].as_str().expect("id");
    let revoked = alice
        .client
        .post(format!("{url}/tokens/{id}/revoke"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("csrf_token={}", alice.csrf))
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoked.status(), StatusCode::SEE_OTHER);
    let files = bearer(url, &token, Method::GET, "/api/files", None).await;
    assert_eq!(files.status(), StatusCode::UNAUTHORIZED);
}
