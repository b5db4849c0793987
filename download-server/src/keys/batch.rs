//! Ed25519 signatures verified in batches under load (issue 18). Each worker thread has a
//! batcher of its own ([`crate::keys::Keys`] keeps one per thread), so a batch never wakes a
//! request on another thread: on this 2-core machine that wake-up (an `eventfd` write and a
//! context switch) cost more than the batch saved. A request that finds no batch forming
//! leads one; everything pending when it is done waiting is verified with
//! [`Verifier::verify_batch_allowing_expiry_at`], and each request gets its answer.
//!
//! How long a leader waits is decided by the load, as a group commit's delay is:
//!
//! - **At low load** (tokens arrive further apart than [`WAIT`] / [`MIN_EXPECTED`] on average) it
//!   yields once to the runtime, so requests already woken on its worker can join, and then
//!   verifies: a lone request waits one turn of its scheduler, not a timer.
//! - **Under load** it waits until [`TARGET`] tokens are pending or [`WAIT`] has passed. Its
//!   worker serves other connections meanwhile, and their tokens join the batch. Without that wait batches do not form under load: each worker takes
//!   requests about as fast as they arrive, so another one is rarely ready within one turn
//!   (measured: 140,000 batches for 140,212 tokens; docs/BENCHMARKS.md).
//!
//! A failed batch is re-checked token by token inside the verifier, so a forged token never
//! passes and costs one extra single check.

use std::pin::pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus::Histogram;

use shared::{Grant, TokenError, Verifier};
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

/// Most tokens checked by one `verify_batch` call: past a few dozen the saving per signature
/// flattens, and a failed batch's re-check stays bounded.
pub const MAX_BATCH: usize = 64;

/// A batch this large is not waited on any longer: it already costs about half as much per
/// signature as single checks (docs/BENCHMARKS.md, the verify-bound rows).
pub const TARGET: usize = 16;

/// The longest a leader waits for its batch under load: one tick of tokio's timer (which
/// rounds up to the next millisecond), small beside the queueing a saturated server adds.
pub const WAIT: Duration = Duration::from_millis(1);

/// A leader waits only when at least this many tokens are expected within [`WAIT`]: a batch
/// of 4 already costs about 0.6x of single checks per signature.
const MIN_EXPECTED: u64 = 4;

/// The mean gap between arrivals a new batcher starts from: no load.
const IDLE_GAP_NS: u64 = 1_000_000_000;

type Answer = Result<(Grant, bool), TokenError>;

struct Pending {
    token: String,
    now: u64,
    reply: oneshot::Sender<Answer>,
}

/// The requests waiting for the batch being formed.
pub struct Batcher {
    pending: Mutex<Vec<Pending>>,
    /// Wakes a waiting leader when its batch reaches [`TARGET`].
    full: Notify,
    /// When the last token arrived, in nanoseconds since `origin`.
    last_arrival_ns: AtomicU64,
    /// A moving average of the gaps between arrivals (nanoseconds, weight 1/8 per arrival):
    /// what tells load from a lone request. Updated without a lock; a lost update among
    /// concurrent arrivals only blurs the average.
    mean_gap_ns: AtomicU64,
    origin: Instant,
    /// Batches verified, and the largest, for the tests.
    #[cfg(test)]
    seen: Mutex<(usize, usize)>,
}

impl Default for Batcher {
    fn default() -> Batcher {
        Batcher {
            pending: Mutex::default(),
            full: Notify::new(),
            last_arrival_ns: AtomicU64::new(0),
            mean_gap_ns: AtomicU64::new(IDLE_GAP_NS),
            origin: Instant::now(),
            #[cfg(test)]
            seen: Mutex::default(),
        }
    }
}

impl Batcher {
    /// The answer of the verifier in force for `token` at `now`, verified with whatever else
    /// is pending.
    /// Each batch's size goes to `sizes`.
    pub async fn verify(
        &self,
        verifier: &ArcSwap<Verifier>,
        sizes: &Histogram,
        token: &str,
        now: u64,
    ) -> Answer {
        let under_load = self.arrive();
        let (reply, answer) = oneshot::channel();
        let (leads, full) = {
            let mut pending = self.lock();
            pending.push(Pending {
                token: token.to_owned(),
                now,
                reply,
            });
            (pending.len() == 1, pending.len() == TARGET)
        };
        if full {
            self.full.notify_waiters();
        }
        if leads {
            // The batch is verified when `lead` drops: after the wait, or when this request
            // is dropped while it waits, so followers are answered either way.
            let lead = Lead {
                batcher: self,
                verifier,
                sizes,
            };
            if under_load {
                let mut filled = pin!(self.full.notified());
                // Registered before the check, so a batch filled in between still wakes us.
                filled.as_mut().enable();
                if self.lock().len() < TARGET {
                    let _ = tokio::time::timeout(WAIT, filled).await;
                }
            } else {
                tokio::task::yield_now().await;
            }
            drop(lead);
        }
        match answer.await {
            Ok(a) => a,
            // Only if a batch panicked: answer alone.
            Err(_) => verifier.load().verify_allowing_expiry_at(token, now),
        }
    }

