//! Upload links: people without an account send files to a link's owner. The link's page
//! never uses anything; its limits hold under concurrent uploads on any number of app
//! servers, counted on the bytes that arrived; a refused or broken upload leaves no file, no
//! object and no row; what arrives is the owner's, marked received, and announced once.

use std::time::Duration;

use burnlink_tests::postgres::{database, two_app_servers};
use burnlink_tests::{
    ALICE, BOB, TestApp, User, client, doc_block, error_code, get_text, sample_bytes,
    sleep_until_second, spawn, spawn_with, temp_file,
};
use reqwest::{Client, Response, StatusCode, header};
use serde_json::{Value, json};

use burnlink_tests::tus::{parts, tuspy, until};

use crate::shares::form_token;
use crate::webhooks::{Receiver, app_with_webhook};

async fn create_link(user: &User, body: Value) -> Response {
    user.post_json("/api/upload-links", &body).await
}

/// Creates a link, panicking unless 201; returns its JSON.
async fn link_ok(user: &User, body: Value) -> Value {
    let res = create_link(user, body).await;
    assert_eq!(res.status(), StatusCode::CREATED, "create upload link");
    res.json().await.expect("upload link JSON")
}

/// Creates a link with `limits` (the API's JSON), panicking unless 201; returns its URL
/// (`<app>/u/<secret>`, shown only now) and its id.
async fn link_with(user: &User, limits: Value) -> (String, String) {
    let link = link_ok(user, limits).await;
    (url_of(&link), link["id"].as_str().expect("id").to_owned())
}

fn url_of(link: &Value) -> String {
    link["url"].as_str().expect("url").to_owned()
}

/// The user's links as the API lists them.
async fn links_of(user: &User) -> Vec<Value> {
    let list: Value = user
        .get_json(format!("{}/api/upload-links", user.app_url))
        .await;
    list.as_array().expect("a list").clone()
}

/// The link `id` as its owner's list shows it.
async fn listed(user: &User, id: &str) -> Value {
    links_of(user)
        .await
        .into_iter()
        .find(|l| l["id"] == id)
        .expect("the link is listed")
}

/// `POST` one file to `url` as curl sends a form: no `Origin`, no `Sec-Fetch-Site`.
async fn send(client: &Client, url: &str, name: &str, bytes: Vec<u8>) -> Response {
    send_with(client, url, &[], name, bytes).await
}

/// Like [`send`], with small fields ahead of the file.
async fn send_with(
    client: &Client,
    url: &str,
    fields: &[(&str, &str)],
    name: &str,
    bytes: Vec<u8>,
) -> Response {
    post_file(
        client,
        url,
        &[(header::USER_AGENT.as_str(), "curl/8.5.0")],
        fields,
        (name, bytes),
    )
    .await
}

/// `POST` a multipart form to `url` with these request headers: `fields`, then `file`.
async fn post_file(
    client: &Client,
    url: &str,
    headers: &[(&str, &str)],
    fields: &[(&str, &str)],
    (name, bytes): (&str, Vec<u8>),
) -> Response {
    let mut form = reqwest::multipart::Form::new();
    for (k, v) in fields {
        form = form.text(k.to_string(), v.to_string());
    }
    let part = reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned());
    let mut req = client.post(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.multipart(form.part("file", part))
        .send()
        .await
        .expect("upload through the link")
}

/// What our own page's form sends: same-origin, `Origin: null` under no-referrer.
const SAME_ORIGIN: [(&str, &str); 2] = [("Origin", "null"), ("Sec-Fetch-Site", "same-origin")];

