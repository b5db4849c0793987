//! Stored files: listing, streaming uploads to disk, deleting, and minting download links.
//!
//! Every query is scoped to the caller's user id, so another user's file is indistinguishable
//! from a missing one (`NotFound`).

use std::path::{Path, PathBuf};

use actix_multipart::{Field, Multipart};
use futures_util::StreamExt;
use serde::Serialize;
use shared::{DownloadName, StorageKey};
use sqlx::AnyPool;
use tokio::io::AsyncWriteExt;

use crate::error::AppError;
pub use crate::minter::Link;
use crate::sessions::{CSRF_FIELD, Session};
use crate::state::AppState;

/// A file id as it appears in URLs: 1 to 64 characters of `A-Z a-z 0-9 - _`. Anything else
/// cannot name a file, so it is `NotFound`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileId(String);

impl FileId {
    pub fn parse(s: &str) -> Result<FileId, AppError> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(FileId(s.to_owned()))
        } else {
            Err(AppError::NotFound)
        }
    }

    fn generate() -> FileId {
        FileId(shared::random_token(16))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A file as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FileInfo {
    pub id: String,
    pub name: String,
    pub size: i64,
    pub content_type: String,
    /// Unix seconds.
    pub created_at: i64,
}

type FileRow = (String, String, i64, String, i64);

fn info((id, name, size, content_type, created_at): FileRow) -> FileInfo {
    FileInfo {
        id,
        name,
        size,
        content_type,
        created_at,
    }
}

/// The user's files, newest first.
pub async fn list(db: &AnyPool, user_id: &str) -> Result<Vec<FileInfo>, AppError> {
    let rows: Vec<FileRow> = sqlx::query_as(
        "SELECT id, name, size, content_type, created_at FROM files \
         WHERE user_id = $1 ORDER BY created_us DESC",
    )
    .bind(user_id)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(info).collect())
}

/// One of the user's files with its storage key.
async fn find(
    db: &AnyPool,
    user_id: &str,
    id: &FileId,
) -> Result<(StorageKey, DownloadName), AppError> {
    let row: Option<(String, String)> =
        sqlx::query_as("SELECT storage_key, name FROM files WHERE id = $1 AND user_id = $2")
            .bind(id.as_str())
            .bind(user_id)
            .fetch_optional(db)
            .await?;
    let (key, name) = row.ok_or(AppError::NotFound)?;
    let key = StorageKey::parse(&key).map_err(|_| {
        AppError::Internal(format!("file {} has an invalid storage key", id.as_str()))
    })?;
    let name = DownloadName::parse(&name).unwrap_or_else(|_| DownloadName::sanitize(&name));
    Ok((key, name))
}

/// Deletes the row, then the stored file (a file left behind is harmless; a row without its
/// file would be a broken link).
pub async fn delete(state: &AppState, user_id: &str, id: &FileId) -> Result<(), AppError> {
    let (key, _) = find(&state.db, user_id, id).await?;
    sqlx::query("DELETE FROM files WHERE id = $1 AND user_id = $2")
        .bind(id.as_str())
        .bind(user_id)
        .execute(&state.db)
        .await?;
    match tokio::fs::remove_file(state.files_dir.join(key.as_str())).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(error = %e, file = id.as_str(), "stored file not removed"),
    }
    tracing::info!(file = id.as_str(), user = user_id, "file deleted");
    Ok(())
}

/// A download link for one of the user's files.
pub async fn link(state: &AppState, user_id: &str, id: &FileId) -> Result<Link, AppError> {
    let (key, name) = find(&state.db, user_id, id).await?;
    let link = state.links.mint(user_id, &key, &name)?;
    state.metrics.tokens_minted.inc();
    Ok(link)
}

/// The multipart field holding the upload.
pub const FILE_FIELD: &str = "file";
/// Longest accepted CSRF form field.
const MAX_CSRF_FIELD_BYTES: usize = 256;

/// Whether the request already proved its CSRF token (in the `X-CSRF-Token` header); if not,
/// a `csrf_token` field must come before the `file` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Csrf {
    CheckedHeader,
    ExpectField,
}

/// Streams the `file` field of a multipart body to disk and records it. The body is never held
/// in memory; it is written to `<files>/.tmp-<random>`, counted against `--max-upload-bytes`
/// as it arrives, renamed to its storage key when the whole body has been read, and only then
/// given a row. On any failure no file and no row are left: on an error the temporary file is
/// removed before the answer goes out; when the client goes away, on drop.
///
/// Exactly one `file` field: a second one is refused (400) rather than silently dropped, so a
/// client never believes two files were stored. A user at `--max-files-per-user` is refused
/// (409 `too_many_files`) before a byte is written; a full disk answers 507.
pub async fn upload(
    state: &AppState,
    session: &Session,
    multipart: Multipart,
    csrf: Csrf,
) -> Result<FileInfo, AppError> {
    check_quota(state, &session.user_id, false).await?;
    let mut temp = None;
    let result = match receive(state, session, multipart, csrf, &mut temp).await {
        Ok(received) => commit(state, &session.user_id, received, &mut temp).await,
        Err(e) => Err(e),
    };
    if let Some(guard) = temp.take() {
        guard.remove_now().await;
    }
    result
}

