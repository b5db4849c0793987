//! Benchmarks the download server against nginx serving the same bytes, on this machine, in
//! one run, and writes the figures and their ratios to docs/BENCHMARKS.md and a PNG chart.
//!
//! Run through `bench/run`, which installs nginx and wrk and builds the release
//! binaries first. Every load is bounded in time; every server is started here and stopped
//! when the run ends.

mod count;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use burnlink_tests::process::rss_kib;
use clap::Parser;
use shared::{
    Algorithm, Claims, CryptoBackend, DownloadName, Policy, SigningKey, StorageKey, Verifier,
};

#[derive(Parser, Debug)]
#[command(about = "burnlink download server against nginx, in one run")]
struct Args {
    /// Directory holding the release `download-server` binary.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Seconds per small-file load.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds per large-file load.
    #[arg(long, default_value_t = 12)]
    stream_duration: u64,
    /// Connections for the small-file load.
    #[arg(long, default_value_t = 64)]
    connections: u32,
    /// Concurrent slow readers for the memory load.
    #[arg(long, default_value_t = 200)]
    slow_readers: usize,
    /// Redis for the Redis burn-store row (skipped when unreachable).
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Where the report goes.
    #[arg(long, default_value = "docs/BENCHMARKS.md")]
    report: PathBuf,
    /// Where the ratio chart goes.
    #[arg(long, default_value = "docs/benchmarks.png")]
    chart: PathBuf,
    /// First read size of the download server, KiB (its default).
    #[arg(long, default_value_t = 8)]
    read_buffer_kib: u32,
    /// Pin each loaded server to the first core and wrk to the last (every thread, with
    /// `taskset`), so that the two never take turns on one core: for latency (p99) figures
    /// that say what the server does rather than how the scheduler shared the cores. A Redis
    /// or S3 server beside the loaded one is left where it runs. Needs two cores or more.
    #[arg(long)]
    pin: bool,
    /// Run only these workloads (comma-separated: crypto, small, redis, streams, memory, s3)
    /// and print the figures without writing the report: for trying a change.
    #[arg(long, value_delimiter = ',')]
    only: Vec<Workload>,
    /// Internal: print the verify bound of one jsonwebtoken backend (`rust_crypto`,
    /// `aws_lc_rs`) for each algorithm, then exit.
    #[arg(long, hide = true)]
    verify_bound: Option<String>,
    /// Internal: serve this file with bare actix-web on every `/d/*` (no token, no burn), as
    /// `--floor` says, and print the address: the framework's own ceiling.
    #[arg(long, hide = true)]
    serve_floor: Option<PathBuf>,
    /// Internal, with `--serve-floor`: how the floor answers.
    #[arg(long, hide = true, value_enum, default_value_t = Floor::Memory)]
    floor: Floor,
    /// Internal, with `--serve-floor`: its workers (default: one per core).
    #[arg(long, hide = true)]
    floor_workers: Option<usize>,
    /// Count, not time: allocations and instructions per 4 KiB HS256 download of the release
    /// download server and of bare actix-web reading the file, under valgrind (dhat, then
    /// callgrind), from runs of N and 2N downloads. Prints a table; writes no report.
    #[arg(long, value_name = "N")]
    count: Option<usize>,
    /// With `--count`: keep valgrind's outputs (per-call-site detail) in this directory.
    #[arg(long, value_name = "DIR", requires = "count")]
    count_keep: Option<PathBuf>,
    /// With `--count`: one more argument for the download server (repeat for several), e.g.
    /// `--server-arg=--open-file-cache=0`, or `--server-arg=--burn-store=redis://127.0.0.1:6379`
    /// in place of the memory store (the server's own instructions; Redis's are not counted).
    #[arg(
        long,
        value_name = "ARG",
        requires = "count",
        allow_hyphen_values = true
    )]
    server_arg: Vec<String>,
}

/// How bare actix-web answers in [`serve_floor`].
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Floor {
    /// The file's bytes from memory, as one body.
    Memory,
    /// The file opened, stat'ed, read and closed for every request, as nginx does: the ceiling
    /// of a server that reads files.
    Disk,
    /// The file's bytes from memory in chunks of the download server's first read, with its
    /// write buffer: what a slow stream costs actix-web itself.
    Stream,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    Crypto,
    Small,
    /// The Redis burn store's row, against the memory store's measured just before it.
    Redis,
    Streams,
    Memory,
    S3,
}

const ISSUER: &str = "burnlink-app";
const AUDIENCE: &str = "burnlink-download";
const SMALL: &str = "small4k";
const LARGE: &str = "large1g";
const MEDIUM: &str = "medium256m";
/// Where the S3 rows' objects live in their bucket.
const S3_PREFIX: &str = "bench";
/// Everything after this line of the report is kept across runs.
const NOTES_MARKER: &str = "<!-- analysis: kept across runs -->";

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    if let Some(backend) = &args.verify_bound {
        let backend = CryptoBackend::parse(backend).context("unknown backend")?;
        return verify_bound(backend, workers);
    }
    if let Some(file) = &args.serve_floor {
        return serve_floor(
            file,
            args.floor,
            args.read_buffer_kib as usize * 1024,
            args.floor_workers.unwrap_or(workers),
        );
    }
    if let Some(n) = args.count {
        return count::count(
            &args.bin_dir,
            n,
            args.count_keep.as_deref(),
            &args.server_arg,
        );
    }
    anyhow::ensure!(!args.pin || workers >= 2, "--pin needs two cores or more");
    let dir = tempfile::tempdir()?;
    let bench = Bench::prepare(&args, dir.path(), workers)?;
    let mut report = Report::default();
    let runs = |w: Workload| args.only.is_empty() || args.only.contains(&w);

    if runs(Workload::Crypto) {
        eprintln!("== token minting and the verify bound");
        bench.mint_and_verify(&mut report)?;
    }
    if runs(Workload::Small) {
        small(&bench, &mut report)?;
    }
    if runs(Workload::Redis) {
        redis(&bench, &mut report)?;
    }
    if runs(Workload::Streams) {
        streams(&bench, &mut report)?;
    }
    if runs(Workload::Memory) {
        memory(&bench, &mut report)?;
    }
    if runs(Workload::S3) {
        s3(&bench, &mut report)?;
    }
    if !args.only.is_empty() {
        // The rows these workloads gave, as the report would show them.
        for row in &report.rows {
            println!(
                "| {} | {} | {} | {} | {} |",
                row.workload, row.ours, row.peer, row.ratio, row.target
            );
        }
        return Ok(());
    }
    report.write(&args, workers)?;
    eprintln!(
        "wrote {} and {}",
        args.report.display(),
        args.chart.display()
    );
    Ok(())
}

/// The pause of each connection after each response in the paced loads (ms): 64 connections
/// then ask for at most about 28,000 requests a second, a third of what either server
/// answers here at saturation.
const PACE_MS: u32 = 2;

/// 4 KiB: nginx (with and without its open-file cache, and paced), bare actix-web, then ours
/// with each algorithm, paced, and without the open-file cache.
fn small(bench: &Bench<'_>, report: &mut Report) -> anyhow::Result<()> {
    let (args, dir, workers) = (bench.args, bench.dir, bench.workers);
    eprintln!("== small file, {} connections", args.connections);
    let nginx = Nginx::start(dir, SMALL, workers, false)?;
    let nginx_small = bench.wrk_small(&nginx, Algorithm::HS256, "nginx")?;
    let nginx_paced = bench.wrk_paced(&nginx, "nginx-paced")?;
    drop(nginx);
    let nginx = Nginx::start(dir, SMALL, workers, true)?;
    let nginx_cached = bench.wrk_small(&nginx, Algorithm::HS256, "nginx-open-file-cache")?;
    drop(nginx);
    let small_file = dir.join("files").join(SMALL);
    let floor = Server::floor(&small_file, Floor::Memory, bench)?;
    let floor_small = bench.wrk_small(&floor, Algorithm::HS256, "actix-floor")?;
    drop(floor);
    let floor = Server::floor(&small_file, Floor::Disk, bench)?;
    let disk_floor = bench.wrk_small(&floor, Algorithm::HS256, "actix-floor-disk")?;
    drop(floor);
    let ours = bench.download_server("memory")?;
    let eddsa = bench.wrk_small(&ours, Algorithm::EdDSA, "burnlink-eddsa")?;
    let hs = bench.wrk_small(&ours, Algorithm::HS256, "burnlink-hs256")?;
    let hs_paced = bench.wrk_paced(&ours, "burnlink-hs256-paced")?;
    drop(ours);
    let ours = Server::download(bench, "memory", &[("OPEN_FILE_CACHE", "0".into())])?;
    let uncached = bench.wrk_small(&ours, Algorithm::HS256, "burnlink-hs256-no-cache")?;
    drop(ours);
    report.small(&nginx_small, [&floor_small, &disk_floor], &eddsa, &hs);
    report.paced(&nginx_paced, &hs_paced);
    report.open_file_cache([&nginx_small, &nginx_cached], &disk_floor, [&hs, &uncached]);

    Ok(())
}

