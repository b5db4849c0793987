//! The local directory: `<data dir>/files/<key>`. Opening is the download fast path: on
//! Linux a cached file is opened, stat'ed and its head read on the async worker with calls that
//! fail rather than wait (no blocking-pool hop); anything else takes one hop. Reads then grow
//! for a fast client and stay small for a slow one ([`Pace`]).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use futures_util::future::BoxFuture;
use shared::StorageKey;
use tokio::io::AsyncWriteExt;

use crate::store::FileStore;
use crate::types::{
    Appending, ByteRange, FileVersion, OpenFile, Opening, PartState, PartWriter, Saved, StoredFile,
    Upload, UploadWriter,
};

/// Uploads are written to `<root>/.tmp-<random>` and renamed to their key when whole.
const TEMP_PREFIX: &str = ".tmp-";
/// A resumable upload's bytes so far are `<root>/.part-<key>`, renamed to `<key>` when whole.
const PART_PREFIX: &str = ".part-";

/// Files in one directory, by storage key.
#[derive(Clone, Debug)]
pub struct LocalStore {
    root: Arc<Path>,
}

impl LocalStore {
    pub fn new(root: impl Into<PathBuf>) -> LocalStore {
        LocalStore {
            root: Arc::from(root.into()),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn part_path(&self, key: &StorageKey) -> PathBuf {
        self.root.join(format!("{PART_PREFIX}{}", key.as_str()))
    }
}

/// The state a local part keeps: none (its file is named by its key).
fn local_state() -> PartState {
    PartState(String::new())
}

impl FileStore for LocalStore {
    /// Opens `<root>/<key>`. `None` when there is no such regular file. The key cannot name
    /// anything outside `root` ([`StorageKey`] has no separator, no dot, no NUL). Open, stat
    /// and, when `head` > 0, the read of the first `head` bytes happen together: on the worker
    /// when none of them has to wait ([`open_without_waiting`]), else in one blocking-pool hop.
    /// A small file is then sent with no further hop (each hop is two thread wake-ups, which
    /// profiling showed to be the largest cost of a small download).
    fn open<'a>(&'a self, key: &'a StorageKey, head: usize) -> Opening<'a> {
        let path = self.root.join(key.as_str());
        #[cfg(target_os = "linux")]
        if let Some(opened) = open_without_waiting(&path, head) {
            return Opening::now(Ok(Some(opened.into_stored())));
        }
        // Allocated here, on the worker thread that frees it, not in a blocking thread's arena.
        let buf = BytesMut::with_capacity(head);
        Opening::in_pool(move || Ok(open_blocking(&path, head, buf)?.map(Opened::into_stored)))
    }

    fn create<'a>(&'a self, key: &'a StorageKey) -> BoxFuture<'a, std::io::Result<Upload>> {
        Box::pin(async move {
            let temp = self
                .root
                .join(format!("{TEMP_PREFIX}{}", shared::random_token(16)));
            let mut options = tokio::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            options.mode(shared::FILE_MODE);
            let file = options.open(&temp).await?;
            Ok(Upload::new(LocalUpload {
                file: Some(file),
                temp: Some(temp),
                target: self.root.join(key.as_str()),
            }))
        })
    }

    fn delete<'a>(&'a self, key: &'a StorageKey) -> BoxFuture<'a, std::io::Result<()>> {
        Box::pin(async move {
            match tokio::fs::remove_file(self.root.join(key.as_str())).await {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                other => other,
            }
        })
    }

    /// Creates `<root>/.part-<key>`, empty, and makes its directory entry durable.
    fn start_part<'a>(&'a self, key: &'a StorageKey) -> BoxFuture<'a, std::io::Result<PartState>> {
        Box::pin(async move {
            let mut options = tokio::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            options.mode(shared::FILE_MODE);
            let file = options.open(self.part_path(key)).await?;
            file.sync_all().await?;
            sync_dir(&self.root).await?;
            Ok(local_state())
        })
    }

    /// Opens the part for appending at `offset`: bytes past it (written by a request whose
    /// offset was never recorded) are cut off first.
    fn append_part<'a>(
        &'a self,
        key: &'a StorageKey,
        _state: &'a PartState,
        offset: u64,
    ) -> BoxFuture<'a, std::io::Result<Appending>> {
        Box::pin(async move {
            let mut file = tokio::fs::OpenOptions::new()
                .write(true)
                .open(self.part_path(key))
                .await?;
            let len = file.metadata().await?.len();
            if len < offset {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("the part holds {len} bytes, {offset} were saved"),
                ));
            }
            if len > offset {
                file.set_len(offset).await?;
            }
            use tokio::io::AsyncSeekExt;
            file.seek(std::io::SeekFrom::Start(offset)).await?;
            Ok(Appending::new(LocalPart { file, offset }))
        })
    }

    /// Renames the part to its key (and makes the rename durable). A part already renamed
    /// (its key there, the part not) is no error.
    fn finish_part<'a>(
        &'a self,
        key: &'a StorageKey,
        _state: &'a PartState,
    ) -> BoxFuture<'a, std::io::Result<()>> {
        Box::pin(async move {
            let target = self.root.join(key.as_str());
            match tokio::fs::rename(self.part_path(key), &target).await {
                Ok(()) => sync_dir(&self.root).await,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    tokio::fs::metadata(&target).await.map(drop)
                }
                Err(e) => Err(e),
            }
        })
    }

    fn discard_part<'a>(
        &'a self,
        key: &'a StorageKey,
        _state: &'a PartState,
    ) -> BoxFuture<'a, std::io::Result<()>> {
        Box::pin(async move {
            match tokio::fs::remove_file(self.part_path(key)).await {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                other => other,
            }
        })
    }

    fn check(&self) -> BoxFuture<'_, std::io::Result<()>> {
        Box::pin(async move {
            match tokio::fs::metadata(&self.root).await {
                Ok(meta) if meta.is_dir() => Ok(()),
                Ok(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::NotADirectory,
                    format!("{} is not a directory", self.root.display()),
                )),
                // Not made yet: the app server creates it at start.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            }
        })
    }

    /// Removes temporary files a crash left behind. Only day-old ones: another app server
    /// sharing the directory may be writing fresh ones right now.
    fn tidy(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            const STALE: Duration = Duration::from_secs(24 * 3600);
            let Ok(mut entries) = tokio::fs::read_dir(&self.root).await else {
                return;
            };
            while let Ok(Some(entry)) = entries.next_entry().await {
                if !entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                    continue;
                }
                let stale = entry
                    .metadata()
                    .await
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > STALE);
                if stale {
                    let _ = tokio::fs::remove_file(entry.path()).await;
                }
            }
        })
    }

    fn describe(&self) -> String {
        format!("local directory {}", self.root.display())
    }

    fn local_dir(&self) -> Option<&Path> {
        Some(&self.root)
    }
}

