//! The verification keys in force, and how they follow an app server's key rotation: key files
//! are re-read when they change, a JWKS URL is fetched on an interval and when a token names
//! an unknown `kid` (at most once per `--jwks-min-refresh-secs`), and the all-in-one app
//! server hands its keys over in-process ([`Keys::replace_in_process`]).
//!
//! The verifier is swapped whole ([`arc_swap::ArcSwap`]): a download reads the current one
//! without taking a lock; a refresh builds a new one beside it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use shared::{Grant, KeyError, Policy, TokenError, Verifier, VerifyingKey};

use crate::{Config, StartupError};

mod batch;

/// How often key files are checked for a change (one `stat` each).
pub const FILE_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// Longest wait for the JWKS URL to answer.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// A JWK Set larger than this is refused: ours is a few hundred bytes per key.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// Where keys come from besides the in-process ones.
#[derive(Debug, Clone, Default)]
struct FileSources {
    jwks_file: Option<PathBuf>,
    public_keys: Vec<PathBuf>,
    hs256_secret_file: Option<PathBuf>,
}

impl FileSources {
    fn paths(&self) -> impl Iterator<Item = &PathBuf> {
        self.jwks_file
            .iter()
            .chain(&self.public_keys)
            .chain(&self.hs256_secret_file)
    }

    fn is_empty(&self) -> bool {
        self.paths().next().is_none()
    }

    /// Every key of every file; the first unreadable or invalid file is an error naming its
    /// setting.
    fn load(&self) -> Result<Vec<VerifyingKey>, StartupError> {
        let setting = |name: &'static str| move |e: KeyError| StartupError::Key(name, e);
        let read = |name: &'static str, path: &PathBuf| {
            std::fs::read_to_string(path).map_err(|source| {
                StartupError::Key(
                    name,
                    KeyError::Io {
                        path: path.display().to_string(),
                        source,
                    },
                )
            })
        };
        let mut keys = Vec::new();
        if let Some(path) = &self.jwks_file {
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
        Ok(keys)
    }

    /// What identifies the files' current contents cheaply: size and modification time.
    fn fingerprint(&self) -> Vec<Option<(u64, SystemTime)>> {
        self.paths().map(|p| fingerprint(p)).collect()
    }
}

fn fingerprint(path: &Path) -> Option<(u64, SystemTime)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

/// The keys from each source, kept apart so one source failing keeps its last good set.
#[derive(Default)]
struct Parts {
    in_process: Vec<VerifyingKey>,
    files: Vec<VerifyingKey>,
    url: Vec<VerifyingKey>,
}

impl Parts {
    fn all(&self) -> Vec<VerifyingKey> {
        let mut keys: Vec<VerifyingKey> = Vec::new();
        for key in self.in_process.iter().chain(&self.files).chain(&self.url) {
            if !keys.iter().any(|k| k.kid() == key.kid()) {
                keys.push(key.clone());
            }
        }
        keys
    }
}

/// The JWKS URL and its refresh limits.
struct Remote {
    url: String,
    client: reqwest::Client,
    refresh: Duration,
    min_refresh: Duration,
    /// When the last fetch started: an unknown `kid` fetches only if this is older than
    /// `min_refresh`, so garbage tokens cannot make us hammer the app server.
    last_fetch: Mutex<Option<Instant>>,
    /// One fetch at a time.
    fetching: tokio::sync::Mutex<()>,
}