/// 4 KiB HS256 with the Redis burn store at `--redis-url`, right after the same load with the
/// memory store: Redis runs on the same cores, and its CPU time is counted with the server's.
fn redis(bench: &Bench<'_>, report: &mut Report) -> anyhow::Result<()> {
    let url = &bench.args.redis_url;
    if !redis_reachable(url) {
        report.note(format!("Redis at {url} unreachable: Redis row skipped."));
        return Ok(());
    }
    eprintln!("== small file, memory and Redis burn stores");
    let ours = bench.download_server("memory")?;
    let memory = bench.wrk_small(&ours, Algorithm::HS256, "burnlink-hs256-memory")?;
    drop(ours);
    let ours = bench.download_server(url)?;
    let with_redis = AlongWith {
        target: &ours,
        pid: redis_pid(url),
    };
    let redis = bench.wrk_small(&with_redis, Algorithm::HS256, "burnlink-hs256-redis")?;
    report.redis(&memory, &redis);
    Ok(())
}

/// 1 GiB, one stream and eight.
fn streams(bench: &Bench<'_>, report: &mut Report) -> anyhow::Result<()> {
    let (dir, workers) = (bench.dir, bench.workers);
    eprintln!("== 1 GiB file, 1 and 8 streams");
    let nginx = Nginx::start(dir, LARGE, workers, false)?;
    let nginx_one = bench.wrk_stream(&nginx, 1, "nginx")?;
    let nginx_eight = bench.wrk_stream(&nginx, 8, "nginx")?;
    drop(nginx);
    let ours = bench.download_server("memory")?;
    let ours_one = bench.wrk_stream(&ours, 1, "burnlink")?;
    let ours_eight = bench.wrk_stream(&ours, 8, "burnlink")?;
    drop(ours);
    report.streams(&nginx_one, &ours_one, &nginx_eight, &ours_eight);
    Ok(())
}

/// Loads of the memory workload per server, each on a process of its own; the median is
/// reported. One peak is not enough: single loads of one binary spread from 29 to 61 KiB
/// per stream.
const MEMORY_LOADS: usize = 3;

/// The middle value (the upper of the two middle ones for an even count).
fn median(values: &[u64]) -> u64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted[sorted.len() / 2]
}

/// Extra RSS with many slow readers: the median of [`MEMORY_LOADS`] fresh processes each.
fn memory(bench: &Bench<'_>, report: &mut Report) -> anyhow::Result<()> {
    let (args, dir, workers) = (bench.args, bench.dir, bench.workers);
    eprintln!(
        "== {} slow readers of a 256 MiB file, {MEMORY_LOADS} loads each",
        args.slow_readers
    );
    let mut nginx = Vec::new();
    let mut floor = Vec::new();
    let mut ours = Vec::new();
    let medium = dir.join("files").join(MEDIUM);
    for _ in 0..MEMORY_LOADS {
        nginx.push(bench.slow_readers(&Nginx::start(dir, MEDIUM, workers, false)?)?);
        floor.push(bench.slow_readers(&Server::floor(&medium, Floor::Stream, bench)?)?);
        ours.push(bench.slow_readers(&bench.download_server("memory")?)?);
    }
    let per_stream = |loads: &[u64]| median(loads) as f64 / args.slow_readers as f64;
    eprintln!(
        "   median per stream: nginx {:.1} KiB, bare actix-web {:.1} KiB, burnlink {:.1} KiB",
        per_stream(&nginx),
        per_stream(&floor),
        per_stream(&ours)
    );
    report.memory(args.slow_readers, [&nginx, &floor], &ours);
    Ok(())
}

/// The files in S3-compatible storage against the local directory, all through the download
/// server in this run: 4 KiB req/s and 1 GiB, 1 stream. Two stores: a private moto server
/// (Python, the tests' S3 server) and `s3s-fs` (Rust, objects as files), each skipped with a
/// note when not installed.
fn s3(bench: &Bench<'_>, report: &mut Report) -> anyhow::Result<()> {
    eprintln!("== files in S3 (moto, s3s-fs) against the local directory");
    let mut peers = Vec::new();
    match burnlink_tests::s3::moto() {
        Some(moto) => peers.push(S3Peer::moto(moto)),
        None => skipped(report, "moto (moto[server]) is not installed"),
    }
    match S3Peer::s3s_fs(bench.dir) {
        Ok(peer) => peers.push(peer),
        Err(e) => skipped(report, &format!("s3s-fs did not start ({e:#})")),
    }
    if peers.is_empty() {
        return Ok(());
    }
    let files = bench.dir.join("files");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    for peer in &peers {
        for key in [SMALL, LARGE] {
            let start = Instant::now();
            runtime.block_on(peer.upload(key, &files.join(key)))?;
            eprintln!(
                "   uploaded {key} to {} in {:.1} s",
                peer.label,
                start.elapsed().as_secs_f64()
            );
        }
    }
    let ours = bench.download_server("memory")?;
    let local_small = bench.wrk_small(&ours, Algorithm::HS256, "burnlink-local")?;
    let local_large = bench.wrk_stream(&ours, 1, "burnlink-local")?;
    drop(ours);
    for peer in &peers {
        let ours = Server::download(bench, "memory", &peer.env())?;
        // The store's CPU over each load (it idles while wrk loads its paths), as for ours.
        let cpu = || peer.pid.map_or(0.0, cpu_seconds);
        let before = cpu();
        let small =
            bench.wrk_small(&ours, Algorithm::HS256, &format!("burnlink-{}", peer.label))?;
        let small_cores = (cpu() - before) / (small.duration_us as f64 / 1e6);
        let before = cpu();
        let large = bench.wrk_stream(&ours, 1, &format!("burnlink-{}", peer.label))?;
        let large_cores = (cpu() - before) / (large.duration_us as f64 / 1e6);
        drop(ours);
        eprintln!(
            "   {} on {small_cores:.2} cores (4 KiB), {large_cores:.2} cores (1 GiB)",
            peer.label
        );
        report.s3(
            peer.label,
            (&local_small, &small, small_cores),
            (&local_large, &large, large_cores),
        );
    }
    Ok(())
}

/// A store's rows are left out, with a note in the report.
fn skipped(report: &mut Report, why: &str) {
    eprintln!("   {why}: its S3 rows skipped");
    report.note(format!("{why}: its S3 rows skipped."));
}

/// An S3-compatible server the S3 rows load: one bucket on it, objects under [`S3_PREFIX`].
struct S3Peer {
    label: &'static str,
    /// How the download server (and the upload) reach the bucket.
    settings: file_store::FileStoreArgs,
    /// The process doing its work, for its CPU time.
    pid: Option<u32>,
    /// Held to stop the server when the workload ends (moto lives as long as the process).
    _server: Option<Server>,
}

impl S3Peer {
    fn moto(moto: &burnlink_tests::s3::Moto) -> S3Peer {
        S3Peer {
            label: "moto",
            settings: moto.settings(&moto.bucket(), S3_PREFIX),
            pid: moto_pid(moto.port),
            _server: None,
        }
    }

    /// `s3s-fs` (crates.io, installed by bench/run) on a free port, keeping its objects as
    /// files under `dir`, with dummy keys: it refuses unsigned requests.
    fn s3s_fs(dir: &Path) -> anyhow::Result<S3Peer> {
        let root = dir.join("s3s-fs");
        let bucket = "burnlink-bench";
        // A bucket is a directory to s3s-fs.
        std::fs::create_dir_all(root.join(bucket))?;
        let mut child = Command::new("s3s-fs")
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(["--access-key", "testing", "--secret-key", "testing"])
            .arg(&root)
            // Its info lines at start say where it listens.
            .env("RUST_LOG", "s3s_fs=info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("is it installed? bench/run installs it")?;
        let stdout = child.stdout.take().context("stdout")?;
        let addr = BufReader::new(stdout).lines().find_map(|line| {
            let line = line.ok()?;
            line.split_once("running at http://")?.1.trim().parse().ok()
        });
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("s3s-fs exited before it listened");
        };
        let server = Server { child, addr };
        Ok(S3Peer {
            label: "s3s-fs",
            settings: file_store::FileStoreArgs {
                file_store: format!("s3://{bucket}/{S3_PREFIX}"),
                aws_endpoint_url: Some(server.base()),
                aws_access_key_id: Some("testing".into()),
                aws_secret_access_key: Some("testing".into()),
                aws_region: Some("us-east-1".into()),
                s3_path_style: true,
                ..file_store::FileStoreArgs::default()
            },
            pid: Some(server.child.id()),
            _server: Some(server),
        })
    }

