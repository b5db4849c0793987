//! The app server under abuse: login throttling, upload limits and odd multipart bodies,
//! session fixation, cookie flags, CSRF on every state-changing route, security headers.

use std::net::IpAddr;

use burnlink_tests::{ALICE, BOB, TestApp, client, error_code, spawn, spawn_with, stored_files};
use reqwest::{Client, StatusCode, redirect};

// ---------------------------------------------------------------------------------------------
// Login throttling
// ---------------------------------------------------------------------------------------------

/// A client whose requests come from `127.0.0.<n>` (all of 127/8 is loopback on Linux), so
/// one test can play several client addresses.
fn client_from(n: u8) -> Client {
    Client::builder()
        .local_address(IpAddr::from([127, 0, 0, n]))
        .cookie_store(true)
        .redirect(redirect::Policy::none())
        .build()
        .unwrap()
}

async fn login_from(app: &TestApp, from: u8, (user, password): (&str, &str)) -> reqwest::Response {
    client_from(from)
        .post(format!("{}/api/login", app.app_url))
        .json(&serde_json::json!({ "username": user, "password": password }))
        .send()
        .await
        .unwrap()
}

/// Asserts a 429 `throttled` with a `Retry-After` of at most a minute.
async fn assert_throttled(res: reqwest::Response, case: &str) {
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS, "{case}");
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{case}: Retry-After {retry}");
    assert!(res.headers().get("set-cookie").is_none(), "{case}");
    assert_eq!(error_code(res).await, "throttled", "{case}");
}

async fn throttled_app() -> TestApp {
    spawn_with(|c| c.login_attempts_per_minute = 3).await
}

