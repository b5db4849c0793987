//! What an operator sees: `/metrics`, logs, the audit trail, readiness; and what a user sees of
//! the audit trail: their recent downloads.

use std::time::Duration;

use burnlink_tests::{
    ALICE, BOB, TestApp, error_code, sample_bytes, spawn, spawn_with, token_of, with_metrics,
};
use reqwest::{Client, StatusCode};
use serde_json::Value;

/// A client holding one connection per host: a request on it is handled only after the
/// previous response on that connection was finished and its body dropped, which is when a
/// download is counted and audited.
fn one_connection() -> Client {
    Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .expect("client builds")
}

/// The metrics listener of `app` (spawned [`with_metrics`]).
fn metrics_url(app: &TestApp) -> &str {
    app.metrics_url.as_deref().expect("spawned with_metrics")
}

async fn metrics(client: &Client, base: &str) -> String {
    let res = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics request");
    assert_eq!(res.status(), StatusCode::OK);
    let content_type = res.headers()["content-type"].to_str().expect("ascii");
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    res.text().await.expect("metrics text")
}

/// The value of one series (`name{labels}` exactly as exposed), or `None` if absent.
fn series(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// A file of alice's and a fresh link to it: (alice, URL, jti).
async fn alice_link(app: &TestApp, bytes: usize) -> (burnlink_tests::User, String, String) {
    let alice = app.login(ALICE).await;
    let file = alice.upload_ok("report.txt", sample_bytes(bytes)).await;
    let res = alice.link(&file.id).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let link: Value = res.json().await.expect("link JSON");
    let url = link["url"].as_str().expect("url").to_owned();
    let jti = link["jti"].as_str().expect("jti").to_owned();
    (alice, url, jti)
}

#[tokio::test]
async fn download_metrics_count_each_outcome_and_the_bytes() {
    let app = spawn_with(with_metrics).await;
    let (_alice, url, _) = alice_link(&app, 5000).await;
    let client = one_connection();

    let res = client.get(&url).send().await.expect("download");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.bytes().await.expect("body").len(), 5000);
    let replay = client.get(&url).send().await.expect("replay");
    assert_eq!(replay.status(), StatusCode::GONE);
    let forged = client
        .get(format!("{}/d/not.a.token", app.dl_url))
        .send()
        .await
        .expect("bad token");
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);

    let text = metrics(&client, metrics_url(&app)).await;
    let outcome = |o: &str| {
        series(
            &text,
            &format!("burnlink_downloads_total{{outcome=\"{o}\"}}"),
        )
    };
    assert_eq!(outcome("ok"), Some(1.0), "{text}");
    assert_eq!(outcome("used"), Some(1.0), "{text}");
    assert_eq!(outcome("invalid"), Some(1.0), "{text}");
    for o in [
        "partial",
        "expired",
        "not_found",
        "unavailable",
        "prefetch_declined",
    ] {
        assert_eq!(outcome(o), Some(0.0), "{o}: {text}");
    }
    assert_eq!(
        series(&text, "burnlink_download_bytes_sent_total"),
        Some(5000.0)
    );
    assert_eq!(series(&text, "burnlink_active_streams"), Some(0.0));
    // The download and the replay each asked the store to burn.
    assert_eq!(
        series(&text, "burnlink_burn_store_seconds_count"),
        Some(2.0)
    );
    // Both EdDSA tokens went through the batcher, one batch each; the forged one was refused
    // by its header before it.
    assert_eq!(
        series(&text, "burnlink_verify_batch_tokens_count"),
        Some(2.0)
    );
    assert_eq!(series(&text, "burnlink_verify_batch_tokens_sum"), Some(2.0));
    assert!(!text.contains(token_of(&url)), "no token in metrics");
}

#[tokio::test]
async fn app_metrics_count_logins_by_outcome_and_minted_links() {
    let app = spawn_with(|c| {
        c.login_attempts_per_minute = 1;
        with_metrics(c);
    })
    .await;
    let (_alice, _url, _) = alice_link(&app, 10).await;
    let client = one_connection();
    let bad = |password: &'static str| {
        client
            .post(format!("{}/api/login", app.app_url))
            .json(&serde_json::json!({ "username": BOB.0, "password": password }))
            .send()
    };
    assert_eq!(bad("wrong-password").await.expect("login").status(), 401);
    assert_eq!(bad("wrong-again").await.expect("login").status(), 429);

    let text = metrics(&client, metrics_url(&app)).await;
    let logins = |o: &str| series(&text, &format!("burnlink_logins_total{{outcome=\"{o}\"}}"));
    assert_eq!(logins("ok"), Some(1.0), "{text}");
    assert_eq!(logins("bad_credentials"), Some(1.0), "{text}");
    assert_eq!(logins("throttled"), Some(1.0), "{text}");
    assert_eq!(
        series(&text, "burnlink_tokens_minted_total"),
        Some(1.0),
        "{text}"
    );
}