/// `TooManyFiles` when the user would keep more than `--max-files-per-user` files with the new
/// one (whose row is already counted when `inserted`).
async fn check_quota(state: &AppState, user_id: &str, inserted: bool) -> Result<(), AppError> {
    let max = state.max_files_per_user;
    if max == 0 {
        return Ok(());
    }
    let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM files WHERE user_id = $1")
        .bind(user_id)
        .fetch_one(&state.db)
        .await?;
    if u64::try_from(count).unwrap_or(0) + u64::from(!inserted) > max {
        return Err(AppError::TooManyFiles(max));
    }
    Ok(())
}

/// A file read to its end into a temporary file, not yet recorded.
struct Received {
    name: DownloadName,
    content_type: String,
    size: u64,
}

/// Reads the whole multipart body; the one `file` field goes to a temporary file whose guard
/// is left in `temp`.
async fn receive(
    state: &AppState,
    session: &Session,
    mut multipart: Multipart,
    mut csrf: Csrf,
    temp: &mut Option<RemoveOnDrop>,
) -> Result<Received, AppError> {
    let mut other_bytes: u64 = 0;
    let mut received = None;
    while let Some(field) = multipart.next().await {
        let mut field = field.map_err(malformed)?;
        match field.name() {
            Some(FILE_FIELD) => {
                if csrf != Csrf::CheckedHeader {
                    return Err(AppError::Csrf);
                }
                if received.is_some() {
                    return Err(AppError::BadRequest(format!(
                        "one file per upload: the body has more than one {FILE_FIELD:?} field"
                    )));
                }
                received = Some(write_temp(state, field, temp).await?);
            }
            Some(CSRF_FIELD) => {
                let value = read_small(&mut field, MAX_CSRF_FIELD_BYTES).await?;
                session.check_csrf(Some(&value))?;
                if csrf == Csrf::ExpectField {
                    csrf = Csrf::CheckedHeader;
                }
            }
            _ => {
                // Other fields are skipped, but still count against the limit.
                while let Some(chunk) = field.next().await {
                    other_bytes += chunk.map_err(malformed)?.len() as u64;
                    if other_bytes > state.max_upload_bytes {
                        return Err(AppError::TooLarge(state.max_upload_bytes));
                    }
                }
            }
        }
    }
    if csrf != Csrf::CheckedHeader {
        return Err(AppError::Csrf);
    }
    received.ok_or_else(|| {
        AppError::BadRequest(format!("the multipart body has no {FILE_FIELD:?} field"))
    })
}

fn malformed(e: actix_multipart::MultipartError) -> AppError {
    match e {
        actix_multipart::MultipartError::Payload(e) if server_kit::body_timeout::is_timeout(&e) => {
            AppError::BodyTimeout
        }
        e => AppError::BadRequest(format!("malformed multipart body: {e}")),
    }
}

async fn read_small(field: &mut Field, max: usize) -> Result<String, AppError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.next().await {
        let chunk = chunk.map_err(malformed)?;
        if bytes.len() + chunk.len() > max {
            return Err(AppError::Csrf);
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes).map_err(|_| AppError::Csrf)
}

async fn write_temp(
    state: &AppState,
    field: Field,
    temp: &mut Option<RemoveOnDrop>,
) -> Result<Received, AppError> {
    let raw_name = field
        .content_disposition()
        .and_then(|cd| cd.get_filename())
        .unwrap_or("")
        .to_owned();
    let name = DownloadName::sanitize(&raw_name);
    let content_type = mime_guess::from_path(name.as_str())
        .first_or_octet_stream()
        .to_string();
    let path = state
        .files_dir
        .join(format!(".tmp-{}", shared::random_token(16)));
    let guard = temp.insert(RemoveOnDrop::new(path));
    let size = write_field(guard.path(), field, state.max_upload_bytes).await?;
    Ok(Received {
        name,
        content_type,
        size,
    })
}

