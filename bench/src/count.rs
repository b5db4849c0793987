//! `bench --count N`: what one 4 KiB HS256 download costs the server, counted rather than
//! timed, so the figure is the same whatever else the machine is doing.
//!
//! The release download server (memory burn store, one worker, the bench's settings
//! otherwise) runs under `valgrind --tool=dhat` (heap blocks and bytes allocated) and then
//! `valgrind --tool=callgrind` (instructions executed, every thread), each twice: once serving
//! `N` downloads and once `2N`, every one a fresh token for the same 4 KiB file, sent one after
//! another on one kept-alive connection by the client below. The difference between the two
//! runs, divided by `N`, is the cost of one download with start-up and shutdown taken out.
//! Bare actix-web reading the file per request (the bench's disk floor, [`crate::Floor::Disk`])
//! is counted the same way beside it: the framework's own cost per request.

use std::io::{BufRead, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};
use shared::{Algorithm, Claims, DownloadName, Policy, SigningKey, StorageKey};

/// Which valgrind tool, and the line of its summary that holds the figures.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tool {
    /// `Total: B bytes in K blocks`.
    Dhat,
    /// `Collected : I` (instructions).
    Callgrind,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Dhat => "dhat",
            Tool::Callgrind => "callgrind",
        }
    }

    /// The figures of one run, from valgrind's standard error: (blocks, bytes) for dhat,
    /// (instructions, 0) for callgrind.
    fn figures(self, stderr: &str) -> anyhow::Result<(u64, u64)> {
        let number =
            |s: &str| -> anyhow::Result<u64> { Ok(s.trim().replace(',', "").parse::<u64>()?) };
        for line in stderr.lines() {
            let Some((_, rest)) = line.split_once("== ") else {
                continue;
            };
            match self {
                Tool::Dhat => {
                    if let Some(total) = rest.strip_prefix("Total:") {
                        let (bytes, rest) =
                            total.split_once("bytes in").context("dhat's Total line")?;
                        let blocks = rest.trim().trim_end_matches("blocks");
                        return Ok((number(blocks)?, number(bytes)?));
                    }
                }
                Tool::Callgrind => {
                    if let Some(collected) = rest.strip_prefix("Collected :") {
                        return Ok((number(collected)?, 0));
                    }
                }
            }
        }
        bail!("no {} summary in valgrind's output:\n{stderr}", self.name())
    }
}

/// The server counted: the download server, or the bench's disk floor.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Counted {
    DownloadServer,
    DiskFloor,
}

/// Counts per download and prints them as a table (stdout); the raw valgrind outputs stay in
/// `keep` when given.
pub fn count(
    bin_dir: &Path,
    n: usize,
    keep: Option<&Path>,
    server_args: &[String],
) -> anyhow::Result<()> {
    let temp = tempfile::tempdir()?;
    let dir = temp.path();
    let files = dir.join("files");
    std::fs::create_dir_all(&files)?;
    let file = "small4k";
    crate::write_file(&files.join(file), 4 * 1024)?;
    let key_path = dir.join("keys").join("hs256.key");
    let key = SigningKey::load_or_generate(&key_path, Algorithm::HS256)?;
    let out = keep.map_or_else(|| dir.to_owned(), Path::to_owned);
    std::fs::create_dir_all(&out)?;

    let mut rows = Vec::new();
    for counted in [Counted::DownloadServer, Counted::DiskFloor] {
        let mut figures = Vec::new();
        for tool in [Tool::Dhat, Tool::Callgrind] {
            let mut runs = Vec::new();
            for requests in [n, 2 * n] {
                let server = Valgrind::start(
                    tool,
                    counted,
                    (bin_dir, server_args),
                    dir,
                    &key_path,
                    &out,
                    requests,
                )?;
                let paths = mint(&key, file, requests)?;
                drive(server.addr, &paths)?;
                let figures = server.stop()?;
                eprintln!(
                    "   {} {} {requests} downloads: {figures:?}",
                    counted.label(),
                    tool.name()
                );
                runs.push(figures);
            }
            let per = |pick: fn(&(u64, u64)) -> u64| {
                (pick(&runs[1]) as f64 - pick(&runs[0]) as f64) / n as f64
            };
            match tool {
                Tool::Dhat => figures.extend([per(|f| f.0), per(|f| f.1)]),
                Tool::Callgrind => figures.push(per(|f| f.0)),
            }
        }
        rows.push((counted, figures));
    }
    let floor_instructions = rows
        .iter()
        .find(|(c, _)| *c == Counted::DiskFloor)
        .map_or(f64::NAN, |(_, f)| f[2]);
    println!("| server | allocations | bytes allocated | instructions | against the floor |");
    println!("|---|---|---|---|---|");
    for (counted, f) in &rows {
        println!(
            "| {} | {:.1} | {:.0} | {:.0} | {:.2}x |",
            counted.label(),
            f[0],
            f[1],
            f[2],
            f[2] / floor_instructions
        );
    }
    let openat2_unknown = std::fs::read_dir(&out)?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .any(|e| {
            std::fs::read_to_string(e.path())
                .is_ok_and(|log| log.contains("unhandled amd64-linux syscall: 437"))
        });
    if openat2_unknown {
        println!(
            "\nnote: this valgrind does not know `openat2` (syscall 437), so an open that misses the open-file cache took the blocking pool's path here \
             (one hop: a task and its result allocated, two thread wake-ups), which a native run \
             takes only for a file not in the page cache"
        );
    }
    println!(
        "\nper 4 KiB HS256 download, the difference of {n} and {} downloads divided by {n} \
         (valgrind {}; outputs in {})",
        2 * n,
        valgrind_version(),
        out.display()
    );
    Ok(())
}