#[tokio::test]
async fn readyz_checks_the_database() {
    let app = spawn().await;
    let ready = app
        .anon
        .get(format!("{}/readyz", app.app_url))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(
        ready.json::<Value>().await.expect("JSON")["status"],
        "ready"
    );

    app.db.close().await; // the app's pool: every clone shares it
    let down = app
        .anon
        .get(format!("{}/readyz", app.app_url))
        .send()
        .await
        .expect("readyz");
    assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(down).await, "unavailable");
    let health = app
        .anon
        .get(format!("{}/healthz", app.app_url))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), StatusCode::OK, "alive, only not ready");
}

/// The user's recent downloads, once the audit writer has caught up with `want` entries. The
/// writer thread appends off the request path, so this waits (bounded) for it.
async fn recent_downloads(user: &burnlink_tests::User, want: usize) -> Vec<Value> {
    let mut last = Vec::new();
    for _ in 0..100 {
        let res = user
            .client
            .get(format!("{}/api/downloads", user.app_url))
            .send()
            .await
            .expect("downloads request");
        assert_eq!(res.status(), StatusCode::OK);
        last = res.json::<Vec<Value>>().await.expect("JSON list");
        if last.len() >= want {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("expected {want} recent downloads, got {last:?}");
}

#[tokio::test]
async fn users_see_their_own_recent_downloads_and_nobody_elses() {
    let app = spawn().await;
    let (alice, url, _) = alice_link(&app, 300).await;
    let client = one_connection();
    assert_eq!(client.get(&url).send().await.expect("dl").status(), 200);
    assert_eq!(client.get(&url).send().await.expect("replay").status(), 410);

    let recent = recent_downloads(&alice, 2).await;
    assert_eq!(recent.len(), 2, "{recent:?}");
    let outcomes: Vec<&str> = recent
        .iter()
        .map(|d| d["outcome"].as_str().unwrap())
        .collect();
    assert!(
        outcomes.contains(&"ok") && outcomes.contains(&"used"),
        "{outcomes:?}"
    );
    let ok = recent
        .iter()
        .find(|d| d["outcome"] == "ok")
        .expect("ok entry");
    assert_eq!(ok["name"], "report.txt");
    assert_eq!(ok["bytes"], 300);
    assert!(ok["time"].as_i64().unwrap() > 1_700_000_000);

    let page = alice
        .client
        .get(format!("{}/", app.app_url))
        .send()
        .await
        .expect("files page")
        .text()
        .await
        .expect("html");
    assert!(page.contains("Recent downloads"), "{page}");
    assert!(page.contains("Refused: link already used"), "{page}");

    let bob = app.login(BOB).await;
    let res = bob
        .client
        .get(format!("{}/api/downloads", app.app_url))
        .send()
        .await
        .expect("bob's downloads");
    assert_eq!(
        res.json::<Vec<Value>>().await.expect("JSON"),
        Vec::<Value>::new()
    );
    let anon = app
        .anon
        .get(format!("{}/api/downloads", app.app_url))
        .send()
        .await
        .expect("anonymous");
    assert_eq!(anon.status(), StatusCode::UNAUTHORIZED);

    // The audit file itself: one JSON line per attempt, with the client and no token.
    let audit = std::fs::read_dir(app.data_dir.join("audit"))
        .expect("audit dir")
        .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("audit file"))
        .collect::<String>();
    assert!(!audit.contains(token_of(&url)), "{audit}");
    let lines: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 2, "{audit}");
    assert!(
        lines
            .iter()
            .all(|l| l["client"] == "127.0.0.1" && l["sub"].is_string())
    );

    // Once the file is deleted, its attempts stay but its name goes.
    let files: Vec<Value> = alice.list().await.json().await.expect("file list");
    let id = files[0]["id"].as_str().expect("id");
    assert_eq!(alice.delete(id).await.status(), StatusCode::NO_CONTENT);
    let recent = recent_downloads(&alice, 2).await;
    assert!(recent.iter().all(|d| d["name"].is_null()), "{recent:?}");
}