/// An upload into `<root>/.tmp-<random>`, renamed to its key when finished; the temporary
/// file is removed when the upload is dropped or aborted first.
struct LocalUpload {
    file: Option<tokio::fs::File>,
    temp: Option<PathBuf>,
    target: PathBuf,
}

impl UploadWriter for LocalUpload {
    fn write(&mut self, chunk: Bytes) -> BoxFuture<'_, std::io::Result<()>> {
        Box::pin(async move {
            match &mut self.file {
                Some(file) => file.write_all(&chunk).await,
                None => Err(std::io::Error::other("upload already finished")),
            }
        })
    }

    fn finish(mut self: Box<Self>) -> BoxFuture<'static, std::io::Result<()>> {
        Box::pin(async move {
            if let Some(mut file) = self.file.take() {
                file.flush().await?;
                file.sync_all().await?;
            }
            if let Some(temp) = &self.temp {
                tokio::fs::rename(temp, &self.target).await?;
                self.temp = None;
            }
            Ok(())
        })
    }

    fn abort(mut self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            self.file = None;
            if let Some(temp) = self.temp.take() {
                let _ = tokio::fs::remove_file(&temp).await;
            }
        })
    }
}

impl Drop for LocalUpload {
    fn drop(&mut self) {
        let Some(temp) = self.temp.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    let _ = tokio::fs::remove_file(&temp).await;
                });
            }
            Err(_) => {
                let _ = std::fs::remove_file(&temp);
            }
        }
    }
}

/// A part being appended to; `offset` counts what it holds.
struct LocalPart {
    file: tokio::fs::File,
    offset: u64,
}

