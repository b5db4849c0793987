use std::sync::{Arc, Weak};
use std::time::Duration;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

use super::{Burn, BurnRequest, BurnStore, ResumeGrant, StoreError};

/// Burned ids in a sharded concurrent map, each with the time it may be forgotten (Unix
/// milliseconds). A sweeper drops expired entries, so memory is bounded by issuance rate times
/// record lifetime (about 100 bytes an entry). Hashed with foldhash, seeded per process: only
/// ids from tokens whose signature held reach the map, and SipHash was 1% of a download's
/// CPU.
#[derive(Debug)]
pub struct MemoryStore {
    burned: DashMap<String, Record, foldhash::fast::RandomState>,
}

/// Shards of the map, each behind its own lock. A shard that grows is rehashed whole under
/// its lock, and so is each sweep's pass over it: with dashmap's default (8 on two cores), a
/// download burning into a shard being resized waited up to 10 ms at 850k ids (issue 18). A
/// shard of 1/256 of the ids holds its lock 32 times less long.
const SHARDS: usize = 256;

impl Default for MemoryStore {
    fn default() -> MemoryStore {
        MemoryStore {
            burned: DashMap::with_capacity_and_hasher_and_shard_amount(
                0,
                Default::default(),
                SHARDS,
            ),
        }
    }
}

#[derive(Debug)]
struct Record {
    /// Unix milliseconds: the record may be forgotten after.
    keep_until_ms: u64,
    grant: Option<ResumeGrant>,
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
        self.burned.retain(|_, record| record.keep_until_ms >= now);
    }

    pub fn len(&self) -> usize {
        self.burned.len()
    }

    pub fn is_empty(&self) -> bool {
        self.burned.is_empty()
    }
}

impl BurnStore for Arc<MemoryStore> {
    async fn burn(
        &self,
        req: &BurnRequest<'_>,
        grant: Option<&ResumeGrant>,
    ) -> Result<Burn, StoreError> {
        // The entry holds its shard's write lock from lookup to insert: one winner.
        Ok(match self.burned.entry(req.jti.as_str().to_owned()) {
            Entry::Occupied(_) => Burn::AlreadyUsed,
            // Read under the lock: the sweeper, which uses the same clock, cannot have taken a
            // record this one would replace.
            Entry::Vacant(_) if shared::unix_now_ms() > req.keep_until_ms => Burn::Expired,
            Entry::Vacant(slot) => {
                slot.insert(Record {
                    keep_until_ms: req.keep_until_ms.max(grant.map_or(0, |g| g.until_ms)),
                    grant: grant.copied(),
                });
                Burn::Fresh
            }
        })
    }

    async fn resume_grant(&self, req: &BurnRequest<'_>) -> Result<Option<ResumeGrant>, StoreError> {
        Ok(self
            .burned
            .get(req.jti.as_str())
            .and_then(|record| record.grant))
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
            store.burn(&request(&jti, until), None).await.unwrap(),
            Burn::Fresh
        );
        assert_eq!(
            store.burn(&request(&jti, until), None).await.unwrap(),
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
            store.burn(&request(&jti, past), None).await.unwrap(),
            Burn::Expired
        );
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn a_grant_is_kept_with_its_burn_and_keeps_the_record_as_long() {
        let store = MemoryStore::start(Duration::from_secs(3600));
        let jti = Jti::generate();
        let until = shared::unix_now_ms() + 60_000;
        let grant = ResumeGrant {
            version: 7,
            proof: [3; 16],
            until_ms: until + 3_600_000,
        };
        let req = request(&jti, until);
        assert_eq!(store.burn(&req, Some(&grant)).await.unwrap(), Burn::Fresh);
        assert_eq!(store.resume_grant(&req).await.unwrap(), Some(grant));
        store.sweep(until + 1);
        assert_eq!(store.len(), 1, "kept for the grant");
        store.sweep(grant.until_ms + 1);
        assert!(store.is_empty());
    }

    #[test]
    fn a_grant_reads_back_from_its_text_form() {
        let grant = ResumeGrant {
            version: u64::MAX - 5,
            proof: *b"0123456789abcdef",
            until_ms: 1_700_000_000_123,
        };
        assert_eq!(ResumeGrant::decode(&grant.encode()), Some(grant));
        assert_eq!(ResumeGrant::decode("1"), None);
        assert_eq!(ResumeGrant::decode("1.2.3"), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_burns_of_one_id_have_one_winner() {
        let store = MemoryStore::start(Duration::from_secs(3600));
        let jti = Jti::generate();
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let (store, jti) = (store.clone(), jti.clone());
                tokio::spawn(
                    async move { store.burn(&request(&jti, u64::MAX), None).await.unwrap() },
                )
            })
            .collect();
        let mut fresh = 0;
        for t in tasks {
            fresh += usize::from(t.await.unwrap() == Burn::Fresh);
        }
        assert_eq!(fresh, 1);
    }
}
