//! Webhooks as a partner app meets them: a real receiver (tests/webhooks/receiver.py, on
//! loopback) verifies every delivery with the `standardwebhooks` package from PyPI and records
//! what it got; docs/WEBHOOKS.md's Python and Node receivers are run as written. Nothing here
//! sends traffic off loopback: the address refusals are made on loopback addresses, and the
//! classifier's other ranges are unit-tested on parsed addresses (`app-server` `ssrf.rs`).
//! Waiting is polling the receiver or the API with a deadline, never a sleep.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use burnlink_tests::postgres::database;
use burnlink_tests::services::{skip, tool_installed};
use burnlink_tests::{
    ALICE, BOB, TestApp, User, error_code, sample_bytes, spawn_with, start, test_config,
};
use reqwest::StatusCode;
use reqwest::header::{COOKIE, RANGE};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Where `.ci/install-deps` puts the Python (`python/`) and Node (`node_modules/`) libraries.
fn webhooks_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("webhooks")
}

/// Receivers on loopback over plain http, retries 100 ms apart, a look every 100 ms.
pub(crate) fn loopback(config: &mut app_server::Config) {
    config.webhooks_allow_private = true;
    config.webhooks_allow_http = true;
    config.webhooks_retry_schedule = vec![ms(0), ms(100), ms(100), ms(100)];
    config.webhooks_poll = ms(100);
}

/// Polls `check` until it gives something, for at most 60 s (a loaded machine is slow, a
/// broken feature never answers).
pub(crate) async fn until<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(ms(50)).await;
    }
}

/// One request the receiver got.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Delivery {
    /// `webhook-id`.
    pub(crate) id: String,
    #[serde(rename = "type")]
    pub(crate) kind: Option<String>,
    pub(crate) data: Value,
    /// Whether `standardwebhooks` verified it with each configured secret, in order.
    pub(crate) verified: Vec<bool>,
    /// Signatures in `webhook-signature`.
    signatures: usize,
    /// Another delivery of the same id was in flight when this one arrived.
    overlap: bool,
    /// What the receiver answered (`None` while it holds the request).
    status: Option<Value>,
}

impl Delivery {
    fn answered_2xx(&self) -> bool {
        self.status
            .as_ref()
            .and_then(Value::as_u64)
            .is_some_and(|s| (200..300).contains(&s))
    }
}

/// The test receiver, killed on drop.
pub(crate) struct Receiver {
    _child: tokio::process::Child,
    base: String,
    client: reqwest::Client,
}

impl Receiver {
    /// Starts tests/webhooks/receiver.py, or skips when `standardwebhooks` is not installed.
    pub(crate) async fn start() -> Option<Receiver> {
        if !tool_installed("standardwebhooks") {
            skip("standardwebhooks not installed in tests/webhooks/python (.ci/install-deps)");
            return None;
        }
        let dir = webhooks_dir();
        let mut child = tokio::process::Command::new("python3")
            .arg(dir.join("receiver.py"))
            .env("PYTHONPATH", dir.join("python"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs the receiver");
        let stdout = child.stdout.take().expect("stdout");
        let line = BufReader::new(stdout)
            .lines()
            .next_line()
            .await
            .expect("the receiver's first line")
            .expect("the receiver prints its port");
        let port = line.strip_prefix("PORT ").expect("PORT <n>");
        Some(Receiver {
            _child: child,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
        })
    }

    fn hook_url(&self) -> String {
        format!("{}/hook", self.base)
    }

    /// The secrets to verify with and how to answer the next deliveries (then 200).
    async fn configure(&self, secrets: &[&str], script: Value, delay_ms: u64) {
        let res = self
            .client
            .post(format!("{}/_control/config", self.base))
            .json(&json!({"secrets": secrets, "script": script, "delay_ms": delay_ms}))
            .send()
            .await
            .expect("configure the receiver");
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
    }

    async fn deliveries(&self) -> Vec<Delivery> {
        let log: Value = self
            .client
            .get(format!("{}/_control/log", self.base))
            .send()
            .await
            .expect("the receiver's log")
            .json()
            .await
            .expect("JSON");
        serde_json::from_value(log["deliveries"].clone()).expect("deliveries")
    }

    /// The deliveries once `done` says they are complete.
    pub(crate) async fn wait_for(
        &self,
        what: &str,
        done: impl Fn(&[Delivery]) -> bool,
    ) -> Vec<Delivery> {
        until(what, async || {
            let got = self.deliveries().await;
            done(&got).then_some(got)
        })
        .await
    }

    /// Waits for the delivery of `id` answered 2xx.
    async fn delivered(&self, id: &str) -> Vec<Delivery> {
        self.wait_for(&format!("{id} delivered"), |got| {
            got.iter().any(|d| d.id == id && d.answered_2xx())
        })
        .await
    }

    async fn release(&self) {
        let res = self
            .client
            .post(format!("{}/_control/release", self.base))
            .send()
            .await
            .expect("release");
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
    }
}

/// `POST /api/webhooks` as `user`; its answer (201 expected).
async fn add_webhook(user: &User, url: &str, events: &[&str]) -> Value {
    let res = post(user, "/api/webhooks", json!({"url": url, "events": events})).await;
    assert_eq!(res.status(), StatusCode::CREATED, "add {url}");
    res.json().await.expect("webhook JSON")
}

async fn post(user: &User, path: &str, body: Value) -> reqwest::Response {
    user.client
        .post(format!("{}{path}", user.app_url))
        .header("X-CSRF-Token", &user.csrf)
        .json(&body)
        .send()
        .await
        .expect("POST")
}

/// Queues a test event for webhook `id`; its `webhook-id`.
async fn send_test(user: &User, id: &str) -> String {
    let res = post(user, &format!("/api/webhooks/{id}/test"), json!({})).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let body: Value = res.json().await.expect("JSON");
    body["event_id"].as_str().expect("event_id").to_owned()
}

async fn detail(user: &User, id: &str) -> Value {
    user.get_json(format!("{}/api/webhooks/{id}", user.app_url))
        .await
}

fn str_of<'a>(value: &'a Value, name: &str) -> &'a str {
    value[name]
        .as_str()
        .unwrap_or_else(|| panic!("{name} in {value}"))
}

