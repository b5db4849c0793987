//! Shares: long-lived, counted, revocable links whose page never uses anything and whose
//! Download button (a POST) takes exactly one download, atomically, on any app server.

use std::time::{Duration, Instant};

use burnlink_tests::postgres::{database, on_postgres};
use burnlink_tests::{
    ALICE, BOB, TestApp, User, client, error_code, sample_bytes, spawn, spawn_with, start,
    test_config,
};
use reqwest::{Client, Response, StatusCode, header};
use serde_json::{Value, json};

const CHROME_HEADLESS: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like \
     Gecko) HeadlessChrome/120.0.0.0 Safari/537.36";
const SLACKBOT: &str = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)";
const CURL: &str = "curl/8.5.0";

async fn create_share(user: &User, file_id: &str, body: Value) -> Response {
    user.post_json(&format!("/api/files/{file_id}/shares"), &body)
        .await
}

/// Creates a share, panicking unless 201; returns its JSON.
async fn share_ok(user: &User, file_id: &str, body: Value) -> Value {
    let res = create_share(user, file_id, body).await;
    assert_eq!(res.status(), StatusCode::CREATED, "create share");
    res.json().await.expect("share JSON")
}

async fn shares_of(user: &User, file_id: &str) -> Vec<Value> {
    let res = user
        .client
        .get(format!("{}/api/files/{file_id}/shares", user.app_url))
        .send()
        .await
        .expect("list shares request");
    assert_eq!(res.status(), StatusCode::OK);
    res.json::<Value>()
        .await
        .expect("shares JSON")
        .as_array()
        .expect("a list")
        .clone()
}

/// The `downloads` count of the share `id`, as its owner's API says.
async fn used(user: &User, file_id: &str, id: &str) -> i64 {
    shares_of(user, file_id)
        .await
        .iter()
        .find(|s| s["id"] == id)
        .expect("the share is listed")["downloads"]
        .as_i64()
        .expect("downloads")
}

fn url_of(share: &Value) -> String {
    share["url"].as_str().expect("url").to_owned()
}

/// The form token of a share's or an upload link's page.
pub(crate) fn form_token(html: &str) -> String {
    let at = html
        .find("name=\"form_token\" value=\"")
        .expect("the page has a form token")
        + "name=\"form_token\" value=\"".len();
    html[at..].split('"').next().expect("value").to_owned()
}

/// Reads the share page as a browser would, and posts its form as a browser would
/// (same-origin, `Origin: null` under `Referrer-Policy: no-referrer`).
async fn browser_post(client: &Client, url: &str, password: Option<&str>) -> Response {
    let page = client.get(url).send().await.expect("share page");
    assert_eq!(page.status(), StatusCode::OK);
    let token = form_token(&page.text().await.unwrap());
    let mut form = vec![("form_token", token)];
    if let Some(p) = password {
        form.push(("password", p.to_owned()));
    }
    client
        .post(url)
        .header("Origin", "null")
        .header("Sec-Fetch-Site", "same-origin")
        .form(&form)
        .send()
        .await
        .expect("share POST")
}

/// `POST` as curl sends it: no body, no `Origin`, no `Sec-Fetch-Site`.
async fn script_post(client: &Client, url: &str) -> Response {
    client
        .post(url)
        .header(header::USER_AGENT, CURL)
        .send()
        .await
        .expect("share POST")
}

fn location(res: &Response) -> String {
    res.headers()
        .get(header::LOCATION)
        .expect("Location")
        .to_str()
        .unwrap()
        .to_owned()
}

async fn app_with_file(bytes: &[u8]) -> (TestApp, User, String) {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let file = alice.upload_ok("secret-plans.pdf", bytes.to_vec()).await;
    (app, alice, file.id)
}

/// Every `href`, `src` and `action` on a page, resolved against `base`.
fn links(html: &str, base: &str, page: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["href=\"", "src=\"", "action=\"", "content=\""] {
        for piece in html.split(attr).skip(1) {
            let value = piece.split('"').next().unwrap_or("").replace("&amp;", "&");
            if value.starts_with('/') {
                out.push(format!("{base}{value}"));
            } else if value.starts_with("http") {
                out.push(value);
            } else if value.is_empty() && attr == "action=\"" {
                out.push(page.to_owned());
            }
        }
    }
    out
}

