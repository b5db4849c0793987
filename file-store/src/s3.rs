//! S3-compatible object storage (`--file-store s3://bucket/prefix`), through the
//! `object_store` crate: a whole-file download is one ranged GET of its head, whose headers
//! give size (`Content-Range`) and version (ETag), and whose bytes are the whole of a small
//! file; any further ranged GET has `If-Match` and so streams exactly that version's bytes in
//! bounded memory (a HEAD gives size and version where no bytes are wanted yet), and uploads are
//! streaming multipart uploads (one PUT below the part size) that leave no object until they
//! complete. Resumable uploads are one multipart upload over many requests
//! ([`S3Store::append_part`]).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, Stream, StreamExt};
use object_store::buffered::BufWriter;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore, PutPayload};
use shared::StorageKey;
use tokio::io::AsyncWriteExt;

use crate::store::FileStore;
use crate::types::{
    Appending, ByteRange, FileVersion, OpenFile, Opening, PartState, PartWriter, Saved, StoredFile,
    Upload, UploadWriter,
};

/// The size of each part of a resumable upload but the last: S3's smallest.
const PART_SIZE: u64 = 5 * 1024 * 1024;

/// Objects `<prefix>/<key>` in one bucket.
#[derive(Clone)]
pub struct S3Store {
    store: Arc<dyn ObjectStore>,
    multipart: Arc<dyn MultipartStore>,
    bucket: String,
    prefix: String,
    /// Where a resumable upload's bytes wait until they fill a part (the app's data dir).
    tails: Arc<std::path::Path>,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl S3Store {
    pub(crate) fn new<T: ObjectStore + MultipartStore>(
        store: Arc<T>,
        bucket: String,
        prefix: String,
        tails: std::path::PathBuf,
    ) -> S3Store {
        S3Store {
            store: store.clone(),
            multipart: store,
            bucket,
            prefix,
            tails: Arc::from(tails),
        }
    }

    /// The local file holding the bytes of part `index` (0-based) of `key`'s resumable upload
    /// until they are sent.
    fn tail_path(&self, key: &StorageKey, index: usize) -> std::path::PathBuf {
        self.tails.join(format!(".tail-{}-{index}", key.as_str()))
    }

    /// Removes the tail files of parts before `upto` (sent, and recorded by the caller).
    async fn remove_tails(&self, key: &StorageKey, upto: usize) {
        for index in (0..upto).rev() {
            match tokio::fs::remove_file(self.tail_path(key, index)).await {
                Ok(()) => {}
                // Earlier ones went with an earlier request.
                Err(_) => break,
            }
        }
    }

    fn path(&self, key: &StorageKey) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(key.as_str())
        } else {
            ObjectPath::from(format!("{}/{}", self.prefix, key.as_str()))
        }
    }

    /// The object `meta` describes, with its first bytes already read (`head`, possibly
    /// none).
    fn opened(&self, path: ObjectPath, meta: object_store::ObjectMeta, head: Bytes) -> StoredFile {
        // The version id where the bucket keeps versions, else the ETag: either changes when
        // the object is rewritten.
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
        if head.len() as u64 == meta.size {
            // Read whole by the open's one GET: served from memory.
            return StoredFile::in_memory(version, head);
        }
        let object = S3Object::Opened {
            store: self.store.clone(),
            path,
            e_tag: meta.e_tag,
            version: meta.version,
            head,
        };
        StoredFile::new(meta.size, version, object)
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
            // The object was replaced between the open and a later GET.
            ErrorKind::InvalidData
        }
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => ErrorKind::PermissionDenied,
        _ => ErrorKind::Other,
    };
    std::io::Error::new(kind, e)
}

