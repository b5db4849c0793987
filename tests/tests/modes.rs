//! What the servers write is private to the service's user whatever the umask: directories
//! 0700, files 0600, the audit file 0640, whichever command is the first to make the data
//! directory; and a server started on a data directory others can list says so. Its own test
//! binary (its own process), as the umask is process-wide and these tests set the most
//! permissive one.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use app_server::UserCommand;
use app_server::admin::Admin;
use burnlink_tests::services::{download_config, start_download_server};
use burnlink_tests::{ALICE, sample_bytes, stored_files};

unsafe extern "C" {
    /// POSIX `umask(2)`; `mode_t` is `u32` on Linux.
    fn umask(mask: u32) -> u32;
}

/// Sets the most permissive umask: what the servers create must not depend on it.
fn permissive_umask() {
    // SAFETY: umask only swaps the process's file creation mask; every test in this binary
    // sets this same one, and nothing here relies on another.
    unsafe { umask(0) };
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn assert_private(dirs: &[&Path]) {
    for dir in dirs {
        let mode = mode(dir);
        assert_eq!(mode, 0o700, "{}: {mode:o}", dir.display());
    }
}

#[tokio::test]
async fn data_is_private_even_with_a_permissive_umask() {
    permissive_umask();
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

/// `app-server user add|passwd|del|admin`, each the first command on its data directory (the
/// last three are refused, no such user, but have made the directory by then).
#[tokio::test]
async fn user_commands_make_a_new_data_dir_private() {
    permissive_umask();
    let root = tempfile::tempdir().unwrap();
    let name = || "carol".to_owned();
    for (dir, command) in [
        (
            "add",
            UserCommand::Add {
                name: name(),
                admin: false,
            },
        ),
        ("passwd", UserCommand::Passwd { name: name() }),
        ("del", UserCommand::Del { name: name() }),
        (
            "admin",
            UserCommand::Admin {
                name: name(),
                revoke: false,
            },
        ),
    ] {
        let data = root.path().join(dir).join("data");
        let config = burnlink_tests::test_config(&data);
        let admin = Admin::connect(&config).await.expect("admin connects");
        let ran = admin.run(&command, Some("carol-password-1")).await;
        assert_eq!(ran.is_ok(), dir == "add", "{dir}: {:?}", ran.err());
        assert_private(&[&root.path().join(dir), &data]);
        assert_eq!(mode(&data.join("app.db")), 0o600, "{dir}");
    }
}

/// `app-server keys rotate|revoke`, each the first command on its data directory (revoking
/// an unknown key is refused, after the key it found none of was made).
#[tokio::test]
async fn key_commands_make_a_new_data_dir_private() {
    permissive_umask();
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("rotate/data");
    app_server::keys::rotate_configured(&burnlink_tests::test_config(&data))
        .await
        .expect("rotate");
    assert_private(&[
        &root.path().join("rotate"),
        &data,
        &data.join("keys"),
        &data.join("keys/retired"),
    ]);
    assert_eq!(mode(&data.join("keys/ed25519.pem")), 0o600);

    let data = root.path().join("revoke/data");
    let revoked =
        app_server::keys::revoke_configured(&burnlink_tests::test_config(&data), "nope").await;
    assert!(revoked.is_err(), "no such key");
    assert_private(&[&root.path().join("revoke"), &data, &data.join("keys")]);
}

/// A download server started alone on a new data directory (it makes it for its audit file).
#[tokio::test]
async fn a_download_server_makes_a_new_data_dir_private() {
    permissive_umask();
    let app = burnlink_tests::spawn().await;
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("dl/data");
    let mut config = download_config(&app, "memory");
    config.service.data_dir = data.clone();
    config.instance = Some("modes".into());
    start_download_server(config).await;
    assert_private(&[&root.path().join("dl"), &data, &data.join("audit")]);
    assert_eq!(mode(&data.join("audit/downloads-modes.jsonl")), 0o640);
}

/// An existing data directory that `mode` opens to its group or others.
fn open_data_dir(root: &Path, name: &str, mode: u32) -> std::path::PathBuf {
    let data = root.join(name);
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(mode)).unwrap();
    data
}

/// The warnings logged so far about data directory `data`.
fn warnings_about(data: &Path) -> Vec<serde_json::Value> {
    let path = data.display().to_string();
    burnlink_tests::logs::json_lines()
        .into_iter()
        .filter(|l| l["level"] == "WARN" && l["path"] == path.as_str())
        .collect()
}

#[tokio::test]
async fn servers_started_on_a_data_dir_others_can_list_say_so() {
    permissive_umask();
    burnlink_tests::logs::lines();
    let root = tempfile::tempdir().unwrap();
    let data = open_data_dir(root.path(), "app", 0o755);
    let app = burnlink_tests::start(burnlink_tests::test_config(&data)).await;
    // Once: the embedded download server leaves it to its app.
    let said = warnings_about(&data);
    assert_eq!(said.len(), 1, "{said:#?}");
    assert_eq!(said[0]["mode"], "0755");
    let message = said[0]["message"].as_str().expect("message");
    let fix = format!("chmod 700 {}", data.display());
    assert!(message.contains(&fix), "{message}");
    // Left as it is: the operator decides.
    assert_eq!(mode(&data), 0o755);

    let dl_data = open_data_dir(root.path(), "dl", 0o750);
    let mut config = download_config(&app, "memory");
    config.service.data_dir = dl_data.clone();
    start_download_server(config).await;
    let said = warnings_about(&dl_data);
    assert_eq!(said.len(), 1, "{said:#?}");
    assert_eq!(said[0]["mode"], "0750");

    // Private, or reachable by the group only to a known path: nothing said.
    for (name, bits) in [("private", 0o700), ("traversable", 0o710)] {
        let quiet = open_data_dir(root.path(), name, bits);
        burnlink_tests::start(burnlink_tests::test_config(&quiet)).await;
        assert!(warnings_about(&quiet).is_empty(), "{name}");
    }
}
