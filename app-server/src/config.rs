//! Command line and environment configuration: parsed once by clap, checked once by
//! [`Config::validate`] before anything binds or touches the disk.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use server_kit::settings::{BaseUrl, ServiceArgs};
use shared::{Algorithm, TokenArgs};

use crate::error::StartupError;
use crate::webhooks::delivery::DeliverySettings;
use crate::webhooks::ssrf::Reach;

/// `app-server [OPTIONS] [COMMAND]`. Options go before the command; every option can also come
/// from its environment variable.
#[derive(Parser, Clone, Debug)]
#[command(name = "app-server", version, about = "burnlink app server")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Subcommand, Clone, Debug)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Manage users; passwords are read from standard input, one line.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage the signing keys in the data directory.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Subcommand, Clone, Debug)]
pub enum KeysCommand {
    /// Make a new signing key (new `kid`) active for `--alg`. The old public key stays
    /// published for `--retired-key-publish-secs`; running app servers follow within seconds.
    Rotate,
    /// Stop accepting the key `KID` now (a stolen key): a retired key is dropped from the
    /// published set; the active key is first rotated out, then dropped. Running app servers
    /// and the download servers they feed follow within seconds (JWKS URL: within
    /// `--jwks-refresh-secs`); links it signed stop working.
    Revoke {
        /// The key id, as `/.well-known/jwks.json` and the tokens' headers show it.
        kid: String,
    },
}

#[derive(Subcommand, Clone, Debug)]
pub enum UserCommand {
    /// Create a user.
    Add {
        name: String,
        /// Make the user an administrator (they see the Users page and can end anyone's
        /// sessions).
        #[arg(long)]
        admin: bool,
    },
    /// Change a user's password and end all of their sessions and access tokens.
    Passwd { name: String },
    /// Delete a user, their sessions and their stored files.
    Del { name: String },
    /// Make a user an administrator (`--revoke`: no longer one). With `--oidc-admin-groups`
    /// set, a user of the identity provider gets the provider's word at each sign-in instead.
    Admin {
        name: String,
        #[arg(long)]
        revoke: bool,
    },
}

/// The app server's settings. `Debug` hides the password of `database_url`.
#[derive(Parser, Clone)]
pub struct Config {
    /// Address the app server listens on (port 0 picks a free port).
    #[arg(long, env = "APP_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    /// `--config`, `--data-dir`, TLS, logs, metrics and the body deadline, as on the download
    /// server (all-in-one, the embedded one takes the app's).
    #[command(flatten)]
    pub service: ServiceArgs,

    /// Database URL (`sqlite://…` or `postgres://…`); default `sqlite://<data-dir>/app.db?mode=rwc`.
    // `hide_env_values`: the URL may carry a password, and `--help` must not print it.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// The URL people reach the app at; default `http://<bound address>`.
    #[arg(long, env = "APP_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Public base URL of a separately run download server. Unset: all-in-one mode, the app
    /// runs an embedded download server on `--download-bind`.
    #[arg(long, env = "DOWNLOAD_URL")]
    pub download_url: Option<String>,

    /// Address of the embedded download server (all-in-one mode only).
    #[arg(long, env = "DOWNLOAD_BIND", default_value = "127.0.0.1:8081")]
    pub download_bind: SocketAddr,

    /// `--issuer` and `--audience` of every minted token: what the download server expects.
    #[command(flatten)]
    pub token: TokenArgs,

    /// Lifetime of a download link in seconds (1 to 300).
    #[arg(long, env = "TOKEN_TTL", default_value_t = 60)]
    pub token_ttl: u64,