#[tokio::test]
async fn logs_carry_request_ids_and_the_jti_never_a_token_password_or_cookie() {
    let logs = burnlink_tests::logs::lines();
    let app = spawn().await;
    let client = one_connection();
    let login = client
        .post(format!("{}/api/login", app.app_url))
        .json(&serde_json::json!({ "username": ALICE.0, "password": ALICE.1 }))
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), StatusCode::OK);
    assert!(login.headers().contains_key("x-request-id"));
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let cookie_value = cookie
        .split(';')
        .next()
        .and_then(|kv| kv.split_once('='))
        .expect("name=value")
        .1
        .to_owned();
    assert!(cookie_value.len() >= 16, "{cookie}");

    let (_alice, url, jti) = alice_link(&app, 100).await;
    let res = client.get(&url).send().await.expect("download");
    let request_id = res.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(res.bytes().await.expect("body").len(), 100);
    assert_eq!(client.get(&url).send().await.expect("replay").status(), 410);
    // A wrong password is logged as a refusal, never as the password.
    let wrong = "not-alices-password-9";
    let refused = client
        .post(format!("{}/api/login", app.app_url))
        .json(&serde_json::json!({ "username": ALICE.0, "password": wrong }))
        .send()
        .await
        .expect("bad login");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);

    let text = String::from_utf8(logs.lock().expect("log buffer").clone()).expect("UTF-8 logs");
    for secret in [token_of(&url), ALICE.1, wrong, &cookie_value] {
        assert!(!text.contains(secret), "{secret:?} logged:\n{text}");
    }
    // Only the signature-free parts of a token could hint at it; not even the payload shows.
    let payload = token_of(&url).split('.').nth(1).expect("payload");
    assert!(!text.contains(payload), "token payload logged");
    assert!(text.contains(&jti), "the jti is logged:\n{text}");

    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    // Each request line names its route pattern and has a request id.
    let requests: Vec<&Value> = lines.iter().filter(|l| l["message"] == "request").collect();
    // Only this test's own lines are asserted on: the capture is process-wide, and a request
    // of a parallel test in flight when the capture was installed has no span.
    assert!(
        requests
            .iter()
            .any(|l| l["route"] == "/d/{token}" && l["span"]["request_id"].is_string()),
        "{text}"
    );
    // The audit record of the download carries its request's id, though it is written when
    // the body ends, after the request.
    let audit = lines
        .iter()
        .find(|l| l["target"] == "audit" && l["jti"] == jti.as_str() && l["outcome"] == "ok")
        .unwrap_or_else(|| panic!("no audit line for {jti}:\n{text}"));
    assert_eq!(audit["span"]["request_id"], request_id.as_str());
}

#[tokio::test]
async fn head_probes_are_audited_and_counted_without_burning() {
    let app = spawn_with(with_metrics).await;
    let (alice, url, jti) = alice_link(&app, 300).await;
    let client = one_connection();
    let head = client.head(&url).send().await.expect("HEAD");
    assert_eq!(head.status(), StatusCode::OK);
    drop(head);

    // The owner sees the probe.
    let recent = recent_downloads(&alice, 1).await;
    assert_eq!(recent.len(), 1, "{recent:?}");
    assert_eq!(recent[0]["outcome"], "head", "{recent:?}");
    assert_eq!(recent[0]["jti"], jti.as_str());
    assert_eq!(recent[0]["bytes"], 0);
    let page = alice
        .client
        .get(format!("{}/", app.app_url))
        .send()
        .await
        .expect("files page")
        .text()
        .await
        .expect("html");
    assert!(page.contains("Checked without downloading"), "{page}");

    let text = metrics(&client, metrics_url(&app)).await;
    assert_eq!(
        series(&text, "burnlink_downloads_total{outcome=\"head\"}"),
        Some(1.0),
        "{text}"
    );
    // Nothing burned: the link still works once.
    assert_eq!(client.get(&url).send().await.expect("dl").status(), 200);
}

