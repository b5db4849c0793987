//! Files in S3-compatible storage (a private moto server): a fleet that shares no directory,
//! and start-up refusing storage it cannot use. The file, download and resume tests also run
//! over S3 as a whole (`TEST_FILE_STORE=s3`, see `.ci/run`).

use std::path::Path;

use burnlink_tests::postgres::database;
use burnlink_tests::s3::moto;
use burnlink_tests::services::{private_redis, start_download_server};
use burnlink_tests::{ALICE, User, sample_bytes, start, test_config};
use reqwest::StatusCode;
use shared::{Algorithm, SigningKey};

/// `user`'s session presented to another app server (sessions live in the shared database).
fn on(app_url: &str, user: &User) -> User {
    User {
        client: user.client.clone(),
        csrf: user.csrf.clone(),
        app_url: app_url.to_owned(),
    }
}

/// Nothing but the database and keys in a data dir: no `files/` entries.
fn no_local_files(dir: &Path) {
    let files = burnlink_tests::stored_files(&dir.join("files"));
    assert!(files.is_empty(), "{}: {files:?}", dir.display());
}

/// Two app servers on PostgreSQL, two download servers on Redis taking keys from the JWKS URL,
/// files in S3, and four data dirs of their own: a link minted anywhere is served once,
/// anywhere; a share made on one app server is taken through the other and its download's
/// outcome reaches the owner.
#[tokio::test]
async fn a_fleet_with_no_shared_directory_serves_each_link_once_and_shares_across_it() {
    let Some(moto) = moto() else { return };
    let Some(pg) = database().await else { return };
    // A private Redis: the outcome stream and its consumer group belong to this test alone.
    let Some(redis) = private_redis().await else {
        return;
    };
    let bucket = moto.bucket();
    let store = moto.settings(&bucket, "fleet");
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();

    // One signing key, deployed to each app host as a secret (not a shared directory).
    let key_file = |dir: &Path| dir.join("signing.pem");
    SigningKey::load_or_generate(&key_file(dirs[0].path()), Algorithm::EdDSA).unwrap();
    std::fs::copy(key_file(dirs[0].path()), key_file(dirs[1].path())).unwrap();

    let mut apps = Vec::new();
    for dir in &dirs[..2] {
        let data = dir.path().join("data");
        let mut config = test_config(&data);
        config.database_url = Some(pg.url().to_owned());
        config.signing_key = Some(key_file(dir.path()));
        config.file_store = store.clone();
        // Links name the download servers' public address; the test sends each to one.
        config.download_url = Some("http://downloads.invalid".into());
        config.outcomes_redis = Some(redis.url().to_owned());
        apps.push(start(config).await);
    }
    let (a, b) = (&apps[0], &apps[1]);

    let mut downloads = Vec::new();
    for dir in &dirs[2..] {
        let mut config = download_server::Config::from_defaults();
        config.bind = "127.0.0.1:0".parse().unwrap();
        config.service.data_dir = dir.path().join("data");
        config.token.issuer = a.config.token.issuer.clone();
        config.token.audience = a.config.token.audience.clone();
        config.jwks_url = Some(format!("{}/.well-known/jwks.json", a.app_url));
        config.burn_store = redis.url().into();
        config.burn_store_timeout_ms = 5_000;
        config.file_store = store.clone();
        downloads.push(start_download_server(config).await);
    }
    let on_dl = |url: &str, n: usize| url.replacen("http://downloads.invalid", &downloads[n], 1);

    // Login on A, upload on B, link on A, download on 1, replay on 2.
    let alice_a = a.login(ALICE).await;
    let alice_b = on(&b.app_url, &alice_a);
    let bytes = sample_bytes(300_000);
    let file = alice_b.upload_ok("fleet.bin", bytes.clone()).await;
    assert_eq!(
        moto.list(&bucket, "fleet").len(),
        1,
        "the upload is an object"
    );
    let url = alice_a.link_url(&file.id).await;

    let res = a.anon.get(on_dl(&url, 0)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.bytes().await.unwrap() == bytes[..], "byte for byte");
    let res = a.anon.get(on_dl(&url, 1)).send().await.unwrap();
    assert_eq!(
        res.status(),
        StatusCode::GONE,
        "replayed on the other server"
    );

    // 100 concurrent uses of one link, spread over both download servers: exactly one 200.
    let url = alice_b.link_url(&file.id).await;
    let mut uses = tokio::task::JoinSet::new();
    for i in 0..100 {
        let (client, url) = (a.anon.clone(), on_dl(&url, i % 2));
        uses.spawn(async move {
            let res = client.get(url).send().await.expect("download request");
            let status = res.status();
            let body = res.bytes().await.unwrap_or_default();
            (status, body.len())
        });
    }
    let (mut ok, mut gone) = (0, 0);
    while let Some(result) = uses.join_next().await {
        match result.unwrap() {
            (StatusCode::OK, len) => {
                assert_eq!(len, bytes.len(), "the one 200 is whole");
                ok += 1;
            }
            (StatusCode::GONE, _) => gone += 1,
            (status, _) => panic!("unexpected {status}"),
        }
    }
    assert_eq!((ok, gone), (1, 99));

    // A share made on A, taken through B, downloaded from 2: its outcome reaches the owner.
    let res = alice_a
        .client
        .post(format!("{}/api/files/{}/shares", a.app_url, file.id))
        .header("X-CSRF-Token", &alice_a.csrf)
        .json(&serde_json::json!({ "max_downloads": 2 }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let share: serde_json::Value = res.json().await.unwrap();
    let share_id = share["id"].as_str().unwrap().to_owned();
    let on_b = share["url"]
        .as_str()
        .unwrap()
        .replacen(&a.app_url, &b.app_url, 1);
    let res = a
        .anon
        .post(&on_b)
        .header("User-Agent", "curl/8.5.0")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let link = res.headers()["location"].to_str().unwrap().to_owned();
    let res = a.anon.get(on_dl(&link, 1)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.bytes().await.unwrap() == bytes[..]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let seen = loop {
        let list: Vec<serde_json::Value> = alice_a
            .get_json(format!("{}/api/shares/{share_id}/downloads", a.app_url))
            .await;
        if !list.is_empty() || std::time::Instant::now() > deadline {
            break list;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["complete"], true);
    assert_eq!(seen[0]["bytes"], bytes.len());

    // Deleting on A removes the object; the next link's download is a 404 (nothing burned).
    let url = alice_a.link_url(&file.id).await;
    assert_eq!(
        alice_a.delete(&file.id).await.status(),
        StatusCode::NO_CONTENT
    );
    assert!(moto.list(&bucket, "fleet").is_empty(), "the object is gone");
    let res = a.anon.get(on_dl(&url, 1)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    for dir in &dirs {
        no_local_files(&dir.path().join("data"));
    }
}

/// An object that vanished between the link and the download: 404, and the token is not
/// burned (it works once the object is back).
#[tokio::test]
async fn a_missing_object_is_404_and_burns_nothing() {
    let Some(moto) = moto() else { return };
    let bucket = moto.bucket();
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.file_store = moto.settings(&bucket, "files");
    let app = start(config).await;
    let alice = app.login(ALICE).await;
    let file = alice.upload_ok("a.txt", b"kept".to_vec()).await;
    let url = alice.link_url(&file.id).await;
    let key = app.only_stored_file();
    app.remove_stored(&key).await;
    assert_eq!(
        app.anon.get(&url).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    app.put_stored(&key, b"kept").await;
    let res = app.anon.get(&url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "the 404 burned nothing");
    assert_eq!(res.text().await.unwrap(), "kept");
}

/// A bucket that does not exist, or an endpoint nobody answers on, stops start-up of both
/// servers with the setting's name, and never prints the secret.
#[tokio::test]
async fn unusable_storage_stops_start_up_with_the_setting_name() {
    let Some(moto) = moto() else { return };
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut unreachable = moto.settings("burnlink-files", "x");
    unreachable.aws_endpoint_url = Some(format!("http://127.0.0.1:{closed_port}"));
    for (case, settings) in [
        ("no such bucket", moto.settings("no-such-bucket-here", "x")),
        ("unreachable", unreachable),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        config.file_store = settings.clone();
        let e = app_server::Application::build(config)
            .await
            .err()
            .unwrap_or_else(|| panic!("{case}: the app server started"))
            .to_string();
        assert!(e.contains("--file-store (FILE_STORE)"), "{case}: {e}");
        assert!(!e.contains("testing"), "{case}: the secret is printed: {e}");

        let mut config = download_server::Config::from_defaults();
        config.bind = "127.0.0.1:0".parse().unwrap();
        config.service.data_dir = dir.path().to_owned();
        config.keys = vec![
            SigningKey::generate(Algorithm::EdDSA)
                .verifying_key()
                .clone(),
        ];
        config.file_store = settings;
        let e = download_server::Application::build(config)
            .await
            .err()
            .unwrap_or_else(|| panic!("{case}: the download server started"))
            .to_string();
        assert!(e.contains("--file-store (FILE_STORE)"), "{case}: {e}");
    }
}

/// The bytes streamed are those of the version described at open: an object replaced in
/// between fails the ranged GET (`If-Match`), so the stream ends with an error before any
/// byte, never with the other version's bytes.
#[tokio::test]
async fn an_object_replaced_after_open_ends_the_stream_without_other_bytes() {
    use file_store::{ByteRange, FileStore};
    use futures_util::StreamExt;
    let Some(moto) = moto() else { return };
    let dir = tempfile::tempdir().unwrap();
    let files = moto
        .settings(&moto.bucket(), "v")
        .build(dir.path().to_owned())
        .unwrap();
    let key = shared::StorageKey::generate();
    for byte in [1u8, 2] {
        let mut upload = files.create(&key).await.unwrap();
        upload.write(vec![byte; 1000].into()).await.unwrap();
        upload.finish().await.unwrap();
        if byte == 2 {
            break;
        }
        let stored = files.open(&key, 0).await.unwrap().expect("the object");
        assert_eq!(stored.size, 1000);
        // Replaced now, between this open and its stream.
        let mut upload = files.create(&key).await.unwrap();
        upload.write(vec![9u8; 1000].into()).await.unwrap();
        upload.finish().await.unwrap();
        let mut stream = stored.stream(ByteRange::whole(1000), 4096);
        let first = stream.next().await.expect("an item");
        assert!(first.is_err(), "{first:?}");
        assert_eq!(stream.sent, 0);
    }
    // A fresh open reads the current version whole.
    let stored = files.open(&key, 0).await.unwrap().expect("the object");
    let mut stream = stored.stream(ByteRange::whole(1000), 4096);
    let mut got = Vec::new();
    while let Some(chunk) = stream.next().await {
        got.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(got, vec![2u8; 1000]);
}

/// An upload large enough to be sent as a multipart upload, refused past the limit: no
/// object, no row, and no multipart upload left open.
#[tokio::test]
async fn a_large_upload_refused_midway_leaves_no_object_and_no_open_upload() {
    let Some(moto) = moto() else { return };
    let bucket = moto.bucket();
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.file_store = moto.settings(&bucket, "files");
    config.max_upload_bytes = 24 << 20;
    let app = start(config).await;
    let alice = app.login(ALICE).await;
    let res = alice.upload("big.bin", sample_bytes((24 << 20) + 1)).await;
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(moto.list(&bucket, "files").is_empty());
    assert_eq!(
        moto.open_uploads(&bucket),
        0,
        "the multipart upload was aborted"
    );
    assert_eq!(app.count_rows("files").await, 0);

    // Under the limit, the same path completes: one object of the right size.
    let file = alice.upload_ok("fits.bin", sample_bytes(24 << 20)).await;
    assert_eq!(file.size, 24 << 20);
    assert_eq!(moto.list(&bucket, "files").len(), 1);
    assert_eq!(moto.open_uploads(&bucket), 0);
}

/// A TCP proxy in front of `upstream` (`host:port`) that counts the HTTP requests sent through
/// it (request lines, on every connection, kept alive or not) and keeps their heads.
async fn counting_proxy(
    upstream: String,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let (upstream, seen) = (upstream.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let (mut client_read, mut client_write) = client.split();
                let (mut server_read, mut server_write) = server.split();
                let up = async {
                    // The download server sends GETs and HEADs here: no bodies, so the bytes
                    // are heads, one after another.
                    let mut pending = Vec::new();
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match client_read.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        pending.extend_from_slice(&buf[..n]);
                        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&pending[..end]).into_owned();
                            seen.lock().unwrap().push(head);
                            pending.drain(..end + 4);
                        }
                        if server_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                };
                let down = tokio::io::copy(&mut server_read, &mut client_write);
                tokio::select! {
                    _ = up => {}
                    _ = down => {}
                }
            });
        }
    });
    (addr, heads)
}

/// One request to the store per download (issue 29): the open is a ranged GET of the file's
/// head whose headers give its size (`Content-Range`) and version (`ETag`), and whose bytes are
/// the whole of a small file. A larger file's rest is one more GET, for that version only
/// (`If-Match`). An empty object, which has no range, is a refused GET and a HEAD. A missing
/// object is one GET answered 404, and burns nothing. Counted by a proxy between the download
/// server and moto.
#[tokio::test]
async fn a_small_download_is_one_request_to_the_store() {
    let Some(moto) = moto() else { return };
    let bucket = moto.bucket();
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.file_store = moto.settings(&bucket, "one");
    let app = start(config).await;
    let alice = app.login(ALICE).await;
    let small = sample_bytes(3_000);
    alice.upload_ok("small.bin", small.clone()).await;
    let small_key = moto.list(&bucket, "one").pop().expect("the small object");
    // Past the download server's first read (8 KiB by default).
    let large = sample_bytes(100_000);
    alice.upload_ok("large.bin", large.clone()).await;
    let large_key = moto
        .list(&bucket, "one")
        .into_iter()
        .find(|k| *k != small_key)
        .expect("the large object");
    alice.upload_ok("empty.bin", Vec::new()).await;
    let empty_key = moto
        .list(&bucket, "one")
        .into_iter()
        .find(|k| *k != small_key && *k != large_key)
        .expect("the empty object");

    let upstream = moto.endpoint().trim_start_matches("http://").to_owned();
    let (proxy, heads) = counting_proxy(upstream).await;
    let mut config = burnlink_tests::services::download_config(&app, "memory");
    config.file_store = moto.settings(&bucket, "one");
    config.file_store.aws_endpoint_url = Some(format!("http://{proxy}"));
    let server = start_download_server(config).await;
    let link = |key: &str, name: &str| {
        let token = app.signing_key().mint(&app.claims(key, name)).unwrap();
        format!("{server}/d/{token}")
    };
    let requests = |heads: &std::sync::Mutex<Vec<String>>| heads.lock().unwrap().split_off(0);
    // The start-up check that the bucket is usable.
    requests(&heads);

    for _ in 0..5 {
        let res = app
            .anon
            .get(link(&small_key, "small.bin"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.bytes().await.unwrap() == small[..], "byte for byte");
        let seen = requests(&heads);
        assert_eq!(seen.len(), 1, "one request per download: {seen:#?}");
        let head = seen[0].to_ascii_lowercase();
        assert!(head.starts_with("get "), "{head}");
        assert!(head.contains("\r\nrange: bytes=0-8191"), "{head}");
    }

    let res = app
        .anon
        .get(link(&large_key, "large.bin"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.bytes().await.unwrap() == large[..], "byte for byte");
    let seen = requests(&heads);
    assert_eq!(seen.len(), 2, "the head, then the rest: {seen:#?}");
    let rest = seen[1].to_ascii_lowercase();
    assert!(rest.contains("\r\nrange: bytes=8192-99999"), "{rest}");
    assert!(
        rest.contains("\r\nif-match: "),
        "only the version opened: {rest}"
    );

    // An empty object has no first byte to GET: the GET's refusal, then a HEAD.
    let res = app
        .anon
        .get(link(&empty_key, "empty.bin"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.bytes().await.unwrap().is_empty());
    let seen = requests(&heads);
    assert_eq!(seen.len(), 2, "{seen:#?}");
    assert!(
        seen[1].to_ascii_lowercase().starts_with("head "),
        "{seen:#?}"
    );

    // A missing object: one GET, 404, and nothing burned (the same link is 404 again, not 410).
    let missing = link(&shared::random_token(24), "gone.bin");
    for _ in 0..2 {
        let res = app.anon.get(&missing).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        let seen = requests(&heads);
        assert_eq!(seen.len(), 1, "{seen:#?}");
    }
}
