//! Sign-in through a real OpenID Provider (panva's oidc-provider, `tests/src/oidc.rs`): the
//! whole code flow as a browser walks it, each refusal the protocol asks for (a tampered ID
//! token, another sign-in's nonce, another client's audience, a replayed code, a wrong or
//! foreign `state`, a user outside the allowed groups), the provider down or misconfigured,
//! `--password-login false`, and the session that follows behaving as a password session.
//! Skipped without node or the installed provider (a failure under `CI=true`).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use burnlink_tests::oidc::{self, CAROL, CLIENT_ID, Idp, IdpUser, MALLORY, spawn_with_idp};
use burnlink_tests::{
    ALICE, TestApp, User, client, error_code, get_text, sample_bytes, spawn_with,
};
use reqwest::{Client, Response, StatusCode, header};
use serde_json::{Value, json};
use sha2::Digest;

fn location(res: &Response) -> String {
    res.headers()
        .get(header::LOCATION)
        .expect("Location")
        .to_str()
        .expect("ASCII")
        .to_owned()
}

fn sets_session_cookie(res: &Response) -> bool {
    res.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .any(|c| c.to_str().unwrap_or("").starts_with("burnlink_session=") && !c.is_empty())
}

/// A refusal page: its status, and its text contains `needle`; no session was started.
async fn refused(res: Response, status: StatusCode, needle: &str) -> String {
    assert_eq!(res.status(), status);
    assert!(
        !sets_session_cookie(&res),
        "a refused sign-in set a session"
    );
    assert_eq!(
        res.headers()[header::CONTENT_TYPE],
        "text/html; charset=utf-8"
    );
    let body = res.text().await.expect("page");
    assert!(body.contains(needle), "{needle:?} not on the page: {body}");
    body
}

/// `GET /api/me` with `browser`'s session: the username, or the status.
async fn me(browser: &Client, app: &TestApp) -> Result<Value, StatusCode> {
    let res = browser
        .get(format!("{}/api/me", app.app_url))
        .send()
        .await
        .expect("me");
    match res.status() {
        StatusCode::OK => Ok(res.json().await.expect("me JSON")),
        other => Err(other),
    }
}

/// `POST /api/login` with `client`.
async fn password_login(
    client: &Client,
    app: &TestApp,
    username: &str,
    password: &str,
) -> Response {
    client
        .post(format!("{}/api/login", app.app_url))
        .json(&json!({ "username": username, "password": password }))
        .send()
        .await
        .expect("login request")
}

/// `browser` has no session.
async fn logged_out(browser: &Client, app: &TestApp) {
    assert_eq!(me(browser, app).await.err(), Some(StatusCode::UNAUTHORIZED));
}

/// A sign-in as `user` with a fresh browser, refused with `status` and `needle` on the page;
/// the browser has no session after it.
async fn sign_in_refused(
    idp: &Idp,
    app: &TestApp,
    user: IdpUser,
    status: StatusCode,
    needle: &str,
) {
    let browser = client();
    let res = idp.sign_in(&browser, &app.app_url, user).await;
    refused(res, status, needle).await;
    logged_out(&browser, app).await;
}

/// Carol's sign-in refused for its ID token's signature.
async fn signature_refused(idp: &Idp, app: &TestApp) {
    let (status, needle) = (StatusCode::BAD_GATEWAY, "signature does not verify");
    sign_in_refused(idp, app, CAROL, status, needle).await;
}

/// `GET /oidc/login` with `client`: where a sign-in starts.
async fn start_sign_in(client: &Client, app: &TestApp) -> Response {
    client
        .get(format!("{}/oidc/login", app.app_url))
        .send()
        .await
        .expect("sign-in request")
}

/// `url` with its query parameter `key` set to `value` (`None`: left out).
fn with_param(url: &reqwest::Url, key: &str, value: Option<&str>) -> reqwest::Url {
    let mut changed = url.clone();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .into_owned()
        .filter_map(|(k, v)| match (k == key, value) {
            (true, Some(value)) => Some((k, value.to_owned())),
            (true, None) => None,
            (false, _) => Some((k, v)),
        })
        .collect();
    changed.query_pairs_mut().clear().extend_pairs(pairs);
    changed
}

/// The value of `url`'s query parameter `key`.
fn param(url: &reqwest::Url, key: &str) -> String {
    url.query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("{key} in {url}"))
}

