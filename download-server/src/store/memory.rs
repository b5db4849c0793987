use std::sync::{Arc, Weak};
use std::time::Duration;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

use super::{Burn, BurnRequest, BurnStore, StoreError};

/// Burned ids in a sharded concurrent map, each with the time it may be forgotten (Unix
/// milliseconds). A sweeper drops expired entries, so memory is bounded by issuance rate times
/// record lifetime (about 100 bytes an entry).
#[derive(Debug, Default)]
pub struct MemoryStore {
    burned: DashMap<String, u64>,
}

impl MemoryStore {
    /// A store and its sweeper, which runs every `every` until the store is dropped.
    pub fn start(every: Duration) -> Arc<MemoryStore> {
        let store = Arc::new(MemoryStore::default());
        let weak: Weak<MemoryStore> = Arc::downgrade(&store);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(store) = weak.upgrade() else { break };
                store.sweep(shared::unix_now_ms());
            }
        });
        store
    }

    /// Forgets ids whose records have lasted as long as asked (`now` in Unix milliseconds).
    pub fn sweep(&self, now: u64) {
        self.burned.retain(|_, keep_until| *keep_until >= now);
    }

    pub fn len(&self) -> usize {
        self.burned.len()
    }

    pub fn is_empty(&self) -> bool {
        self.burned.is_empty()
    }
}

impl BurnStore for Arc<MemoryStore> {
    async fn burn(&self, req: &BurnRequest<'_>) -> Result<Burn, StoreError> {
        // The entry holds its shard's write lock from lookup to insert: one winner.
        Ok(match self.burned.entry(req.jti.as_str().to_owned()) {
            Entry::Occupied(_) => Burn::AlreadyUsed,
            // Read under the lock: the sweeper, which uses the same clock, cannot have taken a
            // record this one would replace.
            Entry::Vacant(_) if shared::unix_now_ms() > req.keep_until_ms => Burn::Expired,
            Entry::Vacant(slot) => {
                slot.insert(req.keep_until_ms);
                Burn::Fresh
            }
        })
    }

    async fn is_burned(&self, req: &BurnRequest<'_>) -> Result<bool, StoreError> {
        Ok(self.burned.contains_key(req.jti.as_str()))
    }

    async fn ready(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn forgets_on_restart(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::Jti;

    fn request(jti: &Jti, keep_until_ms: u64) -> BurnRequest<'_> {
        BurnRequest {
            jti,
            iat: 0,
            now_ms: shared::unix_now_ms(),
            keep_until_ms,
        }
    }

    #[tokio::test]
    async fn an_id_burns_once_and_is_swept_after_its_time() {
        let store = MemoryStore::start(Duration::from_secs(3600));
        let jti = Jti::generate();
        let until = shared::unix_now_ms() + 60_000;
        assert_eq!(
            store.burn(&request(&jti, until)).await.unwrap(),
            Burn::Fresh
        );
        assert_eq!(
            store.burn(&request(&jti, until)).await.unwrap(),
            Burn::AlreadyUsed
        );
        store.sweep(until);
        assert_eq!(store.len(), 1, "kept through its last millisecond");
        store.sweep(until + 1);
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn a_record_that_would_already_be_gone_is_refused_not_stored() {
        let store = MemoryStore::start(Duration::from_secs(3600));
        let jti = Jti::generate();
        let past = shared::unix_now_ms() - 1;
        assert_eq!(
            store.burn(&request(&jti, past)).await.unwrap(),
            Burn::Expired
        );
        assert!(store.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_burns_of_one_id_have_one_winner() {
        let store = MemoryStore::start(Duration::from_secs(3600));
        let jti = Jti::generate();
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let (store, jti) = (store.clone(), jti.clone());
                tokio::spawn(async move { store.burn(&request(&jti, u64::MAX)).await.unwrap() })
            })
            .collect();
        let mut fresh = 0;
        for t in tasks {
            fresh += usize::from(t.await.unwrap() == Burn::Fresh);
        }
        assert_eq!(fresh, 1);
    }
}
