use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use file_store::FileStoreArgs;
use server_kit::settings::{BaseUrl, SecretUrl, ServiceArgs};
use shared::{Policy, TokenArgs, VerifyingKey};

use crate::StartupError;

/// Where burned ids live, as `--burn-store` names it.
#[derive(Clone, Debug)]
pub enum BurnStoreSetting {
    /// In this process: one server, forgotten on restart.
    Memory,
    /// In Redis, shared by every download server pointed at it.
    Redis(redis::ConnectionInfo),
    /// In a Redis Cluster, reached through any of these nodes.
    RedisCluster(Vec<redis::ConnectionInfo>),
}

impl std::fmt::Display for BurnStoreSetting {
    /// Where, without credentials: safe to log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BurnStoreSetting::Memory => f.write_str("memory"),
            BurnStoreSetting::Redis(info) => write!(f, "redis at {}", info.addr()),
            BurnStoreSetting::RedisCluster(nodes) => {
                f.write_str("redis cluster at ")?;
                for (i, node) in nodes.iter().enumerate() {
                    let sep = if i == 0 { "" } else { "," };
                    write!(f, "{sep}{}", node.addr())?;
                }
                Ok(())
            }
        }
    }
}

/// Download server settings: every one a flag and an environment variable, with defaults that
/// work on a laptop next to an app server using the same data directory. `Debug` hides the
/// passwords of the Redis URLs ([`SecretUrl`]).
#[derive(Parser, Clone, Debug)]
#[command(name = "download-server", version, about)]
pub struct Config {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "DOWNLOAD_BIND", default_value = "127.0.0.1:8081")]
    pub bind: SocketAddr,

    /// `--config`, `--data-dir`, TLS, logs, metrics and the body deadline, as on the app.
    #[command(flatten)]
    pub service: ServiceArgs,

    /// `--issuer` and `--audience`: the only accepted `iss` and `aud`.
    #[command(flatten)]
    pub token: TokenArgs,

    /// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds (0 to 60). With the memory
    /// store, and after a Redis store lost its data, downloads start `1 + leeway` seconds
    /// later (see "The memory store, and restarts" in docs/DEPLOY.md).
    #[arg(long, env = "TOKEN_LEEWAY", default_value_t = Policy::DEFAULT_LEEWAY,
          value_parser = clap::value_parser!(u64).range(0..=60))]
    pub leeway: u64,

    /// Longest accepted token lifetime (`exp - iat`), in seconds (1 to 3600).
    #[arg(long, env = "TOKEN_MAX_LIFETIME", default_value_t = Policy::DEFAULT_MAX_LIFETIME,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub max_lifetime: u64,

    /// Ed25519 verification keys as a JWK Set file (what the app server publishes at
    /// /.well-known/jwks.json); re-read when it changes.
    #[arg(long, env = "JWKS_FILE")]
    pub jwks_file: Option<PathBuf>,

    /// The app server's JWKS URL (`https://app.example.com/.well-known/jwks.json`): fetched at
    /// start, every `--jwks-refresh-secs`, and when a token names an unknown key. A failed
    /// fetch keeps the last good keys. `http://` only to a loopback host unless
    /// `--jwks-allow-http`.
    #[arg(long, env = "JWKS_URL")]
    pub jwks_url: Option<String>,

    /// Accept an `http://` `--jwks-url` to a host other than 127.0.0.0/8, ::1 or localhost.
    /// Whoever sits on that path can hand this server a key and mint links: only on a
    /// network you trust as much as the data directory.
    #[arg(long, env = "JWKS_ALLOW_HTTP")]
    pub jwks_allow_http: bool,

    /// CA certificates (PEM) to trust for an `https://` `--jwks-url` instead of the built-in
    /// web roots: a private PKI or a self-signed app server.
    #[arg(long, env = "JWKS_CA_FILE")]
    pub jwks_ca_file: Option<PathBuf>,

    /// Seconds between two scheduled JWKS URL fetches (1 to 86400).
    #[arg(long, env = "JWKS_REFRESH_SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub jwks_refresh_secs: u64,

    /// Least seconds between two fetches caused by tokens naming an unknown key (0 to 3600):
    /// garbage `kid`s cannot make this server hammer the app server.
    #[arg(long, env = "JWKS_MIN_REFRESH_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub jwks_min_refresh_secs: u64,

    /// Ed25519 public key PEM file(s); repeat the flag or separate with commas.
    #[arg(long = "public-key", env = "PUBLIC_KEYS", value_delimiter = ',')]
    pub public_keys: Vec<PathBuf>,

    /// HS256 shared secret file (base64url, as the app server writes `keys/hs256.key`).
    /// Whoever holds it can mint tokens: only for operators who chose HS256.
    #[arg(long, env = "HS256_SECRET_FILE")]
    pub hs256_secret_file: Option<PathBuf>,

    /// Where burned token ids are kept: `memory` (one server) or a Redis URL shared by a
    /// fleet: `redis://[user:pass@]host[:port][/db]` or `redis+unix:///path/redis.sock`
    /// (also `unix:///path`; `?db=`, `?user=`, `?pass=` as query), or a Redis Cluster:
    /// `redis+cluster://[user:pass@]host:port[,host:port...]` (any of its nodes).
    // `hide_env_values`: a Redis URL may carry a password, and `--help` must not print it.
    #[arg(
        long,
        env = "BURN_STORE",
        default_value = "memory",
        hide_env_values = true
    )]
    pub burn_store: SecretUrl,

    /// Replicas that must acknowledge a burn (Redis `WAIT`) before the file is served (0 to
    /// 16; standalone Redis only). With replicas and failover, set it so a promoted replica
    /// cannot have missed a burn; a burn not acknowledged in time is refused with 503.
    #[arg(long, env = "BURN_STORE_REPLICAS", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=16))]
    pub burn_store_replicas: u32,

    /// Longest wait for the burn store on one request, in milliseconds (10 to 10000). A
    /// download that cannot be burned in time is refused with 503 (fail closed).
    #[arg(long, env = "BURN_STORE_TIMEOUT_MS", default_value_t = 250,
          value_parser = clap::value_parser!(u64).range(10..=10000))]
    pub burn_store_timeout_ms: u64,

    /// How far behind this server's clock another download server's (or Redis's) may run, in
    /// seconds (0 to 3600). Burn records are kept this long past the last second a token is
    /// accepted, so no server that still accepts a token can find its record gone.
    #[arg(long, env = "CLOCK_SKEW_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub clock_skew_secs: u64,

    /// How long the client that received a token's first response may resume that download
    /// (a `Range` request proving the secret of the first response), in seconds from the burn
    /// (0 to 86400; 0: resuming is off). Each burn record is kept at least this long.
    #[arg(long, env = "RESUME_WINDOW_SECS", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(0..=86400))]
    pub resume_window_secs: u64,

    /// Smallest file, in bytes, whose downloads may be resumed (0: every file). Smaller files
    /// are sent again with a new link rather than resumed, and their burn records are kept
    /// only as long as their token needs: what keeps a fleet serving many small files small.
    #[arg(long, env = "RESUME_MIN_BYTES", default_value_t = 1024 * 1024)]
    pub resume_min_bytes: u64,

    /// With the memory store, also accept tokens issued before this process started. Off by
    /// default: a restart forgets what was burned, so a token used just before the restart
    /// could be replayed for the rest of its life.
    #[arg(long, env = "ACCEPT_TOKENS_ISSUED_BEFORE_START")]
    pub accept_tokens_issued_before_start: bool,

    /// First read size per stream, in KiB (4 to 1024): what a slow client holds. Reads grow
    /// to 512 KiB for a client that keeps up, so this bounds memory, not speed.
    #[arg(long, env = "READ_BUFFER_KIB", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(4..=1024))]
    pub read_buffer_kib: u32,

    /// Threads per worker for file reads (1 to 512). A read of a cached file takes
    /// microseconds, so a few threads keep up with any number of streams; each idle thread
    /// costs memory. Raise it for slow disks, where every waiting read holds a thread.
    #[arg(long, env = "IO_THREADS", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=512))]
    pub io_threads: u32,

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

    /// This server's name among the download servers sharing the data directory (letters,
    /// digits, `.`, `_`, `-`); names its audit file. Default: the host name.
    #[arg(long, env = "BURNLINK_INSTANCE")]
    pub instance: Option<String>,

    /// Append-only JSON Lines audit file, one line per download attempt; `off` for none
    /// (the `audit` log target still gets every record). Default:
    /// `<data dir>/audit/downloads-<instance>.jsonl`, where the app server finds it.
    #[arg(long, env = "AUDIT_LOG")]
    pub audit_log: Option<String>,

    /// Keys handed over in-process (the app server's all-in-one mode), used besides any file.
    #[arg(skip)]
    pub keys: Vec<VerifyingKey>,

    /// Publish download outcomes to a capped Redis Stream (`XADD … MAXLEN ~`) for the app
    /// servers (see docs/SHARES.md): `auto` (default) when the burn store is a single Redis,
    /// `off`, or a `redis://` URL.
    #[arg(long, env = "OUTCOMES_REDIS", default_value = "auto")]
    pub outcomes_redis: SecretUrl,

    /// Outcomes the outcome stream keeps, about (`XADD MAXLEN ~`, an entry of several outcomes
    /// trimmed as that many).
    #[arg(long, env = "OUTCOMES_STREAM_MAXLEN", default_value_t = 100_000)]
    pub outcomes_stream_maxlen: u64,

    /// With `--outcomes-redis auto`, how long a download's outcome waits, at most, for a later
    /// burn to carry it to Redis in the same transaction (one round trip per download); then it
    /// goes on its own (milliseconds, 1 to 60000).
    #[arg(long, env = "OUTCOMES_LINGER_MS", default_value_t = 50,
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub outcomes_linger_ms: u64,

    #[command(flatten)]
    pub file_store: FileStoreArgs,

    /// An outcome sink handed over in-process (the app server's all-in-one mode).
    #[arg(skip)]
    pub outcome_sink: Option<crate::outcome::SinkHandle>,
}