/// Carol signed in with a fresh browser, as the harness's [`User`].
async fn carol(idp: &Idp, app: &TestApp) -> User {
    let browser = client();
    let res = idp.sign_in(&browser, &app.app_url, CAROL).await;
    if res.status() != StatusCode::SEE_OTHER {
        panic!("carol not signed in: {}", res.text().await.unwrap());
    }
    assert_eq!(location(&res), "/");
    let me = me(&browser, app).await.expect("a session");
    User {
        csrf: me["csrf_token"].as_str().expect("csrf").to_owned(),
        client: browser,
        app_url: app.app_url.clone(),
    }
}

/// The ID token with one claim of its payload changed, header and signature kept.
fn tampered(id_token: &str, claim: &str, value: Value) -> String {
    let parts: Vec<&str> = id_token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWS");
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("base64url"))
            .expect("JSON");
    payload[claim] = value;
    let payload = URL_SAFE_NO_PAD.encode(payload.to_string());
    format!("{}.{payload}.{}", parts[0], parts[2])
}

/// How many users the app has.
async fn users(app: &TestApp) -> i64 {
    app.count_rows("users").await
}

#[tokio::test]
async fn signing_in_through_the_provider_starts_a_rotated_http_only_session() {
    let Some((idp, app)) = spawn_with_idp(|_| {}).await else {
        return;
    };
    let browser = client();
    // Logged in with a password first: the sign-in must end that session.
    let res = password_login(&browser, &app, ALICE.0, ALICE.1).await;
    assert_eq!(res.status(), StatusCode::OK);
    let alice_cookie = res.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    let alice_pair = alice_cookie.split(';').next().unwrap().to_owned();

    // The authorization request: code flow, PKCE S256, state and nonce.
    let start = start_sign_in(&browser, &app).await;
    assert_eq!(start.status(), StatusCode::SEE_OTHER);
    let authorize = reqwest::Url::parse(&location(&start)).unwrap();
    assert!(
        authorize
            .as_str()
            .starts_with(&format!("{}/auth?", idp.issuer))
    );
    let query: std::collections::HashMap<String, String> =
        authorize.query_pairs().into_owned().collect();
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["client_id"], CLIENT_ID);
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["code_challenge"].len(), 43);
    assert!(query["state"].len() >= 22 && query["nonce"].len() >= 22);
    assert_eq!(
        query["redirect_uri"],
        format!("{}/oidc/callback", app.app_url)
    );
    let binding = start.headers()[header::SET_COOKIE].to_str().unwrap();
    for part in ["burnlink_oidc=", "HttpOnly", "SameSite=Lax", "Path=/oidc"] {
        assert!(binding.contains(part), "{binding}");
    }

    let res = idp.sign_in(&browser, &app.app_url, CAROL).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/");
    let cookie = res
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|c| c.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("burnlink_session="))
        .expect("a session cookie");
    for part in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    let me = me(&browser, &app).await.expect("signed in");
    assert_eq!(me["username"], "carol");

    // The password session it replaced is gone server-side.
    let old = Client::new()
        .get(format!("{}/api/me", app.app_url))
        .header(header::COOKIE, &alice_pair)
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), StatusCode::UNAUTHORIZED);

    // The user is known by (issuer, sub), and has no password.
    let (issuer, subject): (String, String) =
        sqlx::query_as("SELECT issuer, subject FROM oidc_identities")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(
        (issuer.as_str(), subject.as_str()),
        (idp.issuer.as_str(), "carol")
    );
    let res = password_login(&app.anon, &app, "carol", "!").await;
    assert_eq!(error_code(res).await, "invalid_credentials");
    // The used sign-in is gone; the one started by hand above waits until it expires.
    assert_eq!(app.count_rows("oidc_logins").await, 1);
}

#[tokio::test]
async fn a_second_sign_in_finds_the_same_user_by_issuer_and_sub() {
    let Some((idp, app)) = spawn_with_idp(|_| {}).await else {
        return;
    };
    let first = carol(&idp, &app).await;
    let file = first.upload_ok("a.txt", b"kept".to_vec()).await;
    let before = users(&app).await;
    let second = carol(&idp, &app).await;
    assert_eq!(users(&app).await, before, "no second user");
    let listed: Value = second.get_json(format!("{}/api/files", app.app_url)).await;
    assert_eq!(listed[0]["id"], file.id.as_str(), "the same user's files");
}

#[tokio::test]
async fn a_local_user_named_like_the_provider_s_user_is_not_taken_over() {
    let Some((idp, app)) = spawn_with_idp(|_| {}).await else {
        return;
    };
    let local = app_server::admin::Admin::connect(&app.config)
        .await
        .unwrap();
    local
        .run(
            &app_server::UserCommand::Add {
                name: "carol".into(),
                admin: false,
            },
            Some("local-carol-password"),
        )
        .await
        .unwrap();
    let local_carol = app.login(("carol", "local-carol-password")).await;
    local_carol.upload_ok("local.txt", b"mine".to_vec()).await;

    let remote = carol(&idp, &app).await;
    let me: Value = remote.get_json(format!("{}/api/me", app.app_url)).await;
    let digest = sha2::Sha256::digest(format!("{}\ncarol", idp.issuer));
    let suffix: String = digest[..3].iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(me["username"], format!("carol-{suffix}"));
    let listed: Value = remote.get_json(format!("{}/api/files", app.app_url)).await;
    assert_eq!(listed, json!([]), "the local carol's files are not theirs");
}

