//! Modes of what the servers create in the data directory: nobody but the service's user reads
//! uploaded files, the database (password hashes, sessions) or keys, whatever the umask.
//!
//! Directories are created 0700 and files 0600; the audit file is 0640, so a log shipper in
//! the service's group can read it. A umask only ever removes bits from these, so a permissive
//! one (`umask 000`) widens nothing. Directories and files that already exist keep their
//! mode: an operator who chose group access for a second service account keeps it, but a
//! data directory others can list or change is named in the log at start
//! ([`warn_if_open`]).

use std::path::Path;

#[cfg(unix)]
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};

/// Directories the servers create.
pub const DIR_MODE: u32 = 0o700;
/// Files the servers create: uploads, the SQLite database (and, as SQLite gives them the
/// database's mode, its WAL and shared-memory files). `shared`'s, which the file store and
/// key files use too.
pub use shared::FILE_MODE;
/// The audit file: readable by the service's group.
pub const AUDIT_MODE: u32 = 0o640;

/// `mkdir -p` with [`DIR_MODE`] for every directory it creates.
pub fn create_dir_all(path: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    builder.mode(DIR_MODE);
    builder.create(path)
}

/// Group and other bits that let someone list (read) or change (write) a directory. Execute
/// alone (`0710`) only lets them reach a path they already know, such as a log shipper in the
/// service's group reaching `audit/`.
const OPEN_BITS: u32 = 0o066;

/// Creates the data directory `dir` (and its missing parents) [`DIR_MODE`], as every command
/// that may be the first to use it must, then [`warn_if_open`].
pub fn create_data_dir(dir: &Path) -> std::io::Result<()> {
    create_dir_all(dir)?;
    warn_if_open(dir);
    Ok(())
}

/// Logs a warning naming the data directory `dir`, its mode and the fix when its group or
/// others can list or change it: it holds the uploads, the database and the signing keys.
/// Nothing when it is private or does not exist.
pub fn warn_if_open(dir: &Path) {
    if let Some(mode) = open_mode(dir) {
        tracing::warn!(
            path = %dir.display(),
            mode = %format_args!("{mode:04o}"),
            "the data directory {} is {mode:04o}: its group or others can list or change it \
             (uploads, database, keys); run `chmod 700 {}`",
            dir.display(),
            dir.display(),
        );
    }
}

/// The permission bits of directory `dir` when they give group or others [`OPEN_BITS`].
fn open_mode(dir: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir).ok()?.permissions().mode() & 0o777;
        (mode & OPEN_BITS != 0).then_some(mode)
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        None
    }
}

/// Options that create a file with `mode` (and open it for writing).
pub fn create_options(mode: u32) -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    #[cfg(unix)]
    options.mode(mode);
    #[cfg(not(unix))]
    let _ = mode;
    options
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn created_directories_and_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        create_dir_all(&nested).unwrap();
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert_eq!(mode(&nested), 0o700);
        create_dir_all(&nested).unwrap();
        let file = nested.join("f");
        create_options(FILE_MODE)
            .create_new(true)
            .open(&file)
            .unwrap();
        assert_eq!(mode(&file) & !FILE_MODE, 0);
    }

    #[test]
    fn a_directory_others_can_list_or_change_is_open() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        assert_eq!(open_mode(&data), None, "missing");
        create_data_dir(&data).unwrap();
        assert_eq!(mode(&data), DIR_MODE);
        for (bits, open) in [
            (0o700, false),
            (0o710, false),
            (0o701, false),
            (0o750, true),
            (0o705, true),
            (0o730, true),
            (0o755, true),
        ] {
            std::fs::set_permissions(&data, std::fs::Permissions::from_mode(bits)).unwrap();
            assert_eq!(open_mode(&data), open.then_some(bits), "{bits:o}");
        }
    }
}
