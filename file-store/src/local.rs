//! The local directory: `<data dir>/files/<key>`. Opening is the download fast path: on
//! Linux a cached file is opened, stat'ed and its head read on the async worker with calls that
//! fail rather than wait (no blocking-pool hop); anything else takes one hop. Reads then grow
//! for a fast client and stay small for a slow one ([`Pace`]). A small file read whole at open
//! is closed at once and, with `--open-file-cache`, kept in memory for the next download
//! (`cache.rs`: what keeps it from ever serving another version).

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

mod cache;

use cache::{Identity, Lookup, OpenFileCache};

/// Uploads are written to `<root>/.tmp-<random>` and renamed to their key when whole.
const TEMP_PREFIX: &str = ".tmp-";
/// A resumable upload's bytes so far are `<root>/.part-<key>`, renamed to `<key>` when whole.
const PART_PREFIX: &str = ".part-";

/// Files in one directory, by storage key.
#[derive(Clone)]
pub struct LocalStore {
    root: Arc<Path>,
    /// Small files' bytes (`--open-file-cache`; see the `cache` module for what keeps them
    /// current).
    cache: Option<Arc<OpenFileCache>>,
}

impl std::fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStore")
            .field("root", &self.root)
            .field("open_file_cache", &self.cache.is_some())
            .finish()
    }
}

impl LocalStore {
    /// The directory, with no open-file cache.
    pub fn new(root: impl Into<PathBuf>) -> LocalStore {
        LocalStore {
            root: Arc::from(root.into()),
            cache: None,
        }
    }

    /// Keeps the bytes of up to `entries` small files (those an open reads whole), each
    /// checked against the directory with one `statx` before it is served again, or trusted
    /// for `trust` after a check when that is not zero (`--open-file-cache`,
    /// `--open-file-cache-secs`). `entries` 0: no cache.
    pub fn with_open_file_cache(mut self, entries: usize, trust: Duration) -> LocalStore {
        self.cache = (entries > 0).then(|| Arc::new(OpenFileCache::new(entries, trust)));
        self
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
        if let Some(cache) = &self.cache {
            match cache.lookup(key.as_str(), || identity_now(&self.root, key)) {
                Lookup::Hit(entry) => {
                    let stored = StoredFile::in_memory(entry.version, entry.bytes);
                    return Opening::now(Ok(Some(stored)));
                }
                Lookup::Gone => return Opening::now(Ok(None)),
                Lookup::Miss => {}
            }
        }
        let path = self.root.join(key.as_str());
        #[cfg(target_os = "linux")]
        if let Some(opened) = open_without_waiting(&path, head) {
            return Opening::now(Ok(Some(opened.into_stored(self.cache.as_deref(), key))));
        }
        // Allocated here, on the worker thread that frees it, not in a blocking thread's arena.
        let buf = BytesMut::with_capacity(head);
        let (cache, key) = (self.cache.clone(), key.clone());
        Opening::in_pool(move || {
            let opened = open_blocking(&path, head, buf)?;
            Ok(opened.map(|opened| opened.into_stored(cache.as_deref(), &key)))
        })
    }

