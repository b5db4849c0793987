//! What every handler shares, built once in [`crate::Application::build`].

use std::path::PathBuf;

use sqlx::AnyPool;

use crate::minter::LinkMinter;
use crate::sessions::SessionPolicy;

/// Shared by all handlers through `web::Data<AppState>`.
pub struct AppState {
    pub db: AnyPool,
    pub sessions: SessionPolicy,
    /// `scheme://host[:port]` of `--public-url`: what a browser's `Origin` says on a login
    /// posted from our own page.
    pub public_origin: String,
    /// Argon2 hash of a random password: what unknown users are verified against.
    pub dummy_hash: String,
    /// Mints download links, with the signing keys in force (also what `/.well-known/jwks.json`
    /// publishes).
    pub links: LinkMinter,
    /// `<data>/files`: stored files under their storage keys.
    pub files: file_store::Files,
    pub max_upload_bytes: u64,
    /// Most files one user may keep (`--max-files-per-user`); 0: no limit.
    pub max_files_per_user: u64,
    /// Failed-login buckets per account and per client address.
    pub login_throttle: crate::throttle::LoginThrottle,
    /// Prometheus series (`/metrics`).
    pub metrics: crate::metrics::Metrics,
    /// `<data>/audit`: the download servers' audit files, read for "recent downloads".
    pub audit_dir: PathBuf,
    /// Limits and URLs of shares.
    pub shares: crate::shares::SharePolicy,
    /// Wrong share passwords per share and per client address.
    pub share_throttle: crate::throttle::LoginThrottle,
    /// Signs the share page's form token.
    pub form_key: crate::share_form::FormKey,
}
