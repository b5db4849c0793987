//! Soak test: the release `app-server` and `download-server`, each its own process, under N
//! minutes of mixed traffic (logins, uploads, links, downloads, ranges, HEADs, replays,
//! forged tokens, aborted downloads, deletes). Reports every unexpected answer (there must be
//! none) and each server's RSS and open file descriptors at the start and the end.
//!
//! Not part of `cargo test`. See docs/OPERATIONS.md, "Soak test":
//!
//! ```sh
//! cargo build --release -p app-server -p download-server -p burnlink-tests --bin soak
//! target/release/soak --minutes 10
//! ```

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use shared::{Algorithm, SigningKey};

const USAGE: &str = "usage: soak [--minutes N | --seconds N] [--workers N] [--bin-dir DIR]";
const PASSWORD: &str = "soak-password-123";

struct Args {
    duration: Duration,
    workers: usize,
    bin_dir: PathBuf,
}

fn args() -> Result<Args, String> {
    let mut args = Args {
        duration: Duration::from_secs(600),
        workers: 8,
        bin_dir: std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("target/release")),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value\n{USAGE}"));
        let number = |v: String| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--minutes" => args.duration = Duration::from_secs(number(value()?)? * 60),
            "--seconds" => args.duration = Duration::from_secs(number(value()?)?),
            "--workers" => args.workers = number(value()?)?.max(1) as usize,
            "--bin-dir" => args.bin_dir = PathBuf::from(value()?),
            _ => return Err(USAGE.to_owned()),
        }
    }
    Ok(args)
}

