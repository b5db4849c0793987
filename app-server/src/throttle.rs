//! Login throttling: a token bucket per account and one per client address (OWASP
//! Authentication Cheat Sheet, "Protect against automated attacks"), and a bound on the logins
//! waiting for a password check.
//!
//! Each bucket holds `--login-attempts-per-minute` attempts and refills at that rate. An
//! attempt is *reserved* from both buckets before its password is hashed, so concurrent
//! guesses cannot all pass a check made before any of them failed: 40 parallel wrong
//! passwords against a bucket of 10 get ten checks and thirty 429s. A failure keeps the
//! reservation; a success refunds the address's attempt and refills the account's bucket (the
//! address is not refilled: an attacker could otherwise reset their address by logging into
//! their own account between guesses); a check that never happened (a database error, the
//! request dropped) refunds both. A request is refused while either bucket is empty, before
//! any password is hashed, so a throttled request costs no argon2 work.
//!
//! Hashes run a few at a time (`users::blocking`); the logins waiting for one are bounded by
//! `--max-pending-logins`. Beyond it a login is refused at once (429 `busy`): a flood from
//! many addresses queues no unbounded work and no unbounded wait.
//!
//! The same buckets throttle share passwords (`crate::shares`): the "account" is the share.
//!
//! In-process (a `DashMap` per key kind): app servers behind a load balancer each throttle on
//! their own. `actix-governor` was not used: it keys on the request before the body is read,
//! so it cannot key on the account, and it is GPL-3.0.

use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;

/// Above this many tracked keys, full buckets are dropped (at most once a second): memory stays
/// bounded by the keys that failed in the last minute.
const PURGE_ABOVE: usize = 10_000;

/// Why a login was refused before its password was looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The account or the address has no attempt left: how long until it has.
    Throttled(Duration),
    /// `--max-pending-logins` logins already wait for a password check.
    Busy,
}

/// What the client is told: 429 `throttled` with when to come back, or 429 `busy`.
impl From<Refusal> for crate::error::AppError {
    fn from(refusal: Refusal) -> crate::error::AppError {
        match refusal {
            Refusal::Throttled(wait) => crate::error::AppError::Throttled {
                retry_after_secs: wait.as_secs() + 1,
            },
            Refusal::Busy => crate::error::AppError::Busy,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Per-account and per-address login buckets, and the count of logins in a password check.
/// `attempts_per_minute == 0` turns the buckets off (the pending bound stays).
pub struct LoginThrottle {
    capacity: f64,
    per_sec: f64,
    accounts: DashMap<String, Bucket>,
    addresses: DashMap<IpAddr, Bucket>,
    last_purge: Mutex<Instant>,
    pending: AtomicUsize,
    max_pending: usize,
}

/// A login allowed to check its password: one attempt reserved from its buckets and one
/// pending slot. Say how it ended with [`Attempt::failed`] or [`Attempt::succeeded`]; dropped
/// without either (the check did not happen), both buckets get their attempt back.
#[must_use = "say how the attempt ended"]
pub struct Attempt<'a> {
    throttle: &'a LoginThrottle,
    account: Option<String>,
    address: Option<IpAddr>,
    settled: bool,
}

impl Attempt<'_> {
    /// Wrong credentials: the reserved attempt stays spent.
    pub fn failed(mut self) {
        self.settled = true;
        self.throttle.purge(Instant::now());
    }

    /// Right credentials: the account starts afresh and the address gets its attempt back
    /// (no more than that).
    pub fn succeeded(mut self) {
        self.settled = true;
        if let Some(account) = &self.account {
            self.throttle.accounts.remove(account);
        }
        if let Some(ip) = self.address {
            self.throttle.refund(&self.throttle.addresses, &ip);
        }
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        self.throttle.pending.fetch_sub(1, Ordering::AcqRel);
        if self.settled {
            return;
        }
        if let Some(account) = &self.account {
            self.throttle.refund(&self.throttle.accounts, account);
        }
        if let Some(ip) = self.address {
            self.throttle.refund(&self.throttle.addresses, &ip);
        }
    }
}

impl LoginThrottle {
    /// `max_pending` is at least 1 (`Config::validate`).
    pub fn new(attempts_per_minute: u32, max_pending: usize) -> LoginThrottle {
        LoginThrottle {
            capacity: f64::from(attempts_per_minute),
            per_sec: f64::from(attempts_per_minute) / 60.0,
            accounts: DashMap::new(),
            addresses: DashMap::new(),
            last_purge: Mutex::new(Instant::now()),
            pending: AtomicUsize::new(0),
            max_pending,
        }
    }

