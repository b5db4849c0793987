//! Where uploaded files live. One seam, [`FileStore`] (`store.rs`), with one backend per file:
//! the local directory ([`LocalStore`], `local.rs`, the default, which keeps the download fast
//! path: no-wait open, adaptive reads) and S3-compatible object storage ([`S3Store`],
//! `s3.rs`). What crosses the seam is in `types.rs`; `--file-store` picks the backend in
//! `config.rs`, the one place that names them all. The app server writes and deletes; the
//! download server opens a file for a byte range with its size and version. [`Files`] is the
//! one a server holds, whichever the backend.

mod config;
mod local;
mod s3;
mod store;
mod types;

pub use shared::StorageKey;

pub use self::config::{FileStoreArgs, Location, SettingError};
pub use self::local::LocalStore;
pub use self::s3::S3Store;
pub use self::store::{FileStore, Files};
pub use self::types::{
    Appending, ByteRange, FileStream, FileVersion, OpenFile, Opening, PartState, PartWriter, Saved,
    StoredFile, Upload, UploadWriter,
};