/// What a refused or broken upload must not leave: no file row, no stored object, no slot
/// held, nothing counted.
async fn nothing_left(app: &TestApp, alice: &User, id: &str, files_before: i64) {
    assert_eq!(app.count_rows("files").await, files_before, "no file row");
    assert_eq!(
        app.stored_objects().len() as i64,
        files_before,
        "no stored object: {:?}",
        app.stored_objects()
    );
    assert_eq!(app.count_rows("upload_link_slots").await, 0, "no slot held");
    let link = listed(alice, id).await;
    assert_eq!(link["files_pending"], 0, "{link}");
    let (kept,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM files WHERE received_via = $1")
        .bind(id)
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert_eq!(link["files_received"], kept, "counted as kept: {link}");
}

#[tokio::test]
async fn the_api_creates_lists_and_revokes_and_hides_other_users_links() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let bob = app.login(BOB).await;

    let link = link_ok(
        &alice,
        json!({"max_files": 2, "max_bytes": 10_000, "note": "The signed contract, please."}),
    )
    .await;
    let url = url_of(&link);
    let secret = url
        .strip_prefix(&format!("{}/u/", app.app_url))
        .expect("<app>/u/<secret>");
    assert!(secret.len() >= 43, "256 bits: {secret}");
    assert_eq!(link["status"], "live");
    assert_eq!(link["max_files"], 2);
    assert_eq!(link["has_password"], false);
    let id = link["id"].as_str().unwrap().to_owned();
    // Only the hash is stored; the list never shows the URL again.
    let (stored,): (String,) = sqlx::query_as("SELECT secret_hash FROM upload_links")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(!stored.contains(secret));
    let listed_link = listed(&alice, &id).await;
    assert!(listed_link.get("url").is_none(), "{listed_link}");
    assert_eq!(listed_link["note"], "The signed contract, please.");
    assert_eq!(listed_link["files"], json!([]));

    // Defaults, and values out of range.
    let defaults = link_ok(&alice, json!({})).await;
    assert_eq!(defaults["max_files"], 10);
    assert_eq!(defaults["max_bytes"], app.config.max_upload_bytes);
    for bad in [
        json!({"max_files": 0}),
        json!({"max_files": 1001}),
        json!({"max_bytes": 0}),
        json!({"expires_in_secs": 0}),
        json!({"password": "short"}),
        json!({"unknown": 1}),
    ] {
        let res = create_link(&alice, bad.clone()).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(error_code(res).await, "bad_request");
    }

    // Scopes: uploads:write makes and revokes; files:write does not; files:read lists.
    let writer = alice.create_token(&["uploads:write"]).await;
    let files_only = alice.create_token(&["files:write"]).await;
    let res = Client::new()
        .post(format!("{}/api/upload-links", app.app_url))
        .bearer_auth(&files_only)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(res).await, "insufficient_scope");
    let res = Client::new()
        .post(format!("{}/api/upload-links", app.app_url))
        .bearer_auth(&writer)
        .json(&json!({"max_files": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(links_of(&alice).await.len(), 3);

    // Bob sees none of them and cannot revoke them.
    assert!(links_of(&bob).await.is_empty());
    let res = bob.delete_at(&format!("/api/upload-links/{id}")).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(listed(&alice, &id).await["status"], "live");

    // Revoked at once, twice is fine; the link then refuses uploads and shows why.
    for _ in 0..2 {
        let res = Client::new()
            .delete(format!("{}/api/upload-links/{id}", app.app_url))
            .bearer_auth(&writer)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
    }
    assert_eq!(listed(&alice, &id).await["status"], "revoked");
    let res = send(&app.anon, &url, "late.txt", b"too late".to_vec()).await;
    assert_eq!(res.status(), StatusCode::GONE);
    assert_eq!(error_code(res).await, "upload_link_gone");
    let page = app.anon.get(&url).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::GONE);
    assert!(page.text().await.unwrap().contains("can no longer be used"));
    nothing_left(&app, &alice, &id, 0).await;
}

#[tokio::test]
async fn the_page_uses_nothing_and_curl_sends_a_file_as_documented() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let (url, id) = link_with(
        &alice,
        json!({"max_files": 2, "note": "Scans of <the> contract"}),
    )
    .await;
    let locked = link_ok(&alice, json!({"max_files": 1, "password": "open sesame"})).await;

    // Scanners and previews: GET twice and HEAD, each sees the page, nothing is used.
    for _ in 0..2 {
        let res = app.anon.get(&url).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["cache-control"], "no-store");
        assert_eq!(res.headers()["x-robots-tag"], "noindex, nofollow");
        let page = res.text().await.unwrap();
        assert!(page.contains("Scans of &lt;the&gt; contract"), "{page}");
        assert!(page.contains("name=\"file\""), "an upload form");
        assert!(
            page.contains("<meta property=\"og:title\" content=\"Send files\">"),
            "a preview names nothing: {page}"
        );
    }
    let head = app.anon.head(&url).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    let unknown = app
        .anon
        .get(format!("{}/u/{}", app.app_url, "A".repeat(43)))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let seen = listed(&alice, &id).await;
    assert_eq!(
        (
            seen["files_received"].clone(),
            seen["files_pending"].clone()
        ),
        (json!(0), json!(0))
    );
    nothing_left(&app, &alice, &id, 0).await;

    // docs/UPLOADS.md's recipe, run as written.
    let (dir, _) = temp_file("contract.pdf", &sample_bytes(3_000));
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(doc_block("UPLOADS.md", "shell"))
        .current_dir(dir.path())
        .env("LINK", &url)
        .env("LOCKED_LINK", url_of(&locked))
        .output()
        .await
        .expect("sh runs the recipe");
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let answers: Vec<Value> = serde_json::Deserializer::from_str(&stdout)
        .into_iter()
        .map(|v| v.expect("JSON answers"))
        .collect();
    assert_eq!(answers.len(), 2, "{answers:?}");
    for answer in &answers {
        assert_eq!(answer["name"], "contract.pdf");
        assert_eq!(answer["size"], 3_000);
    }
    assert_eq!(answers[0]["files_left"], 1);
    assert_eq!(answers[1]["files_left"], 0);

    // A browser's POST needs the page's form token; another site's is refused.
    let res = post_file(&app.anon, &url, &SAME_ORIGIN, &[], ("x", b"x".to_vec())).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(res).await, "csrf");
    let cross_site = [("Sec-Fetch-Site", "cross-site")];
    let res = post_file(&app.anon, &url, &cross_site, &[], ("x", b"x".to_vec())).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(res).await, "cross_site");

    // The page's own form, as a browser without script posts it: a page says what arrived.
    let (_, page) = get_text(&app.anon, &url).await;
    let token = form_token(&page);
    let as_page = [
        SAME_ORIGIN[0],
        SAME_ORIGIN[1],
        ("Accept", "text/html,application/xhtml+xml"),
    ];
    let fields = [("form_token", token.as_str())];
    let res = post_file(
        &app.anon,
        &url,
        &as_page,
        &fields,
        ("form.txt", b"form".to_vec()),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let answer = res.text().await.unwrap();
    assert!(
        answer.contains("Received") && answer.contains("form.txt"),
        "{answer}"
    );
    assert!(answer.contains("0 more files"), "{answer}");

    // The link is full now: refused, and says so.
    let res = send(&app.anon, &url, "more.txt", b"more".to_vec()).await;
    assert_eq!(res.status(), StatusCode::GONE);
    assert_eq!(error_code(res).await, "upload_link_gone");
    assert_eq!(listed(&alice, &id).await["status"], "full");
    assert_eq!(app.count_rows("files").await, 3);
}

#[tokio::test]
async fn a_wrong_password_stores_nothing_and_is_throttled() {
    let app = spawn_with(|c| c.login_attempts_per_minute = 3).await;
    let alice = app.login(ALICE).await;
    let (url, id) = link_with(&alice, json!({"password": "open sesame"})).await;
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

    for fields in [
        &[("password", "wrong guess")][..],
        &[],
        &[("password", "nope nope")],
    ] {
        let res = send_with(&app.anon, &url, fields, "a.txt", sample_bytes(500)).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{fields:?}");
        assert_eq!(error_code(res).await, "wrong_password");
    }
    nothing_left(&app, &alice, &id, 0).await;
    let res = send_with(
        &app.anon,
        &url,
        &[("password", "open sesame")],
        "a.txt",
        sample_bytes(500),
    )
    .await;
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
    nothing_left(&app, &alice, &id, 0).await;

    // A fresh app (fresh buckets) takes the right password.
    let fresh = spawn().await;
    let owner = fresh.login(ALICE).await;
    let link = link_ok(&owner, json!({"password": "open sesame"})).await;
    let res = send_with(
        &fresh.anon,
        &url_of(&link),
        &[("password", "open sesame")],
        "a.txt",
        sample_bytes(500),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn a_link_refuses_from_the_second_it_expires() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let link = link_ok(&alice, json!({"expires_in_secs": 3})).await;
    let (url, id) = (url_of(&link), link["id"].as_str().unwrap().to_owned());
    let expires_at = link["expires_at"].as_u64().unwrap();
    let res = send(&app.anon, &url, "early.txt", b"in time".to_vec()).await;
    assert_eq!(res.status(), StatusCode::CREATED, "before its expiry");

    sleep_until_second(expires_at).await;
    let res = send(&app.anon, &url, "late.txt", b"too late".to_vec()).await;
    assert_eq!(res.status(), StatusCode::GONE, "at the exact second");
    assert_eq!(error_code(res).await, "upload_link_gone");
    let page = app.anon.get(&url).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::GONE);
    assert_eq!(listed(&alice, &id).await["status"], "expired");
    nothing_left(&app, &alice, &id, 1).await;
}

