//! Several download servers, one burn store: single use must hold across the fleet, fail
//! closed when the store is gone, and recover when it is back.

use std::time::Duration;

use burnlink_tests::services::{self, download_config, start_download_server};
use burnlink_tests::{ALICE, TestApp, error_code, sample_bytes, spawn, spawn_download_server};
use reqwest::{Response, StatusCode, header};

/// An app with one uploaded file; returns the app, the file's bytes and its storage key.
async fn app_with_file() -> (TestApp, Vec<u8>, String) {
    let app = spawn().await;
    let bytes = sample_bytes(10_000);
    app.login(ALICE)
        .await
        .upload_ok("x.txt", bytes.clone())
        .await;
    let key = app.only_stored_file();
    (app, bytes, key)
}

async fn get(app: &TestApp, server: &str, token: &str) -> Response {
    app.anon
        .get(format!("{server}/d/{token}"))
        .send()
        .await
        .expect("download request")
}

async fn head(app: &TestApp, server: &str, token: &str) -> StatusCode {
    app.anon
        .head(format!("{server}/d/{token}"))
        .send()
        .await
        .expect("HEAD request")
        .status()
}

async fn readyz(app: &TestApp, server: &str) -> StatusCode {
    app.anon
        .get(format!("{server}/readyz"))
        .send()
        .await
        .expect("readyz request")
        .status()
}

#[tokio::test]
async fn a_token_used_on_one_server_is_gone_on_another() {
    let Some(redis) = services::redis().await else {
        return;
    };
    let (app, bytes, key) = app_with_file().await;
    let a = spawn_download_server(&app, redis.url()).await;
    let b = spawn_download_server(&app, redis.url()).await;
    let token = app
        .signing_key()
        .mint(&app.claims(&key, "x.txt"))
        .expect("mint");

    assert_eq!(
        head(&app, &b, &token).await,
        StatusCode::OK,
        "HEAD burns nothing"
    );
    let res = get(&app, &a, &token).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.bytes().await.expect("body"), bytes);

    let replay = get(&app, &b, &token).await;
    assert_eq!(replay.status(), StatusCode::GONE);
    assert_eq!(error_code(replay).await, "token_used");
    assert_eq!(head(&app, &b, &token).await, StatusCode::GONE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uses_across_servers_have_one_winner() {
    let Some(redis) = services::redis().await else {
        return;
    };
    let (app, bytes, key) = app_with_file().await;
    let servers = [
        spawn_download_server(&app, redis.url()).await,
        spawn_download_server(&app, redis.url()).await,
    ];
    let token = app
        .signing_key()
        .mint(&app.claims(&key, "x.txt"))
        .expect("mint");

    let attempts = (0..100).map(|i| {
        let (client, url) = (app.anon.clone(), format!("{}/d/{token}", servers[i % 2]));
        async move {
            let res = client.get(url).send().await.expect("download request");
            let status = res.status();
            (status, res.bytes().await.expect("body"))
        }
    });
    let results = futures_util::future::join_all(attempts).await;

    let statuses: Vec<u16> = results.iter().map(|(s, _)| s.as_u16()).collect();
    let served: Vec<_> = results
        .iter()
        .filter(|(status, _)| *status == StatusCode::OK)
        .collect();
    let gone = statuses.iter().filter(|s| **s == 410).count();
    assert_eq!(served.len(), 1, "exactly one download wins: {statuses:?}");
    assert_eq!(served[0].1, bytes);
    assert_eq!(
        gone, 99,
        "every other attempt is refused as used: {statuses:?}"
    );
}

#[tokio::test]
async fn a_burned_id_is_kept_until_its_token_expires() {
    let Some(redis) = services::redis().await else {
        return;
    };
    let (app, _, key) = app_with_file().await;
    let config = download_config(&app, redis.url());
    let leeway = config.leeway;
    let server = start_download_server(config).await;
    let claims = app.claims(&key, "x.txt");
    let token = app.signing_key().mint(&claims).expect("mint");

    assert_eq!(get(&app, &server, &token).await.status(), StatusCode::OK);

    // The token verifies until the end of second `exp + leeway`; the key must last as long.
    let expires_at_ms = (claims.exp + leeway + 1) * 1000;
    let burned = format!("burn:{}", claims.jti);
    let mut conn = redis.connection().await;
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&burned)
        .query_async(&mut conn)
        .await
        .expect("PTTL");
    let now_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_millis(),
    )
    .expect("ms fit");
    let expected_ttl = i64::try_from(expires_at_ms).expect("ms fit") - now_ms;
    assert!(pttl > 0, "the burned key has a TTL (PTTL {pttl})");
    assert!(
        (pttl - expected_ttl).abs() <= 1000,
        "PTTL {pttl} ms, expected about {expected_ttl} ms"
    );
    // Redis 7 and later give the absolute expiry, which must be exact (`PXAT`).
    let expire_time: redis::RedisResult<i64> = redis::cmd("PEXPIRETIME")
        .arg(&burned)
        .query_async(&mut conn)
        .await;
    if let Ok(at) = expire_time {
        assert_eq!(at, i64::try_from(expires_at_ms).expect("ms fit"));
    }
}