/// The settings the server runs on, each checked once, at start, by [`Config::check`].
pub struct Settings {
    /// `--jwks-url`.
    pub jwks_url: Option<String>,
    /// `--burn-store`.
    pub burn_store: BurnStoreSetting,
    /// `--app-url`.
    pub app_url: Option<BaseUrl>,
    /// `--audit-log` (`None`: off).
    pub audit_log: Option<PathBuf>,
    /// `--tls-cert` and `--tls-key`, loaded (`None`: plain http).
    pub tls: Option<rustls::ServerConfig>,
}

/// What an all-in-one app server hands its embedded download server: the settings both
/// servers take, the app's URL, the keys and the outcome sink.
pub struct Embedded {
    /// `--download-bind`.
    pub bind: SocketAddr,
    pub service: ServiceArgs,
    pub token: TokenArgs,
    /// `--leeway`.
    pub leeway: u64,
    pub file_store: FileStoreArgs,
    /// The app's published verification keys.
    pub keys: Vec<VerifyingKey>,
    /// The app's public URL: error pages link back to it.
    pub app_url: String,
    /// Outcomes go straight to the app.
    pub outcome_sink: std::sync::Arc<dyn shared::record::OutcomeSink>,
}

impl Config {
    /// The defaults, overridden by whatever environment variables are set.
    pub fn from_defaults() -> Config {
        Config::parse_from(["download-server"])
    }

