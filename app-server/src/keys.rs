//! The signing key (one for the whole fleet of app servers: `--signing-key`, or the shared
//! data dir's) and the public key set a separately run download server reads.
//!
//! Rotation (`app-server keys rotate`, data-dir keys only) keeps this layout under
//! `<data>/keys/`: the active key stays at `ed25519.pem` (or `hs256.key`); each retired key
//! goes to `retired/` (Ed25519: the public key only; HS256: the secret, which is also what
//! verifies) and is listed with its retirement time in `rotation.json`. Running app servers
//! notice a rotation within [`KEY_CHECK_INTERVAL`] and publish the active key plus every
//! retired key younger than `--retired-key-publish-secs`, each with its `retired_at`: a
//! token a retired key signed after that is refused, so a stolen retired key mints nothing.
//! `app-server keys revoke KID` drops a key from `rotation.json` (and so from the published
//! set) at once.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use shared::{Algorithm, Claims, KeyError, SigningKey, VerifyingKey};

use crate::error::StartupError;

/// Where the key for `alg` lives under `<data>/keys/`.
pub fn signing_key_path(keys_dir: &Path, alg: Algorithm) -> PathBuf {
    match alg {
        Algorithm::EdDSA => keys_dir.join("ed25519.pem"),
        Algorithm::HS256 => keys_dir.join("hs256.key"),
    }
}

/// Where the signing key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `--signing-key`: an operator-provided file that must exist.
    File(PathBuf),
    /// `<data>/keys/…`: created on first start, shared by every app server on the data dir.
    DataDir(PathBuf),
}

impl KeySource {
    /// `--signing-key` if given, else the key for `alg` under `keys_dir`.
    pub fn new(configured: Option<&Path>, keys_dir: &Path, alg: Algorithm) -> KeySource {
        match configured {
            Some(path) => KeySource::File(path.to_owned()),
            None => KeySource::DataDir(signing_key_path(keys_dir, alg)),
        }
    }
}

/// Loads the signing key. A `--signing-key` file must exist and parse; a data-dir key is
/// created on first start, race-free (see [`load_or_create`]).
pub async fn load_signing_key(
    source: KeySource,
    alg: Algorithm,
) -> Result<SigningKey, StartupError> {
    tokio::task::spawn_blocking(move || match &source {
        KeySource::File(path) => SigningKey::load(path, alg).map_err(|e| StartupError::Config {
            setting: "--signing-key (SIGNING_KEY_FILE)",
            reason: e.to_string(),
        }),
        KeySource::DataDir(path) => load_or_create(path, alg).map_err(StartupError::from),
    })
    .await
    .map_err(|e| StartupError::Io {
        what: "loading the signing key".into(),
        source: std::io::Error::other(e.to_string()),
    })?
}

