//! What the servers write is private to the service's user whatever the umask: directories
//! 0700, files 0600, the audit file 0640. Its own test binary (its own process), as the umask
//! is process-wide and this test sets the most permissive one.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use burnlink_tests::{ALICE, sample_bytes, stored_files};

unsafe extern "C" {
    /// POSIX `umask(2)`; `mode_t` is `u32` on Linux.
    fn umask(mask: u32) -> u32;
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn data_is_private_even_with_a_permissive_umask() {
    // SAFETY: umask only swaps the process's file creation mask; nothing else runs in this
    // test binary.
    unsafe { umask(0) };
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("fresh/data");
    // A data dir that does not exist yet, with its default SQLite database.
    let app = burnlink_tests::start({
        let mut config = burnlink_tests::test_config(&data);
        config.database_url = None; // the default: sqlite in the data dir
        config
    })
    .await;
    let alice = app.login(ALICE).await;
    let file = alice.upload_ok("report.txt", sample_bytes(1000)).await;
    let url = alice.link_url(&file.id).await;
    assert_eq!(app.anon.get(&url).send().await.unwrap().status(), 200);

    for dir in [
        root.path().join("fresh"),
        data.clone(),
        data.join("files"),
        data.join("keys"),
        data.join("audit"),
    ] {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    }
    let stored = app.only_stored_file();
    assert_eq!(mode(&data.join("files").join(&stored)), 0o600, "upload");
    for db in ["app.db", "app.db-wal", "app.db-shm"] {
        assert_eq!(mode(&data.join(db)), 0o600, "{db}");
    }
    let audit = stored_files(&data.join("audit"));
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(mode(&data.join("audit").join(&audit[0])), 0o640, "audit");
}
