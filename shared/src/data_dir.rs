//! The data directory's layout, the other half of the contract between the servers when they
//! share one: the app writes files and keys there, the download server reads them and writes
//! its audit there.

use std::path::{Path, PathBuf};

/// Mode of every file the servers create in the data directory (uploads, keys, the SQLite
/// database): its owner's alone, whatever the umask. One constant, so the two servers and the
/// file store cannot disagree.
pub const FILE_MODE: u32 = 0o600;

/// `--data-dir`: everything under it is named here, nowhere else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir(PathBuf);

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        DataDir(root.into())
    }

    pub fn root(&self) -> &Path {
        &self.0
    }

    /// `files/`: uploaded files, each under its random storage key.
    pub fn files(&self) -> PathBuf {
        self.0.join("files")
    }

    /// `keys/`: the signing key, retired keys and the published JWK Set.
    pub fn keys(&self) -> PathBuf {
        self.0.join("keys")
    }

    /// `keys/jwks.json`: the public keys a download server verifies with.
    pub fn jwks(&self) -> PathBuf {
        self.keys().join("jwks.json")
    }

    /// `audit/`: one JSON Lines file per download server.
    pub fn audit(&self) -> PathBuf {
        self.0.join("audit")
    }

    /// `audit/downloads-<instance>.jsonl`: the audit file of one download server.
    pub fn audit_file(&self, instance: &str) -> PathBuf {
        self.audit().join(format!("downloads-{instance}.jsonl"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_is_spelled_once() {
        let dir = DataDir::new("/srv/burnlink");
        assert_eq!(dir.files(), Path::new("/srv/burnlink/files"));
        assert_eq!(dir.jwks(), Path::new("/srv/burnlink/keys/jwks.json"));
        assert_eq!(
            dir.audit_file("dl-2"),
            Path::new("/srv/burnlink/audit/downloads-dl-2.jsonl")
        );
    }
}
