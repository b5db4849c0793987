//! Modes of what the servers create in the data directory: nobody but the service's user reads
//! uploaded files, the database (password hashes, sessions) or keys, whatever the umask.
//!
//! Directories are created 0700 and files 0600; the audit file is 0640, so a log shipper in
//! the service's group can read it. A umask only ever removes bits from these, so a permissive
//! one (`umask 000`) widens nothing. Directories and files that already exist keep their
//! mode: an operator who chose group access for a second service account keeps it.

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
}
