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

/// A standalone download server's configuration for `app`'s fleet: loopback, port 0, the
/// app's data dir, issuer, audience and verification key, `burn_store`, and a burn store
/// deadline of 5 s.
pub fn download_config(app: &TestApp, burn_store: &str) -> download_server::Config {
    let mut config = download_server::Config::from_defaults();
    config.bind = "127.0.0.1:0".parse().expect("literal address");
    config.data_dir = app.data_dir.clone();
    config.issuer = app.config.issuer.clone();
    config.audience = app.config.audience.clone();
    config.jwks_file = None;
    config.public_keys = Vec::new();
    config.hs256_secret_file = None;
    config.keys = vec![app.signing_key().verifying_key().clone()];
    config.burn_store = burn_store.to_owned();
    config.metrics_bind = None;
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