    fn create<'a>(&'a self, key: &'a StorageKey) -> BoxFuture<'a, std::io::Result<Upload>> {
        Box::pin(async move {
            // A new file under `key` drops whatever the cache held for it, when it is in place.
            let forget = self.cache.clone().map(|cache| (cache, key.clone()));
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
                forget,
            }))
        })
    }

    fn delete<'a>(&'a self, key: &'a StorageKey) -> BoxFuture<'a, std::io::Result<()>> {
        Box::pin(async move {
            let removed = tokio::fs::remove_file(self.root.join(key.as_str())).await;
            if let Some(cache) = &self.cache {
                cache.forget(key.as_str());
            }
            match removed {
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
    /// The open-file cache and the key, whose entry goes once the file is in place.
    forget: Option<(Arc<OpenFileCache>, StorageKey)>,
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
                if let Some((cache, key)) = &self.forget {
                    cache.forget(key.as_str());
                }
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

/// An open local file: what identifies its version, and the bytes of its head already read.
struct Opened {
    identity: Identity,
    file: std::fs::File,
    /// The file's first bytes, read in the same hop as the open when asked (see
    /// [`LocalStore::open`]).
    buf: BytesMut,
}

impl Opened {
    /// Behind the seam. A file read whole by the open is closed now, its bytes kept in
    /// `cache` when there is one, and served from memory (nothing boxed); a larger one is
    /// boxed, the one allocation of its download here.
    fn into_stored(self, cache: Option<&OpenFileCache>, key: &StorageKey) -> StoredFile {
        let Opened {
            identity,
            file,
            buf,
        } = self;
        let version = version(identity);
        if buf.len() as u64 == identity.size {
            let bytes = buf.freeze();
            if let Some(cache) = cache {
                cache.insert(key.as_str(), identity, version, bytes.clone());
            }
            return StoredFile::in_memory(version, bytes);
        }
        StoredFile::new(identity.size, version, LocalFile::Open(file, buf))
    }
}

/// The version of a local file: inode, size and modification time to the nanosecond, so a
/// file rewritten in place or replaced by a rename is another version.
fn version(identity: Identity) -> FileVersion {
    FileVersion::of_parts(
        &[
            &identity.ino.to_le_bytes(),
            &identity.size.to_le_bytes(),
            &identity.mtime.to_le_bytes(),
            &u64::from(identity.mtime_nsec).to_le_bytes(),
        ],
        identity.mtime,
    )
}

#[cfg(unix)]
fn identity_of(meta: &std::fs::Metadata) -> Identity {
    use std::os::unix::fs::MetadataExt;
    Identity {
        ino: meta.ino(),
        size: meta.len(),
        mtime: meta.mtime(),
        mtime_nsec: meta.mtime_nsec() as u32,
    }
}

#[cfg(not(unix))]
fn identity_of(meta: &std::fs::Metadata) -> Identity {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .unwrap_or_default();
    Identity {
        ino: 0,
        size: meta.len(),
        mtime: mtime.as_secs() as i64,
        mtime_nsec: mtime.subsec_nanos(),
    }
}

/// The identity of `<root>/<key>` now, for the open-file cache: one `statx` that does not
/// wait on a network file system, of a path built on the stack. `None`: no regular file.
#[cfg(target_os = "linux")]
fn identity_now(root: &Path, key: &StorageKey) -> std::io::Result<Option<Identity>> {
    use rustix::fs::{AtFlags, FileType, StatxFlags};
    use std::os::unix::ffi::OsStrExt;
    let (root, key) = (root.as_os_str().as_bytes(), key.as_str().as_bytes());
    let mut path = [0u8; 512];
    let len = root.len() + 1 + key.len();
    if len >= path.len() {
        return Err(std::io::ErrorKind::WouldBlock.into());
    }
    path[..root.len()].copy_from_slice(root);
    path[root.len()] = b'/';
    path[root.len() + 1..len].copy_from_slice(key);
    let path = std::ffi::CStr::from_bytes_with_nul(&path[..=len])
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let stat = rustix::fs::statx(
        rustix::fs::CWD,
        path,
        AtFlags::STATX_DONT_SYNC,
        StatxFlags::TYPE | StatxFlags::SIZE | StatxFlags::INO | StatxFlags::MTIME,
    )?;
    if FileType::from_raw_mode(stat.stx_mode.into()) != FileType::RegularFile {
        return Ok(None);
    }
    Ok(Some(Identity {
        ino: stat.stx_ino,
        size: stat.stx_size,
        mtime: stat.stx_mtime.tv_sec,
        mtime_nsec: stat.stx_mtime.tv_nsec,
    }))
}

#[cfg(not(target_os = "linux"))]
fn identity_now(root: &Path, key: &StorageKey) -> std::io::Result<Option<Identity>> {
    let meta = std::fs::metadata(root.join(key.as_str()))?;
    Ok(meta.is_file().then(|| identity_of(&meta)))
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
            identity: identity_of(&meta),
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
        identity: Identity {
            ino: stat.stx_ino,
            size: stat.stx_size,
            mtime: stat.stx_mtime.tv_sec,
            mtime_nsec: stat.stx_mtime.tv_nsec,
        },
        file: std::fs::File::from(fd),
        buf,
    })
}

/// What [`Opened::into_stored`] boxes for a file larger than its first read: the open file
/// until its range is selected, then its stream.
enum LocalFile {
    Open(std::fs::File, BytesMut),
    Streaming(LocalStream),
    /// Between the two (never seen by a poll), or sent.
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
        let this = self.get_mut();
        match this {
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
        assert_eq!(pooled.identity.size, 100_000);
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
                    assert_eq!(direct.identity.size, 100_000);
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

    /// The bytes of `key` through `store`, whole, with the version they were opened as.
    async fn read_all(store: &LocalStore, key: &StorageKey) -> Option<(Vec<u8>, FileVersion)> {
        let stored = store.open(key, 8192).await.unwrap()?;
        let (size, version) = (stored.size, stored.version);
        let mut stream = stored.stream(ByteRange::whole(size), 8192);
        let mut got = Vec::new();
        while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
            got.extend_from_slice(&chunk.unwrap());
        }
        Some((got, version))
    }

    /// A cached small file replaced by a rename (same size), rewritten in place or deleted
    /// behind this process's back is read afresh: never the cached bytes of another version.
    #[tokio::test]
    async fn the_open_file_cache_never_serves_a_replaced_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).with_open_file_cache(16, Duration::ZERO);
        let key = StorageKey::generate();
        let path = dir.path().join(key.as_str());
        std::fs::write(&path, [1u8; 4096]).unwrap();
        let (first, v1) = read_all(&store, &key).await.unwrap();
        assert_eq!(first, [1u8; 4096]);
        assert_eq!(store.cache.as_ref().unwrap().len(), 1, "kept");
        let (again, v) = read_all(&store, &key).await.unwrap();
        assert_eq!((again, v), (first, v1), "served again");
        // Replaced by another process: written aside, renamed over (a new inode).
        let aside = dir.path().join("aside");
        std::fs::write(&aside, [2u8; 4096]).unwrap();
        std::fs::rename(&aside, &path).unwrap();
        let (got, v2) = read_all(&store, &key).await.unwrap();
        assert_eq!(got, [2u8; 4096]);
        assert_ne!(v2, v1);
        // Rewritten in place with another length.
        std::fs::write(&path, [3u8; 100]).unwrap();
        assert_eq!(read_all(&store, &key).await.unwrap().0, [3u8; 100]);
        // Deleted.
        std::fs::remove_file(&path).unwrap();
        assert!(read_all(&store, &key).await.is_none());
        // A file larger than what the open reads is not kept.
        let big = StorageKey::generate();
        std::fs::write(dir.path().join(big.as_str()), vec![4u8; 10_000]).unwrap();
        assert_eq!(read_all(&store, &big).await.unwrap().0, vec![4u8; 10_000]);
        assert_eq!(
            store.cache.as_ref().unwrap().len(),
            0,
            "neither the deleted file nor the large one"
        );
    }

    /// Trusted for a while (`--open-file-cache-secs`), an entry is served without looking at
    /// the directory, whole in the version it was read as; this process's own delete and
    /// upload drop it at once.
    #[tokio::test]
    async fn a_trusted_entry_goes_with_this_process_s_own_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).with_open_file_cache(16, Duration::from_secs(3600));
        let key = StorageKey::generate();
        let path = dir.path().join(key.as_str());
        std::fs::write(&path, b"first").unwrap();
        let (_, v1) = read_all(&store, &key).await.unwrap();
        std::fs::write(&path, b"second!").unwrap();
        let (got, v) = read_all(&store, &key).await.unwrap();
        assert_eq!((&got[..], v), (&b"first"[..], v1), "trusted: not checked");
        store.delete(&key).await.unwrap();
        assert!(
            read_all(&store, &key).await.is_none(),
            "deleted here: gone at once"
        );
        let mut upload = store.create(&key).await.unwrap();
        upload.write(Bytes::from_static(b"third")).await.unwrap();
        upload.finish().await.unwrap();
        assert_eq!(read_all(&store, &key).await.unwrap().0, b"third");
        let mut upload = store.create(&key).await.unwrap();
        upload.write(Bytes::from_static(b"fourth")).await.unwrap();
        upload.finish().await.unwrap();
        assert_eq!(read_all(&store, &key).await.unwrap().0, b"fourth");
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
