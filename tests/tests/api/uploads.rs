//! Resumable uploads over tus 1.0 (`/api/uploads`): whole uploads in pieces, real clients cut
//! mid-upload and resumed (tuspy; a plain client), the protocol's refusals (each changing
//! nothing), concurrency, expiry, termination and a restart of the app server mid-upload.

use std::process::Stdio;
use std::time::Duration;

use burnlink_tests::services::{skip, tool_installed, upload_cutting_proxy_for};
use burnlink_tests::tus::{Tus, file_id, header_u64, held_body, location, parts, tuspy, until};
use burnlink_tests::{ALICE, BOB, TestApp, User, error_code, sample_bytes, spawn, temp_file};
use futures_util::StreamExt;
use reqwest::{Method, StatusCode};

/// The bytes of the file `id` as a download of it gives them.
async fn downloaded(app: &TestApp, user: &User, id: &str) -> Vec<u8> {
    let url = user.link_url(id).await;
    let res = app.anon.get(url).send().await.expect("download");
    assert_eq!(res.status(), StatusCode::OK);
    res.bytes().await.expect("the file").to_vec()
}

/// Uploads held by a request right now.
async fn leased(app: &TestApp) -> i64 {
    let (count,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM uploads WHERE lease_id IS NOT NULL")
            .fetch_one(&app.db)
            .await
            .expect("count leases");
    count
}

#[tokio::test]
async fn an_upload_in_three_patches_becomes_the_file() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let tus = Tus::session(&app, &alice);
    let bytes = sample_bytes(300_000);
    let upload = tus.create_ok(300_000, "report.pdf").await;
    assert!(upload.starts_with("/api/uploads/"), "{upload}");

    let res = tus.patch(&upload, 0, bytes[..100_000].to_vec()).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(header_u64(&res, "Upload-Offset"), 100_000);
    assert_eq!(res.headers()["Tus-Resumable"], "1.0.0");
    assert_eq!(file_id(&res), None, "not whole yet");
    assert!(
        alice
            .get_json::<serde_json::Value>(format!("{}/api/files", app.app_url))
            .await
            .as_array()
            .expect("a list")
            .is_empty()
    );

    let res = tus.head(&upload).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header_u64(&res, "Upload-Offset"), 100_000);
    assert_eq!(header_u64(&res, "Upload-Length"), 300_000);
    assert!(res.headers().contains_key("Upload-Expires"));
    assert_eq!(res.headers()["Cache-Control"], "no-store");

    let res = tus
        .patch(&upload, 100_000, bytes[100_000..250_000].to_vec())
        .await;
    assert_eq!(header_u64(&res, "Upload-Offset"), 250_000);
    let res = tus.patch(&upload, 250_000, bytes[250_000..].to_vec()).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(header_u64(&res, "Upload-Offset"), 300_000);
    let id = file_id(&res).expect("the file it became");

    let files: serde_json::Value = alice.get_json(format!("{}/api/files", app.app_url)).await;
    assert_eq!(files[0]["id"], id.as_str());
    assert_eq!(files[0]["name"], "report.pdf");
    assert_eq!(files[0]["size"], 300_000);
    assert_eq!(files[0]["content_type"], "application/pdf");
    assert_eq!(downloaded(&app, &alice, &id).await, bytes);
    assert_eq!(
        parts(&app),
        Vec::<String>::new(),
        "the part became the file"
    );
    assert_eq!(app.count_rows("files").await, 1);

    // Asked again, the finished upload names its file; its last PATCH repeated is no second file.
    let res = tus.head(&upload).await;
    assert_eq!(header_u64(&res, "Upload-Offset"), 300_000);
    assert_eq!(file_id(&res).as_deref(), Some(id.as_str()));
    let res = tus.patch(&upload, 300_000, Vec::new()).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(file_id(&res).as_deref(), Some(id.as_str()));
    assert_eq!(app.count_rows("files").await, 1);
}