    /// `file` under `key`, the way the app server uploads: a streaming multipart upload
    /// through the file store, 1 MiB at a time (never whole in memory).
    async fn upload(&self, key: &str, file: &Path) -> anyhow::Result<()> {
        use file_store::FileStore;
        use tokio::io::AsyncReadExt;
        let files = self.settings.build(PathBuf::new())?;
        let mut upload = files.create(&StorageKey::parse(key)?).await?;
        let mut file = tokio::fs::File::open(file).await?;
        loop {
            let mut chunk = bytes::BytesMut::with_capacity(1 << 20);
            while chunk.len() < chunk.capacity() {
                if file.read_buf(&mut chunk).await? == 0 {
                    break;
                }
            }
            if chunk.is_empty() {
                break;
            }
            upload.write(chunk.freeze()).await?;
        }
        upload.finish().await?;
        Ok(())
    }

    /// The download server's settings for this store, as environment variables.
    fn env(&self) -> Vec<(&'static str, String)> {
        let s = &self.settings;
        let mut env = vec![
            ("FILE_STORE", s.file_store.clone()),
            ("S3_PATH_STYLE", s.s3_path_style.to_string()),
        ];
        for (name, value) in [
            ("AWS_ENDPOINT_URL", &s.aws_endpoint_url),
            ("AWS_ACCESS_KEY_ID", &s.aws_access_key_id),
            ("AWS_SECRET_ACCESS_KEY", &s.aws_secret_access_key),
            ("AWS_REGION", &s.aws_region),
        ] {
            env.extend(value.clone().map(|v| (name, v)));
        }
        env
    }
}

/// The `moto_server` process listening on `port` (its command line names the port).
fn moto_pid(port: u16) -> Option<u32> {
    let port = port.to_string();
    std::fs::read_dir("/proc").ok()?.find_map(|entry| {
        let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let is_moto = args.contains(&b"moto.server".as_slice())
            && args.windows(2).any(|w| w == [b"-p", port.as_bytes()]);
        is_moto.then_some(pid)
    })
}

/// What the minting loop and the verify bound sign: minute-long claims on the small file,
/// its key and name parsed once, outside the measured loops.
struct SmallFileClaims {
    storage: StorageKey,
    name: DownloadName,
}

impl SmallFileClaims {
    fn new() -> anyhow::Result<SmallFileClaims> {
        Ok(SmallFileClaims {
            storage: StorageKey::parse(SMALL)?,
            name: DownloadName::parse("small.bin")?,
        })
    }

    fn now(&self) -> Claims {
        Claims::new(
            ISSUER,
            AUDIENCE,
            "bench",
            &self.storage,
            &self.name,
            shared::unix_now(),
            60,
        )
    }
}

/// The verifier on the same 2,000 tokens on every core for 3 s: what a download costs when
/// everything but the token check is free. Prints `<alg> <path> <verifies/s>`: `burnlink` for
/// `Verifier::verify` (which no jsonwebtoken backend touches, so it is measured once, in the
/// `rust_crypto` process), `jsonwebtoken` for the reference path through
/// `jsonwebtoken::decode` with `backend` (the server's path before issue 18).
fn verify_bound(backend: CryptoBackend, workers: usize) -> anyhow::Result<()> {
    if !backend.install() {
        bail!("a jsonwebtoken backend was already chosen");
    }
    let claims = SmallFileClaims::new()?;
    for alg in [Algorithm::EdDSA, Algorithm::HS256] {
        let key = SigningKey::generate(alg);
        let tokens: Vec<String> = (0..2000)
            .map(|_| key.mint(&claims.now()))
            .collect::<Result<_, _>>()?;
        let verifier = Verifier::new([key.verifying_key().clone()], Policy::new(ISSUER, AUDIENCE));
        if backend == CryptoBackend::RustCrypto {
            let rate = on_every_core(workers, || {
                each_of_100(&tokens, |t| verifier.verify(t).is_ok())
            });
            println!("{alg} burnlink {rate:.0}");
        }
        let now = shared::unix_now();
        let rate = on_every_core(workers, || {
            each_of_100(&tokens, |t| {
                verifier.verify_with_jsonwebtoken_at(t, now).is_ok()
            })
        });
        println!("{alg} jsonwebtoken {rate:.0}");
        if alg == Algorithm::EdDSA && backend == CryptoBackend::RustCrypto {
            batch_bound(&verifier, &tokens, workers);
        }
    }
    Ok(())
}

/// Checks per second on `workers` threads for 3 s, each thread repeating `round` (which
/// returns how many it checked).
fn on_every_core(workers: usize, round: impl Fn() -> u64 + Sync) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(3);
    let start = Instant::now();
    let checked: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        n += round();
                    }
                    n
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("verify thread"))
            .sum()
    });
    checked as f64 / start.elapsed().as_secs_f64()
}

/// One round of `check` over the first 100 of `tokens`.
fn each_of_100(tokens: &[String], check: impl Fn(&str) -> bool) -> u64 {
    for t in &tokens[..100] {
        assert!(check(t));
    }
    100
}

/// The EdDSA bound through `Verifier::verify_batch_allowing_expiry_at` in batches of 32, the
/// download server's batch path under load (issue 18). Prints `EdDSA batch32 <verifies/s>`.
fn batch_bound(verifier: &Verifier, tokens: &[String], workers: usize) {
    const BATCH: usize = 32;
    let now = shared::unix_now();
    let items: Vec<(&str, u64)> = tokens.iter().map(|t| (t.as_str(), now)).collect();
    let rate = on_every_core(workers, || {
        for chunk in items[..320].chunks(BATCH) {
            let answers = verifier.verify_batch_allowing_expiry_at(chunk);
            assert!(answers.iter().all(Result::is_ok));
        }
        320
    });
    println!("EdDSA batch{BATCH} {rate:.0}");
}

/// Bare actix-web with the download server's settings (workers, `TCP_NODELAY`, write buffer)
/// answering every `/d/*` with the file, as `floor` says: what any actix-web server can reach
/// here.
fn serve_floor(file: &Path, floor: Floor, chunk: usize, workers: usize) -> anyhow::Result<()> {
    use actix_web::{App, HttpResponse, HttpServer, web};
    let body = bytes::Bytes::from(std::fs::read(file)?);
    let file = file.to_owned();
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(move || {
            let (body, file) = (body.clone(), file.clone());
            App::new().service(web::scope("/d").default_service(web::to(move || {
                let mut res = HttpResponse::Ok();
                res.content_type("application/octet-stream")
                    .insert_header(("cache-control", "no-store"));
                let res = match floor {
                    Floor::Memory => Ok(res.body(body.clone())),
                    // On the worker, as nginx does: the file is in the page cache.
                    Floor::Disk => read_whole(&file).map(|bytes| res.body(bytes)),
                    Floor::Stream => {
                        let (body, size) = (body.clone(), body.len());
                        let chunks = (0..size).step_by(chunk).map(move |at| {
                            Ok::<_, std::io::Error>(body.slice(at..size.min(at + chunk)))
                        });
                        let size = size as u64;
                        let stream = futures_util::stream::iter(chunks);
                        Ok(res.body(actix_web::body::SizedStream::new(size, stream)))
                    }
                };
                async move { res.map_err(actix_web::Error::from) }
            })))
        })
        .workers(workers)
        .tcp_nodelay(true)
        // The download server's (`download-server/src/lib.rs`).
        .h1_write_buffer_size(8 * 1024)
        .bind("127.0.0.1:0")?;
        println!("http://{}", server.addrs()[0]);
        server.run().await
    })?;
    Ok(())
}