/// Reads the key at `path`, or creates it so that app servers starting at once on one data
/// directory all end up with the same key: each writes a complete candidate under a private
/// name, then hard-links it to `path`. A link never replaces an existing file, so exactly one
/// candidate wins and everyone re-reads the winner. (A plain write-then-rename, as
/// `SigningKey::load_or_generate` does, lets the last renamer win after the others have already
/// started signing with their own key.)
pub fn load_or_create(path: &Path, alg: Algorithm) -> Result<SigningKey, KeyError> {
    match SigningKey::load(path, alg) {
        Err(KeyError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
        loaded => return loaded,
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let candidate = path.with_file_name(format!(".{file_name}.new-{}", shared::random_token(8)));
    // Written 0600, complete and synced before it can be linked.
    let generated = SigningKey::load_or_generate(&candidate, alg);
    let linked = generated.and_then(|_| {
        std::fs::hard_link(&candidate, path).or_else(|e| match e.kind() {
            // Another app server won the race: its key is the one.
            std::io::ErrorKind::AlreadyExists => Ok(()),
            _ => Err(KeyError::Io {
                path: path.display().to_string(),
                source: e,
            }),
        })
    });
    let _ = std::fs::remove_file(&candidate);
    linked?;
    SigningKey::load(path, alg)
}

/// The public JWK Set of `key` as JSON (empty for HS256: a shared secret is never published).
pub fn jwks_json(key: &SigningKey) -> Result<String, StartupError> {
    serde_json::to_string(&shared::jwks([key.verifying_key()])).map_err(|e| StartupError::Io {
        what: "serializing the JWKS".into(),
        source: std::io::Error::other(e),
    })
}

/// Writes `<data>/keys/jwks.json` through a temporary file and a rename, so a download server
/// reading it never sees half a file.
pub async fn write_jwks(keys_dir: &Path, json: &str) -> Result<(), StartupError> {
    let path = keys_dir.join("jwks.json");
    let tmp = keys_dir.join(format!(".jwks.json.tmp-{}", shared::random_token(6)));
    let io = |what: &str| {
        let what = format!("{what} {}", path.display());
        move |source| StartupError::Io { what, source }
    };
    tokio::fs::create_dir_all(keys_dir)
        .await
        .map_err(io("creating the directory of"))?;
    let written = async {
        tokio::fs::write(&tmp, json.as_bytes()).await?;
        tokio::fs::rename(&tmp, &path).await
    }
    .await;
    if written.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    written.map_err(io("writing"))
}

/// How often a running app server checks `<data>/keys/` for a rotation (two `stat`s).
pub const KEY_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// The list of retired keys, `<data>/keys/rotation.json`.
const ROTATION_FILE: &str = "rotation.json";

/// Where retired keys are kept, under `<data>/keys/`.
const RETIRED_DIR: &str = "retired";

#[derive(Debug, Default, Serialize, Deserialize)]
struct RotationLog {
    retired: Vec<RetiredEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RetiredEntry {
    kid: String,
    alg: String,
    /// File name under `retired/`.
    file: String,
    /// Unix seconds when it stopped signing.
    retired_at: u64,
}

impl RotationLog {
    fn read(keys_dir: &Path) -> Result<RotationLog, KeyError> {
        let path = keys_dir.join(ROTATION_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| KeyError::Invalid(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RotationLog::default()),
            Err(source) => Err(KeyError::Io {
                path: path.display().to_string(),
                source,
            }),
        }
    }
}

/// The active signing key and the retired keys still worth publishing.
#[derive(Debug)]
pub struct KeyRing {
    pub active: Arc<SigningKey>,
    /// Each retired key with the moment it stopped signing.
    pub retired: Vec<(VerifyingKey, u64)>,
}

impl KeyRing {
    /// Reads the key ring (blocking). A data-dir key is created on first start; a
    /// `--signing-key` file has no retired keys. A retired key that cannot be read is skipped
    /// with a warning: it can only have signed tokens that are about to die.
    pub fn load(source: &KeySource, alg: Algorithm) -> Result<KeyRing, KeyError> {
        let (active, keys_dir) = match source {
            KeySource::File(path) => {
                return Ok(KeyRing {
                    active: Arc::new(SigningKey::load(path, alg)?),
                    retired: Vec::new(),
                });
            }
            KeySource::DataDir(path) => (
                load_or_create(path, alg)?,
                path.parent().unwrap_or(Path::new(".")),
            ),
        };
        let mut retired = Vec::new();
        for entry in RotationLog::read(keys_dir)?.retired {
            match load_retired(keys_dir, &entry) {
                Ok(key) if key.kid() == entry.kid => retired.push((key, entry.retired_at)),
                Ok(_) => tracing::warn!(
                    kid = entry.kid,
                    "retired key file does not match its kid; skipped"
                ),
                Err(e) => {
                    tracing::warn!(kid = entry.kid, error = %e, "retired key unreadable; skipped")
                }
            }
        }
        Ok(KeyRing {
            active: Arc::new(active),
            retired,
        })
    }

    /// The active key and the retired keys retired less than `publish_secs` before `now`:
    /// what download servers must accept. Each retired key carries its retirement time plus
    /// [`KEY_CHECK_INTERVAL`], the longest a running app server may go on signing with it
    /// before it notices the rotation: tokens it signed later are refused.
    pub fn published(&self, now: u64, publish_secs: u64) -> Vec<VerifyingKey> {
        let mut keys = vec![self.active.verifying_key().clone()];
        for (key, retired_at) in &self.retired {
            if now < retired_at.saturating_add(publish_secs)
                && !keys.iter().any(|k| k.kid() == key.kid())
            {
                let signed_until = retired_at.saturating_add(KEY_CHECK_INTERVAL.as_secs());
                keys.push(key.clone().retired(signed_until));
            }
        }
        keys
    }
}

fn load_retired(keys_dir: &Path, entry: &RetiredEntry) -> Result<VerifyingKey, KeyError> {
    if entry.file.contains(['/', '\\']) || entry.file.starts_with('.') {
        return Err(KeyError::Invalid(format!(
            "bad retired key file name {:?}",
            entry.file
        )));
    }
    let path = keys_dir.join(RETIRED_DIR).join(&entry.file);
    match entry.alg.parse::<Algorithm>()? {
        Algorithm::EdDSA => {
            let pem = std::fs::read_to_string(&path).map_err(|source| KeyError::Io {
                path: path.display().to_string(),
                source,
            })?;
            VerifyingKey::ed25519_from_pem(&pem)
        }
        Algorithm::HS256 => Ok(SigningKey::load(&path, Algorithm::HS256)?
            .verifying_key()
            .clone()),
    }
}

/// What `keys rotate` did.
#[derive(Debug, Clone)]
pub struct Rotation {
    pub retired_kid: String,
    pub active_kid: String,
}

/// Makes a new key the active one for `alg` under `keys_dir` (blocking). The old key is
/// written to `retired/` and listed in `rotation.json` *before* the new key replaces it, so a
/// running server never sees the new key without the old one. Retired keys older than
/// `publish_secs` are forgotten (and their files removed). One rotation at a time.
pub fn rotate(keys_dir: &Path, alg: Algorithm, publish_secs: u64) -> Result<Rotation, KeyError> {
    let path = signing_key_path(keys_dir, alg);
    let old = load_or_create(&path, alg)?;
    let now = shared::unix_now();
    let retired_dir = keys_dir.join(RETIRED_DIR);
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |source| KeyError::Io { path: p, source }
    };
    std::fs::create_dir_all(&retired_dir).map_err(io(&retired_dir))?;
    let (file, text) = match alg {
        Algorithm::EdDSA => (
            format!("ed25519-{}.pub.pem", old.kid()),
            old.verifying_key()
                .to_pem()
                .ok_or_else(|| KeyError::Invalid("no public PEM for an Ed25519 key".into()))?,
        ),
        Algorithm::HS256 => (
            format!("{}.key", old.kid()),
            std::fs::read_to_string(&path).map_err(io(&path))?,
        ),
    };
    write_atomic(&retired_dir.join(&file), text.as_bytes())?;

    let mut log = RotationLog::read(keys_dir)?;
    log.retired.retain(|e| {
        let keep = now < e.retired_at.saturating_add(publish_secs) && e.kid != old.kid();
        if !keep && e.file != file && !e.file.contains(['/', '\\']) {
            let _ = std::fs::remove_file(retired_dir.join(&e.file));
        }
        keep
    });
    log.retired.push(RetiredEntry {
        kid: old.kid().to_owned(),
        alg: alg.as_str().to_owned(),
        file,
        retired_at: now,
    });
    let json = serde_json::to_vec_pretty(&log).map_err(|e| KeyError::Invalid(e.to_string()))?;
    write_atomic(&keys_dir.join(ROTATION_FILE), &json)?;

    // A complete 0600 key under a private name, then renamed over the active one.
    let candidate = keys_dir.join(format!(".rotate-{}", shared::random_token(8)));
    let new = SigningKey::load_or_generate(&candidate, alg)?;
    std::fs::rename(&candidate, &path).map_err(|e| {
        let _ = std::fs::remove_file(&candidate);
        io(&path)(e)
    })?;
    Ok(Rotation {
        retired_kid: old.kid().to_owned(),
        active_kid: new.kid().to_owned(),
    })
}

/// What `keys revoke` did.
#[derive(Debug, Clone)]
pub struct Revocation {
    /// The new active key, when the revoked key was the active one.
    pub rotated_to: Option<String>,
}

/// Drops `kid` from the keys under `keys_dir` (blocking): a retired key leaves
/// `rotation.json` and its file is removed; the active key is rotated out first, then dropped
/// the same way. Running app servers stop publishing it within [`KEY_CHECK_INTERVAL`].
pub fn revoke(
    keys_dir: &Path,
    alg: Algorithm,
    kid: &str,
    publish_secs: u64,
) -> Result<Revocation, KeyError> {
    let active = load_or_create(&signing_key_path(keys_dir, alg), alg)?;
    let rotated_to = if active.kid() == kid {
        Some(rotate(keys_dir, alg, publish_secs)?.active_kid)
    } else {
        None
    };
    let mut log = RotationLog::read(keys_dir)?;
    let Some(at) = log.retired.iter().position(|e| e.kid == kid) else {
        let known: Vec<&str> = std::iter::once(active.kid())
            .chain(log.retired.iter().map(|e| e.kid.as_str()))
            .collect();
        return Err(KeyError::Invalid(format!(
            "no {alg} key {kid:?} under {} (known: {})",
            keys_dir.display(),
            known.join(", ")
        )));
    };
    let entry = log.retired.remove(at);
    let json = serde_json::to_vec_pretty(&log).map_err(|e| KeyError::Invalid(e.to_string()))?;
    write_atomic(&keys_dir.join(ROTATION_FILE), &json)?;
    if !entry.file.contains(['/', '\\']) && !entry.file.starts_with('.') {
        let _ = std::fs::remove_file(keys_dir.join(RETIRED_DIR).join(&entry.file));
    }
    Ok(Revocation { rotated_to })
}

/// `app-server keys revoke KID`: [`revoke`] on the data-dir keys, then rewrites
/// `<data>/keys/jwks.json` so a download server reading it drops the key even when no app
/// server is running.
pub async fn revoke_configured(
    config: &crate::Config,
    kid: &str,
) -> Result<Revocation, StartupError> {
    data_dir_keys_only(config, "keys revoke")?;
    let keys_dir = shared::DataDir::new(&config.data_dir).keys();
    let (alg, publish_secs, owned_kid) =
        (config.alg, config.retired_key_publish_secs, kid.to_owned());
    let dir = keys_dir.clone();
    let (revocation, published) = tokio::task::spawn_blocking(move || {
        let revocation = revoke(&dir, alg, &owned_kid, publish_secs)?;
        let source = KeySource::DataDir(signing_key_path(&dir, alg));
        let ring = KeyRing::load(&source, alg)?;
        Ok::<_, KeyError>((revocation, ring.published(shared::unix_now(), publish_secs)))
    })
    .await
    .map_err(|e| StartupError::Io {
        what: "revoking the signing key".into(),
        source: std::io::Error::other(e.to_string()),
    })??;
    write_jwks(&keys_dir, &jwks_json_of(&published)?).await?;
    Ok(revocation)
}

/// `keys rotate` and `keys revoke` manage `<data-dir>/keys` only: a `--signing-key` file
/// belongs to the operator, who rotates it by replacing it.
fn data_dir_keys_only(config: &crate::Config, command: &str) -> Result<(), StartupError> {
    config.validate()?;
    if config.signing_key.is_some() {
        return Err(StartupError::Config {
            setting: "--signing-key (SIGNING_KEY_FILE)",
            reason: format!("{command} manages <data-dir>/keys only; replace the key file instead"),
        });
    }
    Ok(())
}

/// `app-server keys rotate`: rotates the data-dir key for `config.alg`. Refused with
/// `--signing-key`: that file belongs to the operator, who rotates it by replacing it.
pub async fn rotate_configured(config: &crate::Config) -> Result<Rotation, StartupError> {
    data_dir_keys_only(config, "keys rotate")?;
    let keys_dir = shared::DataDir::new(&config.data_dir).keys();
    let (alg, publish_secs) = (config.alg, config.retired_key_publish_secs);
    tokio::task::spawn_blocking(move || rotate(&keys_dir, alg, publish_secs))
        .await
        .map_err(|e| StartupError::Io {
            what: "rotating the signing key".into(),
            source: std::io::Error::other(e.to_string()),
        })?
        .map_err(StartupError::from)
}

/// Writes `bytes` to `path` through a 0600 temporary file and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    shared::write_private_file(path, bytes)
}

/// The keys a running app server signs and publishes with, swapped whole on rotation: minting
/// reads the active key without a lock.
pub struct LiveKeys {
    signing: ArcSwap<SigningKey>,
    jwks_json: ArcSwap<String>,
}

impl LiveKeys {
    fn new(active: Arc<SigningKey>, jwks_json: String) -> LiveKeys {
        LiveKeys {
            signing: ArcSwap::new(active),
            jwks_json: ArcSwap::from_pointee(jwks_json),
        }
    }

    /// Signs `claims` with the active key.
    pub fn mint(&self, claims: &Claims) -> Result<String, KeyError> {
        self.signing.load().mint(claims)
    }

    /// The active key's id.
    pub fn kid(&self) -> String {
        self.signing.load().kid().to_owned()
    }

    /// The active key's algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.signing.load().algorithm()
    }

    /// The public JWK Set in force, serialized.
    pub fn jwks_json(&self) -> Arc<String> {
        self.jwks_json.load_full()
    }
}

