//! What crosses the file-store seam, the same for every backend: a byte range, a file's
//! version, an opened file and its stream, an upload. Backends build these from their own
//! parts ([`OpenFile`], [`UploadWriter`]) and import nothing else of this crate but
//! [`crate::store::FileStore`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use futures_util::future::BoxFuture;

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

/// One version of a stored file: the same key rewritten or replaced is another version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileVersion {
    /// A fingerprint of the version: of inode, size and modification time (to the
    /// nanosecond) for a local file; of the ETag (or version id) for an object. It is the
    /// `ETag` clients see and what a resume grant is bound to, so its value for a given file
    /// never changes between releases.
    pub tag: u64,
    /// Modification time, Unix seconds (for `Last-Modified`).
    pub modified: i64,
}

impl FileVersion {
    /// The version identified by `parts` (FNV-1a over them in order: a fingerprint, not a
    /// secret, since the file's owner decides them).
    pub fn of_parts(parts: &[&[u8]], modified: i64) -> FileVersion {
        let tag = parts
            .iter()
            .fold(shared::Fnv1a::new(), |hash, part| hash.write(part))
            .finish();
        FileVersion { tag, modified }
    }
}

/// A backend's opened file: the one allocation a download makes in the file store (none for
/// a file whose bytes are all in memory: [`StoredFile::in_memory`]), which
/// becomes its stream in place. [`OpenFile::select`] is called once, before the first poll;
/// the stream then yields the bytes of that range of the version opened, in order, and ends
/// (or fails: [`FileStream`] turns an early end into an error).
pub trait OpenFile: Stream<Item = std::io::Result<Bytes>> + Send {
    /// The bytes to stream: `range`, in reads of about `chunk` bytes while the client is slow.
    fn select(self: Pin<&mut Self>, range: ByteRange, chunk: usize);
}

/// What a stored file is: its size and its version, read in one step so that a file replaced
/// after opening is still read as the version described (or not at all).
pub struct StoredFile {
    pub size: u64,
    /// Which version of the file this is: its strong validator (ETag) and what a resume grant
    /// is bound to.
    pub version: FileVersion,
    body: Body,
}

/// Where an opened file's bytes come from.
enum Body {
    /// Already in memory, whole (a small file read by the open, or cached): nothing to box.
    /// Once a range is selected, the bytes of the range, taken by the first poll.
    Bytes(Bytes),
    /// A backend's open file.
    File(Pin<Box<dyn OpenFile>>),
}

impl StoredFile {
    /// `file`, of `size` bytes as `version`: its bytes are that version's or an error.
    pub fn new(size: u64, version: FileVersion, file: impl OpenFile + 'static) -> StoredFile {
        StoredFile {
            size,
            version,
            body: Body::File(Box::pin(file)),
        }
    }

    /// A file whose bytes are all in memory, as `version`.
    pub fn in_memory(version: FileVersion, bytes: Bytes) -> StoredFile {
        StoredFile {
            size: bytes.len() as u64,
            version,
            body: Body::Bytes(bytes),
        }
    }

    /// The bytes of `range`, in chunks of about `chunk` bytes while the client is slow (more
    /// while it keeps up, for a local file). Ends with an error, never short, when the
    /// stored bytes cannot all be read: the caller must cut the connection, not end the body.
    pub fn stream(mut self, range: ByteRange, chunk: usize) -> FileStream {
        match &mut self.body {
            // Cut in place (no reference count taken). A range past the end leaves nothing,
            // which the stream's length check turns into an error.
            Body::Bytes(bytes) if range.end <= bytes.len() as u64 => {
                use bytes::Buf as _;
                bytes.truncate(range.end as usize);
                bytes.advance(range.start as usize);
            }
            Body::Bytes(bytes) => bytes.clear(),
            Body::File(file) => file.as_mut().select(range, chunk),
        }
        FileStream {
            body: self.body,
            remaining: range.len(),
            sent: 0,
        }
    }
}

/// The body of a download. Counts what was sent so the caller can log partial transfers;
/// holds every backend to the promised length.
pub struct FileStream {
    body: Body,
    remaining: u64,
    pub sent: u64,
}

