//! Resuming a single-use download: the client that received the first response can fetch the
//! rest (206) with the secret that response carried, for the resume window; nobody else can,
//! and never bytes of two versions of the file.

use std::path::Path;
use std::time::Duration;

use burnlink_tests::services::{self, download_config, start_download_server};
use burnlink_tests::{ALICE, TestApp, error_code, sample_bytes, spawn};
use reqwest::header::{CONTENT_RANGE, COOKIE, ETAG, IF_RANGE, RANGE, SET_COOKIE};
use reqwest::{Response, StatusCode};

const SIZE: usize = 3 * 1024 * 1024;

/// An app with one uploaded file; returns the app, the file's bytes and its storage key.
async fn app_with_file() -> (TestApp, Vec<u8>, String) {
    let app = spawn().await;
    let bytes = sample_bytes(SIZE);
    app.login(ALICE)
        .await
        .upload_ok("big.bin", bytes.clone())
        .await;
    let key = app.only_stored_file();
    (app, bytes, key)
}

/// A one-time URL for the app's only file, minted by the app as for its owner.
async fn link(app: &TestApp) -> String {
    let alice = app.login(ALICE).await;
    let res = alice.list().await;
    let files: serde_json::Value = res.json().await.expect("file list");
    let id = files[0]["id"].as_str().expect("file id").to_owned();
    alice.link_url(&id).await
}

/// Reads at least `want` bytes of the body, then drops the response: the connection closes
/// mid-body, as a broken download does. Returns what arrived, the ETag and the cookie pair.
async fn cut_after(res: Response, want: usize) -> (Vec<u8>, String, String) {
    assert_eq!(res.status(), StatusCode::OK);
    let etag = res.headers()[ETAG].to_str().expect("ascii").to_owned();
    let cookie = res.headers()[SET_COOKIE]
        .to_str()
        .expect("ascii")
        .to_owned();
    let pair = cookie.split(';').next().expect("name=value").to_owned();
    let mut res = res;
    let mut got = Vec::new();
    while got.len() < want {
        got.extend_from_slice(&res.chunk().await.expect("chunk").expect("more body"));
    }
    drop(res);
    (got, etag, pair)
}

async fn resume(url: &str, from: usize, proof: (&str, &str)) -> Response {
    plain()
        .get(url)
        .header(RANGE, format!("bytes={from}-"))
        .header(proof.0, proof.1)
        .send()
        .await
        .expect("resume request")
}

fn curl_installed() -> bool {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_ok()
    {
        return true;
    }
    services::skip("curl not installed");
    false
}

#[tokio::test]
async fn a_cut_download_is_resumed_by_curl_with_its_cookie_jar() {
    if !curl_installed() {
        return;
    }
    let (app, bytes, _) = app_with_file().await;
    let url = link(&app).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (out, jar, headers) = (
        dir.path().join("big.bin"),
        dir.path().join("jar"),
        dir.path().join("headers"),
    );

    // As docs/TOKEN.md says: the first download keeps its cookies. It breaks: a proxy in front
    // of the download server cuts the connection after about 200 kB.
    let proxy = services::cutting_proxy_for(&url, 200_000).await;
    let url = proxy.url_for(&url);
    let first = curl_async(&["-sS", "-c", path(&jar), "-o", path(&out)], &url).await;
    assert_eq!(first.status.code(), Some(18), "curl saw the cut: {first:?}");
    let partial = std::fs::metadata(&out).expect("partial file").len() as usize;
    assert!(partial > 0 && partial < SIZE, "a part arrived: {partial}");

    // The resume, as documented: the same URL, the same jar, `-C -`.
    let second = curl_async(
        &[
            "-sS",
            "-f",
            "-b",
            path(&jar),
            "-c",
            path(&jar),
            "-C",
            "-",
            "-o",
            path(&out),
            "-D",
            path(&headers),
        ],
        &url,
    )
    .await;
    assert!(second.status.success(), "{second:?}");
    let headers = std::fs::read_to_string(&headers).expect("headers");
    assert!(headers.starts_with("HTTP/1.1 206"), "{headers}");
    assert!(
        headers.to_ascii_lowercase().contains(&format!(
            "content-range: bytes {partial}-{}/{SIZE}",
            SIZE - 1
        )),
        "{headers}"
    );
    assert!(
        std::fs::read(&out).expect("file") == bytes,
        "whole file, byte for byte"
    );

    // Someone with only the URL cannot do the same.
    let stranger = curl_async(&["-sS", "-C", "-", "-o", path(&dir.path().join("x"))], &url).await;
    assert!(stranger.status.success());
    let body = std::fs::read(dir.path().join("x")).expect("error body");
    assert!(String::from_utf8_lossy(&body).contains("token_used"));
}