/// The verification keys in force, behind one swappable [`Verifier`].
pub struct Keys {
    verifier: ArcSwap<Verifier>,
    /// Gathers Ed25519 tokens under load (see [`batch`]), one batcher per worker thread.
    batcher: thread_local::ThreadLocal<batch::Batcher>,
    /// Where each batch's size is counted (`burnlink_verify_batch_tokens`).
    batch_sizes: prometheus::Histogram,
    policy: Policy,
    parts: Mutex<Parts>,
    files: FileSources,
    remote: Option<Remote>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verifier = self.verifier.load();
        f.debug_struct("Keys")
            .field("kids", &verifier.kids().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Keys {
    /// Reads the configured key files and the JWKS URL once. A file that cannot be read or
    /// parsed stops start-up; a JWKS URL that does not answer only warns (the app server may
    /// be starting too): its keys arrive on the next refresh. No key source at all is an error.
    /// `jwks_url` is `--jwks-url` as [`Config::check`] checked it; each Ed25519 batch's size
    /// goes to `batch_sizes`.
    pub async fn load(
        config: &Config,
        jwks_url: Option<String>,
        policy: Policy,
        batch_sizes: prometheus::Histogram,
    ) -> Result<Arc<Keys>, StartupError> {
        let mut files = FileSources {
            jwks_file: config.jwks_file.clone(),
            public_keys: config.public_keys.clone(),
            hs256_secret_file: config.hs256_secret_file.clone(),
        };
        if files.is_empty() && config.jwks_url.is_none() && config.keys.is_empty() {
            files.jwks_file = Some(config.service.data().jwks());
        }
        let remote = match jwks_url {
            None => None,
            Some(url) => Some(Remote {
                client: jwks_client(&url, config.jwks_ca_file.as_deref())?,
                url,
                refresh: Duration::from_secs(config.jwks_refresh_secs),
                min_refresh: Duration::from_secs(config.jwks_min_refresh_secs),
                last_fetch: Mutex::new(None),
                fetching: tokio::sync::Mutex::new(()),
            }),
        };
        let parts = Parts {
            in_process: config.keys.clone(),
            files: files.load()?,
            url: Vec::new(),
        };
        if parts.in_process.is_empty() && parts.files.is_empty() && remote.is_none() {
            return Err(StartupError::NoKeys);
        }
        let keys = Arc::new(Keys {
            verifier: ArcSwap::from_pointee(Verifier::new(parts.all(), policy.clone())),
            batcher: thread_local::ThreadLocal::new(),
            batch_sizes,
            policy,
            parts: Mutex::new(parts),
            files,
            remote,
        });
        if keys.remote.is_some() {
            keys.fetch().await;
        }
        keys.watch();
        Ok(keys)
    }

    /// The policy every token is checked against.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The key ids in force now.
    pub fn kids(&self) -> Vec<String> {
        self.verifier.load().kids().map(str::to_owned).collect()
    }

    /// Verifies with the keys in force. A token naming an unknown `kid` makes us fetch the
    /// JWKS URL (when there is one and the last fetch is older than `--jwks-min-refresh-secs`)
    /// and try once more: that is how a freshly rotated key is learned.
    pub async fn verify(&self, token: &str) -> Result<Grant, TokenError> {
        self.verify_at(token, shared::unix_now()).await
    }

    /// [`Keys::verify`] at `now` (Unix seconds), the reading the caller's burn is kept by.
    pub async fn verify_at(&self, token: &str, now: u64) -> Result<Grant, TokenError> {
        match self.verify_allowing_expiry_at(token, now).await? {
            (_, true) => Err(TokenError::Expired),
            (grant, false) => Ok(grant),
        }
    }

    /// [`Verifier::verify_allowing_expiry_at`] with the keys in force; an Ed25519 token
    /// through the batcher (the same answer, cheaper under load).
    pub async fn verify_allowing_expiry_at(
        &self,
        token: &str,
        now: u64,
    ) -> Result<(Grant, bool), TokenError> {
        // An HS256 token (or one refused by its header) is answered here and now; an Ed25519
        // one joins its worker's batch (see [`batch`]).
        let single = self.verifier.load().verify_unless_batchable_at(token, now);
        let first = match single {
            Some(answer) => answer,
            None => {
                let batcher = self.batcher.get_or_default();
                batcher
                    .verify(&self.verifier, &self.batch_sizes, token, now)
                    .await
            }
        };
        match first {
            Err(TokenError::UnknownKey) if self.fetch_for_unknown_kid().await => {
                self.verifier.load().verify_allowing_expiry_at(token, now)
            }
            result => result,
        }
    }

    /// The all-in-one app server's keys after a rotation: replaces the in-process keys.
    pub fn replace_in_process(&self, keys: Vec<VerifyingKey>) {
        self.update(|parts| parts.in_process = keys);
    }

    fn update(&self, change: impl FnOnce(&mut Parts)) {
        let mut parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut parts);
        let keys = parts.all();
        let kids: Vec<&str> = keys.iter().map(|k| k.kid()).collect();
        tracing::info!(?kids, "verification keys updated");
        self.verifier
            .store(Arc::new(Verifier::new(keys, self.policy.clone())));
    }

    /// Whether a fetch for an unknown `kid` happened (and so a retry may succeed).
    async fn fetch_for_unknown_kid(&self) -> bool {
        let Some(remote) = &self.remote else {
            return false;
        };
        {
            let last = remote.last_fetch.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|at| at.elapsed() < remote.min_refresh) {
                return false;
            }
        }
        self.fetch().await
    }

