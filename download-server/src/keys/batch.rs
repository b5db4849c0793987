//! Ed25519 signatures verified in batches under load (issue 18). A request that finds no
//! batch forming leads one: it yields once to the runtime, so the requests already woken on
//! its worker (and any on other workers meanwhile) can join, then verifies everything pending
//! with [`Verifier::verify_batch_allowing_expiry_at`] and hands each its answer. A lone request
//! so waits one turn of its worker's scheduler, not a timer: no added latency at low load.
//! A failed batch is re-checked token by token inside the verifier, so a forged token never
//! passes and costs one extra single check.

use std::sync::Mutex;

use arc_swap::ArcSwap;

use shared::{Grant, TokenError, Verifier};
use tokio::sync::oneshot;

/// Most tokens checked by one `verify_batch` call: past a few dozen the saving per signature
/// flattens, and a failed batch's re-check stays bounded.
pub const MAX_BATCH: usize = 64;

type Answer = Result<(Grant, bool), TokenError>;

struct Pending {
    token: String,
    now: u64,
    reply: oneshot::Sender<Answer>,
}

/// The requests waiting for the batch being formed.
#[derive(Default)]
pub struct Batcher {
    pending: Mutex<Vec<Pending>>,
    /// Batches verified, and the largest, for the tests.
    #[cfg(test)]
    seen: Mutex<(usize, usize)>,
}

impl Batcher {
    /// The answer of the verifier in force for `token` at `now`, verified with whatever else
    /// is pending.
    pub async fn verify(&self, verifier: &ArcSwap<Verifier>, token: &str, now: u64) -> Answer {
        let (reply, answer) = oneshot::channel();
        let leads = {
            let mut pending = self.lock();
            pending.push(Pending {
                token: token.to_owned(),
                now,
                reply,
            });
            pending.len() == 1
        };
        if leads {
            // The batch is verified when `lead` drops: after the yield, or when this request
            // is dropped while it yields, so followers are answered either way.
            let lead = Lead {
                batcher: self,
                verifier,
            };
            tokio::task::yield_now().await;
            drop(lead);
        }
        match answer.await {
            Ok(a) => a,
            // Only if a batch panicked: answer alone.
            Err(_) => verifier.load().verify_allowing_expiry_at(token, now),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The leader's duty: verify everything pending, once, when dropped.
struct Lead<'a> {
    batcher: &'a Batcher,
    verifier: &'a ArcSwap<Verifier>,
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        let pending = std::mem::take(&mut *self.batcher.lock());
        #[cfg(test)]
        {
            let mut seen = self.batcher.seen.lock().unwrap_or_else(|e| e.into_inner());
            *seen = (seen.0 + 1, seen.1.max(pending.len()));
        }
        let verifier = self.verifier.load();
        let mut pending = pending.into_iter().peekable();
        while pending.peek().is_some() {
            let chunk: Vec<Pending> = pending.by_ref().take(MAX_BATCH).collect();
            let tokens: Vec<(&str, u64)> =
                chunk.iter().map(|p| (p.token.as_str(), p.now)).collect();
            let answers = verifier.verify_batch_allowing_expiry_at(&tokens);
            for (p, a) in chunk.into_iter().zip(answers) {
                // A request that gave up waiting has dropped its receiver: nothing to tell.
                let _ = p.reply.send(a);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use shared::{Algorithm, Claims, DownloadName, Policy, SigningKey, StorageKey};

    use super::*;

    fn setup() -> (SigningKey, SigningKey, ArcSwap<Verifier>) {
        let key = SigningKey::generate(Algorithm::EdDSA);
        // Another key under our key's `kid` would be a different token: a stranger's
        // signature over our header is the forgery.
        let stranger = SigningKey::generate(Algorithm::EdDSA);
        let verifier = Verifier::new([key.verifying_key().clone()], Policy::new("app", "dl"));
        (key, stranger, ArcSwap::from_pointee(verifier))
    }

    fn token(key: &SigningKey, now: u64) -> String {
        let c = Claims::new(
            "app",
            "dl",
            "u",
            &StorageKey::parse("f").unwrap(),
            &DownloadName::parse("a.txt").unwrap(),
            now,
            60,
        );
        key.mint(&c).unwrap()
    }

    /// Our header and payload under the stranger's signature.
    fn forged(key: &SigningKey, stranger: &SigningKey, now: u64) -> String {
        let good = token(key, now);
        let theirs = token(stranger, now);
        let (body, _) = good.rsplit_once('.').unwrap();
        let (_, sig) = theirs.rsplit_once('.').unwrap();
        format!("{body}.{sig}")
    }

    #[tokio::test]
    async fn a_lone_request_is_verified_in_a_batch_of_one() {
        let (key, _, verifier) = setup();
        let batcher = Batcher::default();
        let now = shared::unix_now();
        let t = token(&key, now);
        assert!(batcher.verify(&verifier, &t, now).await.is_ok());
        assert_eq!(*batcher.seen.lock().unwrap(), (1, 1));
        assert!(batcher.pending.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn concurrent_requests_share_a_batch_and_a_forgery_in_it_is_refused() {
        let (key, stranger, verifier) = setup();
        let batcher = Batcher::default();
        let now = shared::unix_now();
        let mut tokens: Vec<String> = (0..20).map(|_| token(&key, now)).collect();
        tokens[7] = forged(&key, &stranger, now);
        let answers = futures_util::future::join_all(
            tokens.iter().map(|t| batcher.verify(&verifier, t, now)),
        )
        .await;
        for (i, a) in answers.iter().enumerate() {
            if i == 7 {
                assert_eq!(a, &Err(TokenError::BadSignature));
            } else {
                assert!(a.is_ok(), "{i}: {a:?}");
            }
        }
        let (batches, largest) = *batcher.seen.lock().unwrap();
        assert_eq!((batches, largest), (1, 20));
    }

    #[tokio::test]
    async fn followers_are_answered_when_their_leader_is_dropped() {
        let (key, _, verifier) = setup();
        let verifier = Arc::new(verifier);
        let batcher = Arc::new(Batcher::default());
        let now = shared::unix_now();
        let t = token(&key, now);
        // The leader yields once and is dropped there; the follower joined meanwhile.
        let mut leader = Box::pin(batcher.verify(&verifier, &t, now));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(leader.as_mut().poll(&mut cx).is_pending());
        let follower = batcher.verify(&verifier, &t, now);
        drop(leader);
        let answer = tokio::time::timeout(std::time::Duration::from_secs(10), follower).await;
        assert!(answer.expect("the follower is answered").is_ok());
    }
}