/// A user of the provider has no password, and cannot be given one.
#[tokio::test]
async fn a_provider_user_cannot_be_given_a_password() {
    let Some((idp, app)) = spawn_with_idp(|_| {}).await else {
        return;
    };
    carol(&idp, &app).await;
    let admin = app_server::admin::Admin::connect(&app.config)
        .await
        .unwrap();
    let err = admin
        .run(
            &app_server::UserCommand::Passwd {
                name: "carol".into(),
            },
            Some("a-new-password"),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("signs in through the identity provider"),
        "{err}"
    );
    let res = password_login(&app.anon, &app, "carol", "a-new-password").await;
    assert_eq!(error_code(res).await, "invalid_credentials");
}

#[tokio::test]
async fn a_tampered_id_token_is_refused() {
    let Some((idp, app)) = spawn_with_idp(|_| {}).await else {
        return;
    };
    let before = users(&app).await;
    idp.rewrite_next_token_answer(|answer| {
        let id_token = answer["id_token"].as_str().unwrap().to_owned();
        answer["id_token"] = json!(tampered(&id_token, "groups", json!(["staff", "root"])));
    });
    signature_refused(&idp, &app).await;
    assert_eq!(users(&app).await, before, "no user created");
}

#[tokio::test]
async fn an_id_token_from_another_sign_in_is_refused_for_its_nonce() {
    let Some((idp, app)) = spawn_with_idp(|_| {}).await else {
        return;
    };
    carol(&idp, &app).await;
    let earlier = idp.id_tokens().pop().expect("an ID token");
    idp.rewrite_next_token_answer(move |answer| answer["id_token"] = json!(earlier));
    sign_in_refused(&idp, &app, CAROL, StatusCode::BAD_GATEWAY, "nonce mismatch").await;
}

#[tokio::test]
async fn an_id_token_for_another_client_is_refused_for_its_audience() {
    let Some((idp, app)) = spawn_with_idp(|_| {}).await else {
        return;
    };
    // A second app, registered as another client of the same provider.
    let other = spawn_with(|config| idp.configure_as(config, "other-client")).await;
    idp.register(&other, "other-client").await;
    carol(&idp, &other).await;
    let for_other = idp.id_tokens().pop().expect("an ID token");
    let aud: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(for_other.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        aud["aud"], "other-client",
        "validly signed, for the other client"
    );

    idp.rewrite_next_token_answer(move |answer| answer["id_token"] = json!(for_other));
    sign_in_refused(
        &idp,
        &app,
        CAROL,
        StatusCode::BAD_GATEWAY,
        "issued to another client",
    )
    .await;
}

#[tokio::test]
async fn a_replayed_code_is_refused() {
    let Some((idp, app)) = spawn_with_idp(|_| {}).await else {
        return;
    };
    let browser = client();
    let first = idp.authorize(&browser, &app.app_url, Some(CAROL)).await;
    let res = browser.get(&first).send().await.unwrap();
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "the first use signs in"
    );

    // The same answer again: its state was used.
    let again = client();
    let res = again.get(&first).send().await.unwrap();
    refused(res, StatusCode::BAD_REQUEST, "does not belong to a sign-in").await;

    // The used code with a fresh state of this browser: the provider refuses the code.
    let code = param(&reqwest::Url::parse(&first).unwrap(), "code");
    let fresh =
        reqwest::Url::parse(&idp.authorize(&browser, &app.app_url, Some(CAROL)).await).unwrap();
    let replay = with_param(&fresh, "code", Some(&code));
    let tokens_before = idp.id_tokens().len();
    let res = browser.get(replay.as_str()).send().await.unwrap();
    refused(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert_eq!(idp.id_tokens().len(), tokens_before, "no token handed out");
}