    /// Fetches the JWKS URL and, if it answers with a valid set, makes its keys the URL's.
    /// A failure keeps the last good set. Returns whether the keys were replaced.
    async fn fetch(&self) -> bool {
        let Some(remote) = &self.remote else {
            return false;
        };
        let _one = remote.fetching.lock().await;
        {
            let mut last = remote.last_fetch.lock().unwrap_or_else(|e| e.into_inner());
            // Someone else fetched while we waited: their result is ours.
            if last.is_some_and(|at| at.elapsed() < remote.min_refresh.min(remote.refresh)) {
                return true;
            }
            *last = Some(Instant::now());
        }
        match fetch_jwks(&remote.client, &remote.url).await {
            Ok(keys) => {
                self.update(|parts| parts.url = keys);
                true
            }
            Err(e) => {
                tracing::warn!(url = %remote.url, error = %e, "JWKS fetch failed; keeping the last good keys");
                false
            }
        }
    }

    /// Starts the background refresh: key files every [`FILE_CHECK_INTERVAL`], the JWKS URL
    /// every `--jwks-refresh-secs`. It ends when the keys are dropped.
    fn watch(self: &Arc<Self>) {
        let weak: Weak<Keys> = Arc::downgrade(self);
        if !self.files.is_empty() {
            let weak = weak.clone();
            let mut seen = self.files.fingerprint();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(FILE_CHECK_INTERVAL);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(keys) = weak.upgrade() else { return };
                    let now = keys.files.fingerprint();
                    if now == seen {
                        continue;
                    }
                    match keys.files.load() {
                        Ok(loaded) => {
                            seen = now;
                            keys.update(|parts| parts.files = loaded);
                        }
                        // Half-written or being replaced: keep the last good keys, retry.
                        Err(e) => {
                            tracing::warn!(error = %e, "key file unreadable; keeping the last good keys")
                        }
                    }
                }
            });
        }
        if let Some(remote) = &self.remote {
            let every = remote.refresh;
            tokio::spawn(async move {
                let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(keys) = weak.upgrade() else { return };
                    keys.fetch().await;
                }
            });
        }
    }
}

/// The client for `--jwks-url`: no redirects, a deadline on the whole fetch, https only for
/// an https URL, and with `--jwks-ca-file` only those CAs trusted.
fn jwks_client(url: &str, ca_file: Option<&Path>) -> Result<reqwest::Client, StartupError> {
    const SETTING: &str = "--jwks-ca-file (JWKS_CA_FILE)";
    let mut builder = reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .https_only(url.starts_with("https://"))
        .use_rustls_tls();
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|source| {
            StartupError::Key(
                SETTING,
                KeyError::Io {
                    path: path.display().to_string(),
                    source,
                },
            )
        })?;
        let invalid = |why: String| {
            StartupError::Key(
                SETTING,
                KeyError::Invalid(format!("{}: {why}", path.display())),
            )
        };
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| invalid(format!("not PEM certificates: {e}")))?;
        if certs.is_empty() {
            return Err(invalid("no certificate in the file".into()));
        }
        builder = builder.tls_built_in_root_certs(false);
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| StartupError::JwksUrl(e.to_string()))
}

#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    #[error("answered {0}")]
    Status(reqwest::StatusCode),
    #[error("JWK Set larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    #[error("{0}")]
    Keys(#[from] KeyError),
}

/// Fetches and parses the set. The body is read chunk by chunk and the fetch given up (the
/// connection dropped) as soon as it passes [`MAX_JWKS_BYTES`]: a huge or endless chunked
/// answer costs at most that much memory.
async fn fetch_jwks(client: &reqwest::Client, url: &str) -> Result<Vec<VerifyingKey>, FetchError> {
    let mut res = client.get(url).send().await?;
    if !res.status().is_success() {
        return Err(FetchError::Status(res.status()));
    }
    let announced = res.content_length().unwrap_or(0);
    if announced > MAX_JWKS_BYTES as u64 {
        return Err(FetchError::TooLarge);
    }
    let mut body = Vec::with_capacity(announced as usize);
    while let Some(chunk) = res.chunk().await? {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(FetchError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    let text =
        std::str::from_utf8(&body).map_err(|_| KeyError::Invalid("JWKS is not UTF-8".into()))?;
    Ok(shared::parse_jwks(text)?)
}
