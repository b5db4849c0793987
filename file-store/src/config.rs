//! `--file-store` and the S3 settings, the same flag group on both servers.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::{ClientOptions, RetryConfig};

use crate::local::LocalStore;
use crate::s3::S3Store;
use crate::store::{FileStore, Files};

/// Where files live, and how to reach an S3-compatible store. The AWS variables are the
/// standard ones, so a deployment's existing environment works unchanged.
#[derive(clap::Args, Clone)]
pub struct FileStoreArgs {
    /// Where uploaded files live: `local` (`<data dir>/files`) or `s3://bucket/prefix`.
    #[arg(long = "file-store", env = "FILE_STORE", default_value = "local")]
    pub file_store: String,
    /// S3 endpoint, for S3-compatible servers (default: AWS for the region).
    #[arg(long = "aws-endpoint-url", env = "AWS_ENDPOINT_URL")]
    pub aws_endpoint_url: Option<String>,
    /// S3 access key id (default: the instance's or container's credentials).
    #[arg(long = "aws-access-key-id", env = "AWS_ACCESS_KEY_ID")]
    pub aws_access_key_id: Option<String>,
    /// S3 secret access key (never printed).
    #[arg(
        long = "aws-secret-access-key",
        env = "AWS_SECRET_ACCESS_KEY",
        hide_env_values = true
    )]
    pub aws_secret_access_key: Option<String>,
    /// S3 region.
    #[arg(long = "aws-region", env = "AWS_REGION")]
    pub aws_region: Option<String>,
    /// Address buckets as `endpoint/bucket` rather than `bucket.endpoint` (most
    /// S3-compatible servers need this).
    #[arg(long = "s3-path-style", env = "S3_PATH_STYLE")]
    pub s3_path_style: bool,
    /// Local directory: how many small files (those a download's first read takes whole,
    /// `--read-buffer-kib`) to keep in memory, so that downloading one again costs one `statx`
    /// instead of an open, a stat, a read and a close. 0: none. Never a replaced file's bytes:
    /// see `--open-file-cache-secs`.
    #[arg(
        long = "open-file-cache",
        env = "OPEN_FILE_CACHE",
        default_value_t = 1024
    )]
    pub open_file_cache: usize,
    /// Local directory: seconds a cached file is served without checking the directory.
    /// 0 (the default): checked before every download (inode, size and modification time),
    /// so a file replaced or deleted by any process is never served from the cache. N: a file
    /// replaced or deleted by another process (an app server elsewhere) may be served whole in
    /// its previous version for up to N seconds.
    #[arg(
        long = "open-file-cache-secs",
        env = "OPEN_FILE_CACHE_SECS",
        default_value_t = 0
    )]
    pub open_file_cache_secs: u64,
}

/// The local directory, as with no flags.
impl Default for FileStoreArgs {
    fn default() -> FileStoreArgs {
        FileStoreArgs {
            file_store: "local".into(),
            aws_endpoint_url: None,
            aws_access_key_id: None,
            aws_secret_access_key: None,
            aws_region: None,
            s3_path_style: false,
            open_file_cache: 1024,
            open_file_cache_secs: 0,
        }
    }
}

impl std::fmt::Debug for FileStoreArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStoreArgs")
            .field("file_store", &self.file_store)
            .field("aws_endpoint_url", &self.aws_endpoint_url)
            .field("aws_access_key_id", &self.aws_access_key_id)
            .field(
                "aws_secret_access_key",
                &self.aws_secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("aws_region", &self.aws_region)
            .field("s3_path_style", &self.s3_path_style)
            .field("open_file_cache", &self.open_file_cache)
            .field("open_file_cache_secs", &self.open_file_cache_secs)
            .finish()
    }
}

/// A store setting that cannot be used; names the setting.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {reason}")]
pub struct SettingError {
    pub setting: &'static str,
    pub reason: String,
}

fn bad(setting: &'static str, reason: impl std::fmt::Display) -> SettingError {
    SettingError {
        setting,
        reason: reason.to_string(),
    }
}

const FILE_STORE: &str = "--file-store (FILE_STORE)";
const ENDPOINT: &str = "--aws-endpoint-url (AWS_ENDPOINT_URL)";

/// What `--file-store` names: one variant per backend. Adding a backend is its file, a
/// variant here with its [`Location::parse`] rule, and its arm in [`FileStoreArgs::build`];
/// no code outside this crate lists the variants (`non_exhaustive`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Location {
    Local,
    S3 { bucket: String, prefix: String },
}