#[tokio::test]
async fn a_wrong_state_is_refused_and_the_right_one_still_works() {
    let Some((idp, app)) = spawn_with_idp(|_| {}).await else {
        return;
    };
    let browser = client();
    let answer =
        reqwest::Url::parse(&idp.authorize(&browser, &app.app_url, Some(CAROL)).await).unwrap();
    let wrong = with_param(
        &answer,
        "state",
        Some(&format!("{}x", param(&answer, "state"))),
    );
    let res = browser.get(wrong.as_str()).send().await.unwrap();
    refused(res, StatusCode::BAD_REQUEST, "does not belong to a sign-in").await;
    let missing = with_param(&answer, "state", None);
    let res = browser.get(missing.as_str()).send().await.unwrap();
    refused(res, StatusCode::BAD_REQUEST, "it has no state").await;
    logged_out(&browser, &app).await;

    let res = browser.get(answer.as_str()).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(me(&browser, &app).await.unwrap()["username"], "carol");
}

/// RFC 9207: an answer that names another issuer (a mix-up between providers) is refused,
/// and its sign-in cannot be used again.
#[tokio::test]
async fn an_answer_naming_another_issuer_is_refused() {
    let Some((idp, app)) = spawn_with_idp(|_| {}).await else {
        return;
    };
    let browser = client();
    let answer =
        reqwest::Url::parse(&idp.authorize(&browser, &app.app_url, Some(CAROL)).await).unwrap();
    assert_eq!(
        param(&answer, "iss"),
        idp.issuer,
        "the provider names itself"
    );
    let other = with_param(&answer, "iss", Some("https://evil.example"));
    let res = browser.get(other.as_str()).send().await.unwrap();
    refused(res, StatusCode::BAD_REQUEST, "names another issuer").await;
    let res = browser.get(answer.as_str()).send().await.unwrap();
    refused(res, StatusCode::BAD_REQUEST, "does not belong to a sign-in").await;
}

/// The discovery document is held to what the app needs: every endpoint https (the token
/// endpoint gets the client secret), an asymmetric ID token algorithm. Each document is
/// refused on every reading (at start and at each sign-in) until the provider sends a good one.
#[tokio::test]
async fn an_unsafe_discovery_document_is_refused() {
    let Some(idp) = oidc::start().await else {
        return;
    };
    const DOCUMENT: &str = "/.well-known/openid-configuration";
    idp.rewrite_answers(DOCUMENT, |doc| {
        doc["token_endpoint"] = json!("http://id.example.com/token");
    });
    let app = spawn_with(|c| idp.configure(c)).await;
    let page = refused(
        start_sign_in(&app.anon, &app).await,
        StatusCode::BAD_GATEWAY,
        "is not https",
    )
    .await;
    assert!(page.contains("token_endpoint"), "{page}");
    idp.rewrite_answers(DOCUMENT, |doc| {
        doc["id_token_signing_alg_values_supported"] = json!(["HS256", "none"]);
    });
    refused(
        start_sign_in(&app.anon, &app).await,
        StatusCode::BAD_GATEWAY,
        "no asymmetric",
    )
    .await;
    idp.stop_rewriting(DOCUMENT);
    assert_eq!(
        start_sign_in(&app.anon, &app).await.status(),
        StatusCode::SEE_OTHER
    );
}

/// Login CSRF (RFC 6749 section 10.12): an attacker's own sign-in answer, carried to the
/// victim's browser, must not log the victim in as the attacker.
#[tokio::test]
async fn an_answer_carried_to_another_browser_is_refused() {
    let Some((idp, app)) = spawn_with_idp(|_| {}).await else {
        return;
    };
    let attacker = client();
    let answer = idp.authorize(&attacker, &app.app_url, Some(MALLORY)).await;
    let victim = client();
    let res = victim.get(&answer).send().await.unwrap();
    refused(res, StatusCode::BAD_REQUEST, "does not belong to a sign-in").await;
    logged_out(&victim, &app).await;
}

#[tokio::test]
async fn a_user_outside_the_allowed_groups_is_refused() {
    let Some((idp, app)) = spawn_with_idp(|_| {}).await else {
        return;
    };
    let before = users(&app).await;
    sign_in_refused(
        &idp,
        &app,
        MALLORY,
        StatusCode::FORBIDDEN,
        "not in a group allowed",
    )
    .await;
    assert_eq!(users(&app).await, before, "no user created");
    // Carol, in `staff`, is let in by the same app.
    carol(&idp, &app).await;
}