/// An app on loopback settings with alice's webhook at the receiver, subscribed to
/// `events`, the receiver holding its secret. Returns the app, alice and the webhook's id.
pub(crate) async fn app_with_webhook(
    receiver: &Receiver,
    events: &[&str],
    adjust: impl FnOnce(&mut app_server::Config),
) -> (TestApp, User, String) {
    let app = spawn_with(|config| {
        loopback(config);
        adjust(config);
    })
    .await;
    let alice = app.login(ALICE).await;
    let webhook = add_webhook(&alice, &receiver.hook_url(), events).await;
    receiver
        .configure(&[str_of(&webhook, "secret")], json!([]), 0)
        .await;
    let id = str_of(&webhook, "id").to_owned();
    (app, alice, id)
}

#[tokio::test]
async fn a_completed_download_gives_exactly_one_verified_event() {
    let Some(receiver) = Receiver::start().await else {
        return;
    };
    let events = ["download.completed", "download.partial"];
    let (app, alice, webhook) = app_with_webhook(&receiver, &events, |_| {}).await;
    let file = alice.upload_ok("report.pdf", sample_bytes(5_000)).await;
    let url = alice.link_url(&file.id).await;
    let res = app.anon.get(&url).send().await.expect("download");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.bytes().await.expect("body").len(), 5_000);

    let got = receiver
        .wait_for("the download's event", |got| !got.is_empty())
        .await;
    let event = &got[0];
    assert_eq!(event.kind.as_deref(), Some("download.completed"));
    assert_eq!(event.verified, [true], "standardwebhooks verifies it");
    assert!(event.id.starts_with("msg_"), "{}", event.id);
    assert_eq!(event.data["event_id"], event.id.as_str());
    assert_eq!(event.data["file_id"], file.id.as_str());
    assert_eq!(event.data["file_name"], "report.pdf");
    assert_eq!(event.data["outcome"], "ok");
    assert_eq!(event.data["bytes"], 5_000);
    assert_eq!(event.data["share_id"], Value::Null);
    let jti = event.data["link_id"].as_str().expect("link_id");
    assert!(url.contains("/d/") && !jti.is_empty());

    // The replay is refused, and a refusal makes no event: once it is stored, a test event
    // goes out and arrives, and nothing else did.
    let replay = app.anon.get(&url).send().await.expect("replay");
    assert_eq!(replay.status(), StatusCode::GONE);
    until("the refusal stored", async || {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM download_events WHERE jti = $1 AND outcome = 'used'",
        )
        .bind(jti)
        .fetch_one(&app.db)
        .await
        .expect("count");
        (n == 1).then_some(())
    })
    .await;
    let test = send_test(&alice, &webhook).await;
    let got = receiver.delivered(&test).await;
    let kinds: Vec<_> = got
        .iter()
        .map(|d| d.kind.clone().unwrap_or_default())
        .collect();
    assert_eq!(kinds, ["download.completed", "webhook.test"]);

    // Both recorded (the receiver may answer before the app writes down its answer).
    let detail = until("both attempts recorded", async || {
        let d = detail(&alice, &webhook).await;
        (d["attempts"].as_array()?.len() == 2 && d["pending"] == 0).then_some(d)
    })
    .await;
    assert_eq!(detail["status"], "active");
    let log = detail["attempts"].as_array().expect("attempts");
    assert!(log.iter().all(|a| a["ok"] == true && a["status"] == 200));
}

