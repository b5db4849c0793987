//! Resuming a burned download: the client that received a token's first response can fetch
//! the rest of the same file version for `--resume-window-secs`; nobody else can.
//!
//! The first response of a burn carries a fresh 128-bit secret twice: in its strong validator,
//! `ETag: "<version>-<secret>"`, which browsers (Chromium's own resume) send back as
//! `If-Range`, and in a cookie on the download server's own origin,
//! `blr_<jti>=<secret>; Path=/d/; HttpOnly; SameSite=Lax` (`Secure` under TLS), which curl
//! (`-c`/`-b`) and wget (`--save-cookies`/`--load-cookies`) keep. The burn store keeps only a
//! hash of the secret, beside the burn, so a reader of the store cannot resume, nor can
//! anyone who holds only the URL. See docs/TOKEN.md, "Resuming a download".

use actix_web::http::header::HeaderValue;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::store::ResumeGrant;
use shared::Jti;

/// A fresh secret: 128 random bits, base64url.
pub fn new_secret() -> String {
    shared::random_token(16)
}

/// What the store keeps of `secret`: the first 16 bytes of its SHA-256.
pub fn proof(secret: &str) -> [u8; 16] {
    let digest = Sha256::digest(secret.as_bytes());
    let mut proof = [0u8; 16];
    proof.copy_from_slice(&digest[..16]);
    proof
}

/// The strong validator of a response: the file version, and the secret when the response
/// starts (or continues) a resumable download.
pub fn etag(version: u64, secret: Option<&str>) -> String {
    match secret {
        Some(secret) => format!("\"{version:016x}-{secret}\""),
        None => format!("\"{version:016x}\""),
    }
}

/// [`etag`] without a secret, as a header value made with one allocation (the download path's
/// usual case).
pub fn etag_value(version: u64) -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [b'"'; 18];
    for (i, byte) in buf[1..17].iter_mut().enumerate() {
        *byte = HEX[(version >> (60 - 4 * i)) as usize & 0xf];
    }
    // Quotes and hex digits: always a valid value.
    HeaderValue::from_bytes(&buf).unwrap_or_else(|_| HeaderValue::from_static("\"\""))
}

/// The resume cookie's name is this prefix and the token's `jti`.
const COOKIE_PREFIX: &str = "blr_";

fn cookie_name(jti: &Jti) -> String {
    format!("{COOKIE_PREFIX}{}", jti.as_str())
}

/// The cookie that carries the secret for clients that keep cookies but not validators.
pub fn cookie(jti: &Jti, secret: &str, max_age_secs: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{}={secret}; Path=/d/; Max-Age={max_age_secs}; HttpOnly; SameSite=Lax{secure}",
        cookie_name(jti)
    )
}

/// What a request offers as proof that it continues the token's first download.
pub struct Offer {
    secrets: Vec<String>,
    /// The file version named by `If-Range`, when it names one of ours.
    pub if_range_version: Option<u64>,
}

impl Offer {
    /// The secrets in a request's `If-Range` and its `blr_<jti>` cookie (among the values of
    /// its `Cookie` headers); `None` if neither.
    pub fn of(if_range: Option<&str>, cookies: &[HeaderValue], jti: &Jti) -> Option<Offer> {
        let mut offer = Offer {
            secrets: Vec::new(),
            if_range_version: None,
        };
        if let Some(value) = if_range
            && let Some((version, secret)) = value
                .trim()
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .and_then(|v| v.split_once('-'))
            && let Ok(version) = u64::from_str_radix(version, 16)
        {
            offer.if_range_version = Some(version);
            offer.secrets.push(secret.to_owned());
        }
        // Compared in place: no allocation for the requests (nearly all) that offer nothing.
        for value in cookies {
            let Ok(value) = value.to_str() else { continue };
            for pair in value.split(';') {
                if let Some((k, v)) = pair.trim().split_once('=')
                    && k.strip_prefix(COOKIE_PREFIX) == Some(jti.as_str())
                {
                    offer.secrets.push(v.to_owned());
                }
            }
        }
        (!offer.secrets.is_empty()).then_some(offer)
    }

    /// The offered secret that `grant` was made for, compared in constant time.
    pub fn proves(&self, grant: &ResumeGrant) -> Option<&str> {
        self.secrets
            .iter()
            .find(|s| bool::from(proof(s).ct_eq(&grant.proof)))
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(secret: &str) -> ResumeGrant {
        ResumeGrant {
            version: 42,
            proof: proof(secret),
            until_ms: u64::MAX,
        }
    }

    /// The offer of a request with this `If-Range` and this one `Cookie` header.
    fn offer_of(if_range: Option<&str>, cookie: Option<String>, jti: &Jti) -> Option<Offer> {
        let cookies: Vec<HeaderValue> = cookie
            .into_iter()
            .map(|c| HeaderValue::from_str(&c).unwrap())
            .collect();
        Offer::of(if_range, &cookies, jti)
    }

    #[test]
    fn the_etag_or_the_cookie_proves_the_secret_and_nothing_else_does() {
        let jti = Jti::generate();
        let secret = new_secret();
        let by_etag = etag(42, Some(&secret));
        let offer = offer_of(Some(&by_etag), None, &jti).expect("an offer");
        assert_eq!(offer.proves(&grant(&secret)), Some(secret.as_str()));
        assert_eq!(offer.if_range_version, Some(42));

        let by_cookie = format!("other=1; blr_{}={secret}", jti.as_str());
        let offer = offer_of(None, Some(by_cookie), &jti).expect("an offer");
        assert!(offer.proves(&grant(&secret)).is_some());

        let wrong = etag(42, Some(&new_secret()));
        assert!(
            offer_of(Some(&wrong), None, &jti)
                .unwrap()
                .proves(&grant(&secret))
                .is_none()
        );
        let other_jti = format!("blr_{}={secret}", Jti::generate().as_str());
        assert!(offer_of(None, Some(other_jti), &jti).is_none());
        let plain = etag(42, None);
        assert!(offer_of(Some(&plain), None, &jti).is_none());
    }
}