    /// The embedded download server of an all-in-one app. The settings both servers take are
    /// the app's (data directory, TLS certificate, body deadline, issuer, audience, file
    /// store), except that its series are served on the app's metrics listener; it verifies
    /// only the keys handed over in-process, whatever the environment says. Its own settings
    /// (burn store, resume window, …) come from the environment, as a standalone server's do.
    pub fn embedded(app: Embedded) -> Config {
        Config {
            bind: app.bind,
            service: ServiceArgs {
                metrics_bind: None,
                ..app.service
            },
            token: app.token,
            leeway: app.leeway,
            file_store: app.file_store,
            jwks_file: None,
            jwks_url: None,
            public_keys: Vec::new(),
            hs256_secret_file: None,
            keys: app.keys,
            app_url: Some(app.app_url),
            outcome_sink: Some(crate::outcome::SinkHandle(app.outcome_sink)),
            ..Config::from_defaults()
        }
    }

    /// Raw flags to checked settings, once: a bad value stops start-up with its setting's
    /// name. Connects to nothing.
    pub fn check(&self) -> Result<Settings, StartupError> {
        Ok(Settings {
            jwks_url: self.jwks_url()?,
            tls: self.service.tls()?,
            burn_store: self.burn_store()?,
            app_url: self.app_url()?,
            audit_log: self.audit_log()?,
        })
    }

    pub fn files_dir(&self) -> PathBuf {
        self.service.data().files()
    }

