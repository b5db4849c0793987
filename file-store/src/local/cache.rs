//! The open-file cache of the local directory (`--open-file-cache`, like nginx's
//! `open_file_cache`): the bytes of small files, by storage key, so that downloading one again
//! costs one `statx` instead of `openat2`, `statx`, `preadv2` and `close`.
//!
//! What it holds: files no larger than what an open reads with it (the download server's
//! first read, `--read-buffer-kib`), whole, with the inode, size and modification time (to
//! the nanosecond) they were read at. At most `entries` of them; a new one past that evicts an
//! arbitrary other.
//!
//! Why it never serves bytes of another version:
//! - every hit is checked against the directory with one `statx` of the path (by default;
//!   `--open-file-cache-secs 0`): another inode (a file replaced by a rename), another size or
//!   another modification time (rewritten in place) is a miss, and the file is opened afresh;
//!   no file at all drops the entry and answers as an open would;
//! - this process's own writes and deletions drop the entry at once ([`OpenFileCache::forget`]
//!   from `LocalStore::delete` and from an upload's `finish`);
//! - with `--open-file-cache-secs N`, an entry checked less than N seconds ago is trusted
//!   without the `statx`: a file replaced or deleted by *another* process (the app server of a
//!   split deployment, another host on a shared directory) may then be served in the version
//!   read before, whole and with that version's size and `ETag`, for up to N seconds. Never a
//!   mix of two versions.
//!
//! The check runs on the async worker: `statx` with `AT_STATX_DONT_SYNC` on a path whose
//! dentry a recent open left in the cache.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::types::FileVersion;

/// What identifies the bytes of a version: a file with all four unchanged has the same bytes
/// (uploads are written aside and renamed in, so a new file is a new inode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Identity {
    pub ino: u64,
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: u32,
}

/// A cached file: its whole bytes, read when it had `identity`.
#[derive(Clone)]
pub(super) struct Entry {
    pub identity: Identity,
    pub version: FileVersion,
    pub bytes: Bytes,
    checked: Instant,
}

/// The cache: bounded, shared by the workers (a read lock on a hit).
pub(super) struct OpenFileCache {
    entries: RwLock<HashMap<Box<str>, Entry, foldhash::fast::RandomState>>,
    capacity: usize,
    trust: Duration,
}

/// What a lookup found.
pub(super) enum Lookup {
    /// The cached bytes are the file's current version.
    Hit(Entry),
    /// Not cached, or cached but changed (the entry is dropped): open it.
    Miss,
    /// The file is gone (or no longer a regular file): the entry is dropped.
    Gone,
}

impl OpenFileCache {
    pub fn new(capacity: usize, trust: Duration) -> OpenFileCache {
        OpenFileCache {
            entries: RwLock::new(HashMap::default()),
            capacity,
            trust,
        }
    }

    /// The entry for `key` when it is still the file's version; `stat` gives the file's
    /// identity now (`Ok(None)`: not a regular file; `Err`: could not tell without waiting).
    pub fn lookup(
        &self,
        key: &str,
        stat: impl FnOnce() -> std::io::Result<Option<Identity>>,
    ) -> Lookup {
        let entry = {
            let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
            match entries.get(key) {
                Some(entry) => entry.clone(),
                None => return Lookup::Miss,
            }
        };
        if !self.trust.is_zero() && entry.checked.elapsed() < self.trust {
            return Lookup::Hit(entry);
        }
        match stat() {
            Ok(Some(now)) if now == entry.identity => Lookup::Hit(entry),
            Ok(Some(_)) => {
                self.forget(key);
                Lookup::Miss
            }
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Lookup::Miss,
            Ok(None) | Err(_) => {
                self.forget(key);
                Lookup::Gone
            }
        }
    }

