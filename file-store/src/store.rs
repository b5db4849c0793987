//! The seam: [`FileStore`], which each backend implements in a file of its own, and
//! [`Files`], the one a server holds, whichever backend `--file-store` chose.
//!
//! Methods return boxed futures, streams and writers (pict-rs's `Store` is the model), so the
//! servers hold `dyn FileStore` and adding a backend touches no enum: one new file, plus its
//! `--file-store` value in `config.rs`. A local download allocates one box here, its
//! [`OpenFile`](crate::OpenFile), which becomes its stream (see [`Opening`]).
//!
//! Resumable uploads (tus) are the `*_part` methods, with defaults that refuse
//! (`ErrorKind::Unsupported`), so a backend offers them when it can: a part is started, resumed
//! at the offset its caller last saved ([`Appending`], whose `save` makes the bytes durable
//! before their offset may be acknowledged), then finished into its key or discarded. Locally
//! that is appending to `<dir>/.part-<key>` (renamed by `finish_part`); in S3, parts of one
//! multipart upload sent over several requests, the tail under 5 MiB waiting in a local file
//! until a part fills. Either stays invisible until finished.
//!
//! The local backend's open-file cache fits the same way: `open` takes `&self`, so the cache is
//! the backend's own state (`local/cache.rs`), answered with [`Opening::now`]; its entries are
//! dropped by this process's `create`/`delete` and checked against the directory with one
//! `statx` (a file replaced by another server), since an open never yields bytes of a version
//! other than the one it describes.

use std::path::Path;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use shared::StorageKey;

use crate::types::{Appending, FileVersion, Opening, PartState, Upload};

/// Where files live. Keys are [`StorageKey`]s, which cannot name anything outside the store.
///
/// Every backend guarantees: an open describes one version (size and [`FileVersion`]) and its
/// stream yields that version's bytes or an error, never another version's; an upload is
/// invisible until finished and leaves nothing when dropped or aborted; a local file is
/// created with [`shared::FILE_MODE`].
pub trait FileStore: Send + Sync + 'static {
    /// The file under `key` with its size and version; `None` when there is none. A store
    /// that can reads the first `head` bytes with the open (one hop for a small file).
    fn open<'a>(&'a self, key: &'a StorageKey, head: usize) -> Opening<'a>;

    /// The size and version of the file under `key`, without reading it; `None` when there
    /// is none. (For S3 a HEAD: [`FileStore::open`] with no head to read.)
    fn metadata<'a>(
        &'a self,
        key: &'a StorageKey,
    ) -> BoxFuture<'a, std::io::Result<Option<(u64, FileVersion)>>> {
        Box::pin(async move {
            Ok(self
                .open(key, 0)
                .await?
                .map(|stored| (stored.size, stored.version)))
        })
    }

    /// Starts writing a new file under `key`.
    fn create<'a>(&'a self, key: &'a StorageKey) -> BoxFuture<'a, std::io::Result<Upload>>;

    /// Removes the file under `key`; a missing one is no error.
    fn delete<'a>(&'a self, key: &'a StorageKey) -> BoxFuture<'a, std::io::Result<()>>;

    /// Starts a resumable upload (tus) that will become the file under `key`: an empty part
    /// (a `.part-<key>` file; an S3 multipart upload). Nothing is visible under `key` until
    /// [`FileStore::finish_part`]. The default refuses (`Unsupported`).
    fn start_part<'a>(&'a self, key: &'a StorageKey) -> BoxFuture<'a, std::io::Result<PartState>> {
        let _ = key;
        Box::pin(async { Err(resumable_unsupported()) })
    }

    /// Carries on writing the part of `key` at `offset`, the offset last saved with `state`.
    /// Bytes past `offset` (written, never saved: a crash before the caller recorded them) are
    /// cut off; a part shorter than `offset` is an error (`UnexpectedEof`).
    fn append_part<'a>(
        &'a self,
        key: &'a StorageKey,
        state: &'a PartState,
        offset: u64,
    ) -> BoxFuture<'a, std::io::Result<Appending>> {
        let _ = (key, state, offset);
        Box::pin(async { Err(resumable_unsupported()) })
    }

    /// Makes the part, whole, the file under `key`. Finishing a part already finished (the
    /// file is there, the part is not) is no error, so a finish interrupted after this step
    /// can be repeated.
    fn finish_part<'a>(
        &'a self,
        key: &'a StorageKey,
        state: &'a PartState,
    ) -> BoxFuture<'a, std::io::Result<()>> {
        let _ = (key, state);
        Box::pin(async { Err(resumable_unsupported()) })
    }

    /// Removes the part and what it holds (an expired or terminated upload); a missing one is
    /// no error.
    fn discard_part<'a>(
        &'a self,
        key: &'a StorageKey,
        state: &'a PartState,
    ) -> BoxFuture<'a, std::io::Result<()>> {
        let _ = (key, state);
        Box::pin(async { Err(resumable_unsupported()) })
    }

    /// Whether the store can be used at all, at start-up: the bucket answers with these
    /// credentials; the directory is one (or is not there yet: the app server creates it).
    fn check(&self) -> BoxFuture<'_, std::io::Result<()>>;

    /// Removes what uploads interrupted by a crash left behind, when that is the store's to
    /// do (the app server calls it at start; download servers never write).
    fn tidy(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    /// A short description for logs: never credentials.
    fn describe(&self) -> String;

    /// The directory files live in, when the store is one.
    fn local_dir(&self) -> Option<&Path> {
        None
    }
}