    /// `--jwks-url`, checked: an `http(s)://host[/path]` URL; plain http only to a loopback
    /// host or with `--jwks-allow-http` (the keys decide who can mint links, RFC 8725
    /// section 3.10 in spirit: never take a key from a party you cannot authenticate).
    pub fn jwks_url(&self) -> Result<Option<String>, StartupError> {
        let Some(url) = &self.jwks_url else {
            if self.jwks_ca_file.is_some() {
                return Err(StartupError::JwksUrl(
                    "--jwks-ca-file (JWKS_CA_FILE) is set without a --jwks-url".into(),
                ));
            }
            return Ok(None);
        };
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .unwrap_or("");
        if rest.is_empty() || rest.starts_with('/') || rest.contains([' ', '#']) {
            return Err(StartupError::JwksUrl(format!(
                "{url:?} is not an http(s)://host[/path] URL"
            )));
        }
        let parsed = reqwest::Url::parse(url).map_err(|e| {
            StartupError::JwksUrl(format!("{url:?} is not an http(s)://host[/path] URL: {e}"))
        })?;
        // The parsed host: userinfo and IPv4 spellings (`0x7f.1`) are already resolved.
        let host = parsed.host_str().unwrap_or_default();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = host.eq_ignore_ascii_case("localhost")
            || bare
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if parsed.scheme() == "http" && !loopback && !self.jwks_allow_http {
            return Err(StartupError::JwksUrl(format!(
                "{url:?} is plain http to a host that is not loopback: anyone on the path could \
                 hand this server a key; use https (--jwks-ca-file for a private CA) or set \
                 --jwks-allow-http (JWKS_ALLOW_HTTP) on a network you trust"
            )));
        }
        Ok(Some(url.clone()))
    }

    /// `--burn-store`, checked. Connects to nothing: a Redis that is down at start makes the
    /// server unready (503), not unstartable.
    pub fn burn_store(&self) -> Result<BurnStoreSetting, StartupError> {
        let bad = |why: String| StartupError::BurnStore(why);
        let burn_store = self.burn_store.expose();
        if burn_store == "memory" {
            return Ok(BurnStoreSetting::Memory);
        }
        let scheme = burn_store.split_once("://").map(|(s, _)| s);
        match scheme {
            Some("redis" | "redis+unix" | "unix") => {}
            Some("redis+cluster") => return self.burn_store_cluster(),
            Some("rediss") => {
                return Err(bad(
                    "rediss:// (TLS) is not built in: reach Redis over a private network or a \
                     unix socket"
                        .into(),
                ));
            }
            // Never echo the value: a Redis URL may carry a password.
            _ => {
                return Err(bad("expected `memory`, `redis://host[:port][/db]`, \
                     `redis+unix:///path/to/redis.sock` or `redis+cluster://host:port,...`"
                    .into()));
            }
        }
        let info = redis::IntoConnectionInfo::into_connection_info(burn_store)
            .map_err(|e| bad(format!("not a usable Redis URL: {e}")))?;
        Ok(BurnStoreSetting::Redis(info))
    }