/// Pieces that do not line up with S3's 5 MiB parts: a part fills mid-request, a request ends
/// mid-part, the last part is short.
#[tokio::test]
async fn an_upload_across_several_parts_is_whole() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let tus = Tus::session(&app, &alice);
    let bytes = sample_bytes(11 * 1024 * 1024 + 3);
    let upload = tus.create_ok(bytes.len() as u64, "big.bin").await;
    let mut offset = 0;
    let mut id = None;
    for end in [3 * 1024 * 1024, 7 * 1024 * 1024 + 1, bytes.len()] {
        let res = tus
            .patch(&upload, offset, bytes[offset as usize..end].to_vec())
            .await;
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        offset = header_u64(&res, "Upload-Offset");
        assert_eq!(offset, end as u64);
        id = file_id(&res);
    }
    let id = id.expect("whole");
    assert_eq!(downloaded(&app, &alice, &id).await, bytes);
    assert_eq!(parts(&app), Vec::<String>::new());
}

#[tokio::test]
async fn creation_with_upload_stores_a_small_file_in_one_request() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let tus = Tus::session(&app, &alice);
    let bytes = sample_bytes(5_000);
    let res = tus.create(5_000, "notes.txt", Some(bytes.clone())).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(header_u64(&res, "Upload-Offset"), 5_000);
    assert!(location(&res).starts_with("/api/uploads/"));
    let id = file_id(&res).expect("whole in one request");
    assert_eq!(downloaded(&app, &alice, &id).await, bytes);
}

#[tokio::test]
async fn options_says_what_the_server_speaks_and_its_size_limit_holds() {
    let app = burnlink_tests::spawn_with(|c| c.max_upload_bytes = 1_000).await;
    let res = app
        .anon
        .request(Method::OPTIONS, format!("{}/api/uploads", app.app_url))
        .send()
        .await
        .expect("OPTIONS");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(res.headers()["Tus-Version"], "1.0.0");
    assert_eq!(res.headers()["Tus-Max-Size"], "1000");
    let extensions = res.headers()["Tus-Extension"].to_str().unwrap().to_owned();
    for extension in [
        "creation",
        "creation-with-upload",
        "termination",
        "expiration",
    ] {
        assert!(
            extensions.split(',').any(|e| e == extension),
            "{extensions}"
        );
    }

    let alice = app.login(ALICE).await;
    let tus = Tus::session(&app, &alice);
    let res = tus.create(1_001, "big.bin", None).await;
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(res).await, "too_large");
    assert_eq!(app.count_rows("uploads").await, 0);
    assert_eq!(parts(&app), Vec::<String>::new());
    // A first body declared past the upload's own length: refused before the upload exists.
    let res = tus.create(10, "short.bin", Some(vec![1; 11])).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.count_rows("uploads").await, 0);
    let res = tus.create(1_000, "fits.bin", None).await;
    assert_eq!(res.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn a_wrong_offset_is_409_and_changes_nothing() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let tus = Tus::session(&app, &alice);
    let bytes = sample_bytes(1_000);
    let upload = tus.create_ok(1_000, "a.bin").await;
    assert_eq!(
        tus.patch(&upload, 0, bytes[..400].to_vec()).await.status(),
        StatusCode::NO_CONTENT
    );

    for wrong in [0, 200, 500] {
        let res = tus.patch(&upload, wrong, vec![0xEE; 100]).await;
        assert_eq!(res.status(), StatusCode::CONFLICT, "at {wrong}");
        assert_eq!(error_code(res).await, "offset_mismatch");
        assert_eq!(tus.offset(&upload).await, 400);
    }
    // Locally the part file, with S3 the tail file waiting for a part to fill.
    let part = burnlink_tests::stored_files(&app.files_dir())
        .into_iter()
        .find(|name| name.starts_with(".part-") || name.starts_with(".tail-"))
        .expect("the bytes so far");
    let part = app.files_dir().join(part);
    assert_eq!(std::fs::metadata(part).expect("the part").len(), 400);
    let res = tus.patch(&upload, 400, bytes[400..].to_vec()).await;
    let id = file_id(&res).expect("whole");
    assert_eq!(
        downloaded(&app, &alice, &id).await,
        bytes,
        "no refused byte got in"
    );
}