    /// All-in-one: the clock skew the embedded download server allows on `exp`, `nbf` and
    /// `iat`, in seconds (0 to 60), as the download server's `--leeway`. It serves downloads
    /// `1 + leeway` seconds after it starts (see "The memory store, and restarts" in
    /// docs/DEPLOY.md); 0 when every token is minted on this machine's clock.
    #[arg(long, env = "TOKEN_LEEWAY", default_value_t = shared::Policy::DEFAULT_LEEWAY,
          value_parser = clap::value_parser!(u64).range(0..=60))]
    pub leeway: u64,

    /// The signing key file, for app servers that share one key without sharing a data
    /// directory (Ed25519 as PKCS#8 PEM, e.g. `openssl genpkey -algorithm ed25519`; HS256 as one
    /// line of unpadded base64url of at least 32 random bytes). It must exist: a mistyped path
    /// must not quietly start signing with a key the rest of the fleet does not know. Unset:
    /// `<data-dir>/keys/ed25519.pem` (or `hs256.key`), created on first start.
    #[arg(long = "signing-key", env = "SIGNING_KEY_FILE")]
    pub signing_key: Option<PathBuf>,

    /// Seconds a key retired by `keys rotate` stays published (and accepted) after the
    /// rotation; at least `--token-ttl`, so links signed just before a rotation live out
    /// their minute.
    #[arg(long, env = "RETIRED_KEY_PUBLISH_SECS", default_value_t = 3600)]
    pub retired_key_publish_secs: u64,

    /// Signing algorithm: `eddsa` (default) or `hs256`.
    #[arg(long, env = "TOKEN_ALG", default_value = "eddsa", value_parser = parse_algorithm)]
    pub alg: Algorithm,

    /// Largest accepted upload in bytes.
    #[arg(long, env = "MAX_UPLOAD_BYTES", default_value_t = 1024 * 1024 * 1024)]
    pub max_upload_bytes: u64,

    /// Most files one user may keep (0: no limit). An upload over it is refused with 409
    /// `too_many_files` before any byte is written.
    #[arg(long, env = "MAX_FILES_PER_USER", default_value_t = 0)]
    pub max_files_per_user: u64,

    /// Failed logins allowed per minute, per account and per client address (a token bucket
    /// of this size refilling at this rate; 0: no throttling). Beyond it: 429 `throttled`
    /// with `Retry-After`, without checking the password.
    #[arg(long, env = "LOGIN_ATTEMPTS_PER_MINUTE", default_value_t = 10)]
    pub login_attempts_per_minute: u32,

    /// Most logins waiting for (or in) a password check at once; beyond it a login is refused
    /// at once with 429 `busy` and `Retry-After: 1`. Four hashes run at a time, tens of
    /// milliseconds each, so 32 is about a quarter of a second of queue.
    #[arg(long, env = "MAX_PENDING_LOGINS", default_value_t = 32,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_pending_logins: u64,
    /// Longest lifetime of a share in seconds (`POST /api/files/{id}/shares` asks for at most
    /// this; the default share lives 7 days, or this if shorter).
    #[arg(long, env = "SHARE_MAX_SECS", default_value_t = 30 * 24 * 3600)]
    pub share_max_secs: u64,

    /// Most downloads one share may allow (the default share allows 1).
    #[arg(long, env = "SHARE_MAX_DOWNLOADS", default_value_t = 100)]
    pub share_max_downloads: u64,

    /// Seconds after a share's download link expired before the download, if no served
    /// outcome was heard for it, is given back to the share.
    #[arg(long, env = "SHARE_GIVE_BACK_SECS", default_value_t = 300)]
    pub share_give_back_secs: u64,

    /// Redis to read download outcomes from (the stream `burnlink:outcomes` that download
    /// servers with a Redis burn store write), e.g. the download servers' `--burn-store`.
    /// Unset with a separate download server: outcomes are not known, and share downloads
    /// are never given back. All-in-one: outcomes come in process.
    #[arg(long, env = "OUTCOMES_REDIS")]
    pub outcomes_redis: Option<String>,

    /// Accept `http://` webhook URLs; without it a webhook URL must be `https://`. Plain http
    /// shows every event to whoever is on the path: only on a network you trust.
    #[arg(long, env = "WEBHOOKS_ALLOW_HTTP")]
    pub webhooks_allow_http: bool,

    /// Let webhooks reach loopback, private (RFC 1918, unique local), link-local and
    /// carrier-grade NAT addresses: receivers on this host or its network. Without it such a
    /// URL is refused (422 `url_refused`), and so is a delivery whose host resolves there
    /// later. Metadata services and other special addresses are refused either way.
    #[arg(long, env = "WEBHOOKS_ALLOW_PRIVATE")]
    pub webhooks_allow_private: bool,

    /// The delay before each webhook delivery attempt, comma-separated: the first attempt,
    /// then each retry's (the Standard Webhooks schedule, about a day in all).
    #[arg(long, env = "WEBHOOKS_RETRY_SCHEDULE", value_delimiter = ',',
          value_parser = humantime::parse_duration, default_value = "0s,5s,5m,30m,2h,5h,10h,10h")]
    pub webhooks_retry_schedule: Vec<Duration>,

    /// How long a webhook receiver has to answer 2xx (100ms to 60s).
    #[arg(long, env = "WEBHOOKS_TIMEOUT", value_parser = humantime::parse_duration,
          default_value = "10s")]
    pub webhooks_timeout: Duration,

    /// An endpoint whose deliveries fail for this long without one success is disabled until
    /// its owner re-enables it.
    #[arg(long, env = "WEBHOOKS_DISABLE_AFTER", value_parser = humantime::parse_duration,
          default_value = "5d")]
    pub webhooks_disable_after: Duration,

    /// How often an app server looks for webhook events other app servers wrote and for
    /// shares that expired (10ms to 1h); its own events go out at once.
    #[arg(long, env = "WEBHOOKS_POLL", value_parser = humantime::parse_duration,
          default_value = "5s")]
    pub webhooks_poll: Duration,

    /// Webhook attempts in flight at once from this app server.
    #[arg(long, env = "WEBHOOKS_MAX_IN_FLIGHT", default_value_t = 32,
          value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub webhooks_max_in_flight: u64,

    /// Webhook attempts in flight at once to one endpoint from this app server.
    #[arg(long, env = "WEBHOOKS_MAX_IN_FLIGHT_PER_ENDPOINT", default_value_t = 4,
          value_parser = clap::value_parser!(u64).range(1..=64))]
    pub webhooks_max_in_flight_per_endpoint: u64,

    /// A session unused for this many seconds ends.
    #[arg(long, env = "SESSION_IDLE_SECS", default_value_t = 1800)]
    pub session_idle_secs: u64,

    /// A session ends this many seconds after login, used or not.
    #[arg(long, env = "SESSION_MAX_SECS", default_value_t = 43200)]
    pub session_max_secs: u64,

    /// Mark the session cookie `Secure` (set it when a proxy terminates HTTPS; always on with
    /// `--tls-cert`).
    #[arg(long, env = "SECURE_COOKIES", default_value_t = false, action = clap::ArgAction::Set)]
    pub secure_cookies: bool,

    /// Seconds an upload may go without receiving a byte (1 to 3600); past it the upload fails
    /// with 408 `timeout`, its partial file is removed and nothing is recorded. A slow upload
    /// that keeps moving is never cut.
    #[arg(long, env = "UPLOAD_IDLE_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub upload_idle_secs: u64,

    /// Seconds a resumable (tus) upload may take from its creation to its last byte (1 to
    /// 30 days' worth); past it the upload answers 410 and its bytes so far are removed (a
    /// local part file deleted, an S3 multipart upload aborted). Sent as `Upload-Expires`.
    #[arg(long, env = "UPLOAD_EXPIRY_SECS", default_value_t = 24 * 3600,
          value_parser = clap::value_parser!(u64).range(1..=30 * 24 * 3600))]
    pub upload_expiry_secs: u64,

    /// HTTP worker threads of the app server (0: one per core).
    #[arg(long, env = "APP_WORKERS", default_value_t = 0)]
    pub workers: usize,

    /// In all-in-one mode, create user `demo` with a random password when there are no users.
    #[arg(long, env = "DEMO_USER", default_value_t = true, action = clap::ArgAction::Set)]
    pub demo_user: bool,

    /// Where uploaded files live (the same settings as the download server's).
    #[command(flatten)]
    pub file_store: file_store::FileStoreArgs,

    /// How people sign in: `--oidc-*` (an OpenID Connect provider) and `--password-login`.
    #[command(flatten)]
    pub sign_in: crate::oidc::SignInArgs,
}