    /// Reserves an attempt from the account's and the address's buckets and a pending slot,
    /// or says why not. Each bucket is taken from under its own entry lock, so concurrent
    /// reservations never spend an attempt twice.
    pub fn reserve(
        &self,
        account: Option<&str>,
        client: Option<IpAddr>,
    ) -> Result<Attempt<'_>, Refusal> {
        if self.pending.fetch_add(1, Ordering::AcqRel) >= self.max_pending {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::Busy);
        }
        // From here on, dropping `attempt` frees the slot and refunds what it holds.
        let mut attempt = Attempt {
            throttle: self,
            account: None,
            address: None,
            settled: false,
        };
        if !self.enabled() {
            return Ok(attempt);
        }
        let now = Instant::now();
        if let Some(account) = account {
            let key = account.to_owned();
            self.take(&self.accounts, key.clone(), now)
                .map_err(Refusal::Throttled)?;
            attempt.account = Some(key);
        }
        if let Some(ip) = client.map(address_key) {
            self.take(&self.addresses, ip, now)
                .map_err(Refusal::Throttled)?;
            attempt.address = Some(ip);
        }
        Ok(attempt)
    }

    fn enabled(&self) -> bool {
        self.capacity > 0.0
    }

    fn refilled(&self, b: Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(b.updated).as_secs_f64();
        (b.tokens + elapsed * self.per_sec).min(self.capacity)
    }

    fn wait(&self, b: Bucket, now: Instant) -> Duration {
        let tokens = self.refilled(b, now);
        if tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - tokens) / self.per_sec)
        }
    }

    /// One attempt from `key`'s bucket, or how long until it has one.
    fn take<K: std::hash::Hash + Eq>(
        &self,
        map: &DashMap<K, Bucket>,
        key: K,
        now: Instant,
    ) -> Result<(), Duration> {
        let mut entry = map.entry(key).or_insert(Bucket {
            tokens: self.capacity,
            updated: now,
        });
        let wait = self.wait(*entry, now);
        if !wait.is_zero() {
            return Err(wait);
        }
        let tokens = self.refilled(*entry, now);
        *entry = Bucket {
            tokens: tokens - 1.0,
            updated: now,
        };
        Ok(())
    }

    /// Gives one attempt back to `key`'s bucket (if it is still tracked).
    fn refund<K: std::hash::Hash + Eq>(&self, map: &DashMap<K, Bucket>, key: &K) {
        if let Some(mut bucket) = map.get_mut(key) {
            let now = Instant::now();
            let tokens = self.refilled(*bucket, now);
            *bucket = Bucket {
                tokens: (tokens + 1.0).min(self.capacity),
                updated: now,
            };
        }
    }

    fn purge(&self, now: Instant) {
        if self.accounts.len() + self.addresses.len() <= PURGE_ABOVE {
            return;
        }
        let Ok(mut last) = self.last_purge.try_lock() else {
            return;
        };
        if now.saturating_duration_since(*last) < Duration::from_secs(1) {
            return;
        }
        *last = now;
        self.accounts
            .retain(|_, b| self.refilled(*b, now) < self.capacity);
        self.addresses
            .retain(|_, b| self.refilled(*b, now) < self.capacity);
    }
}