#[tokio::test]
async fn refused_requests_change_nothing() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let tus = Tus::session(&app, &alice);
    let upload = tus.create_ok(100, "a.bin").await;
    let url = format!("{}{upload}", app.app_url);

    // 415: a body in another media type.
    let res = tus
        .request(Method::PATCH, &upload)
        .header("Upload-Offset", 0)
        .header("Content-Type", "application/octet-stream")
        .body(vec![1; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(res.headers()["Tus-Resumable"], "1.0.0");
    assert_eq!(error_code(res).await, "unsupported_media_type");

    // 412: no Tus-Resumable.
    let res = alice
        .client
        .patch(&url)
        .header("X-CSRF-Token", &alice.csrf)
        .header("Upload-Offset", 0)
        .header("Content-Type", "application/offset+octet-stream")
        .body(vec![1; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(res.headers()["Tus-Version"], "1.0.0");
    assert_eq!(error_code(res).await, "tus_version");

    // 403: a session's write without its CSRF token.
    let res = alice
        .client
        .patch(&url)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Offset", 0)
        .header("Content-Type", "application/offset+octet-stream")
        .body(vec![1; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(res).await, "csrf");

    // 400: no Upload-Offset; a body past Upload-Length.
    let res = tus
        .request(Method::PATCH, &upload)
        .header("Content-Type", "application/offset+octet-stream")
        .body(vec![1; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = tus.patch(&upload, 0, vec![1; 101]).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);

    // 401: nobody.
    let res = app
        .anon
        .head(&url)
        .header("Tus-Resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    assert_eq!(tus.offset(&upload).await, 0);
    assert_eq!(leased(&app).await, 0);
}

#[tokio::test]
async fn another_users_upload_is_not_found() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let bob = app.login(BOB).await;
    let (tus, theirs) = (Tus::session(&app, &alice), Tus::session(&app, &bob));
    let upload = tus.create_ok(100, "a.bin").await;
    assert_eq!(
        tus.patch(&upload, 0, vec![7; 50]).await.status(),
        StatusCode::NO_CONTENT
    );

    assert_eq!(theirs.head(&upload).await.status(), StatusCode::NOT_FOUND);
    let res = theirs.patch(&upload, 50, vec![8; 50]).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(res).await, "not_found");
    assert_eq!(theirs.delete(&upload).await.status(), StatusCode::NOT_FOUND);
    // An id that cannot be one is as unknown.
    assert_eq!(
        theirs.head("/api/uploads/..%2F..").await.status(),
        StatusCode::NOT_FOUND
    );

    assert_eq!(tus.offset(&upload).await, 50);
    assert!(!parts(&app).is_empty());
}

#[tokio::test]
async fn access_tokens_need_files_write() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let read_only = Tus::bearer(&app, &alice.create_token(&["files:read"]).await);
    let res = read_only.create(10, "a.bin", Some(vec![1; 10])).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(res).await, "insufficient_scope");
    assert_eq!(app.count_rows("uploads").await, 0);

    let writer = Tus::bearer(&app, &alice.create_token(&["files:write"]).await);
    let upload = writer.create_ok(10, "a.bin").await;
    let res = read_only.head(&upload).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = writer.patch(&upload, 0, vec![1; 10]).await;
    let id = file_id(&res).expect("whole");
    assert_eq!(downloaded(&app, &alice, &id).await, vec![1; 10]);
}

#[tokio::test]
async fn termination_removes_the_part() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let tus = Tus::session(&app, &alice);
    let upload = tus.create_ok(1_000, "a.bin").await;
    assert_eq!(
        tus.patch(&upload, 0, vec![7; 500]).await.status(),
        StatusCode::NO_CONTENT
    );
    assert!(!parts(&app).is_empty(), "the bytes so far are kept");

    assert_eq!(tus.delete(&upload).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(tus.head(&upload).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        tus.patch(&upload, 500, vec![7; 500]).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(parts(&app), Vec::<String>::new());
    assert_eq!(app.stored_objects(), Vec::<String>::new());
    assert_eq!(app.count_rows("uploads").await, 0);
    assert_eq!(app.count_rows("files").await, 0);
}

#[tokio::test]
async fn an_expired_upload_is_gone_with_its_part() {
    let app = burnlink_tests::spawn_with(|c| c.upload_expiry_secs = 1).await;
    let alice = app.login(ALICE).await;
    let tus = Tus::session(&app, &alice);
    let upload = tus.create_ok(1_000, "a.bin").await;
    let res = tus.patch(&upload, 0, vec![7; 100]).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let expires = res.headers()["Upload-Expires"].to_str().unwrap().to_owned();
    assert!(expires.ends_with(" GMT"), "an HTTP date: {expires}");

    // Past its expiry it answers 410 (or 404 once swept), and nothing more goes in.
    until("the upload expires", || async {
        tus.head(&upload).await.status() != StatusCode::OK
    })
    .await;
    let res = tus.patch(&upload, 100, vec![7; 900]).await;
    assert!(
        [StatusCode::GONE, StatusCode::NOT_FOUND].contains(&res.status()),
        "{}",
        res.status()
    );
    // The sweep deletes the row (its claim) before it discards the part: wait for both.
    until("the sweep removes it and its part", || async {
        app.count_rows("uploads").await == 0 && parts(&app).is_empty()
    })
    .await;
    assert_eq!(app.stored_objects(), Vec::<String>::new());
    assert_eq!(app.count_rows("files").await, 0);
    assert_eq!(tus.head(&upload).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn of_two_concurrent_patches_one_writes_and_the_other_is_refused() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let tus = Tus::session(&app, &alice);
    let bytes = sample_bytes(200_000);
    let upload = tus.create_ok(200_000, "a.bin").await;

    // The first PATCH sends half its body and holds on.
    let (send, body) = held_body();
    let first = tokio::spawn(tus.patch_request(&upload, 0, body).send());
    send.send(Ok(bytes[..100_000].to_vec())).await.unwrap();
    until("the first PATCH holds the upload", || async {
        leased(&app).await == 1
    })
    .await;

    // The second, at the same offset, is refused while it does; nothing of it is written.
    let res = tus.patch(&upload, 0, vec![0xEE; 200_000]).await;
    assert_eq!(res.status(), StatusCode::LOCKED);
    assert_eq!(error_code(res).await, "upload_busy");

    send.send(Ok(bytes[100_000..].to_vec())).await.unwrap();
    drop(send);
    let res = first.await.unwrap().expect("the first PATCH");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let id = file_id(&res).expect("whole");

    // Retried after, it finds the offset moved.
    let res = tus.patch(&upload, 0, vec![0xEE; 200_000]).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert_eq!(downloaded(&app, &alice, &id).await, bytes);
    assert_eq!(app.count_rows("files").await, 1);
}

#[tokio::test]
async fn a_cut_patch_keeps_what_arrived_and_the_rest_follows() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let direct = Tus::session(&app, &alice);
    let bytes = sample_bytes(2 * 1024 * 1024);
    let upload = direct.create_ok(bytes.len() as u64, "a.bin").await;

    let proxy = upload_cutting_proxy_for(&app.app_url, 1024 * 1024).await;
    let mut cut = Tus::session(&app, &alice);
    cut.base = format!("http://{}", proxy.addr);
    let res = cut.patch_request(&upload, 0, bytes.clone()).send().await;
    assert!(res.is_err(), "the connection was cut: {res:?}");

    // What arrived before the cut was kept and recorded; the rest goes on from there.
    until("the cut PATCH's bytes are recorded", || async {
        direct.offset(&upload).await > 0 && leased(&app).await == 0
    })
    .await;
    let offset = direct.offset(&upload).await;
    assert!(offset < 1024 * 1024, "{offset}");
    let res = direct
        .patch(&upload, offset, bytes[offset as usize..].to_vec())
        .await;
    let id = file_id(&res).expect("whole");
    assert_eq!(downloaded(&app, &alice, &id).await, bytes);
}

#[tokio::test]
async fn tuspy_resumes_after_a_cut_connection() {
    if !tool_installed("tuspy") {
        return skip("tuspy not installed in tests/tus/python (.ci/install-deps)");
    }
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let token = alice.create_token(&["files:write"]).await;
    let bytes = sample_bytes(3 * 1024 * 1024 + 17);
    let (_dir, path) = temp_file("scan.pdf", &bytes);

    // The first request to pass 1.5 MiB (the first 2 MiB PATCH) is cut there.
    let proxy = upload_cutting_proxy_for(&app.app_url, 1536 * 1024).await;
    let endpoint = format!("http://{}/api/uploads", proxy.addr);
    let out = tuspy(&endpoint, &token, &path, 2 * 1024 * 1024).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("FILE "))
        .expect("FILE <id>");
    assert_eq!(downloaded(&app, &alice, id).await, bytes);
    let files: serde_json::Value = alice.get_json(format!("{}/api/files", app.app_url)).await;
    assert_eq!(files.as_array().unwrap().len(), 1, "one file, not two");
    assert_eq!(files[0]["name"], "scan.pdf");

    // It resumed: asked where the upload stood, and sent the rest from there, not from 0.
    let heads = proxy.requests();
    assert!(heads.iter().any(|h| h.starts_with("HEAD ")), "{heads:?}");
    let resumed_at: Vec<u64> = heads
        .iter()
        .filter(|h| h.starts_with("PATCH "))
        .filter_map(|h| {
            h.lines().find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("upload-offset: ")
                    .map(str::to_owned)
            })
        })
        .map(|v| v.parse().expect("a number"))
        .collect();
    assert_eq!(resumed_at.len(), 2, "{heads:?}");
    assert!(resumed_at[1] > 1024 * 1024, "{resumed_at:?}");
    assert_eq!(parts(&app), Vec::<String>::new());
}