#[tokio::test]
async fn wget_resumes_a_cut_download_by_itself() {
    if std::process::Command::new("wget")
        .arg("--version")
        .output()
        .is_err()
    {
        services::skip("wget not installed");
        return;
    }
    let (app, bytes, _) = app_with_file().await;
    let url = link(&app).await;
    let proxy = services::cutting_proxy_for(&url, 200_000).await;
    let url = proxy.url_for(&url);
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("big.bin");

    // wget retries a broken transfer with `Range` and the cookies of the session: the cut
    // download continues where it stopped, with no flag at all.
    let wget = tokio::process::Command::new("wget")
        .args(["-q", "--tries=3", "--waitretry=0", "-O"])
        .arg(&out)
        .arg(&url)
        .output()
        .await
        .expect("wget runs");
    assert!(wget.status.success(), "{wget:?}");
    assert!(
        std::fs::read(&out).expect("file") == bytes,
        "whole file, byte for byte"
    );
}

#[tokio::test]
async fn a_cut_download_is_resumed_by_curl_with_if_range() {
    if !curl_installed() {
        return;
    }
    let (app, bytes, _) = app_with_file().await;
    let url = link(&app).await;
    let res = plain().get(&url).send().await.expect("download");
    let (got, etag, _) = cut_after(res, 100_000).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("big.bin");
    std::fs::write(&out, &got).expect("partial file");

    let if_range = format!("If-Range: {etag}");
    let resumed = curl_async(
        &["-sS", "-f", "-C", "-", "-H", &if_range, "-o", path(&out)],
        &url,
    )
    .await;
    assert!(resumed.status.success(), "{resumed:?}");
    assert!(std::fs::read(&out).expect("file") == bytes);
}

#[tokio::test]
async fn resuming_needs_the_first_responses_secret() {
    let (app, bytes, _) = app_with_file().await;
    let url = link(&app).await;
    let res = plain().get(&url).send().await.expect("download");
    let (got, etag, cookie) = cut_after(res, 100_000).await;
    let from = got.len();

    let bare = app
        .anon
        .get(&url)
        .header(RANGE, format!("bytes={from}-"))
        .send()
        .await
        .expect("resume without secret");
    assert_eq!(bare.status(), StatusCode::GONE);
    assert_eq!(error_code(bare).await, "token_used");
    let (name, _) = cookie.split_once('=').expect("name=value");
    let wrong_cookie = format!("{name}=AAAAAAAAAAAAAAAAAAAAAA");
    let wrong = resume(&url, from, (COOKIE.as_str(), &wrong_cookie)).await;
    assert_eq!(wrong.status(), StatusCode::GONE);
    assert_eq!(error_code(wrong).await, "token_used");
    let forged_etag = format!("{}-AAAAAAAAAAAAAAAAAAAAAA\"", &etag[..17]);
    let wrong = resume(&url, from, (IF_RANGE.as_str(), &forged_etag)).await;
    assert_eq!(wrong.status(), StatusCode::GONE);

    for proof in [
        (COOKIE.as_str(), cookie.as_str()),
        (IF_RANGE.as_str(), etag.as_str()),
    ] {
        let res = resume(&url, from, proof).await;
        assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT, "{proof:?}");
        assert_eq!(
            res.headers()[CONTENT_RANGE],
            format!("bytes {from}-{}/{SIZE}", SIZE - 1).as_str()
        );
        assert_eq!(res.headers()[ETAG], etag.as_str());
        let rest = res.bytes().await.expect("rest");
        assert!([&got[..], &rest[..]].concat() == bytes, "{proof:?}");
    }
}

#[tokio::test]
async fn a_resume_outlives_the_token_but_not_the_window() {
    let (app, bytes, key) = app_with_file().await;
    let mut config = download_config(&app, "memory");
    config.accept_tokens_issued_before_start = true;
    config.leeway = 0;
    config.resume_window_secs = 3;
    let server = start_download_server(config).await;
    let mut claims = app.claims(&key, "big.bin");
    claims.exp = claims.iat + 1;
    let url = format!(
        "{server}/d/{}",
        app.signing_key().mint(&claims).expect("mint")
    );
    let res = plain().get(&url).send().await.expect("download");
    let (got, _, cookie) = cut_after(res, 100_000).await;

    // Past the token's life: a fresh request is refused as expired, the resume is served.
    burnlink_tests::sleep_until_second(claims.exp + 1).await;
    let plain = plain().get(&url).send().await.expect("expired");
    assert_eq!(plain.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(plain).await, "token_expired");
    let res = resume(&url, got.len(), (COOKIE.as_str(), &cookie)).await;
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    let rest = res.bytes().await.expect("rest");
    assert!([&got[..], &rest[..]].concat() == bytes);

    // Past the window (3 s from the burn): nothing.
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    let late = resume(&url, got.len(), (COOKIE.as_str(), &cookie)).await;
    assert_eq!(
        late.status(),
        StatusCode::UNAUTHORIZED,
        "the window is over"
    );
    assert_eq!(error_code(late).await, "token_expired");
}