/// The file in one read after its size: `openat`, `statx`, `read`, `close`, the system calls
/// the download server makes for a small file.
fn read_whole(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut bytes = vec![0; file.metadata()?.len() as usize];
    file.read_exact(&mut bytes)?;
    Ok(bytes)
}

struct Bench<'a> {
    args: &'a Args,
    dir: &'a Path,
    workers: usize,
    eddsa: SigningKey,
    hs256: SigningKey,
}

impl<'a> Bench<'a> {
    fn prepare(args: &'a Args, dir: &'a Path, workers: usize) -> anyhow::Result<Bench<'a>> {
        let files = dir.join("files");
        std::fs::create_dir_all(&files)?;
        write_file(&files.join(SMALL), 4 * 1024)?;
        write_file(&files.join(MEDIUM), 256 << 20)?;
        write_file(&files.join(LARGE), 1 << 30)?;
        let keys = dir.join("keys");
        let eddsa = SigningKey::load_or_generate(&keys.join("ed25519.pem"), Algorithm::EdDSA)?;
        let hs256 = SigningKey::load_or_generate(&keys.join("hs256.key"), Algorithm::HS256)?;
        let jwks = serde_json::to_string(&shared::jwks([eddsa.verifying_key()]))?;
        std::fs::write(keys.join("jwks.json"), jwks)?;
        // nginx workers may run as another user: let them through the temp dir.
        for path in [dir, files.as_path()] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
        }
        Ok(Bench {
            args,
            dir,
            workers,
            eddsa,
            hs256,
        })
    }

    fn key(&self, alg: Algorithm) -> &SigningKey {
        match alg {
            Algorithm::EdDSA => &self.eddsa,
            Algorithm::HS256 => &self.hs256,
        }
    }

    fn download_server(&self, burn_store: &str) -> anyhow::Result<Server> {
        Server::download(self, burn_store, &[])
    }

    /// Writes `count` download paths, each with a fresh token, minted on every core.
    fn mint_paths(&self, alg: Algorithm, file: &str, count: usize) -> anyhow::Result<PathBuf> {
        let key = self.key(alg);
        let storage = StorageKey::parse(file)?;
        let name = DownloadName::parse(&format!("{file}.bin"))?;
        let per_thread = count.div_ceil(self.workers);
        let chunks: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..self.workers)
                .map(|_| {
                    s.spawn(|| {
                        let mut out = String::with_capacity(per_thread * 400);
                        for _ in 0..per_thread {
                            let claims = Claims::new(
                                ISSUER,
                                AUDIENCE,
                                "bench",
                                &storage,
                                &name,
                                shared::unix_now(),
                                Policy::DEFAULT_MAX_LIFETIME,
                            );
                            let token = key.mint(&claims).expect("minting never fails here");
                            let _ = writeln!(out, "/d/{token}");
                        }
                        out
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("minting thread"))
                .collect()
        });
        let path = self.dir.join(format!("paths-{alg}-{file}.txt"));
        std::fs::write(&path, chunks.concat())?;
        Ok(path)
    }

    /// Minting on one core, here; the verify bound of each jsonwebtoken backend in a process
    /// of its own (jsonwebtoken takes one backend per process).
    fn mint_and_verify(&self, report: &mut Report) -> anyhow::Result<()> {
        let claims = SmallFileClaims::new()?;
        for alg in [Algorithm::EdDSA, Algorithm::HS256] {
            let key = self.key(alg);
            let start = Instant::now();
            let mut minted = 0u64;
            while start.elapsed() < Duration::from_secs(2) {
                for _ in 0..100 {
                    std::hint::black_box(key.mint(&claims.now())?);
                }
                minted += 100;
            }
            let rate = minted as f64 / start.elapsed().as_secs_f64();
            eprintln!("   {alg}: mint {rate:.0}/s on 1 core");
            report.mint(alg, rate);
        }
        for backend in CryptoBackend::ALL {
            let out = Command::new(std::env::current_exe()?)
                .args(["--verify-bound", backend.name()])
                .stderr(Stdio::inherit())
                .output()?;
            if !out.status.success() {
                bail!("verify bound with {}: {}", backend.name(), out.status);
            }
            for line in String::from_utf8(out.stdout)?.lines() {
                let mut fields = line.split(' ');
                let (Some(alg), Some(path), Some(rate)) =
                    (fields.next(), fields.next(), fields.next())
                else {
                    bail!("verify bound output {line:?}");
                };
                let alg: Algorithm = alg.parse()?;
                let rate: f64 = rate.parse()?;
                let path = match path {
                    "burnlink" => "burnlink's verifier".to_owned(),
                    batch if batch.starts_with("batch") => {
                        format!("burnlink's verifier in batches of {}", &batch[5..])
                    }
                    _ => format!("jsonwebtoken::decode, {}", backend.name()),
                };
                eprintln!(
                    "   {alg}: verify {rate:.0}/s on {} cores, {path}",
                    self.workers
                );
                report.verify_bound(alg, &path, rate);
            }
        }
        Ok(())
    }

    fn wrk_small(&self, target: &dyn Target, alg: Algorithm, label: &str) -> anyhow::Result<Wrk> {
        self.wrk_small_pausing(target, alg, 0, label)
    }

    /// [`Bench::wrk_small`] with HS256 at a pace below either server's capacity: each
    /// connection pauses [`PACE_MS`] after each response. At saturation a closed loop's
    /// latency is mostly its queue (connections divided by req/s, Little's law), so its p99
    /// says how fast a server is; at one pace for both it says how long a request waits.
    fn wrk_paced(&self, target: &dyn Target, label: &str) -> anyhow::Result<Wrk> {
        self.wrk_small_pausing(target, Algorithm::HS256, PACE_MS, label)
    }

    fn wrk_small_pausing(
        &self,
        target: &dyn Target,
        alg: Algorithm,
        pause_ms: u32,
        label: &str,
    ) -> anyhow::Result<Wrk> {
        // Enough fresh tokens for the whole run at a rate no server here reaches.
        let ceiling = match alg {
            Algorithm::EdDSA => 40_000,
            Algorithm::HS256 => 90_000,
        };
        let count = (ceiling * (self.args.duration as usize + 2)).min(1_200_000);
        let paths = self.mint_paths(alg, SMALL, count)?;
        let load = Load {
            threads: self.workers,
            connections: self.args.connections,
            seconds: self.args.duration,
            pause_ms,
            pin: self.args.pin,
        };
        wrk(target, &paths, &load, label)
    }

    fn wrk_stream(&self, target: &dyn Target, streams: u32, label: &str) -> anyhow::Result<Wrk> {
        let paths = self.mint_paths(Algorithm::HS256, LARGE, 2000)?;
        let load = Load {
            threads: self.workers.min(streams as usize),
            connections: streams,
            seconds: self.args.stream_duration,
            pause_ms: 0,
            pin: self.args.pin,
        };
        wrk(target, &paths, &load, label)
    }

    /// Peak extra RSS (KiB) of `pids` while `slow_readers` clients each read a 256 MiB file
    /// at 160 KiB/s for 12 s.
    fn slow_readers(&self, target: &dyn Target) -> anyhow::Result<u64> {
        let pids = target.pids();
        let paths = self.mint_paths(Algorithm::HS256, MEDIUM, self.args.slow_readers)?;
        let paths: Vec<String> = std::fs::read_to_string(paths)?
            .lines()
            .map(str::to_owned)
            .collect();
        let addr: SocketAddr = target.base().trim_start_matches("http://").parse()?;
        let baseline: u64 = pids.iter().map(|&p| rss_kib(p)).sum();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let peak = runtime.block_on(async {
            let readers: Vec<_> = paths
                .into_iter()
                .map(|path| tokio::spawn(slow_read(addr, path, Duration::from_secs(12))))
                .collect();
            let mut peak = baseline;
            let deadline = Instant::now() + Duration::from_secs(12);
            while Instant::now() < deadline {
                peak = peak.max(pids.iter().map(|&p| rss_kib(p)).sum());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let mut failed = 0;
            for r in readers {
                if !matches!(r.await, Ok(Ok(()))) {
                    failed += 1;
                }
            }
            if failed > 0 {
                eprintln!("   {failed} slow readers failed");
            }
            peak
        });
        eprintln!("   rss baseline {baseline} KiB, peak {peak} KiB");
        Ok(peak.saturating_sub(baseline))
    }
}

