//! What the handlers share, built once in [`crate::Application::build`]. Handlers pull the
//! pieces a domain function needs from here and pass those, never this whole struct: no
//! domain module depends on this one. The session extractor reads its own two pieces
//! (`web::Data<AnyPool>`, `web::Data<SessionPolicy>`), registered beside it.

use std::path::PathBuf;

use sqlx::AnyPool;

use crate::files::{Destination, UploadLimits};
use crate::login::LoginGate;
use crate::minter::LinkMinter;
use crate::sessions::SessionPolicy;
use crate::shares::SharePolicy;
use crate::throttle::LoginThrottle;

/// Shared by all handlers through `web::Data<AppState>`.
pub struct AppState {
    pub db: AnyPool,
    pub sessions: SessionPolicy,
    /// `scheme://host[:port]` of `--public-url`: what a browser's `Origin` says on a login
    /// posted from our own page.
    pub public_origin: String,
    /// Failed-login buckets and the hash unknown users are verified against.
    pub login: LoginGate,
    /// Mints download links, with the signing keys in force (also what `/.well-known/jwks.json`
    /// publishes).
    pub links: LinkMinter,
    /// `<data>/files` or the S3 bucket: stored files under their storage keys.
    pub files: file_store::Files,
    /// `--max-upload-bytes`, `--max-files-per-user`.
    pub uploads: UploadLimits,
    /// How long resumable (tus) uploads and their leases live.
    pub upload_policy: crate::uploads::UploadPolicy,
    /// Prometheus series (`/metrics`).
    pub metrics: crate::metrics::Metrics,
    /// `<data>/audit`: the download servers' audit files, read for "recent downloads".
    pub audit_dir: PathBuf,
    /// Limits and URLs of shares.
    pub shares: SharePolicy,
    /// Wrong share passwords per share and per client address.
    pub share_throttle: LoginThrottle,
    /// Signs the share page's form token.
    pub form_key: crate::share_form::FormKey,
    /// What webhook URLs may be, and the delivery task's wake-up.
    pub webhooks: crate::webhooks::WebhookPolicy,
    /// Sign-in through the identity provider (`--oidc-issuer`), when configured.
    pub oidc: Option<crate::oidc::Oidc>,
}

impl AppState {
    /// Where uploads go: [`crate::files::upload`]'s first argument.
    pub fn uploads_to(&self) -> Destination<'_> {
        Destination {
            db: &self.db,
            files: &self.files,
            limits: self.uploads,
        }
    }
}