#[tokio::test]
async fn share_page_get_and_head_never_use_a_download() {
    let (app, alice, file) = app_with_file(&sample_bytes(3_000)).await;
    let share = share_ok(&alice, &file, json!({ "max_downloads": 2 })).await;
    let url = url_of(&share);
    let id = share["id"].as_str().unwrap();
    // A client that follows redirects, as previewers do.
    let follower = reqwest::Client::builder().build().unwrap();

    for i in 0..100 {
        let agent = [CHROME_HEADLESS, SLACKBOT, CURL][i % 3];
        let res = follower
            .get(&url)
            .header(header::USER_AGENT, agent)
            .header(header::ACCEPT, "text/html")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let h = res.headers();
        assert_eq!(h["cache-control"], "no-store");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert!(h["x-robots-tag"].to_str().unwrap().contains("noindex"));
        assert!(
            h["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("default-src 'none'")
        );
        let html = res.text().await.unwrap();
        assert!(html.contains("secret-plans.pdf"), "the page names the file");
        let head = html.split("</head>").next().unwrap();
        assert!(
            !head.contains("secret-plans"),
            "no name in title or og: {head}"
        );
        assert!(head.contains("og:title"), "{head}");
        for link in links(&html, &app.app_url, &url) {
            let res = follower
                .get(&link)
                .header(header::USER_AGENT, agent)
                .send()
                .await
                .unwrap();
            assert!(res.status().is_success(), "{link}: {}", res.status());
        }
        let res = follower
            .head(&url)
            .header(header::USER_AGENT, agent)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["cache-control"], "no-store");
    }
    assert_eq!(used(&alice, &file, id).await, 0, "nothing used by looking");
    assert_eq!(app.count_rows("share_takes").await, 0);
}

#[tokio::test]
async fn post_downloads_the_exact_bytes_once_and_its_link_is_single_use() {
    let bytes = sample_bytes(50_000);
    let (app, alice, file) = app_with_file(&bytes).await;
    let share = share_ok(&alice, &file, json!({ "max_downloads": 3 })).await;
    let url = url_of(&share);
    let id = share["id"].as_str().unwrap();

    let res = browser_post(&app.anon, &url, None).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let link = location(&res);
    assert!(link.starts_with(&format!("{}/d/", app.dl_url)), "{link}");
    assert_eq!(used(&alice, &file, id).await, 1);

    let got = app.anon.get(&link).send().await.unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.bytes().await.unwrap(), bytes);
    let again = app.anon.get(&link).send().await.unwrap();
    assert_eq!(
        again.status(),
        StatusCode::GONE,
        "the minted link is single-use"
    );
    assert_eq!(used(&alice, &file, id).await, 1);

    // The owner sees the download: when, how much, complete, who.
    let deadline = Instant::now() + Duration::from_secs(10);
    let seen = loop {
        let res = alice
            .client
            .get(format!("{}/api/shares/{id}/downloads", app.app_url))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let list: Vec<Value> = res.json().await.unwrap();
        if !list.is_empty() || Instant::now() > deadline {
            break list;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["complete"], true);
    assert_eq!(seen[0]["bytes"], 50_000);
    assert_eq!(seen[0]["client"], "127.0.0.1");
    assert!(seen[0]["time_ms"].as_i64().unwrap() > 1_700_000_000_000);
    let file_list: Vec<Value> = alice
        .get_json(format!("{}/api/files/{file}/downloads", app.app_url))
        .await;
    assert_eq!(file_list.len(), 1);
    assert_eq!(file_list[0]["share_id"], id);
    // And on the file list, per share and per file.
    let page = alice.files_page().await;
    assert!(page.contains("1 of 3 downloads used"), "{page}");
    assert!(page.contains("Downloaded 1 time"), "{page}");
    assert!(
        page.contains("share link") && page.contains("Complete"),
        "{page}"
    );
}