fn parse_algorithm(s: &str) -> Result<Algorithm, String> {
    s.parse().map_err(|e: shared::KeyError| e.to_string())
}

/// Longest accepted link lifetime: the download server refuses tokens living longer
/// (`shared::Policy::DEFAULT_MAX_LIFETIME`).
pub const MAX_TOKEN_TTL: u64 = 300;

/// The settings that need more than clap's parsing, each checked once, at start, by
/// [`Config::check`]. No `Debug`: the Redis connection may hold a password.
pub struct Settings {
    /// `--public-url`.
    pub public_url: Option<BaseUrl>,
    /// `--download-url` (`None`: all-in-one).
    pub download_url: Option<BaseUrl>,
    /// `--outcomes-redis`.
    pub outcomes_redis: Option<redis::ConnectionInfo>,
    /// The `--webhooks-*` settings.
    pub webhooks: DeliverySettings,
    /// `--oidc-*`, the client secret read (`None`: no sign-in through a provider).
    pub oidc: Option<crate::oidc::OidcSettings>,
}

impl Config {
    /// The defaults, overridden by whatever environment variables are set.
    pub fn from_defaults() -> Config {
        Config::parse_from(["app-server"])
    }

    /// Refuses settings that cannot work, naming the setting ([`Config::check`], for the
    /// commands that need no more).
    pub fn validate(&self) -> Result<(), StartupError> {
        self.check().map(|_| ())
    }

