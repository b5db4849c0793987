//! Where burned token ids live until their token expires. One trait, one backend per
//! deployment shape; the download handler is generic over it.

mod memory;
mod redis;

use std::future::Future;

use shared::Jti;

pub use self::memory::MemoryStore;
// `self::`: the module shares its name with the `redis` crate.
pub use self::redis::RedisStore;

/// The outcome of a burn: exactly one caller ever sees [`Burn::Fresh`] for a given id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Burn {
    /// This call recorded the id: serve the file.
    Fresh,
    /// The id was already recorded: the token has been used.
    AlreadyUsed,
}

/// The store could not say. The caller must fail closed: serve nothing.
#[derive(Debug, thiserror::Error)]
#[error("burn store unavailable: {0}")]
pub struct StoreError(pub String);

pub trait BurnStore: Send + Sync + 'static {
    /// Records `jti` as used until `keep_until` (Unix seconds), atomically: of any number of
    /// concurrent calls with one id, exactly one returns [`Burn::Fresh`]. There is no separate
    /// "is it burned?" question, so no read-then-write race.
    fn burn(
        &self,
        jti: &Jti,
        keep_until: u64,
    ) -> impl Future<Output = Result<Burn, StoreError>> + Send;

    /// Whether `jti` is burned, for HEAD and prefetch answers only, which must not burn. Never
    /// used to decide a GET: that is [`BurnStore::burn`]'s job alone.
    fn is_burned(&self, jti: &Jti) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Whether the store can answer now (for `/readyz`).
    fn ready(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Whether the store forgets burned ids when this process stops.
    fn forgets_on_restart(&self) -> bool;
}