/// Alice's access token with `files:write`, from the app at `app_url` (one a test built itself).
async fn token_at(app_url: &str) -> String {
    let client = burnlink_tests::client();
    let res = client
        .post(format!("{app_url}/api/login"))
        .json(&serde_json::json!({"username": ALICE.0, "password": ALICE.1}))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = res.json().await.unwrap();
    let user = User {
        client,
        csrf: body["csrf_token"].as_str().unwrap().to_owned(),
        app_url: app_url.to_owned(),
    };
    user.create_token(&["files:write"]).await
}

#[tokio::test]
async fn deleting_a_user_removes_their_unfinished_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let config = burnlink_tests::test_config(dir.path());
    let serving = burnlink_tests::start(config.clone()).await;
    let app_url = serving.app_url.clone();
    let tus = Tus::bearer_at(&app_url, &token_at(&app_url).await);
    let upload = tus.create_ok(1_000, "a.bin").await;
    assert_eq!(
        tus.patch(&upload, 0, vec![7; 500]).await.status(),
        StatusCode::NO_CONTENT
    );
    let files_dir = shared::DataDir::new(dir.path()).files();
    let waiting = || {
        burnlink_tests::stored_files(&files_dir)
            .into_iter()
            .filter(|n| n.starts_with(".part-") || n.starts_with(".tail-"))
            .count()
    };
    assert_eq!(waiting(), 1);

    // `app-server user del alice`, as an operator runs it (a second instance of the app on
    // the same data directory and database).
    let admin = app_server::Application::build(config)
        .await
        .expect("starts");
    admin.delete_user(ALICE.0).await.expect("deleted");
    assert_eq!(waiting(), 0, "the part went with its user");
    let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM uploads")
        .fetch_one(&serving.db)
        .await
        .unwrap();
    assert_eq!(rows, 0);
}

