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

/// A fresh link to the file of [`app_with_file`].
fn mint(app: &TestApp, key: &str) -> String {
    app.signing_key()
        .mint(&app.claims(key, "x.txt"))
        .expect("mint")
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
    used_on_one_server_gone_on_another(redis.url()).await;
}

#[tokio::test]
async fn a_token_used_on_one_server_is_gone_on_another_over_a_redis_cluster() {
    let Some(cluster) = services::redis_cluster().await else {
        return;
    };
    used_on_one_server_gone_on_another(cluster.url()).await;
}

async fn used_on_one_server_gone_on_another(store: &str) {
    let (app, bytes, key) = app_with_file().await;
    let a = spawn_download_server(&app, store).await;
    let b = spawn_download_server(&app, store).await;
    let token = mint(&app, &key);

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
    concurrent_uses_have_one_winner(redis.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uses_across_servers_have_one_winner_over_a_redis_cluster() {
    let Some(cluster) = services::redis_cluster().await else {
        return;
    };
    concurrent_uses_have_one_winner(cluster.url()).await;
}

async fn concurrent_uses_have_one_winner(store: &str) {
    let (app, bytes, key) = app_with_file().await;
    let servers = [
        spawn_download_server(&app, store).await,
        spawn_download_server(&app, store).await,
    ];
    let token = mint(&app, &key);

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

/// One Redis takes the burns that arrive together in one transaction (`send_batch` in
/// download-server/src/store/redis.rs): each answer must reach its own download. Used and fresh
/// tokens sent at once, interleaved, are told apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn used_and_fresh_tokens_sent_together_are_told_apart() {
    let Some(redis) = services::redis().await else {
        return;
    };
    let (app, bytes, key) = app_with_file().await;
    let server = spawn_download_server(&app, redis.url()).await;
    let used: Vec<String> = (0..24).map(|_| mint(&app, &key)).collect();
    for token in &used {
        assert_eq!(get(&app, &server, token).await.status(), StatusCode::OK);
    }
    let fresh: Vec<String> = (0..24).map(|_| mint(&app, &key)).collect();
    let tokens = used
        .iter()
        .map(|t| (false, t))
        .zip(fresh.iter().map(|t| (true, t)))
        .flat_map(|(u, f)| [u, f]);

    let attempts = tokens.map(|(is_fresh, token)| {
        let (app, server) = (&app, &server);
        async move {
            let res = get(app, server, token).await;
            let status = res.status();
            let body = res.bytes().await.expect("body");
            (is_fresh, status, body)
        }
    });
    for (is_fresh, status, body) in futures_util::future::join_all(attempts).await {
        if is_fresh {
            assert_eq!(status, StatusCode::OK, "a fresh token is served");
            assert_eq!(body, bytes);
        } else {
            assert_eq!(status, StatusCode::GONE, "a used token is refused");
        }
    }
}

#[tokio::test]
async fn a_burned_id_is_kept_until_its_token_expires() {
    let Some(redis) = services::redis().await else {
        return;
    };
    let (app, _, key) = app_with_file().await;
    let mut config = download_config(&app, redis.url());
    config.resume_window_secs = 0; // a resume grant keeps the record longer: see resume.rs
    let (leeway, skew) = (config.leeway, config.clock_skew_secs);
    let server = start_download_server(config).await;
    let claims = app.claims(&key, "x.txt");
    let token = app.signing_key().mint(&claims).expect("mint");

    assert_eq!(get(&app, &server, &token).await.status(), StatusCode::OK);

    // The token verifies until the end of second `exp + leeway`; the key must last that long
    // plus the clock skew allowed to servers that run behind.
    let expires_at_ms = (claims.exp + leeway + skew + 1) * 1000;
    let mut conn = redis.connection().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("burnlink:*:burn:{}", claims.jti))
        .query_async(&mut conn)
        .await
        .expect("KEYS");
    assert_eq!(keys.len(), 1, "one burn record: {keys:?}");
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .expect("PTTL");
    let now_ms = i64::try_from(shared::unix_now_ms()).expect("ms fit");
    let expected_ttl = i64::try_from(expires_at_ms).expect("ms fit") - now_ms;
    assert!(pttl > 0, "the burned key has a TTL (PTTL {pttl})");
    assert!(
        (pttl - expected_ttl).abs() <= 1000,
        "PTTL {pttl} ms, expected about {expected_ttl} ms"
    );
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
    let first = mint(&app, &key);
    assert_eq!(get(&app, &server, &first).await.status(), StatusCode::OK);
    assert_eq!(readyz(&app, &server).await, StatusCode::OK);

    redis.stop();
    let token = mint(&app, &key);
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
    // off to at most 1 s, and the restarted Redis is empty: the server refuses every token
    // issued before it noticed, and says it is not ready until those seconds are over.
    wait_until_ready(&app, &server).await;
    assert_eq!(
        get(&app, &server, &first).await.status(),
        StatusCode::UNAUTHORIZED,
        "a token used before the restart is not served again"
    );
    assert_eq!(
        get(&app, &server, &token).await.status(),
        StatusCode::UNAUTHORIZED,
        "nor one minted before it: it may have been used"
    );
    let fresh = mint(&app, &key);
    served_once(
        &app,
        &server,
        &fresh,
        &bytes,
        "a fresh link, burned in the new Redis",
    )
    .await;
}

/// Polls `/readyz` until it answers 200 (bounded: 15 s).
pub async fn wait_until_ready(app: &TestApp, server: &str) {
    for _ in 0..150 {
        if readyz(app, server).await == StatusCode::OK {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{server} did not become ready");
}

/// `token` gets the file (`bytes`) from `server` once, and 410 after.
async fn served_once(app: &TestApp, server: &str, token: &str, bytes: &[u8], case: &str) {
    let res = get(app, server, token).await;
    assert_eq!(res.status(), StatusCode::OK, "{case}");
    assert_eq!(res.bytes().await.expect("body"), bytes, "{case}");
    let replay = get(app, server, token).await.status();
    assert_eq!(replay, StatusCode::GONE, "{case}: and only once");
}

/// `token` gets 401 `invalid_token` from `server`.
async fn refused(app: &TestApp, server: &str, token: &str, case: &str) {
    let res = get(app, server, token).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{case}");
    assert_eq!(error_code(res).await, "invalid_token", "{case}");
}

#[tokio::test]
async fn a_restarted_memory_server_refuses_tokens_issued_before_it_started() {
    let (app, bytes, key) = app_with_file().await;
    // Issued two seconds ago, so before any server started from here on.
    let mut claims = app.claims(&key, "x.txt");
    claims.iat -= 2;
    claims.nbf -= 2;
    let token = app.signing_key().mint(&claims).expect("mint");
    // Inside the leeway: the server accepts it as issued now.
    let ahead = app.mint_ahead(&key, "x.txt", 4);
    let with_leeway = |app: &TestApp| {
        let mut config = download_config(app, "memory");
        config.leeway = 5;
        config
    };
    let accepting = |app: &TestApp| {
        let mut config = with_leeway(app);
        config.accept_tokens_issued_before_start = true;
        config
    };

    // Used on a server that accepted them, which then "restarts": a new process on the same
    // data dir, with an empty memory store.
    let before = start_download_server(accepting(&app)).await;
    assert_eq!(get(&app, &before, &token).await.status(), StatusCode::OK);
    assert_eq!(get(&app, &before, &ahead).await.status(), StatusCode::OK);
    let restarted = start_download_server(with_leeway(&app)).await;
    for (token, what) in [(&token, "issued before"), (&ahead, "dated ahead")] {
        refused(&app, &restarted, token, &format!("restart safety: {what}")).await;
    }
    // It served only once that leeway was over: a link minted now works.
    let fresh = mint(&app, &key);
    assert_eq!(get(&app, &restarted, &fresh).await.status(), StatusCode::OK);

    // The opt-out shows what the default protects against: the forgotten burn is replayable.
    let opted_out = start_download_server(accepting(&app)).await;
    served_once(&app, &opted_out, &token, &bytes, "the opt-out replays").await;
}

/// A used token sent again and again across the instant its record expired in the old scheme
/// (the end of second `exp + leeway`), from connections opened beforehand so that requests land
/// within a few milliseconds of it: none of them may be served.
async fn hammer_across_expiry(store: &str) {
    let (app, bytes, key) = app_with_file().await;
    let mut config = download_config(&app, store);
    config.leeway = 1;
    let leeway = config.leeway;
    let server = start_download_server(config).await;
    // A loaded machine can wake the sleep below after the edge: then the hammer would not span
    // it, so that attempt is dropped before sending and another token tried.
    let (url, edge_ms) = 'attempt: {
        for _ in 0..5 {
            let mut claims = app.claims(&key, "x.txt");
            claims.exp = claims.iat + 1;
            let token = app.signing_key().mint(&claims).expect("mint");
            let url = format!("{server}/d/{token}");

            let res = get(&app, &server, &token).await;
            assert_eq!(res.status(), StatusCode::OK);
            assert_eq!(res.bytes().await.expect("body"), bytes);
            // Replays open the connections the hammer reuses.
            let warm = (0..32).map(|_| app.anon.get(&url).send());
            for res in futures_util::future::join_all(warm).await {
                assert_eq!(res.expect("replay").status(), StatusCode::GONE);
            }

            // The last instant the verifier accepts the token, in Unix milliseconds.
            let edge_ms = (claims.exp + leeway + 1) * 1000;
            let start_ms = edge_ms - 8;
            tokio::time::sleep(Duration::from_millis(
                start_ms.saturating_sub(shared::unix_now_ms()),
            ))
            .await;
            if shared::unix_now_ms() < edge_ms - 2 {
                break 'attempt (url, edge_ms);
            }
        }
        panic!("five attempts woke after their token's expiry instant: the machine is too loaded");
    };
    let mut sent = Vec::new();
    let mut waves = Vec::new();
    for _ in 0..12 {
        sent.push(shared::unix_now_ms());
        for _ in 0..25 {
            let request = app.anon.get(&url).send();
            waves.push(tokio::spawn(async move {
                let res = request.await.expect("hammer request");
                let status = res.status();
                let body = res.bytes().await.expect("body");
                (status, body.len())
            }));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut statuses = Vec::new();
    for wave in waves {
        statuses.push(wave.await.expect("hammer task"));
    }
    assert!(
        sent.first().is_some_and(|t| *t < edge_ms) && sent.last().is_some_and(|t| *t >= edge_ms),
        "the hammer spans the expiry instant {edge_ms}: sent at {sent:?}"
    );
    let served: Vec<_> = statuses
        .iter()
        .filter(|(s, _)| *s == StatusCode::OK)
        .collect();
    assert!(
        served.is_empty(),
        "a used token was served again at its expiry instant: {served:?} of {}",
        statuses.len()
    );
    assert!(
        statuses
            .iter()
            .all(|(s, _)| *s == StatusCode::GONE || *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_used_token_hammered_across_its_expiry_instant_is_never_served_again_redis() {
    let Some(redis) = services::redis().await else {
        return;
    };
    hammer_across_expiry(redis.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_used_token_hammered_across_its_expiry_instant_is_never_served_again_memory() {
    hammer_across_expiry("memory").await;
}

#[tokio::test]
async fn a_redis_that_lost_its_data_is_noticed_at_the_next_burn() {
    let Some(redis) = services::private_redis().await else {
        return;
    };
    let (app, bytes, key) = app_with_file().await;
    let mut config = download_config(&app, redis.url());
    config.leeway = 5;
    let server = start_download_server(config).await;
    let used = mint(&app, &key);
    assert_eq!(get(&app, &server, &used).await.status(), StatusCode::OK);
    let ahead = app.mint_ahead(&key, "x.txt", 3);
    assert_eq!(get(&app, &server, &ahead).await.status(), StatusCode::OK);

    // As a failover to a replica that had not caught up, or an operator's mistake: every
    // record gone at once, with no reconnection to notice it by.
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut redis.connection().await)
        .await
        .expect("FLUSHALL");
    for (token, what) in [(&used, "used"), (&ahead, "dated ahead")] {
        let case = format!("the replay right after the loss is refused: {what}");
        refused(&app, &server, token, &case).await;
    }

    wait_until_ready(&app, &server).await;
    let fresh = mint(&app, &key);
    served_once(&app, &server, &fresh, &bytes, "fresh links work").await;
    assert_eq!(
        get(&app, &server, &used).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

/// A batch's burn reads its bucket's epoch in the transaction that writes its id. When that
/// epoch is not the one the server knew (another server made it after a loss the server has
/// not noticed yet), the `SET` has already run under it: a token issued at or after the new
/// epoch's boundary is decided by that `SET`, once. (Learning the epoch and burning again
/// would find the id just written, and refuse a link never used: 410.) Each round, every
/// bucket gets a new epoch whose boundary has passed, and a fresh link is burned at once,
/// before the server's check of every second can learn it.
#[tokio::test]
async fn a_burn_that_meets_an_epoch_another_server_made_is_decided_by_it_once() {
    let Some(redis) = services::private_redis().await else {
        return;
    };
    let (app, bytes, key) = app_with_file().await;
    let server = spawn_download_server(&app, redis.url()).await;
    let used = mint(&app, &key);
    assert_eq!(get(&app, &server, &used).await.status(), StatusCode::OK);
    let mut conn = redis.connection().await;
    for round in 0..3 {
        let epoch = format!("{}-made-by-another-{round}", shared::unix_now() - 1);
        let mut mset = redis::cmd("MSET");
        for bucket in 0..64 {
            mset.arg(format!("burnlink:{{e{bucket:02}}}:epoch"))
                .arg(&epoch);
        }
        let _: () = mset.query_async(&mut conn).await.expect("MSET");
        let fresh = mint(&app, &key);
        served_once(&app, &server, &fresh, &bytes, &format!("round {round}")).await;
    }
    // The link burned before the first new epoch stays burned: 410 from its record, or 401
    // when a round began a second after it was issued.
    let replay = get(&app, &server, &used).await.status();
    assert!(
        [StatusCode::GONE, StatusCode::UNAUTHORIZED].contains(&replay),
        "{replay}"
    );
}

#[tokio::test]
async fn a_burn_is_served_only_once_the_replicas_asked_for_have_it() {
    let Some(redis) = services::private_redis().await else {
        return;
    };
    let (app, bytes, key) = app_with_file().await;
    let mut config = download_config(&app, redis.url());
    config.burn_store_replicas = 1; // and the private Redis has none
    config.burn_store_timeout_ms = 200;
    let server = start_download_server(config).await;
    let token = mint(&app, &key);

    let res = get(&app, &server, &token).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = res.bytes().await.expect("body");
    assert!(
        !body.windows(64).any(|w| bytes.windows(64).any(|f| f == w)),
        "no file bytes without the replica's acknowledgement"
    );
}

/// Waits (bounded) until the audit file holds `n` lines. The outcome sink gets each record
/// before its line is written, so by then the outcomes are queued.
async fn audited(audit: &std::path::Path, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let lines = std::fs::read_to_string(audit).unwrap_or_default();
        if lines.lines().count() >= n {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "audit line {n}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One round trip to Redis per burned download (issue 29): the outcome of a download rides to
/// the stream inside the next download's burn transaction, never as an `XADD` of its own.
/// MONITOR on a private Redis sees every command the download server sends (those a
/// transaction runs as `EXEC` runs them). The outcome linger is long, so that each outcome
/// (queued before its audit line is written, which the test waits for) is carried by the next
/// burn whatever the machine's load.
#[tokio::test]
async fn a_download_is_one_transaction_carrying_the_outcome_of_the_one_before() {
    use futures_util::StreamExt;
    let Some(redis) = services::private_redis().await else {
        return;
    };
    let (app, bytes, key) = app_with_file().await;
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let mut config = download_config(&app, redis.url());
    config.audit_log = Some(audit.display().to_string());
    config.outcomes_linger_ms = 60_000;
    let server = start_download_server(config).await;
    // Scripts loaded, connection made: what follows is the steady state.
    let warm = get(&app, &server, &mint(&app, &key)).await;
    assert_eq!(warm.status(), StatusCode::OK);
    assert_eq!(warm.bytes().await.unwrap(), bytes);
    audited(&audit, 1).await;

    let client = redis::Client::open(redis.url()).unwrap();
    let monitor = client.get_async_monitor().await.expect("MONITOR");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let into = seen.clone();
    tokio::spawn(async move {
        let mut lines = monitor.into_on_message::<String>();
        while let Some(line) = lines.next().await {
            into.lock().unwrap().push(line);
        }
    });
    const N: usize = 8;
    for i in 0..N {
        let res = get(&app, &server, &mint(&app, &key)).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.bytes().await.unwrap(), bytes);
        audited(&audit, i + 2).await;
    }
    // Every command before the marker has reached MONITOR once the marker has.
    let mut conn = redis.connection().await;
    let _: String = redis::cmd("ECHO")
        .arg("end-of-test")
        .query_async(&mut conn)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !seen
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("end-of-test"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "MONITOR sees the marker"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seen = seen.lock().unwrap().clone();
    // The server's own commands (`"CMD" "arg" ...`), without the epoch checks of every second
    // (a script each, and the commands it runs, `[0 lua]`).
    let sent: Vec<String> = seen
        .iter()
        .filter(|l| !l.contains(" lua]") && !l.contains("end-of-test"))
        .filter_map(|l| {
            l.split_once("] ")
                .map(|(_, command)| command.to_lowercase())
        })
        .filter(|c| !c.starts_with("\"evalsha\""))
        .collect();
    // Each download: one transaction, sent whole (one round trip), of the epochs' `MGET`, the
    // burn and the outcome before it.
    let transactions: Vec<&[String]> = sent.chunks(5).collect();
    assert_eq!(
        transactions.len(),
        N,
        "one transaction per download: {sent:#?}"
    );
    for t in transactions {
        let names: Vec<&str> = t.iter().filter_map(|c| c.split('"').nth(1)).collect();
        assert_eq!(names, ["multi", "mget", "set", "xadd", "exec"], "{t:#?}");
        assert_eq!(t[2].matches(":burn:").count(), 1, "one burn: {t:#?}");
        // The download before this one's outcome, appended by the same transaction.
        assert!(t[3].starts_with("\"xadd\" \"burnlink:outcomes\""), "{t:#?}");
    }
    let len: usize = redis::cmd("XLEN")
        .arg("burnlink:outcomes")
        .query_async(&mut conn)
        .await
        .unwrap();
    // The warm-up's and N - 1 more; the last waits for a burn to carry it.
    assert_eq!(len, N);
}

/// What Redis does per download, counted on a private Redis with every command in its slow log
/// (`slowlog-log-slower-than 0`: each command with its own microseconds), for the outcome
/// stream written by its own writer (`--outcomes-redis <the same url>`, as before issue 29)
/// and carried by the burns (`auto`). Prints the figures of docs/BENCHMARKS.md
/// (`--nocapture`); fails if a burned download costs more than one round trip (one
/// transaction) with `auto`.
#[tokio::test]
async fn redis_commands_per_download_with_and_without_outcomes_in_the_burn() {
    let Some(redis) = services::private_redis().await else {
        return;
    };
    let (app, bytes, key) = app_with_file().await;
    let mut conn = redis.connection().await;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-log-slower-than")
        .arg(0)
        .arg("slowlog-max-len")
        .arg(100_000)
        .query_async(&mut conn)
        .await
        .unwrap();
    const N: usize = 200;
    let mut rows = Vec::new();
    for own_writer in [true, false] {
        let mut config = download_config(&app, redis.url());
        if own_writer {
            config.outcomes_redis = redis.url().into();
        }
        config.outcomes_linger_ms = 60_000;
        let server = start_download_server(config).await;
        // Scripts loaded and connections made before counting.
        let start: usize = redis::cmd("XLEN")
            .arg("burnlink:outcomes")
            .query_async(&mut conn)
            .await
            .unwrap();
        let warm = get(&app, &server, &mint(&app, &key)).await;
        assert_eq!(warm.status(), StatusCode::OK);
        // The warm-up's outcome is written (own writer) before the log is cleared; with
        // `auto` the first burn counted carries it.
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let len: usize = redis::cmd("XLEN")
                .arg("burnlink:outcomes")
                .query_async(&mut conn)
                .await
                .unwrap();
            if !own_writer || len > start {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the warm-up's outcome"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _: () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query_async(&mut conn)
            .await
            .unwrap();
        let _: () = redis::cmd("SLOWLOG")
            .arg("RESET")
            .query_async(&mut conn)
            .await
            .unwrap();
        for _ in 0..N {
            let res = get(&app, &server, &mint(&app, &key)).await;
            assert_eq!(res.status(), StatusCode::OK);
            assert_eq!(res.bytes().await.unwrap(), bytes);
        }
        // N outcomes more: with `auto`, the warm-up's and all but the last (which waits for a
        // burn to carry it).
        let want = start + 1 + N - usize::from(!own_writer);
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let len: usize = redis::cmd("XLEN")
                .arg("burnlink:outcomes")
                .query_async(&mut conn)
                .await
                .unwrap();
            if len >= want {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{len} of {want} outcomes"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let stats: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut conn)
            .await
            .unwrap();
        // `INFO commandstats` as well (the epoch checks of every second are `evalsha` too).
        for line in stats.lines().filter(|l| {
            ["cmdstat_evalsha:", "cmdstat_xadd:", "cmdstat_set:"]
                .iter()
                .any(|c| l.starts_with(c))
        }) {
            println!("{}: {line}", if own_writer { "own writer" } else { "auto" });
        }
        let log: Vec<redis::Value> = redis::cmd("SLOWLOG")
            .arg("GET")
            .arg(-1)
            .query_async(&mut conn)
            .await
            .unwrap();
        // The server's own commands, each (count, microseconds), oldest first. Every client
        // here shares one socket, so an `XADD` is told to be in a burn's transaction by its
        // place: right after the burn's `SET`, which a transaction's commands are (`EXEC` runs
        // them one after another, and is not logged itself).
        let (mut multis, mut mgets, mut burns) = ((0usize, 0i64), (0usize, 0i64), (0usize, 0i64));
        let (mut inner, mut own) = ((0usize, 0i64), (0usize, 0i64));
        let mut after_burn = false;
        let mut other = Vec::new();
        for entry in log.iter().rev() {
            let redis::Value::Array(fields) = entry else {
                panic!("{entry:?}")
            };
            let (Some(redis::Value::Int(us)), Some(redis::Value::Array(args))) =
                (fields.get(2), fields.get(3))
            else {
                panic!("{entry:?}")
            };
            // Redis 7 logs the commands a script runs too, from client `?:0` (here only the
            // epoch checks' scripts).
            let scripted =
                matches!(fields.get(4), Some(redis::Value::BulkString(c)) if c.starts_with(b"?"));
            let args: Vec<String> = args
                .iter()
                .map(|a| match a {
                    redis::Value::BulkString(b) => {
                        String::from_utf8_lossy(b).trim_matches('"').to_lowercase()
                    }
                    other => format!("{other:?}"),
                })
                .collect();
            let text = args.join(" ");
            let add = |(n, t): &mut (usize, i64)| (*n, *t) = (*n + 1, *t + us);
            let burn = args[0] == "set" && text.contains(":burn:");
            match &*args[0] {
                _ if scripted => continue,
                "evalsha" if text.contains(":epoch") && !text.contains(":burn:") => continue,
                "xlen" | "slowlog" | "info" => continue,
                "multi" => add(&mut multis),
                "mget" => add(&mut mgets),
                _ if burn => add(&mut burns),
                // The stream's own writer sends its `XADD` once the download is over, which
                // may also be right after the burn: in its mode every `XADD` is its own.
                "xadd" if after_burn && !own_writer => add(&mut inner),
                "xadd" => add(&mut own),
                _ => other.push(text),
            }
            after_burn = burn;
        }
        assert_eq!(multis.0, N, "one transaction per download");
        assert_eq!(burns.0, N, "one burn per download");
        assert!(other.is_empty(), "{other:#?}");
        let per = |n: usize| n as f64 / N as f64;
        let all = [multis, mgets, burns, inner, own];
        rows.push(format!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} µs | {:.1} µs |",
            if own_writer {
                "own writer (before)"
            } else {
                "auto: in the burn"
            },
            per(multis.0 + own.0),
            per(all.iter().map(|(n, _)| n).sum()),
            per(inner.0),
            per(own.0),
            (multis.1 + mgets.1 + burns.1 + inner.1) as f64 / N as f64,
            all.iter().map(|(_, t)| t).sum::<i64>() as f64 / N as f64,
        ));
        if !own_writer {
            assert_eq!(own.0, 0, "no XADD of its own");
            assert_eq!(inner.0, N, "each transaction appends the outcome before it");
        }
    }
    println!(
        "{N} downloads, one after another (`EXEC` is not in the slow log)\n\
         | outcomes | round trips per download | commands per download | XADDs in a transaction | XADDs of their own | µs per transaction | Redis µs per download |\n\
         |---|---|---|---|---|---|---|\n{}",
        rows.join("\n")
    );
}

/// An outcome the stream refuses (here the key holds a string, not a stream) never changes the
/// answer of the burns in the same transaction: the downloads it rides with are served, and a
/// burned token stays burned. (Without `ignore_errors` on the transaction, its error would be
/// the whole batch's, and every burn of it would fail: 503.)
#[tokio::test]
async fn an_outcome_the_stream_refuses_leaves_the_burns_beside_it_alone() {
    let Some(redis) = services::private_redis().await else {
        return;
    };
    let (app, bytes, key) = app_with_file().await;
    let mut conn = redis.connection().await;
    let _: () = redis::cmd("SET")
        .arg("burnlink:outcomes")
        .arg("not a stream")
        .query_async(&mut conn)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let mut config = download_config(&app, redis.url());
    config.audit_log = Some(audit.display().to_string());
    config.outcomes_linger_ms = 60_000;
    let server = start_download_server(config).await;
    let mut lines = 0;
    for _ in 0..3 {
        let token = mint(&app, &key);
        let res = get(&app, &server, &token).await;
        // From the second on, the burn's script also appends the one before's outcome.
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.bytes().await.unwrap(), bytes);
        let res = get(&app, &server, &token).await;
        assert_eq!(res.status(), StatusCode::GONE, "burned");
        lines += 2;
        // Both outcomes are queued (before their audit lines) before the next burn.
        audited(&audit, lines).await;
    }
    let kept: String = redis::cmd("GET")
        .arg("burnlink:outcomes")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(kept, "not a stream");
}