impl PartWriter for LocalPart {
    fn write(&mut self, chunk: Bytes) -> BoxFuture<'_, std::io::Result<()>> {
        Box::pin(async move {
            self.file.write_all(&chunk).await?;
            self.offset += chunk.len() as u64;
            Ok(())
        })
    }

    /// fsync: the bytes are on disk before their offset is acknowledged.
    fn save(mut self: Box<Self>) -> BoxFuture<'static, std::io::Result<Saved>> {
        Box::pin(async move {
            self.file.flush().await?;
            self.file.sync_data().await?;
            Ok(Saved {
                offset: self.offset,
                state: local_state(),
            })
        })
    }
}

/// Makes a directory's entries (a created or renamed file) durable.
async fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let dir = dir.to_owned();
        tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all())
            .await
            .map_err(std::io::Error::other)??;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// An open local file: its size and version, and the bytes of its head already read.
struct Opened {
    size: u64,
    version: FileVersion,
    file: std::fs::File,
    /// The file's first bytes, read in the same hop as the open when asked (see
    /// [`LocalStore::open`]).
    buf: BytesMut,
}

impl Opened {
    /// Boxed behind the seam: the one allocation of a download here.
    fn into_stored(self) -> StoredFile {
        StoredFile::new(
            self.size,
            self.version,
            LocalFile::Open(self.file, self.buf),
        )
    }
}

/// The version of a local file: inode, size and modification time to the nanosecond, so a
/// file rewritten in place or replaced by a rename is another version.
fn version(ino: u64, size: u64, mtime: i64, mtime_nsec: u32) -> FileVersion {
    FileVersion::of_parts(
        &[
            &ino.to_le_bytes(),
            &size.to_le_bytes(),
            &mtime.to_le_bytes(),
            &u64::from(mtime_nsec).to_le_bytes(),
        ],
        mtime,
    )
}

#[cfg(unix)]
fn version_of(meta: &std::fs::Metadata) -> FileVersion {
    use std::os::unix::fs::MetadataExt;
    version(
        meta.ino(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec() as u32,
    )
}

#[cfg(not(unix))]
fn version_of(meta: &std::fs::Metadata) -> FileVersion {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .unwrap_or_default();
    version(0, meta.len(), mtime.as_secs() as i64, mtime.subsec_nanos())
}

/// Open, stat and read `head` bytes into `buf`, blocking (on the pool). `None` when there is
/// no such regular file.
fn open_blocking(path: &Path, head: usize, mut buf: BytesMut) -> std::io::Result<Option<Opened>> {
    let opened = (|| -> std::io::Result<Option<Opened>> {
        let mut options = std::fs::OpenOptions::new();
        options.read(true);
        // As in `open_without_waiting`: a FIFO in the directory must not hold this thread.
        #[cfg(target_os = "linux")]
        std::os::unix::fs::OpenOptionsExt::custom_flags(
            &mut options,
            rustix::fs::OFlags::NONBLOCK.bits() as i32,
        );
        let file = options.open(path)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Ok(None);
        }
        if head > 0 {
            read_chunk(&file, 0, head.min(meta.len() as usize), &mut buf)?;
        }
        Ok(Some(Opened {
            size: meta.len(),
            version: version_of(&meta),
            file,
            buf,
        }))
    })();
    match opened {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        other => other,
    }
}

