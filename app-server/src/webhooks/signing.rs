//! Standard Webhooks signatures (https://www.standardwebhooks.com): each delivery carries
//! `webhook-id`, `webhook-timestamp` (Unix seconds of this attempt) and `webhook-signature`,
//! `v1,` and the base64 of HMAC-SHA256 over `{id}.{timestamp}.{body}` keyed with the
//! endpoint's secret. A secret is `whsec_` and the base64 of its 32 random bytes; during a
//! rotation's overlap both the new and the previous secret sign, the two signatures
//! space-separated, so a receiver holding either accepts.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What every secret starts with.
pub const SECRET_PREFIX: &str = "whsec_";
/// Random bytes of a secret (the spec asks for 24 to 64).
const SECRET_BYTES: usize = 32;

/// An endpoint's signing secret. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn generate() -> Secret {
        Secret(rand::random::<[u8; SECRET_BYTES]>().to_vec())
    }

    /// `whsec_<base64>` as stored and shown; `None` for anything else.
    pub fn parse(s: &str) -> Option<Secret> {
        let bytes = STANDARD.decode(s.strip_prefix(SECRET_PREFIX)?).ok()?;
        (bytes.len() >= 24).then_some(Secret(bytes))
    }

    /// The secret as the owner copies it into their receiver.
    pub fn expose(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.0))
    }

    /// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        // HMAC takes a key of any length (RFC 2104 section 2): this cannot fail.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            unreachable!("HMAC accepts every key length")
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The `webhook-signature` value: one signature per secret in force, space-separated (the
/// current one first).
pub fn signature_header(secrets: &[Secret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|secret| secret.sign(id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks reference libraries.
    #[test]
    fn signs_as_the_reference_libraries_do() {
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            secret.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn secrets_round_trip_and_stay_hidden() {
        let secret = Secret::generate();
        let shown = secret.expose();
        assert!(shown.starts_with("whsec_"));
        assert_eq!(Secret::parse(&shown), Some(secret.clone()));
        assert!(!format!("{secret:?}").contains(&shown[6..]));
        assert_ne!(Secret::generate(), secret);
        for bad in [
            "",
            "whsec_",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_c2hvcnQ=",
            "whsec_!!",
        ] {
            assert!(Secret::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn a_rotation_signs_with_both() {
        let (new, old) = (Secret::generate(), Secret::generate());
        let header = signature_header(&[new.clone(), old.clone()], "msg_1", 5, b"{}");
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(
            parts,
            [new.sign("msg_1", 5, b"{}"), old.sign("msg_1", 5, b"{}")]
        );
    }
}