#[tokio::test]
async fn share_api_has_defaults_caps_and_hides_other_users_shares() {
    let app = spawn_with(|c| {
        c.share_max_secs = 3 * 24 * 3600;
        c.share_max_downloads = 5;
    })
    .await;
    let alice = app.login(ALICE).await;
    let bob = app.login(BOB).await;
    let file = alice.upload_ok("a.txt", b"abc".to_vec()).await.id;

    // An empty body: all defaults (7 days capped to the 3-day maximum, 1 download).
    let res = alice
        .client
        .post(format!("{}/api/files/{file}/shares", app.app_url))
        .header("X-CSRF-Token", &alice.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let share: Value = res.json().await.unwrap();
    for field in [
        "id",
        "url",
        "expires_at",
        "max_downloads",
        "downloads",
        "has_password",
        "created_at",
    ] {
        assert!(share.get(field).is_some(), "{field}: {share}");
    }
    let lifetime = share["expires_at"].as_i64().unwrap() - share["created_at"].as_i64().unwrap();
    assert_eq!(lifetime, 3 * 24 * 3600);
    assert_eq!(share["max_downloads"], 1);
    assert_eq!(share["downloads"], 0);
    assert_eq!(share["has_password"], false);
    let url = url_of(&share);
    let secret = url.rsplit_once("/s/").unwrap().1;
    assert!(secret.len() >= 22, "at least 128 bits: {secret}");
    // Stored only as a hash.
    let (stored,): (String,) = sqlx::query_as("SELECT secret_hash FROM shares")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_ne!(stored, secret);
    assert!(!stored.contains(secret));

    // Without a lower cap, 7 days.
    let week = spawn().await;
    let carol = week.login(ALICE).await;
    let f = carol.upload_ok("b.txt", b"b".to_vec()).await.id;
    let s = share_ok(&carol, &f, json!({})).await;
    let lifetime = s["expires_at"].as_i64().unwrap() - s["created_at"].as_i64().unwrap();
    assert_eq!(lifetime, 7 * 24 * 3600);

    // Over the caps, or malformed: 400.
    for body in [
        json!({ "expires_in_secs": 3 * 24 * 3600 + 1 }),
        json!({ "max_downloads": 6 }),
        json!({ "max_downloads": 0 }),
        json!({ "password": "short" }),
        json!({ "surprise": 1 }),
    ] {
        let res = create_share(&alice, &file, body.clone()).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(error_code(res).await, "bad_request");
    }
    let with_pw = share_ok(
        &alice,
        &file,
        json!({ "password": "open sesame", "max_downloads": 5 }),
    )
    .await;
    assert_eq!(with_pw["has_password"], true);

    // Without CSRF: 403. Another user's file or share: 404, as everywhere.
    let res = alice
        .client
        .post(format!("{}/api/files/{file}/shares", app.app_url))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = create_share(&bob, &file, json!({})).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = bob
        .client
        .get(format!("{}/api/files/{file}/shares", app.app_url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let share_id = share["id"].as_str().unwrap();
    let res = bob.delete_at(&format!("/api/shares/{share_id}")).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = bob
        .client
        .get(format!("{}/api/shares/{share_id}/downloads", app.app_url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    // The owner's list says which state each is in; the secret is not shown again.
    let listed = shares_of(&alice, &file).await;
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|s| s.get("url").is_none()));
    assert!(listed.iter().all(|s| s["status"] == "live"));
}

#[tokio::test]
async fn revoked_expired_used_up_and_unknown_shares_show_one_neutral_page() {
    let (app, alice, file) = app_with_file(b"neutral").await;
    let revoked = share_ok(&alice, &file, json!({})).await;
    let res = alice
        .delete_at(&format!("/api/shares/{}", revoked["id"].as_str().unwrap()))
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let expired = share_ok(&alice, &file, json!({ "expires_in_secs": 1 })).await;
    let used_up = share_ok(&alice, &file, json!({})).await;
    assert_eq!(
        script_post(&app.anon, &url_of(&used_up)).await.status(),
        StatusCode::SEE_OTHER
    );
    // The one-second share is past its expiry (polled, bounded).
    let deadline = Instant::now() + Duration::from_secs(5);
    while app
        .anon
        .get(url_of(&expired))
        .send()
        .await
        .unwrap()
        .status()
        == StatusCode::OK
    {
        assert!(Instant::now() < deadline, "the share expires");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let unknown = format!("{}/s/{}", app.app_url, "A".repeat(43));
    let mut bodies = Vec::new();
    for (url, status) in [
        (url_of(&revoked), StatusCode::GONE),
        (url_of(&expired), StatusCode::GONE),
        (url_of(&used_up), StatusCode::GONE),
        (unknown.clone(), StatusCode::NOT_FOUND),
        (format!("{}/s/short", app.app_url), StatusCode::NOT_FOUND),
    ] {
        let res = app.anon.get(&url).send().await.unwrap();
        assert_eq!(res.status(), status, "{url}");
        assert_eq!(res.headers()["cache-control"], "no-store");
        assert!(res.headers().contains_key("x-robots-tag"));
        let body = res.text().await.unwrap();
        assert!(body.contains("no downloads left"), "{body}");
        assert!(!body.contains("secret-plans"), "names nothing");
        bodies.push(body);
        let res = script_post(&app.anon, &url).await;
        assert_eq!(res.status(), status, "POST {url}");
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "one page for all");

    // The owner's API says which.
    let states: Vec<(String, String)> = shares_of(&alice, &file)
        .await
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_owned(),
                s["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let state = |share: &Value| {
        states
            .iter()
            .find(|(id, _)| id == share["id"].as_str().unwrap())
            .unwrap()
            .1
            .clone()
    };
    assert_eq!(state(&revoked), "revoked");
    assert_eq!(state(&expired), "expired");
    assert_eq!(state(&used_up), "used_up");

    // A live share of a file that is then deleted: gone with it.
    let live = share_ok(&alice, &file, json!({})).await;
    assert_eq!(
        app.anon.get(url_of(&live)).send().await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(alice.delete(&file).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.anon.get(url_of(&live)).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.count_rows("shares").await, 0);
}

#[tokio::test]
async fn a_wrong_password_takes_nothing_and_is_throttled() {
    let app = spawn_with(|c| c.login_attempts_per_minute = 3).await;
    let alice = app.login(ALICE).await;
    let bytes = sample_bytes(1_000);
    let file = alice.upload_ok("pw.bin", bytes.clone()).await.id;
    let share = share_ok(
        &alice,
        &file,
        json!({ "password": "open sesame", "max_downloads": 5 }),
    )
    .await;
    let url = url_of(&share);
    let id = share["id"].as_str().unwrap();

    let page = app
        .anon
        .get(&url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("name=\"password\""), "the page asks for it");

    for _ in 0..3 {
        let res = browser_post(&app.anon, &url, Some("wrong guess")).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let body = res.text().await.unwrap();
        assert!(body.contains("Wrong password"), "{body}");
        assert!(body.contains("name=\"form_token\""), "the page again");
    }
    assert_eq!(
        used(&alice, &file, id).await,
        0,
        "wrong passwords take nothing"
    );
    let res = browser_post(&app.anon, &url, Some("open sesame")).await;
    assert_eq!(
        res.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "throttled, even when right"
    );
    let wait: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(used(&alice, &file, id).await, 0);
    // curl without the password: refused the same way (no bypass by leaving the field out).
    assert_eq!(
        script_post(&app.anon, &url).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );

    // Another share of the same file from the same address is throttled by address too, but a
    // fresh app (fresh buckets) takes the right password and serves the bytes.
    let fresh = spawn().await;
    let owner = fresh.login(ALICE).await;
    let f = owner.upload_ok("pw.bin", bytes.clone()).await.id;
    let s = share_ok(&owner, &f, json!({ "password": "open sesame" })).await;
    let res = fresh
        .anon
        .post(url_of(&s))
        .form(&[("password", "open sesame")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let got = fresh.anon.get(location(&res)).send().await.unwrap();
    assert_eq!(got.bytes().await.unwrap(), bytes);
}

#[tokio::test]
async fn a_cross_site_post_is_refused_and_curl_works() {
    let bytes = sample_bytes(2_000);
    let (app, alice, file) = app_with_file(&bytes).await;
    let share = share_ok(&alice, &file, json!({ "max_downloads": 10 })).await;
    let url = url_of(&share);
    let id = share["id"].as_str().unwrap();

    // A page on another origin auto-submitting the form: browsers say where it came from.
    for headers in [
        vec![
            ("Origin", "https://evil.example"),
            ("Sec-Fetch-Site", "cross-site"),
        ],
        vec![("Sec-Fetch-Site", "cross-site")],
        vec![("Sec-Fetch-Site", "same-site")],
        vec![("Origin", "https://evil.example")],
        // Same origin but no token (or a stale or forged one): not from our page.
        vec![("Origin", "null"), ("Sec-Fetch-Site", "same-origin")],
    ] {
        let mut req = app
            .anon
            .post(&url)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        for (name, value) in &headers {
            req = req.header(*name, *value);
        }
        let res = req.body("").send().await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{headers:?}");
    }
    let forged = app
        .anon
        .post(&url)
        .header("Sec-Fetch-Site", "same-origin")
        .form(&[("form_token", "1700000000.AAAA")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(used(&alice, &file, id).await, 0, "nothing taken");

    // Our own page's form works.
    assert_eq!(
        browser_post(&app.anon, &url, None).await.status(),
        StatusCode::SEE_OTHER
    );

    // `curl -sSL -X POST -o out.bin <share url>` downloads the file (when curl is here).
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.bin");
    match tokio::process::Command::new("curl")
        .args(["-sSL", "-X", "POST", "-o"])
        .arg(&out)
        .arg(&url)
        .status()
        .await
    {
        Ok(status) => {
            assert!(status.success(), "curl: {status}");
            assert_eq!(std::fs::read(&out).unwrap(), bytes);
            assert_eq!(used(&alice, &file, id).await, 2);
        }
        Err(e) => {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "curl: {e}");
            eprintln!("skipped the curl run: {e}");
        }
    }
    // And the same as a plain HTTP client, following the redirect.
    let follower = reqwest::Client::new();
    let res = follower.post(&url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.bytes().await.unwrap(), bytes);
}

#[tokio::test]
async fn a_link_never_fetched_gives_its_download_back_after_it_expires() {
    let bytes = sample_bytes(4_000);
    let app = spawn_with(|c| {
        c.token_ttl = 1;
        c.retired_key_publish_secs = 1;
        c.share_give_back_secs = 0;
    })
    .await;
    let alice = app.login(ALICE).await;
    let file = alice.upload_ok("back.bin", bytes.clone()).await.id;
    let share = share_ok(&alice, &file, json!({ "max_downloads": 2 })).await;
    let url = url_of(&share);
    let id = share["id"].as_str().unwrap();

    // One link fetched (served), one never fetched.
    let served = script_post(&app.anon, &url).await;
    assert_eq!(served.status(), StatusCode::SEE_OTHER);
    let got = app.anon.get(location(&served)).send().await.unwrap();
    assert_eq!(got.bytes().await.unwrap(), bytes);
    let unfetched = script_post(&app.anon, &url).await;
    assert_eq!(unfetched.status(), StatusCode::SEE_OTHER);
    assert!(used(&alice, &file, id).await >= 1);

    // Once the unfetched link has expired, its download comes back; the served one never.
    let deadline = Instant::now() + Duration::from_secs(15);
    while used(&alice, &file, id).await != 1 {
        assert!(Instant::now() < deadline, "the unused download comes back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let res = script_post(&app.anon, &url).await;
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "the download given back is usable"
    );
    let got = app.anon.get(location(&res)).send().await.unwrap();
    assert_eq!(got.bytes().await.unwrap(), bytes);
    // Past its expiry too, the served links stay counted.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert_eq!(used(&alice, &file, id).await, 2);
}

#[tokio::test]
async fn a_download_cut_short_still_counts() {
    let bytes = sample_bytes(8 * 1024 * 1024);
    let app = spawn_with(|c| {
        c.token_ttl = 1;
        c.retired_key_publish_secs = 1;
        c.share_give_back_secs = 0;
    })
    .await;
    let alice = app.login(ALICE).await;
    let file = alice.upload_ok("big.bin", bytes).await.id;
    let share = share_ok(&alice, &file, json!({})).await;
    let res = script_post(&app.anon, &url_of(&share)).await;
    let link = location(&res);
    // Read the head of the body, then hang up.
    let mut got = app.anon.get(&link).send().await.unwrap();
    let first = got.chunk().await.unwrap().expect("some bytes");
    assert!(!first.is_empty());
    drop(got);
    let id = share["id"].as_str().unwrap();
    // The partial outcome arrives; the download stays taken past the link's expiry.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM download_events WHERE outcome IN ('partial', 'ok')",
        )
        .fetch_one(&app.db)
        .await
        .unwrap();
        if n == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the outcome is stored");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert_eq!(used(&alice, &file, id).await, 1);
}

/// The no-JS pages: Share form, the created URL, the list's share row with Revoke.
#[tokio::test]
async fn share_pages_work_without_script() {
    let (app, alice, file) = app_with_file(b"page").await;
    let page = alice
        .client
        .get(format!("{}/files/{file}/share", app.app_url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("name=\"expires_in_secs\""), "{html}");
    assert!(html.contains("name=\"max_downloads\""));
    let created = alice
        .post_form(
            &format!("/files/{file}/shares"),
            &[
                ("csrf_token", alice.csrf.as_str()),
                ("expires_in_secs", "86400"),
                ("max_downloads", "4"),
                ("password", ""),
            ],
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let html = created.text().await.unwrap();
    let url_at = html
        .find(&format!("{}/s/", app.app_url))
        .expect("the URL is shown");
    let url = html[url_at..].split('"').next().unwrap().to_owned();
    assert!(html.contains("Copy"));
    assert_eq!(
        app.anon.get(&url).send().await.unwrap().status(),
        StatusCode::OK
    );

    let list = alice.files_page().await;
    assert!(list.contains("0 of 4 downloads used"), "{list}");
    assert!(!list.contains("Copy one-time link"));
    let id = shares_of(&alice, &file).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = alice
        .post_form(
            &format!("/shares/{id}/revoke"),
            &[("csrf_token", alice.csrf.as_str())],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.anon.get(&url).send().await.unwrap().status(),
        StatusCode::GONE
    );
    let list = alice.files_page().await;
    assert!(
        !list.contains("downloads used"),
        "revoked shares leave the list"
    );
    // Revoking without the CSRF token does nothing.
    let other = share_ok(&alice, &file, json!({})).await;
    let res = alice
        .post_form(
            &format!("/shares/{}/revoke", other["id"].as_str().unwrap()),
            &[("csrf_token", "nope")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        app.anon.get(url_of(&other)).send().await.unwrap().status(),
        StatusCode::OK
    );
}

/// Two app servers on one PostgreSQL: 50 concurrent POSTs spread over both on a share with
/// 3 downloads left get exactly 3 links; a revoke on one is seen at once on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_posts_over_two_app_servers_take_exactly_what_is_left() {
    let Some(pg) = database().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut config_a = test_config(dir.path());
    config_a.database_url = Some(pg.url().to_owned());
    let a = start(config_a).await;
    let mut config_b = test_config(dir.path());
    config_b.database_url = Some(pg.url().to_owned());
    config_b.download_url = Some(a.dl_url.clone());
    let b = start(config_b).await;

    let alice = a.login(ALICE).await;
    let file = alice.upload_ok("race.bin", sample_bytes(1_000)).await.id;
    let share = share_ok(&alice, &file, json!({ "max_downloads": 5 })).await;
    let url_a = url_of(&share);
    let url_b = url_a.replacen(&a.app_url, &b.app_url, 1);
    let id = share["id"].as_str().unwrap();
    // Two used already: three left.
    for _ in 0..2 {
        assert_eq!(
            script_post(&a.anon, &url_a).await.status(),
            StatusCode::SEE_OTHER
        );
    }

    let mut tasks = Vec::new();
    for i in 0..50 {
        let url = if i % 2 == 0 {
            url_a.clone()
        } else {
            url_b.clone()
        };
        tasks.push(tokio::spawn(async move {
            let client = client();
            script_post(&client, &url).await.status()
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    let won = statuses
        .iter()
        .filter(|s| **s == StatusCode::SEE_OTHER)
        .count();
    let refused = statuses.iter().filter(|s| **s == StatusCode::GONE).count();
    assert_eq!((won, refused), (3, 47), "{statuses:?}");
    assert_eq!(used(&alice, &file, id).await, 5);

    // Revoke on A: B refuses at once.
    let again = share_ok(&alice, &file, json!({ "max_downloads": 5 })).await;
    let on_b = url_of(&again).replacen(&a.app_url, &b.app_url, 1);
    assert_eq!(
        b.anon.get(&on_b).send().await.unwrap().status(),
        StatusCode::OK
    );
    let res = alice
        .delete_at(&format!("/api/shares/{}", again["id"].as_str().unwrap()))
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(script_post(&b.anon, &on_b).await.status(), StatusCode::GONE);
    assert_eq!(
        b.anon.get(&on_b).send().await.unwrap().status(),
        StatusCode::GONE
    );
}

/// Whether the app servers' consumer group has read outcome entries it has not acked yet.
async fn outcomes_pending(conn: &mut redis::aio::MultiplexedConnection) -> bool {
    let pending: Vec<redis::Value> = redis::cmd("XPENDING")
        .arg("burnlink:outcomes")
        .arg("burnlink-app")
        .query_async(conn)
        .await
        .unwrap_or_default();
    matches!(pending.first(), Some(redis::Value::Int(n)) if *n > 0)
}

/// A fleet: two download servers burning in one Redis publish outcomes to its stream; two app
/// servers on one PostgreSQL read it in one consumer group. Each outcome is stored once, and
/// the owner sees both downloads from either app server.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fleet_outcomes_reach_two_app_servers_database_once_each() {
    let Some(pg) = database().await else { return };
    // A private Redis: the stream and its group belong to this test alone.
    let Some(redis) = burnlink_tests::services::private_redis().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let placeholder = "http://127.0.0.1:9";
    let fleet_config = || {
        let mut config = test_config(dir.path());
        config.database_url = Some(pg.url().to_owned());
        config.download_url = Some(placeholder.to_owned());
        config.outcomes_redis = Some(redis.url().to_owned());
        config
    };
    let a = start(fleet_config()).await;
    let b = start(fleet_config()).await;
    let dl1 = burnlink_tests::spawn_download_server(&a, redis.url()).await;
    let dl2 = burnlink_tests::spawn_download_server(&a, redis.url()).await;

    let alice = a.login(ALICE).await;
    let bytes = sample_bytes(3_000);
    let file = alice.upload_ok("fleet.bin", bytes.clone()).await.id;
    let share = share_ok(&alice, &file, json!({ "max_downloads": 4 })).await;
    let url_a = url_of(&share);
    let url_b = url_a.replacen(&a.app_url, &b.app_url, 1);
    let id = share["id"].as_str().unwrap();

    for (url, dl) in [(&url_a, &dl1), (&url_b, &dl2)] {
        let res = script_post(&a.anon, url).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        let link = location(&res).replacen(placeholder, dl, 1);
        let got = a.anon.get(&link).send().await.unwrap();
        assert_eq!(got.status(), StatusCode::OK);
        assert_eq!(got.bytes().await.unwrap(), bytes);
    }
    let mut conn_pg = pg.connect().await;
    let jtis: Vec<String> = sqlx::query_scalar("SELECT jti FROM share_takes WHERE share_id = $1")
        .bind(id)
        .fetch_all(&mut conn_pg)
        .await
        .unwrap();
    assert_eq!(jtis.len(), 2);

    // Both events land in the shared database, and the group has nothing left pending.
    let mut conn = redis.connection().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let pending = outcomes_pending(&mut conn).await;
        let mut conn_pg = pg.connect().await;
        let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM download_events")
            .fetch_one(&mut conn_pg)
            .await
            .unwrap();
        if stored >= 2 && !pending {
            break;
        }
        drop(conn_pg);
        assert!(
            Instant::now() < deadline,
            "outcomes arrive ({stored} stored)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for jti in &jtis {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM download_events WHERE jti = $1")
            .bind(jti)
            .fetch_one(&mut conn_pg)
            .await
            .unwrap();
        assert_eq!(n, 1, "stored once: {jti}");
    }
    let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM download_events")
        .fetch_one(&mut conn_pg)
        .await
        .unwrap();
    assert_eq!(total, 2);
    let alice_b = User {
        client: alice.client.clone(),
        csrf: alice.csrf.clone(),
        app_url: b.app_url.clone(),
    };
    let seen: Vec<Value> = alice_b
        .get_json(format!("{}/api/shares/{id}/downloads", b.app_url))
        .await;
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen.iter()
            .all(|d| d["complete"] == true && d["bytes"] == 3_000)
    );
    assert_eq!(used(&alice_b, &file, id).await, 2);
}

/// Downloads at the same moment: their outcomes reach the stream as a few entries of several
/// records each (one `XADD` per burn batch, issue 29), and the app server stores every record
/// once, each under an event id of its own. (An app server that read one record per entry
/// would store a few of the forty.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_of_one_batch_are_one_stream_entry_and_each_is_stored() {
    let Some(redis) = burnlink_tests::services::private_redis().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let placeholder = "http://127.0.0.1:9";
    let mut config = test_config(dir.path());
    config.download_url = Some(placeholder.to_owned());
    config.outcomes_redis = Some(redis.url().to_owned());
    let app = start(config).await;
    let dl = burnlink_tests::spawn_download_server(&app, redis.url()).await;
    let alice = app.login(ALICE).await;
    let bytes = sample_bytes(3_000);
    let file = alice.upload_ok("together.bin", bytes.clone()).await.id;
    const N: usize = 40;
    let mut links = Vec::new();
    for _ in 0..N {
        links.push(alice.link_url(&file).await.replacen(placeholder, &dl, 1));
    }
    let anon = &app.anon;
    let gets = links.iter().map(|link| async move {
        let got = anon.get(link).send().await.unwrap();
        (got.status(), got.bytes().await.unwrap())
    });
    for (status, body) in futures_util::future::join_all(gets).await {
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, bytes);
    }

    let mut conn = redis.connection().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let pending = outcomes_pending(&mut conn).await;
        let (stored,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM download_events WHERE outcome = 'ok'")
                .fetch_one(&app.db)
                .await
                .unwrap();
        if stored >= N as i64 && !pending {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "outcomes arrive ({stored} of {N} stored)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (stored, jtis, ids): (i64, i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(DISTINCT jti), COUNT(DISTINCT event_id) FROM download_events",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!((stored, jtis, ids), (N as i64, N as i64, N as i64));
    let entries: usize = redis::cmd("XLEN")
        .arg("burnlink:outcomes")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        entries < N / 2,
        "{entries} stream entries for {N} outcomes: records sent together share an entry"
    );
}

/// The file list shows under each share the downloads made through it, newest first, at most
/// 50 of each, and none of the owner's own links'.
#[tokio::test]
async fn the_file_list_shows_each_share_its_own_downloads() {
    let (app, alice, file) = app_with_file(b"many").await;
    let busy = share_ok(&alice, &file, json!({ "max_downloads": 60 })).await;
    let quiet = share_ok(&alice, &file, json!({ "max_downloads": 5 })).await;
    let mut served = 0;
    for (share, times) in [(&quiet, 2), (&busy, 52)] {
        for _ in 0..times {
            let res = script_post(&app.anon, &url_of(share)).await;
            assert_eq!(res.status(), StatusCode::SEE_OTHER);
            let got = app.anon.get(location(&res)).send().await.unwrap();
            assert_eq!(got.bytes().await.unwrap(), &b"many"[..]);
            served += 1;
        }
    }
    let own = alice.link_url(&file).await;
    assert_eq!(app.anon.get(&own).send().await.unwrap().status(), 200);
    served += 1;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (n,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM download_events WHERE outcome = 'ok'")
                .fetch_one(&app.db)
                .await
                .unwrap();
        if n == served {
            break;
        }
        assert!(Instant::now() < deadline, "the outcomes are stored ({n})");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let page = alice.files_page().await;
    // Rows of the downloads table under one share's entry.
    let rows_of = |share: &Value| {
        let at = page
            .find(&format!(
                "data-share-id=\"{}\"",
                share["id"].as_str().unwrap()
            ))
            .expect("the share is listed");
        let entry = &page[at..];
        let entry = &entry[..entry.find("</li>").expect("its end")];
        entry.matches("<td class=\"agent\">").count()
    };
    assert_eq!(rows_of(&busy), 50, "the busy share shows its last 50");
    assert_eq!(rows_of(&quiet), 2, "the quiet share shows its own 2");
    // The file's own history has them all, the owner's link among them.
    assert!(page.contains("Downloaded 55 times"), "{page}");
    assert!(page.contains("your link"), "{page}");
}

/// Many looks at once, over every app server on the database, give each owed download back
/// exactly once, and nothing else.
async fn looks_at_once_give_back_once(apps: &[&TestApp]) {
    let app = apps[0];
    let alice = app.login(ALICE).await;
    let file = alice.upload_ok("owed.bin", b"owed".to_vec()).await.id;
    let share = share_ok(&alice, &file, json!({ "max_downloads": 10 })).await;
    let id = share["id"].as_str().unwrap();
    // One link still live, five expired unused: six used, five of them owed back.
    taken(app, id, i64::MAX).await;
    for _ in 0..5 {
        owe_one(app, id).await;
    }
    assert_eq!(
        used(&alice, &file, id).await,
        1,
        "the owner's look gives five back"
    );
    for _ in 0..5 {
        owe_one(app, id).await;
    }
    let looks = (0..30).map(|i| {
        let url = url_of(&share).replacen(&app.app_url, &apps[i % apps.len()].app_url, 1);
        async move { client().get(url).send().await.expect("look").status() }
    });
    for status in futures_util::future::join_all(looks).await {
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(
        used(&alice, &file, id).await,
        1,
        "five given back, once each"
    );
    let given_back: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM share_takes WHERE given_back = 1")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(given_back, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn looks_at_once_give_each_download_back_once() {
    let app = spawn().await;
    looks_at_once_give_back_once(&[&app]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn looks_at_once_over_two_app_servers_give_each_download_back_once() {
    let Some(pg) = database().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let a = start(on_postgres(dir.path(), &pg)).await;
    let b = start(on_postgres(dir.path(), &pg)).await;
    looks_at_once_give_back_once(&[&a, &b]).await;
}

/// Sends `request` under a request id of its own; the SQL statements it ran are then
/// `burnlink_tests::logs::statements_of(id)`.
async fn counted(request: reqwest::RequestBuilder) -> (Response, String) {
    let id = format!("count-{}", shared::random_token(9));
    let res = request
        .header("X-Request-Id", &id)
        .send()
        .await
        .expect("counted request");
    (res, id)
}

/// A take of share `id` whose link expires at `link_expires_at` (Unix seconds) and was never
/// fetched, as a POST would have recorded it.
async fn taken(app: &TestApp, id: &str, link_expires_at: i64) {
    sqlx::query(
        "INSERT INTO share_takes (jti, share_id, taken_at, link_expires_at, given_back) \
         VALUES ($1, $2, 1, $3, 0)",
    )
    .bind(shared::random_token(12))
    .bind(id)
    .bind(link_expires_at)
    .execute(&app.db)
    .await
    .expect("take");
    sqlx::query("UPDATE shares SET downloads = downloads + 1 WHERE id = $1")
        .bind(id)
        .execute(&app.db)
        .await
        .expect("counted take");
}

/// A take of share `id` whose link expired long ago with nothing served: owed back.
async fn owe_one(app: &TestApp, id: &str) {
    taken(app, id, 2).await;
}

/// Statements of the file list (the page and the API's list of the file's shares), each
/// listed twice: first with a download owed back to every share, then with none.
async fn list_statements(app: &TestApp, alice: &User, file: &str, ids: &[String]) -> Vec<String> {
    let mut runs = Vec::new();
    for url in [
        format!("{}/", app.app_url),
        format!("{}/api/files/{file}/shares", app.app_url),
    ] {
        for id in ids {
            owe_one(app, id).await;
        }
        for _ in 0..2 {
            let (res, request) = counted(alice.client.get(&url)).await;
            assert_eq!(res.status(), StatusCode::OK, "{url}");
            runs.push(request);
        }
    }
    runs
}

/// The bounds of issue 25: a take is at most 4 statements (one of them the atomic `UPDATE`),
/// and the number of statements listing a user's shares does not depend on how many there
/// are, whether or not downloads are owed back to them.
async fn statement_bounds(app: &TestApp) {
    use burnlink_tests::logs::{capture_statements, statements_of};
    capture_statements();
    let alice = &app.login(ALICE).await;
    let file = &alice.upload_ok("counted.bin", b"counted".to_vec()).await.id;
    let mut shares = vec![share_ok(alice, file, json!({ "max_downloads": 50 })).await];
    let ids = |shares: &[Value]| -> Vec<String> {
        shares
            .iter()
            .map(|s| s["id"].as_str().expect("id").to_owned())
            .collect()
    };
    let one = list_statements(app, alice, file, &ids(&shares)).await;
    for _ in 1..20 {
        shares.push(share_ok(alice, file, json!({ "max_downloads": 50 })).await);
    }
    let twenty = list_statements(app, alice, file, &ids(&shares)).await;
    // Every owed download was given back, on all twenty shares.
    for share in shares_of(alice, file).await {
        assert_eq!(share["downloads"], 0, "{share}");
    }

    let (res, plain) = counted(
        app.anon
            .post(url_of(&shares[0]))
            .header(header::USER_AGENT, CURL),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let locked = share_ok(alice, file, json!({ "password": "open sesame 1" })).await;
    let (res, with_password) = counted(
        app.anon
            .post(url_of(&locked))
            .header(header::USER_AGENT, CURL)
            .form(&[("password", "open sesame 1")]),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);

    // Read last: a statement is logged as it finishes, which may be just after its answer.
    // All figures first, then the bounds.
    let what = ["page, owed", "page", "API list, owed", "API list"];
    let lists: Vec<_> = what
        .iter()
        .enumerate()
        .map(|(i, what)| (what, statements_of(&one[i]), statements_of(&twenty[i])))
        .collect();
    let takes = [
        ("take", statements_of(&plain)),
        ("take with a password", statements_of(&with_password)),
    ];
    for (what, a, b) in &lists {
        eprintln!("{what}: 1 share: {}, 20 shares: {}", a.len(), b.len());
    }
    for (what, statements) in &takes {
        eprintln!("{what}: {}", statements.len());
    }
    for (what, a, b) in &lists {
        assert_eq!(a.len(), b.len(), "{what}: 1 share {a:#?}\n20 shares {b:#?}");
    }
    for (what, statements) in &takes {
        assert!(statements.len() <= 4, "{what}: {statements:#?}");
        let atomic = statements
            .iter()
            .filter(|s| s.contains("SET downloads = downloads + 1"))
            .count();
        assert_eq!(atomic, 1, "{what}: one atomic take: {statements:#?}");
    }
}

#[tokio::test]
async fn a_take_is_four_statements_at_most_and_the_list_does_not_grow_with_shares() {
    statement_bounds(&spawn().await).await;
}

#[tokio::test]
async fn a_take_is_four_statements_at_most_and_the_list_does_not_grow_on_postgres() {
    let Some(pg) = database().await else { return };
    let dir = tempfile::tempdir().unwrap();
    statement_bounds(&start(on_postgres(dir.path(), &pg)).await).await;
}