impl FileStore for S3Store {
    /// With `head` > 0 (a whole-file download), one ranged GET of the first `head` bytes: the
    /// size comes from its `Content-Range`, the version from its `ETag` (or version id) and
    /// `Last-Modified`, and a file that fits is read whole by this one request. Otherwise (and
    /// for an empty object, which has no range to GET), a HEAD: size and version, never the
    /// bytes. Either way the version is computed alike, and later reads ask for it
    /// (`If-Match`).
    fn open<'a>(&'a self, key: &'a StorageKey, head: usize) -> Opening<'a> {
        Opening::later(async move {
            let path = self.path(key);
            if head > 0 {
                let options = GetOptions {
                    range: Some(GetRange::Bounded(0..head as u64)),
                    ..GetOptions::default()
                };
                match self.store.get_opts(&path, options).await {
                    Ok(got) => {
                        let meta = got.meta.clone();
                        let bytes = got.bytes().await.map_err(io_error)?;
                        return Ok(Some(self.opened(path, meta, bytes)));
                    }
                    Err(object_store::Error::NotFound { .. }) => return Ok(None),
                    Err(
                        e @ (object_store::Error::PermissionDenied { .. }
                        | object_store::Error::Unauthenticated { .. }),
                    ) => return Err(io_error(e)),
                    // An empty object has no first byte to GET (416): the HEAD says so.
                    Err(_) => {}
                }
            }
            let meta = match self.store.head(&path).await {
                Ok(meta) => meta,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(io_error(e)),
            };
            Ok(Some(self.opened(path, meta, Bytes::new())))
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

    /// Creates the multipart upload and the empty local file its first part waits in.
    fn start_part<'a>(&'a self, key: &'a StorageKey) -> BoxFuture<'a, std::io::Result<PartState>> {
        Box::pin(async move {
            let id = self
                .multipart
                .create_multipart(&self.path(key))
                .await
                .map_err(io_error)?;
            let state = MultipartState {
                id,
                parts: Vec::new(),
            };
            let created = async {
                let file = tail_options()
                    .create_new(true)
                    .open(self.tail_path(key, 0))
                    .await?;
                file.sync_all().await?;
                sync_dir(&self.tails).await
            };
            if let Err(e) = created.await {
                let _ = self
                    .multipart
                    .abort_multipart(&self.path(key), &state.id)
                    .await;
                return Err(e);
            }
            Ok(state.encode())
        })
    }

    /// Resumes at `offset`: the parts `state` lists were sent, the rest of the bytes wait in
    /// the tail file of the next part (cut to `offset` if a request wrote past it unrecorded).
    fn append_part<'a>(
        &'a self,
        key: &'a StorageKey,
        state: &'a PartState,
        offset: u64,
    ) -> BoxFuture<'a, std::io::Result<Appending>> {
        Box::pin(async move {
            let state = MultipartState::decode(state)?;
            let index = state.parts.len();
            self.remove_tails(key, index).await;
            let sent = index as u64 * PART_SIZE;
            let tail_len = offset.checked_sub(sent).filter(|len| *len <= PART_SIZE);
            let Some(tail_len) = tail_len else {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("offset {offset} does not follow {index} parts"),
                ));
            };
            let mut file = tail_options().open(self.tail_path(key, index)).await?;
            let len = file.metadata().await?.len();
            if len < tail_len {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("the tail holds {len} bytes, {tail_len} were saved"),
                ));
            }
            if len > tail_len {
                file.set_len(tail_len).await?;
            }
            use tokio::io::AsyncSeekExt;
            file.seek(std::io::SeekFrom::Start(tail_len)).await?;
            Ok(Appending::new(S3Part {
                store: self.clone(),
                key: key.clone(),
                state,
                file,
                tail_len,
            }))
        })
    }

    /// Sends the tail as the last part and completes the upload (the object appears whole).
    /// Completing an upload already completed (S3 no longer knows it, the object is there) is
    /// no error.
    fn finish_part<'a>(
        &'a self,
        key: &'a StorageKey,
        state: &'a PartState,
    ) -> BoxFuture<'a, std::io::Result<()>> {
        Box::pin(async move {
            let mut state = MultipartState::decode(state)?;
            let path = self.path(key);
            let index = state.parts.len();
            let finished = async {
                match tokio::fs::read(self.tail_path(key, index)).await {
                    Ok(tail) if !tail.is_empty() || index == 0 => {
                        let part = self
                            .multipart
                            .put_part(&path, &state.id, index, PutPayload::from(tail))
                            .await
                            .map_err(io_error)?;
                        state.parts.push(part.content_id);
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
                let parts = state
                    .parts
                    .iter()
                    .map(|id| PartId {
                        content_id: id.clone(),
                    })
                    .collect();
                self.multipart
                    .complete_multipart(&path, &state.id, parts)
                    .await
                    .map_err(io_error)
            };
            match finished.await {
                Ok(_) => {}
                Err(e) => match self.store.head(&path).await {
                    Ok(_) => {}
                    Err(_) => return Err(e),
                },
            }
            self.remove_tails(key, index + 1).await;
            Ok(())
        })
    }

    /// Aborts the multipart upload (S3 drops its parts) and removes the tail.
    fn discard_part<'a>(
        &'a self,
        key: &'a StorageKey,
        state: &'a PartState,
    ) -> BoxFuture<'a, std::io::Result<()>> {
        Box::pin(async move {
            let state = MultipartState::decode(state)?;
            match self
                .multipart
                .abort_multipart(&self.path(key), &state.id)
                .await
            {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(io_error(e)),
            }
            self.remove_tails(key, state.parts.len() + 1).await;
            Ok(())
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

/// A resumable upload's note: the multipart upload's id and the ids of its parts sent, a line
/// each (neither holds a line break).
struct MultipartState {
    id: String,
    parts: Vec<String>,
}

impl MultipartState {
    fn encode(&self) -> PartState {
        let mut text = self.id.clone();
        for part in &self.parts {
            text.push('\n');
            text.push_str(part);
        }
        PartState(text)
    }

    fn decode(state: &PartState) -> std::io::Result<MultipartState> {
        let mut lines = state.0.split('\n');
        match lines.next() {
            Some(id) if !id.is_empty() => Ok(MultipartState {
                id: id.to_owned(),
                parts: lines.map(str::to_owned).collect(),
            }),
            _ => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "not a multipart upload's state",
            )),
        }
    }
}

