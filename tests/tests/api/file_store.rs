//! The file store through its trait, for every backend: the local directory always, S3 on the
//! private moto (a skip without it, which `CI=true` makes a failure). What the seam promises
//! (`file-store/src/store.rs`): an open describes one version and streams that version's bytes
//! or an error, never another's, and never ends short; an upload is invisible until finished
//! and leaves nothing when aborted or dropped.

use std::path::{Path, PathBuf};
use std::time::Duration;

use burnlink_tests::s3::{Moto, moto};
use burnlink_tests::{eventually, sample_bytes, stored_files};
use file_store::{ByteRange, FileStore, Files, LocalStore, StoredFile};
use futures_util::StreamExt;
use shared::StorageKey;

/// Where the S3 store keeps its objects in its bucket.
const PREFIX: &str = "t";

/// A backend under test, and where to look at what it holds behind its back.
struct Store {
    files: Files,
    place: Place,
}

enum Place {
    Dir(PathBuf),
    Bucket(&'static Moto, String),
}

impl Store {
    /// Everything the store holds: every entry of the directory (temporary files included),
    /// or every object under the prefix, and the multipart uploads left open in the bucket.
    fn contents(&self) -> (Vec<String>, usize) {
        match &self.place {
            Place::Dir(dir) => (stored_files(dir), 0),
            Place::Bucket(moto, bucket) => (moto.list(bucket, PREFIX), moto.open_uploads(bucket)),
        }
    }
}

/// Every backend, each in a place of its own.
fn stores(dir: &Path) -> Vec<Store> {
    let mut stores = vec![Store {
        files: Files::new(LocalStore::new(dir)),
        place: Place::Dir(dir.to_owned()),
    }];
    if let Some(moto) = moto() {
        let bucket = moto.bucket();
        stores.push(Store {
            files: moto
                .settings(&bucket, PREFIX)
                .build(dir.to_owned())
                .unwrap(),
            place: Place::Bucket(moto, bucket),
        });
    }
    stores
}

/// Stores `bytes` under `key` (replacing what was there), 64 KiB a write.
async fn put(files: &Files, key: &StorageKey, bytes: &[u8]) {
    let mut upload = files.create(key).await.unwrap();
    for chunk in bytes.chunks(64 * 1024) {
        upload.write(chunk.to_vec().into()).await.unwrap();
    }
    upload.finish().await.unwrap();
}

/// The bytes `range` of `stored` streams, up to its end or its first error.
async fn read(stored: StoredFile, range: ByteRange) -> (Vec<u8>, Option<std::io::Error>) {
    let mut stream = stored.stream(range, 16 * 1024);
    let mut got = Vec::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => got.extend_from_slice(&chunk),
            Err(e) => return (got, Some(e)),
        }
    }
    assert_eq!(stream.sent, got.len() as u64);
    (got, None)
}

/// An upload of `len` bytes begun under `key` and not finished: in S3, past the first part
/// (10 MiB), so a multipart upload is open.
async fn unfinished(files: &Files, key: &StorageKey, len: usize) -> file_store::Upload {
    let mut upload = files.create(key).await.unwrap();
    for chunk in sample_bytes(len).chunks(1 << 20) {
        upload.write(chunk.to_vec().into()).await.unwrap();
    }
    upload
}

#[tokio::test]
async fn every_store_streams_what_it_stored_whole_and_in_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = sample_bytes(300_000);
    for store in stores(dir.path()) {
        let files = &store.files;
        let key = StorageKey::generate();
        assert!(files.open(&key, 4096).await.unwrap().is_none(), "{files:?}");
        put(files, &key, &bytes).await;
        let mut versions = Vec::new();
        // With and without the head read at open (the local store's one-hop small file).
        for head in [0, 64 * 1024] {
            for range in [
                ByteRange::whole(300_000),
                ByteRange {
                    start: 1000,
                    end: 250_000,
                },
                ByteRange {
                    start: 299_999,
                    end: 300_000,
                },
            ] {
                let stored = files.open(&key, head).await.unwrap().expect("stored");
                assert_eq!(stored.size, 300_000, "{files:?}");
                versions.push(stored.version);
                let (got, error) = read(stored, range).await;
                assert!(error.is_none(), "{files:?}: {error:?}");
                assert!(
                    got == bytes[range.start as usize..range.end as usize],
                    "{files:?} {range:?}"
                );
            }
        }
        versions.dedup();
        assert_eq!(
            versions.len(),
            1,
            "{files:?}: one version, opened six times"
        );
        #[cfg(unix)]
        if let Some(dir) = files.local_dir() {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(key.as_str()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, shared::FILE_MODE);
        }
        files.delete(&key).await.unwrap();
        assert!(files.open(&key, 0).await.unwrap().is_none(), "{files:?}");
        assert_eq!(store.contents(), (vec![], 0), "{files:?}");
    }
}

