//! Where uploaded files live. One seam, [`FileStore`], with one backend per file: the local
//! directory ([`LocalStore`], the default, which keeps the download fast path: no-wait open,
//! adaptive reads) and S3-compatible object storage ([`S3Store`]). The app server writes and
//! deletes; the download server opens a file for a byte range with its size and version.
//! [`Files`] is the one a server holds: either backend, dispatched without boxing.

mod config;
mod local;
mod s3;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
pub use shared::StorageKey;

pub use self::config::{FileStoreArgs, Location, SettingError};
pub use self::local::LocalStore;
pub use self::s3::S3Store;

/// What a stored file is: its size and its version, read in one step so that a file replaced
/// after opening is still read as the version described.
pub struct StoredFile {
    pub size: u64,
    /// Which version of the file this is: its strong validator (ETag) and what a resume grant
    /// is bound to.
    pub version: FileVersion,
    source: Source,
}

enum Source {
    Local(local::Opened),
    S3(s3::Opened),
}

/// One version of a stored file: the same key rewritten or replaced is another version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileVersion {
    /// A fingerprint of the version: of inode, size and modification time (to the
    /// nanosecond) for a local file; of the ETag (or version id) for an object.
    pub tag: u64,
    /// Modification time, Unix seconds (for `Last-Modified`).
    pub modified: i64,
}

impl FileVersion {
    /// FNV-1a over `bytes`: a fingerprint, not a secret (the file's owner decides them).
    fn fingerprint(bytes: impl IntoIterator<Item = u8>) -> u64 {
        let mut tag = 0xcbf2_9ce4_8422_2325_u64;
        for byte in bytes {
            tag = (tag ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        tag
    }
}

/// A byte range within a file: `start..end`, end exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    pub fn whole(size: u64) -> ByteRange {
        ByteRange {
            start: 0,
            end: size,
        }
    }

    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// The `Content-Range` value for a 206 (RFC 9110 section 14.4: inclusive last byte).
    pub fn content_range(&self, size: u64) -> String {
        format!("bytes {}-{}/{size}", self.start, self.end - 1)
    }
}

/// The largest read, for a client that takes bytes as fast as we read them: a 1 GiB download
/// then costs 2,048 blocking-pool hops, not 32,768.
pub const MAX_CHUNK: usize = local::MAX_CHUNK;

impl StoredFile {
    /// The bytes of `range`, in chunks of about `chunk` bytes while the client is slow (more
    /// while it keeps up, for a local file). Ends with an error, never short, when the
    /// stored bytes cannot all be read: the caller must cut the connection, not end the body.
    pub fn stream(self, range: ByteRange, chunk: usize) -> FileStream {
        let body = match self.source {
            Source::Local(opened) => Body::Local(opened.stream(range, chunk)),
            Source::S3(opened) => Body::S3(opened.stream(range)),
        };
        FileStream {
            body,
            remaining: range.len(),
            sent: 0,
        }
    }
}

/// The body of a download. Counts what was sent so the caller can log partial transfers.
pub struct FileStream {
    body: Body,
    remaining: u64,
    pub sent: u64,
}

enum Body {
    Local(local::LocalStream),
    S3(s3::S3Stream),
}

impl Stream for FileStream {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let next = match &mut this.body {
            Body::Local(s) => Pin::new(s).poll_next(cx),
            Body::S3(s) => Pin::new(s).poll_next(cx),
        };
        match next {
            Poll::Ready(Some(Ok(chunk))) => {
                if chunk.len() as u64 > this.remaining {
                    // More than promised: the stored bytes are not the version described.
                    this.remaining = 0;
                    return Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "the stored file is longer than its size",
                    ))));
                }
                this.remaining -= chunk.len() as u64;
                this.sent += chunk.len() as u64;
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(None) if this.remaining > 0 => {
                // The promised length cannot be met, so the connection must be cut rather
                // than end short and look whole.
                this.remaining = 0;
                Poll::Ready(Some(Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "file shrank while being sent",
                ))))
            }
            other => other,
        }
    }
}

