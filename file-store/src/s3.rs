//! S3-compatible object storage (`--file-store s3://bucket/prefix`), through the
//! `object_store` crate: a HEAD gives size and ETag (the version), a ranged GET with
//! `If-Match` streams exactly that version's bytes in bounded memory, and uploads are
//! streaming multipart uploads (one PUT below the part size) that leave no object until they
//! complete.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, Stream, StreamExt};
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore};
use shared::StorageKey;
use tokio::io::AsyncWriteExt;

use crate::{ByteRange, FileStore, FileVersion, Source, StoredFile, Upload, UploadInner};

/// Objects `<prefix>/<key>` in one bucket.
#[derive(Clone)]
pub struct S3Store {
    store: Arc<dyn ObjectStore>,
    bucket: String,
    prefix: String,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl S3Store {
    pub(crate) fn new(store: Arc<dyn ObjectStore>, bucket: String, prefix: String) -> S3Store {
        S3Store {
            store,
            bucket,
            prefix,
        }
    }

    /// `s3://bucket/prefix`: never credentials.
    pub fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    fn path(&self, key: &StorageKey) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(key.as_str())
        } else {
            ObjectPath::from(format!("{}/{}", self.prefix, key.as_str()))
        }
    }

    /// The underlying client (tests list and poke objects through it).
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The object path of `key` (for tests).
    pub fn object_path(&self, key: &StorageKey) -> ObjectPath {
        self.path(key)
    }

    /// The prefix objects live under, as an object path (`None` for the bucket's root).
    pub fn prefix_path(&self) -> Option<ObjectPath> {
        (!self.prefix.is_empty()).then(|| ObjectPath::from(self.prefix.as_str()))
    }
}

fn io_error(e: object_store::Error) -> std::io::Error {
    use std::io::ErrorKind;
    let kind = match &e {
        object_store::Error::NotFound { .. } => ErrorKind::NotFound,
        object_store::Error::Precondition { .. } | object_store::Error::NotModified { .. } => {
            // The object was replaced between the HEAD and the GET.
            ErrorKind::InvalidData
        }
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => ErrorKind::PermissionDenied,
        _ => ErrorKind::Other,
    };
    std::io::Error::new(kind, e)
}

impl FileStore for S3Store {
    async fn open(&self, key: &StorageKey, _head: usize) -> std::io::Result<Option<StoredFile>> {
        let path = self.path(key);
        let meta = match self.store.head(&path).await {
            Ok(meta) => meta,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(io_error(e)),
        };
        // The version id where the bucket keeps versions, else the ETag: either changes when
        // the object is rewritten.
        let validator = meta
            .version
            .clone()
            .or(meta.e_tag.clone())
            .unwrap_or_default();
        let version = FileVersion {
            tag: FileVersion::fingerprint(
                validator
                    .bytes()
                    .chain(meta.size.to_le_bytes())
                    .chain(meta.last_modified.timestamp().to_le_bytes()),
            ),
            modified: meta.last_modified.timestamp(),
        };
        Ok(Some(StoredFile {
            size: meta.size,
            version,
            source: Source::S3(Opened {
                store: self.store.clone(),
                path,
                e_tag: meta.e_tag,
                version: meta.version,
            }),
        }))
    }

    async fn create(&self, key: &StorageKey) -> std::io::Result<Upload> {
        Ok(Upload {
            inner: UploadInner::S3(S3Upload {
                writer: Some(BufWriter::new(self.store.clone(), self.path(key))),
            }),
        })
    }

    async fn delete(&self, key: &StorageKey) -> std::io::Result<()> {
        match self.store.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(io_error(e)),
        }
    }

    async fn check(&self) -> std::io::Result<()> {
        // Lists one level under the prefix: fails for a missing bucket, bad credentials or an
        // unreachable endpoint.
        self.store
            .list_with_delimiter(self.prefix_path().as_ref())
            .await
            .map(|_| ())
            .map_err(io_error)
    }
}

/// An object whose size and version were read; its bytes are fetched when streamed.
pub(crate) struct Opened {
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    e_tag: Option<String>,
    version: Option<String>,
}

impl Opened {
    pub(crate) fn stream(self, range: ByteRange) -> S3Stream {
        if range.is_empty() {
            return S3Stream {
                inner: futures_util::stream::empty().boxed(),
            };
        }
        let options = GetOptions {
            range: Some(GetRange::Bounded(range.start..range.end)),
            // Only the version described: a replaced object fails the GET rather than mix.
            if_match: self.e_tag,
            version: self.version,
            ..GetOptions::default()
        };
        let get = async move {
            match self.store.get_opts(&self.path, options).await {
                Ok(result) => result.into_stream().map(|r| r.map_err(io_error)).boxed(),
                Err(e) => futures_util::stream::once(async move { Err(io_error(e)) }).boxed(),
            }
        };
        S3Stream {
            inner: get.flatten_stream().boxed(),
        }
    }
}

/// The bytes of a ranged GET as the response delivers them (reqwest's chunks: memory is
/// bounded by the connection's buffers, not the object).
pub(crate) struct S3Stream {
    inner: BoxStream<'static, std::io::Result<Bytes>>,
}

impl Stream for S3Stream {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}

/// A streaming upload: parts are sent as they fill, the object exists only once completed.
/// Dropped unfinished (the client went away), the multipart upload is aborted in the
/// background; after a crash it is never completed, so no object appears either (a bucket
/// lifecycle rule for incomplete uploads reclaims the parts; see docs/DEPLOY.md).
pub(crate) struct S3Upload {
    writer: Option<BufWriter>,
}

impl S3Upload {
    pub(crate) async fn write(&mut self, chunk: Bytes) -> std::io::Result<()> {
        match &mut self.writer {
            Some(writer) => writer.put(chunk).await.map_err(io_error),
            None => Err(std::io::Error::other("upload already finished")),
        }
    }

    pub(crate) async fn finish(mut self) -> std::io::Result<()> {
        match self.writer.take() {
            Some(mut writer) => {
                if let Err(e) = writer.shutdown().await {
                    let _ = writer.abort().await;
                    return Err(e);
                }
                Ok(())
            }
            None => Ok(()),
        }
    }

    pub(crate) async fn abort(mut self) {
        if let Some(mut writer) = self.writer.take() {
            let _ = writer.abort().await;
        }
    }
}

impl Drop for S3Upload {
    fn drop(&mut self) {
        let Some(mut writer) = self.writer.take() else {
            return;
        };
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = writer.abort().await;
            });
        }
    }
}
