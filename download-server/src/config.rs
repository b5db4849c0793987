use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use shared::{Policy, VerifyingKey};

use crate::StartupError;

/// Where burned ids live, as `--burn-store` names it.
#[derive(Clone, Debug)]
pub enum BurnStoreSetting {
    /// In this process: one server, forgotten on restart.
    Memory,
    /// In Redis, shared by every download server pointed at it.
    Redis(redis::ConnectionInfo),
}

impl std::fmt::Display for BurnStoreSetting {
    /// Where, without credentials: safe to log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BurnStoreSetting::Memory => f.write_str("memory"),
            BurnStoreSetting::Redis(info) => write!(f, "redis at {}", info.addr()),
        }
    }
}

/// Download server settings: every one a flag and an environment variable, with defaults that
/// work on a laptop next to an app server using the same data directory.
#[derive(Parser, Clone, Debug)]
#[command(name = "download-server", version, about)]
pub struct Config {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "DOWNLOAD_BIND", default_value = "127.0.0.1:8081")]
    pub bind: SocketAddr,

    /// Data directory shared with the app server: files are read from `<dir>/files/<key>`,
    /// keys from `<dir>/keys/jwks.json` unless a key option is given.
    #[arg(long, env = "BURNLINK_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// The only accepted `iss` claim.
    #[arg(long, env = "BURNLINK_ISSUER", default_value = "burnlink-app")]
    pub issuer: String,

    /// The only accepted `aud` claim.
    #[arg(long, env = "BURNLINK_AUDIENCE", default_value = "burnlink-download")]
    pub audience: String,

    /// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds (0 to 60).
    #[arg(long, env = "TOKEN_LEEWAY", default_value_t = Policy::DEFAULT_LEEWAY,
          value_parser = clap::value_parser!(u64).range(0..=60))]
    pub leeway: u64,

    /// Longest accepted token lifetime (`exp - iat`), in seconds (1 to 3600).
    #[arg(long, env = "TOKEN_MAX_LIFETIME", default_value_t = Policy::DEFAULT_MAX_LIFETIME,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub max_lifetime: u64,

    /// Ed25519 verification keys as a JWK Set file (what the app server publishes at
    /// /.well-known/jwks.json).
    #[arg(long, env = "JWKS_FILE")]
    pub jwks_file: Option<PathBuf>,

    /// Ed25519 public key PEM file(s); repeat the flag or separate with commas.
    #[arg(long = "public-key", env = "PUBLIC_KEYS", value_delimiter = ',')]
    pub public_keys: Vec<PathBuf>,

    /// HS256 shared secret file (base64url, as the app server writes `keys/hs256.key`).
    /// Whoever holds it can mint tokens: only for operators who chose HS256.
    #[arg(long, env = "HS256_SECRET_FILE")]
    pub hs256_secret_file: Option<PathBuf>,

    /// Where burned token ids are kept: `memory` (one server) or a Redis URL shared by a
    /// fleet: `redis://[user:pass@]host[:port][/db]` or `redis+unix:///path/redis.sock`
    /// (also `unix:///path`; `?db=`, `?user=`, `?pass=` as query).
    #[arg(long, env = "BURN_STORE", default_value = "memory")]
    pub burn_store: String,

    /// Longest wait for the burn store on one request, in milliseconds (10 to 10000). A
    /// download that cannot be burned in time is refused with 503 (fail closed).
    #[arg(long, env = "BURN_STORE_TIMEOUT_MS", default_value_t = 250,
          value_parser = clap::value_parser!(u64).range(10..=10000))]
    pub burn_store_timeout_ms: u64,

    /// With the memory store, also accept tokens issued before this process started. Off by
    /// default: a restart forgets what was burned, so a token used just before the restart
    /// could be replayed for the rest of its life.
    #[arg(long, env = "ACCEPT_TOKENS_ISSUED_BEFORE_START")]
    pub accept_tokens_issued_before_start: bool,

    /// Read buffer per stream, in KiB (4 to 1024): larger is faster for big files, smaller
    /// bounds memory per slow client.
    #[arg(long, env = "READ_BUFFER_KIB", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(4..=1024))]
    pub read_buffer_kib: u32,

    /// Worker threads (0: one per core).
    #[arg(long, env = "DOWNLOAD_WORKERS", default_value_t = 0)]
    pub workers: usize,

    /// Seconds in-flight downloads get to finish on shutdown.
    #[arg(long, env = "SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    pub shutdown_grace_secs: u64,

    /// The app's public URL (`http(s)://…`): error pages shown to browsers (link used,
    /// expired, invalid) link back to it. Unset: no link.
    #[arg(long, env = "APP_URL")]
    pub app_url: Option<String>,

    /// Keys handed over in-process (the app server's all-in-one mode), used besides any file.
    #[arg(skip)]
    pub keys: Vec<VerifyingKey>,
}

impl Config {
    /// The defaults, as if started with no flags and no environment.
    pub fn from_defaults() -> Config {
        Config::parse_from(["download-server"])
    }

    pub fn files_dir(&self) -> PathBuf {
        self.data_dir.join("files")
    }