impl Counted {
    fn label(self) -> &'static str {
        match self {
            Counted::DownloadServer => "download-server",
            Counted::DiskFloor => "bare actix-web reading the file",
        }
    }
}

fn valgrind_version() -> String {
    Command::new("valgrind")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|_| "?".into())
}

/// A server running under valgrind, its standard error going to a file.
struct Valgrind {
    child: Child,
    addr: SocketAddr,
    tool: Tool,
    stderr: PathBuf,
}

impl Valgrind {
    fn start(
        tool: Tool,
        counted: Counted,
        (bin_dir, server_args): (&Path, &[String]),
        dir: &Path,
        key: &Path,
        out: &Path,
        requests: usize,
    ) -> anyhow::Result<Valgrind> {
        let name = match counted {
            Counted::DownloadServer => "download-server",
            Counted::DiskFloor => "floor",
        };
        let stem = out.join(format!("{name}-{}-{requests}", tool.name()));
        let stderr = stem.with_extension("log");
        let mut command = Command::new("valgrind");
        command.arg(format!("--tool={}", tool.name())).arg(format!(
            "--{}-out-file={}",
            tool.name(),
            stem.with_extension("out").display()
        ));
        // The memory store, unless the extra arguments name another.
        let store: &[&str] = match server_args.iter().any(|a| a.starts_with("--burn-store")) {
            true => &[],
            false => &["--burn-store", "memory"],
        };
        match counted {
            Counted::DownloadServer => command
                .arg(bin_dir.join("download-server"))
                .args(["--bind", "127.0.0.1:0"])
                .args(store)
                .arg("--data-dir")
                .arg(dir)
                .arg("--hs256-secret-file")
                .arg(key)
                .args(["--workers", "1", "--read-buffer-kib", "8"])
                .args(server_args),
            Counted::DiskFloor => command
                .arg(std::env::current_exe()?)
                .arg("--serve-floor")
                .arg(dir.join("files").join("small4k"))
                .args(["--floor", "disk", "--floor-workers", "1"]),
        };
        let child = command
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr)?)
            .spawn()
            .context("starting valgrind (is it installed?)")?;
        let mut child = child;
        let addr = crate::announced_address(&mut child)
            .with_context(|| std::fs::read_to_string(&stderr).unwrap_or_default())?;
        Ok(Valgrind {
            child,
            addr,
            tool,
            stderr,
        })
    }

    /// Stops the server as an operator would (`SIGTERM`: a graceful stop, so valgrind writes
    /// its summary) and reads the figures.
    fn stop(mut self) -> anyhow::Result<(u64, u64)> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        let status = self.child.wait()?;
        let stderr = std::fs::read_to_string(&self.stderr)?;
        if !status.success() {
            bail!("the server under valgrind ended with {status}:\n{stderr}");
        }
        self.tool.figures(&stderr)
    }
}

/// `count` download paths for `file`, each a fresh token minted now (after the server
/// started: a memory burn store refuses tokens issued before its start).
fn mint(key: &SigningKey, file: &str, count: usize) -> anyhow::Result<Vec<String>> {
    let storage = StorageKey::parse(file)?;
    let name = DownloadName::parse(&format!("{file}.bin"))?;
    (0..count)
        .map(|_| {
            let claims = Claims::new(
                crate::ISSUER,
                crate::AUDIENCE,
                "bench",
                &storage,
                &name,
                shared::unix_now(),
                Policy::DEFAULT_MAX_LIFETIME,
            );
            Ok(format!("/d/{}", key.mint(&claims)?))
        })
        .collect()
}

/// Each path once, in order, on one kept-alive connection; every answer must be a 200 with
/// the 4 KiB body.
fn drive(addr: SocketAddr, paths: &[String]) -> anyhow::Result<()> {
    let conn = TcpStream::connect(addr)?;
    conn.set_nodelay(true)?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut writer = conn;
    let mut body = Vec::new();
    for path in paths {
        write!(writer, "GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n")?;
        let mut status = String::new();
        reader.read_line(&mut status)?;
        let mut length = None;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = Some(value.trim().parse::<usize>()?);
            }
        }
        let length = length.with_context(|| format!("no Content-Length: {status}"))?;
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
        if !status.starts_with("HTTP/1.1 200") || length != 4096 {
            bail!("{path}: {status} with {length} bytes");
        }
    }
    Ok(())
}
