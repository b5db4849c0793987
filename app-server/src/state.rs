//! What every handler shares, built once in [`crate::Application::build`].

use std::path::PathBuf;
use std::sync::Arc;

use shared::SigningKey;
use sqlx::AnyPool;

use crate::sessions::SessionPolicy;

/// Shared by all handlers through `web::Data<AppState>`.
pub struct AppState {
    pub db: AnyPool,
    pub sessions: SessionPolicy,
    /// Argon2 hash of a random password: what unknown users are verified against.
    pub dummy_hash: String,
    pub links: LinkMinter,
    /// `<data>/files`: stored files under their storage keys.
    pub files_dir: PathBuf,
    pub max_upload_bytes: u64,
    /// The public JWK Set, serialized once.
    pub jwks_json: String,
}

/// Everything needed to turn a stored file into a download link.
pub struct LinkMinter {
    pub signing_key: Arc<SigningKey>,
    pub issuer: String,
    pub audience: String,
    pub ttl: u64,
    /// Public base URL of the download server, without a trailing slash.
    pub download_url: String,
}