/// A server process, stopped with SIGTERM (then waited for) when dropped.
struct Server {
    child: Child,
    name: &'static str,
    stopped: bool,
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(&mut self) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts `bin` and returns it with the first stdout line that mentions `http://`.
fn start(
    bin: &Path,
    name: &'static str,
    args: &[&str],
    data: &Path,
) -> Result<(Server, String), String> {
    let mut child = Command::new(bin)
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("{}: {e} (build it with --release)", bin.display()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    Ok((
        Server {
            child,
            name,
            stopped: false,
        },
        line,
    ))
}

fn urls_in(line: &str) -> Vec<String> {
    line.split_whitespace()
        .filter(|w| w.starts_with("http://"))
        .map(str::to_owned)
        .collect()
}

/// RSS in KiB and open file descriptors of a process.
fn usage(pid: u32) -> (u64, usize) {
    use burnlink_tests::process::{open_fds, rss_kib};
    (rss_kib(pid), open_fds(pid))
}

#[derive(Default)]
struct Tally {
    ops: BTreeMap<&'static str, u64>,
    unexpected: Vec<String>,
}

struct Soak {
    app: String,
    client_errors: AtomicU64,
    tally: Mutex<Tally>,
}

impl Soak {
    fn count(&self, op: &'static str) {
        *self.tally.lock().expect("tally").ops.entry(op).or_default() += 1;
    }

    fn unexpected(&self, what: String) {
        eprintln!("UNEXPECTED: {what}");
        self.tally.lock().expect("tally").unexpected.push(what);
    }

    /// Checks a status; records and returns false when it is not one of `want`.
    fn expect(
        &self,
        op: &'static str,
        got: Result<StatusCode, reqwest::Error>,
        want: &[StatusCode],
    ) -> bool {
        self.count(op);
        match got {
            Ok(s) if want.contains(&s) => true,
            Ok(s) => {
                self.unexpected(format!("{op}: {s}, wanted {want:?}"));
                false
            }
            Err(e) => {
                self.client_errors.fetch_add(1, Ordering::Relaxed);
                self.unexpected(format!("{op}: {e}"));
                false
            }
        }
    }
}

/// One worker: its own user, session and files; loops until `until`.
async fn worker(soak: Arc<Soak>, n: usize, until: Instant) {
    let user = format!("soak{n}");
    let client = Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    // Idle connections are dropped before the server's 5 s keep-alive ends, so a request
    // never races the server closing its connection (a client-side error, not the server's).
    let anon = Client::builder()
        .pool_idle_timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    let mut csrf = String::new();
    let mut files: Vec<(String, usize)> = Vec::new();
    let mut big: Option<String> = None;
    let mut i: u64 = 0;
    let app = soak.app.clone();
    while Instant::now() < until {
        i += 1;
        // Log in at start and every 200 rounds (a new session each time); now and then fail.
        if csrf.is_empty() || i.is_multiple_of(200) {
            if i.is_multiple_of(400) {
                let res = anon
                    .post(format!("{app}/api/login"))
                    .json(&serde_json::json!({ "username": user, "password": "wrong-password" }))
                    .send()
                    .await
                    .map(|r| r.status());
                soak.expect("login (wrong password)", res, &[StatusCode::UNAUTHORIZED]);
            }
            let res = client
                .post(format!("{app}/api/login"))
                .json(&serde_json::json!({ "username": user, "password": PASSWORD }))
                .send()
                .await;
            match res {
                Ok(r) if r.status() == StatusCode::OK => {
                    soak.count("login");
                    let body: serde_json::Value = r.json().await.unwrap_or_default();
                    csrf = body["csrf_token"].as_str().unwrap_or_default().to_owned();
                }
                other => {
                    soak.expect("login", other.map(|r| r.status()), &[StatusCode::OK]);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            }
        }
        // A big file once, for aborted downloads.
        if big.is_none() {
            big = upload(&soak, &client, &app, &csrf, "big.bin", 4 << 20).await;
        }
        match i % 10 {
            0..=2 => {
                let size = (i as usize * 7919) % 300_000;
                if let Some(id) = upload(&soak, &client, &app, &csrf, "f.txt", size).await {
                    files.push((id, size));
                }
                if files.len() > 20 {
                    let (id, _) = files.remove(0);
                    let res = client
                        .delete(format!("{app}/api/files/{id}"))
                        .header("X-CSRF-Token", &csrf)
                        .send()
                        .await
                        .map(|r| r.status());
                    soak.expect("delete", res, &[StatusCode::NO_CONTENT]);
                }
            }
            3 if big.is_some() => {
                // Aborted download: read a little, hang up. The link is used up.
                let Some(url) = link(
                    &soak,
                    &client,
                    &app,
                    &csrf,
                    big.as_deref().unwrap_or_default(),
                )
                .await
                else {
                    continue;
                };
                soak.count("aborted download");
                match anon.get(&url).send().await {
                    Ok(mut res) if res.status() == StatusCode::OK => {
                        let _ = res.chunk().await;
                        drop(res);
                    }
                    other => {
                        soak.expect(
                            "aborted download",
                            other.map(|r| r.status()),
                            &[StatusCode::OK],
                        );
                        // Not served, so not used: a replay check would mean nothing.
                        continue;
                    }
                }
                let res = anon.get(&url).send().await.map(|r| r.status());
                soak.expect("replay after abort", res, &[StatusCode::GONE]);
            }
            4 => {
                let res = anon
                    .get(format!("{app}/api/me"))
                    .send()
                    .await
                    .map(|r| r.status());
                soak.expect("anonymous /api/me", res, &[StatusCode::UNAUTHORIZED]);
                let dl = app_download_base(&soak);
                let res = anon
                    .get(format!("{dl}/d/eyJhbGciOiJub25lIn0.e30."))
                    .send()
                    .await
                    .map(|r| r.status());
                soak.expect("forged token", res, &[StatusCode::UNAUTHORIZED]);
            }
            _ => {
                let Some((id, size)) = files.get(i as usize % files.len().max(1)).cloned() else {
                    continue;
                };
                let Some(url) = link(&soak, &client, &app, &csrf, &id).await else {
                    continue;
                };
                let head = anon.head(&url).send().await.map(|r| r.status());
                soak.expect("head", head, &[StatusCode::OK]);
                let ranged = i.is_multiple_of(3) && size > 10;
                let mut req = anon.get(&url);
                if ranged {
                    req = req.header("Range", "bytes=5-9");
                }
                match req.send().await {
                    Ok(res) => {
                        let want = if ranged {
                            StatusCode::PARTIAL_CONTENT
                        } else {
                            StatusCode::OK
                        };
                        if soak.expect("download", Ok(res.status()), &[want]) {
                            let body = res.bytes().await.map(|b| b.len()).unwrap_or(usize::MAX);
                            let expected = if ranged { 5 } else { size };
                            if body != expected {
                                soak.unexpected(format!(
                                    "download: {body} bytes, wanted {expected}"
                                ));
                            }
                        }
                    }
                    Err(e) => {
                        soak.expect("download", Err(e), &[]);
                    }
                }
                let replay = anon.get(&url).send().await.map(|r| r.status());
                soak.expect("replay", replay, &[StatusCode::GONE]);
            }
        }
    }
}

fn app_download_base(soak: &Soak) -> String {
    DOWNLOAD_URL
        .get()
        .cloned()
        .unwrap_or_else(|| soak.app.clone())
}

static DOWNLOAD_URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

async fn upload(
    soak: &Soak,
    client: &Client,
    app: &str,
    csrf: &str,
    name: &str,
    size: usize,
) -> Option<String> {
    let bytes: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned()),
    );
    let res = client
        .post(format!("{app}/api/files"))
        .header("X-CSRF-Token", csrf)
        .multipart(form)
        .send()
        .await;
    match res {
        Ok(r) if r.status() == StatusCode::CREATED => {
            soak.count("upload");
            let body: serde_json::Value = r.json().await.ok()?;
            body["id"].as_str().map(str::to_owned)
        }
        other => {
            soak.expect("upload", other.map(|r| r.status()), &[StatusCode::CREATED]);
            None
        }
    }
}

async fn link(soak: &Soak, client: &Client, app: &str, csrf: &str, id: &str) -> Option<String> {
    let res = client
        .post(format!("{app}/api/files/{id}/link"))
        .header("X-CSRF-Token", csrf)
        .send()
        .await;
    match res {
        Ok(r) if r.status() == StatusCode::CREATED => {
            soak.count("link");
            let body: serde_json::Value = r.json().await.ok()?;
            body["url"].as_str().map(str::to_owned)
        }
        other => {
            soak.expect("link", other.map(|r| r.status()), &[StatusCode::CREATED]);
            None
        }
    }
}

fn add_user(bin: &Path, data: &Path, name: &str) -> Result<(), String> {
    let mut child = Command::new(bin)
        .arg("--data-dir")
        .arg(data)
        .args(["user", "add", name])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    if let Some(stdin) = child.stdin.as_mut() {
        writeln!(stdin, "{PASSWORD}").map_err(|e| e.to_string())?;
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    status
        .success()
        .then_some(())
        .ok_or(format!("app-server user add {name}: {status}"))
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("soak: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<bool, String> {
    let args = args()?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let data = dir.path();
    // The key first, so the download server can start before the app server it serves.
    let keys = data.join("keys");
    std::fs::create_dir_all(&keys).map_err(|e| e.to_string())?;
    let key = SigningKey::load_or_generate(&keys.join("ed25519.pem"), Algorithm::EdDSA)
        .map_err(|e| e.to_string())?;
    let jwks =
        serde_json::to_string(&shared::jwks([key.verifying_key()])).map_err(|e| e.to_string())?;
    std::fs::write(keys.join("jwks.json"), jwks).map_err(|e| e.to_string())?;

    let dl_bin = args.bin_dir.join("download-server");
    let app_bin = args.bin_dir.join("app-server");
    let (mut dl, line) = start(&dl_bin, "download-server", &["--bind", "127.0.0.1:0"], data)?;
    let dl_url = urls_in(&line)
        .pop()
        .ok_or(format!("download-server said {line:?}"))?;
    for n in 0..args.workers {
        add_user(&app_bin, data, &format!("soak{n}"))?;
    }
    let (mut app, line) = start(
        &app_bin,
        "app-server",
        &[
            "--bind",
            "127.0.0.1:0",
            "--download-url",
            &dl_url,
            "--demo-user",
            "false",
            "--login-attempts-per-minute",
            "1000",
        ],
        data,
    )?;
    let app_url = urls_in(&line)
        .first()
        .cloned()
        .ok_or(format!("app-server said {line:?}"))?;
    let _ = DOWNLOAD_URL.set(dl_url.clone());
    eprintln!(
        "soak: app {app_url} (pid {}), downloads {dl_url} (pid {}), {} workers, {:?}",
        app.pid(),
        dl.pid(),
        args.workers,
        args.duration
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let soak = Arc::new(Soak {
        app: app_url,
        client_errors: AtomicU64::new(0),
        tally: Mutex::new(Tally::default()),
    });
    // A short warm-up, so start figures are of a serving process, not an idle one.
    let warm = Instant::now() + Duration::from_secs(5).min(args.duration / 10);
    runtime.block_on(worker(soak.clone(), 0, warm));
    let start_usage = [usage(app.pid()), usage(dl.pid())];
    let started = Instant::now();
    let until = started + args.duration;
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for n in 0..args.workers {
            tasks.push(tokio::spawn(worker(soak.clone(), n, until)));
        }
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        tick.tick().await;
        while Instant::now() < until {
            tokio::select! {
                _ = tick.tick() => {
                    let ops: u64 = soak.tally.lock().expect("tally").ops.values().sum();
                    let (app_rss, app_fds) = usage(app.pid());
                    let (dl_rss, dl_fds) = usage(dl.pid());
                    eprintln!(
                        "soak: {:>4}s {ops} requests; app {app_rss} KiB {app_fds} fds; downloads {dl_rss} KiB {dl_fds} fds",
                        started.elapsed().as_secs()
                    );
                }
                _ = tokio::time::sleep_until((until).into()) => {}
            }
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    // Let aborted transfers and idle connections be reaped before the end figures.
    drop(runtime);
    std::thread::sleep(Duration::from_secs(3));
    let end_usage = [usage(app.pid()), usage(dl.pid())];
    let elapsed = started.elapsed();

    let tally = soak.tally.lock().expect("tally");
    let total: u64 = tally.ops.values().sum();
    println!(
        "soak: {:.1} minutes, {} workers",
        elapsed.as_secs_f64() / 60.0,
        args.workers
    );
    for (op, n) in &tally.ops {
        println!("  {op:<28} {n:>9}");
    }
    println!("  {:<28} {total:>9}", "total");
    println!("  unexpected answers: {}", tally.unexpected.len());
    for (server, (s, e)) in [&app, &dl]
        .iter()
        .zip(start_usage.iter().zip(end_usage.iter()))
    {
        println!(
            "  {:<16} RSS {:>7} KiB -> {:>7} KiB   fds {:>4} -> {:>4}",
            server.name, s.0, e.0, s.1, e.1
        );
    }
    for u in tally.unexpected.iter().take(20) {
        println!("  ! {u}");
    }
    let ok = tally.unexpected.is_empty();
    drop(tally);
    app.stop();
    dl.stop();
    Ok(ok)
}
