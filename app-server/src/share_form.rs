//! The share page's form token and the cross-site check of `POST /s/<secret>`.
//!
//! The share page is anonymous, so there is no session to hold a synchronizer token. Instead
//! the page carries a short-lived token signed by the app (HMAC-SHA256 over the share id and
//! the time it was issued, with a key every app server on the database shares), and a POST
//! is accepted when:
//! - it comes from a browser (it carries `Sec-Fetch-Site` or `Origin`): `Sec-Fetch-Site` must
//!   be `same-origin` (or `none`), an `Origin` other than `null` must be ours, and the form
//!   token must be valid for this share and under [`FORM_TOKEN_SECS`] old;
//! - it carries neither header (curl, wget, scripts): no token needed. Browsers always send
//!   `Origin` on a cross-origin POST (Fetch standard, "append a request `Origin` header"), so
//!   a page on another site cannot make a browser send a request without one. A script that
//!   is not a browser has no visitor's browser to abuse: it could as well GET the page and
//!   read the token, and it needs the secret URL either way.
//!
//! So a page on another origin (a mail scanner's rendering, an auto-submitting form in a
//! message) cannot spend a download through someone's browser, and a token copied into such a
//! page goes stale within the hour. See docs/SHARES.md.

use actix_web::HttpRequest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::AnyPool;

use crate::error::AppError;

/// How long a share page's form token is accepted.
pub const FORM_TOKEN_SECS: i64 = 3600;
/// The form field that carries it.
pub const FORM_TOKEN_FIELD: &str = "form_token";
const KEY_NAME: &str = "share_form_key";

/// The key that signs form tokens, the same on every app server sharing the database.
pub struct FormKey([u8; 32]);

impl FormKey {
    /// Reads the key from the database, creating it if this is the first app server.
    pub async fn load_or_create(db: &AnyPool) -> Result<FormKey, AppError> {
        sqlx::query(
            "INSERT INTO app_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(KEY_NAME)
        .bind(shared::random_token(32))
        .execute(db)
        .await?;
        let (value,): (String,) = sqlx::query_as("SELECT value FROM app_secrets WHERE name = $1")
            .bind(KEY_NAME)
            .fetch_one(db)
            .await?;
        let bytes = URL_SAFE_NO_PAD
            .decode(value.as_bytes())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| AppError::Internal("stored share form key is malformed".into()))?;
        Ok(FormKey(bytes))
    }

    fn mac(&self, share_id: &str, issued_at: i64) -> Hmac<Sha256> {
        // A 32-byte key is always accepted by HMAC.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(b"burnlink share form\0");
        mac.update(share_id.as_bytes());
        mac.update(b"\0");
        mac.update(issued_at.to_string().as_bytes());
        mac
    }

    /// A token for the page of share `share_id`, issued `now`.
    pub fn issue(&self, share_id: &str, now: i64) -> String {
        let tag = self.mac(share_id, now).finalize().into_bytes();
        format!("{now}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// True when `token` was issued for `share_id` less than [`FORM_TOKEN_SECS`] ago (and not
    /// in the future beyond a minute of clock difference between app servers). Constant-time.
    pub fn verify(&self, token: &str, share_id: &str, now: i64) -> bool {
        let Some((issued, tag)) = token.split_once('.') else {
            return false;
        };
        let Ok(issued_at) = issued.parse::<i64>() else {
            return false;
        };
        if issued_at > now + 60 || now.saturating_sub(issued_at) > FORM_TOKEN_SECS {
            return false;
        }
        let Ok(tag) = URL_SAFE_NO_PAD.decode(tag.as_bytes()) else {
            return false;
        };
        self.mac(share_id, issued_at).verify_slice(&tag).is_ok()
    }
}

/// Who sent a share POST, as far as the headers tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// A browser on our own page: the form token is required.
    Browser,
    /// No `Origin` and no `Sec-Fetch-Site`: not a browser (curl, wget, a script).
    Script,
}

/// Refuses (`Csrf`) a POST a browser sent from another site; otherwise says who sent it.
/// `public_url` is the app's public base URL, whose origin our own pages have.
pub fn caller(req: &HttpRequest, public_url: &str) -> Result<Caller, AppError> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .map(|v| v.to_str().unwrap_or("invalid"))
    };
    let site = header("Sec-Fetch-Site");
    let origin = header("Origin");
    if let Some(site) = site
        && !matches!(site, "same-origin" | "none")
    {
        return Err(AppError::Csrf);
    }
    if let Some(origin) = origin
        && origin != "null"
        && origin != origin_of(public_url)
    {
        return Err(AppError::Csrf);
    }
    Ok(if site.is_some() || origin.is_some() {
        Caller::Browser
    } else {
        Caller::Script
    })
}

/// `scheme://host[:port]` of a base URL (what a browser sends as `Origin`).
pub(crate) fn origin_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn tokens_bind_the_share_and_expire() {
        let key = FormKey([7; 32]);
        let token = key.issue("share-a", 1_000);
        assert!(key.verify(&token, "share-a", 1_000));
        assert!(key.verify(&token, "share-a", 1_000 + FORM_TOKEN_SECS));
        assert!(!key.verify(&token, "share-a", 1_001 + FORM_TOKEN_SECS));
        assert!(!key.verify(&token, "share-b", 1_000));
        assert!(!FormKey([8; 32]).verify(&token, "share-a", 1_000));
        let forged = token.replacen("1000.", "2000.", 1);
        assert!(!key.verify(&forged, "share-a", 2_000));
        for bad in ["", ".", "x.y", "1000."] {
            assert!(!key.verify(bad, "share-a", 1_000), "{bad:?}");
        }
    }

    #[test]
    fn browsers_on_other_sites_are_refused_scripts_are_not() {
        let url = "https://files.example/app";
        let check = |headers: &[(&str, &str)]| {
            let mut req = TestRequest::post();
            for h in headers {
                req = req.insert_header(*h);
            }
            caller(&req.to_http_request(), url)
        };
        assert_eq!(check(&[]).unwrap(), Caller::Script);
        assert_eq!(
            check(&[("Sec-Fetch-Site", "same-origin"), ("Origin", "null")]).unwrap(),
            Caller::Browser
        );
        assert_eq!(
            check(&[("Origin", "https://files.example")]).unwrap(),
            Caller::Browser
        );
        assert!(check(&[("Sec-Fetch-Site", "cross-site")]).is_err());
        assert!(check(&[("Sec-Fetch-Site", "same-site")]).is_err());
        assert!(check(&[("Origin", "https://evil.example")]).is_err());
        assert!(check(&[("Origin", "https://files.example.evil")]).is_err());
    }
}