#[tokio::test]
async fn an_upload_resumes_on_a_restarted_app_server() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = burnlink_tests::test_config(dir.path());
    // A crashed holder's lease runs out after the body's idle limit and a margin.
    config.upload_idle_secs = 1;
    let first = app_server::Application::build(config.clone())
        .await
        .expect("starts");
    first.create_user(ALICE.0, ALICE.1).await.unwrap();
    let handle = first.handle();
    let app_url = format!("http://127.0.0.1:{}", first.port());
    tokio::spawn(first.run_until_stopped());
    let token = token_at(&app_url).await;
    let bytes = sample_bytes(600_000);
    let before = Tus::bearer_at(&app_url, &token);
    let upload = before.create_ok(600_000, "a.bin").await;
    assert_eq!(
        before
            .patch(&upload, 0, bytes[..200_000].to_vec())
            .await
            .status(),
        StatusCode::NO_CONTENT
    );

    // A PATCH in flight when the server stops.
    let (send, body) = held_body();
    let in_flight = tokio::spawn(before.patch_request(&upload, 200_000, body).send());
    send.send(Ok(vec![0xEE; 100_000])).await.unwrap();
    let db = sqlx::AnyPool::connect(config.database_url.as_deref().unwrap())
        .await
        .unwrap();
    until("the PATCH holds the upload", || async {
        let (n,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM uploads WHERE lease_id IS NOT NULL")
                .fetch_one(&db)
                .await
                .unwrap();
        n == 1
    })
    .await;
    handle.stop(false).await;
    drop(send);
    let _ = in_flight.await;

    let app = burnlink_tests::start(config).await;
    let after = Tus::bearer(&app, &token);
    let offset = after.offset(&upload).await;
    assert!((200_000..=300_000).contains(&offset), "{offset}");
    // The stopped server's lease runs out; then the rest goes in from the recorded offset
    // (bytes written past it, never recorded, are cut off, so the 0xEE above never show).
    let id = loop {
        let res = after
            .patch(&upload, offset, bytes[offset as usize..].to_vec())
            .await;
        if res.status() == StatusCode::LOCKED {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        break file_id(&res).expect("whole");
    };
    let alice = app.login(ALICE).await;
    let got = downloaded(&app, &alice, &id).await;
    assert!(got == bytes, "the file differs from what was sent");
}

/// Memory: a 5 GiB upload through tus, in 1 GiB PATCHes, keeps the process's resident memory
/// within 64 MiB of where it was before (the app server runs in this process). Run with
/// `cargo test -p burnlink-tests --test api -- --ignored uploads::a_5_gib`.
#[tokio::test]
#[ignore = "writes 5 GiB; run by hand, figure in docs/BENCHMARKS.md"]
async fn a_5_gib_upload_keeps_memory_flat() {
    const GIB: u64 = 1024 * 1024 * 1024;
    let app = burnlink_tests::spawn_with(|c| c.max_upload_bytes = 6 * GIB).await;
    let alice = app.login(ALICE).await;
    let tus = Tus::session(&app, &alice);
    let upload = tus.create_ok(5 * GIB, "big.bin").await;
    let pid = std::process::id();
    let idle = burnlink_tests::process::rss_kib(pid);
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(idle));
    let watch = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                let now = burnlink_tests::process::rss_kib(pid);
                peak.fetch_max(now, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let mut id = None;
    for piece in 0..5u64 {
        // 1 GiB made 256 KiB at a time as it is sent, never held whole.
        let chunks = futures_util::stream::iter(0..4096u64).map(move |i| {
            Ok::<_, std::io::Error>(vec![((piece * 4096 + i) % 251) as u8; 256 * 1024])
        });
        let res = tus
            .patch_request(&upload, piece * GIB, reqwest::Body::wrap_stream(chunks))
            .header("Content-Length", GIB)
            .send()
            .await
            .expect("PATCH");
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        id = file_id(&res);
    }
    watch.abort();
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    let grew = peak.saturating_sub(idle);
    println!("5 GiB through tus: idle RSS {idle} KiB, peak {peak} KiB, grew {grew} KiB");
    assert!(id.is_some(), "whole");
    assert!(grew < 64 * 1024, "RSS grew by {grew} KiB");
    let files: serde_json::Value = alice.get_json(format!("{}/api/files", app.app_url)).await;
    assert_eq!(files[0]["size"], 5 * GIB);
}

/// The upload page sends a large file through tus-js-client (vendored, served by the app); the
/// network breaks mid-file and the page carries on from where the server stands by itself.
#[tokio::test]
async fn chromium_uploads_a_large_file_through_tus_and_resumes_after_a_cut() {
    let test = "chromium_uploads_a_large_file_through_tus_and_resumes_after_a_cut";
    let Some(harness) = burnlink_tests::browser::start(test).await else {
        return;
    };
    let walk = async {
        let app = spawn().await;
        let proxy = upload_cutting_proxy_for(&app.app_url, 3 * 1024 * 1024).await;
        // Logged in on the app itself (its log-in checks the page's origin); the upload page
        // is then used through the proxy (cookies do not tell ports apart).
        let browser = harness.browser(true).await;
        browser.log_in(&app.app_url).await;
        browser
            .driver
            .goto(format!("http://{}/", proxy.addr))
            .await
            .unwrap();
        let bytes = sample_bytes(6 * 1024 * 1024 + 11);
        let (_dir, file) = temp_file("scan.pdf", &bytes);
        browser.find("#upload-form").await;
        browser
            .driver
            .find(thirtyfour::By::Css("#file-input"))
            .await
            .unwrap()
            .send_keys(file.to_string_lossy())
            .await
            .unwrap();
        browser.find("#upload-button").await.click().await.unwrap();
        browser.find("#upload-progress").await;
        browser.find_text("table.files tbody tr", "scan.pdf").await;

        let alice = app.login(ALICE).await;
        let files: serde_json::Value = alice.get_json(format!("{}/api/files", app.app_url)).await;
        assert_eq!(files.as_array().unwrap().len(), 1, "{files}");
        let id = files[0]["id"].as_str().unwrap();
        assert_eq!(downloaded(&app, &alice, id).await, bytes);
        // The network broke mid-file, and the page carried on with the same upload (one
        // creation), not the one-request form.
        assert!(proxy.cut_made(), "the upload was cut");
        assert_eq!(app.count_rows("uploads").await, 1, "one upload, resumed");
        let (length,): (i64,) = sqlx::query_as("SELECT upload_length FROM uploads")
            .fetch_one(&app.db)
            .await
            .unwrap();
        assert_eq!(length as usize, bytes.len());
        assert_eq!(parts(&app), Vec::<String>::new());
        browser.quit().await;
    };
    tokio::time::timeout(Duration::from_secs(120), walk)
        .await
        .expect("the browser walk finishes in time");
}

/// docs/UPLOADS.md's curl recipe, run as written: a creation with the first 5 MiB, a HEAD, and
/// the rest from the offset it says.
#[tokio::test]
async fn uploads_md_curl_recipe_works_as_written() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let token = alice.create_token(&["files:write"]).await;
    let bytes = sample_bytes(7 * 1024 * 1024 + 3);
    let (_dir, file) = temp_file("contract scan.pdf", &bytes);
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(burnlink_tests::doc_block("UPLOADS.md", "sh"))
        .env("APP", &app.app_url)
        .env("TOKEN", &token)
        .env("FILE", &file)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("sh runs the recipe");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("file id: "))
        .unwrap_or_else(|| panic!("`file id: <id>` in {stdout:?}"));
    assert_eq!(downloaded(&app, &alice, id).await, bytes);
    let files: serde_json::Value = alice.get_json(format!("{}/api/files", app.app_url)).await;
    assert_eq!(files[0]["name"], "contract scan.pdf");
    assert_eq!(files[0]["content_type"], "application/pdf");
}