    /// Notes an arrival; whether tokens now arrive often enough that a batch of
    /// [`MIN_EXPECTED`] is expected within [`WAIT`].
    fn arrive(&self) -> bool {
        let at = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let gap = at
            .saturating_sub(self.last_arrival_ns.swap(at, Ordering::Relaxed))
            .min(IDLE_GAP_NS);
        let mean = self.mean_gap_ns.load(Ordering::Relaxed);
        let mean = mean - mean / 8 + gap / 8;
        self.mean_gap_ns.store(mean, Ordering::Relaxed);
        mean.saturating_mul(MIN_EXPECTED) <= WAIT.as_nanos() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The leader's duty: verify everything pending, once, when dropped.
struct Lead<'a> {
    batcher: &'a Batcher,
    verifier: &'a ArcSwap<Verifier>,
    sizes: &'a Histogram,
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        let pending = std::mem::take(&mut *self.batcher.lock());
        self.sizes.observe(pending.len() as f64);
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

    /// A histogram for the batch sizes, as the server's metrics keep one.
    fn sizes() -> Histogram {
        Histogram::with_opts(prometheus::HistogramOpts::new("sizes", "test")).unwrap()
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
        assert!(batcher.verify(&verifier, &sizes(), &t, now).await.is_ok());
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
        let sizes = sizes();
        let answers = futures_util::future::join_all(
            tokens
                .iter()
                .map(|t| batcher.verify(&verifier, &sizes, t, now)),
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
        assert_eq!(
            (sizes.get_sample_count(), sizes.get_sample_sum()),
            (1, 20.0)
        );
    }

    /// Makes the batcher see load: arrivals with no gap between them.
    fn load(batcher: &Batcher) {
        for _ in 0..100 {
            batcher.arrive();
        }
    }

    /// A key, and a batcher that has seen load, with its verifier.
    fn under_load() -> (SigningKey, Arc<Batcher>, Arc<ArcSwap<Verifier>>) {
        let (key, _, verifier) = setup();
        let batcher = Arc::new(Batcher::default());
        load(&batcher);
        (key, batcher, Arc::new(verifier))
    }

    fn spawn_verify(
        batcher: &Arc<Batcher>,
        verifier: &Arc<ArcSwap<Verifier>>,
        token: String,
        now: u64,
    ) -> tokio::task::JoinHandle<Answer> {
        let (b, v) = (batcher.clone(), verifier.clone());
        tokio::spawn(async move { b.verify(&v, &sizes(), &token, now).await })
    }

    async fn all_ok(tasks: Vec<tokio::task::JoinHandle<Answer>>) {
        for task in tasks {
            assert!(task.await.unwrap().is_ok());
        }
    }

    // The clock is paused in these tests: it moves only when every task waits on a timer, so
    // whether a request waited shows as time passed.

    #[tokio::test(start_paused = true)]
    async fn a_lone_request_is_not_made_to_wait() {
        let (key, _, verifier) = setup();
        let batcher = Batcher::default();
        let now = shared::unix_now();
        let answered_at_once = async || {
            let start = Instant::now();
            let answer = batcher
                .verify(&verifier, &sizes(), &token(&key, now), now)
                .await;
            assert!(answer.is_ok());
            assert_eq!(Instant::now(), start, "no timer was waited on");
        };
        answered_at_once().await;

        // Nor the first request after a burst is over.
        load(&batcher);
        tokio::time::advance(Duration::from_secs(1)).await;
        answered_at_once().await;
    }

    #[tokio::test(start_paused = true)]
    async fn under_load_a_leader_waits_for_tokens_arriving_after_its_turn() {
        let (key, batcher, verifier) = under_load();
        let now = shared::unix_now();
        let start = Instant::now();
        let mut tasks = vec![spawn_verify(&batcher, &verifier, token(&key, now), now)];
        // The leader has had its turns (one yield would be over) before the others arrive.
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        tasks.extend((0..5).map(|_| spawn_verify(&batcher, &verifier, token(&key, now), now)));
        all_ok(tasks).await;
        assert_eq!(
            *batcher.seen.lock().unwrap(),
            (1, 6),
            "one batch of all six"
        );
        assert!(start.elapsed() >= WAIT, "the leader waited for its batch");
    }

    #[tokio::test(start_paused = true)]
    async fn under_load_a_full_batch_goes_without_waiting_out_the_timer() {
        let (key, batcher, verifier) = under_load();
        let now = shared::unix_now();
        let start = Instant::now();
        let mut tasks = vec![spawn_verify(&batcher, &verifier, token(&key, now), now)];
        tokio::task::yield_now().await;
        let rest = TARGET - 1;
        tasks.extend((0..rest).map(|_| spawn_verify(&batcher, &verifier, token(&key, now), now)));
        all_ok(tasks).await;
        assert_eq!(*batcher.seen.lock().unwrap(), (1, TARGET));
        assert_eq!(
            Instant::now(),
            start,
            "woken by the full batch, not the timer"
        );
    }

    #[tokio::test]
    async fn followers_are_answered_when_their_leader_is_dropped() {
        let (key, _, verifier) = setup();
        let verifier = Arc::new(verifier);
        let batcher = Arc::new(Batcher::default());
        let now = shared::unix_now();
        let t = token(&key, now);
        // The leader yields once and is dropped there; the follower joined meanwhile.
        let sizes = sizes();
        let mut leader = Box::pin(batcher.verify(&verifier, &sizes, &t, now));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(leader.as_mut().poll(&mut cx).is_pending());
        let follower = batcher.verify(&verifier, &sizes, &t, now);
        drop(leader);
        let answer = tokio::time::timeout(std::time::Duration::from_secs(10), follower).await;
        assert!(answer.expect("the follower is answered").is_ok());
    }
}