/// Moves the temporary file to its storage key and records it; the guard follows the file, so
/// a failed insert leaves nothing.
async fn commit(
    state: &AppState,
    user_id: &str,
    received: Received,
    temp: &mut Option<RemoveOnDrop>,
) -> Result<FileInfo, AppError> {
    let Received {
        name,
        content_type,
        size,
    } = received;
    let guard = temp
        .as_mut()
        .ok_or_else(|| AppError::Internal("an upload without its temporary file".into()))?;
    let key = StorageKey::generate();
    let final_path = state.files_dir.join(key.as_str());
    tokio::fs::rename(guard.path(), &final_path)
        .await
        .map_err(storage_error)?;
    guard.set_path(final_path);

    let id = FileId::generate();
    let created_at = crate::now();
    let size = i64::try_from(size).map_err(|_| AppError::TooLarge(state.max_upload_bytes))?;
    sqlx::query(
        "INSERT INTO files \
         (id, user_id, name, storage_key, size, content_type, created_at, created_us) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(id.as_str())
    .bind(user_id)
    .bind(name.as_str())
    .bind(key.as_str())
    .bind(size)
    .bind(&content_type)
    .bind(created_at)
    .bind(crate::now_micros())
    .execute(&state.db)
    .await?;
    // Concurrent uploads may all have passed the first check: the one that went over removes
    // its own row (and, through the guard, its file).
    if let Err(e) = check_quota(state, user_id, true).await {
        sqlx::query("DELETE FROM files WHERE id = $1")
            .bind(id.as_str())
            .execute(&state.db)
            .await?;
        return Err(e);
    }
    if let Some(guard) = temp.as_mut() {
        guard.keep();
    }
    tracing::info!(file = id.as_str(), user = user_id, size, "file uploaded");
    Ok(FileInfo {
        id: id.0,
        name: name.as_str().to_owned(),
        size,
        content_type,
        created_at,
    })
}

/// A full disk or exhausted quota is `InsufficientStorage` (507): the client can do nothing
/// about it but should know it is not their mistake nor a bug.
fn storage_error(e: std::io::Error) -> AppError {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded | ErrorKind::FileTooLarge => {
            tracing::error!(error = %e, "upload refused: no space left");
            AppError::InsufficientStorage
        }
        _ => AppError::Io(e),
    }
}

/// Copies the field into a new file at `path`, refusing more than `max` bytes.
async fn write_field(path: &Path, mut field: Field, max: u64) -> Result<u64, AppError> {
    // 0600: an uploaded file is its owner's alone (server_kit::permissions).
    let mut options: tokio::fs::OpenOptions =
        server_kit::permissions::create_options(server_kit::permissions::FILE_MODE).into();
    let mut file = options
        .create_new(true)
        .open(path)
        .await
        .map_err(storage_error)?;
    let mut size: u64 = 0;
    while let Some(chunk) = field.next().await {
        let chunk = chunk.map_err(malformed)?;
        size += chunk.len() as u64;
        if size > max {
            return Err(AppError::TooLarge(max));
        }
        file.write_all(&chunk).await.map_err(storage_error)?;
    }
    file.flush().await.map_err(storage_error)?;
    file.sync_all().await.map_err(storage_error)?;
    Ok(size)
}

/// Removes a file when dropped unless [`RemoveOnDrop::keep`] was called: covers errors and a
/// cancelled request alike.
struct RemoveOnDrop {
    path: Option<PathBuf>,
}

impl RemoveOnDrop {
    fn new(path: PathBuf) -> RemoveOnDrop {
        RemoveOnDrop { path: Some(path) }
    }

    fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(""))
    }

    fn set_path(&mut self, path: PathBuf) {
        self.path = Some(path);
    }

    fn keep(&mut self) {
        self.path = None;
    }

    /// Removes the file now, so it is gone before the response is sent.
    async fn remove_now(mut self) {
        if let Some(path) = self.path.take() {
            let _ = tokio::fs::remove_file(&path).await;
        }
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let Some(path) = self.path.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    let _ = tokio::fs::remove_file(&path).await;
                });
            }
            Err(_) => {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_ids_are_url_safe_or_not_found() {
        assert!(FileId::parse(FileId::generate().as_str()).is_ok());
        for bad in ["", "../x", "a.b", "a b", &"x".repeat(65)] {
            assert!(
                matches!(FileId::parse(bad), Err(AppError::NotFound)),
                "{bad:?}"
            );
        }
    }

    #[tokio::test]
    async fn guard_removes_unless_kept() {
        let dir = tempfile::tempdir().unwrap();
        let removed = dir.path().join("a");
        let kept = dir.path().join("b");
        std::fs::write(&removed, b"x").unwrap();
        std::fs::write(&kept, b"x").unwrap();
        drop(RemoveOnDrop::new(removed.clone()));
        let mut guard = RemoveOnDrop::new(kept.clone());
        guard.keep();
        drop(guard);
        // The removal runs on the runtime; give it a turn.
        for _ in 0..100 {
            if !removed.exists() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(!removed.exists());
        assert!(kept.exists());
    }
}
