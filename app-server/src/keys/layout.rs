//! Where keys live and how they are created and published: the signing key file, the JWK Set.

use std::path::{Path, PathBuf};

use shared::{Algorithm, KeyError, SigningKey, VerifyingKey};

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
    let dir = keys_dir.to_owned();
    tokio::task::spawn_blocking(move || server_kit::permissions::create_dir_all(&dir))
        .await
        .map_err(std::io::Error::other)
        .and_then(|created| created)
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

/// Writes `bytes` to `path` through a 0600 temporary file and a rename.
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    shared::write_private_file(path, bytes)
}

pub(super) fn source_setting(source: &KeySource) -> Option<&'static str> {
    match source {
        KeySource::File(_) => Some("--signing-key (SIGNING_KEY_FILE)"),
        KeySource::DataDir(_) => None,
    }
}

/// The public JWK Set of `keys` as JSON (shared secrets are never published).
pub(super) fn jwks_json_of(keys: &[VerifyingKey]) -> Result<String, StartupError> {
    serde_json::to_string(&shared::jwks(keys)).map_err(|e| StartupError::Io {
        what: "serializing the JWKS".into(),
        source: std::io::Error::other(e),
    })
}