/// A client that asks for the whole file and then reads 16 KiB every 100 ms until `hold`.
async fn slow_read(addr: SocketAddr, path: String, hold: Duration) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n").as_bytes())
        .await?;
    let mut buf = vec![0u8; 16 * 1024];
    let deadline = Instant::now() + hold;
    let mut first = true;
    while Instant::now() < deadline {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::other("closed early"));
        }
        if first {
            first = false;
            if !buf.starts_with(b"HTTP/1.1 200") {
                return Err(std::io::Error::other("not a 200"));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn write_file(path: &Path, size: usize) -> std::io::Result<()> {
    let block: Vec<u8> = (0..1 << 20).map(|i: usize| (i * 31 % 251) as u8).collect();
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut left = size;
    while left > 0 {
        let n = left.min(block.len());
        file.write_all(&block[..n])?;
        left -= n;
    }
    file.flush()?;
    // Written back before any load, not while the first ones run (1.3 GiB in all).
    file.get_ref().sync_all()
}

/// A connection to the Redis at `url` (`redis://[creds@]host:port[/db]`), within a second.
fn redis_connect(url: &str) -> Option<std::net::TcpStream> {
    let hostport = url.strip_prefix("redis://")?.split(['/', '?']).next()?;
    let addr: SocketAddr = hostport.rsplit('@').next()?.parse().ok()?;
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()
}

fn redis_reachable(url: &str) -> bool {
    redis_connect(url).is_some()
}

/// The process id Redis at `url` reports (`INFO server`), when it runs on this machine.
fn redis_pid(url: &str) -> Option<u32> {
    use std::io::Read as _;
    let mut conn = redis_connect(url)?;
    conn.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    conn.write_all(b"INFO server\r\n").ok()?;
    let mut reply = vec![0u8; 16 * 1024];
    let n = conn.read(&mut reply).ok()?;
    let reply = String::from_utf8_lossy(&reply[..n]);
    let pid = reply.lines().find_map(|l| l.strip_prefix("process_id:"))?;
    let pid: u32 = pid.trim().parse().ok()?;
    // Another machine's (or container's) process id names nothing here.
    std::path::Path::new(&format!("/proc/{pid}/comm"))
        .exists()
        .then_some(pid)
}

/// A target whose CPU time is counted with another process's (a Redis it depends on).
struct AlongWith<'a> {
    target: &'a dyn Target,
    pid: Option<u32>,
}

impl Target for AlongWith<'_> {
    fn base(&self) -> String {
        self.target.base()
    }

    fn pids(&self) -> Vec<u32> {
        let mut pids = self.target.pids();
        pids.extend(self.pid);
        pids
    }

    fn own_pids(&self) -> Vec<u32> {
        self.target.own_pids()
    }
}

/// One wrk run's figures.
#[derive(Debug, Clone, serde::Deserialize)]
struct Wrk {
    requests: u64,
    duration_us: u64,
    bytes: u64,
    status_errors: u64,
    socket_errors: u64,
    p50_us: u64,
    p99_us: u64,
    /// Cores the server's processes used on average during the load (the rest went to wrk
    /// and the kernel's loopback work).
    #[serde(skip)]
    server_cores: f64,
    /// The same for each of the target's processes, in [`Target::pids`]'s order.
    #[serde(skip)]
    cores_by_process: Vec<f64>,
}

impl Wrk {
    fn rps(&self) -> f64 {
        self.requests as f64 / (self.duration_us as f64 / 1e6)
    }

    /// `N req/s, p99 N µs, server on N cores`.
    fn throughput(&self) -> String {
        format!(
            "{:.0} req/s, p99 {} µs, server on {:.2} cores",
            self.rps(),
            self.p99_us,
            self.server_cores
        )
    }

    fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / (self.duration_us as f64 / 1e6)
    }
}

/// CPU seconds a process has used so far (user and system), from /proc; 0 once it is gone.
fn cpu_seconds(pid: u32) -> f64 {
    // USER_HZ is 100 on every Linux architecture we run on.
    const HZ: f64 = 100.0;
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // After the `(comm)` field: state is field 3, utime 14 and stime 15.
    let fields: Vec<f64> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    fields
        .get(11)
        .zip(fields.get(12))
        .map_or(0.0, |(u, s)| (u + s) / HZ)
}

/// A server under load: where to send requests, and which processes do its work.
trait Target {
    fn base(&self) -> String;
    fn pids(&self) -> Vec<u32>;
    /// The processes `--pin` pins: the server's own (not a store beside it).
    fn own_pids(&self) -> Vec<u32> {
        self.pids()
    }
}

/// One wrk load.
struct Load {
    threads: usize,
    connections: u32,
    seconds: u64,
    /// Each connection's pause after each response, ms (`bench/walk.lua`'s `WALK_PAUSE_MS`);
    /// 0: none, the server's saturation.
    pause_ms: u32,
    /// `--pin`: the loaded server on the first core, wrk on the last.
    pin: bool,
}

/// wrk's command; with `pin`, every thread of `target`'s own processes is moved onto core 0
/// first, and wrk runs on the last core.
fn pinned_wrk(target: &dyn Target, pin: bool) -> anyhow::Result<Command> {
    if !pin {
        return Ok(Command::new("wrk"));
    }
    for pid in target.own_pids() {
        let status = Command::new("taskset")
            .args(["--all-tasks", "--pid", "--cpu-list", "0", &pid.to_string()])
            .stdout(Stdio::null())
            .status()
            .context("running taskset (util-linux)")?;
        anyhow::ensure!(status.success(), "taskset could not pin process {pid}");
    }
    let last = std::thread::available_parallelism().map_or(1, |n| n.get()) - 1;
    let mut wrk = Command::new("taskset");
    wrk.args(["--cpu-list", &last.to_string(), "wrk"]);
    Ok(wrk)
}