/// A multipart body whose file part is streamed in chunks with no declared length, so the
/// server learns the size only as the bytes arrive.
fn streamed(bytes: Vec<u8>) -> reqwest::multipart::Form {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(1024).map(|c| Ok(c.to_vec())).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::stream(body).file_name("big.bin"),
    )
}

#[tokio::test]
async fn max_bytes_exceeded_mid_stream_leaves_nothing() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let (url, id) = link_with(&alice, json!({"max_bytes": 10_000, "max_files": 5})).await;

    // No length declared: refused when the 10,001st byte arrives.
    let res = app
        .anon
        .post(&url)
        .multipart(streamed(sample_bytes(50_000)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(res).await, "too_large");
    nothing_left(&app, &alice, &id, 0).await;

    // 6,000 fit; then 6,000 more do not (4,000 left), whether declared or streamed.
    let res = send(&app.anon, &url, "first.bin", sample_bytes(6_000)).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = send(&app.anon, &url, "second.bin", sample_bytes(6_000)).await;
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let res = app
        .anon
        .post(&url)
        .multipart(streamed(sample_bytes(6_000)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    nothing_left(&app, &alice, &id, 1).await;
    let seen = listed(&alice, &id).await;
    assert_eq!(seen["bytes_received"], 6_000);

    // The rest fits exactly.
    let res = send(&app.anon, &url, "rest.bin", sample_bytes(4_000)).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["bytes_left"], 0);
    assert_eq!(listed(&alice, &id).await["status"], "full");
}

/// 50 uploads at once through `urls` (taken in turn) on a link allowing 3 files: exactly 3
/// are kept, the others refused with nothing left behind.
async fn fifty_at_once(app: &TestApp, alice: &User, id: &str, urls: &[String]) {
    let mut tasks = Vec::new();
    for i in 0..50 {
        let url = urls[i % urls.len()].clone();
        tasks.push(tokio::spawn(async move {
            let client = client();
            let res = send(
                &client,
                &url,
                &format!("race-{i}.bin"),
                sample_bytes(20_000),
            )
            .await;
            let status = res.status();
            let code = if status == StatusCode::CREATED {
                String::new()
            } else {
                error_code(res).await
            };
            (status, code)
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    let kept = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    assert_eq!(kept, 3, "{answers:?}");
    for (status, code) in answers.iter().filter(|(s, _)| *s != StatusCode::CREATED) {
        assert!(
            matches!(
                (status.as_u16(), code.as_str()),
                (409, "upload_link_full") | (410, "upload_link_gone")
            ),
            "{status} {code}"
        );
    }
    let files: Vec<Value> = alice.get_json(format!("{}/api/files", app.app_url)).await;
    assert_eq!(files.len(), 3);
    assert_eq!(app.stored_objects().len(), 3, "{:?}", app.stored_objects());
    let link = listed(alice, id).await;
    assert_eq!(link["files_received"], 3);
    assert_eq!(link["files_pending"], 0);
    assert_eq!(link["bytes_received"], 60_000);
    assert_eq!(link["files"].as_array().unwrap().len(), 3);
    assert_eq!(app.count_rows("upload_link_slots").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_uploads_on_a_three_file_link_keep_exactly_three() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let (url, id) = link_with(&alice, json!({"max_files": 3})).await;
    fifty_at_once(&app, &alice, &id, &[url]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_uploads_over_two_app_servers_on_postgres_keep_exactly_three() {
    let Some(pg) = database().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_app_servers(dir.path(), &pg).await;

    let alice = a.login(ALICE).await;
    let (url_a, id) = link_with(&alice, json!({"max_files": 3})).await;
    let url_b = url_a.replacen(&a.app_url, &b.app_url, 1);
    fifty_at_once(&a, &alice, &id, &[url_a, url_b.clone()]).await;

    // Revoked on A: B refuses at once.
    let (again, again_id) = link_with(&alice, json!({})).await;
    let on_b = again.replacen(&a.app_url, &b.app_url, 1);
    let res = alice
        .delete_at(&format!("/api/upload-links/{again_id}"))
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = send(&b.anon, &on_b, "late.txt", b"late".to_vec()).await;
    assert_eq!(res.status(), StatusCode::GONE);
}

#[tokio::test]
async fn a_received_file_is_the_owners_marked_received_and_shareable() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let (url, id) = link_with(&alice, json!({"note": "for the audit"})).await;
    let bytes = sample_bytes(4_321);
    let res = send(&app.anon, &url, "ledger.xlsx", bytes.clone()).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let answer: Value = res.json().await.unwrap();
    assert!(
        answer.get("id").is_none(),
        "the sender learns no file id: {answer}"
    );

    let files: Vec<Value> = alice.get_json(format!("{}/api/files", app.app_url)).await;
    assert_eq!(files.len(), 1);
    let file = &files[0];
    assert_eq!(file["name"], "ledger.xlsx");
    assert_eq!(file["size"], 4_321);
    assert_eq!(file["received"]["link_id"], id);
    assert_eq!(file["received"]["client"], "127.0.0.1");
    assert_eq!(file["received"]["user_agent"], "curl/8.5.0");
    let listed_link = listed(&alice, &id).await;
    assert_eq!(listed_link["files"][0]["id"], file["id"]);
    let page = alice.files_page().await;
    assert!(
        page.contains("Received") && page.contains("curl/8.5.0"),
        "{page}"
    );

    // The owner's like any other: a one-time link serves the bytes, a share can be made.
    let file_id = file["id"].as_str().unwrap();
    let got = app
        .anon
        .get(alice.link_url(file_id).await)
        .send()
        .await
        .unwrap();
    assert_eq!(got.bytes().await.unwrap(), bytes);
    let res = alice
        .post_json(&format!("/api/files/{file_id}/shares"), &json!({}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    // Bob does not see it.
    let bob = app.login(BOB).await;
    let theirs: Vec<Value> = bob.get_json(format!("{}/api/files", app.app_url)).await;
    assert!(theirs.is_empty());

    // It counts against the owner's --max-files-per-user.
    let capped = spawn_with(|c| c.max_files_per_user = 1).await;
    let owner = capped.login(ALICE).await;
    owner.upload_ok("own.txt", b"mine".to_vec()).await;
    let (url, id) = link_with(&owner, json!({})).await;
    let res = send(&capped.anon, &url, "more.txt", b"more".to_vec()).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(res).await, "too_many_files");
    nothing_left(&capped, &owner, &id, 1).await;
}

#[tokio::test]
async fn a_received_file_is_announced_once_as_upload_received() {
    let Some(receiver) = Receiver::start().await else {
        return;
    };
    let (app, alice, _) = app_with_webhook(&receiver, &["upload.received"], |_| {}).await;
    let link = link_ok(&alice, json!({})).await;
    let res = send(&app.anon, &url_of(&link), "scan.pdf", sample_bytes(2_048)).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    // A refused upload (too large for the link) announces nothing.
    let small = link_ok(&alice, json!({"max_bytes": 10})).await;
    let res = send(&app.anon, &url_of(&small), "big.pdf", sample_bytes(100)).await;
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let got = receiver
        .wait_for("the upload's event", |got| !got.is_empty())
        .await;
    let event = &got[0];
    assert_eq!(event.kind.as_deref(), Some("upload.received"));
    assert_eq!(event.verified, [true], "standardwebhooks verifies it");
    let files: Vec<Value> = alice.get_json(format!("{}/api/files", app.app_url)).await;
    assert_eq!(event.data["file_id"], files[0]["id"]);
    assert_eq!(event.data["link_id"], link["id"]);
    assert_eq!(event.data["bytes"], 2_048);
    assert_eq!(event.data["file_name"], "scan.pdf");
    assert!(
        event.data["time"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    // Exactly once: the outbox holds one row for it, delivered.
    let (rows,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM webhook_messages WHERE event_type = 'upload.received'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(rows, 1);
    let got = receiver
        .wait_for("nothing more", |got| got.iter().all(|d| d.id == event.id))
        .await;
    assert!(got.iter().all(|d| d.id == event.id), "{got:?}");
}

/// An upload sent by hand over one connection, a chunk at a time (chunked transfer coding),
/// so the test decides when each byte arrives and when the connection breaks.
struct RawUpload {
    socket: tokio::net::TcpStream,
}

impl RawUpload {
    /// Sends the request head and the file part's head.
    async fn start(app: &TestApp, url: &str, name: &str) -> RawUpload {
        let path = url.strip_prefix(&app.app_url).expect("a URL of the app");
        let addr = app.app_url.strip_prefix("http://").expect("http");
        let socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let mut upload = RawUpload { socket };
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: multipart/form-data; \
             boundary=XyZ\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        upload.raw(head.as_bytes()).await;
        let part = format!(
            "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        );
        upload.send(part.as_bytes()).await;
        upload
    }

    async fn raw(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.socket.write_all(bytes).await.expect("write");
        self.socket.flush().await.expect("flush");
    }

    /// One chunk of the body.
    async fn send(&mut self, bytes: &[u8]) {
        let mut chunk = format!("{:x}\r\n", bytes.len()).into_bytes();
        chunk.extend_from_slice(bytes);
        chunk.extend_from_slice(b"\r\n");
        self.raw(&chunk).await;
    }

    /// Ends the body and reads the answer's status.
    async fn finish(mut self) -> u16 {
        use tokio::io::AsyncReadExt;
        self.send(b"\r\n--XyZ--\r\n").await;
        self.raw(b"0\r\n\r\n").await;
        let mut head = vec![0u8; 12];
        self.socket
            .read_exact(&mut head)
            .await
            .expect("status line");
        String::from_utf8_lossy(&head[9..12])
            .parse()
            .expect("status")
    }
}

/// The slot `link_id`'s upload holds: when it was reserved and last seen.
async fn slot_times(app: &TestApp, link_id: &str) -> Option<(i64, i64)> {
    sqlx::query_as("SELECT reserved_at, seen_at FROM upload_link_slots WHERE link_id = $1")
        .bind(link_id)
        .fetch_optional(&app.db)
        .await
        .expect("slot")
}

/// An upload that keeps receiving bytes marks its slot seen, so a long one is never taken
/// for the slot of a dead upload.
#[tokio::test]
async fn a_streaming_upload_marks_its_slot_seen() {
    let app = spawn_with(|c| c.upload_idle_secs = 1).await;
    let alice = app.login(ALICE).await;
    let (url, id) = link_with(&alice, json!({"max_files": 1})).await;
    let mut upload = RawUpload::start(&app, &url, "slow.bin").await;
    upload.send(&sample_bytes(1_000)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut sent = 1_000;
    loop {
        if let Some((reserved, seen)) = slot_times(&app, &id).await
            && seen > reserved
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the slot is marked seen"
        );
        // A byte well within --upload-idle-secs keeps the upload alive.
        tokio::time::sleep(Duration::from_millis(200)).await;
        upload.send(&sample_bytes(100)).await;
        sent += 100;
    }
    assert_eq!(upload.finish().await, 201);
    let seen = listed(&alice, &id).await;
    assert_eq!(seen["bytes_received"], sent, "{seen}");
    assert_eq!(app.count_rows("upload_link_slots").await, 0);
}

/// A broken connection mid-upload: the slot is freed and nothing is kept.
#[tokio::test]
async fn a_broken_upload_frees_its_slot_and_leaves_nothing() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let (url, id) = link_with(&alice, json!({"max_files": 1})).await;
    let mut upload = RawUpload::start(&app, &url, "cut.bin").await;
    upload.send(&sample_bytes(8_000)).await;
    // The slot is held while the bytes arrive.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while listed(&alice, &id).await["files_pending"] != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the upload holds a slot"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let res = send(&app.anon, &url, "other.txt", b"x".to_vec()).await;
    assert_eq!(res.status(), StatusCode::CONFLICT, "the one slot is held");
    assert_eq!(error_code(res).await, "upload_link_full");
    drop(upload);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let link = listed(&alice, &id).await;
        if link["files_pending"] == 0 && app.stored_objects().is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "freed: {link}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    nothing_left(&app, &alice, &id, 0).await;
    // The freed slot takes the next file.
    let res = send(&app.anon, &url, "next.txt", b"next".to_vec()).await;
    assert_eq!(res.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn the_owners_page_makes_lists_and_revokes_without_script() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let page = alice
        .client
        .get(format!("{}/upload-links", app.app_url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let files_page = alice.files_page().await;
    assert!(
        files_page.contains("href=\"/upload-links\""),
        "linked in the header"
    );
    // Without the CSRF token: refused, nothing made.
    let res = alice
        .post_form("/upload-links", &[("max_files", "2")])
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(links_of(&alice).await.is_empty());
    let res = alice
        .post_form(
            "/upload-links",
            &[
                ("csrf_token", alice.csrf.as_str()),
                ("note", "tax papers"),
                ("expires_in_secs", "86400"),
                ("max_files", "2"),
                ("max_mib", "1"),
                ("password", ""),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let created = res.text().await.unwrap();
    assert!(
        created.contains(&format!("{}/u/", app.app_url)),
        "{created}"
    );
    let link = links_of(&alice).await.remove(0);
    assert_eq!(link["max_bytes"], 1024 * 1024);
    assert_eq!(link["note"], "tax papers");
    let id = link["id"].as_str().unwrap();
    let res = alice
        .post_form(
            "/upload-links",
            &[("csrf_token", alice.csrf.as_str()), ("max_files", "0")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("max_files must be 1 to 1000")
    );
    let res = alice
        .post_form(
            &format!("/upload-links/{id}/revoke"),
            &[("csrf_token", alice.csrf.as_str())],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let page = alice
        .client
        .get(format!("{}/upload-links", app.app_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("revoked") && page.contains("tax papers"),
        "{page}"
    );
    assert_eq!(listed(&alice, id).await["status"], "revoked");
}

/// A sender's browser, with and without script, on the link's page: the file arrives whole,
/// the answer says so.
async fn browser_sends(javascript: bool) {
    use burnlink_tests::browser;
    let test = if javascript {
        "browser_sends_through_an_upload_link_with_javascript"
    } else {
        "browser_sends_through_an_upload_link_without_javascript"
    };
    let Some(harness) = browser::start(test).await else {
        return;
    };
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let (url, _) = link_with(
        &alice,
        json!({"max_files": 2, "note": "Your passport scan"}),
    )
    .await;
    let bytes = sample_bytes(300_000);
    let (_dir, file) = temp_file("passport.jpg", &bytes);
    let walk = async {
        let browser = harness.browser(javascript).await;
        browser.driver.goto(&url).await.unwrap();
        browser.find_text("blockquote", "Your passport scan").await;
        harness.screenshot(&browser, "upload-link-page").await;
        browser
            .find("#link-file")
            .await
            .send_keys(file.to_string_lossy())
            .await
            .unwrap();
        browser
            .find("#link-upload-button")
            .await
            .click()
            .await
            .unwrap();
        if javascript {
            // Answered in place: the progress bar at 100 % and what arrived.
            browser
                .find_text("#link-status.received", "Received passport.jpg")
                .await;
            let bar = browser.find("#link-bar").await;
            assert_eq!(bar.attr("value").await.unwrap().as_deref(), Some("100"));
            browser.find_text(".link-files-left", "1").await;
        } else {
            browser.wait_for_text("Received passport.jpg").await;
        }
        harness.screenshot(&browser, "upload-link-received").await;
        browser.quit().await;
        if javascript {
            // The owner sees it arrive: on the Upload links page (linked in the header) under
            // its link, and in the file list marked received.
            let owner = harness.browser(true).await;
            owner.log_in(&app.app_url).await;
            owner.find_text("table.files tbody tr", "Received").await;
            owner
                .find_text("header a", "Upload links")
                .await
                .click()
                .await
                .unwrap();
            owner
                .find_text("li.upload-link table.received", "passport.jpg")
                .await;
            harness.screenshot(&owner, "upload-links-owner").await;
            owner.quit().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(120), walk)
        .await
        .expect("the browser walk finishes in time");
    let files: Vec<Value> = alice.get_json(format!("{}/api/files", app.app_url)).await;
    assert_eq!(files.len(), 1);
    let got = app
        .anon
        .get(alice.link_url(files[0]["id"].as_str().unwrap()).await)
        .send()
        .await
        .unwrap();
    assert_eq!(got.bytes().await.unwrap(), bytes, "byte for byte");
    assert!(
        files[0]["received"]["user_agent"]
            .as_str()
            .is_some_and(|ua| ua.contains("Chrome")),
        "{}",
        files[0]
    );
}

#[tokio::test]
async fn browser_sends_through_an_upload_link_with_javascript() {
    browser_sends(true).await;
}

#[tokio::test]
async fn browser_sends_through_an_upload_link_without_javascript() {
    browser_sends(false).await;
}

/// Uploads that each fit in what the link had left when they started cannot together exceed
/// `max_bytes`: the commit counts what arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_uploads_never_exceed_max_bytes() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let (url, id) = link_with(&alice, json!({"max_files": 50, "max_bytes": 50_000})).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let res = send(
                &client(),
                &url,
                &format!("part-{i}.bin"),
                sample_bytes(10_000),
            )
            .await;
            res.status()
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    let kept = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    assert_eq!(kept, 5, "{statuses:?}");
    assert!(
        statuses
            .iter()
            .all(|s| [201, 409, 410, 413].contains(&s.as_u16())),
        "{statuses:?}"
    );
    let seen = listed(&alice, &id).await;
    assert_eq!(seen["bytes_received"], 50_000, "{seen}");
    assert_eq!(seen["status"], "full");
    nothing_left(&app, &alice, &id, 5).await;
}

/// A slot whose upload died with its app server (no release ran) is reclaimed once it has
/// gone unseen for longer than a live upload can; a slot seen recently is not.
#[tokio::test]
async fn a_slot_left_by_a_dead_app_server_is_reclaimed_when_stale() {
    let app = spawn_with(|c| c.upload_idle_secs = 5).await;
    let alice = app.login(ALICE).await;
    let (url, id) = link_with(&alice, json!({"max_files": 1})).await;
    let held = async |seen_at: i64| {
        sqlx::query(
            "INSERT INTO upload_link_slots (id, link_id, reserved_at, seen_at) \
             VALUES ('held', $1, $2, $2)",
        )
        .bind(&id)
        .bind(seen_at)
        .execute(&app.db)
        .await
        .unwrap();
        sqlx::query("UPDATE upload_links SET files_pending = 1 WHERE id = $1")
            .bind(&id)
            .execute(&app.db)
            .await
            .unwrap();
    };
    let now = i64::try_from(shared::unix_now()).unwrap();
    // Seen 60 s ago: within --upload-idle-secs (5) + 5 + 60, so maybe alive: kept.
    held(now - 60).await;
    let res = send(&app.anon, &url, "a.txt", b"a".to_vec()).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(res).await, "upload_link_full");
    assert_eq!(app.count_rows("upload_link_slots").await, 1);
    // Seen 96 s ago: past it, reclaimed, and the upload takes its place.
    sqlx::query("UPDATE upload_link_slots SET seen_at = $1")
        .bind(now - 96)
        .execute(&app.db)
        .await
        .unwrap();
    let res = send(&app.anon, &url, "a.txt", b"a".to_vec()).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(app.count_rows("upload_link_slots").await, 0);
    let seen = listed(&alice, &id).await;
    assert_eq!(
        (
            seen["files_pending"].clone(),
            seen["files_received"].clone()
        ),
        (json!(0), json!(1))
    );
}

/// Round trips are bounded: an upload through a link is a fixed number of statements (the
/// look, the owner's count, the reservation, the commit's transaction), and the owner's list
/// is the same number however many links there are.
#[tokio::test]
async fn an_upload_is_a_fixed_number_of_statements_and_the_list_does_not_grow() {
    use burnlink_tests::logs::{capture_statements, statements_of};
    capture_statements();
    let app = spawn_with(|c| c.max_files_per_user = 100).await;
    let alice = app.login(ALICE).await;
    let (url, _) = link_with(&alice, json!({})).await;
    let counted = async |request: reqwest::RequestBuilder| {
        let id = format!("count-{}", shared::random_token(9));
        let res = request.header("X-Request-Id", &id).send().await.unwrap();
        (res, id)
    };
    let form = || {
        reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(b"counted".to_vec()).file_name("c.txt"),
        )
    };
    let (res, upload) = counted(app.anon.post(url).multipart(form())).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let list_url = format!("{}/api/upload-links", app.app_url);
    let (res, one) = counted(alice.client.get(&list_url)).await;
    assert_eq!(res.status(), StatusCode::OK);
    for _ in 1..20 {
        let more = link_ok(&alice, json!({})).await;
        let res = send(&app.anon, &url_of(&more), "m.txt", b"m".to_vec()).await;
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    let (res, twenty) = counted(alice.client.get(&list_url)).await;
    assert_eq!(res.status(), StatusCode::OK);

    // Read last: a statement is logged as it finishes, which may be just after its answer.
    let upload = statements_of(&upload);
    let (one, twenty) = (statements_of(&one), statements_of(&twenty));
    eprintln!(
        "upload: {} statements; list: 1 link {}, 20 links {}",
        upload.len(),
        one.len(),
        twenty.len()
    );
    let taken = |what: &str| upload.iter().filter(|s| s.contains(what)).count();
    assert_eq!(taken("files_pending = files_pending + 1"), 1, "{upload:#?}");
    assert_eq!(taken("bytes_received = bytes_received +"), 1, "{upload:#?}");
    assert!(upload.len() <= 10, "{upload:#?}");
    assert_eq!(one.len(), twenty.len(), "{one:#?}\n{twenty:#?}");
    assert!(one.len() <= 3, "{one:#?}");
}

/// The link's secret and its password never reach the logs; what happened does.
#[tokio::test]
async fn logs_never_carry_the_links_secret_or_password() {
    let logs = burnlink_tests::logs::lines();
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let password = "the-link-password-77";
    let (url, _) = link_with(&alice, json!({"password": password})).await;
    let secret = url.rsplit_once("/u/").unwrap().1.to_owned();
    assert_eq!(app.anon.get(&url).send().await.unwrap().status(), 200);
    let wrong = "a-wrong-guess-88";
    let res = send_with(
        &app.anon,
        &url,
        &[("password", wrong)],
        "a.txt",
        b"a".to_vec(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = send_with(
        &app.anon,
        &url,
        &[("password", password)],
        "a.txt",
        b"a".to_vec(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);

    let text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    for hidden in [secret.as_str(), password, wrong] {
        assert!(!text.contains(hidden), "{hidden:?} logged:\n{text}");
    }
    assert!(
        text.contains("/u/{secret}"),
        "the route's pattern is logged"
    );
    assert!(
        text.contains("file received through an upload link"),
        "{text}"
    );
}

// Resumable (tus) uploads through a link: `/u/<secret>/uploads`.

/// `POST <link>/uploads` of `length` bytes, with these request headers.
async fn tus_create(
    app: &TestApp,
    link_url: &str,
    length: u64,
    headers: &[(&str, &str)],
) -> Response {
    let mut req = app
        .anon
        .post(format!("{link_url}/uploads"))
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", length)
        .header("Upload-Metadata", burnlink_tests::tus::metadata("scan.pdf"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("creation through the link")
}

#[tokio::test]
async fn tuspy_through_a_link_resumes_after_a_cut_and_arrives_received_and_announced_once() {
    if !burnlink_tests::services::tool_installed("tuspy") {
        return burnlink_tests::services::skip("tuspy not installed in tests/tus/python");
    }
    let Some(receiver) = Receiver::start().await else {
        return;
    };
    let (app, alice, _) = app_with_webhook(&receiver, &["upload.received"], |_| {}).await;
    let (url, id) = link_with(&alice, json!({"max_files": 1})).await;
    let secret_path = url.strip_prefix(&app.app_url).unwrap().to_owned();
    let bytes = sample_bytes(3 * 1024 * 1024 + 17);
    let (_dir, path) = temp_file("scan.pdf", &bytes);

    // The first request to pass 1.5 MiB (the first 2 MiB PATCH) is cut there.
    let proxy = burnlink_tests::services::upload_cutting_proxy_for(&app.app_url, 1536 * 1024).await;
    let endpoint = format!("http://{}{secret_path}/uploads", proxy.addr);
    let out = tuspy(&endpoint, "-", &path, 2 * 1024 * 1024).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(proxy.cut_made(), "the upload was cut");
    assert!(
        stdout.lines().any(|l| l == "DONE"),
        "whole, and the sender learns no file id: {stdout}"
    );
    // It resumed from where it was cut, not from 0.
    let offsets: Vec<u64> = proxy
        .requests()
        .iter()
        .filter(|h| h.starts_with("PATCH "))
        .filter_map(|h| {
            h.lines().find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("upload-offset: ")
                    .and_then(|v| v.parse().ok())
            })
        })
        .collect();
    assert_eq!(offsets.len(), 2, "{offsets:?}");
    assert!(offsets[1] > 1024 * 1024, "{offsets:?}");

    // Alice's, byte-identical, marked received through the link.
    let files: Vec<Value> = alice.get_json(format!("{}/api/files", app.app_url)).await;
    assert_eq!(files.len(), 1, "one file: {files:?}");
    let file_id = files[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(files[0]["name"], "scan.pdf");
    assert_eq!(files[0]["received"]["link_id"], id.as_str());
    assert_eq!(files[0]["received"]["client"], "127.0.0.1");
    assert!(
        files[0]["received"]["user_agent"]
            .as_str()
            .is_some_and(|a| a.contains("python")),
        "{}",
        files[0]
    );
    let got = app
        .anon
        .get(alice.link_url(&file_id).await)
        .send()
        .await
        .unwrap();
    assert_eq!(got.bytes().await.unwrap(), bytes);
    let counted = listed(&alice, &id).await;
    assert_eq!(counted["files_received"], 1, "{counted}");
    assert_eq!(counted["bytes_received"], bytes.len(), "{counted}");
    assert_eq!(counted["status"], "full", "{counted}");
    nothing_left(&app, &alice, &id, 1).await;
    assert_eq!(parts(&app), Vec::<String>::new());

    // Announced once, verified.
    let got = receiver
        .wait_for("the upload's event", |got| !got.is_empty())
        .await;
    assert_eq!(got[0].kind.as_deref(), Some("upload.received"));
    assert_eq!(got[0].verified, [true]);
    assert_eq!(got[0].data["file_id"], file_id.as_str());
    assert_eq!(got[0].data["bytes"], bytes.len());
    let (rows,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM webhook_messages WHERE event_type = 'upload.received'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(rows, 1);
}

/// A creation's request headers and `Upload-Length`, and the status and code it gets.
type Refusal<'a> = (&'a [(&'a str, &'a str)], u64, StatusCode, &'a str);

#[tokio::test]
async fn a_tus_creation_through_a_link_is_checked_as_the_form_is() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let (url, id) = link_with(
        &alice,
        json!({"password": "correct horse", "max_bytes": 1000}),
    )
    .await;
    let password = ("Burnlink-Link-Password", "correct horse");

    let cases: [Refusal; 5] = [
        (&[], 10, StatusCode::UNAUTHORIZED, "wrong_password"),
        (
            &[("Burnlink-Link-Password", "wrong guess!")],
            10,
            StatusCode::UNAUTHORIZED,
            "wrong_password",
        ),
        // A browser (our own page's headers) without the page's form token.
        (
            &[SAME_ORIGIN[0], SAME_ORIGIN[1], password],
            10,
            StatusCode::FORBIDDEN,
            "csrf",
        ),
        (
            &[("Origin", "https://evil.example"), password],
            10,
            StatusCode::FORBIDDEN,
            "cross_site",
        ),
        (
            &[password],
            1001,
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
    ];
    for (headers, length, status, code) in cases {
        let res = tus_create(&app, &url, length, headers).await;
        assert_eq!(res.status(), status, "{headers:?} {length}");
        assert_eq!(res.headers()["Tus-Resumable"], "1.0.0");
        assert_eq!(error_code(res).await, code, "{headers:?}");
    }
    assert_eq!(app.count_rows("uploads").await, 0, "no upload started");
    nothing_left(&app, &alice, &id, 0).await;
    assert_eq!(parts(&app), Vec::<String>::new());

    // The page's form token admits a browser; the script path needs only the password.
    let (_, page) = get_text(&app.anon, &url).await;
    let token = form_token(&page);
    let res = tus_create(
        &app,
        &url,
        10,
        &[
            SAME_ORIGIN[0],
            SAME_ORIGIN[1],
            password,
            ("Burnlink-Form-Token", &token),
        ],
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let location = burnlink_tests::tus::location(&res);
    assert!(
        location.starts_with(&format!(
            "{}/uploads/",
            url.strip_prefix(&app.app_url).unwrap()
        )),
        "{location}"
    );
    assert_eq!(listed(&alice, &id).await["files_pending"], 1, "a slot held");
    // An unknown link, and an upload id under another link, are 404.
    let other = link_ok(&alice, json!({})).await;
    let tus = burnlink_tests::tus::Tus::link(&app, &url_of(&other));
    let upload_id = location.rsplit('/').next().unwrap();
    let elsewhere = format!("{}/{upload_id}", tus.endpoint);
    assert_eq!(tus.head(&elsewhere).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        tus.patch(&elsewhere, 0, vec![1; 10]).await.status(),
        StatusCode::NOT_FOUND
    );
    let res = tus_create(
        &app,
        &format!("{}/u/{}", app.app_url, "A".repeat(43)),
        10,
        &[],
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // Terminated, the slot is given back.
    let tus = burnlink_tests::tus::Tus::link(&app, &url);
    assert_eq!(tus.delete(&location).await.status(), StatusCode::NO_CONTENT);
    nothing_left(&app, &alice, &id, 0).await;
    assert_eq!(parts(&app), Vec::<String>::new());
}

#[tokio::test]
async fn concurrent_tus_creations_on_a_three_file_link_keep_exactly_three() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let (url, id) = link_with(&alice, json!({"max_files": 3})).await;
    let tus = burnlink_tests::tus::Tus::link(&app, &url);
    let created =
        futures_util::future::join_all((0..20).map(|_| tus.create(1000, "a.bin", None))).await;
    let mut locations = Vec::new();
    for res in created {
        match res.status() {
            StatusCode::CREATED => locations.push(burnlink_tests::tus::location(&res)),
            status => {
                assert_eq!(status, StatusCode::CONFLICT);
                assert_eq!(error_code(res).await, "upload_link_full");
            }
        }
    }
    assert_eq!(locations.len(), 3, "exactly three slots");
    let bytes = sample_bytes(1000);
    for location in &locations {
        let res = tus.patch(location, 0, bytes.clone()).await;
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        assert_eq!(burnlink_tests::tus::header_u64(&res, "Upload-Offset"), 1000);
        assert_eq!(
            burnlink_tests::tus::file_id(&res),
            None,
            "no file id for the sender"
        );
        assert_eq!(tus.offset(location).await, 1000, "whole");
    }
    // Full: a fourth is refused, three kept.
    let res = tus.create(1000, "a.bin", None).await;
    assert_eq!(
        res.status(),
        StatusCode::GONE,
        "full: the link is gone for new uploads"
    );
    let counted = listed(&alice, &id).await;
    assert_eq!(counted["files_received"], 3, "{counted}");
    assert_eq!(counted["bytes_received"], 3000, "{counted}");
    nothing_left(&app, &alice, &id, 3).await;
}

#[tokio::test]
async fn a_link_revoked_mid_upload_stops_the_patches_and_leaves_nothing() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let (url, id) = link_with(&alice, json!({})).await;
    let tus = burnlink_tests::tus::Tus::link(&app, &url);
    let bytes = sample_bytes(200_000);
    let upload = tus.create_ok(200_000, "half.bin").await;
    let res = tus.patch(&upload, 0, bytes[..100_000].to_vec()).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(!parts(&app).is_empty(), "bytes so far are kept");

    let res = alice.delete_at(&format!("/api/upload-links/{id}")).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = tus.patch(&upload, 100_000, bytes[100_000..].to_vec()).await;
    assert_eq!(res.status(), StatusCode::GONE);
    assert_eq!(error_code(res).await, "upload_link_gone");
    assert_eq!(tus.head(&upload).await.status(), StatusCode::GONE);
    assert_eq!(app.count_rows("uploads").await, 0, "the upload is removed");
    assert_eq!(parts(&app), Vec::<String>::new(), "with its bytes");
    nothing_left(&app, &alice, &id, 0).await;
    assert_eq!(listed(&alice, &id).await["files_received"], 0);
}

#[tokio::test]
async fn a_link_revoked_while_its_upload_is_paused_is_swept() {
    // Uploads live 30 s, so the sweep runs every 15 s: the upload goes well before its expiry.
    let app = spawn_with(|c| c.upload_expiry_secs = 30).await;
    let alice = app.login(ALICE).await;
    let (url, id) = link_with(&alice, json!({})).await;
    let tus = burnlink_tests::tus::Tus::link(&app, &url);
    let upload = tus.create_ok(1000, "paused.bin").await;
    assert_eq!(
        tus.patch(&upload, 0, vec![3; 400]).await.status(),
        StatusCode::NO_CONTENT
    );
    let (expires_ms,): (i64,) = sqlx::query_as("SELECT expires_ms FROM uploads")
        .fetch_one(&app.db)
        .await
        .unwrap();
    sqlx::query("UPDATE upload_links SET revoked_at = 1 WHERE id = $1")
        .bind(&id)
        .execute(&app.db)
        .await
        .unwrap();
    // No request comes back: the sweep removes it and gives the slot back.
    until(
        "the sweep removes the upload, its part and its slot",
        || async {
            app.count_rows("uploads").await == 0
                && parts(&app).is_empty()
                && app.count_rows("upload_link_slots").await == 0
        },
    )
    .await;
    let now_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    assert!(now_ms < expires_ms, "removed for its link, not its expiry");
    assert_eq!(parts(&app), Vec::<String>::new());
    nothing_left(&app, &alice, &id, 0).await;
}

#[tokio::test]
async fn an_expired_tus_upload_through_a_link_gives_its_slot_back() {
    let app = spawn_with(|c| c.upload_expiry_secs = 1).await;
    let alice = app.login(ALICE).await;
    let (url, id) = link_with(&alice, json!({"max_files": 1})).await;
    let tus = burnlink_tests::tus::Tus::link(&app, &url);
    let upload = tus.create_ok(1000, "slow.bin").await;
    assert_eq!(
        tus.patch(&upload, 0, vec![5; 100]).await.status(),
        StatusCode::NO_CONTENT
    );
    // While it lives, it holds the link's only slot (not reclaimed as stale).
    let res = tus.create(10, "b.bin", None).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(res).await, "upload_link_full");

    until(
        "the sweep removes the expired upload and its part",
        || async {
            app.count_rows("uploads").await == 0
                && parts(&app).is_empty()
                && app.count_rows("upload_link_slots").await == 0
        },
    )
    .await;
    assert_eq!(parts(&app), Vec::<String>::new());
    nothing_left(&app, &alice, &id, 0).await;
    // The slot is back: the next upload takes it and finishes.
    let again = tus.create_ok(10, "b.bin").await;
    let res = tus.patch(&again, 0, vec![6; 10]).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(listed(&alice, &id).await["files_received"], 1);
    assert_eq!(app.count_rows("files").await, 1);
}

/// The link's page sends a large file through tus-js-client (vendored, served by the app), the
/// password and form token as headers; the network breaks mid-file and the page carries on
/// from where the server stands by itself.
#[tokio::test]
async fn chromium_sends_a_large_file_through_a_link_with_tus_and_resumes_after_a_cut() {
    let test = "chromium_sends_a_large_file_through_a_link_with_tus_and_resumes_after_a_cut";
    let Some(harness) = burnlink_tests::browser::start(test).await else {
        return;
    };
    // The browser reaches the app through the proxy, which is the app's public URL: the page
    // and its script's requests have the app's origin, as in production behind a proxy.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let public = format!("http://{}", listener.local_addr().unwrap());
    let app = spawn_with(|c| c.public_url = Some(public.clone())).await;
    let proxy =
        burnlink_tests::services::upload_cutting_proxy_on(listener, &app.app_url, 3 * 1024 * 1024)
            .await;
    let alice = app.login(ALICE).await;
    let (link_url, id) =
        link_with(&alice, json!({"password": "open sesame", "max_files": 1})).await;
    let bytes = sample_bytes(6 * 1024 * 1024 + 11);
    let (_dir, file) = temp_file("scan.pdf", &bytes);
    let walk = async {
        let browser = harness.browser(true).await;
        browser.driver.goto(&link_url).await.unwrap();
        browser
            .find("#link-password")
            .await
            .send_keys("open sesame")
            .await
            .unwrap();
        browser
            .find("#link-file")
            .await
            .send_keys(file.to_string_lossy())
            .await
            .unwrap();
        browser
            .find("#link-upload-button")
            .await
            .click()
            .await
            .unwrap();
        browser
            .find_text("#link-status.received", "Received scan.pdf")
            .await;
        let bar = browser.find("#link-bar").await;
        assert_eq!(bar.attr("value").await.unwrap().as_deref(), Some("100"));
        harness
            .screenshot(&browser, "upload-link-tus-received")
            .await;
        browser.quit().await;
    };
    tokio::time::timeout(Duration::from_secs(120), walk)
        .await
        .expect("the browser walk finishes in time");
    // Cut, and carried on with the same upload (one creation), not the one-request form.
    assert!(proxy.cut_made(), "the upload was cut");
    assert_eq!(app.count_rows("uploads").await, 1, "one upload, resumed");
    let files: Vec<Value> = alice.get_json(format!("{}/api/files", app.app_url)).await;
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0]["received"]["link_id"], id.as_str());
    assert!(
        files[0]["received"]["user_agent"]
            .as_str()
            .is_some_and(|ua| ua.contains("Chrome")),
        "{}",
        files[0]
    );
    let got = app
        .anon
        .get(alice.link_url(files[0]["id"].as_str().unwrap()).await)
        .send()
        .await
        .unwrap();
    assert_eq!(got.bytes().await.unwrap(), bytes, "byte for byte");
    nothing_left(&app, &alice, &id, 1).await;
    assert_eq!(parts(&app), Vec::<String>::new());
}

/// docs/UPLOADS.md's tuspy recipe for a link, run as written against a link with a password.
#[tokio::test]
async fn uploads_md_tuspy_link_recipe_works_as_written() {
    if !burnlink_tests::services::tool_installed("tuspy") {
        return burnlink_tests::services::skip("tuspy not installed in tests/tus/python");
    }
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let link = link_ok(&alice, json!({"password": "open sesame"})).await;
    let bytes = sample_bytes(5 * 1024 * 1024 + 1);
    let (_dir, file) = temp_file("contract.pdf", &bytes);
    let tus_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tus");
    let out = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(doc_block("UPLOADS.md", "python"))
        .env("LINK", url_of(&link))
        .env("FILE", &file)
        .env("PASSWORD", "open sesame")
        .env("PYTHONPATH", tus_dir.join("python"))
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("python3 runs the recipe");
    assert!(out.status.success(), "{out:?}");
    let files: Vec<Value> = alice.get_json(format!("{}/api/files", app.app_url)).await;
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0]["name"], "contract.pdf");
    assert_eq!(files[0]["received"]["link_id"], link["id"]);
    let got = app
        .anon
        .get(alice.link_url(files[0]["id"].as_str().unwrap()).await)
        .send()
        .await
        .unwrap();
    assert_eq!(got.bytes().await.unwrap(), bytes);
}
