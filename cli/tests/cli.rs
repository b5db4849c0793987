//! `burnlink` run as a process against live servers started in this test process (port 0,
//! their own data dir): what a script sees on stdout, stderr and in the exit code.

use std::path::Path;
use std::process::Output;

use burnlink_tests::{ALICE, TestApp, User, sample_bytes, services, spawn, spawn_with};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

const ALL: [&str; 4] = ["files:read", "files:write", "shares:write", "links:mint"];

/// Runs `burnlink ARGS` against `app` with `token`, `stdin` on its standard input.
async fn burnlink(app: &TestApp, token: Option<&str>, args: &[&str], stdin: &str) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_burnlink"));
    cmd.arg("--url").arg(&app.app_url).args(args);
    cmd.env_remove("BURNLINK_TOKEN").env_remove("BURNLINK_URL");
    if let Some(token) = token {
        cmd.env("BURNLINK_TOKEN", token);
    }
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("burnlink starts");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.as_bytes())
        .await
        .expect("stdin written");
    drop(input);
    child.wait_with_output().await.expect("burnlink ran")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs and expects exit 0; returns stdout.
async fn ok(app: &TestApp, token: &str, args: &[&str]) -> String {
    let out = burnlink(app, Some(token), args, "").await;
    assert!(out.status.success(), "burnlink {args:?}: {out:?}");
    stdout(&out)
}