    /// Every configured verification key. With no key option and no in-process key, the
    /// app server's `<data>/keys/jwks.json` is read. No key at all is a start-up error.
    pub fn load_keys(&self) -> Result<Vec<VerifyingKey>, StartupError> {
        let setting = |name: &'static str| move |e: shared::KeyError| StartupError::Key(name, e);
        let read = |name: &'static str, path: &PathBuf| {
            std::fs::read_to_string(path).map_err(|source| {
                StartupError::Key(
                    name,
                    shared::KeyError::Io {
                        path: path.display().to_string(),
                        source,
                    },
                )
            })
        };
        let mut keys = self.keys.clone();
        let mut jwks_file = self.jwks_file.clone();
        if jwks_file.is_none()
            && self.public_keys.is_empty()
            && self.hs256_secret_file.is_none()
            && keys.is_empty()
        {
            jwks_file = Some(self.data_dir.join("keys").join("jwks.json"));
        }
        if let Some(path) = &jwks_file {
            keys.extend(
                shared::parse_jwks(&read("--jwks-file", path)?).map_err(setting("--jwks-file"))?,
            );
        }
        for path in &self.public_keys {
            let pem = read("--public-key", path)?;
            keys.push(VerifyingKey::ed25519_from_pem(&pem).map_err(setting("--public-key"))?);
        }
        if let Some(path) = &self.hs256_secret_file {
            let key = shared::SigningKey::load(path, shared::Algorithm::HS256)
                .map_err(setting("--hs256-secret-file"))?;
            keys.push(key.verifying_key().clone());
        }
        if keys.is_empty() {
            return Err(StartupError::NoKeys);
        }
        Ok(keys)
    }

    /// `--burn-store`, checked. Connects to nothing: a Redis that is down at start makes the
    /// server unready (503), not unstartable.
    pub fn burn_store(&self) -> Result<BurnStoreSetting, StartupError> {
        let bad = |why: String| StartupError::BurnStore(why);
        if self.burn_store == "memory" {
            return Ok(BurnStoreSetting::Memory);
        }
        let scheme = self.burn_store.split_once("://").map(|(s, _)| s);
        match scheme {
            Some("redis" | "redis+unix" | "unix") => {}
            Some("rediss") => {
                return Err(bad(
                    "rediss:// (TLS) is not built in: reach Redis over a private network or a \
                     unix socket"
                        .into(),
                ));
            }
            // Never echo the value: a Redis URL may carry a password.
            _ => {
                return Err(bad("expected `memory`, `redis://host[:port][/db]` or \
                     `redis+unix:///path/to/redis.sock`"
                    .into()));
            }
        }
        let info = redis::IntoConnectionInfo::into_connection_info(self.burn_store.as_str())
            .map_err(|e| bad(format!("not a usable Redis URL: {e}")))?;
        Ok(BurnStoreSetting::Redis(info))
    }

    /// `--app-url`, checked, without a trailing slash.
    pub fn app_url(&self) -> Result<Option<String>, StartupError> {
        let Some(url) = &self.app_url else {
            return Ok(None);
        };
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .unwrap_or("");
        if rest.is_empty() || rest.starts_with('/') || rest.contains(['?', '#', ' ', '"', '<']) {
            return Err(StartupError::AppUrl(format!(
                "{url:?} is not an http(s)://host[/path] URL"
            )));
        }
        Ok(Some(url.trim_end_matches('/').to_owned()))
    }

    pub fn burn_store_timeout(&self) -> Duration {
        Duration::from_millis(self.burn_store_timeout_ms)
    }

    pub fn policy(&self) -> Policy {
        Policy {
            leeway: self.leeway,
            max_lifetime: self.max_lifetime,
            ..Policy::new(&self.issuer, &self.audience)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_store(url: &str) -> Result<BurnStoreSetting, StartupError> {
        Config {
            burn_store: url.into(),
            ..Config::from_defaults()
        }
        .burn_store()
    }

    #[test]
    fn burn_store_accepts_memory_tcp_and_unix_socket_urls() {
        assert!(matches!(with_store("memory"), Ok(BurnStoreSetting::Memory)));
        for url in [
            "redis://127.0.0.1:6379",
            "redis://:secret@redis.internal/2",
            "redis+unix:///run/redis/redis.sock",
            "unix:///run/redis/redis.sock?db=1",
        ] {
            assert!(
                matches!(with_store(url), Ok(BurnStoreSetting::Redis(_))),
                "{url}"
            );
        }
    }

    #[test]
    fn a_bad_burn_store_names_the_setting_and_not_the_password() {
        for url in [
            "memroy",
            "postgres://user:secret@db/x",
            "rediss://:secret@redis",
            "redis://:secret@[::1",
            "redis+unix://",
        ] {
            let e = with_store(url).expect_err(url).to_string();
            assert!(e.starts_with("--burn-store: "), "{e}");
            assert!(!e.contains("secret"), "{e}");
        }
    }

    #[test]
    fn the_logged_burn_store_carries_no_credentials() {
        let shown = with_store("redis://user:secret@redis.internal:6380/1")
            .expect("valid")
            .to_string();
        assert_eq!(shown, "redis at redis.internal:6380");
    }
}