impl Location {
    pub fn parse(value: &str) -> Result<Location, SettingError> {
        if value == "local" {
            return Ok(Location::Local);
        }
        let Some(rest) = value.strip_prefix("s3://") else {
            return Err(bad(
                FILE_STORE,
                format!("{value:?} is neither `local` nor `s3://bucket/prefix`"),
            ));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !bucket_ok {
            return Err(bad(FILE_STORE, format!("{bucket:?} is not a bucket name")));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|p| p == "." || p == "..") || prefix.contains("//") {
            return Err(bad(FILE_STORE, format!("{prefix:?} is not a key prefix")));
        }
        Ok(Location::S3 {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }
}

impl FileStoreArgs {
    /// The configured store (not yet contacted: see [`FileStoreArgs::open`]).
    pub fn build(&self, local_dir: PathBuf) -> Result<Files, SettingError> {
        match Location::parse(&self.file_store)? {
            Location::Local => Ok(Files::new(LocalStore::new(local_dir).with_open_file_cache(
                self.open_file_cache,
                Duration::from_secs(self.open_file_cache_secs),
            ))),
            Location::S3 { bucket, prefix } => {
                let mut builder = AmazonS3Builder::new()
                    .with_bucket_name(&bucket)
                    .with_virtual_hosted_style_request(!self.s3_path_style)
                    // A store that does not answer must fail start-up and downloads quickly,
                    // not after minutes of retries.
                    .with_retry(RetryConfig {
                        max_retries: 2,
                        retry_timeout: Duration::from_secs(10),
                        ..RetryConfig::default()
                    })
                    .with_client_options(
                        ClientOptions::new()
                            .with_connect_timeout(Duration::from_secs(5))
                            .with_allow_http(true),
                    );
                if let Some(endpoint) = &self.aws_endpoint_url {
                    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                        return Err(bad(ENDPOINT, "must be an http:// or https:// URL"));
                    }
                    builder = builder.with_endpoint(endpoint);
                }
                if let Some(id) = &self.aws_access_key_id {
                    builder = builder.with_access_key_id(id);
                }
                if let Some(secret) = &self.aws_secret_access_key {
                    builder = builder.with_secret_access_key(secret);
                }
                builder = builder.with_region(self.aws_region.as_deref().unwrap_or("us-east-1"));
                let store = builder.build().map_err(|e| bad(FILE_STORE, e))?;
                Ok(Files::new(S3Store::new(
                    Arc::new(store),
                    bucket,
                    prefix,
                    local_dir,
                )))
            }
        }
    }

    /// The configured store, checked: a directory that is not one, a missing bucket, bad
    /// credentials or an unreachable endpoint stop start-up with the setting's name.
    pub async fn open(&self, local_dir: PathBuf) -> Result<Files, SettingError> {
        let files = self.build(local_dir)?;
        files.check().await.map_err(|e| {
            bad(
                FILE_STORE,
                format!("{} cannot be used: {e}", files.describe()),
            )
        })?;
        Ok(files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_or_name_the_setting() {
        assert_eq!(Location::parse("local").unwrap(), Location::Local);
        assert_eq!(
            Location::parse(&FileStoreArgs::default().file_store).unwrap(),
            Location::Local
        );
        assert_eq!(
            Location::parse("s3://burnlink-files/prod/").unwrap(),
            Location::S3 {
                bucket: "burnlink-files".into(),
                prefix: "prod".into()
            }
        );
        assert_eq!(
            Location::parse("s3://files").unwrap(),
            Location::S3 {
                bucket: "files".into(),
                prefix: String::new()
            }
        );
        for bad in [
            "",
            "s3://",
            "s3://A_B/x",
            "gs://bucket",
            "s3://bucket/../x",
            "/srv/files",
        ] {
            let e = Location::parse(bad).unwrap_err();
            assert!(
                e.to_string().starts_with("--file-store (FILE_STORE)"),
                "{bad}: {e}"
            );
        }
    }

    /// A local directory not made yet is fine (the app server makes it); a file in its place
    /// stops start-up with the setting's name.
    #[tokio::test]
    async fn a_local_store_that_is_not_a_directory_stops_start_up() {
        let dir = tempfile::tempdir().unwrap();
        let files = dir.path().join("files");
        let args = FileStoreArgs::default();
        args.open(files.clone()).await.expect("not made yet");
        std::fs::create_dir(&files).unwrap();
        args.open(files.clone()).await.expect("a directory");
        std::fs::remove_dir(&files).unwrap();
        std::fs::write(&files, b"x").unwrap();
        let e = args.open(files).await.unwrap_err().to_string();
        assert!(e.starts_with("--file-store (FILE_STORE)"), "{e}");
        assert!(e.contains("not a directory"), "{e}");
    }

    #[test]
    fn the_secret_is_never_printed() {
        let args = FileStoreArgs {
            aws_secret_access_key: Some("very-secret".into()),
            ..FileStoreArgs::default()
        };
        assert!(!format!("{args:?}").contains("very-secret"));
    }
}
