//! Where burned token ids live until their token expires. One trait, one backend per
//! deployment shape; the download handler is generic over it.

mod memory;
mod redis;

use std::future::Future;

use shared::Jti;

pub use self::memory::MemoryStore;
// `self::`: the module shares its name with the `redis` crate.
pub use self::redis::RedisStore;

/// One token's claim on the store: its id, when it was issued, and the clock reading its
/// download was verified with.
#[derive(Debug, Clone, Copy)]
pub struct BurnRequest<'a> {
    pub jti: &'a Jti,
    /// The token's `iat`: a store that lost its records refuses tokens issued before the loss.
    pub iat: u64,
    /// The one reading of the clock the token was verified with (Unix milliseconds).
    pub now_ms: u64,
    /// Until when the record must last (Unix milliseconds): past the last instant any server
    /// of the fleet could still accept the token (see [`keep_until_ms`]).
    pub keep_until_ms: u64,
}

/// How long a burn record of a token expiring at `exp` must be kept: through the last second
/// the verifier accepts it (`exp + leeway`), plus `clock_skew` seconds for servers (and a Redis)
/// whose clocks run behind this one, plus one second for `exp`'s whole-second resolution.
pub fn keep_until_ms(exp: u64, leeway: u64, clock_skew: u64) -> u64 {
    exp.saturating_add(leeway)
        .saturating_add(clock_skew)
        .saturating_add(1)
        .saturating_mul(1000)
}

/// For a store that has just forgotten its burns (a memory store's restart, a Redis's data
/// loss): the first `iat` it may accept. A token the lost records burned was accepted with `iat`
/// up to that moment plus `leeway` (a minter's clock may run ahead), and `iat` has one-second
/// resolution, so: the next second plus the leeway.
pub fn forgotten_burns_boundary(leeway: u64) -> u64 {
    shared::unix_now() + 1 + leeway
}

/// Waits until the clock reads the whole second `boundary` (Unix seconds): a store that
/// refuses tokens issued before `boundary` serves only from then on, so no token minted once
/// it serves is refused.
pub async fn wait_for_second(boundary: u64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    tokio::time::sleep(std::time::Duration::from_secs(boundary).saturating_sub(now)).await;
}

/// What resuming a burned download must match, kept with the burn: the file version served,
/// a hash of the secret only the first response's client received, and when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumeGrant {
    /// [`crate::file::FileVersion::tag`] of the version served.
    pub version: u64,
    /// The first 16 bytes of the SHA-256 of the secret: a store's reader cannot resume.
    pub proof: [u8; 16],
    /// Unix milliseconds; the grant is void from then on.
    pub until_ms: u64,
}

impl ResumeGrant {
    /// The grant's text form in a store that keeps strings (Redis).
    pub fn encode(&self) -> String {
        let mut out = format!("{}.{:016x}.", self.until_ms, self.version);
        for byte in self.proof {
            out.push_str(&format!("{byte:02x}"));
        }
        out
    }

    /// The inverse of [`ResumeGrant::encode`]; `None` for anything else (a burn kept with no
    /// grant is stored as `1`).
    pub fn decode(text: &str) -> Option<ResumeGrant> {
        let mut parts = text.split('.');
        let until_ms = parts.next()?.parse().ok()?;
        let version = u64::from_str_radix(parts.next()?, 16).ok()?;
        let hex = parts.next()?;
        if hex.len() != 32 || parts.next().is_some() {
            return None;
        }
        let mut proof = [0u8; 16];
        for (i, byte) in proof.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(ResumeGrant {
            version,
            proof,
            until_ms,
        })
    }
}

/// The outcome of a burn: exactly one caller ever sees [`Burn::Fresh`] for a given id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Burn {
    /// This call recorded the id: serve the file.
    Fresh,
    /// The id was already recorded: the token has been used.
    AlreadyUsed,
    /// The record would already be gone by the store's clock (the request stalled between
    /// verifying and burning): refused as expired, since a record that is not kept proves
    /// nothing.
    Expired,
    /// The store lost its records (an empty restart, a failover to a replica that had not
    /// caught up) after this token was issued: it may have been used before, so it is refused.
    IssuedBeforeLoss,
}

/// The store could not say. The caller must fail closed: serve nothing.
#[derive(Debug, thiserror::Error)]
#[error("burn store unavailable: {0}")]
pub struct StoreError(pub String);

pub trait BurnStore: Send + Sync + 'static {
    /// Records `req.jti` as used until `req.keep_until_ms`, atomically: of any number of
    /// concurrent calls with one id, exactly one returns [`Burn::Fresh`], and a record is
    /// never kept for less than asked (a record that could already be gone is refused with
    /// [`Burn::Expired`]). There is no separate "is it burned?" question, so no
    /// read-then-write race.
    ///
    /// With a `grant`, the record also keeps it, and lasts until the grant ends if that is
    /// later: one write for burn and grant.
    fn burn(
        &self,
        req: &BurnRequest<'_>,
        grant: Option<&ResumeGrant>,
    ) -> impl Future<Output = Result<Burn, StoreError>> + Send;

    /// The resume grant kept with the token's burn, if there is one (expired grants may be
    /// returned: the caller checks `until_ms` against its clock reading).
    fn resume_grant(
        &self,
        req: &BurnRequest<'_>,
    ) -> impl Future<Output = Result<Option<ResumeGrant>, StoreError>> + Send;

    /// Whether the token is burned (or could have been, before a loss of the store's
    /// records), for HEAD and prefetch answers only, which must not burn. Never used to decide
    /// a GET: that is [`BurnStore::burn`]'s job alone.
    fn is_burned(
        &self,
        req: &BurnRequest<'_>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Whether the store can answer now (for `/readyz`).
    fn ready(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Whether the store forgets burned ids when this process stops.
    fn forgets_on_restart(&self) -> bool;
}