/// A file replaced after an open: the open still describes the old version and yields its
/// bytes or an error (a local file keeps its inode; an S3 GET is `If-Match`), never the new
/// version's; a new open describes and yields the new version, never the old one's bytes.
#[tokio::test]
async fn a_replaced_file_is_never_read_as_the_old_versions_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let old = sample_bytes(200_000);
    let new: Vec<u8> = old.iter().rev().copied().collect();
    for store in stores(dir.path()) {
        let files = &store.files;
        let key = StorageKey::generate();
        put(files, &key, &old).await;
        let before = files.open(&key, 4096).await.unwrap().expect("stored");
        put(files, &key, &new).await;
        let after = files.open(&key, 4096).await.unwrap().expect("stored");
        assert_ne!(before.version, after.version, "{files:?}");

        let (got, error) = read(after, ByteRange::whole(200_000)).await;
        assert!(error.is_none(), "{files:?}: {error:?}");
        assert!(got == new, "{files:?}: the new open yields the new version");

        let (got, error) = read(before, ByteRange::whole(200_000)).await;
        assert!(
            old.starts_with(&got),
            "{files:?}: {} bytes that are not the old version's",
            got.len()
        );
        assert!(
            error.is_some() || got.len() == old.len(),
            "{files:?}: ended short without an error"
        );
    }
}

/// Both stores describe a file the same way: its size, and a version that changes when the
/// key is rewritten; a missing key has no metadata and deletes without error.
#[tokio::test]
async fn both_stores_give_size_and_a_version_that_changes_on_rewrite() {
    let dir = tempfile::tempdir().unwrap();
    for store in stores(dir.path()) {
        let files = store.files;
        let key = shared::StorageKey::generate();
        assert!(files.metadata(&key).await.unwrap().is_none());
        let mut versions = Vec::new();
        for bytes in [b"first".to_vec(), b"other".to_vec()] {
            let mut upload = files.create(&key).await.unwrap();
            upload.write(bytes.into()).await.unwrap();
            upload.finish().await.unwrap();
            let (size, version) = files.metadata(&key).await.unwrap().expect("stored");
            assert_eq!(size, 5, "{}", files.describe());
            versions.push(version.tag);
        }
        assert_ne!(versions[0], versions[1], "{}", files.describe());
        files.delete(&key).await.unwrap();
        assert!(files.metadata(&key).await.unwrap().is_none());
        files.delete(&key).await.unwrap();
    }
}

/// Until `finish`, nothing is under the key. Aborted, nothing is left anywhere (no temporary
/// file, no object, no open multipart upload); dropped unfinished (the client went away), the
/// same is tidied away in the background. A finished upload is then the one thing held.
#[tokio::test]
async fn an_unfinished_upload_is_invisible_and_an_aborted_or_dropped_one_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for store in stores(dir.path()) {
        let files = &store.files;
        let key = StorageKey::generate();
        let upload = unfinished(files, &key, 11 << 20).await;
        assert!(files.open(&key, 4096).await.unwrap().is_none(), "{files:?}");
        assert!(files.metadata(&key).await.unwrap().is_none(), "{files:?}");
        upload.abort().await;
        assert_eq!(store.contents(), (vec![], 0), "{files:?}");

        let upload = unfinished(files, &key, 11 << 20).await;
        assert_ne!(store.contents(), (vec![], 0), "{files:?}: under way");
        drop(upload);
        eventually(
            &format!("{files:?}: the dropped upload tidied away"),
            Duration::from_secs(20),
            || store.contents() == (vec![], 0),
        )
        .await;
        assert!(files.open(&key, 0).await.unwrap().is_none(), "{files:?}");

        put(files, &key, b"whole").await;
        assert_eq!(
            store.contents(),
            (vec![key.as_str().to_owned()], 0),
            "{files:?}"
        );
    }
}