impl Stream for FileStream {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let next = match &mut this.body {
            Body::Bytes(bytes) if bytes.is_empty() => Poll::Ready(None),
            Body::Bytes(bytes) => Poll::Ready(Some(Ok(std::mem::take(bytes)))),
            Body::File(file) => file.as_mut().poll_next(cx),
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

type Opened = std::io::Result<Option<StoredFile>>;

/// What [`crate::FileStore::open`] answers, awaited by the caller: an answer known at once
/// (the local directory's no-wait path; a cache), work for the blocking pool (a filesystem),
/// or any other future (a network store). Only the last one allocates, so a local download
/// boxes nothing but its [`OpenFile`].
pub struct Opening<'a>(Answer<'a>);

enum Answer<'a> {
    Now(Option<Opened>),
    Pool(tokio::task::JoinHandle<Opened>),
    Later(BoxFuture<'a, Opened>),
}

impl<'a> Opening<'a> {
    /// Answered already.
    pub fn now(opened: Opened) -> Opening<'a> {
        Opening(Answer::Now(Some(opened)))
    }

    /// Answered by `open` on the blocking pool (one hop: two thread wake-ups).
    pub fn in_pool(open: impl FnOnce() -> Opened + Send + 'static) -> Opening<'a> {
        Opening(Answer::Pool(tokio::task::spawn_blocking(open)))
    }

    /// Answered by `open`.
    pub fn later(open: impl Future<Output = Opened> + Send + 'a) -> Opening<'a> {
        Opening(Answer::Later(Box::pin(open)))
    }
}

impl Future for Opening<'_> {
    type Output = Opened;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Opened> {
        match &mut self.0 {
            Answer::Now(opened) => Poll::Ready(
                opened
                    .take()
                    .unwrap_or_else(|| Err(std::io::Error::other("open polled after its answer"))),
            ),
            Answer::Pool(task) => Pin::new(task).poll(cx).map(|joined| {
                joined
                    .map_err(std::io::Error::other)
                    .and_then(|opened| opened)
            }),
            Answer::Later(open) => open.as_mut().poll(cx),
        }
    }
}

/// A backend's half of an [`Upload`]. Nothing it writes may be visible under the key before
/// [`UploadWriter::finish`]; dropped or aborted before that, it leaves nothing (a local
/// temporary file removed, an S3 multipart upload aborted).
pub trait UploadWriter: Send {
    fn write(&mut self, chunk: Bytes) -> BoxFuture<'_, std::io::Result<()>>;
    /// Makes the file visible under its key, whole.
    fn finish(self: Box<Self>) -> BoxFuture<'static, std::io::Result<()>>;
    /// Leaves nothing behind, now (rather than on drop).
    fn abort(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// A file being written under a new storage key. Nothing is visible under the key until
/// [`Upload::finish`]; dropped or aborted before that, nothing is left.
pub struct Upload(Box<dyn UploadWriter>);

impl Upload {
    pub fn new(writer: impl UploadWriter + 'static) -> Upload {
        Upload(Box::new(writer))
    }

    pub async fn write(&mut self, chunk: Bytes) -> std::io::Result<()> {
        self.0.write(chunk).await
    }

    /// Makes the file visible under its key, whole.
    pub async fn finish(self) -> std::io::Result<()> {
        self.0.finish().await
    }

    /// Leaves nothing behind, now (rather than on drop).
    pub async fn abort(self) {
        self.0.abort().await
    }
}

/// A backend's note on a resumable upload (tus): what it needs to carry on from the bytes
/// already received (in S3, the multipart upload's id and its parts so far). Opaque and not
/// secret: the caller keeps it beside the offset (the app server in its database) and hands it
/// back with the next request's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartState(pub String);

/// What [`Appending::save`] made durable: every byte up to `offset`, and the note to resume
/// from there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    pub offset: u64,
    pub state: PartState,
}

/// A backend's half of an [`Appending`].
pub trait PartWriter: Send {
    fn write(&mut self, chunk: Bytes) -> BoxFuture<'_, std::io::Result<()>>;
    /// Makes every byte written durable (fsync'd, or sent to the object store), and says how
    /// far that is.
    fn save(self: Box<Self>) -> BoxFuture<'static, std::io::Result<Saved>>;
}

/// Bytes being appended to a resumable upload, from the offset it was resumed at. Nothing
/// counts until [`Appending::save`]: bytes written and not saved (a crash, a drop) are cut off
/// by the next resume at the saved offset. Nothing is visible under the key before
/// [`FileStore::finish_part`](crate::FileStore::finish_part).
pub struct Appending(Box<dyn PartWriter>);

impl Appending {
    pub fn new(writer: impl PartWriter + 'static) -> Appending {
        Appending(Box::new(writer))
    }