#[tokio::test]
async fn metrics_are_served_only_on_their_own_listener() {
    let status = |url: String| async move { reqwest::get(url).await.expect("request").status() };
    // Unset: no metrics over HTTP at all.
    let app = spawn().await;
    assert!(app.metrics_url.is_none());
    for base in [&app.app_url, &app.dl_url] {
        assert_eq!(
            status(format!("{base}/metrics")).await,
            StatusCode::NOT_FOUND,
            "{base}"
        );
    }

    // Set: the public ports still have none; the listener has both servers' series and
    // nothing else.
    let app = spawn_with(with_metrics).await;
    for base in [&app.app_url, &app.dl_url] {
        assert_eq!(
            status(format!("{base}/metrics")).await,
            StatusCode::NOT_FOUND,
            "{base}"
        );
    }
    let client = one_connection();
    let text = metrics(&client, metrics_url(&app)).await;
    assert!(text.contains("burnlink_logins_total"), "{text}");
    assert!(text.contains("burnlink_downloads_total"), "{text}");
    let other = status(format!("{}/healthz", metrics_url(&app))).await;
    assert_eq!(other, StatusCode::NOT_FOUND);

    // A standalone download server has its own.
    let mut config = burnlink_tests::services::download_config(&app, "memory");
    config.service.metrics_bind = Some("127.0.0.1:0".parse().unwrap());
    let dl = download_server::Application::build(config)
        .await
        .expect("starts");
    let dl_url = dl.url();
    let dl_metrics = format!("http://{}", dl.metrics_address().expect("metrics listener"));
    tokio::spawn(dl.run_until_stopped());
    assert_eq!(
        status(format!("{dl_url}/metrics")).await,
        StatusCode::NOT_FOUND
    );
    let text = metrics(&client, &dl_metrics).await;
    assert!(text.contains("burnlink_downloads_total"), "{text}");
    assert!(!text.contains("burnlink_logins_total"), "{text}");
}

/// Outcomes reach the app's database (in process, all-in-one): recent downloads no longer
/// depend on the audit files, which may live on another machine, be rotated, or be off.
#[tokio::test]
async fn recent_downloads_come_from_the_database_not_the_audit_files() {
    let app = spawn().await;
    let (alice, url, jti) = alice_link(&app, 100).await;
    assert_eq!(
        one_connection()
            .get(&url)
            .send()
            .await
            .expect("dl")
            .status(),
        200
    );
    let recent = recent_downloads(&alice, 1).await;
    assert_eq!(recent[0]["jti"], jti.as_str());
    // The operator rotates the audit files away: the history stays.
    for entry in std::fs::read_dir(app.data_dir.join("audit")).expect("audit dir") {
        std::fs::remove_file(entry.expect("entry").path()).expect("removed");
    }
    let recent = recent_downloads(&alice, 1).await;
    assert_eq!(recent.len(), 1, "{recent:?}");
    assert_eq!(recent[0]["outcome"], "ok");
    assert_eq!(recent[0]["name"], "report.txt");
    assert_eq!(app.count_rows("download_events").await, 1);
}

/// The audit file's record of a download carries its request's id, written when the body has
/// ended: the id a proxy sent when plausible, else the one the server made, which is the
/// response's `X-Request-Id` either way.
#[tokio::test]
async fn audit_records_carry_the_request_id_of_their_download() {
    use burnlink_tests::services::{download_config, start_download_server};
    let app = spawn().await;
    app.login(ALICE)
        .await
        .upload_ok("x.txt", sample_bytes(1000))
        .await;
    let key = app.only_stored_file();
    let dir = tempfile::tempdir().expect("temp dir");
    let audit = dir.path().join("audit.jsonl");
    let mut config = download_config(&app, "memory");
    config.audit_log = Some(audit.display().to_string());
    let server = start_download_server(config).await;

    let mut sent = Vec::new();
    for given in [Some("proxy-given.id_1"), None, Some("not plausible!")] {
        let token = app
            .signing_key()
            .mint(&app.claims(&key, "x.txt"))
            .expect("mint");
        let mut req = app.anon.get(format!("{server}/d/{token}"));
        if let Some(id) = given {
            req = req.header("x-request-id", id);
        }
        let res = req.send().await.expect("download");
        assert_eq!(res.status(), StatusCode::OK);
        let id = res.headers()["x-request-id"]
            .to_str()
            .expect("ascii")
            .to_owned();
        match given {
            Some(given) if !given.contains(' ') => assert_eq!(id, given),
            _ => assert_eq!(id.len(), 16, "{id}"),
        }
        assert_eq!(res.bytes().await.expect("body").len(), 1000);
        sent.push(id);
    }
    assert_ne!(sent[1], sent[2], "a fresh id each time");

    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let records: Vec<Value> = loop {
        let text = std::fs::read_to_string(&audit).unwrap_or_default();
        if text.lines().count() >= sent.len() {
            break text
                .lines()
                .map(|l| serde_json::from_str(l).expect("JSON record"))
                .collect();
        }
        assert!(std::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let ids: Vec<&str> = records
        .iter()
        .map(|r| r["request_id"].as_str().expect("request_id"))
        .collect();
    assert_eq!(ids, sent, "{records:?}");
}
