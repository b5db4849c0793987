//! Download links: the single-use token for one stored file, signed with the key in force.

use std::sync::Arc;

use serde::Serialize;
use shared::{Claims, DownloadName, StorageKey};

use crate::error::AppError;

/// Everything needed to turn a stored file into a download link.
pub struct LinkMinter {
    /// The keys in force (follow `keys rotate`): the one strong `Arc` of them, so the key
    /// watcher (which holds a `Weak`) stops with the app. The JWKS route publishes from here.
    pub keys: Arc<crate::keys::LiveKeys>,
    pub issuer: String,
    pub audience: String,
    pub ttl: u64,
    /// Public base URL of the download server, without a trailing slash.
    pub download_url: String,
    /// `burnlink_tokens_minted_total`, counted here so no caller can forget it.
    pub minted: prometheus::IntCounter,
}

/// A freshly minted download link.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Link {
    pub url: String,
    pub expires_at: u64,
    /// Seconds the link lives from now (its `exp - iat`): what a page counts down from, with
    /// no clock to compare (the `Date` header has whole seconds and actix caches it for
    /// 500 ms, so `expires_at - Date` can read a second more than the link's lifetime).
    pub expires_in: u64,
    pub jti: String,
}

impl LinkMinter {
    /// A single-use link to the stored file `key`. The jti is logged; the token never is.
    pub fn mint(
        &self,
        user_id: &str,
        key: &StorageKey,
        name: &DownloadName,
    ) -> Result<Link, AppError> {
        let claims = Claims::new(
            &self.issuer,
            &self.audience,
            user_id,
            key,
            name,
            shared::unix_now(),
            self.ttl,
        );
        let token = self.keys.mint(&claims)?;
        self.minted.inc();
        tracing::info!(jti = %claims.jti, user = user_id, exp = claims.exp, "download link minted");
        Ok(Link {
            url: format!("{}/d/{token}", self.download_url),
            expires_at: claims.exp,
            expires_in: claims.exp.saturating_sub(claims.iat),
            jti: claims.jti,
        })
    }
}