    /// Keeps `bytes`, the whole file `key` as it was with `identity`.
    pub fn insert(&self, key: &str, identity: Identity, version: FileVersion, bytes: Bytes) {
        if self.capacity == 0 || bytes.len() as u64 != identity.size {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity && !entries.contains_key(key) {
            // Bounded: an arbitrary entry goes (the map's order is seeded per process).
            if let Some(victim) = entries.keys().next().cloned() {
                entries.remove(&victim);
            }
        }
        entries.insert(
            key.into(),
            Entry {
                identity,
                version,
                bytes,
                checked: Instant::now(),
            },
        );
    }

    /// Drops what is cached for `key` (this process wrote or deleted it).
    pub fn forget(&self, key: &str) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        entries.remove(key);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(ino: u64) -> Identity {
        Identity {
            ino,
            size: 3,
            mtime: 1,
            mtime_nsec: 2,
        }
    }

    fn version() -> FileVersion {
        FileVersion::of_parts(&[b"v"], 1)
    }

    fn hit(lookup: Lookup) -> Option<Bytes> {
        match lookup {
            Lookup::Hit(entry) => Some(entry.bytes),
            _ => None,
        }
    }

    /// Checked on every hit by default: a changed identity is a miss and drops the entry; a
    /// file gone is gone.
    #[test]
    fn a_changed_or_missing_file_is_never_a_hit() {
        let cache = OpenFileCache::new(8, Duration::ZERO);
        cache.insert("k", identity(1), version(), Bytes::from_static(b"abc"));
        let same = || Ok(Some(identity(1)));
        assert_eq!(hit(cache.lookup("k", same)).as_deref(), Some(&b"abc"[..]));
        assert!(matches!(
            cache.lookup("k", || Ok(Some(identity(2)))),
            Lookup::Miss
        ));
        assert_eq!(cache.len(), 0, "a changed file's entry is dropped");

        cache.insert("k", identity(1), version(), Bytes::from_static(b"abc"));
        let gone = || Err(std::io::ErrorKind::NotFound.into());
        assert!(matches!(cache.lookup("k", gone), Lookup::Gone));
        assert_eq!(cache.len(), 0);

        cache.insert("k", identity(1), version(), Bytes::from_static(b"abc"));
        assert!(matches!(cache.lookup("k", || Ok(None)), Lookup::Gone));
        // Could not tell without waiting: opened afresh, the entry kept.
        cache.insert("k", identity(1), version(), Bytes::from_static(b"abc"));
        let would_wait = || Err(std::io::ErrorKind::WouldBlock.into());
        assert!(matches!(cache.lookup("k", would_wait), Lookup::Miss));
        assert_eq!(cache.len(), 1);
        cache.forget("k");
        assert_eq!(cache.len(), 0);
    }

    /// With a trust period, a fresh entry is served without asking the directory.
    #[test]
    fn a_trusted_entry_is_not_checked() {
        let cache = OpenFileCache::new(8, Duration::from_secs(3600));
        cache.insert("k", identity(1), version(), Bytes::from_static(b"abc"));
        let never = || -> std::io::Result<Option<Identity>> { panic!("checked") };
        assert!(hit(cache.lookup("k", never)).is_some());
    }

    /// Bounded; bytes that are not the whole file are not kept; capacity 0 keeps nothing.
    #[test]
    fn the_cache_is_bounded_and_keeps_only_whole_files() {
        let cache = OpenFileCache::new(2, Duration::ZERO);
        for key in ["a", "b", "c", "d"] {
            cache.insert(key, identity(1), version(), Bytes::from_static(b"abc"));
        }
        assert_eq!(cache.len(), 2);
        cache.insert("e", identity(1), version(), Bytes::from_static(b"ab"));
        assert!(matches!(
            cache.lookup("e", || Ok(Some(identity(1)))),
            Lookup::Miss
        ));
        let off = OpenFileCache::new(0, Duration::ZERO);
        off.insert("a", identity(1), version(), Bytes::from_static(b"abc"));
        assert_eq!(off.len(), 0);
    }
}