#[tokio::test]
async fn downloads_fail_closed_while_redis_is_down_and_recover_after() {
    let Some(mut redis) = services::private_redis().await else {
        return;
    };
    let (app, bytes, key) = app_with_file().await;
    let mut config = download_config(&app, redis.url());
    config.burn_store_timeout_ms = 250; // the default: what a request waits while Redis is down
    let server = start_download_server(config).await;
    let mint = || {
        app.signing_key()
            .mint(&app.claims(&key, "x.txt"))
            .expect("mint")
    };
    let first = mint();
    assert_eq!(get(&app, &server, &first).await.status(), StatusCode::OK);
    assert_eq!(readyz(&app, &server).await, StatusCode::OK);

    redis.stop();
    let token = mint();
    let res = get(&app, &server, &token).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.headers().contains_key(header::RETRY_AFTER));
    let body = res.bytes().await.expect("body");
    assert!(
        !body.windows(64).any(|w| bytes.windows(64).any(|f| f == w)),
        "no file bytes while the burn store is down"
    );
    let res = get(&app, &server, &token).await;
    assert_eq!(error_code(res).await, "unavailable");
    assert_eq!(readyz(&app, &server).await, StatusCode::SERVICE_UNAVAILABLE);

    redis.start_again().await;
    // The connection manager finds Redis again on its next reconnection attempt, which backs
    // off to at most 1 s; until then requests fail closed (503, nothing burned). So the same
    // token is retried, boundedly, until it is served.
    let mut res = get(&app, &server, &token).await;
    for _ in 0..50 {
        if res.status() != StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        res = get(&app, &server, &token).await;
    }
    assert_eq!(res.status(), StatusCode::OK, "served once Redis is back");
    assert_eq!(res.bytes().await.expect("body"), bytes);
    assert_eq!(readyz(&app, &server).await, StatusCode::OK);
    assert_eq!(
        get(&app, &server, &token).await.status(),
        StatusCode::GONE,
        "and burned in the new Redis"
    );
}

#[tokio::test]
async fn a_restarted_memory_server_refuses_tokens_issued_before_it_started() {
    let (app, bytes, key) = app_with_file().await;
    // Issued two seconds ago, so before any server started from here on.
    let mut claims = app.claims(&key, "x.txt");
    claims.iat -= 2;
    claims.nbf -= 2;
    let token = app.signing_key().mint(&claims).expect("mint");
    let accepting = |app: &TestApp| {
        let mut config = download_config(app, "memory");
        config.accept_tokens_issued_before_start = true;
        config
    };

    // Used on a server that accepted it, which then "restarts": a new process on the same
    // data dir, with an empty memory store.
    let before = start_download_server(accepting(&app)).await;
    assert_eq!(get(&app, &before, &token).await.status(), StatusCode::OK);
    let restarted = spawn_download_server(&app, "memory").await;
    let res = get(&app, &restarted, &token).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "restart safety");
    assert_eq!(error_code(res).await, "invalid_token");

    // The opt-out shows what the default protects against: the forgotten burn is replayable.
    let opted_out = start_download_server(accepting(&app)).await;
    let res = get(&app, &opted_out, &token).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.bytes().await.expect("body"), bytes);
    assert_eq!(
        get(&app, &opted_out, &token).await.status(),
        StatusCode::GONE
    );
}