fn tail_options() -> tokio::fs::OpenOptions {
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).read(true);
    #[cfg(unix)]
    options.mode(shared::FILE_MODE);
    options
}

/// Makes a directory's entries durable.
async fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all())
        .await
        .map_err(std::io::Error::other)?
}

/// Bytes appended to a resumable upload: they wait in the tail file of part `state.parts.len()`
/// until it holds [`PART_SIZE`], which is then sent as that part and the next tail begun. The
/// full tail stays until a later request resumes with the part recorded, so a crash between
/// sending and recording loses nothing (the part is sent again under its number).
struct S3Part {
    store: S3Store,
    key: StorageKey,
    state: MultipartState,
    file: tokio::fs::File,
    tail_len: u64,
}

impl S3Part {
    /// Sends the full tail as its part and opens the next one.
    async fn send_tail(&mut self) -> std::io::Result<()> {
        use tokio::io::AsyncSeekExt;
        let index = self.state.parts.len();
        self.file.flush().await?;
        self.file.sync_data().await?;
        // One part in memory at a time (5 MiB), read back from its file.
        let tail = tokio::fs::read(self.store.tail_path(&self.key, index)).await?;
        let part = self
            .store
            .multipart
            .put_part(
                &self.store.path(&self.key),
                &self.state.id,
                index,
                PutPayload::from(tail),
            )
            .await
            .map_err(io_error)?;
        self.state.parts.push(part.content_id);
        let next = self.store.tail_path(&self.key, index + 1);
        let mut file = tail_options()
            .create(true)
            .truncate(true)
            .open(next)
            .await?;
        file.seek(std::io::SeekFrom::Start(0)).await?;
        self.file = file;
        self.tail_len = 0;
        Ok(())
    }
}

impl PartWriter for S3Part {
    fn write(&mut self, mut chunk: Bytes) -> BoxFuture<'_, std::io::Result<()>> {
        Box::pin(async move {
            while !chunk.is_empty() {
                let room = usize::try_from(PART_SIZE - self.tail_len).unwrap_or(usize::MAX);
                let piece = chunk.split_to(room.min(chunk.len()));
                self.file.write_all(&piece).await?;
                self.tail_len += piece.len() as u64;
                if self.tail_len == PART_SIZE {
                    self.send_tail().await?;
                }
            }
            Ok(())
        })
    }

    fn save(mut self: Box<Self>) -> BoxFuture<'static, std::io::Result<Saved>> {
        Box::pin(async move {
            self.file.flush().await?;
            self.file.sync_data().await?;
            sync_dir(&self.store.tails).await?;
            Ok(Saved {
                offset: self.state.parts.len() as u64 * PART_SIZE + self.tail_len,
                state: self.state.encode(),
            })
        })
    }
}

/// An object whose size and version were read, and perhaps its first bytes; the rest is
/// fetched when a range is selected, and then streams as the response delivers it (reqwest's
/// chunks: memory is bounded by the connection's buffers, not the object).
enum S3Object {
    Opened {
        store: Arc<dyn ObjectStore>,
        path: ObjectPath,
        e_tag: Option<String>,
        version: Option<String>,
        /// The object's first bytes, read with the open (the same version's).
        head: Bytes,
    },
    Get(BoxStream<'static, std::io::Result<Bytes>>),
}

impl OpenFile for S3Object {
    fn select(self: Pin<&mut Self>, range: ByteRange, _chunk: usize) {
        let this = self.get_mut();
        let S3Object::Opened {
            store,
            path,
            e_tag,
            version,
            head,
        } = std::mem::replace(this, S3Object::Get(futures_util::stream::empty().boxed()))
        else {
            return;
        };
        if range.is_empty() {
            return;
        }
        // What the open already read: no request for it.
        let held = head.len() as u64;
        let first = (range.start < held)
            .then(|| head.slice(range.start as usize..range.end.min(held) as usize));
        let rest = range.start.max(held)..range.end;
        let first = futures_util::stream::iter(first.map(Ok));
        if rest.is_empty() {
            *this = S3Object::Get(first.boxed());
            return;
        }
        let options = GetOptions {
            range: Some(GetRange::Bounded(rest)),
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
        *this = S3Object::Get(first.chain(get.flatten_stream()).boxed());
    }
}

impl Stream for S3Object {
    type Item = std::io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.get_mut() {
            S3Object::Get(body) => body.poll_next_unpin(cx),
            // No range selected: nothing (which the caller's length check makes an error).
            S3Object::Opened { .. } => Poll::Ready(None),
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