/// `GET url` over a socket with a 16 KiB receive buffer: reads the head and at least `want`
/// body bytes, then hangs up, as a broken download does (a large receive buffer could take
/// the whole file in before the client "breaks"). The body bytes read and the resume cookie.
async fn broken_get(url: &str, want: usize) -> (usize, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (host, path) = rest.split_at(rest.find('/').expect("a path"));
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(16 * 1024).expect("SO_RCVBUF");
    let mut stream = socket
        .connect(host.parse().expect("host:port"))
        .await
        .expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("request");
    let mut received = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let head_end = loop {
        let n = stream.read(&mut buf).await.expect("read");
        assert!(n > 0, "the server hung up first");
        received.extend_from_slice(&buf[..n]);
        if let Some(at) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&received[..head_end]).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let cookie = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("set-cookie")
                .then(|| value.trim().split(';').next().unwrap_or("").to_owned())
        })
        .expect("a resume cookie");
    let mut body = received.len() - head_end;
    while body < want {
        let n = stream.read(&mut buf).await.expect("read");
        assert!(n > 0, "the server hung up first");
        body += n;
    }
    (body, cookie)
}

#[tokio::test]
async fn a_broken_download_is_partial_and_its_resumed_end_completes_it_once() {
    let Some(receiver) = Receiver::start().await else {
        return;
    };
    let events = ["download.completed", "download.partial"];
    let (app, alice, webhook) = app_with_webhook(&receiver, &events, |_| {}).await;
    // Larger than the download server's send buffer can hold (4 MiB at most here), read
    // through a small receive buffer: the transfer really breaks off.
    const SIZE: usize = 8 << 20;
    let bytes = sample_bytes(SIZE);
    let file = alice.upload_ok("big.bin", bytes.clone()).await;
    let url = alice.link_url(&file.id).await;
    let (got, cookie) = broken_get(&url, 100_000).await;
    let resume = async || {
        app.anon
            .get(&url)
            .header(RANGE, format!("bytes={got}-"))
            .header(COOKIE, &cookie)
            .send()
            .await
            .expect("resume")
    };
    let rest = resume().await;
    assert_eq!(rest.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(rest.bytes().await.expect("rest").len(), SIZE - got);
    // Resumed again (the window allows it): the link has completed already.
    let again = resume().await;
    assert_eq!(again.status(), StatusCode::PARTIAL_CONTENT);
    drop(again.bytes().await);

    let got_events = receiver
        .wait_for("partial and completed", |got| got.len() >= 2)
        .await;
    let of = |kind: &str| {
        got_events
            .iter()
            .find(|d| d.kind.as_deref() == Some(kind))
            .unwrap_or_else(|| panic!("{kind} in {got_events:?}"))
            .clone()
    };
    let (partial, completed) = (of("download.partial"), of("download.completed"));
    assert_eq!(partial.data["outcome"], "partial");
    assert!(partial.data["bytes"].as_u64().expect("bytes") < SIZE as u64);
    assert_eq!(completed.data["outcome"], "resumed");
    assert_eq!(completed.data["link_id"], partial.data["link_id"]);
    assert!(partial.verified == [true] && completed.verified == [true]);

    // Both resumes are stored before the test event goes; only the test event follows.
    until("both resumes stored", async || {
        let (n,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM download_events WHERE outcome = 'resumed'")
                .fetch_one(&app.db)
                .await
                .expect("count");
        (n == 2).then_some(())
    })
    .await;
    let test = send_test(&alice, &webhook).await;
    let all = receiver.delivered(&test).await;
    assert_eq!(all.len(), 3, "{all:?}");
}

#[tokio::test]
async fn a_receiver_failing_twice_gets_the_same_id_three_times_and_nothing_after() {
    let Some(receiver) = Receiver::start().await else {
        return;
    };
    let (_app, alice, webhook) = app_with_webhook(&receiver, &["share.expired"], |_| {}).await;
    receiver.configure(&[], json!([500, 500]), 0).await;
    let id = send_test(&alice, &webhook).await;
    let got = receiver.delivered(&id).await;
    let statuses: Vec<_> = got.iter().map(|d| d.status.clone()).collect();
    assert_eq!(
        statuses,
        [Some(json!(500)), Some(json!(500)), Some(json!(200))]
    );
    assert!(
        got.iter().all(|d| d.id == id),
        "one webhook-id on every attempt"
    );

    // Delivered: nothing is pending, so nothing more can be sent for it.
    let detail = until("the delivery recorded", async || {
        let d = detail(&alice, &webhook).await;
        // Two reads: the count and the log may straddle the attempt's record.
        (d["attempts"].as_array().map(Vec::len) == Some(3) && d["pending"] == 0).then_some(d)
    })
    .await;
    let log: Vec<(Value, Value, Value)> = detail["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| (a["attempt"].clone(), a["status"].clone(), a["ok"].clone()))
        .collect();
    assert_eq!(
        log,
        [
            (json!(3), json!(200), json!(true)),
            (json!(2), json!(500), json!(false)),
            (json!(1), json!(500), json!(false)),
        ]
    );
    assert_eq!(
        detail["attempts"][1]["error"],
        "answered 500 Internal Server Error"
    );
    // The next event is the next thing the receiver sees.
    let next = send_test(&alice, &webhook).await;
    let got = receiver.delivered(&next).await;
    assert_eq!(got.len(), 4);
    assert_ne!(got[3].id, id);
}

/// Runs in a child process (see the test below), which is then killed with SIGKILL.
#[tokio::test]
#[ignore = "run by a_server_killed_before_its_delivery_delivers_after_restart"]
async fn killed_server_child() {
    let data = PathBuf::from(std::env::var("WEBHOOK_TEST_DATA").expect("data dir"));
    let hook = std::env::var("WEBHOOK_TEST_RECEIVER").expect("receiver");
    let mut config = test_config(&data);
    loopback(&mut config);
    config.webhooks_timeout = Duration::from_secs(1);
    let app = start(config).await;
    let alice = app.login(ALICE).await;
    let webhook = add_webhook(&alice, &format!("{hook}/hook"), &["download.completed"]).await;
    let control = reqwest::Client::new();
    control
        .post(format!("{hook}/_control/config"))
        .json(&json!({"secrets": [str_of(&webhook, "secret")], "script": ["hang"]}))
        .send()
        .await
        .expect("configure the receiver");
    let file = alice.upload_ok("a.bin", sample_bytes(1_000)).await;
    let url = alice.link_url(&file.id).await;
    assert_eq!(app.anon.get(&url).send().await.unwrap().status(), 200);
    // The delivery is on its way (the receiver holds it): now this process may die.
    until("the delivery in flight", async || {
        let log: Value = control
            .get(format!("{hook}/_control/log"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (!log["deliveries"].as_array()?.is_empty()).then_some(())
    })
    .await;
    println!("READY");
    std::future::pending::<()>().await;
}

#[tokio::test]
async fn a_server_killed_before_its_delivery_delivers_after_restart() {
    let Some(receiver) = Receiver::start().await else {
        return;
    };
    let data = tempfile::tempdir().expect("temp dir");
    let mut child = tokio::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "webhooks::killed_server_child",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("WEBHOOK_TEST_DATA", data.path())
        .env("WEBHOOK_TEST_RECEIVER", &receiver.base)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the child runs");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    loop {
        match lines.next_line().await.expect("child output") {
            Some(line) if line.trim() == "READY" => break,
            Some(_) => {}
            None => panic!(
                "the child ended before its delivery: {:?}",
                child.wait().await
            ),
        }
    }
    child.start_kill().expect("SIGKILL");
    child.wait().await.expect("killed");
    let first = receiver.deliveries().await;
    assert_eq!(first.len(), 1);
    assert_eq!(
        first[0].status, None,
        "never answered: the server died first"
    );

    // The same data directory and database, a new process: the dead server's claim runs
    // out and the event goes again, under the same id.
    let mut config = test_config(data.path());
    loopback(&mut config);
    config.webhooks_timeout = Duration::from_secs(1);
    let app = start(config).await;
    let got = receiver.delivered(&first[0].id).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[1].id, first[0].id);
    assert_eq!(got[1].kind.as_deref(), Some("download.completed"));
    assert_eq!(got[1].verified, [true]);
    receiver.release().await;
    let alice = app.login(ALICE).await;
    let list: Value = alice
        .get_json(format!("{}/api/webhooks", app.app_url))
        .await;
    let id = str_of(&list[0], "id");
    until("the delivery recorded", async || {
        (detail(&alice, id).await["pending"] == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn two_app_servers_on_postgres_deliver_200_events_none_twice_at_once() {
    let Some(receiver) = Receiver::start().await else {
        return;
    };
    let Some(pg) = database().await else { return };
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut apps = Vec::new();
    for dir in &dirs {
        let mut config = test_config(dir.path());
        config.database_url = Some(pg.url().to_owned());
        loopback(&mut config);
        apps.push(start(config).await);
    }
    let alice = apps[0].login(ALICE).await;
    let webhook = add_webhook(&alice, &receiver.hook_url(), &["share.expired"]).await;
    let id = str_of(&webhook, "id");
    // Slow answers keep deliveries in flight long enough to collide, if they could.
    receiver
        .configure(&[str_of(&webhook, "secret")], json!([]), 20)
        .await;
    let on_b = User {
        client: alice.client.clone(),
        csrf: alice.csrf.clone(),
        app_url: apps[1].app_url.clone(),
    };
    let mut sent = Vec::new();
    for i in 0..200 {
        let user = if i % 2 == 0 { &alice } else { &on_b };
        sent.push(send_test(user, id).await);
    }
    let got = receiver
        .wait_for("200 events delivered", |got| {
            let mut ok: Vec<&str> = got
                .iter()
                .filter(|d| d.answered_2xx())
                .map(|d| d.id.as_str())
                .collect();
            ok.sort();
            ok.dedup();
            ok.len() == 200
        })
        .await;
    let overlapping: Vec<&str> = got
        .iter()
        .filter(|d| d.overlap)
        .map(|d| d.id.as_str())
        .collect();
    assert!(
        overlapping.is_empty(),
        "{} deliveries arrived while one of the same id was in flight, e.g. {:?}",
        overlapping.len(),
        &overlapping[..overlapping.len().min(3)]
    );
    let mut ids: Vec<&str> = got.iter().map(|d| d.id.as_str()).collect();
    ids.sort();
    let mut expected: Vec<&str> = sent.iter().map(String::as_str).collect();
    expected.sort();
    assert!(
        ids == expected,
        "{} deliveries of 200 events: each once",
        ids.len()
    );
    assert!(got.iter().all(|d| d.verified == [true]));
}

#[tokio::test]
async fn webhook_urls_that_reach_this_host_are_refused() {
    let app = spawn_with(|config| config.webhooks_allow_http = true).await;
    let alice = app.login(ALICE).await;
    for (url, why) in [
        ("http://127.0.0.1:9/hook", "127.0.0.1 is a loopback address"),
        ("http://[::1]:9/hook", "::1 is a loopback address"),
        ("http://0.0.0.0:9/hook", "0.0.0.0 is an unspecified address"),
        ("http://localhost:9/hook", "is a loopback address"),
        ("https://[::ffff:127.0.0.1]/hook", "is a loopback address"),
        ("http://127.1:9/hook", "127.0.0.1 is a loopback address"),
    ] {
        let res = post(
            &alice,
            "/api/webhooks",
            json!({"url": url, "events": ["share.expired"]}),
        )
        .await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{url}");
        let body: Value = res.json().await.expect("JSON");
        assert_eq!(body["error"], "url_refused", "{url}");
        let message = str_of(&body, "message");
        assert!(message.contains(why), "{url}: {message}");
        assert!(message.contains("--webhooks-allow-private") || url.contains("0.0.0.0"));
    }
    for (url, why) in [
        ("ftp://example.com/hook", "must be https"),
        ("http://user:pw@127.0.0.1/hook", "user name or password"),
        ("not a url", "not an absolute URL"),
    ] {
        let res = post(
            &alice,
            "/api/webhooks",
            json!({"url": url, "events": ["share.expired"]}),
        )
        .await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{url}");
        let body: Value = res.json().await.expect("JSON");
        assert!(str_of(&body, "message").contains(why), "{url}: {body}");
    }
    let res = post(
        &alice,
        "/api/webhooks",
        json!({"url": "http://127.0.0.1/", "events": ["download.started"]}),
    )
    .await;
    assert_eq!(error_code(res).await, "bad_request");
    assert_eq!(app.count_rows("webhooks").await, 0);

    // Without --webhooks-allow-http, plain http is refused before any address is looked at.
    let strict = spawn_with(|_| {}).await;
    let alice = strict.login(ALICE).await;
    let res = post(
        &alice,
        "/api/webhooks",
        json!({"url": "http://127.0.0.1/", "events": ["share.expired"]}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body: Value = res.json().await.expect("JSON");
    assert!(
        str_of(&body, "message").contains("--webhooks-allow-http"),
        "{body}"
    );
}

/// A URL that passed when it was registered and reaches this host by the time of delivery
/// (a name rebound to 127.0.0.1, a server restarted without the switch): the attempt is
/// refused on the address it would connect to, and the receiver hears nothing.
#[tokio::test]
async fn a_delivery_to_a_refused_address_is_never_made() {
    let Some(receiver) = Receiver::start().await else {
        return;
    };
    let app = spawn_with(|config| {
        loopback(config);
        config.webhooks_allow_private = false;
        config.webhooks_retry_schedule = vec![ms(0)];
    })
    .await;
    let alice = app.login(ALICE).await;
    let port = receiver.base.rsplit(':').next().expect("port").to_owned();
    let (user_id,): (String,) = sqlx::query_as("SELECT id FROM users WHERE username = 'alice'")
        .fetch_one(&app.db)
        .await
        .expect("alice");
    for (id, url) in [
        ("by-name", format!("http://localhost:{port}/hook")),
        ("literal", format!("http://127.0.0.1:{port}/hook")),
        ("mapped", format!("http://[::ffff:127.0.0.1]:{port}/hook")),
    ] {
        // Registered as if it had passed: the check that matters is the delivery's.
        sqlx::query(
            "INSERT INTO webhooks (id, user_id, url, description, events, secret, created_ms) \
             VALUES ($1, $2, $3, '', 'share.expired', \
             'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 0)",
        )
        .bind(id)
        .bind(&user_id)
        .bind(&url)
        .execute(&app.db)
        .await
        .expect("insert");
        send_test(&alice, id).await;
        let log = until("the refused attempt", async || {
            let d = detail(&alice, id).await;
            (d["attempts"].as_array()?.len() == 1 && d["pending"] == 0).then_some(d)
        })
        .await;
        let attempt = &log["attempts"][0];
        assert_eq!(attempt["ok"], false, "{id}");
        assert_eq!(attempt["status"], Value::Null, "{id}");
        let error = str_of(attempt, "error");
        assert!(error.contains("is a loopback address"), "{id}: {error}");
    }
    assert!(
        receiver.deliveries().await.is_empty(),
        "nothing reached the receiver"
    );
}

#[tokio::test]
async fn during_a_rotation_both_secrets_sign_and_after_it_only_the_new_one() {
    let Some(receiver) = Receiver::start().await else {
        return;
    };
    let app = spawn_with(loopback).await;
    let alice = app.login(ALICE).await;
    let webhook = add_webhook(&alice, &receiver.hook_url(), &["share.expired"]).await;
    let (id, old) = (str_of(&webhook, "id"), str_of(&webhook, "secret"));
    let res = post(&alice, &format!("/api/webhooks/{id}/rotate"), json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let rotated: Value = res.json().await.expect("JSON");
    let new = str_of(&rotated, "secret");
    assert!(new.starts_with("whsec_") && new != old);
    let until_secs = rotated["previous_secret_expires_at"]
        .as_i64()
        .expect("until");
    let day_from_now = i64::try_from(shared::unix_now()).unwrap() + 86_400;
    assert!(
        (day_from_now - 5..=day_from_now).contains(&until_secs),
        "{until_secs}"
    );

    // A receiver holding the old secret and one holding the new both accept.
    receiver.configure(&[old, new], json!([]), 0).await;
    let during = send_test(&alice, id).await;
    let got = receiver.delivered(&during).await;
    assert_eq!(
        (got[0].verified.as_slice(), got[0].signatures),
        ([true, true].as_slice(), 2)
    );

    // Once the day is over (moved into the past here), only the new one signs.
    sqlx::query("UPDATE webhooks SET previous_until_ms = 1 WHERE id = $1")
        .bind(id)
        .execute(&app.db)
        .await
        .expect("end the overlap");
    let after = send_test(&alice, id).await;
    let got = receiver.delivered(&after).await;
    let last = got.last().expect("a delivery");
    assert_eq!(
        (last.verified.as_slice(), last.signatures),
        ([false, true].as_slice(), 1)
    );
    assert!(
        detail(&alice, id)
            .await
            .get("previous_secret_expires_at")
            .is_none()
    );
}

#[tokio::test]
async fn an_endpoint_failing_for_the_whole_disable_time_is_disabled_until_re_enabled() {
    let Some(receiver) = Receiver::start().await else {
        return;
    };
    // Five days shortened to 300 ms; retries every 100 ms outlast it.
    let (app, alice, id) = app_with_webhook(&receiver, &["share.expired"], |config| {
        config.webhooks_disable_after = ms(300);
        config.webhooks_retry_schedule = [ms(0)].into_iter().chain([ms(100); 15]).collect();
    })
    .await;
    receiver.configure(&[], json!(vec![500; 30]), 0).await;
    let event = send_test(&alice, &id).await;
    let disabled = until("the endpoint disabled", async || {
        let d = detail(&alice, &id).await;
        (d["status"] == "disabled").then_some(d)
    })
    .await;
    assert!(disabled["disabled_at"].as_i64().is_some());
    assert_eq!(disabled["pending"], 1, "the event waits for the owner");
    // The owner sees it on the page, with a button to re-enable it.
    let page = alice
        .client
        .get(format!("{}/webhooks", app.app_url))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("HTML");
    assert!(
        page.contains("Disabled") && page.contains("after failing"),
        "{page}"
    );
    assert!(page.contains(&format!("action=\"/webhooks/{id}/enable\"")));
    // Nothing is sent while it is disabled: a test event is refused.
    let res = post(&alice, &format!("/api/webhooks/{id}/test"), json!({})).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(res).await, "webhook_disabled");
    let attempts_when_disabled = receiver.deliveries().await.len();

    // Re-enabled (from the page's form) and answering again: the waiting event goes.
    receiver.configure(&[], json!([]), 0).await;
    let res = alice
        .client
        .post(format!("{}/webhooks/{id}/enable", app.app_url))
        .form(&[("csrf_token", alice.csrf.as_str())])
        .send()
        .await
        .expect("re-enable");
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let got = receiver.delivered(&event).await;
    assert!(got.len() > attempts_when_disabled);
    let after = until("the delivery recorded", async || {
        let d = detail(&alice, &id).await;
        (d["pending"] == 0).then_some(d)
    })
    .await;
    assert_eq!(after["status"], "active");
}

#[tokio::test]
async fn a_share_announces_its_last_download_and_its_expiry() {
    let Some(receiver) = Receiver::start().await else {
        return;
    };
    let events = ["share.exhausted", "share.expired"];
    let (app, alice, _) = app_with_webhook(&receiver, &events, |_| {}).await;
    let file = alice.upload_ok("a.txt", b"hello".to_vec()).await;
    let res = post(
        &alice,
        &format!("/api/files/{}/shares", file.id),
        json!({"max_downloads": 1, "expires_in_secs": 2}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let share: Value = res.json().await.expect("share");
    let taken = app
        .anon
        .post(str_of(&share, "url"))
        .header("User-Agent", "curl/8.5.0")
        .send()
        .await
        .expect("take");
    assert_eq!(taken.status(), StatusCode::SEE_OTHER);
    let got = receiver
        .wait_for("both share events", |got| got.len() >= 2)
        .await;
    let kinds: Vec<_> = got
        .iter()
        .map(|d| d.kind.clone().unwrap_or_default())
        .collect();
    assert_eq!(kinds, ["share.exhausted", "share.expired"]);
    for event in &got {
        assert_eq!(event.data["share_id"], share["id"]);
        assert_eq!(event.data["file_id"], file.id.as_str());
        assert_eq!(
            (
                event.data["downloads"].clone(),
                event.data["max_downloads"].clone()
            ),
            (json!(1), json!(1))
        );
        assert_eq!(event.verified, [true]);
    }
}

#[tokio::test]
async fn webhooks_are_their_owners_and_need_their_scopes() {
    let app = spawn_with(loopback).await;
    let alice = app.login(ALICE).await;
    let webhook = add_webhook(&alice, "http://127.0.0.1:9/hook", &["share.expired"]).await;
    let id = str_of(&webhook, "id");
    let listed: Value = alice
        .get_json(format!("{}/api/webhooks", app.app_url))
        .await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    assert!(
        listed[0].get("secret").is_none(),
        "the secret is shown once"
    );
    let stored: (String,) = sqlx::query_as("SELECT secret FROM webhooks")
        .fetch_one(&app.db)
        .await
        .expect("row");
    assert_eq!(stored.0, str_of(&webhook, "secret"));

    // Bob sees none of it and can change none of it.
    let bob = app.login(BOB).await;
    let theirs: Value = bob.get_json(format!("{}/api/webhooks", app.app_url)).await;
    assert_eq!(theirs, json!([]));
    for path in ["rotate", "test", "enable"] {
        let res = post(&bob, &format!("/api/webhooks/{id}/{path}"), json!({})).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let res = bob
        .client
        .delete(format!("{}/api/webhooks/{id}", app.app_url))
        .header("X-CSRF-Token", &bob.csrf)
        .send()
        .await
        .expect("delete");
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    // Tokens: webhooks:read lists, only webhooks:write changes.
    let read = alice.create_token(&["webhooks:read"]).await;
    let write = alice.create_token(&["webhooks:write"]).await;
    let files = alice
        .create_token(&["files:read", "files:write", "shares:write", "links:mint"])
        .await;
    let api = |token: &str, method: reqwest::Method, path: &str| {
        app.anon
            .request(method, format!("{}{path}", app.app_url))
            .bearer_auth(token)
            .json(&json!({"url": "http://127.0.0.1:9/other", "events": ["share.expired"]}))
    };
    use reqwest::Method as M;
    for (token, method, path, expected) in [
        (&read, M::GET, "/api/webhooks", 200),
        (&read, M::POST, "/api/webhooks", 403),
        (&files, M::GET, "/api/webhooks", 403),
        (&write, M::GET, "/api/webhooks", 403),
        (&write, M::POST, "/api/webhooks", 201),
    ] {
        let res = api(token, method.clone(), path)
            .send()
            .await
            .expect("request");
        assert_eq!(res.status().as_u16(), expected, "{method} {path}");
    }
    let res = api(&write, M::PATCH, &format!("/api/webhooks/{id}"))
        .json(&json!({"events": ["download.completed", "share.expired"], "description": "billing"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let changed: Value = res.json().await.unwrap();
    assert_eq!(
        changed["events"],
        json!(["download.completed", "share.expired"])
    );
    assert_eq!(changed["description"], "billing");
    assert_eq!(changed["url"], "http://127.0.0.1:9/hook");
    let deleted = api(&write, M::DELETE, &format!("/api/webhooks/{id}"))
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let gone = api(&read, M::GET, &format!("/api/webhooks/{id}"))
        .send()
        .await
        .expect("get");
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_webhooks_page_adds_rotates_and_deletes_without_script() {
    let app = spawn_with(loopback).await;
    let alice = app.login(ALICE).await;
    let page = |path: &str| {
        let url = format!("{}{path}", app.app_url);
        let client = alice.client.clone();
        async move { client.get(url).send().await.expect("page") }
    };
    let list = page("/webhooks").await;
    assert_eq!(list.status(), StatusCode::OK);
    assert!(list.text().await.unwrap().contains("New webhook"));
    let csrf = alice.csrf.clone();
    let form = move |fields: &[(&'static str, &'static str)]| {
        let mut all: Vec<(String, String)> = vec![("csrf_token".into(), csrf.clone())];
        all.extend(
            fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        all
    };
    let res = alice
        .client
        .post(format!("{}/webhooks", app.app_url))
        .form(&form(&[
            ("url", "http://127.0.0.1:9/hook"),
            ("event", "download.completed"),
            ("event", "share.exhausted"),
            ("description", "billing app"),
        ]))
        .send()
        .await
        .expect("add");
    assert_eq!(res.status(), StatusCode::CREATED);
    let shown = res.text().await.unwrap();
    let (secret,): (String,) = sqlx::query_as("SELECT secret FROM webhooks")
        .fetch_one(&app.db)
        .await
        .expect("row");
    assert!(
        shown.contains(&secret),
        "the secret is shown once, on this page"
    );
    let list = page("/webhooks").await.text().await.unwrap();
    assert!(list.contains("billing app") && !list.contains(&secret));
    let (id,): (String,) = sqlx::query_as("SELECT id FROM webhooks")
        .fetch_one(&app.db)
        .await
        .expect("row");

    // A refused URL is the form again with why, and the API's status.
    let res = alice
        .client
        .post(format!("{}/webhooks", app.app_url))
        .form(&form(&[
            ("url", "http://169.254.169.254/"),
            ("event", "share.expired"),
        ]))
        .send()
        .await
        .expect("add");
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.text().await.unwrap().contains("cloud metadata service"));

    let res = alice
        .client
        .post(format!("{}/webhooks/{id}/rotate", app.app_url))
        .form(&form(&[]))
        .send()
        .await
        .expect("rotate");
    assert_eq!(res.status(), StatusCode::OK);
    let rotated = res.text().await.unwrap();
    let (new,): (String,) = sqlx::query_as("SELECT secret FROM webhooks")
        .fetch_one(&app.db)
        .await
        .expect("row");
    assert!(new != secret && rotated.contains(&new) && rotated.contains("previous secret"));
    let detail = page(&format!("/webhooks/{id}")).await;
    assert_eq!(detail.status(), StatusCode::OK);
    assert!(detail.text().await.unwrap().contains("Delivery log"));

    // Forms without the CSRF token do nothing.
    let res = alice
        .client
        .post(format!("{}/webhooks/{id}/delete", app.app_url))
        .send()
        .await
        .expect("delete");
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = alice
        .client
        .post(format!("{}/webhooks/{id}/delete", app.app_url))
        .form(&form(&[]))
        .send()
        .await
        .expect("delete");
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.count_rows("webhooks").await, 0);
}

/// Runs a docs/WEBHOOKS.md receiver as written (`program script`, `WEBHOOK_SECRET` and
/// `PORT=0` in its environment), points a webhook at it, and checks it prints each verified
/// event once and refuses a forged one with 400.
async fn doc_receiver_hears_a_download(
    program: &str,
    file: &str,
    code: String,
    envs: &[(&str, PathBuf)],
) {
    let app = spawn_with(loopback).await;
    let alice = app.login(ALICE).await;
    // Registered first (its secret is what the receiver starts with), moved to the
    // receiver's port once it listens.
    let webhook = add_webhook(&alice, "http://127.0.0.1:9/hook", &["download.completed"]).await;
    let (id, secret) = (str_of(&webhook, "id"), str_of(&webhook, "secret"));
    let work = tempfile::tempdir().expect("temp dir");
    if program == "node" {
        std::os::unix::fs::symlink(
            webhooks_dir().join("node_modules"),
            work.path().join("node_modules"),
        )
        .expect("symlink");
    }
    let script = work.path().join(file);
    std::fs::write(&script, code).expect("write the receiver");
    let mut command = tokio::process::Command::new(program);
    command
        .arg(&script)
        .current_dir(work.path())
        .env("WEBHOOK_SECRET", secret)
        .env("PORT", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    for (name, value) in envs {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("the receiver starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let listening = lines
        .next_line()
        .await
        .expect("output")
        .expect("a first line");
    let port = listening.rsplit(' ').next().expect("the port");
    let url = format!("http://127.0.0.1:{port}/hook");
    let res = alice
        .client
        .patch(format!("{}/api/webhooks/{id}", app.app_url))
        .header("X-CSRF-Token", &alice.csrf)
        .json(&json!({"url": url}))
        .send()
        .await
        .expect("move the webhook");
    assert_eq!(res.status(), StatusCode::OK);

    // A forged request is refused and printed nowhere.
    let forged = reqwest::Client::new()
        .post(&url)
        .header("webhook-id", "msg_forged")
        .header("webhook-timestamp", shared::unix_now().to_string())
        .header(
            "webhook-signature",
            "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        )
        .body(r#"{"type":"download.completed","timestamp":"","data":{}}"#)
        .send()
        .await
        .expect("forged request");
    assert_eq!(forged.status(), StatusCode::BAD_REQUEST, "{program}");

    let file = alice.upload_ok("report.pdf", sample_bytes(2_000)).await;
    let link = alice.link_url(&file.id).await;
    assert_eq!(app.anon.get(&link).send().await.unwrap().status(), 200);
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("the receiver prints the event")
        .expect("output")
        .expect("a line");
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[0], "download.completed", "{program}: {line}");
    assert!(words[1].starts_with("msg_"), "{program}: {line}");
    until("the delivery recorded as delivered", async || {
        let d = detail(&alice, id).await;
        (d["pending"] == 0 && d["attempts"][0]["ok"] == true).then_some(())
    })
    .await;
}

#[tokio::test]
async fn webhooks_md_python_receiver_verifies_a_real_delivery() {
    if !tool_installed("standardwebhooks") {
        return skip("standardwebhooks not installed in tests/webhooks/python (.ci/install-deps)");
    }
    let env = [("PYTHONPATH", webhooks_dir().join("python"))];
    doc_receiver_hears_a_download(
        "python3",
        "receiver.py",
        burnlink_tests::doc_block("WEBHOOKS.md", "python"),
        &env,
    )
    .await;
}

#[tokio::test]
async fn webhooks_md_node_receiver_verifies_a_real_delivery() {
    if !tool_installed("standardwebhooks-npm") {
        return skip(
            "standardwebhooks not installed in tests/webhooks/node_modules (.ci/install-deps)",
        );
    }
    doc_receiver_hears_a_download(
        "node",
        "receiver.mjs",
        burnlink_tests::doc_block("WEBHOOKS.md", "js"),
        &[],
    )
    .await;
}