#[tokio::test]
async fn a_resume_after_the_file_changed_is_refused_with_nothing_mixed() {
    let (app, bytes, key) = app_with_file().await;
    let url = link(&app).await;
    let res = plain().get(&url).send().await.expect("download");
    let (got, etag, cookie) = cut_after(res, 100_000).await;

    // The same storage key now holds other bytes (a restore from backup, say).
    app.put_stored(&key, &bytes.iter().rev().copied().collect::<Vec<_>>())
        .await;

    for proof in [
        (COOKIE.as_str(), cookie.as_str()),
        (IF_RANGE.as_str(), etag.as_str()),
    ] {
        let res = resume(&url, got.len(), proof).await;
        assert_eq!(res.status(), StatusCode::PRECONDITION_FAILED, "{proof:?}");
        assert_eq!(error_code(res).await, "file_changed");
    }
}

#[tokio::test]
async fn a_file_under_the_resume_minimum_gets_no_grant() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let file = alice.upload_ok("small.txt", sample_bytes(1000)).await;
    let url = alice.link_url(&file.id).await;
    let res = plain().get(&url).send().await.expect("download");
    assert_eq!(res.status(), StatusCode::OK);
    assert!(!res.headers().contains_key(SET_COOKIE));
    let etag = res.headers()[ETAG].to_str().expect("ascii").to_owned();
    assert!(!etag.contains('-'), "no secret in {etag}");
    let again = resume(&url, 10, (IF_RANGE.as_str(), &etag)).await;
    assert_eq!(again.status(), StatusCode::GONE);
}

#[tokio::test]
async fn head_and_unsatisfiable_ranges_create_no_grant() {
    let (app, _, _) = app_with_file().await;
    let url = link(&app).await;
    let head = plain().head(&url).send().await.expect("HEAD");
    assert_eq!(head.status(), StatusCode::OK);
    assert!(!head.headers().contains_key(SET_COOKIE));
    let etag = head.headers()[ETAG].to_str().expect("ascii").to_owned();
    assert!(
        !etag.contains('-'),
        "a HEAD's validator carries no secret: {etag}"
    );
    let past = app
        .anon
        .get(&url)
        .header(RANGE, format!("bytes={SIZE}-"))
        .send()
        .await
        .expect("416");
    assert_eq!(past.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert!(!past.headers().contains_key(SET_COOKIE));
    assert_eq!(
        plain().get(&url).send().await.expect("GET").status(),
        StatusCode::OK,
        "the link was still unused"
    );
}

#[tokio::test]
async fn a_download_started_on_one_server_is_resumed_on_another() {
    let Some(redis) = services::redis().await else {
        return;
    };
    let (app, bytes, key) = app_with_file().await;
    let a = services::spawn_download_server(&app, redis.url()).await;
    let b = services::spawn_download_server(&app, redis.url()).await;
    let token = app
        .signing_key()
        .mint(&app.claims(&key, "big.bin"))
        .expect("mint");
    let res = app
        .anon
        .get(format!("{a}/d/{token}"))
        .send()
        .await
        .expect("download on A");
    let (got, _, cookie) = cut_after(res, 100_000).await;
    let on_b = format!("{b}/d/{token}");
    let res = resume(&on_b, got.len(), (COOKIE.as_str(), &cookie)).await;
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    let rest = res.bytes().await.expect("rest");
    assert!([&got[..], &rest[..]].concat() == bytes);
    let bare = plain().get(&on_b).send().await.expect("replay on B");
    assert_eq!(bare.status(), StatusCode::GONE);
}

/// A client that keeps no cookies: each request offers only what the test gives it.
fn plain() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client builds")
}

/// curl as a child process the runtime keeps serving beside (the proxy and the servers run on
/// this test's runtime).
async fn curl_async(args: &[&str], url: &str) -> std::process::Output {
    tokio::process::Command::new("curl")
        .args(args)
        .arg(url)
        .output()
        .await
        .expect("curl runs")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// `cargo test -p burnlink-tests --release --test api -- resume::bytes_per_burn --ignored
/// --nocapture`: bytes per burned id in the memory store, without and with a resume grant
/// (docs/DEPLOY.md, "Sizing Redis").
#[tokio::test]
#[ignore = "a measurement, not a check"]
async fn bytes_per_burn() {
    use download_server::store::{BurnRequest, BurnStore, MemoryStore, ResumeGrant};
    for with_grant in [false, true] {
        let store = MemoryStore::start(Duration::from_secs(3600));
        let ids: Vec<shared::Jti> = (0..1_000_000).map(|_| shared::Jti::generate()).collect();
        let grant = ResumeGrant {
            version: 1,
            proof: [7; 16],
            until_ms: u64::MAX,
        };
        let rss = || burnlink_tests::process::rss_kib(std::process::id());
        let before = rss();
        for jti in &ids {
            let req = BurnRequest {
                jti,
                iat: 0,
                now_ms: 0,
                keep_until_ms: u64::MAX,
            };
            let grant = with_grant.then_some(&grant);
            store.burn(&req, grant).await.expect("burned");
        }
        let per_id = (rss() - before) * 1024 / 1_000_000;
        println!("grant {with_grant}: {per_id} bytes per burned id");
    }
}