#[tokio::test]
async fn password_login_false_refuses_passwords_and_keeps_access_tokens() {
    let Some((idp, app)) = spawn_with_idp(|c| c.sign_in.password_login = false).await else {
        return;
    };
    let res = password_login(&app.anon, &app, ALICE.0, ALICE.1).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(!sets_session_cookie(&res));
    assert_eq!(error_code(res).await, "password_login_disabled");

    let res = app
        .anon
        .post(format!("{}/login", app.app_url))
        .form(&[("username", ALICE.0), ("password", ALICE.1)])
        .send()
        .await
        .unwrap();
    let page = refused(res, StatusCode::FORBIDDEN, "turned off on this server").await;
    assert!(
        !page.contains("action=\"/login\""),
        "no password form: {page}"
    );

    let (_, login_page) = get_text(&app.anon, &format!("{}/", app.app_url)).await;
    assert!(login_page.contains("Sign in with Test IdP"), "{login_page}");
    assert!(!login_page.contains("type=\"password\""), "{login_page}");

    // Access tokens keep working.
    let carol = carol(&idp, &app).await;
    carol.upload_ok("ci.log", b"ok".to_vec()).await;
    let token = carol.create_token(&["files:read"]).await;
    let res = app
        .anon
        .get(format!("{}/api/files", app.app_url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()[0]["name"], "ci.log");
}

#[tokio::test]
async fn access_denied_at_the_provider_ends_on_a_page() {
    let Some((idp, app)) = spawn_with_idp(|_| {}).await else {
        return;
    };
    let browser = client();
    let answer = idp.authorize(&browser, &app.app_url, None).await;
    assert!(answer.contains("error=access_denied"), "{answer}");
    let res = browser.get(&answer).send().await.unwrap();
    refused(res, StatusCode::FORBIDDEN, "access_denied").await;
    assert_eq!(
        app.count_rows("oidc_logins").await,
        0,
        "the sign-in is forgotten"
    );
}

#[tokio::test]
async fn the_app_starts_while_the_provider_is_down_and_discovers_it_later() {
    let Some(idp) = oidc::start().await else {
        return;
    };
    idp.set_down(true);
    let app = spawn_with(|c| idp.configure(c)).await;
    idp.register(&app, CLIENT_ID).await;
    let res = start_sign_in(&app.anon, &app).await;
    let page = refused(res, StatusCode::BAD_GATEWAY, "could not be reached").await;
    assert!(page.contains("--oidc-issuer (OIDC_ISSUER)"), "{page}");

    idp.set_down(false);
    carol(&idp, &app).await;
}

/// No provider at all at the issuer (nothing listens): the page names the setting. Needs no
/// node.
#[tokio::test]
async fn an_unreachable_issuer_ends_on_a_page_naming_the_setting() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "s3cret\n").unwrap();
    let app = spawn_with(|c| {
        c.sign_in.oidc_issuer = Some(issuer);
        c.sign_in.oidc_client_id = Some("burnlink".into());
        c.sign_in.oidc_client_secret_file = Some(secret.path().to_owned());
    })
    .await;
    let res = start_sign_in(&app.anon, &app).await;
    refused(res, StatusCode::BAD_GATEWAY, "--oidc-issuer (OIDC_ISSUER)").await;
    // Password log-in is untouched.
    app.login(ALICE).await;
}

#[tokio::test]
async fn an_issuer_not_as_the_provider_names_it_ends_on_a_page_naming_the_setting() {
    let Some(idp) = oidc::start().await else {
        return;
    };
    let app = spawn_with(|c| {
        idp.configure(c);
        c.sign_in.oidc_issuer = Some(format!("{}/", idp.issuer));
    })
    .await;
    let res = start_sign_in(&app.anon, &app).await;
    let page = refused(res, StatusCode::BAD_GATEWAY, "unexpected issuer").await;
    assert!(page.contains("--oidc-issuer (OIDC_ISSUER)"), "{page}");
}

#[tokio::test]
async fn a_wrong_client_secret_ends_on_a_page_naming_the_settings() {
    let Some((idp, app)) = spawn_with_idp(|c| {
        let wrong = c.service.data_dir.join("wrong-secret");
        std::fs::create_dir_all(&c.service.data_dir).unwrap();
        std::fs::write(&wrong, "not-the-secret\n").unwrap();
        c.sign_in.oidc_client_secret_file = Some(wrong);
    })
    .await
    else {
        return;
    };
    let browser = client();
    let res = idp.sign_in(&browser, &app.app_url, CAROL).await;
    let page = refused(res, StatusCode::BAD_GATEWAY, "invalid_client").await;
    assert!(page.contains("--oidc-client-secret-file"), "{page}");
}

#[tokio::test]
async fn a_rotated_signing_key_is_fetched_again_and_the_sign_in_succeeds() {
    let Some(idp) = oidc::start().await else {
        return;
    };
    // The key set the app reads at discovery lacks the key the provider signs with.
    idp.hide_keys(1);
    let app = spawn_with(|c| idp.configure(c)).await;
    idp.register(&app, CLIENT_ID).await;
    carol(&idp, &app).await;
    assert_eq!(idp.hits("/jwks"), 2, "fetched at discovery and once again");
}