impl std::fmt::Debug for LiveKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveKeys")
            .field("kid", &self.kid())
            .finish_non_exhaustive()
    }
}

/// Follows the key ring of one app server: loads it at start, then checks for a rotation
/// every [`KEY_CHECK_INTERVAL`] and lets retired keys age out of the published set.
pub struct KeyWatch {
    source: KeySource,
    alg: Algorithm,
    keys_dir: PathBuf,
    publish_secs: u64,
}

/// What identifies the active key file and the rotation log cheaply.
type Fingerprint = [Option<(u64, SystemTime)>; 2];

impl KeyWatch {
    pub fn new(source: KeySource, alg: Algorithm, keys_dir: &Path, publish_secs: u64) -> KeyWatch {
        KeyWatch {
            source,
            alg,
            keys_dir: keys_dir.to_owned(),
            publish_secs,
        }
    }

    fn fingerprint(&self) -> Fingerprint {
        let stat = |p: &Path| {
            let meta = std::fs::metadata(p).ok()?;
            Some((meta.len(), meta.modified().ok()?))
        };
        let active = match &self.source {
            KeySource::File(p) | KeySource::DataDir(p) => stat(p),
        };
        [active, stat(&self.keys_dir.join(ROTATION_FILE))]
    }

    async fn load(&self) -> Result<KeyRing, StartupError> {
        let (source, alg) = (self.source.clone(), self.alg);
        tokio::task::spawn_blocking(move || KeyRing::load(&source, alg))
            .await
            .map_err(|e| StartupError::Io {
                what: "loading the signing key".into(),
                source: std::io::Error::other(e.to_string()),
            })?
            .map_err(|e| match source_setting(&self.source) {
                Some(setting) => StartupError::Config {
                    setting,
                    reason: e.to_string(),
                },
                None => StartupError::from(e),
            })
    }

