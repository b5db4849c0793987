//! What the app server (which mints download tokens) and the download server (which honours
//! them) must agree on: the claims, the header, the keys and the one validation function (and
//! [`TokenArgs`], the `--issuer` / `--audience` flags both servers take).
//!
//! The format is documented for other languages in `docs/TOKEN.md`; anything that changes what
//! [`Verifier::verify`] accepts must change that document too.

mod backend;
mod claims;
mod data_dir;
mod fnv;
mod keys;
pub mod record;
mod token_args;
mod verify;

pub use backend::CryptoBackend;
pub use claims::{Claims, DownloadName, Jti, NameError, StorageKey};
pub use data_dir::{DataDir, FILE_MODE};
pub use fnv::{Fnv1a, fnv1a};
pub use keys::{
    Algorithm, KeyError, PublishedJwks, SigningKey, VerifyingKey, jwks, parse_jwks,
    write_private_file,
};
pub use token_args::TokenArgs;
pub use verify::{Grant, Policy, TokenError, Verifier};

/// The `typ` header every download token carries. An explicit type keeps a download token from
/// being confused with any other JWT signed by the same key (RFC 8725 section 3.11).
pub const TOKEN_TYPE: &str = "dl+jwt";

/// Tokens longer than this are refused before any decoding: ours are about 400 bytes, and a
/// bound keeps a hostile token from costing base64 and JSON work.
pub const MAX_TOKEN_BYTES: usize = 4096;

/// Seconds since the Unix epoch, the unit of every time claim (RFC 7519 section 2, NumericDate).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch: the one clock reading a download is decided with.
pub fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `n` bytes from the operating system's CSPRNG, base64url without padding.
pub fn random_token(n: usize) -> String {
    use base64::Engine;
    let mut bytes = vec![0u8; n];
    rand::fill(&mut bytes[..]);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
