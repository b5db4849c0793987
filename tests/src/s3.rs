//! An S3-compatible server for the tests: one `moto_server` per test process (moto from
//! PyPI, installed by `.ci/install-deps`), a fresh bucket per app. `TEST_FILE_STORE=s3` runs
//! the file tests over it instead of the local directory (see `.ci/run`). Objects are read and
//! written with plain HTTP (moto does not check signatures), so helpers stay synchronous.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::services::{skip, tool_installed};

/// Whether this test process runs the file tests over S3 (`TEST_FILE_STORE=s3`).
pub fn s3_under_test() -> bool {
    std::env::var("TEST_FILE_STORE").is_ok_and(|v| v == "s3")
}

/// A running moto server. It is stopped when this process exits: its shell wrapper kills it
/// once the pipe held here closes.
pub struct Moto {
    pub port: u16,
    _stdin: Mutex<ChildStdin>,
    _child: Mutex<Child>,
}

static MOTO: OnceLock<Option<Moto>> = OnceLock::new();

/// Where moto is installed for the tests (beside the interop packages).
fn python_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("s3/python")
}

/// The process's moto server, started on first use; `None` (a skip) when moto is not
/// installed, which under `CI=true` fails the test.
pub fn moto() -> Option<&'static Moto> {
    MOTO.get_or_init(start).as_ref()
}

fn start() -> Option<Moto> {
    if !tool_installed("moto") {
        skip("moto (moto[server]) is not installed in tests/s3/python: run .ci/install-deps");
        return None;
    }
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        // The shell exits when moto does (port taken), and kills moto when our end of its
        // stdin closes (this process exited).
        let mut child = Command::new("sh")
            .args([
                "-c",
                // fd 3: a background job's stdin is /dev/null in a non-interactive shell.
                "exec 3<&0; python3 -m moto.server -H 127.0.0.1 -p \"$1\" >/dev/null 2>&1 & \
                 m=$!; (read _ <&3; kill $m) & wait $m",
                "sh",
                &port.to_string(),
            ])
            .env("PYTHONPATH", python_path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sh runs");
        let stdin = child.stdin.take().expect("piped stdin");
        // Python takes a second or two to import moto: up to 30 s, polled.
        for _ in 0..300 {
            if matches!(child.try_wait(), Ok(Some(_))) {
                break;
            }
            if request_on(port, "GET", "/moto-api/", &[]).is_ok() {
                return Some(Moto {
                    port,
                    _stdin: Mutex::new(stdin),
                    _child: Mutex::new(child),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
    }
    panic!("moto_server did not start after five tries");
}

/// One HTTP/1.1 request with `Connection: close`: the status and the body.
fn request_on(port: u16, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no HTTP response"))?;
    let head = String::from_utf8_lossy(&response[..head_end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line: {head}")))?;
    Ok((status, response[head_end + 4..].to_vec()))
}

impl Moto {
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn request(&self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        request_on(self.port, method, path, body).expect("moto answers")
    }

    /// A new, empty bucket.
    pub fn bucket(&self) -> String {
        let name =
            format!("burnlink-{}", shared::random_token(12).to_ascii_lowercase()).replace('_', "-");
        let (status, body) = self.request("PUT", &format!("/{name}"), &[]);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        name
    }

    /// The settings that reach `s3://bucket/prefix` on this server, as both servers take them.
    pub fn settings(&self, bucket: &str, prefix: &str) -> file_store::FileStoreArgs {
        file_store::FileStoreArgs {
            file_store: format!("s3://{bucket}/{prefix}"),
            aws_endpoint_url: Some(self.endpoint()),
            aws_access_key_id: Some("testing".into()),
            aws_secret_access_key: Some("testing".into()),
            aws_region: Some("us-east-1".into()),
            s3_path_style: true,
            ..file_store::FileStoreArgs::default()
        }
    }

    /// Keys under `prefix/` (without it), sorted.
    pub fn list(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let (status, body) = self.request(
            "GET",
            &format!("/{bucket}?list-type=2&prefix={prefix}/"),
            &[],
        );
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let text = String::from_utf8_lossy(&body);
        let mut keys: Vec<String> = text
            .split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(|k| k.trim_start_matches(&format!("{prefix}/")).to_owned())
            .collect();
        keys.sort();
        keys
    }

    /// Multipart uploads begun and neither completed nor aborted.
    pub fn open_uploads(&self, bucket: &str) -> usize {
        let (status, body) = self.request("GET", &format!("/{bucket}?uploads"), &[]);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        String::from_utf8_lossy(&body).matches("<Upload>").count()
    }

    pub fn get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let (status, body) = self.request("GET", &format!("/{bucket}/{key}"), &[]);
        (status == 200).then_some(body)
    }
}