#[tokio::test]
async fn unknown_keys_make_the_app_fetch_the_key_set_at_most_once_a_minute() {
    let Some(idp) = oidc::start().await else {
        return;
    };
    idp.hide_keys(usize::MAX);
    let app = spawn_with(|c| idp.configure(c)).await;
    idp.register(&app, CLIENT_ID).await;
    for _ in 0..2 {
        signature_refused(&idp, &app).await;
    }
    assert_eq!(idp.hits("/jwks"), 2, "discovery, then one refresh");
}

/// The session a sign-in starts is a session like any: CSRF on every change, the idle and
/// absolute timeouts.
#[tokio::test]
async fn a_provider_session_needs_csrf_and_times_out_like_a_password_session() {
    let Some((idp, app)) = spawn_with_idp(|c| {
        c.session_idle_secs = 600;
        c.session_max_secs = 3600;
    })
    .await
    else {
        return;
    };
    let carol = carol(&idp, &app).await;
    let file = carol.upload_ok("a.txt", b"x".to_vec()).await;
    for csrf in [None, Some("wrong")] {
        let mut req = carol
            .client
            .post(format!("{}/api/files/{}/link", app.app_url, file.id));
        if let Some(csrf) = csrf {
            req = req.header("X-CSRF-Token", csrf);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        assert_eq!(error_code(res).await, "csrf");
    }
    let res = carol
        .client
        .post(format!("{}/files/{}/delete", app.app_url, file.id))
        .form(&[("csrf_token", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        carol
            .list()
            .await
            .json::<Value>()
            .await
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Idle past --session-idle-secs: gone.
    sqlx::query("UPDATE sessions SET last_seen = last_seen - 601")
        .execute(&app.db)
        .await
        .unwrap();
    logged_out(&carol.client, &app).await;

    // In use, but older than --session-max-secs: gone.
    let carol = self::carol(&idp, &app).await;
    sqlx::query("UPDATE sessions SET created_at = created_at - 3601")
        .execute(&app.db)
        .await
        .unwrap();
    logged_out(&carol.client, &app).await;
}

/// RP-initiated logout: the session ends here and the browser goes on to the provider's
/// end-session endpoint with the ID token as hint; a password session just ends.
#[tokio::test]
async fn logout_ends_the_session_here_and_at_the_provider() {
    let Some((idp, app)) = spawn_with_idp(|_| {}).await else {
        return;
    };
    let carol = carol(&idp, &app).await;
    let page = carol
        .client
        .get(format!("{}/", app.app_url))
        .send()
        .await
        .unwrap();
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains(&format!("form-action 'self' {}", idp.issuer)),
        "the logout form may go on to the provider: {csp}"
    );
    let res = carol
        .client
        .post(format!("{}/logout", app.app_url))
        .form(&[("csrf_token", carol.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let end = reqwest::Url::parse(&location(&res)).unwrap();
    assert_eq!(
        end.as_str().split('?').next(),
        Some(format!("{}/session/end", idp.issuer).as_str())
    );
    let query: std::collections::HashMap<String, String> = end.query_pairs().into_owned().collect();
    assert_eq!(
        query["post_logout_redirect_uri"],
        format!("{}/", app.app_url)
    );
    assert_eq!(query["client_id"], CLIENT_ID);
    assert_eq!(Some(&query["id_token_hint"]), idp.id_tokens().last());
    logged_out(&carol.client, &app).await;
    // The provider takes the request (its confirmation page, not an error).
    let confirm = carol.client.get(end.as_str()).send().await.unwrap();
    assert_eq!(confirm.status(), StatusCode::OK);
    assert!(confirm.text().await.unwrap().contains("<form"));

    let alice = app.login(ALICE).await;
    let res = alice
        .client
        .post(format!("{}/logout", app.app_url))
        .form(&[("csrf_token", alice.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(location(&res), "/", "a password session ends here only");
}

#[tokio::test]
async fn access_tokens_shares_and_links_work_for_a_provider_user() {
    let Some((idp, app)) = spawn_with_idp(|_| {}).await else {
        return;
    };
    let carol = carol(&idp, &app).await;
    let bytes = sample_bytes(10_000);
    let file = carol.upload_ok("report.pdf", bytes.clone()).await;

    // A one-time link.
    let url = carol.link_url(&file.id).await;
    let res = app.anon.get(&url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.bytes().await.unwrap().as_ref(), bytes.as_slice());

    // A share, taken by someone else as curl would.
    let res = carol
        .client
        .post(format!("{}/api/files/{}/shares", app.app_url, file.id))
        .header("X-CSRF-Token", &carol.csrf)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let share: Value = res.json().await.unwrap();
    let res = client()
        .post(share["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res = app.anon.get(location(&res)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.bytes().await.unwrap().as_ref(), bytes.as_slice());

    // An access token, with no session.
    let token = carol.create_token(&["links:mint"]).await;
    let res = app
        .anon
        .post(format!("{}/api/files/{}/link", app.app_url, file.id))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let url = res.json::<Value>().await.unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.anon.get(&url).send().await.unwrap().status(),
        StatusCode::OK
    );
}

/// `--oidc-admin-groups`: Carol, in `burnlink-admins`, is an administrator: she sees every
/// user with how they log in, and ends Alice's sessions; Alice sees nothing of it.
#[tokio::test]
async fn an_admin_group_member_lists_users_and_ends_their_sessions() {
    let Some((idp, app)) = spawn_with_idp(|_| {}).await else {
        return;
    };
    let carol = carol(&idp, &app).await;
    let alice = app.login(ALICE).await;
    let res = alice
        .client
        .get(format!("{}/admin/users", app.app_url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "not for alice");

    let res = carol
        .client
        .get(format!("{}/admin/users", app.app_url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let page = res.text().await.unwrap();
    let row = |user: &str| {
        let at = page
            .find(&format!("data-user=\"{user}\""))
            .unwrap_or_else(|| panic!("{user} listed: {page}"));
        page[at..page[at..].find("</tr>").unwrap() + at].to_owned()
    };
    assert!(row("alice").contains("password"), "{}", row("alice"));
    assert!(row("carol").contains(&idp.issuer), "{}", row("carol"));
    assert!(row("carol").contains("(administrator)"));
    assert!(
        row("bob").contains("<td class=\"sessions\">0</td>"),
        "{}",
        row("bob")
    );
    assert!(
        row("alice").contains("<td class=\"sessions\">1</td>"),
        "{}",
        row("alice")
    );

    let (alice_id,): (String,) = sqlx::query_as("SELECT id FROM users WHERE username = 'alice'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let end = format!("{}/admin/users/{alice_id}/end-sessions", app.app_url);
    let res = carol
        .client
        .post(&end)
        .form(&[("csrf_token", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "CSRF checked");
    assert_eq!(alice.list().await.status(), StatusCode::OK);
    let res = carol
        .client
        .post(&end)
        .form(&[("csrf_token", carol.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(alice.list().await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(me(&carol.client, &app).await.unwrap()["username"], "carol");
}

/// The first block of `lang` after `heading` in the document `doc` (under the workspace).
fn recipe(doc: &str, heading: &str, lang: &str) -> String {
    let path = format!("{}/../{doc}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let section = &text[text
        .find(heading)
        .unwrap_or_else(|| panic!("{heading} in {doc}"))..];
    section
        .split(&format!("```{lang}\n"))
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap_or_else(|| panic!("a {lang} block under {heading} in {doc}"))
        .to_owned()
}

/// The recipe's example issuer and secret file, pointed at `idp` and a file with its secret.
fn localised(recipe: &str, idp: &Idp, dir: &std::path::Path) -> String {
    let secret = dir.join("oidc-client-secret");
    std::fs::write(&secret, format!("{}\n", oidc::CLIENT_SECRET)).unwrap();
    let local = recipe
        .replace("https://id.example.com/realms/staff", &idp.issuer)
        .replace("/etc/burnlink/oidc-client-secret", secret.to_str().unwrap());
    assert_ne!(
        local, recipe,
        "the recipe names the issuer and the secret file"
    );
    local
}

/// An app with the recipe's sign-in settings (`sign_in`): staff get in, others not, and
/// passwords are off.
async fn recipe_works(idp: &Idp, sign_in: app_server::oidc::SignInArgs) {
    let client_id = sign_in.oidc_client_id.clone().expect("a client id");
    let app = spawn_with(|c| c.sign_in = sign_in).await;
    idp.register(&app, &client_id).await;

    let res = idp.sign_in(&client(), &app.app_url, CAROL).await;
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "carol, in staff, signs in"
    );
    let res = idp.sign_in(&client(), &app.app_url, MALLORY).await;
    refused(res, StatusCode::FORBIDDEN, "not in a group allowed").await;
    let res = password_login(&app.anon, &app, ALICE.0, ALICE.1).await;
    assert_eq!(error_code(res).await, "password_login_disabled");
}

/// A fleet on PostgreSQL: a sign-in started on one app server finishes on another (the
/// waiting sign-in is in the shared database, the browser's binding cookie goes to both), and
/// the Users page reads the same database.
#[tokio::test]
async fn a_sign_in_started_on_one_app_server_finishes_on_another_on_postgres() {
    let Some(pg) = burnlink_tests::postgres::database().await else {
        return;
    };
    let Some(idp) = oidc::start().await else {
        return;
    };
    let on_postgres = |dir: &std::path::Path, public_url: Option<String>| {
        let mut config = burnlink_tests::postgres::on_postgres(dir, &pg);
        config.public_url = public_url;
        idp.configure(&mut config);
        config
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = burnlink_tests::start(on_postgres(dir_a.path(), None)).await;
    // Behind one public URL, as a load balancer shows them.
    let b = burnlink_tests::start(on_postgres(dir_b.path(), Some(a.app_url.clone()))).await;
    idp.register(&a, CLIENT_ID).await;

    let browser = client();
    let answer = idp.authorize(&browser, &b.app_url, Some(CAROL)).await;
    assert!(
        answer.starts_with(&format!("{}/oidc/callback?", a.app_url)),
        "{answer}"
    );
    let res = browser.get(&answer).send().await.unwrap();
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "finished on the other server"
    );
    assert_eq!(me(&browser, &b).await.unwrap()["username"], "carol");
    let (status, page) = get_text(&browser, &format!("{}/admin/users", b.app_url)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(&idp.issuer), "{page}");
}

/// The TOML block of docs/OPERATIONS.md's sign-in section, as written, with only its issuer
/// and secret file pointed at the test provider.
#[tokio::test]
async fn operations_md_sign_in_recipe_works_as_written() {
    let Some(idp) = oidc::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let toml = localised(
        &recipe(
            "docs/OPERATIONS.md",
            "## Sign-in through an identity provider",
            "toml",
        ),
        &idp,
        dir.path(),
    );
    let file = dir.path().join("app.toml");
    std::fs::write(&file, &toml).unwrap();
    let cli: app_server::Cli =
        server_kit::config_file::parse_from(["app-server", "--config", file.to_str().unwrap()])
            .expect("the recipe parses");
    recipe_works(&idp, cli.config.sign_in).await;
}

/// README's command, as written (its lines joined, the issuer and secret file pointed at the
/// test provider).
#[tokio::test]
async fn readme_sign_in_command_works_as_written() {
    let Some(idp) = oidc::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let command = localised(
        &recipe("README.md", "## Sign in with your identity provider", "sh"),
        &idp,
        dir.path(),
    )
    .replace("\\\n", " ");
    let args: Vec<&str> = command.split_whitespace().collect();
    assert_eq!(args[0], "app-server");
    let cli: app_server::Cli =
        server_kit::config_file::parse_from(args).expect("the command parses");
    recipe_works(&idp, cli.config.sign_in).await;
}

/// The whole sign-in in headless Chromium: the login page's button, the provider's form, the
/// file list, and the logout that ends at the provider and comes back.
#[tokio::test]
async fn browser_signs_in_through_the_provider_and_out_again() {
    let test = "browser_signs_in_through_the_provider_and_out_again";
    let Some(harness) = burnlink_tests::browser::start(test).await else {
        return;
    };
    let Some((_idp, app)) = spawn_with_idp(|_| {}).await else {
        return;
    };
    tokio::time::timeout(Duration::from_secs(120), async {
        let carol = harness.browser(true).await;
        carol.driver.goto(&app.app_url).await.unwrap();
        carol
            .find_text("a#sign-in-provider", "Sign in with Test IdP")
            .await;
        harness.screenshot(&carol, "login-choices").await;
        carol
            .find("a#sign-in-provider")
            .await
            .click()
            .await
            .unwrap();

        carol
            .find("#login")
            .await
            .send_keys(CAROL.login)
            .await
            .unwrap();
        carol
            .find("#password")
            .await
            .send_keys(CAROL.password)
            .await
            .unwrap();
        harness.screenshot(&carol, "provider-form").await;
        carol.find("#sign-in").await.click().await.unwrap();

        carol.find("#upload-form").await;
        carol.wait_for_text("Signed in as carol").await;
        harness.screenshot(&carol, "signed-in").await;

        carol
            .find("form[action='/logout'] button[type=submit]")
            .await
            .click()
            .await
            .unwrap();
        // The provider asks whether to sign out there too; yes brings the browser back.
        carol.wait_for_text("sign-out").await;
        harness.screenshot(&carol, "provider-logout").await;
        carol
            .find("button[autofocus], button[type=submit]")
            .await
            .click()
            .await
            .unwrap();
        carol.find_text("a#sign-in-provider", "Sign in with").await;
        harness.screenshot(&carol, "signed-out").await;
        carol.quit().await;
    })
    .await
    .expect("the browser walk finishes in time");
}