#[tokio::test]
async fn an_account_is_throttled_across_addresses() {
    let app = throttled_app().await;
    // Three failures for alice, each from its own address: no address runs out.
    for from in 2..5 {
        let res = login_from(&app, from, (ALICE.0, "wrong-password")).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    // Her account has: even her right password from a fresh address waits.
    assert_throttled(login_from(&app, 5, ALICE).await, "alice, right password").await;
    assert_throttled(
        login_from(&app, 6, (ALICE.0, "wrong")).await,
        "alice, wrong",
    )
    .await;
    // Bob, from the same fresh address, is not affected.
    assert_eq!(login_from(&app, 5, BOB).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_address_is_throttled_across_accounts() {
    let app = throttled_app().await;
    for user in ["nobody-1", "nobody-2", "alice"] {
        let res = login_from(&app, 7, (user, "wrong-password")).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{user}");
    }
    // A correct password from the throttled address still waits.
    assert_throttled(
        login_from(&app, 7, BOB).await,
        "bob from a throttled address",
    )
    .await;
    // The HTML form is throttled alike.
    let res = client_from(7)
        .post(format!("{}/login", app.app_url))
        .form(&[("username", BOB.0), ("password", BOB.1)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key("retry-after"));
    // Bob from elsewhere is fine.
    assert_eq!(login_from(&app, 8, BOB).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_success_resets_the_account_but_not_the_address() {
    let app = throttled_app().await;
    for from in [10, 11] {
        assert_eq!(
            login_from(&app, from, (ALICE.0, "wrong-password"))
                .await
                .status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(login_from(&app, 12, ALICE).await.status(), StatusCode::OK);
    // Without the reset these two would make four failures in a bucket of three.
    for from in [13, 14] {
        assert_eq!(
            login_from(&app, from, (ALICE.0, "wrong-password"))
                .await
                .status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(login_from(&app, 15, ALICE).await.status(), StatusCode::OK);

    // An attacker's own good login does not buy their address more guesses.
    for user in ["x1", "x2"] {
        login_from(&app, 16, (user, "wrong-password")).await;
    }
    assert_eq!(login_from(&app, 16, BOB).await.status(), StatusCode::OK);
    login_from(&app, 16, ("x3", "wrong-password")).await;
    assert_throttled(
        login_from(&app, 16, BOB).await,
        "after the address's third failure",
    )
    .await;
}

#[tokio::test]
async fn throttled_logins_are_cheap() {
    // A throttled login is refused before any argon2 work: many of them take less time than
    // a handful of real password checks (about 10 to 50 ms each).
    let app = spawn_with(|c| c.login_attempts_per_minute = 1).await;
    login_from(&app, 20, (ALICE.0, "wrong-password")).await;
    let client = client_from(20);
    let started = std::time::Instant::now();
    for _ in 0..50 {
        let res = client
            .post(format!("{}/api/login", app.app_url))
            .json(&serde_json::json!({ "username": "alice", "password": "another-guess" }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    }
    let throttled = started.elapsed();
    let started = std::time::Instant::now();
    for n in 0..5 {
        let user = format!("nobody-{n}");
        let res = login_from(&app, 30 + n, (&user, "wrong-password")).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let hashed = started.elapsed();
    assert!(
        throttled < hashed * 4,
        "50 throttled logins took {throttled:?}, 5 checked ones {hashed:?}"
    );
}

#[tokio::test]
async fn parallel_wrong_passwords_cannot_overspend_the_bucket() {
    // Each attempt is reserved before its password is hashed: 40 guesses at once against a
    // bucket of 10 get at most 10 checks (11 if a token refills during the test), the rest
    // 429 without any hashing.
    let app = spawn_with(|c| c.login_attempts_per_minute = 10).await;
    let client = client_from(40);
    let guesses = (0..40).map(|n| {
        client
            .post(format!("{}/api/login", app.app_url))
            .json(&serde_json::json!({ "username": ALICE.0, "password": format!("guess-{n}") }))
            .send()
    });
    let mut checked = 0;
    for res in futures_util::future::join_all(guesses).await {
        let res = res.unwrap();
        match res.status() {
            StatusCode::UNAUTHORIZED => checked += 1,
            StatusCode::TOO_MANY_REQUESTS => assert_throttled(res, "a parallel guess").await,
            other => panic!("unexpected {other}"),
        }
    }
    assert!((10..=11).contains(&checked), "{checked} guesses checked");
}

#[tokio::test]
async fn logins_waiting_for_a_password_check_are_bounded() {
    // Buckets off, two pending logins at most: a burst from one client gets some 429 `busy`
    // at once, the others their answer; nothing else waits without bound.
    let app = spawn_with(|c| {
        c.login_attempts_per_minute = 0;
        c.max_pending_logins = 2;
    })
    .await;
    let client = client_from(41);
    let burst = (0..60).map(|n| {
        client
            .post(format!("{}/api/login", app.app_url))
            .json(&serde_json::json!({ "username": format!("nobody-{n}"), "password": "wrong-pw" }))
            .send()
    });
    let (mut checked, mut busy) = (0, 0);
    for res in futures_util::future::join_all(burst).await {
        let res = res.unwrap();
        match res.status() {
            StatusCode::UNAUTHORIZED => checked += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(res.headers()["retry-after"], "1");
                assert_eq!(error_code(res).await, "busy");
                busy += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(checked >= 2 && busy >= 1, "{checked} checked, {busy} busy");
    // Once the burst is over, logins work again.
    assert_eq!(login_from(&app, 42, ALICE).await.status(), StatusCode::OK);
}

// ---------------------------------------------------------------------------------------------
// Uploads
// ---------------------------------------------------------------------------------------------

/// Nothing was stored: no file (temporary ones included) and no row.
async fn assert_nothing_stored(app: &TestApp, case: &str) {
    assert!(
        stored_files(&app.files_dir()).is_empty(),
        "{case}: {:?}",
        stored_files(&app.files_dir())
    );
    assert_eq!(app.count_rows("files").await, 0, "{case}: orphan row");
}

/// Exactly `n` files on disk, each with its row.
async fn assert_stored(app: &TestApp, n: usize) {
    let on_disk = stored_files(&app.files_dir());
    assert_eq!(on_disk.len(), n, "{on_disk:?}");
    assert!(on_disk.iter().all(|f| !f.starts_with('.')), "{on_disk:?}");
    assert_eq!(app.count_rows("files").await, n as i64);
}

#[tokio::test]
async fn the_file_count_per_user_is_limited() {
    let app = spawn_with(|c| c.max_files_per_user = 2).await;
    let alice = app.login(ALICE).await;
    let bob = app.login(BOB).await;
    let first = alice.upload_ok("1.txt", b"1".to_vec()).await;
    alice.upload_ok("2.txt", b"2".to_vec()).await;
    let res = alice.upload("3.txt", vec![3u8; 200_000]).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(res).await, "too_many_files");
    assert_stored(&app, 2).await;
    // Per user: bob still can.
    bob.upload_ok("b.txt", b"b".to_vec()).await;
    // Deleting one makes room again.
    assert_eq!(
        alice.delete(&first.id).await.status(),
        StatusCode::NO_CONTENT
    );
    alice.upload_ok("3.txt", b"3".to_vec()).await;
    assert_stored(&app, 3).await;
}

#[tokio::test]
async fn concurrent_uploads_never_exceed_the_file_limit() {
    let app = spawn_with(|c| c.max_files_per_user = 3).await;
    let alice = app.login(ALICE).await;
    let uploads = (0..10).map(|i| alice.upload("x.bin", vec![i as u8; 50_000]));
    let statuses: Vec<StatusCode> = futures_util::future::join_all(uploads)
        .await
        .iter()
        .map(|r| r.status())
        .collect();
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    assert!(created <= 3, "{statuses:?}");
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::CREATED || *s == StatusCode::CONFLICT),
        "{statuses:?}"
    );
    assert_stored(&app, created).await;
}

#[tokio::test]
async fn two_file_fields_are_refused_and_nothing_is_kept() {
    // Decision: one file per upload. A second `file` field is a 400, not silently dropped.
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(vec![1u8; 100_000]).file_name("a.txt"),
        )
        .part(
            "file",
            reqwest::multipart::Part::bytes(vec![2u8; 10]).file_name("b.txt"),
        );
    let res = alice
        .client
        .post(format!("{}/api/files", app.app_url))
        .header("X-CSRF-Token", &alice.csrf)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(res).await, "bad_request");
    assert_nothing_stored(&app, "two files").await;
}

#[tokio::test]
async fn malformed_multipart_bodies_are_400_and_leave_nothing() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let url = format!("{}/api/files", app.app_url);
    let post = |content_type: &str, body: Vec<u8>| {
        alice
            .client
            .post(&url)
            .header("X-CSRF-Token", &alice.csrf)
            .header("Content-Type", content_type)
            .body(body)
            .send()
    };
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("no boundary", "multipart/form-data", b"--x\r\n".to_vec()),
        (
            "truncated mid-file",
            "multipart/form-data; boundary=xyz",
            b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\nhalf a fi"
                .to_vec(),
        ),
        (
            "field without a name",
            "multipart/form-data; boundary=xyz",
            b"--xyz\r\nContent-Disposition: form-data\r\n\r\nx\r\n--xyz--\r\n".to_vec(),
        ),
        (
            "empty body",
            "multipart/form-data; boundary=xyz",
            Vec::new(),
        ),
        ("not multipart", "application/json", b"{}".to_vec()),
    ];
    for (case, content_type, body) in cases {
        let res = post(content_type, body).await.unwrap();
        assert!(res.status().is_client_error(), "{case}: {}", res.status());
        assert_nothing_stored(&app, case).await;
    }
}

#[tokio::test]
async fn odd_upload_names_are_sanitised_and_empty_files_allowed() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let long = format!("{}.pdf", "n".repeat(1_000));
    let cases: [(&str, &str); 6] = [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\boot.ini", "boot.ini"),
        ("a\u{1}b\u{7f}c\td.txt", "abcd.txt"),
        ("invoice\u{202E}fdp.exe", "invoicefdp.exe"),
        ("...", "file"),
        (&long, ""),
    ];
    let mut stored = 0;
    for (raw, want) in cases {
        let res = alice.upload(raw, Vec::new()).await;
        // A name the multipart encoder or parser cannot carry may be a 400; anything stored
        // must carry a safe name.
        if res.status() == StatusCode::BAD_REQUEST {
            continue;
        }
        assert_eq!(res.status(), StatusCode::CREATED, "{raw:?}");
        stored += 1;
        let body: serde_json::Value = res.json().await.unwrap();
        let name = body["name"].as_str().unwrap();
        assert!(shared::DownloadName::parse(name).is_ok(), "{name:?}");
        if raw == long {
            assert_eq!(name.chars().count(), 255);
            assert!(name.ends_with(".pdf"));
        } else {
            assert_eq!(name, want, "{raw:?}");
        }
        assert_eq!(body["size"], 0);
    }
    assert!(stored >= 5, "most names are sanitised, not refused");
    assert_stored(&app, stored).await;
    // Storage keys are ours, never the user's name.
    for key in stored_files(&app.files_dir()) {
        assert!(shared::StorageKey::parse(&key).is_ok(), "{key}");
    }
    assert!(!app.data_dir.join("passwd").exists());
}

// ---------------------------------------------------------------------------------------------
// Sessions, cookies, CSRF, headers
// ---------------------------------------------------------------------------------------------

fn session_cookie(res: &reqwest::Response) -> String {
    let header = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|c| c.starts_with("burnlink_session="))
        .expect("a session cookie")
        .to_owned();
    header
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("burnlink_session=")
        .to_owned()
}

async fn me_with(app: &TestApp, session: &str) -> StatusCode {
    reqwest::Client::new()
        .get(format!("{}/api/me", app.app_url))
        .header("Cookie", format!("burnlink_session={session}"))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn a_session_id_set_before_login_is_not_kept() {
    let app = spawn().await;
    // A made-up id, as an attacker would plant it.
    let planted = "attacker-chosen-session-id-0123456789";
    let res = reqwest::Client::new()
        .post(format!("{}/api/login", app.app_url))
        .header("Cookie", format!("burnlink_session={planted}"))
        .json(&serde_json::json!({ "username": ALICE.0, "password": ALICE.1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let issued = session_cookie(&res);
    assert_ne!(issued, planted);
    assert_eq!(me_with(&app, planted).await, StatusCode::UNAUTHORIZED);
    assert_eq!(me_with(&app, &issued).await, StatusCode::OK);

    // A real session of the attacker's, planted in the victim's browser: logging in ends it
    // and issues a new id, so the attacker cannot ride the victim's login.
    let attackers = reqwest::Client::new()
        .post(format!("{}/api/login", app.app_url))
        .json(&serde_json::json!({ "username": BOB.0, "password": BOB.1 }))
        .send()
        .await
        .unwrap();
    let attackers = session_cookie(&attackers);
    let browser = Client::builder()
        .redirect(redirect::Policy::none())
        .build()
        .unwrap();
    let res = browser
        .post(format!("{}/login", app.app_url))
        .header("Cookie", format!("burnlink_session={attackers}"))
        .form(&[("username", ALICE.0), ("password", ALICE.1)])
        .send()
        .await
        .unwrap();
    assert!(res.status().is_redirection(), "{}", res.status());
    let victims = session_cookie(&res);
    assert_ne!(victims, attackers);
    assert_eq!(me_with(&app, &attackers).await, StatusCode::UNAUTHORIZED);
    assert_eq!(me_with(&app, &victims).await, StatusCode::OK);
}

#[tokio::test]
async fn session_cookie_flags_include_secure_when_configured() {
    let app = spawn_with(|c| c.secure_cookies = true).await;
    let res = client()
        .post(format!("{}/api/login", app.app_url))
        .json(&serde_json::json!({ "username": ALICE.0, "password": ALICE.1 }))
        .send()
        .await
        .unwrap();
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/", "Secure"] {
        assert!(cookie.contains(flag), "{flag} missing: {cookie}");
    }
    assert!(!cookie.contains("Domain="), "host-only cookie: {cookie}");
    assert_eq!(res.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn every_state_changing_route_needs_the_csrf_token() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let file = alice.upload_ok("a.txt", b"x".to_vec()).await;
    let base = &app.app_url;
    let c = &alice.client;
    let upload_form = || {
        reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(b"y".to_vec()).file_name("b.txt"),
        )
    };
    for wrong in [None, Some("wrong-token")] {
        let header = |req: reqwest::RequestBuilder| match wrong {
            Some(t) => req.header("X-CSRF-Token", t),
            None => req,
        };
        let field = |form: reqwest::multipart::Form| match wrong {
            Some(t) => reqwest::multipart::Form::new().text("csrf_token", t).part(
                "file",
                reqwest::multipart::Part::bytes(b"y".to_vec()).file_name("b.txt"),
            ),
            None => form,
        };
        let form_field: Vec<(&str, &str)> =
            wrong.map(|t| vec![("csrf_token", t)]).unwrap_or_default();
        let requests = [
            (
                "POST /api/files",
                header(c.post(format!("{base}/api/files")).multipart(upload_form())),
            ),
            (
                "POST /api/files/{id}/link",
                header(c.post(format!("{base}/api/files/{}/link", file.id))),
            ),
            (
                "DELETE /api/files/{id}",
                header(c.delete(format!("{base}/api/files/{}", file.id))),
            ),
            (
                "POST /api/logout",
                header(c.post(format!("{base}/api/logout"))),
            ),
            (
                "POST /files (form)",
                c.post(format!("{base}/files"))
                    .multipart(field(upload_form())),
            ),
            (
                "POST /files/{id}/delete (form)",
                c.post(format!("{base}/files/{}/delete", file.id))
                    .form(&form_field),
            ),
            (
                "POST /logout (form)",
                c.post(format!("{base}/logout")).form(&form_field),
            ),
        ];
        for (route, req) in requests {
            let res = req.send().await.unwrap();
            assert_eq!(
                res.status(),
                StatusCode::FORBIDDEN,
                "{route} with {wrong:?}"
            );
        }
    }
    // Nothing happened: one file, still there, and the session alive.
    assert_eq!(app.count_rows("files").await, 1);
    assert_eq!(stored_files(&app.files_dir()).len(), 1);
    let me = c.get(format!("{base}/api/me")).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    // With the token, the same requests work.
    assert_eq!(alice.link(&file.id).await.status(), StatusCode::CREATED);
    assert_eq!(
        alice.delete(&file.id).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(alice.logout().await.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn responses_forbid_framing_and_sniffing() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let file = alice
        .upload_ok("a.html", b"<script>alert(1)</script>".to_vec())
        .await;
    let link = alice.link_url(&file.id).await;
    let checks = [
        (
            "page",
            app.anon
                .get(format!("{}/", app.app_url))
                .send()
                .await
                .unwrap(),
        ),
        (
            "api error",
            app.anon
                .get(format!("{}/api/me", app.app_url))
                .send()
                .await
                .unwrap(),
        ),
        (
            "404",
            app.anon
                .get(format!("{}/nope", app.app_url))
                .send()
                .await
                .unwrap(),
        ),
        (
            "files page",
            alice
                .client
                .get(format!("{}/", app.app_url))
                .send()
                .await
                .unwrap(),
        ),
    ];
    for (what, res) in checks {
        let h = res.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
        assert!(csp.contains("default-src 'none'"), "{what}: {csp}");
        assert!(!csp.contains("'unsafe-eval'"), "{what}: {csp}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
        assert_eq!(h["x-frame-options"], "DENY", "{what}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{what}");
    }
    // An uploaded HTML file is served sandboxed, as an attachment.
    let res = app.anon.get(&link).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let csp = res.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("sandbox") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    assert!(
        res.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    // Download error pages cannot be framed either.
    let res = app
        .anon
        .get(&link)
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::GONE);
    let csp = res.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
}

#[tokio::test]
async fn every_response_but_static_assets_is_no_store() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let upload = alice.upload("a.txt", b"hello".to_vec()).await;
    assert_eq!(upload.status(), StatusCode::CREATED);
    let id = upload.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let get = |url: String| app.anon.get(url).send();
    let checks = [
        ("upload 201", alice.upload("b.txt", b"x".to_vec()).await),
        ("delete 204", alice.delete(&id).await),
        ("logout 204", alice.logout().await),
        (
            "app 404",
            get(format!("{}/nope", app.app_url)).await.unwrap(),
        ),
        ("dl 404", get(format!("{}/nope", app.dl_url)).await.unwrap()),
        (
            "dl healthz",
            get(format!("{}/healthz", app.dl_url)).await.unwrap(),
        ),
        (
            "dl readyz",
            get(format!("{}/readyz", app.dl_url)).await.unwrap(),
        ),
        (
            "dl 401",
            get(format!("{}/d/x.y.z", app.dl_url)).await.unwrap(),
        ),
    ];
    for (what, res) in checks {
        assert_eq!(
            res.headers()
                .get("cache-control")
                .map(|v| v.to_str().unwrap()),
            Some("no-store"),
            "{what}: {:?}",
            res.status()
        );
    }
    // Static assets keep their own caching.
    let res = get(format!("{}/static/app.css", app.app_url))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-cache");
}

/// A login form posted with the given browser headers: (status, set a cookie?).
async fn form_login_with(app: &TestApp, headers: &[(&str, &str)]) -> (StatusCode, bool) {
    let mut req = client()
        .post(format!("{}/login", app.app_url))
        .form(&[("username", ALICE.0), ("password", ALICE.1)]);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let res = req.send().await.unwrap();
    let cookie = res.headers().contains_key("set-cookie");
    (res.status(), cookie)
}

#[tokio::test]
async fn a_login_posted_from_another_site_is_refused() {
    let app = spawn().await;
    let evil = [
        vec![
            ("Origin", "https://evil.example"),
            ("Sec-Fetch-Site", "cross-site"),
        ],
        vec![("Origin", "https://evil.example")],
        vec![("Origin", "null")],
        vec![("Sec-Fetch-Site", "same-site")],
        // Fetch metadata wins over a forged-looking Origin.
        vec![
            ("Origin", app.app_url.as_str()),
            ("Sec-Fetch-Site", "cross-site"),
        ],
    ];
    for headers in &evil {
        assert_eq!(
            form_login_with(&app, headers).await,
            (StatusCode::FORBIDDEN, false),
            "{headers:?}"
        );
    }
    assert_eq!(app.count_rows("sessions").await, 0, "no session was made");
    let res = client()
        .post(format!("{}/api/login", app.app_url))
        .header("Origin", "https://evil.example")
        .header("Sec-Fetch-Site", "cross-site")
        .json(&serde_json::json!({ "username": ALICE.0, "password": ALICE.1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(res).await, "cross_site");
    assert_eq!(app.count_rows("sessions").await, 0);

    // Our own page, a typed URL, and scripts without browser headers still log in.
    let ours = [
        vec![
            ("Origin", app.app_url.as_str()),
            ("Sec-Fetch-Site", "same-origin"),
        ],
        vec![("Origin", app.app_url.as_str())],
        vec![("Sec-Fetch-Site", "none")],
        vec![],
    ];
    for headers in &ours {
        assert_eq!(
            form_login_with(&app, headers).await,
            (StatusCode::SEE_OTHER, true),
            "{headers:?}"
        );
    }
}