fn wrk(target: &dyn Target, paths: &Path, load: &Load, label: &str) -> anyhow::Result<Wrk> {
    let Load {
        threads,
        connections,
        seconds,
        pause_ms,
        pin,
    } = *load;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("walk.lua");
    let pids = target.pids();
    let cpu = || pids.iter().map(|&p| cpu_seconds(p)).collect::<Vec<f64>>();
    let mut command = pinned_wrk(target, pin)?;
    if pause_ms > 0 {
        command.env("WALK_PAUSE_MS", pause_ms.to_string());
    }
    let before = cpu();
    let output = command
        .args([
            &format!("-t{threads}"),
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--timeout",
            "30s",
            "--latency",
            "-s",
        ])
        .arg(&script)
        .arg(target.base())
        .arg("--")
        .arg(paths)
        .arg(threads.to_string())
        .output()
        .context("running wrk (is it installed?)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let json = stdout
        .lines()
        .find_map(|l| l.strip_prefix("BENCH_JSON "))
        .with_context(|| {
            format!(
                "wrk printed no result: {stdout} {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
    let mut result: Wrk = serde_json::from_str(json)?;
    // The server idles while wrk loads its paths, so its CPU time is all load time.
    let seconds = result.duration_us as f64 / 1e6;
    result.cores_by_process = cpu()
        .iter()
        .zip(&before)
        .map(|(after, before)| (after - before) / seconds)
        .collect();
    result.server_cores = result.cores_by_process.iter().sum();
    eprintln!(
        "   {label:<22} {:>10.0} req/s {:>9.1} MB/s  p50 {:>6} us  p99 {:>6} us  errors {}/{}  \
         server cores {:.2}",
        result.rps(),
        result.mb_per_s(),
        result.p50_us,
        result.p99_us,
        result.status_errors,
        result.socket_errors,
        result.server_cores,
    );
    if result.status_errors > 0 {
        eprintln!(
            "   warning: {label} answered {} non-2xx statuses",
            result.status_errors
        );
    }
    Ok(result)
}

/// The address a server prints as `... http://<address>` on its first line.
fn announced_address(child: &mut Child) -> anyhow::Result<SocketAddr> {
    let stdout = child.stdout.take().context("stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    line.trim()
        .rsplit("http://")
        .next()
        .and_then(|a| a.parse().ok())
        .with_context(|| format!("the server said {line:?}"))
}

/// A server process, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    /// The framework ceiling ([`serve_floor`]) serving `file` as `floor` says.
    fn floor(file: &Path, floor: Floor, bench: &Bench<'_>) -> anyhow::Result<Server> {
        let floor = clap::ValueEnum::to_possible_value(&floor).context("floor")?;
        let child = Command::new(std::env::current_exe()?)
            .arg("--serve-floor")
            .arg(file)
            .args(["--floor", floor.get_name()])
            .args(["--read-buffer-kib", &bench.args.read_buffer_kib.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        Server::announced(child)
    }

    /// The release download server on a free port; `env` adds settings (the file store's).
    fn download(
        bench: &Bench<'_>,
        burn_store: &str,
        env: &[(&str, String)],
    ) -> anyhow::Result<Server> {
        let keys = bench.dir.join("keys");
        let child = Command::new(bench.args.bin_dir.join("download-server"))
            .args(["--bind", "127.0.0.1:0", "--burn-store", burn_store])
            .arg("--data-dir")
            .arg(bench.dir)
            .arg("--jwks-file")
            .arg(keys.join("jwks.json"))
            .arg("--hs256-secret-file")
            .arg(keys.join("hs256.key"))
            .args(["--workers", &bench.workers.to_string()])
            .args(["--read-buffer-kib", &bench.args.read_buffer_kib.to_string()])
            .env("RUST_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting download-server (built with --release?)")?;
        Server::announced(child)
    }

    /// A server that prints `... http://<address>` as its first line.
    fn announced(mut child: Child) -> anyhow::Result<Server> {
        let addr = announced_address(&mut child)?;
        Ok(Server { child, addr })
    }
}

impl Target for Server {
    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn pids(&self) -> Vec<u32> {
        vec![self.child.id()]
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx serving one file for every `/d/<anything>`, as fast as Debian's nginx goes:
/// sendfile, no access log, one worker per core.
struct Nginx {
    server: Server,
    pid_file: PathBuf,
    conf_dir: PathBuf,
}

impl Drop for Nginx {
    /// `nginx -s stop` (SIGTERM to the master, which stops its workers): killing the master
    /// alone would leave its workers running, orphaned, after the run.
    fn drop(&mut self) {
        let _ = Command::new("nginx")
            .arg("-c")
            .arg(self.conf_dir.join("nginx.conf"))
            .arg("-p")
            .arg(&self.conf_dir)
            .args(["-s", "stop"])
            .stderr(Stdio::null())
            .status();
        let _ = self.server.child.wait();
    }
}

impl Nginx {
    /// With `open_file_cache`: descriptors and sizes kept for a minute, unchecked for as long
    /// (the peer of the download server's `--open-file-cache`).
    fn start(
        dir: &Path,
        file: &str,
        workers: usize,
        open_file_cache: bool,
    ) -> anyhow::Result<Nginx> {
        let conf_dir = dir.join(format!("nginx-{file}-{open_file_cache}"));
        let cache = if open_file_cache {
            "open_file_cache max=1000 inactive=60s;\n    open_file_cache_valid 60s;"
        } else {
            ""
        };
        std::fs::create_dir_all(&conf_dir)?;
        // nginx cannot report a port it picked, so take a free one and hand it over (a tiny
        // race, acceptable for a benchmark on a quiet machine).
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let pid_file = conf_dir.join("nginx.pid");
        let user = if unsafe_is_root() { "user root;" } else { "" };
        let conf = format!(
            "{user}
worker_processes {workers};
daemon off;
pid {pid};
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    {cache}
    keepalive_requests 1000000;
    client_body_temp_path {dir};
    proxy_temp_path {dir};
    fastcgi_temp_path {dir};
    uwsgi_temp_path {dir};
    scgi_temp_path {dir};
    types {{ }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {files};
        location /d/ {{
            add_header Cache-Control no-store;
            rewrite ^ /{file} break;
        }}
    }}
}}
",
            pid = pid_file.display(),
            dir = conf_dir.display(),
            files = dir.join("files").display(),
        );
        let conf_path = conf_dir.join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let child = Command::new("nginx")
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(&conf_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting nginx (is it installed?)")?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            if Instant::now() > deadline {
                bail!("nginx did not start listening on {addr}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Nginx {
            server: Server { child, addr },
            pid_file,
            conf_dir,
        })
    }
}

impl Target for Nginx {
    fn base(&self) -> String {
        self.server.base()
    }

    /// The worker processes (children of the master), which do the serving.
    fn pids(&self) -> Vec<u32> {
        let master = std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .unwrap_or(self.server.child.id());
        std::fs::read_to_string(format!("/proc/{master}/task/{master}/children"))
            .map(|s| {
                s.split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn unsafe_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// The figures of one run, rendered as markdown and a chart.
#[derive(Default)]
struct Report {
    /// The EdDSA verify bound with the download server's backend.
    eddsa_bound: f64,
    rows: Vec<Row>,
    ratios: Vec<(String, f64, f64)>,
    notes: Vec<String>,
}

struct Row {
    workload: String,
    ours: String,
    peer: String,
    ratio: String,
    target: String,
}

impl Report {
    fn row(
        &mut self,
        workload: &str,
        ours: String,
        peer: String,
        ratio: Option<f64>,
        target: &str,
    ) {
        self.rows.push(Row {
            workload: workload.into(),
            ours,
            peer,
            ratio: ratio.map_or("".into(), |r| format!("{r:.2}x")),
            target: target.into(),
        });
    }

    fn note(&mut self, note: String) {
        self.notes.push(note);
    }

    fn mint(&mut self, alg: Algorithm, mint: f64) {
        self.row(
            &format!("{alg} minting, 1 core (tokens/s)"),
            format!("{mint:.0}"),
            "".into(),
            None,
            "≥ 20,000",
        );
        self.ratios
            .push((format!("{alg} mint / 20k"), mint / 20_000.0, 1.0));
    }

    fn verify_bound(&mut self, alg: Algorithm, path: &str, verify: f64) {
        self.row(
            &format!("{alg} verify bound, all cores, {path} (verifies/s)"),
            format!("{verify:.0}"),
            "".into(),
            None,
            "",
        );
        // What the download server runs.
        if alg == Algorithm::EdDSA && path == "burnlink's verifier" {
            self.eddsa_bound = verify;
        }
    }

    /// `floors`: bare actix-web from memory, then reading the file per request.
    fn small(&mut self, nginx: &Wrk, floors: [&Wrk; 2], eddsa: &Wrk, hs: &Wrk) {
        let [floor, disk_floor] = floors;
        let bound = self.eddsa_bound;
        let req_s = |w: &Wrk| format!("{:.0} req/s", w.rps());
        let rps = |w: &Wrk| {
            format!(
                "{:.0} req/s, p50 {} µs, p99 {} µs, server on {:.2} cores",
                w.rps(),
                w.p50_us,
                w.p99_us,
                w.server_cores
            )
        };
        self.row(
            "4 KiB, HS256, verify + burn + file (req/s)",
            rps(hs),
            rps(nginx),
            Some(hs.rps() / nginx.rps()),
            "≥ 0.8x",
        );
        self.row(
            "4 KiB from memory, bare actix-web: the framework's ceiling (req/s)",
            rps(floor),
            rps(nginx),
            Some(floor.rps() / nginx.rps()),
            "",
        );
        self.row(
            "4 KiB, HS256, against that ceiling (req/s)",
            req_s(hs),
            req_s(floor),
            Some(hs.rps() / floor.rps()),
            "",
        );
        self.row(
            "4 KiB from disk, bare actix-web: open, stat, read and close per request (req/s)",
            rps(disk_floor),
            rps(nginx),
            Some(disk_floor.rps() / nginx.rps()),
            "",
        );
        self.row(
            "4 KiB, HS256, against the ceiling from disk: token, burn and headers (req/s)",
            req_s(hs),
            req_s(disk_floor),
            Some(hs.rps() / disk_floor.rps()),
            "",
        );
        self.row(
            "4 KiB, HS256: p99 latency at each server's saturation (a closed loop: its mean is \
             connections / req/s)",
            format!("{} µs", hs.p99_us),
            format!("{} µs", nginx.p99_us),
            Some(hs.p99_us as f64 / nginx.p99_us as f64),
            "",
        );
        // The bound comes from the crypto workload: not measured when `--only` left it out.
        if bound > 0.0 {
            self.row(
                "4 KiB, EdDSA (req/s) against the verify bound (one at a time)",
                rps(eddsa),
                format!("{bound:.0} verifies/s"),
                Some(eddsa.rps() / bound),
                "",
            );
            // wrk shares the cores: the bound scaled to the CPU the server got is what it
            // could reach if everything but the signature check were free.
            let cores = std::thread::available_parallelism().map_or(2.0, |n| n.get() as f64);
            let left = bound * eddsa.server_cores / cores;
            self.row(
                &format!(
                    "4 KiB, EdDSA, against the bound on the {:.2} cores the server got (req/s)",
                    eddsa.server_cores
                ),
                req_s(eddsa),
                format!("{left:.0} verifies/s"),
                Some(eddsa.rps() / left),
                "",
            );
        }
        self.row(
            "4 KiB, EdDSA (req/s) against nginx",
            req_s(eddsa),
            req_s(nginx),
            Some(eddsa.rps() / nginx.rps()),
            "≥ 0.5x",
        );
        // Issue 29's targets (issue 18's floors: bare actix-web reading the file reaches
        // 0.89-0.96x nginx on these machines, so 1.0x is no target for a server that does).
        self.ratios
            .push(("4 KiB HS256 req/s".into(), hs.rps() / nginx.rps(), 0.8));
        self.ratios.push((
            "4 KiB HS256 p99 (nginx/ours)".into(),
            nginx.p99_us as f64 / hs.p99_us as f64,
            1.0 / 1.5,
        ));
        self.ratios
            .push(("4 KiB EdDSA req/s".into(), eddsa.rps() / nginx.rps(), 0.5));
        self.small_errors(&[
            ("nginx", nginx),
            ("actix-web", floor),
            ("actix-web from disk", disk_floor),
            ("EdDSA", eddsa),
            ("HS256", hs),
        ]);
    }

    /// The open-file cache (issue 29): ours with and without it, against nginx with and
    /// without its own, and each one's server CPU per download against the disk floor's.
    fn open_file_cache(&mut self, nginx: [&Wrk; 2], disk_floor: &Wrk, ours: [&Wrk; 2]) {
        let [nginx, nginx_cached] = nginx;
        let [cached, uncached] = ours;
        let rps = Wrk::throughput;
        // Server CPU per download, µs.
        let cpu = |w: &Wrk| w.server_cores / w.rps() * 1e6;
        self.row(
            "4 KiB, HS256, open-file cache (the default) against nginx with its `open_file_cache` (req/s)",
            rps(cached),
            rps(nginx_cached),
            Some(cached.rps() / nginx_cached.rps()),
            "",
        );
        self.row(
            "4 KiB, HS256, `--open-file-cache 0` (req/s) against nginx",
            rps(uncached),
            rps(nginx),
            Some(uncached.rps() / nginx.rps()),
            "",
        );
        for (label, w) in [
            ("open-file cache", cached),
            ("`--open-file-cache 0`", uncached),
        ] {
            self.row(
                &format!("4 KiB, HS256, {label}: server CPU per download against the disk floor's"),
                format!("{:.1} µs", cpu(w)),
                format!("{:.1} µs", cpu(disk_floor)),
                Some(cpu(w) / cpu(disk_floor)),
                "≤ 1.4x",
            );
        }
        self.small_errors(&[
            ("nginx with open_file_cache", nginx_cached),
            ("HS256 without the open-file cache", uncached),
        ]);
    }

    /// A note for each small-file load that had errors.
    fn small_errors(&mut self, loads: &[(&str, &Wrk)]) {
        for (label, w) in loads {
            if w.status_errors + w.socket_errors > 0 {
                self.notes.push(format!(
                    "{label} small-file run had {} non-2xx and {} socket errors.",
                    w.status_errors, w.socket_errors
                ));
            }
        }
    }

    /// p99 at one pace for both servers ([`Bench::wrk_paced`]).
    fn paced(&mut self, nginx: &Wrk, hs: &Wrk) {
        let shown = |w: &Wrk| {
            format!(
                "{} µs ({:.0} req/s, p50 {} µs)",
                w.p99_us,
                w.rps(),
                w.p50_us
            )
        };
        self.row(
            &format!(
                "4 KiB, HS256: p99 latency at one pace for both (each connection pausing \
                 {PACE_MS} ms after each response)"
            ),
            shown(hs),
            shown(nginx),
            Some(hs.p99_us as f64 / nginx.p99_us as f64),
            "≤ 1.5x",
        );
    }

    fn redis(&mut self, memory: &Wrk, redis: &Wrk) {
        self.row(
            "4 KiB, HS256, Redis burn store (req/s) against memory",
            format!(
                "{:.0} req/s, p99 {} µs, server and Redis on {:.2} cores",
                redis.rps(),
                redis.p99_us,
                redis.server_cores
            ),
            format!(
                "{:.0} req/s, p99 {} µs (memory)",
                memory.rps(),
                memory.p99_us
            ),
            Some(redis.rps() / memory.rps()),
            "≥ 0.75x",
        );
        // Where the cores went: the download server and Redis apart (Redis is the last
        // process of the load's target when its process was found).
        if let [server, redis_server] = redis.cores_by_process[..] {
            let per_download = |cores: f64, w: &Wrk| cores / w.rps() * 1e6;
            self.row(
                "4 KiB, HS256, Redis burn store: CPU per download, download server + Redis, against the memory store's",
                format!(
                    "{:.1} µs + {:.1} µs (server on {server:.2} cores, Redis on {redis_server:.2})",
                    per_download(server, redis),
                    per_download(redis_server, redis),
                ),
                format!("{:.1} µs", per_download(memory.server_cores, memory)),
                Some(
                    per_download(server + redis_server, redis)
                        / per_download(memory.server_cores, memory),
                ),
                "",
            );
        }
        self.ratios.push((
            "Redis / memory burn store".into(),
            redis.rps() / memory.rps(),
            0.75,
        ));
    }

    fn streams(&mut self, nginx_one: &Wrk, ours_one: &Wrk, nginx_eight: &Wrk, ours_eight: &Wrk) {
        let mb = |w: &Wrk| format!("{:.0} MB/s", w.mb_per_s());
        self.row(
            "1 GiB, 1 stream (MB/s)",
            mb(ours_one),
            mb(nginx_one),
            Some(ours_one.mb_per_s() / nginx_one.mb_per_s()),
            "≥ 1.0x",
        );
        self.row(
            "1 GiB, 8 streams (MB/s)",
            mb(ours_eight),
            mb(nginx_eight),
            Some(ours_eight.mb_per_s() / nginx_eight.mb_per_s()),
            "≥ 1.0x",
        );
        self.ratios.push((
            "1 GiB, 1 stream".into(),
            ours_one.mb_per_s() / nginx_one.mb_per_s(),
            1.0,
        ));
        self.ratios.push((
            "1 GiB, 8 streams".into(),
            ours_eight.mb_per_s() / nginx_eight.mb_per_s(),
            1.0,
        ));
    }

    /// Ratios S3/local: no target, what the seam and the store cost.
    /// Each pair: the local run, the run on `store`, and the cores the store used during it.
    fn s3(&mut self, store: &str, small: (&Wrk, &Wrk, f64), large: (&Wrk, &Wrk, f64)) {
        let ((local_small, s3_small, store_small), (local_large, s3_large, store_large)) =
            (small, large);
        let rps = Wrk::throughput;
        self.row(
            &format!("4 KiB, HS256, files in S3 ({store}) against the local directory (req/s)"),
            format!("{}, {store} on {store_small:.2}", rps(s3_small)),
            format!("{} (local)", rps(local_small)),
            Some(s3_small.rps() / local_small.rps()),
            "",
        );
        let mb = |w: &Wrk| format!("{:.0} MB/s", w.mb_per_s());
        self.row(
            &format!("1 GiB, 1 stream, files in S3 ({store}) against local (MB/s)"),
            format!(
                "{}, server on {:.2} cores, {store} on {store_large:.2}",
                mb(s3_large),
                s3_large.server_cores
            ),
            format!(
                "{}, server on {:.2} cores (local)",
                mb(local_large),
                local_large.server_cores
            ),
            Some(s3_large.mb_per_s() / local_large.mb_per_s()),
            "",
        );
        for (label, w) in [("4 KiB", s3_small), ("1 GiB", s3_large)] {
            if w.status_errors + w.socket_errors > 0 {
                self.notes.push(format!(
                    "{label} run on {store} had {} non-2xx and {} socket errors.",
                    w.status_errors, w.socket_errors
                ));
            }
        }
    }

    /// The median of each server's loads, with their range.
    /// `peers`: nginx, then bare actix-web streaming from memory.
    fn memory(&mut self, readers: usize, peers: [&[u64]; 2], ours_kib: &[u64]) {
        let [nginx_kib, floor_kib] = peers;
        let per = |k: u64| k as f64 / readers as f64;
        let figure = |loads: &[u64]| {
            let median = median(loads);
            let low = loads.iter().copied().min().unwrap_or(0);
            let high = loads.iter().copied().max().unwrap_or(0);
            let text = format!(
                "{:.1} KiB ({median} KiB in all; {:.1}–{:.1} KiB over {} loads)",
                per(median),
                per(low),
                per(high),
                loads.len()
            );
            (median, text)
        };
        let (ours, ours_text) = figure(ours_kib);
        let (_, nginx_text) = figure(nginx_kib);
        let (_, floor_text) = figure(floor_kib);
        self.row(
            &format!("{readers} slow readers of 256 MiB: extra RSS per stream (median)"),
            ours_text.clone(),
            nginx_text,
            None,
            "≤ 32 KiB",
        );
        self.row(
            &format!(
                "{readers} slow readers, against bare actix-web streaming the file from memory \
                 (chunks of the first read, the server's write buffer): extra RSS per stream (median)"
            ),
            ours_text,
            floor_text,
            None,
            "",
        );
        self.ratios.push((
            "RSS/stream: 32 KiB / ours".into(),
            32.0 / per(ours).max(0.1),
            1.0,
        ));
    }

    fn write(&self, args: &Args, workers: usize) -> anyhow::Result<()> {
        let mut md = String::new();
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|m| m.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        let version = |cmd: &str, arg: &str| {
            Command::new(cmd)
                .arg(arg)
                .output()
                .map(|o| {
                    let text = [o.stdout, o.stderr].concat();
                    String::from_utf8_lossy(&text)
                        .lines()
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_owned()
                })
                .unwrap_or_default()
        };
        let date = version("date", "-u");
        let kernel = version("uname", "-r");
        let commit = Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        writeln!(md, "# Benchmarks\n")?;
        writeln!(
            md,
            "Written by `bench/run` (the `bench` binary of the bench crate). Every figure \
             below comes from one run on one machine, burnlink and nginx measured back to back \
             with the same load generator, so the **ratios** are what to read; absolute figures \
             move with the machine.\n"
        )?;
        writeln!(md, "- date: {date}")?;
        writeln!(md, "- machine: {cpu}, {workers} cores, Linux {kernel}")?;
        writeln!(md, "- commit: {commit}")?;
        writeln!(
            md,
            "- peer: {} with sendfile, access_log off, {workers} workers",
            version("nginx", "-v")
        )?;
        writeln!(
            md,
            "- load: {} with `bench/walk.lua` (every request a fresh token){}",
            version("wrk", "-v").split(" [").next().unwrap_or("wrk"),
            if args.pin {
                "; `--pin`: each loaded server on core 0, wrk on the last core"
            } else {
                ""
            }
        )?;
        writeln!(
            md,
            "- download-server: release build, {workers} workers, memory burn store unless noted, \
             `RUST_LOG=warn`, read buffer {} KiB\n",
            args.read_buffer_kib
        )?;
        writeln!(md, "| workload | burnlink | peer | ratio | target |")?;
        writeln!(md, "|---|---|---|---|---|")?;
        for r in &self.rows {
            writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                r.workload, r.ours, r.peer, r.ratio, r.target
            )?;
        }
        writeln!(md)?;
        for n in &self.notes {
            writeln!(md, "- {n}")?;
        }
        writeln!(md, "\n![ratios](benchmarks.png)\n")?;
        writeln!(md, "## Commands\n")?;
        writeln!(
            md,
            "```sh\nbench/run        # installs nginx + wrk if missing, builds, runs, rewrites this file\n```\n\n\
             Small files: `wrk -t{workers} -c{} -d{}s --latency -s bench/walk.lua <base> -- <paths> {workers}` \
             against a file of pre-minted `/d/<token>` paths (nginx gets the same paths and serves any `/d/*` as the file; bare actix-web, with the \
             server's workers and `TCP_NODELAY`, answers any `/d/*` with the same bytes from memory, \
             and once more reading the file for every request on its worker: `openat`, `statx`, `read`, `close`, \
             the system calls the download server makes for a small file). \
             Paced: the same with `WALK_PAUSE_MS={PACE_MS}` (each connection pauses {PACE_MS} ms after each response), \
             for nginx and the download server at one request rate below both their capacities. \
             `server on N cores`: the server processes' CPU time over the load's duration. \
             Redis: the HS256 load on the memory store, then on the Redis at `--redis-url` (its CPU time \
             counted with the server's: it runs on the same cores), back to back (`--only redis` runs these two alone). \
             Large files: the same with `-c1` and `-c8`, {} s each. Memory: {} raw TCP clients each reading 16 KiB \
             every 100 ms for 12 s, the server's RSS sampled every 100 ms (peak minus the idle baseline; nginx: its workers), \
             on {MEMORY_LOADS} fresh processes of each server: the median, with the range. \
             Minting: `SigningKey::mint` in a loop on one thread for 2 s. Verify bound: `Verifier::verify` on the same \
             2,000 tokens on every core for 3 s, once per jsonwebtoken backend, each in a process of its own. \
             Files in S3: two S3-compatible servers, each started here on a bucket of its own: a private `moto_server` \
             (moto from PyPI, the tests' S3 server) and `s3s-fs` (crates.io, a Rust server keeping objects as files); the \
             4 KiB and 1 GiB files are uploaded to each as the app server uploads (streaming multipart through the file \
             store), the download server is started with `--file-store s3://<bucket>/bench --s3-path-style` and the \
             endpoint and dummy credentials in `AWS_*`, and loaded as above (4 KiB HS256; 1 GiB, 1 stream) right after \
             the same two loads on the local directory; the rows are S3/local, with the store's cores beside the \
             server's. moto is a Python test server and s3s-fs an experimental one, so those figures bound from above \
             what the file-store seam (one ranged GET per small download, since issue 29) costs here; they say nothing of what AWS \
             S3 would do.",
            args.connections, args.duration, args.stream_duration, args.slow_readers
        )?;
        // Hand-written analysis below the marker survives a new run.
        let kept = std::fs::read_to_string(&args.report)
            .ok()
            .and_then(|old| old.find(NOTES_MARKER).map(|at| old[at..].to_owned()))
            .unwrap_or_else(|| format!("{NOTES_MARKER}\n"));
        writeln!(md)?;
        md.push_str(&kept);
        std::fs::write(&args.report, md)?;
        chart(&args.chart, &self.ratios)?;
        Ok(())
    }
}

/// A bar per ratio, with its target as a line: above the line is on target.
fn chart(path: &Path, ratios: &[(String, f64, f64)]) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let font = std::fs::read("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
        .context("DejaVuSans.ttf (Debian fonts-dejavu-core) for the chart")?;
    let font: &'static [u8] = Box::leak(font.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, font)
        .map_err(|_| anyhow::anyhow!("font did not load"))?;
    let root = BitMapBackend::new(path, (1000, 120 + 60 * ratios.len() as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    // Bars past 2x are cut at the edge (their figure is printed): what matters is where each
    // stands against its line, and one 30x bar would flatten the rest.
    const CAP: f64 = 2.0;
    let max = CAP * 1.2;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "burnlink / target (bars), target line in red",
            ("sans-serif", 22),
        )
        .margin(20)
        .x_label_area_size(30)
        .y_label_area_size(280)
        .build_cartesian_2d(0.0..max, (0..ratios.len()).into_segmented())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => ratios.get(*i).map(|r| r.0.clone()).unwrap_or_default(),
            _ => String::new(),
        })
        .x_desc("ratio")
        .label_style(("sans-serif", 15))
        .draw()?;
    chart.draw_series(ratios.iter().enumerate().map(|(i, (_, value, target))| {
        let color = if value >= target {
            GREEN.mix(0.7)
        } else {
            RGBColor(230, 120, 30).mix(0.8)
        };
        Rectangle::new(
            [
                (0.0, SegmentValue::Exact(i)),
                (value.min(CAP), SegmentValue::Exact(i + 1)),
            ],
            color.filled(),
        )
    }))?;
    chart.draw_series(ratios.iter().enumerate().map(|(i, (_, value, _))| {
        Text::new(
            format!("{value:.2}x"),
            (value.min(CAP) + 0.03, SegmentValue::CenterOf(i)),
            ("sans-serif", 15),
        )
    }))?;
    chart.draw_series(ratios.iter().enumerate().map(|(i, (_, _, target))| {
        PathElement::new(
            vec![
                (*target, SegmentValue::Exact(i)),
                (*target, SegmentValue::Exact(i + 1)),
            ],
            RED.stroke_width(3),
        )
    }))?;
    root.present()?;
    Ok(())
}
