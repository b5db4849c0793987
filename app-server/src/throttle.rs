//! Login throttling: a token bucket per account and one per client address (OWASP
//! Authentication Cheat Sheet, "Protect against automated attacks").
//!
//! Each bucket holds `--login-attempts-per-minute` attempts and refills at that rate. Only
//! failed logins take from the buckets; a success empties nothing and refills the account's
//! bucket (not the address's: an attacker could otherwise reset their address by logging into
//! their own account between guesses). A request is refused while either bucket is empty,
//! before any password is hashed, so a throttled request costs no argon2 work.
//!
//! The same buckets throttle share passwords (`crate::shares`): the "account" is the share.
//!
//! In-process (a `DashMap` per key kind): app servers behind a load balancer each throttle on
//! their own. `actix-governor` was not used: it keys on the request before the body is read,
//! so it cannot key on the account, and it is GPL-3.0.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dashmap::DashMap;

/// Above this many tracked keys, full buckets are dropped (at most once a second): memory stays
/// bounded by the keys that failed in the last minute.
const PURGE_ABOVE: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Per-account and per-address login buckets. `attempts_per_minute == 0` turns throttling off.
pub struct LoginThrottle {
    capacity: f64,
    per_sec: f64,
    accounts: DashMap<String, Bucket>,
    addresses: DashMap<IpAddr, Bucket>,
    last_purge: Mutex<Instant>,
}

impl LoginThrottle {
    pub fn new(attempts_per_minute: u32) -> LoginThrottle {
        LoginThrottle {
            capacity: f64::from(attempts_per_minute),
            per_sec: f64::from(attempts_per_minute) / 60.0,
            accounts: DashMap::new(),
            addresses: DashMap::new(),
            last_purge: Mutex::new(Instant::now()),
        }
    }

    fn enabled(&self) -> bool {
        self.capacity > 0.0
    }

    /// `Err(wait)` when the account or the address has no attempt left: how long until it has.
    pub fn check<A: AsRef<str> + ?Sized>(
        &self,
        account: Option<&A>,
        client: Option<IpAddr>,
    ) -> Result<(), Duration> {
        if !self.enabled() {
            return Ok(());
        }
        let now = Instant::now();
        let wait_account = account
            .and_then(|a| self.accounts.get(a.as_ref()).map(|b| self.wait(*b, now)))
            .unwrap_or_default();
        let wait_address = client
            .map(address_key)
            .and_then(|ip| self.addresses.get(&ip).map(|b| self.wait(*b, now)))
            .unwrap_or_default();
        match wait_account.max(wait_address) {
            wait if wait.is_zero() => Ok(()),
            wait => Err(wait),
        }
    }

    /// A failed login: one attempt less for the account and the address.
    pub fn failed<A: AsRef<str> + ?Sized>(&self, account: Option<&A>, client: Option<IpAddr>) {
        if !self.enabled() {
            return;
        }
        let now = Instant::now();
        if let Some(account) = account {
            self.take(&self.accounts, account.as_ref().to_owned(), now);
        }
        if let Some(ip) = client {
            self.take(&self.addresses, address_key(ip), now);
        }
        self.purge(now);
    }

    /// A successful login: the account starts afresh.
    pub fn succeeded<A: AsRef<str> + ?Sized>(&self, account: &A) {
        self.accounts.remove(account.as_ref());
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

    fn take<K: std::hash::Hash + Eq>(&self, map: &DashMap<K, Bucket>, key: K, now: Instant) {
        let mut entry = map.entry(key).or_insert(Bucket {
            tokens: self.capacity,
            updated: now,
        });
        let tokens = self.refilled(*entry, now);
        *entry = Bucket {
            tokens: (tokens - 1.0).max(0.0),
            updated: now,
        };
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

    #[test]
    fn failures_empty_the_bucket_and_a_success_resets_the_account() {
        let t = LoginThrottle::new(3);
        let alice = user("alice");
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..3 {
            assert!(t.check(Some(&alice), None).is_ok());
            t.failed(Some(&alice), None);
        }
        let wait = t.check(Some(&alice), None).unwrap_err();
        assert!(
            wait > Duration::from_secs(15) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert!(t.check(Some(&user("bob")), Some(ip)).is_ok());
        t.succeeded(&alice);
        assert!(t.check(Some(&alice), None).is_ok());
    }

    #[test]
    fn an_address_is_throttled_whatever_the_account() {
        let t = LoginThrottle::new(2);
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        let same_block: IpAddr = "2001:db8::ffff".parse().unwrap();
        t.failed(Some(&user("a")), Some(ip));
        t.failed(Some(&user("b")), Some(same_block));
        assert!(t.check(Some(&user("c")), Some(ip)).is_err());
        t.succeeded(&user("c"));
        assert!(
            t.check(Some(&user("c")), Some(ip)).is_err(),
            "success keeps the address"
        );
        assert!(
            t.check(Some(&user("c")), Some("2001:db9::1".parse().unwrap()))
                .is_ok()
        );
    }

    #[test]
    fn zero_turns_it_off() {
        let t = LoginThrottle::new(0);
        for _ in 0..100 {
            t.failed(Some(&user("a")), None);
        }
        assert!(t.check(Some(&user("a")), None).is_ok());
    }
}
