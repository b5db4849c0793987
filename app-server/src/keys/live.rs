//! The keys a running server signs and publishes with, and the watcher that follows a rotation.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use shared::{Algorithm, Claims, KeyError, SigningKey, VerifyingKey};

use super::*;
use crate::error::StartupError;

/// How often a running app server checks `<data>/keys/` for a rotation (two `stat`s).
pub const KEY_CHECK_INTERVAL: Duration = Duration::from_secs(2);

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
