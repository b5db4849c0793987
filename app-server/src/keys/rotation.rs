//! Rotation and revocation: retired keys, `rotation.json`, `keys rotate` and `keys revoke`.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use shared::{Algorithm, KeyError, SigningKey, VerifyingKey};

use super::*;
use crate::error::StartupError;

/// The list of retired keys, `<data>/keys/rotation.json`.
pub(super) const ROTATION_FILE: &str = "rotation.json";

/// Where retired keys are kept, under `<data>/keys/`.
pub(super) const RETIRED_DIR: &str = "retired";

#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct RotationLog {
    retired: Vec<RetiredEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct RetiredEntry {
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

pub(super) fn load_retired(
    keys_dir: &Path,
    entry: &RetiredEntry,
) -> Result<VerifyingKey, KeyError> {
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
    server_kit::permissions::create_dir_all(&retired_dir).map_err(io(&retired_dir))?;
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
    let keys_dir = config.service.data().keys();
    crate::startup::prepare_data_dir(&config.service.data(), &[&keys_dir]).await?;
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
pub(super) fn data_dir_keys_only(
    config: &crate::Config,
    command: &str,
) -> Result<(), StartupError> {
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
    let keys_dir = config.service.data().keys();
    crate::startup::prepare_data_dir(&config.service.data(), &[&keys_dir]).await?;
    let (alg, publish_secs) = (config.alg, config.retired_key_publish_secs);
    tokio::task::spawn_blocking(move || rotate(&keys_dir, alg, publish_secs))
        .await
        .map_err(|e| StartupError::Io {
            what: "rotating the signing key".into(),
            source: std::io::Error::other(e.to_string()),
        })?
        .map_err(StartupError::from)
}
