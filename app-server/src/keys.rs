//! The signing key and the public key set a separately run download server reads.

use std::path::{Path, PathBuf};

use shared::{Algorithm, SigningKey};

use crate::error::StartupError;

/// Where the key for `alg` lives under `<data>/keys/`.
pub fn signing_key_path(keys_dir: &Path, alg: Algorithm) -> PathBuf {
    match alg {
        Algorithm::EdDSA => keys_dir.join("ed25519.pem"),
        Algorithm::HS256 => keys_dir.join("hs256.key"),
    }
}

/// Loads the signing key, creating it on first start.
pub async fn load_signing_key(keys_dir: &Path, alg: Algorithm) -> Result<SigningKey, StartupError> {
    let path = signing_key_path(keys_dir, alg);
    tokio::task::spawn_blocking(move || SigningKey::load_or_generate(&path, alg))
        .await
        .map_err(|e| StartupError::Io {
            what: "loading the signing key".into(),
            source: std::io::Error::other(e.to_string()),
        })?
        .map_err(StartupError::from)
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