    /// Raw flags to checked settings, once: a bad value stops start-up with its setting's
    /// name. Connects to nothing.
    pub fn check(&self) -> Result<Settings, StartupError> {
        let bad =
            |setting: &'static str, reason: String| Err(StartupError::Config { setting, reason });
        if !(1..=MAX_TOKEN_TTL).contains(&self.token_ttl) {
            return bad(
                "--token-ttl (TOKEN_TTL)",
                format!(
                    "must be 1 to {MAX_TOKEN_TTL} seconds, got {}",
                    self.token_ttl
                ),
            );
        }
        if self.retired_key_publish_secs < self.token_ttl {
            return bad(
                "--retired-key-publish-secs (RETIRED_KEY_PUBLISH_SECS)",
                format!(
                    "must be at least --token-ttl ({} s): links signed before a rotation \
                     would die early",
                    self.token_ttl
                ),
            );
        }
        if self.max_upload_bytes == 0 || self.max_upload_bytes > i64::MAX as u64 {
            return bad(
                "--max-upload-bytes (MAX_UPLOAD_BYTES)",
                "must be at least 1".into(),
            );
        }
        if self.session_idle_secs == 0 || self.session_idle_secs > i64::MAX as u64 {
            return bad(
                "--session-idle-secs (SESSION_IDLE_SECS)",
                "must be at least 1".into(),
            );
        }
        if self.session_max_secs == 0 || self.session_max_secs > i64::MAX as u64 {
            return bad(
                "--session-max-secs (SESSION_MAX_SECS)",
                "must be at least 1".into(),
            );
        }
        if self.share_max_secs == 0 || self.share_max_secs > i64::MAX as u64 / 2 {
            return bad(
                "--share-max-secs (SHARE_MAX_SECS)",
                "must be at least 1".into(),
            );
        }
        if self.share_max_downloads == 0 || self.share_max_downloads > i64::MAX as u64 {
            return bad(
                "--share-max-downloads (SHARE_MAX_DOWNLOADS)",
                "must be at least 1".into(),
            );
        }
        if self.share_give_back_secs > i64::MAX as u64 / 2 {
            return bad(
                "--share-give-back-secs (SHARE_GIVE_BACK_SECS)",
                "is too large".into(),
            );
        }
        let outcomes_redis = match &self.outcomes_redis {
            Some(url) => match redis::IntoConnectionInfo::into_connection_info(url.as_str()) {
                Ok(info) => Some(info),
                Err(_) => {
                    return bad(
                        "--outcomes-redis (OUTCOMES_REDIS)",
                        "not a usable redis:// URL".into(),
                    );
                }
            },
            None => None,
        };
        if self.token.issuer.is_empty() {
            return bad("--issuer (BURNLINK_ISSUER)", "must not be empty".into());
        }
        if self.token.audience.is_empty() {
            return bad("--audience (BURNLINK_AUDIENCE)", "must not be empty".into());
        }
        if self.service.data_dir.as_os_str().is_empty() {
            return bad("--data-dir (BURNLINK_DATA_DIR)", "must not be empty".into());
        }
        if self
            .signing_key
            .as_ref()
            .is_some_and(|path| path.as_os_str().is_empty())
        {
            return bad(
                "--signing-key (SIGNING_KEY_FILE)",
                "must not be empty".into(),
            );
        }
        let base_url = |setting: &'static str, url: &Option<String>| {
            url.as_deref()
                .map(|url| {
                    BaseUrl::parse(url).map_err(|reason| StartupError::Config { setting, reason })
                })
                .transpose()
        };
        let public_url = base_url("--public-url (APP_PUBLIC_URL)", &self.public_url)?;
        let download_url = base_url("--download-url (DOWNLOAD_URL)", &self.download_url)?;
        if let Some(url) = &self.database_url
            && !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
        {
            return bad(
                "--database-url (DATABASE_URL)",
                "must start with sqlite:, postgres:// or postgresql://".into(),
            );
        }
        let oidc = self.sign_in.check()?;
        Ok(Settings {
            public_url,
            download_url,
            outcomes_redis,
            webhooks: self.webhooks()?,
            oidc,
        })
    }

    /// The `--webhooks-*` settings, checked.
    fn webhooks(&self) -> Result<DeliverySettings, StartupError> {
        let bad =
            |setting: &'static str, reason: String| Err(StartupError::Config { setting, reason });
        const WEEK: Duration = Duration::from_secs(7 * 86_400);
        let schedule = &self.webhooks_retry_schedule;
        if schedule.is_empty() || schedule.len() > 20 || schedule.iter().any(|d| *d > WEEK) {
            return bad(
                "--webhooks-retry-schedule (WEBHOOKS_RETRY_SCHEDULE)",
                "1 to 20 delays, each at most 7 days".into(),
            );
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(60)).contains(&self.webhooks_timeout)
        {
            return bad(
                "--webhooks-timeout (WEBHOOKS_TIMEOUT)",
                "must be 100ms to 60s".into(),
            );
        }
        if self.webhooks_disable_after.is_zero() || self.webhooks_disable_after > 52 * WEEK {
            return bad(
                "--webhooks-disable-after (WEBHOOKS_DISABLE_AFTER)",
                "must be more than 0 and at most a year".into(),
            );
        }
        if !(Duration::from_millis(10)..=Duration::from_secs(3600)).contains(&self.webhooks_poll) {
            return bad(
                "--webhooks-poll (WEBHOOKS_POLL)",
                "must be 10ms to 1h".into(),
            );
        }
        Ok(DeliverySettings {
            schedule: schedule.clone(),
            timeout: self.webhooks_timeout,
            disable_after: self.webhooks_disable_after,
            max_in_flight: usize::try_from(self.webhooks_max_in_flight).unwrap_or(32),
            max_in_flight_per_endpoint: usize::try_from(self.webhooks_max_in_flight_per_endpoint)
                .unwrap_or(4),
            poll: self.webhooks_poll,
            reach: Reach {
                allow_private: self.webhooks_allow_private,
            },
            allow_http: self.webhooks_allow_http,
        })
    }

    /// The database URL in force: the configured one or SQLite in the data directory.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}/app.db?mode=rwc",
                self.service.data_dir.display()
            ),
        }
    }

    /// True when no separate download server is configured.
    pub fn all_in_one(&self) -> bool {
        self.download_url.is_none()
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("bind", &self.bind)
            .field("service", &self.service)
            .field("token", &self.token)
            .field("file_store", &self.file_store)
            .field(
                "database_url",
                &self
                    .database_url
                    .as_deref()
                    .map(server_kit::settings::redact_url_password),
            )
            .field("public_url", &self.public_url)
            .field("download_url", &self.download_url)
            .field("download_bind", &self.download_bind)
            .field("token_ttl", &self.token_ttl)
            .field("signing_key", &self.signing_key)
            .field("retired_key_publish_secs", &self.retired_key_publish_secs)
            .field("alg", &self.alg)
            .field("max_upload_bytes", &self.max_upload_bytes)
            .field("max_files_per_user", &self.max_files_per_user)
            .field("login_attempts_per_minute", &self.login_attempts_per_minute)
            .field("max_pending_logins", &self.max_pending_logins)
            .field("share_max_secs", &self.share_max_secs)
            .field("share_max_downloads", &self.share_max_downloads)
            .field("share_give_back_secs", &self.share_give_back_secs)
            .field(
                "outcomes_redis",
                &self
                    .outcomes_redis
                    .as_deref()
                    .map(server_kit::settings::redact_url_password),
            )
            .field("webhooks_allow_http", &self.webhooks_allow_http)
            .field("webhooks_allow_private", &self.webhooks_allow_private)
            .field("webhooks_retry_schedule", &self.webhooks_retry_schedule)
            .field("webhooks_timeout", &self.webhooks_timeout)
            .field("webhooks_disable_after", &self.webhooks_disable_after)
            .field("webhooks_poll", &self.webhooks_poll)
            .field("webhooks_max_in_flight", &self.webhooks_max_in_flight)
            .field(
                "webhooks_max_in_flight_per_endpoint",
                &self.webhooks_max_in_flight_per_endpoint,
            )
            .field("session_idle_secs", &self.session_idle_secs)
            .field("session_max_secs", &self.session_max_secs)
            .field("secure_cookies", &self.secure_cookies)
            .field("upload_idle_secs", &self.upload_idle_secs)
            .field("upload_expiry_secs", &self.upload_expiry_secs)
            .field("workers", &self.workers)
            .field("demo_user", &self.demo_user)
            .field("sign_in", &self.sign_in)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        let mut all = vec!["app-server"];
        all.extend_from_slice(args);
        Config::try_parse_from(all).expect("valid arguments")
    }

    #[test]
    fn defaults_validate() {
        let config = parse(&["--database-url", "sqlite::memory:"]);
        assert!(config.validate().is_ok());
        assert_eq!(config.alg, Algorithm::EdDSA);
    }

    #[test]
    fn ttl_out_of_range_names_the_setting() {
        let err = parse(&["--token-ttl", "301"]).validate().unwrap_err();
        assert!(err.to_string().contains("TOKEN_TTL"), "{err}");
        assert!(parse(&["--token-ttl", "0"]).validate().is_err());
    }

    #[test]
    fn a_retired_key_must_stay_published_for_a_link_lifetime() {
        let err = parse(&["--token-ttl", "60", "--retired-key-publish-secs", "59"])
            .validate()
            .unwrap_err();
        assert!(
            err.to_string().contains("RETIRED_KEY_PUBLISH_SECS"),
            "{err}"
        );
        assert!(
            parse(&["--token-ttl", "60", "--retired-key-publish-secs", "60"])
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn a_config_file_fills_in_settings_before_the_subcommand() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.toml");
        std::fs::write(
            &path,
            "token-ttl = 30\nsecure_cookies = true\nalg = \"hs256\"\n",
        )
        .unwrap();
        let path = path.to_str().unwrap();
        let cli: Cli = server_kit::config_file::parse_from([
            "app-server",
            "--config",
            path,
            "--alg",
            "eddsa",
            "keys",
            "rotate",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Keys(KeysCommand::Rotate))
        ));
        assert_eq!(cli.config.token_ttl, 30);
        assert!(cli.config.secure_cookies);
        assert_eq!(
            cli.config.alg,
            Algorithm::EdDSA,
            "the flag wins over the file"
        );
        assert_eq!(cli.config.session_idle_secs, 1800, "default");
    }

    #[test]
    fn webhook_settings_parse_and_are_checked() {
        let settings = parse(&[]).check().unwrap().webhooks;
        let secs = |s: &[u64]| {
            s.iter()
                .map(|s| Duration::from_secs(*s))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            settings.schedule,
            secs(&[0, 5, 300, 1800, 7200, 18_000, 36_000, 36_000])
        );
        assert_eq!(settings.timeout, Duration::from_secs(10));
        assert_eq!(settings.disable_after, Duration::from_secs(5 * 86_400));
        assert!(!settings.reach.allow_private && !settings.allow_http);
        let quick = parse(&[
            "--webhooks-retry-schedule",
            "0ms,50ms,1s",
            "--webhooks-allow-private",
        ])
        .check()
        .unwrap()
        .webhooks;
        assert_eq!(quick.schedule[1], Duration::from_millis(50));
        assert!(quick.reach.allow_private);
        for args in [
            ["--webhooks-timeout", "61s"],
            ["--webhooks-retry-schedule", "8d"],
            ["--webhooks-disable-after", "0s"],
            ["--webhooks-poll", "2h"],
        ] {
            let err = parse(&args).validate().unwrap_err();
            assert!(err.to_string().contains("WEBHOOKS_"), "{err}");
        }
        assert!(Config::try_parse_from(["app-server", "--webhooks-timeout", "soon"]).is_err());
    }

    #[test]
    fn bad_urls_are_refused() {
        assert!(parse(&["--download-url", "ftp://x"]).validate().is_err());
        assert!(parse(&["--public-url", "http://"]).validate().is_err());
        assert!(
            parse(&["--download-url", "https://dl.example/"])
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn algorithm_parses_case_insensitively() {
        assert_eq!(parse(&["--alg", "HS256"]).alg, Algorithm::HS256);
        assert!(Config::try_parse_from(["app-server", "--alg", "rs256"]).is_err());
    }

    #[test]
    fn signing_key_path_is_taken_and_checked() {
        let config = parse(&["--signing-key", "/run/secrets/burnlink.pem"]);
        assert_eq!(
            config.signing_key.as_deref(),
            Some(std::path::Path::new("/run/secrets/burnlink.pem"))
        );
        assert!(config.validate().is_ok());
        assert!(Config::try_parse_from(["app-server", "--signing-key", ""]).is_err());
        let mut config = config;
        config.signing_key = Some(std::path::PathBuf::new());
        let err = config.validate().unwrap_err();
        assert!(err.to_string().contains("SIGNING_KEY_FILE"), "{err}");
    }

    #[test]
    fn debug_hides_the_database_password() {
        let config = parse(&["--database-url", "postgres://me:hunter22@db:5432/app"]);
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter22"), "{shown}");
        assert!(shown.contains("postgres://me:***@db:5432/app"), "{shown}");
    }
}