/// Open, stat and read with Linux calls that fail with `EAGAIN` rather than wait, so they
/// may run on the async worker: `openat2` with `RESOLVE_CACHED` (the path is in the dentry
/// cache), `statx` with `AT_STATX_DONT_SYNC` (no network round trip on NFS), `preadv2` with
/// `RWF_NOWAIT` (the bytes are in the page cache). `None` when the open or stat would wait,
/// fails for any reason, or finds no regular file: the blocking path then answers, with its
/// errors. A head that would wait is left for the stream, which reads it in the pool.
#[cfg(target_os = "linux")]
fn open_without_waiting(path: &Path, head: usize) -> Option<Opened> {
    use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, StatxFlags};
    // NONBLOCK: opening a FIFO planted in the directory must not wait for a writer (it has
    // no effect on reading regular files).
    let fd = rustix::fs::openat2(
        rustix::fs::CWD,
        path,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
        ResolveFlags::CACHED,
    )
    .ok()?;
    let stat = rustix::fs::statx(
        &fd,
        "",
        AtFlags::EMPTY_PATH | AtFlags::STATX_DONT_SYNC,
        StatxFlags::TYPE | StatxFlags::SIZE | StatxFlags::INO | StatxFlags::MTIME,
    )
    .ok()?;
    if FileType::from_raw_mode(stat.stx_mode.into()) != FileType::RegularFile {
        return None;
    }
    let mut buf = BytesMut::new();
    let want = head.min(usize::try_from(stat.stx_size).unwrap_or(usize::MAX));
    if want > 0 {
        read_cached(&fd, 0, want, &mut buf);
    }
    Some(Opened {
        size: stat.stx_size,
        version: version(
            stat.stx_ino,
            stat.stx_size,
            stat.stx_mtime.tv_sec,
            stat.stx_mtime.tv_nsec,
        ),
        file: std::fs::File::from(fd),
        buf,
    })
}

/// What [`Opened::into_stored`] boxes: the open file until its range is selected, then its
/// stream.
enum LocalFile {
    Open(std::fs::File, BytesMut),
    Streaming(LocalStream),
    /// Between the two (never seen by a poll).
    Spent,
}

impl OpenFile for LocalFile {
    fn select(self: Pin<&mut Self>, range: ByteRange, chunk: usize) {
        let this = self.get_mut();
        if let LocalFile::Open(file, buf) = std::mem::replace(this, LocalFile::Spent) {
            *this = LocalFile::Streaming(LocalStream::new(file, buf, range, chunk));
        }
    }
}

impl Stream for LocalFile {
    type Item = std::io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.get_mut() {
            LocalFile::Streaming(stream) => Pin::new(stream).poll_next(cx),
            // No range selected: nothing (which the caller's length check makes an error).
            LocalFile::Open(..) | LocalFile::Spent => Poll::Ready(None),
        }
    }
}

impl LocalStream {
    /// The bytes of `range`, read `chunk` bytes at a time while the client is slow and up to
    /// [`MAX_CHUNK`] while it keeps up.
    fn new(file: std::fs::File, mut buf: BytesMut, range: ByteRange, chunk: usize) -> LocalStream {
        // Bytes already read at open serve the start of the range.
        let head = buf.split().freeze();
        let mut first = Bytes::new();
        if (range.start as usize) < head.len() {
            let end = (range.end as usize).min(head.len());
            first = head.slice(range.start as usize..end);
        }
        let skip = first.len() as u64;
        LocalStream {
            first,
            state: ReadState::Idle(file, buf),
            pos: range.start + skip,
            remaining: range.len() - skip,
            pace: Pace::new(chunk),
        }
    }
}

/// The largest read, for a client that takes bytes as fast as we read them: a 1 GiB download
/// then costs 2,048 blocking-pool hops, not 32,768.
const MAX_CHUNK: usize = 512 * 1024;

/// How much to read next: the configured read size, or what the client took per
/// [`Pace::TARGET`] over the last [`Pace::WINDOW`] when that is more (up to [`MAX_CHUNK`]). A
/// slow client never leaves the configured size, so it holds little memory; a fast one
/// moves to large reads after [`Pace::FILL`].
struct Pace {
    base: usize,
    chunk: usize,
    window_start: Instant,
    window_sent: u64,
    /// Bytes handed out since the stream began.
    total_sent: u64,
}

impl Pace {
    const WINDOW: Duration = Duration::from_millis(50);
    const TARGET: Duration = Duration::from_millis(1);
    /// Reads grow only past this much of a stream. Every stream starts by filling the socket
    /// buffers at the speed of memory, and the slowest reader looks fast while they fill: on
    /// loopback here 1–2 MiB a window, for two windows and more when 200 streams start at
    /// once. Reads grown for that burst were held by every slow stream together (200 slow
    /// readers: 41–62 KiB of RSS per stream, against 30 KiB with reads that never grow;
    /// docs/BENCHMARKS.md). Linux lets a socket's send buffer grow to 4 MiB (`tcp_wmem`),
    /// so this is four times that; a fast client gets here in about 10 ms.
    const FILL: u64 = 16 << 20;

