//! The seam: [`FileStore`], which each backend implements in a file of its own, and
//! [`Files`], the one a server holds, whichever backend `--file-store` chose.
//!
//! Methods return boxed futures, streams and writers (pict-rs's `Store` is the model), so the
//! servers hold `dyn FileStore` and adding a backend touches no enum: one new file, plus its
//! `--file-store` value in `config.rs`. A local download allocates one box here, its
//! [`OpenFile`](crate::OpenFile), which becomes its stream (see [`Opening`]).
//!
//! What comes next fits beside these methods, as methods with a default that refuses
//! (`ErrorKind::Unsupported`), so no backend has to change until it offers them:
//! - Resumable uploads (tus): a `resume(key, upload id)` giving back an [`Upload`] positioned
//!   at the bytes already received, and an `UploadWriter::suspend` that keeps them rather
//!   than aborting. Locally that is appending to `<dir>/.part-<id>` (renamed by `finish`, as
//!   uploads are now); in S3, parts of one multipart upload (`object_store`'s
//!   `MultipartStore`: create, put part, complete, abort, by upload id) sent over several
//!   requests; S3 refuses parts under 5 MiB but the last, so a short request's bytes wait in
//!   an object of their own until a part fills. Either stays invisible until `finish`.
//!
//! The local backend's open-file cache fits this way: `open` takes `&self`, so the cache is
//! the backend's own state (`local/cache.rs`), answered with [`Opening::now`]; its entries are
//! dropped by this process's `create`/`delete` and checked against the directory with one
//! `statx` (a file replaced by another server), since an open never yields bytes of a version
//! other than the one it describes.

use std::path::Path;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use shared::StorageKey;

use crate::types::{FileVersion, Opening, Upload};

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
    /// is none. (For S3 this is the HEAD that [`FileStore::open`] makes.)
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