    pub async fn write(&mut self, chunk: Bytes) -> std::io::Result<()> {
        self.0.write(chunk).await
    }

    /// Makes the bytes written durable: only then may their offset be acknowledged.
    pub async fn save(self) -> std::io::Result<Saved> {
        self.0.save().await
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    /// A backend that yields `chunks` whatever range is selected.
    struct Scripted(Vec<&'static [u8]>);

    impl Stream for Scripted {
        type Item = std::io::Result<Bytes>;

        fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            let next = (!self.0.is_empty()).then(|| Ok(Bytes::from_static(self.0.remove(0))));
            Poll::Ready(next)
        }
    }

    impl OpenFile for Scripted {
        fn select(self: Pin<&mut Self>, _: ByteRange, _: usize) {}
    }

    async fn drain(size: u64, chunks: Vec<&'static [u8]>) -> (Vec<std::io::Result<Bytes>>, u64) {
        let version = FileVersion::of_parts(&[], 0);
        let mut stream =
            StoredFile::new(size, version, Scripted(chunks)).stream(ByteRange::whole(size), 4096);
        let mut items = Vec::new();
        while let Some(item) = stream.next().await {
            items.push(item);
        }
        (items, stream.sent)
    }

    /// Whatever the backend, a body that cannot reach its promised length ends in an error,
    /// so the server cuts the connection rather than end a response that looks whole.
    #[tokio::test]
    async fn a_backend_that_ends_short_ends_the_stream_in_an_error() {
        let (items, sent) = drain(10, vec![b"12345"]).await;
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].as_ref().unwrap().as_ref(), b"12345");
        let e = items[1].as_ref().unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
        assert_eq!(sent, 5);

        let (items, sent) = drain(10, vec![b"12345", b"67890"]).await;
        assert!(items.iter().all(Result::is_ok));
        assert_eq!(sent, 10);
    }

    /// Bytes beyond the size described are not this version's: an error, and not sent.
    #[tokio::test]
    async fn a_backend_that_yields_too_much_is_cut_off() {
        let (items, sent) = drain(6, vec![b"12345", b"67890"]).await;
        assert_eq!(items.len(), 2);
        let e = items[1].as_ref().unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        assert_eq!(sent, 5);
    }

    /// A file in memory streams exactly the range selected, in one chunk, then ends; a range
    /// past its end (a size that does not hold) ends in an error, never short.
    #[tokio::test]
    async fn a_file_in_memory_streams_its_range() {
        let version = FileVersion::of_parts(&[], 0);
        let file = || StoredFile::in_memory(version, Bytes::from_static(b"0123456789"));
        assert_eq!(file().size, 10);
        let collect = |stream: FileStream| async move {
            let items: Vec<_> = stream.collect().await;
            items
        };
        let items = collect(file().stream(ByteRange { start: 2, end: 5 }, 4096)).await;
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].as_ref().unwrap().as_ref(), b"234");
        let items = collect(file().stream(ByteRange::whole(10), 4096)).await;
        assert_eq!(items[0].as_ref().unwrap().as_ref(), b"0123456789");
        let items = collect(file().stream(ByteRange { start: 8, end: 12 }, 4096)).await;
        assert_eq!(items.len(), 1);
        let e = items[0].as_ref().unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
    }

    /// ETags and resume grants outlive a release: the fingerprint of given parts is pinned
    /// (these are the values of the FNV-1a written out before the seam was a trait).
    #[test]
    fn versions_keep_their_values() {
        let local = FileVersion::of_parts(
            &[
                &12345u64.to_le_bytes(),
                &100_000u64.to_le_bytes(),
                &1_700_000_000i64.to_le_bytes(),
                &123_456_789u64.to_le_bytes(),
            ],
            1_700_000_000,
        );
        assert_eq!(local.tag, 0x4e40_56af_64f7_96d0);
        assert_eq!(local.modified, 1_700_000_000);
        let object = FileVersion::of_parts(
            &[
                b"\"9a0364b9e99bb480dd25e1f0284c8555\"",
                &5u64.to_le_bytes(),
                &1_700_000_000i64.to_le_bytes(),
            ],
            1_700_000_000,
        );
        assert_eq!(object.tag, 0x6a30_3c33_3a53_0107);
    }
}