    /// Loads the ring and writes `<data>/keys/jwks.json`; returns the live keys and the
    /// published verification keys (for an embedded download server).
    pub async fn start(&self) -> Result<(Arc<LiveKeys>, Vec<VerifyingKey>), StartupError> {
        let ring = self.load().await?;
        let published = ring.published(shared::unix_now(), self.publish_secs);
        let json = jwks_json_of(&published)?;
        write_jwks(&self.keys_dir, &json).await?;
        Ok((Arc::new(LiveKeys::new(ring.active, json)), published))
    }

    /// Runs the checks in the background until `live` is dropped. `on_change` gets every new
    /// published set (the embedded download server's in-process keys).
    pub fn spawn(
        self,
        live: &Arc<LiveKeys>,
        published: Vec<VerifyingKey>,
        on_change: impl Fn(Vec<VerifyingKey>) + Send + 'static,
    ) {
        let weak: Weak<LiveKeys> = Arc::downgrade(live);
        tokio::spawn(async move {
            let kids =
                |keys: &[VerifyingKey]| keys.iter().map(|k| k.kid().to_owned()).collect::<Vec<_>>();
            let mut seen = self.fingerprint();
            let mut ring: Option<KeyRing> = None;
            let mut shown = kids(&published);
            let mut tick = tokio::time::interval(KEY_CHECK_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(live) = weak.upgrade() else { return };
                let now = self.fingerprint();
                if now != seen || ring.is_none() {
                    match self.load().await {
                        Ok(loaded) => {
                            seen = now;
                            ring = Some(loaded);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "key ring unreadable; keeping the keys in force");
                            continue;
                        }
                    }
                }
                let Some(ring) = &ring else { continue };
                let published = ring.published(shared::unix_now(), self.publish_secs);
                let active_changed = live.signing.load().kid() != ring.active.kid();
                if !active_changed && kids(&published) == shown {
                    continue;
                }
                let Ok(json) = jwks_json_of(&published) else {
                    continue;
                };
                if let Err(e) = write_jwks(&self.keys_dir, &json).await {
                    tracing::warn!(error = %e, "could not write jwks.json");
                }
                live.jwks_json.store(Arc::new(json));
                // Published (and handed to the download server) before it signs anything.
                on_change(published.clone());
                if active_changed {
                    live.signing.store(ring.active.clone());
                }
                shown = kids(&published);
                tracing::info!(active = live.kid(), published = ?shown, "signing keys updated");
            }
        });
    }
}