/// Two app servers on one PostgreSQL database and data directory: an upload begun on one is
/// written by one request at a time whichever server each reaches, and finished on the other.
#[tokio::test]
async fn two_app_servers_on_postgres_write_one_upload_one_request_at_a_time() {
    let Some(pg) = burnlink_tests::postgres::database().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = burnlink_tests::postgres::two_app_servers(dir.path(), &pg).await;
    let alice = a.login(ALICE).await;
    let token = alice.create_token(&["files:write"]).await;
    let (on_a, on_b) = (Tus::bearer(&a, &token), Tus::bearer(&b, &token));
    let bytes = sample_bytes(300_000);
    let upload = on_a.create_ok(300_000, "a.bin").await;

    // A PATCH on A holds the upload; one on B at the same offset is refused meanwhile.
    let (send, body) = held_body();
    let first = tokio::spawn(on_a.patch_request(&upload, 0, body).send());
    send.send(Ok(bytes[..100_000].to_vec())).await.unwrap();
    until("the PATCH on A holds the upload", || async {
        leased(&a).await == 1
    })
    .await;
    let res = on_b.patch(&upload, 0, vec![0xEE; 300_000]).await;
    assert_eq!(res.status(), StatusCode::LOCKED);
    send.send(Ok(bytes[100_000..200_000].to_vec()))
        .await
        .unwrap();
    drop(send);
    let res = first.await.unwrap().expect("the PATCH on A");
    assert_eq!(header_u64(&res, "Upload-Offset"), 200_000);

    // B carries on from the offset A recorded, and finishes it.
    assert_eq!(on_b.offset(&upload).await, 200_000);
    let res = on_b
        .patch(&upload, 200_000, bytes[200_000..].to_vec())
        .await;
    let id = file_id(&res).expect("whole");
    assert_eq!(downloaded(&a, &alice, &id).await, bytes);
    assert_eq!(
        file_id(&on_a.head(&upload).await).as_deref(),
        Some(id.as_str())
    );
}
