//! What tests run beside the app: a Redis (from `REDIS_URL`, else a private `redis-server` on
//! a unix socket, else a skip that fails under `CI=true`), and extra standalone download
//! servers sharing an app's data dir and key, as a fleet does.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::TestApp;

/// A Redis for one test. A private one is killed when this is dropped.
pub struct RedisServer {
    url: String,
    private: Option<Private>,
}

struct Private {
    socket: PathBuf,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

/// `REDIS_URL` if set (a shared server: tests must not stop it or flush it), else a private
/// server, else `None` after saying why the test is skipped.
pub async fn redis() -> Option<RedisServer> {
    match std::env::var("REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(RedisServer { url, private: None }),
        _ => private_redis().await,
    }
}

/// A private `redis-server` (never `REDIS_URL`), for tests that stop and restart it.
pub async fn private_redis() -> Option<RedisServer> {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("redis.sock");
    let child = match start_redis_server(&socket) {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            skip("redis-server not installed and REDIS_URL not set");
            return None;
        }
        Err(e) => panic!("starting redis-server: {e}"),
    };
    let server = RedisServer {
        url: format!("redis+unix://{}", socket.display()),
        private: Some(Private {
            socket,
            child: Some(child),
            _dir: dir,
        }),
    };
    server.wait_until_answering().await;
    Some(server)
}

/// Whether the test tool `name` (a row of `.ci/install-deps`'s TOOLS table: `pyjwt`, `moto`,
/// `jose`) is installed into `tests/`. The script that installs the tools decides, so the tests
/// and the install step never disagree (a copy importable only system-wide does not count).
pub fn tool_installed(name: &str) -> bool {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ci/install-deps");
    let status = Command::new("bash")
        .arg(&script)
        .args(["--check", name])
        .env_remove("BURNLINK_TESTS_DIR")
        .stdin(Stdio::null())
        .status()
        .expect("bash runs .ci/install-deps");
    match status.code() {
        Some(0) => true,
        Some(1) => false,
        _ => panic!("{} --check {name}: {status}", script.display()),
    }
}

/// Prints why a test does nothing, or fails it under `CI=true`, where every service must be
/// there.
pub fn skip(why: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true and {why}");
    }
    println!("skipped: {why}");
}

