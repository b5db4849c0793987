use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use shared::{Policy, VerifyingKey};

use crate::StartupError;

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

    /// Where burned token ids are kept: `memory` (one server) or a `redis://` URL (a fleet).
    #[arg(long, env = "BURN_STORE", default_value = "memory")]
    pub burn_store: String,

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

    pub fn policy(&self) -> Policy {
        Policy {
            leeway: self.leeway,
            max_lifetime: self.max_lifetime,
            ..Policy::new(&self.issuer, &self.audience)
        }
    }
}