fn source_setting(source: &KeySource) -> Option<&'static str> {
    match source {
        KeySource::File(_) => Some("--signing-key (SIGNING_KEY_FILE)"),
        KeySource::DataDir(_) => None,
    }
}

/// The public JWK Set of `keys` as JSON (shared secrets are never published).
fn jwks_json_of(keys: &[VerifyingKey]) -> Result<String, StartupError> {
    serde_json::to_string(&shared::jwks(keys)).map_err(|e| StartupError::Io {
        what: "serializing the JWKS".into(),
        source: std::io::Error::other(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_servers_racing_to_create_the_key_all_get_the_same_one() {
        for alg in [Algorithm::EdDSA, Algorithm::HS256] {
            let dir = tempfile::tempdir().unwrap();
            let path = signing_key_path(dir.path(), alg);
            let barrier = std::sync::Barrier::new(8);
            let kids: Vec<String> = std::thread::scope(|s| {
                let racers: Vec<_> = (0..8)
                    .map(|_| {
                        s.spawn(|| {
                            barrier.wait();
                            load_or_create(&path, alg).unwrap().kid().to_owned()
                        })
                    })
                    .collect();
                racers.into_iter().map(|r| r.join().unwrap()).collect()
            });
            let on_disk = SigningKey::load(&path, alg).unwrap();
            assert!(kids.iter().all(|kid| kid == on_disk.kid()), "{kids:?}");
            // Only the key is left: no candidate files.
            let names: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names, [path.file_name().unwrap()], "{alg}");
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(&path).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "{alg}");
            }
        }
    }

    #[test]
    fn an_existing_key_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = signing_key_path(dir.path(), Algorithm::EdDSA);
        let first = load_or_create(&path, Algorithm::EdDSA).unwrap();
        let again = load_or_create(&path, Algorithm::EdDSA).unwrap();
        assert_eq!(first.kid(), again.kid());
    }

    #[test]
    fn rotation_keeps_the_active_path_and_ages_retired_keys_out() {
        for alg in [Algorithm::EdDSA, Algorithm::HS256] {
            let dir = tempfile::tempdir().unwrap();
            let path = signing_key_path(dir.path(), alg);
            let first = load_or_create(&path, alg).unwrap();
            let rotation = rotate(dir.path(), alg, 3600).unwrap();
            assert_eq!(rotation.retired_kid, first.kid());
            let source = KeySource::DataDir(path.clone());
            let ring = KeyRing::load(&source, alg).unwrap();
            assert_eq!(ring.active.kid(), rotation.active_kid, "{alg}");
            assert_eq!(
                SigningKey::load(&path, alg).unwrap().kid(),
                rotation.active_kid
            );
            let now = shared::unix_now();
            let kids = |keys: Vec<VerifyingKey>| {
                keys.iter().map(|k| k.kid().to_owned()).collect::<Vec<_>>()
            };
            assert_eq!(
                kids(ring.published(now, 3600)),
                [rotation.active_kid.clone(), first.kid().to_owned()]
            );
            assert_eq!(
                kids(ring.published(now + 3600, 3600)),
                std::slice::from_ref(&rotation.active_kid)
            );

            // A second rotation with a zero window forgets the first retired key and its file.
            let second = rotate(dir.path(), alg, 0).unwrap();
            let ring = KeyRing::load(&source, alg).unwrap();
            let retired: Vec<_> = ring
                .retired
                .iter()
                .map(|(k, _)| k.kid().to_owned())
                .collect();
            assert_eq!(retired, std::slice::from_ref(&second.retired_kid), "{alg}");
            assert_eq!(
                std::fs::read_dir(dir.path().join(RETIRED_DIR))
                    .unwrap()
                    .count(),
                1
            );
            // Retired Ed25519 keys keep only their public half.
            if alg == Algorithm::EdDSA {
                let entry = std::fs::read_dir(dir.path().join(RETIRED_DIR))
                    .unwrap()
                    .next()
                    .unwrap();
                let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
                assert!(
                    text.contains("PUBLIC KEY") && !text.contains("PRIVATE"),
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn published_retired_keys_carry_their_retirement_and_revoked_keys_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        let alg = Algorithm::EdDSA;
        let path = signing_key_path(dir.path(), alg);
        let source = KeySource::DataDir(path.clone());
        let first = load_or_create(&path, alg).unwrap();
        let before = shared::unix_now();
        let rotation = rotate(dir.path(), alg, 3600).unwrap();
        let ring = KeyRing::load(&source, alg).unwrap();
        let published = ring.published(shared::unix_now(), 3600);
        assert_eq!(published[0].retired_at(), None, "the active key");
        let retired_at = published[1].retired_at().expect("retired_at");
        assert!(
            retired_at >= before + KEY_CHECK_INTERVAL.as_secs(),
            "{retired_at}"
        );

        // A retired key: dropped with its file.
        let revoked = revoke(dir.path(), alg, first.kid(), 3600).unwrap();
        assert!(revoked.rotated_to.is_none());
        let ring = KeyRing::load(&source, alg).unwrap();
        assert!(ring.retired.is_empty());
        assert_eq!(
            std::fs::read_dir(dir.path().join(RETIRED_DIR))
                .unwrap()
                .count(),
            0
        );
        // The active key: rotated out, then dropped.
        let revoked = revoke(dir.path(), alg, &rotation.active_kid, 3600).unwrap();
        let ring = KeyRing::load(&source, alg).unwrap();
        assert_eq!(Some(ring.active.kid()), revoked.rotated_to.as_deref());
        assert!(ring.retired.is_empty());
        // An unknown kid is an error naming the known ones.
        let e = revoke(dir.path(), alg, "nope", 3600)
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope") && e.contains(ring.active.kid()), "{e}");
    }

    #[tokio::test]
    async fn a_missing_signing_key_file_names_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let err = load_signing_key(KeySource::File(missing.clone()), Algorithm::EdDSA)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("SIGNING_KEY_FILE"), "{err}");
        assert!(!missing.exists(), "an explicit key file is never created");
    }
}