/// Unix socket only (`--port 0` closes TCP), nothing written to disk.
fn start_redis_server(socket: &Path) -> std::io::Result<Child> {
    Command::new("redis-server")
        .args(["--port", "0", "--unixsocket"])
        .arg(socket)
        .args(["--save", "", "--appendonly", "no"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}

impl RedisServer {
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Kills a private server (as a crash would: what it held is gone).
    pub fn stop(&mut self) {
        let private = self.private_mut();
        if let Some(mut child) = private.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a stopped private server again on the same socket, empty.
    pub async fn start_again(&mut self) {
        let private = self.private_mut();
        assert!(private.child.is_none(), "redis-server is still running");
        private.child = Some(start_redis_server(&private.socket).expect("redis-server restarts"));
        self.wait_until_answering().await;
    }

    fn private_mut(&mut self) -> &mut Private {
        self.private
            .as_mut()
            .expect("only a private redis-server can be stopped (not REDIS_URL)")
    }

    /// Polls the socket until `PING` answers: the process is starting, and there is no
    /// readiness signal to wait on. Bounded at about 5 s.
    async fn wait_until_answering(&self) {
        let Some(private) = &self.private else { return };
        for _ in 0..250 {
            if let Ok(mut conn) = tokio::net::UnixStream::connect(&private.socket).await {
                let mut reply = [0u8; 7];
                if conn.write_all(b"PING\r\n").await.is_ok()
                    && conn.read_exact(&mut reply).await.is_ok()
                    && &reply == b"+PONG\r\n"
                {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "redis-server did not answer on {}",
            private.socket.display()
        );
    }

    /// A connection for the test itself, to look at what the download servers wrote.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url.as_str())
            .expect("redis URL")
            .get_multiplexed_async_connection()
            .await
            .expect("test connects to redis")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.private.as_mut().and_then(|p| p.child.take()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A Redis Cluster for one test: `REDIS_CLUSTER_URL` if set (`redis+cluster://host:port,...`,
/// shared: tests must not stop or flush it), else three private `redis-server` nodes on
/// loopback, joined by `redis-cli --cluster create` and killed on drop, else a skip.
pub struct RedisCluster {
    url: String,
    nodes: Vec<Child>,
    _dir: Option<tempfile::TempDir>,
}

impl RedisCluster {
    /// The `--burn-store` value that reaches it.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in &mut self.nodes {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub async fn redis_cluster() -> Option<RedisCluster> {
    if let Ok(url) = std::env::var("REDIS_CLUSTER_URL")
        && !url.is_empty()
    {
        return Some(RedisCluster {
            url,
            nodes: Vec::new(),
            _dir: None,
        });
    }
    if Command::new("redis-cli").arg("--version").output().is_err() {
        skip("redis-cli not installed and REDIS_CLUSTER_URL not set");
        return None;
    }
    // Cluster nodes listen on TCP (a node and its bus port, +10000): a port taken by someone
    // else makes a node exit, and the whole cluster is tried again on other ports.
    for _ in 0..5 {
        let dir = tempfile::tempdir().expect("temp dir");
        let base = 20_000 + (rand_u16() % 3_000) * 3;
        let ports = [base, base + 1, base + 2];
        let mut nodes = Vec::new();
        for port in ports {
            match start_cluster_node(dir.path(), port) {
                Ok(child) => nodes.push(child),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    skip("redis-server not installed and REDIS_CLUSTER_URL not set");
                    return None;
                }
                Err(e) => panic!("starting redis-server: {e}"),
            }
        }
        let mut cluster = RedisCluster {
            url: format!(
                "redis+cluster://{}",
                ports.map(|p| format!("127.0.0.1:{p}")).join(",")
            ),
            nodes,
            _dir: Some(dir),
        };
        if !all_answer(&mut cluster.nodes, &ports).await {
            continue; // dropped: its nodes are killed
        }
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(ports.map(|p| format!("127.0.0.1:{p}")))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli runs");
        assert!(
            created.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        wait_for_cluster_ok(&ports).await;
        return Some(cluster);
    }
    panic!("no free ports for a three-node Redis Cluster after five tries");
}

fn rand_u16() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos ^ std::process::id().wrapping_mul(2_654_435_761)) as u16
}

fn start_cluster_node(dir: &Path, port: u16) -> std::io::Result<Child> {
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--cluster-enabled", "yes", "--cluster-config-file"])
        .arg(dir.join(format!("nodes-{port}.conf")))
        .arg("--dir")
        .arg(dir)
        .args(["--save", "", "--appendonly", "no"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}

/// Whether every node answers `PING` within about 5 s (false: one exited, e.g. port taken).
async fn all_answer(nodes: &mut [Child], ports: &[u16]) -> bool {
    for _ in 0..250 {
        if nodes
            .iter_mut()
            .any(|n| matches!(n.try_wait(), Ok(Some(_))))
        {
            return false;
        }
        let mut answering = 0;
        for port in ports {
            if ping_tcp(*port).await {
                answering += 1;
            }
        }
        if answering == ports.len() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

async fn ping_tcp(port: u16) -> bool {
    let Ok(mut conn) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let mut reply = [0u8; 7];
    conn.write_all(b"PING\r\n").await.is_ok()
        && conn.read_exact(&mut reply).await.is_ok()
        && &reply == b"+PONG\r\n"
}

/// Polls `CLUSTER INFO` on every node until each says `cluster_state:ok` (bounded, 15 s).
async fn wait_for_cluster_ok(ports: &[u16]) {
    for _ in 0..300 {
        let mut ok = 0;
        for port in ports {
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("url");
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                let info: redis::RedisResult<String> = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(&mut conn)
                    .await;
                if info.is_ok_and(|i| i.contains("cluster_state:ok")) {
                    ok += 1;
                }
            }
        }
        if ok == ports.len() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the Redis Cluster on {ports:?} did not reach cluster_state:ok");
}

/// A standalone download server's configuration for `app`'s fleet: loopback, port 0, the
/// app's data dir, issuer, audience and verification key, `burn_store`, and a burn store
/// deadline of 5 s.
pub fn download_config(app: &TestApp, burn_store: &str) -> download_server::Config {
    let mut config = download_server::Config::from_defaults();
    config.bind = "127.0.0.1:0".parse().expect("literal address");
    config.service.data_dir = app.data_dir.clone();
    config.token.issuer = app.config.token.issuer.clone();
    config.token.audience = app.config.token.audience.clone();
    config.jwks_file = None;
    config.public_keys = Vec::new();
    config.hs256_secret_file = None;
    config.keys = vec![app.signing_key().verifying_key().clone()];
    config.burn_store = burn_store.into();
    // As the app's embedded server (`test_config`): tokens here are dated by this machine's
    // clock, and a server with the memory store serves `1 + leeway` seconds after it starts.
    config.leeway = app.config.leeway;
    // The app's files, wherever they are.
    config.file_store = app.config.file_store.clone();
    config.service.metrics_bind = None;
    // Many servers share few cores while tests run in parallel: a slow answer there is load,
    // not an outage. Tests about outages set the deadline they mean.
    config.burn_store_timeout_ms = 5_000;
    config
}

/// Starts a download server with exactly this configuration; returns its base URL. It runs
/// until the test's runtime ends.
pub async fn start_download_server(config: download_server::Config) -> String {
    let server = download_server::Application::build(config)
        .await
        .expect("download server starts");
    let url = format!("http://{}", server.address());
    tokio::spawn(server.run_until_stopped());
    url
}

/// One more download server beside `app`'s own, sharing its files and key, burning in
/// `burn_store` (`memory` or a Redis URL). Returns its base URL.
pub async fn spawn_download_server(app: &TestApp, burn_store: &str) -> String {
    start_download_server(download_config(app, burn_store)).await
}

/// A TCP proxy on loopback in front of `upstream` (`host:port`) that cuts its first connection
/// after `cut_after` bytes of response (headers included), as a broken network does, and passes
/// every later connection whole. It keeps the head of each request it saw (what the client
/// sent to resume). It runs until the test's runtime ends.
pub struct CuttingProxy {
    pub addr: std::net::SocketAddr,
    requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl CuttingProxy {
    /// Whether the connection was cut (a proxy cutting uploads: once one request got that far).
    pub fn cut_made(&self) -> bool {
        self.cut.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The request heads seen so far (request line and headers), one per connection.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("not poisoned").clone()
    }

    /// `url` (an `http://host:port/...` URL of the upstream) through this proxy.
    pub fn url_for(&self, url: &str) -> String {
        let rest = url.strip_prefix("http://").expect("an http URL");
        let path = rest.find('/').map_or("", |i| &rest[i..]);
        format!("http://{}{path}", self.addr)
    }
}

/// A [`CuttingProxy`] in front of the server of `url` (an `http://host:port/...` URL).
pub async fn cutting_proxy_for(url: &str, cut_after: usize) -> CuttingProxy {
    let upstream = url
        .strip_prefix("http://")
        .and_then(|rest| rest.split('/').next())
        .expect("an http URL");
    cutting_proxy(upstream, cut_after).await
}

pub async fn cutting_proxy(upstream: &str, cut_after: usize) -> CuttingProxy {
    proxy(upstream, Cut::Response(cut_after)).await
}

/// A [`CuttingProxy`] in front of the server of `url` that cuts the first connection whose
/// request (head and body) reaches `cut_after` bytes, there, as a broken network cuts an
/// upload; every other connection, before or after, passes whole.
pub async fn upload_cutting_proxy_for(url: &str, cut_after: usize) -> CuttingProxy {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("proxy binds");
    upload_cutting_proxy_on(listener, url, cut_after).await
}

/// [`upload_cutting_proxy_for`] on a listener bound before the server started (so that the
/// server's `--public-url` can be the proxy's: a browser's page then has the app's origin).
pub async fn upload_cutting_proxy_on(
    listener: tokio::net::TcpListener,
    url: &str,
    cut_after: usize,
) -> CuttingProxy {
    let upstream = url
        .strip_prefix("http://")
        .and_then(|rest| rest.split('/').next())
        .expect("an http URL");
    proxy_on(listener, upstream, Cut::Request(cut_after)).await
}

/// Which way the one cut goes.
#[derive(Clone, Copy)]
enum Cut {
    /// The first connection's response, after this many bytes.
    Response(usize),
    /// The first request to reach this many bytes.
    Request(usize),
}

async fn proxy(upstream: &str, cut: Cut) -> CuttingProxy {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("proxy binds");
    proxy_on(listener, upstream, cut).await
}

async fn proxy_on(listener: tokio::net::TcpListener, upstream: &str, cut: Cut) -> CuttingProxy {
    let cut_done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let made = cut_done.clone();
    let addr = listener.local_addr().expect("proxy address");
    let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = requests.clone();
    let upstream = upstream.to_owned();
    tokio::spawn(async move {
        let mut first = true;
        while let Ok((mut client, _)) = listener.accept().await {
            let limit = match cut {
                Cut::Response(cut_after) if first => Some(cut_after),
                _ => None,
            };
            let up_limit = match cut {
                Cut::Request(cut_after) => Some(cut_after),
                Cut::Response(_) => None,
            };
            first = false;
            let (upstream, seen, cut_done) = (upstream.clone(), seen.clone(), made.clone());
            tokio::spawn(async move {
                let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let (mut client_read, mut client_write) = client.split();
                let (mut server_read, mut server_write) = server.split();
                let up = async {
                    let mut head = Vec::new();
                    let mut buf = vec![0u8; 16 * 1024];
                    let mut sent = 0;
                    loop {
                        let mut n = match client_read.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let cut_here = up_limit.is_some_and(|limit| {
                            sent + n >= limit
                                && !cut_done.swap(true, std::sync::atomic::Ordering::SeqCst)
                        });
                        if let (true, Some(limit)) = (cut_here, up_limit) {
                            n = limit - sent;
                        }
                        sent += n;
                        if head.len() < 64 * 1024 {
                            head.extend_from_slice(&buf[..n]);
                            if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                                let text = String::from_utf8_lossy(&head[..end]).into_owned();
                                seen.lock().expect("not poisoned").push(text);
                                head = vec![0; 64 * 1024]; // seen: stop looking
                            }
                        }
                        if server_write.write_all(&buf[..n]).await.is_err() || cut_here {
                            break;
                        }
                    }
                };
                let down = async {
                    let mut sent = 0;
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match server_read.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let n = limit.map_or(n, |limit| n.min(limit - sent));
                        if client_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        sent += n;
                        if limit.is_some_and(|limit| sent >= limit) {
                            break;
                        }
                    }
                };
                // Whichever side ends first ends the connection: a cut closes both.
                tokio::select! {
                    _ = up => {}
                    _ = down => {}
                }
            });
        }
    });
    CuttingProxy {
        addr,
        requests,
        cut: cut_done,
    }
}