/// A file being written under a new storage key. Nothing is visible under the key until
/// [`Upload::finish`]; dropped or aborted before that, nothing is left (a local temporary
/// file is removed, an S3 multipart upload aborted).
pub struct Upload {
    inner: UploadInner,
}

enum UploadInner {
    Local(local::LocalUpload),
    S3(s3::S3Upload),
}

impl Upload {
    pub async fn write(&mut self, chunk: Bytes) -> std::io::Result<()> {
        match &mut self.inner {
            UploadInner::Local(u) => u.write(&chunk).await,
            UploadInner::S3(u) => u.write(chunk).await,
        }
    }

    /// Makes the file visible under its key, whole.
    pub async fn finish(self) -> std::io::Result<()> {
        match self.inner {
            UploadInner::Local(u) => u.finish().await,
            UploadInner::S3(u) => u.finish().await,
        }
    }

    /// Leaves nothing behind, now (rather than on drop).
    pub async fn abort(self) {
        match self.inner {
            UploadInner::Local(u) => u.abort().await,
            UploadInner::S3(u) => u.abort().await,
        }
    }
}

/// Where files live. Keys are [`StorageKey`]s, which cannot name anything outside the store.
pub trait FileStore: Send + Sync {
    /// The file under `key` with its size and version; `None` when there is none. A local
    /// store reads the first `head` bytes with the open when asked (one hop for a small file).
    fn open(
        &self,
        key: &StorageKey,
        head: usize,
    ) -> impl Future<Output = std::io::Result<Option<StoredFile>>> + Send;

    /// The size and version of the file under `key`, without reading it; `None` when there
    /// is none. (For S3 this is the HEAD that [`FileStore::open`] makes.)
    fn metadata(
        &self,
        key: &StorageKey,
    ) -> impl Future<Output = std::io::Result<Option<(u64, FileVersion)>>> + Send {
        async move {
            Ok(self
                .open(key, 0)
                .await?
                .map(|stored| (stored.size, stored.version)))
        }
    }

    /// Starts writing a new file under `key`.
    fn create(&self, key: &StorageKey) -> impl Future<Output = std::io::Result<Upload>> + Send;

    /// Removes the file under `key`; a missing one is no error.
    fn delete(&self, key: &StorageKey) -> impl Future<Output = std::io::Result<()>> + Send;

    /// Whether the store can be used at all (at start-up): the directory exists, the bucket
    /// answers with these credentials.
    fn check(&self) -> impl Future<Output = std::io::Result<()>> + Send;
}

/// The store a server was configured with.
#[derive(Clone, Debug)]
pub enum Files {
    Local(LocalStore),
    S3(S3Store),
}

impl Files {
    /// The local directory, when that is the store (start-up housekeeping, tests).
    pub fn local_dir(&self) -> Option<&std::path::Path> {
        match self {
            Files::Local(l) => Some(l.root()),
            Files::S3(_) => None,
        }
    }

    /// A short description for logs: never credentials.
    pub fn describe(&self) -> String {
        match self {
            Files::Local(l) => format!("local directory {}", l.root().display()),
            Files::S3(s) => s.describe(),
        }
    }
}

impl FileStore for Files {
    async fn open(&self, key: &StorageKey, head: usize) -> std::io::Result<Option<StoredFile>> {
        match self {
            Files::Local(s) => s.open(key, head).await,
            Files::S3(s) => s.open(key, head).await,
        }
    }

    async fn create(&self, key: &StorageKey) -> std::io::Result<Upload> {
        match self {
            Files::Local(s) => s.create(key).await,
            Files::S3(s) => s.create(key).await,
        }
    }

    async fn delete(&self, key: &StorageKey) -> std::io::Result<()> {
        match self {
            Files::Local(s) => s.delete(key).await,
            Files::S3(s) => s.delete(key).await,
        }
    }

    async fn check(&self) -> std::io::Result<()> {
        match self {
            Files::Local(s) => s.check().await,
            Files::S3(s) => s.check().await,
        }
    }
}