fn resumable_unsupported() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "this file store does not take resumable uploads",
    )
}

/// The store a server was configured with (built by
/// [`FileStoreArgs`](crate::FileStoreArgs)); cheap to clone.
#[derive(Clone)]
pub struct Files(Arc<dyn FileStore>);

impl Files {
    pub fn new(store: impl FileStore) -> Files {
        Files(Arc::new(store))
    }
}

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.describe())
    }
}

impl FileStore for Files {
    fn open<'a>(&'a self, key: &'a StorageKey, head: usize) -> Opening<'a> {
        self.0.open(key, head)
    }

    fn metadata<'a>(
        &'a self,
        key: &'a StorageKey,
    ) -> BoxFuture<'a, std::io::Result<Option<(u64, FileVersion)>>> {
        self.0.metadata(key)
    }

    fn create<'a>(&'a self, key: &'a StorageKey) -> BoxFuture<'a, std::io::Result<Upload>> {
        self.0.create(key)
    }

    fn delete<'a>(&'a self, key: &'a StorageKey) -> BoxFuture<'a, std::io::Result<()>> {
        self.0.delete(key)
    }

    fn start_part<'a>(&'a self, key: &'a StorageKey) -> BoxFuture<'a, std::io::Result<PartState>> {
        self.0.start_part(key)
    }

    fn append_part<'a>(
        &'a self,
        key: &'a StorageKey,
        state: &'a PartState,
        offset: u64,
    ) -> BoxFuture<'a, std::io::Result<Appending>> {
        self.0.append_part(key, state, offset)
    }

    fn finish_part<'a>(
        &'a self,
        key: &'a StorageKey,
        state: &'a PartState,
    ) -> BoxFuture<'a, std::io::Result<()>> {
        self.0.finish_part(key, state)
    }

    fn discard_part<'a>(
        &'a self,
        key: &'a StorageKey,
        state: &'a PartState,
    ) -> BoxFuture<'a, std::io::Result<()>> {
        self.0.discard_part(key, state)
    }

    fn check(&self) -> BoxFuture<'_, std::io::Result<()>> {
        self.0.check()
    }

    fn tidy(&self) -> BoxFuture<'_, ()> {
        self.0.tidy()
    }

    fn describe(&self) -> String {
        self.0.describe()
    }

    fn local_dir(&self) -> Option<&Path> {
        self.0.local_dir()
    }
}