async fn alice_with_token(app: &TestApp) -> (User, String) {
    let alice = app.login(ALICE).await;
    let token = alice.create_token(&ALL).await;
    (alice, token)
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_share_get_gives_back_the_same_bytes() {
    let app = spawn().await;
    let (_alice, token) = alice_with_token(&app).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let bytes = sample_bytes(300_000);
    let src = dir.path().join("report.bin");
    std::fs::write(&src, &bytes).expect("write");

    let id = ok(&app, &token, &["upload", path(&src)]).await;
    assert!(
        !id.is_empty() && !id.contains(char::is_whitespace),
        "{id:?}"
    );
    let ls = ok(&app, &token, &["ls"]).await;
    assert_eq!(ls, format!("{id}\t300000\treport.bin"));
    let listed: Value =
        serde_json::from_str(&ok(&app, &token, &["--json", "ls"]).await).expect("JSON");
    assert_eq!(listed[0]["id"], id.as_str());

    let share = ok(
        &app,
        &token,
        &["share", &id, "--expires", "7d", "--downloads", "3"],
    )
    .await;
    assert!(share.starts_with(&format!("{}/s/", app.app_url)), "{share}");
    let out = dir.path().join("out.bin");
    let got = burnlink(&app, None, &["get", &share, "-o", path(&out)], "").await;
    assert!(got.status.success(), "{got:?}");
    assert_eq!(std::fs::read(&out).expect("downloaded"), bytes);
    assert!(!dir.path().join("out.bin.part").exists());

    // A one-time link, as JSON, works once.
    let link: Value =
        serde_json::from_str(&ok(&app, &token, &["--json", "link", &id]).await).expect("JSON");
    let url = link["url"].as_str().expect("url");
    let once = dir.path().join("once.bin");
    let got = burnlink(&app, None, &["get", url, "-o", path(&once)], "").await;
    assert!(got.status.success(), "{got:?}");
    assert_eq!(std::fs::read(&once).expect("downloaded"), bytes);

    ok(&app, &token, &["rm", &id]).await;
    assert_eq!(ok(&app, &token, &["ls"]).await, "");
}

#[tokio::test(flavor = "multi_thread")]
async fn get_of_a_used_link_exits_non_zero_with_the_servers_message() {
    let app = spawn().await;
    let (alice, token) = alice_with_token(&app).await;
    let file = alice.upload_ok("a.txt", b"hello".to_vec()).await;
    let url = ok(&app, &token, &["link", &file.id]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("a.txt");
    assert!(
        burnlink(&app, None, &["get", &url, "-o", path(&out)], "")
            .await
            .status
            .success()
    );

    let again = burnlink(&app, None, &["get", &url, "-o", path(&out)], "").await;
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    // What the download server says about a used link, word for word.
    let said: Value = app
        .anon
        .get(&url)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    let message = said["message"].as_str().expect("message");
    let err = stderr(&again);
    assert!(
        err.contains(message) && err.contains("410 token_used"),
        "{err}"
    );
    assert_eq!(std::fs::read(&out).expect("first download kept"), b"hello");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_share_takes_its_password_from_stdin() {
    let app = spawn().await;
    let (alice, token) = alice_with_token(&app).await;
    let file = alice.upload_ok("a.txt", b"secret".to_vec()).await;
    let out = burnlink(
        &app,
        Some(&token),
        &["share", &file.id, "--password-stdin"],
        "open sesame\n",
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let share = stdout(&out);
    let dir = tempfile::tempdir().expect("temp dir");
    let dest = dir.path().join("a.txt");
    let wrong = burnlink(
        &app,
        None,
        &["get", &share, "-o", path(&dest), "--password-stdin"],
        "nope\n",
    )
    .await;
    assert_eq!(wrong.status.code(), Some(1), "{wrong:?}");
    assert!(stderr(&wrong).contains("wrong password"), "{wrong:?}");
    let right = burnlink(
        &app,
        None,
        &["get", &share, "-o", path(&dest), "--password-stdin"],
        "open sesame\n",
    )
    .await;
    assert!(right.status.success(), "{right:?}");
    assert_eq!(std::fs::read(&dest).expect("downloaded"), b"secret");
    // One download allowed by default: the next is refused, as the share page would.
    let gone = burnlink(
        &app,
        None,
        &["get", &share, "-o", path(&dest), "--password-stdin"],
        "open sesame\n",
    )
    .await;
    assert_eq!(gone.status.code(), Some(1), "{gone:?}");
    assert!(stderr(&gone).contains("410 gone"), "{gone:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cut_download_is_resumed_with_the_first_responses_cookie() {
    let app = spawn().await;
    let (alice, token) = alice_with_token(&app).await;
    let bytes = sample_bytes(3 * 1024 * 1024);
    let file = alice.upload_ok("big.bin", bytes.clone()).await;
    let url = ok(&app, &token, &["link", &file.id]).await;
    let proxy = services::cutting_proxy_for(&url, 200_000).await;
    let url = proxy.url_for(&url);
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("big.bin");
    let got = burnlink(&app, None, &["--json", "get", &url, "-o", path(&out)], "").await;
    assert!(got.status.success(), "{got:?}");
    let summary: Value = serde_json::from_str(&stdout(&got)).expect("JSON");
    assert!(
        summary["resumed"].as_u64().expect("resumed") >= 1,
        "{summary}"
    );
    assert_eq!(std::fs::read(&out).expect("downloaded"), bytes);
    let heads = proxy.requests();
    assert!(heads.len() >= 2, "{heads:?}");
    assert!(
        heads[1].to_ascii_lowercase().contains("cookie: blr_"),
        "{}",
        heads[1]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_codes_tell_usage_refusal_and_unreachable_apart() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let no_token = burnlink(&app, None, &["ls"], "").await;
    assert_eq!(no_token.status.code(), Some(2), "{no_token:?}");
    assert!(stderr(&no_token).contains("BURNLINK_TOKEN"));

    let read_only = alice.create_token(&["files:read"]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path().join("x.txt");
    std::fs::write(&src, b"x").expect("write");
    let refused = burnlink(&app, Some(&read_only), &["upload", path(&src)], "").await;
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(
        stderr(&refused).contains("403 insufficient_scope"),
        "{refused:?}"
    );

    let bad = burnlink(&app, Some("blpat_unknown"), &["ls"], "").await;
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("401 invalid_token"), "{bad:?}");

    let missing = burnlink(
        &app,
        Some(&read_only),
        &["upload", path(&dir.path().join("nope"))],
        "",
    )
    .await;
    assert_eq!(missing.status.code(), Some(4), "{missing:?}");

    let unreachable = tokio::process::Command::new(env!("CARGO_BIN_EXE_burnlink"))
        .args(["--url", "http://127.0.0.1:9", "--token", "blpat_x", "ls"])
        .output()
        .await
        .expect("ran");
    assert_eq!(unreachable.status.code(), Some(3), "{unreachable:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn webhook_add_ls_test_rm() {
    // Loopback receivers over plain http are allowed here; nothing listens on port 9, and
    // only queueing the test event is asked of the app.
    let app = spawn_with(|config| {
        config.webhooks_allow_private = true;
        config.webhooks_allow_http = true;
    })
    .await;
    let alice = app.login(ALICE).await;
    let token = alice
        .create_token(&["webhooks:read", "webhooks:write"])
        .await;
    let added = ok(
        &app,
        &token,
        &[
            "webhook",
            "add",
            "http://127.0.0.1:9/hook",
            "--events",
            "download.completed,share.expired",
            "--description",
            "billing",
        ],
    )
    .await;
    let (id, secret) = added.split_once('\t').expect("id TAB secret");
    assert!(secret.starts_with("whsec_"), "{added}");
    let ls = ok(&app, &token, &["webhook", "ls"]).await;
    assert_eq!(
        ls,
        format!("{id}\tactive\tdownload.completed,share.expired\thttp://127.0.0.1:9/hook")
    );
    let event = ok(&app, &token, &["webhook", "test", id]).await;
    assert!(event.starts_with("msg_"), "{event}");
    ok(&app, &token, &["webhook", "rm", id]).await;
    assert_eq!(ok(&app, &token, &["webhook", "ls"]).await, "");

    // A refused URL: the server's code and why, exit 1.
    let refused = burnlink(
        &app,
        Some(&token),
        &[
            "webhook",
            "add",
            "http://169.254.169.254/",
            "--events",
            "share.expired",
        ],
        "",
    )
    .await;
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(
        stderr(&refused).contains("422 url_refused") && stderr(&refused).contains("metadata"),
        "{refused:?}"
    );
    let usage = burnlink(
        &app,
        Some(&token),
        &["webhook", "add", "https://x.example/"],
        "",
    )
    .await;
    assert_eq!(
        usage.status.code(),
        Some(2),
        "--events is required: {usage:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_to_an_upload_link_needs_no_token() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let create = |body: Value| {
        let alice = &alice;
        async move {
            let res = alice
                .client
                .post(format!("{}/api/upload-links", alice.app_url))
                .header("X-CSRF-Token", &alice.csrf)
                .json(&body)
                .send()
                .await
                .expect("create upload link");
            assert_eq!(res.status(), reqwest::StatusCode::CREATED);
            let link: Value = res.json().await.expect("JSON");
            link["url"].as_str().expect("url").to_owned()
        }
    };
    let open = create(serde_json::json!({"max_files": 1})).await;
    let locked = create(serde_json::json!({"password": "open sesame"})).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("scan.pdf");
    std::fs::write(&file, sample_bytes(12_345)).expect("write");

    let out = burnlink(&app, None, &["upload", "--to", &open, path(&file)], "").await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "scan.pdf\t12345");
    // The link allowed one file: the next is refused with the server's words, exit 1.
    let out = burnlink(&app, None, &["upload", "--to", &open, path(&file)], "").await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).contains("upload_link_gone"), "{out:?}");

    let wrong = burnlink(
        &app,
        None,
        &["upload", "--to", &locked, "--password-stdin", path(&file)],
        "nope nope\n",
    )
    .await;
    assert_eq!(wrong.status.code(), Some(1), "{wrong:?}");
    assert!(stderr(&wrong).contains("wrong_password"), "{wrong:?}");
    let right = burnlink(
        &app,
        None,
        &[
            "upload",
            "--to",
            &locked,
            "--password-stdin",
            "--json",
            path(&file),
        ],
        "open sesame\n",
    )
    .await;
    assert!(right.status.success(), "{right:?}");
    let answer: Value = serde_json::from_str(&stdout(&right)).expect("JSON");
    assert_eq!(answer["size"], 12_345);

    // Both arrived as alice's, byte for byte.
    let files: Vec<Value> = alice.get_json(format!("{}/api/files", app.app_url)).await;
    assert_eq!(files.len(), 2);
    for f in &files {
        let agent = f["received"]["user_agent"].as_str().unwrap_or_default();
        assert!(agent.starts_with("burnlink/"), "{f}");
        let url = alice.link_url(f["id"].as_str().expect("id")).await;
        let got = app.anon.get(url).send().await.expect("download");
        assert_eq!(got.bytes().await.expect("bytes"), sample_bytes(12_345));
    }
    // Not an upload link: a usage error, nothing sent.
    let out = burnlink(
        &app,
        None,
        &["upload", "--to", &app.app_url, path(&file)],
        "",
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

/// Runs `burnlink --url URL upload FILE EXTRA…` with `token`, remembering uploads under `state`.
async fn upload_at(url: &str, token: &str, state: &Path, file: &Path, extra: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_burnlink"))
        .args(["--url", url, "upload", path(file)])
        .args(extra)
        .env_remove("BURNLINK_URL")
        .env("BURNLINK_TOKEN", token)
        .env("XDG_STATE_HOME", state)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("burnlink ran")
}

/// A large file goes through tus: cut mid-upload it resumes by itself; a run that gave up
/// leaves its upload remembered, and the next run carries on from where the server stands
/// rather than starting again.
#[tokio::test(flavor = "multi_thread")]
async fn a_large_upload_resumes_by_itself_and_in_a_later_run() {
    let app = spawn().await;
    let (alice, token) = alice_with_token(&app).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state");
    let bytes = sample_bytes(20 * 1024 * 1024 + 5);
    let src = dir.path().join("scan.bin");
    std::fs::write(&src, &bytes).expect("write");
    let remembered = state.join("burnlink/uploads");

    // Cut past 6 MiB, no retry: it gives up, the upload remembered.
    let proxy = services::upload_cutting_proxy_for(&app.app_url, 6 * 1024 * 1024).await;
    let through = format!("http://{}", proxy.addr);
    let out = upload_at(&through, &token, &state, &src, &["--retries", "0"]).await;
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let lines = std::fs::read_to_string(&remembered).expect("remembered");
    assert_eq!(lines.lines().count(), 1, "{lines}");
    assert_eq!(app.count_rows("files").await, 0);

    // The next run (the proxy passes it whole) resumes it: the same upload, no second one,
    // the bytes whole.
    let out = upload_at(&through, &token, &state, &src, &[]).await;
    assert!(out.status.success(), "{out:?}");
    let id = stdout(&out);
    assert_eq!(app.count_rows("uploads").await, 1, "not started again");
    let url = alice.link_url(&id).await;
    let got = app.anon.get(url).send().await.expect("download");
    assert_eq!(got.bytes().await.expect("bytes").to_vec(), bytes);
    let lines = std::fs::read_to_string(&remembered).expect("the memory file");
    assert_eq!(lines, "", "forgotten once whole");

    // Cut again, with its retries: it resumes within the run.
    let proxy = services::upload_cutting_proxy_for(&app.app_url, 6 * 1024 * 1024).await;
    let through = format!("http://{}", proxy.addr);
    let out = upload_at(&through, &token, &state, &src, &[]).await;
    assert!(out.status.success(), "{out:?}");
    assert!(stderr(&out).contains("resuming"), "{}", stderr(&out));
    let id = stdout(&out);
    let heads = proxy.requests();
    assert!(heads.iter().any(|h| h.starts_with("HEAD ")), "{heads:?}");
    let url = alice.link_url(&id).await;
    let got = app.anon.get(url).send().await.expect("download");
    assert_eq!(got.bytes().await.expect("bytes").to_vec(), bytes);
    assert_eq!(app.count_rows("files").await, 2);
}

/// A large file sent `--to` a link goes through tus (`<link>/uploads`): cut mid-upload it
/// resumes by itself, arrives whole as the owner's, and the link's secret is not written to
/// disk to resume in a later run.
#[tokio::test(flavor = "multi_thread")]
async fn a_large_upload_through_a_link_resumes_by_itself() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let res = alice
        .client
        .post(format!("{}/api/upload-links", alice.app_url))
        .header("X-CSRF-Token", &alice.csrf)
        .json(&serde_json::json!({"max_files": 1, "password": "open sesame"}))
        .send()
        .await
        .expect("create upload link");
    let link: Value = res.json().await.expect("JSON");
    let link_path = link["url"]
        .as_str()
        .and_then(|u| u.strip_prefix(&app.app_url))
        .expect("a link of the app")
        .to_owned();
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state");
    let bytes = sample_bytes(12 * 1024 * 1024 + 3);
    let src = dir.path().join("scan.bin");
    std::fs::write(&src, &bytes).expect("write");

    let proxy = services::upload_cutting_proxy_for(&app.app_url, 6 * 1024 * 1024).await;
    let to = format!("http://{}{link_path}", proxy.addr);
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_burnlink"));
    cmd.args(["upload", "--to", &to, "--password-stdin", path(&src)])
        .env_remove("BURNLINK_URL")
        .env_remove("BURNLINK_TOKEN")
        .env("XDG_STATE_HOME", &state)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("burnlink starts");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(b"open sesame\n").await.expect("stdin");
    drop(input);
    let out = child.wait_with_output().await.expect("burnlink ran");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), format!("scan.bin\t{}", bytes.len()));
    assert!(stderr(&out).contains("resuming"), "{}", stderr(&out));
    assert!(proxy.cut_made(), "the upload was cut");
    let heads = proxy.requests();
    assert!(
        heads
            .iter()
            .any(|h| h.starts_with(&format!("POST {link_path}/uploads "))),
        "created through tus: {heads:?}"
    );
    assert!(heads.iter().any(|h| h.starts_with("HEAD ")), "{heads:?}");
    assert!(!state.exists(), "nothing remembered on disk");

    let files: Vec<Value> = alice.get_json(format!("{}/api/files", app.app_url)).await;
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0]["received"]["link_id"], link["id"]);
    let url = alice.link_url(files[0]["id"].as_str().expect("id")).await;
    let got = app.anon.get(url).send().await.expect("download");
    assert_eq!(got.bytes().await.expect("bytes").to_vec(), bytes);
    assert_eq!(app.count_rows("upload_link_slots").await, 0);
}