/// IPv4 addresses count one by one; IPv6 ones by /64, the block one host usually holds
/// (RFC 6177), so rotating through its own addresses gains an attacker nothing.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                IpAddr::V6(octets.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::Username;

    fn user(name: &str) -> Username {
        Username::parse(name).unwrap()
    }

    fn wait_of(refusal: Result<Attempt<'_>, Refusal>) -> Duration {
        match refusal {
            Err(Refusal::Throttled(wait)) => wait,
            Err(Refusal::Busy) => panic!("busy, not throttled"),
            Ok(_) => panic!("not throttled"),
        }
    }

    #[test]
    fn failures_empty_the_bucket_and_a_success_resets_the_account() {
        let t = LoginThrottle::new(3, 100);
        let alice = user("alice");
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..3 {
            t.reserve(Some(alice.as_str()), None).unwrap().failed();
        }
        let wait = wait_of(t.reserve(Some(alice.as_str()), None));
        assert!(
            wait > Duration::from_secs(15) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        t.reserve(Some(user("bob").as_str()), Some(ip))
            .unwrap()
            .succeeded();

        let carol = user("carol");
        for _ in 0..2 {
            t.reserve(Some(carol.as_str()), None).unwrap().failed();
        }
        t.reserve(Some(carol.as_str()), None).unwrap().succeeded();
        for _ in 0..3 {
            t.reserve(Some(carol.as_str()), None).unwrap().failed();
        }
        assert!(t.reserve(Some(carol.as_str()), None).is_err());
    }

    #[test]
    fn attempts_are_reserved_before_the_check_so_concurrent_ones_cannot_overspend() {
        let t = LoginThrottle::new(3, 100);
        let alice = user("alice");
        // Three checks in flight at once: a fourth is refused before any of them failed.
        let held: Vec<_> = (0..3)
            .map(|_| t.reserve(Some(alice.as_str()), None).unwrap())
            .collect();
        assert!(matches!(
            t.reserve(Some(alice.as_str()), None),
            Err(Refusal::Throttled(_))
        ));
        // One check that never happened gives its attempt back.
        let mut held = held.into_iter();
        drop(held.next());
        let again = t.reserve(Some(alice.as_str()), None).unwrap();
        for attempt in held.chain([again]) {
            attempt.failed();
        }
        assert!(t.reserve(Some(alice.as_str()), None).is_err());
    }

    #[test]
    fn pending_checks_are_bounded() {
        let t = LoginThrottle::new(0, 2);
        let a = t.reserve(None, None).unwrap();
        let b = t.reserve(None, None).unwrap();
        assert!(matches!(t.reserve(None, None), Err(Refusal::Busy)));
        a.failed();
        let c = t.reserve(None, None).unwrap();
        assert!(matches!(t.reserve(None, None), Err(Refusal::Busy)));
        b.succeeded();
        drop(c);
        assert_eq!(t.pending.load(Ordering::Acquire), 0);
    }

    #[test]
    fn an_address_is_throttled_whatever_the_account() {
        let t = LoginThrottle::new(2, 100);
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        let same_block: IpAddr = "2001:db8::ffff".parse().unwrap();
        t.reserve(Some(user("a").as_str()), Some(ip))
            .unwrap()
            .failed();
        t.reserve(Some(user("b").as_str()), Some(same_block))
            .unwrap()
            .failed();
        assert!(t.reserve(Some(user("c").as_str()), Some(ip)).is_err());
        // The refused reservation took nothing from c's account.
        assert_eq!(t.accounts.get("c").map(|b| b.tokens), Some(2.0));
        t.reserve(
            Some(user("c").as_str()),
            Some("2001:db9::1".parse().unwrap()),
        )
        .unwrap()
        .succeeded();
    }

    #[test]
    fn a_success_gives_back_only_its_own_attempt() {
        let t = LoginThrottle::new(2, 100);
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        t.reserve(Some(user("x1").as_str()), Some(ip))
            .unwrap()
            .failed();
        t.reserve(Some(user("bob").as_str()), Some(ip))
            .unwrap()
            .succeeded();
        t.reserve(Some(user("x2").as_str()), Some(ip))
            .unwrap()
            .failed();
        assert!(t.reserve(Some(user("bob").as_str()), Some(ip)).is_err());
    }

    #[test]
    fn zero_turns_the_buckets_off() {
        let t = LoginThrottle::new(0, 100);
        for _ in 0..100 {
            t.reserve(Some(user("a").as_str()), None).unwrap().failed();
        }
        assert!(t.reserve(Some(user("a").as_str()), None).is_ok());
    }
}