    fn new(base: usize) -> Pace {
        Pace {
            base,
            chunk: base,
            window_start: Instant::now(),
            window_sent: 0,
            total_sent: 0,
        }
    }

    fn sent(&mut self, n: usize) {
        self.window_sent += n as u64;
        self.total_sent += n as u64;
    }

    /// Reads above the configured size: worth keeping the buffer between them.
    fn is_fast(&self) -> bool {
        self.chunk > self.base
    }

    fn next_chunk(&mut self) -> usize {
        let elapsed = self.window_start.elapsed();
        if elapsed >= Self::WINDOW {
            let per_target =
                self.window_sent as u128 * Self::TARGET.as_nanos() / elapsed.as_nanos();
            // Whole pages, never below the configured size.
            let pages = if self.total_sent < Self::FILL {
                0
            } else {
                (per_target as usize).min(MAX_CHUNK) & !4095
            };
            self.chunk = pages.max(self.base);
            self.window_start = Instant::now();
            self.window_sent = 0;
        }
        self.chunk
    }
}

type Read = (std::fs::File, BytesMut, std::io::Result<()>);

enum ReadState {
    Idle(std::fs::File, BytesMut),
    Reading(tokio::task::JoinHandle<Read>),
    Done,
}

/// The body: positional reads straight into the buffer that is sent (one copy from the page
/// cache): on the worker with `RWF_NOWAIT` when the bytes are cached, as at open, otherwise
/// in one blocking-pool hop. The server copies each chunk into its write
/// buffer and drops it before asking for the next, so a fast client's stream reuses one
/// buffer for every read, and a slow client's keeps none between reads.
struct LocalStream {
    /// Bytes to send before reading (read at open).
    first: Bytes,
    state: ReadState,
    pos: u64,
    remaining: u64,
    pace: Pace,
}

/// Reads up to `len` bytes at `pos` into `buf` (emptied first); short only at end of file.
fn read_chunk(
    file: &std::fs::File,
    pos: u64,
    len: usize,
    buf: &mut BytesMut,
) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    buf.clear();
    buf.resize(len, 0);
    let mut filled = 0;
    while filled < len {
        match file.read_at(&mut buf[filled..], pos + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(())
}

impl Stream for LocalStream {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if !this.first.is_empty() {
            let first = std::mem::take(&mut this.first);
            this.pace.sent(first.len());
            return Poll::Ready(Some(Ok(first)));
        }
        loop {
            match std::mem::replace(&mut this.state, ReadState::Done) {
                ReadState::Done => return Poll::Ready(None),
                ReadState::Idle(..) if this.remaining == 0 => return Poll::Ready(None),
                ReadState::Idle(file, mut buf) => {
                    let len = this.remaining.min(this.pace.next_chunk() as u64) as usize;
                    let pos = this.pos;
                    // Takes back the allocation of the last chunk, which the server has
                    // copied and dropped by now; allocates only when the read size grew.
                    buf.reserve(len);
                    #[cfg(target_os = "linux")]
                    // Short: not all cached, or the end of the file, which the pool's read
                    // tells apart (it starts the read again).
                    if read_cached(&file, pos, len, &mut buf) == len {
                        return this.deliver(file, buf);
                    }
                    this.state = ReadState::Reading(tokio::task::spawn_blocking(move || {
                        let read = read_chunk(&file, pos, len, &mut buf);
                        (file, buf, read)
                    }));
                }
                ReadState::Reading(mut task) => match Pin::new(&mut task).poll(cx) {
                    Poll::Pending => {
                        this.state = ReadState::Reading(task);
                        return Poll::Pending;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(std::io::Error::other(e)))),
                    Poll::Ready(Ok((_, _, Err(e)))) => return Poll::Ready(Some(Err(e))),
                    Poll::Ready(Ok((file, buf, Ok(())))) => return this.deliver(file, buf),
                },
            }
        }
    }
}