    /// `redis+cluster://[creds@]host:port,host:port...`: one `redis://` seed per node, each
    /// with the credentials.
    fn burn_store_cluster(&self) -> Result<BurnStoreSetting, StartupError> {
        let bad = |why: String| StartupError::BurnStore(why);
        if self.burn_store_replicas > 0 {
            return Err(bad(
                "--burn-store-replicas is for a standalone Redis; a cluster's replicas are \
                 not waited for"
                    .into(),
            ));
        }
        let rest = self
            .burn_store
            .expose()
            .trim_start_matches("redis+cluster://");
        let (creds, nodes) = match rest.rsplit_once('@') {
            Some((creds, nodes)) => (format!("{creds}@"), nodes),
            None => (String::new(), rest),
        };
        let nodes = nodes
            .split(',')
            .map(|node| {
                redis::IntoConnectionInfo::into_connection_info(format!("redis://{creds}{node}"))
                    .map_err(|e| bad(format!("not a usable Redis Cluster node: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(BurnStoreSetting::RedisCluster(nodes))
    }

    /// `--app-url`, checked, without a trailing slash; nor `"` or `<`, as it is written into
    /// error pages.
    pub fn app_url(&self) -> Result<Option<BaseUrl>, StartupError> {
        let Some(url) = &self.app_url else {
            return Ok(None);
        };
        match BaseUrl::parse(url) {
            Ok(base) if !url.contains(['"', '<']) => Ok(Some(base)),
            _ => Err(StartupError::AppUrl(format!(
                "{url:?} is not an http(s)://host[/path] URL"
            ))),
        }
    }

    /// `--instance`, checked, or the host name (made safe for a file name).
    pub fn instance(&self) -> Result<String, StartupError> {
        let valid = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        };
        match &self.instance {
            Some(name) if valid(name) => Ok(name.clone()),
            Some(name) => Err(StartupError::Audit(format!(
                "--instance (BURNLINK_INSTANCE) {name:?}: \
                 use 1 to 64 letters, digits, `.`, `_` or `-`"
            ))),
            None => {
                // `/proc/sys` is hidden under systemd's `ProcSubset=pid`: then `/etc/hostname`.
                let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .or_else(|_| std::fs::read_to_string("/etc/hostname"))
                    .or_else(|_| std::env::var("HOSTNAME"))
                    .unwrap_or_default();
                let host: String = host
                    .trim()
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                            c
                        } else {
                            '_'
                        }
                    })
                    .take(64)
                    .collect();
                Ok(if host.is_empty() {
                    "local".into()
                } else {
                    host
                })
            }
        }
    }

    /// The audit file (`--audit-log`), or `None` when it is `off`.
    pub fn audit_log(&self) -> Result<Option<PathBuf>, StartupError> {
        match self.audit_log.as_deref() {
            Some("off") => Ok(None),
            Some("") => Err(StartupError::Audit(
                "--audit-log (AUDIT_LOG): give a path or `off`".into(),
            )),
            Some(path) => Ok(Some(PathBuf::from(path))),
            None => Ok(Some(self.service.data().audit_file(&self.instance()?))),
        }
    }

    pub fn burn_store_timeout(&self) -> Duration {
        Duration::from_millis(self.burn_store_timeout_ms)
    }

    pub fn policy(&self) -> Policy {
        Policy {
            leeway: self.leeway,
            max_lifetime: self.max_lifetime,
            ..Policy::new(&self.token.issuer, &self.token.audience)
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
    fn a_bad_jwks_url_names_the_setting() {
        let with_url = |url: &str| {
            Config {
                jwks_url: Some(url.into()),
                ..Config::from_defaults()
            }
            .jwks_url()
        };
        for url in [
            "https://app.example.com/.well-known/jwks.json",
            "https://10.0.0.7:8443/jwks",
            "http://127.0.0.1:8080/.well-known/jwks.json",
            "http://127.8.0.1/jwks",
            "http://localhost:8080/jwks",
            "http://[::1]:8080/jwks",
        ] {
            assert!(with_url(url).is_ok(), "{url}");
        }
        for url in ["app:8080/jwks", "http://", "ftp://app/jwks"] {
            let e = with_url(url).expect_err(url).to_string();
            assert!(e.starts_with("--jwks-url (JWKS_URL): "), "{e}");
        }
        // Plain http elsewhere only when asked for, by name.
        for url in [
            "http://app:8080/.well-known/jwks.json",
            "http://10.0.0.7/jwks",
            "http://127.0.0.1.evil.example/jwks",
            "http://127.0.0.1@evil.example/jwks",
            "http://[::ffff:10.0.0.7]/jwks",
        ] {
            let e = with_url(url).expect_err(url).to_string();
            assert!(e.starts_with("--jwks-url (JWKS_URL): "), "{e}");
            assert!(e.contains("--jwks-allow-http (JWKS_ALLOW_HTTP)"), "{e}");
            let allowed = Config {
                jwks_url: Some(url.into()),
                jwks_allow_http: true,
                ..Config::from_defaults()
            };
            assert!(allowed.jwks_url().is_ok(), "{url}");
        }
        let ca_alone = Config {
            jwks_ca_file: Some("ca.pem".into()),
            ..Config::from_defaults()
        };
        let e = ca_alone.jwks_url().unwrap_err().to_string();
        assert!(e.contains("--jwks-ca-file (JWKS_CA_FILE)"), "{e}");
    }

    #[test]
    fn the_audit_file_is_per_instance_under_the_data_dir_or_off() {
        let mut config = Config {
            instance: Some("dl-2".into()),
            audit_log: None,
            ..Config::from_defaults()
        };
        config.service.data_dir = "/srv/burnlink".into();
        assert_eq!(
            config.audit_log().expect("valid"),
            Some(PathBuf::from("/srv/burnlink/audit/downloads-dl-2.jsonl"))
        );
        let off = Config {
            audit_log: Some("off".into()),
            ..config.clone()
        };
        assert_eq!(off.audit_log().expect("valid"), None);
        for bad in ["", "../x", "a/b", "dl 2"] {
            let config = Config {
                instance: Some(bad.into()),
                ..config.clone()
            };
            let e = config.audit_log().expect_err(bad).to_string();
            assert!(e.starts_with("--instance"), "{e}");
        }
    }

    #[test]
    fn the_logged_burn_store_carries_no_credentials() {
        let shown = with_store("redis://user:secret@redis.internal:6380/1")
            .expect("valid")
            .to_string();
        assert_eq!(shown, "redis at redis.internal:6380");
    }

    #[test]
    fn a_cluster_store_lists_its_nodes_each_with_the_credentials() {
        let Ok(BurnStoreSetting::RedisCluster(nodes)) =
            with_store("redis+cluster://user:secret@10.0.0.1:7000,10.0.0.2:7001")
        else {
            panic!("a cluster URL");
        };
        assert_eq!(nodes.len(), 2);
        for node in &nodes {
            assert_eq!(node.redis_settings().password(), Some("secret"));
        }
        let shown = BurnStoreSetting::RedisCluster(nodes).to_string();
        assert_eq!(shown, "redis cluster at 10.0.0.1:7000,10.0.0.2:7001");

        let replicas = Config {
            burn_store: "redis+cluster://10.0.0.1:7000".into(),
            burn_store_replicas: 1,
            ..Config::from_defaults()
        }
        .burn_store()
        .expect_err("WAIT is for a standalone Redis")
        .to_string();
        assert!(
            replicas.starts_with("--burn-store: --burn-store-replicas"),
            "{replicas}"
        );
    }

    #[test]
    fn debug_hides_the_redis_passwords() {
        let config = Config::try_parse_from([
            "download-server",
            "--burn-store",
            "redis://burner:hunter22@redis.internal:6380/2",
            "--outcomes-redis",
            "redis+unix:///run/redis.sock?pass=swordfish",
        ])
        .expect("valid flags");
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter22"), "{shown}");
        assert!(!shown.contains("swordfish"), "{shown}");
        assert!(
            shown.contains("redis://burner:***@redis.internal:6380/2"),
            "{shown}"
        );
        assert!(shown.contains("redis.sock?pass=***"), "{shown}");
    }
}

/// The config file merged into this server's flags ([`server_kit::config_file`]).
#[cfg(test)]
mod config_file_tests {
    use std::io::Write;

    use server_kit::config_file::parse_from;

    use crate::Config;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn file_values_fill_in_and_flags_win() {
        let f = file("leeway = 7\nread_buffer_kib = 128\npublic-key = [\"a.pem\", \"b.pem\"]\n");
        let path = f.path().to_str().unwrap();
        let config: Config =
            parse_from(["download-server", "--config", path, "--leeway", "9"]).unwrap();
        assert_eq!(config.leeway, 9, "flag beats file");
        assert_eq!(config.read_buffer_kib, 128, "file beats default");
        assert_eq!(config.public_keys.len(), 2);
        assert_eq!(config.shutdown_grace_secs, 30, "default");
    }

    #[test]
    fn the_file_store_settings_come_from_the_file_too() {
        let f = file("file-store = \"s3://burnlink/files\"\ns3_path_style = true\n");
        let path = f.path().to_str().unwrap();
        let config: Config = parse_from(["download-server", "--config", path]).unwrap();
        assert_eq!(config.file_store.file_store, "s3://burnlink/files");
        assert!(config.file_store.s3_path_style);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_setting() {
        let f = file("leeway = 5\nbind_adress = \"0.0.0.0:1\"\n");
        let arg = format!("--config={}", f.path().display());
        let err = parse_from::<Config>(["download-server", arg.as_str()]).unwrap_err();
        assert!(
            err.to_string().contains("unknown setting `bind_adress`"),
            "{err}"
        );

        let f = file("leeway = 500\n");
        let arg = format!("--config={}", f.path().display());
        let err = parse_from::<Config>(["download-server", arg.as_str()]).unwrap_err();
        assert!(err.to_string().contains("--leeway"), "{err}");
    }
}
