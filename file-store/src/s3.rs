//! S3-compatible object storage (`--file-store s3://bucket/prefix`), through the
//! `object_store` crate: a HEAD gives size and ETag (the version), a ranged GET with
//! `If-Match` streams exactly that version's bytes in bounded memory, and uploads are
//! streaming multipart uploads (one PUT below the part size) that leave no object until they
//! complete.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, Stream, StreamExt};
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore};
use shared::StorageKey;
use tokio::io::AsyncWriteExt;

use crate::store::FileStore;
use crate::types::{ByteRange, FileVersion, OpenFile, Opening, StoredFile, Upload, UploadWriter};

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

    fn path(&self, key: &StorageKey) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(key.as_str())
        } else {
            ObjectPath::from(format!("{}/{}", self.prefix, key.as_str()))
        }
    }

    /// The prefix objects live under, as an object path (`None` for the bucket's root).
    fn prefix_path(&self) -> Option<ObjectPath> {
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
    /// A HEAD: size and version, never the bytes (`head` is not read ahead).
    fn open<'a>(&'a self, key: &'a StorageKey, _head: usize) -> Opening<'a> {
        Opening::later(async move {
            let path = self.path(key);
            let meta = match self.store.head(&path).await {
                Ok(meta) => meta,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(io_error(e)),
            };
            // The version id where the bucket keeps versions, else the ETag: either changes
            // when the object is rewritten.
            let validator = meta.version.as_ref().or(meta.e_tag.as_ref());
            let modified = meta.last_modified.timestamp();
            let version = FileVersion::of_parts(
                &[
                    validator.map_or(&b""[..], |v| v.as_bytes()),
                    &meta.size.to_le_bytes(),
                    &modified.to_le_bytes(),
                ],
                modified,
            );
            let object = S3Object::Head {
                store: self.store.clone(),
                path,
                e_tag: meta.e_tag,
                version: meta.version,
            };
            Ok(Some(StoredFile::new(meta.size, version, object)))
        })
    }

    fn create<'a>(&'a self, key: &'a StorageKey) -> BoxFuture<'a, std::io::Result<Upload>> {
        let writer = BufWriter::new(self.store.clone(), self.path(key));
        Box::pin(async move {
            Ok(Upload::new(S3Upload {
                writer: Some(writer),
            }))
        })
    }

    fn delete<'a>(&'a self, key: &'a StorageKey) -> BoxFuture<'a, std::io::Result<()>> {
        Box::pin(async move {
            match self.store.delete(&self.path(key)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(io_error(e)),
            }
        })
    }

    /// Lists one level under the prefix: fails for a missing bucket, bad credentials or an
    /// unreachable endpoint.
    fn check(&self) -> BoxFuture<'_, std::io::Result<()>> {
        Box::pin(async move {
            self.store
                .list_with_delimiter(self.prefix_path().as_ref())
                .await
                .map(|_| ())
                .map_err(io_error)
        })
    }

    /// `s3://bucket/prefix`: never credentials.
    fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }
}

/// An object whose size and version were read; its bytes are fetched when a range is
/// selected, and then stream as the response delivers them (reqwest's chunks: memory is
/// bounded by the connection's buffers, not the object).
enum S3Object {
    Head {
        store: Arc<dyn ObjectStore>,
        path: ObjectPath,
        e_tag: Option<String>,
        version: Option<String>,
    },
    Get(BoxStream<'static, std::io::Result<Bytes>>),
}

impl OpenFile for S3Object {
    fn select(self: Pin<&mut Self>, range: ByteRange, _chunk: usize) {
        let this = self.get_mut();
        let S3Object::Head {
            store,
            path,
            e_tag,
            version,
        } = std::mem::replace(this, S3Object::Get(futures_util::stream::empty().boxed()))
        else {
            return;
        };
        if range.is_empty() {
            return;
        }
        let options = GetOptions {
            range: Some(GetRange::Bounded(range.start..range.end)),
            // Only the version described: a replaced object fails the GET rather than mix.
            if_match: e_tag,
            version,
            ..GetOptions::default()
        };
        let get = async move {
            match store.get_opts(&path, options).await {
                Ok(result) => result.into_stream().map(|r| r.map_err(io_error)).boxed(),
                Err(e) => futures_util::stream::once(async move { Err(io_error(e)) }).boxed(),
            }
        };
        *this = S3Object::Get(get.flatten_stream().boxed());
    }
}

impl Stream for S3Object {
    type Item = std::io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.get_mut() {
            S3Object::Get(body) => body.poll_next_unpin(cx),
            // No range selected: nothing (which the caller's length check makes an error).
            S3Object::Head { .. } => Poll::Ready(None),
        }
    }
}

/// A streaming upload: parts are sent as they fill, the object exists only once completed.
/// Dropped unfinished (the client went away), the multipart upload is aborted in the
/// background; after a crash it is never completed, so no object appears either (a bucket
/// lifecycle rule for incomplete uploads reclaims the parts; see docs/DEPLOY.md).
struct S3Upload {
    writer: Option<BufWriter>,
}

impl UploadWriter for S3Upload {
    fn write(&mut self, chunk: Bytes) -> BoxFuture<'_, std::io::Result<()>> {
        Box::pin(async move {
            match &mut self.writer {
                Some(writer) => writer.put(chunk).await.map_err(io_error),
                None => Err(std::io::Error::other("upload already finished")),
            }
        })
    }

    fn finish(mut self: Box<Self>) -> BoxFuture<'static, std::io::Result<()>> {
        Box::pin(async move {
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
        })
    }

    fn abort(mut self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            if let Some(mut writer) = self.writer.take() {
                let _ = writer.abort().await;
            }
        })
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