impl LocalStream {
    /// Hands out what a read put in `buf`, and goes idle.
    fn deliver(
        &mut self,
        file: std::fs::File,
        mut buf: BytesMut,
    ) -> Poll<Option<std::io::Result<Bytes>>> {
        if buf.is_empty() {
            // The file shrank under us: the promised length cannot be met, so the connection
            // must be cut rather than end short and look whole.
            return Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "file shrank while being sent",
            ))));
        }
        let chunk = if self.pace.is_fast() {
            buf.split().freeze()
        } else {
            // A slow client keeps no buffer between reads: the chunk is its only owner and is
            // freed once the server has copied it.
            std::mem::take(&mut buf).freeze()
        };
        let n = chunk.len();
        self.pos += n as u64;
        self.remaining -= n as u64;
        self.pace.sent(n);
        self.state = ReadState::Idle(file, buf);
        Poll::Ready(Some(Ok(chunk)))
    }
}

/// Reads up to `len` bytes at `pos` into `buf` (emptied first) with `RWF_NOWAIT`, so on the
/// calling (async) thread: only what is in the page cache, none if the read would wait. The
/// bytes read.
#[cfg(target_os = "linux")]
fn read_cached(fd: impl rustix::fd::AsFd, pos: u64, len: usize, buf: &mut BytesMut) -> usize {
    buf.clear();
    buf.resize(len, 0);
    let mut slices = [std::io::IoSliceMut::new(&mut buf[..])];
    let read = rustix::io::preadv2(fd, &mut slices, pos, rustix::io::ReadWriteFlags::NOWAIT);
    buf.truncate(read.unwrap_or(0));
    buf.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A resumable part: only saved bytes count (bytes written after the last save are cut
    /// off when it resumes), nothing shows under the key before the finish, a repeated finish
    /// is no error, a discard leaves nothing.
    #[tokio::test]
    async fn a_part_resumes_at_its_saved_offset_and_shows_only_when_finished() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        let key = StorageKey::generate();
        let state = store.start_part(&key).await.unwrap();
        let mut part = store.append_part(&key, &state, 0).await.unwrap();
        part.write(Bytes::from_static(b"0123456789")).await.unwrap();
        assert_eq!(part.save().await.unwrap().offset, 10);

        // Written, never saved (a crash before the offset was recorded): cut off on resume.
        let mut lost = store.append_part(&key, &state, 10).await.unwrap();
        lost.write(Bytes::from_static(b"XXXXX")).await.unwrap();
        drop(lost);
        let mut part = store.append_part(&key, &state, 10).await.unwrap();
        part.write(Bytes::from_static(b"abc")).await.unwrap();
        assert_eq!(part.save().await.unwrap().offset, 13);
        assert!(
            !dir.path().join(key.as_str()).exists(),
            "invisible until finished"
        );
        // A part shorter than the offset asked is an error, not a hole.
        let short = store.append_part(&key, &state, 20).await;
        assert_eq!(
            short.err().map(|e| e.kind()),
            Some(std::io::ErrorKind::UnexpectedEof)
        );

        store.finish_part(&key, &state).await.unwrap();
        assert_eq!(
            std::fs::read(dir.path().join(key.as_str())).unwrap(),
            b"0123456789abc"
        );
        store.finish_part(&key, &state).await.unwrap();

        let other = StorageKey::generate();
        let state = store.start_part(&other).await.unwrap();
        store.discard_part(&other, &state).await.unwrap();
        store.discard_part(&other, &state).await.unwrap();
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [key.as_str()]);
    }

    /// [`open_blocking`] on the pool, as [`LocalStore::open`] runs it.
    async fn open_in_pool(path: PathBuf, head: usize) -> std::io::Result<Option<Opened>> {
        let buf = BytesMut::with_capacity(head);
        tokio::task::spawn_blocking(move || open_blocking(&path, head, buf))
            .await
            .unwrap()
    }

    /// Both ways of opening agree: a file with its size and first bytes, nothing for a
    /// directory or a missing name.
    #[tokio::test]
    async fn opening_with_and_without_the_pool_agree() {
        let dir = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("file"), &bytes).unwrap();
        std::fs::create_dir(dir.path().join("dir")).unwrap();

        let pooled = open_in_pool(dir.path().join("file"), 4096)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(pooled.size, 100_000);
        assert_eq!(pooled.buf[..], bytes[..4096]);
        assert!(
            open_in_pool(dir.path().join("dir"), 4096)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            open_in_pool(dir.path().join("missing"), 4096)
                .await
                .unwrap()
                .is_none()
        );
        #[cfg(target_os = "linux")]
        {
            // A FIFO with no writer is no file, and is answered at once rather than waited on.
            let fifo = dir.path().join("fifo");
            rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::RUSR).unwrap();
            let opened =
                tokio::time::timeout(Duration::from_secs(5), open_in_pool(fifo.clone(), 4096));
            assert!(opened.await.expect("not waited on").unwrap().is_none());
            assert!(open_without_waiting(&fifo, 4096).is_none());
        }

        #[cfg(target_os = "linux")]
        {
            // Just written, so cached: opened and read without the pool (where the kernel
            // has openat2 with RESOLVE_CACHED, Linux 5.12, and no seccomp filter refuses it).
            match open_without_waiting(&dir.path().join("file"), 4096) {
                Some(direct) => {
                    assert_eq!(direct.size, 100_000);
                    assert_eq!(direct.buf[..], bytes[..4096]);
                }
                None => eprintln!("skipped: this kernel cannot open without waiting"),
            }
            assert!(open_without_waiting(&dir.path().join("dir"), 4096).is_none());
            assert!(open_without_waiting(&dir.path().join("missing"), 4096).is_none());
        }

        let key = StorageKey::generate();
        std::fs::write(dir.path().join(key.as_str()), &bytes).unwrap();
        let whole = LocalStore::new(dir.path())
            .open(&key, 0)
            .await
            .unwrap()
            .unwrap();
        let mut stream = whole.stream(
            ByteRange {
                start: 10,
                end: 100_000,
            },
            4096,
        );
        let mut got = Vec::new();
        while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
            got.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(got[..], bytes[10..]);
    }

    /// Start-up tidying removes temporary files a crash left a day ago, and nothing else:
    /// not a fresh one (another app server may be writing it), not a stored file.
    #[tokio::test]
    async fn tidying_removes_only_day_old_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join(format!("{TEMP_PREFIX}old"));
        let fresh = dir.path().join(format!("{TEMP_PREFIX}fresh"));
        let stored = dir.path().join(StorageKey::generate().as_str());
        for path in [&old, &fresh, &stored] {
            std::fs::write(path, b"x").unwrap();
        }
        let two_days_ago = std::time::SystemTime::now() - Duration::from_secs(2 * 24 * 3600);
        for path in [&old, &stored] {
            std::fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(two_days_ago)
                .unwrap();
        }
        LocalStore::new(dir.path()).tidy().await;
        assert!(!old.exists());
        assert!(fresh.exists());
        assert!(stored.exists());
    }

    /// One window of `sent` bytes, then the next read's size.
    fn window(pace: &mut Pace, sent: usize) -> usize {
        pace.sent(sent);
        std::thread::sleep(Pace::WINDOW);
        pace.next_chunk()
    }

    /// A slow reader's stream starts by filling the socket buffers at memory speed: that
    /// burst must not make its reads (and the memory each one holds) grow.
    #[test]
    fn the_burst_that_fills_the_socket_buffers_does_not_grow_reads() {
        let base = 8 * 1024;
        let mut pace = Pace::new(base);
        for _ in 0..3 {
            assert_eq!(
                window(&mut pace, 4 << 20),
                base,
                "4 MiB a window, 12 in all"
            );
        }
        for _ in 0..3 {
            assert_eq!(
                window(&mut pace, 8 * 1024),
                base,
                "then the client's own pace"
            );
        }
    }

    #[test]
    fn reads_grow_for_a_fast_client_and_shrink_for_a_slow_one() {
        let base = 32 * 1024;
        let mut pace = Pace::new(base);
        assert_eq!(
            pace.next_chunk(),
            base,
            "every stream starts at the configured size"
        );
        // 100 MB in a window: a client far faster than one MAX_CHUNK per millisecond.
        assert_eq!(window(&mut pace, 100_000_000), MAX_CHUNK);
        // 16 KiB in a window: a slow client goes back to the configured size.
        assert_eq!(window(&mut pace, 16 * 1024), base);
        // In between: what the client took per millisecond, in whole pages.
        let chunk = window(&mut pace, 20_000_000);
        assert!(
            chunk > base && chunk < MAX_CHUNK && chunk.is_multiple_of(4096),
            "{chunk}"
        );
    }
}
