//! Stored files: listing, streaming uploads to disk, deleting, and minting download links.
//!
//! Every query is scoped to the caller's user id, so another user's file is indistinguishable
//! from a missing one (`NotFound`).

use actix_multipart::{Field, Multipart};
use file_store::{FileStore, Files, Upload};
use futures_util::StreamExt;
use serde::Serialize;
use shared::{DownloadName, StorageKey};
use sqlx::AnyPool;

use crate::error::AppError;
pub use crate::minter::Link;
use crate::minter::LinkMinter;
use crate::sessions::{CSRF_FIELD, Session};

/// How much one upload and one user may store, set once at start.
#[derive(Debug, Clone, Copy)]
pub struct UploadLimits {
    /// `--max-upload-bytes`.
    pub max_upload_bytes: u64,
    /// `--max-files-per-user`; 0: no limit.
    pub max_files_per_user: u64,
    /// `--upload-idle-secs`: an upload still running receives a byte at least this often.
    pub idle_secs: u64,
}

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

    pub(crate) fn generate() -> FileId {
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
    /// Set when the file arrived through one of the owner's upload links.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received: Option<ReceivedFrom>,
}

/// Where a file that arrived through an upload link came from.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ReceivedFrom {
    /// The upload link's id.
    pub link_id: String,
    /// The uploader's address, as the app server saw it.
    pub client: Option<String>,
    /// The uploader's `User-Agent`.
    pub user_agent: Option<String>,
}

type FileRow = (
    String,
    String,
    i64,
    String,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// The columns a [`FileRow`] reads, in order.
const FILE_COLUMNS: &str =
    "id, name, size, content_type, created_at, received_via, received_from, received_agent";

fn info(row: FileRow) -> FileInfo {
    let (id, name, size, content_type, created_at, via, client, user_agent) = row;
    FileInfo {
        id,
        name,
        size,
        content_type,
        created_at,
        received: via.map(|link_id| ReceivedFrom {
            link_id,
            client,
            user_agent,
        }),
    }
}

/// The user's files, newest first.
pub async fn list(db: &AnyPool, user_id: &str) -> Result<Vec<FileInfo>, AppError> {
    let rows: Vec<FileRow> = sqlx::query_as(&format!(
        "SELECT {FILE_COLUMNS} FROM files WHERE user_id = $1 ORDER BY created_us DESC"
    ))
    .bind(user_id)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(info).collect())
}

/// The user's files that arrived through their upload links, newest first.
pub(crate) async fn received(db: &AnyPool, user_id: &str) -> Result<Vec<FileInfo>, AppError> {
    let rows: Vec<FileRow> = sqlx::query_as(&format!(
        "SELECT {FILE_COLUMNS} FROM files WHERE user_id = $1 AND received_via IS NOT NULL \
         ORDER BY created_us DESC"
    ))
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
pub async fn delete(
    db: &AnyPool,
    files: &Files,
    user_id: &str,
    id: &FileId,
) -> Result<(), AppError> {
    let (key, _) = find(db, user_id, id).await?;
    sqlx::query("DELETE FROM files WHERE id = $1 AND user_id = $2")
        .bind(id.as_str())
        .bind(user_id)
        .execute(db)
        .await?;
    match files.delete(&key).await {
        Ok(()) => {}
        Err(e) => tracing::warn!(error = %e, file = id.as_str(), "stored file not removed"),
    }
    tracing::info!(file = id.as_str(), user = user_id, "file deleted");
    Ok(())
}

/// A download link for one of the user's files.
pub async fn link(
    db: &AnyPool,
    links: &LinkMinter,
    user_id: &str,
    id: &FileId,
) -> Result<Link, AppError> {
    let (key, name) = find(db, user_id, id).await?;
    links.mint(user_id, &key, &name)
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

/// Streams the `file` field of a multipart body into the file store and records it. The body
/// is never held in memory; it is written under a new storage key (locally through
/// `<files>/.tmp-<random>`, renamed when whole; in S3 as a multipart upload, completed when
/// whole), counted against `--max-upload-bytes` as it arrives, and only then given a row. On
/// any failure no file and no row are left: on an error the upload is aborted (or the stored
/// file deleted) before the answer goes out; when the client goes away, on drop.
///
/// Exactly one `file` field: a second one is refused (400) rather than silently dropped, so a
/// client never believes two files were stored. A user at `--max-files-per-user` is refused
/// (409 `too_many_files`) before a byte is written; a full disk answers 507.
pub async fn upload(
    to: Destination<'_>,
    session: &Session,
    multipart: Multipart,
    csrf: Csrf,
) -> Result<FileInfo, AppError> {
    check_quota(&to, &session.user_id, false).await?;
    let mut gate = SessionGate {
        session,
        csrf,
        max: to.limits.max_upload_bytes,
    };
    let mut stored = None;
    let result = match receive(&to, &mut gate, multipart, &mut stored).await {
        Ok(received) => commit(&to, &session.user_id, received, &mut stored).await,
        Err(e) => Err(e),
    };
    if let Some(guard) = stored.take() {
        guard.remove_now().await;
    }
    result
}

/// Where an upload goes (its row, its bytes), and its limits.
pub struct Destination<'a> {
    pub db: &'a AnyPool,
    pub files: &'a Files,
    pub limits: UploadLimits,
}

/// `TooManyFiles` when the user would keep more than `--max-files-per-user` files with the new
/// one (whose row is already counted when `inserted`).
pub(crate) async fn check_quota(
    to: &Destination<'_>,
    user_id: &str,
    inserted: bool,
) -> Result<(), AppError> {
    if to.limits.max_files_per_user == 0 {
        return Ok(());
    }
    let mut conn = to.db.acquire().await?;
    check_quota_on(&mut conn, to.limits, user_id, inserted).await
}

/// [`check_quota`] on `conn` (for a transaction that just inserted the new file's row).
pub(crate) async fn check_quota_on(
    conn: &mut sqlx::AnyConnection,
    limits: UploadLimits,
    user_id: &str,
    inserted: bool,
) -> Result<(), AppError> {
    let max = limits.max_files_per_user;
    if max == 0 {
        return Ok(());
    }
    let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM files WHERE user_id = $1")
        .bind(user_id)
        .fetch_one(&mut *conn)
        .await?;
    if u64::try_from(count).unwrap_or(0) + u64::from(!inserted) > max {
        return Err(AppError::TooManyFiles(max));
    }
    Ok(())
}

/// A file read to its end into the store, not yet recorded: the multipart form's `file` field
/// or a tus upload's last byte. `id` is the row it becomes (a tus upload chooses it at creation,
/// so a finish that is repeated finds its row rather than making a second one).
pub(crate) struct Stored {
    pub id: FileId,
    pub key: StorageKey,
    pub name: DownloadName,
    pub content_type: String,
    pub size: u64,
}

/// A received file's name and type: the name the client gave, made safe, and the type its
/// extension says. A declared type (tus `filetype`) counts only when the name says nothing
/// (`application/octet-stream`) and it is a well-formed `type/subtype`, without parameters.
pub(crate) fn describe(raw_name: &str, declared: Option<&str>) -> (DownloadName, String) {
    let name = DownloadName::sanitize(raw_name);
    let guessed = mime_guess::from_path(name.as_str()).first_or_octet_stream();
    let content_type = match declared.and_then(|d| d.parse::<mime_guess::Mime>().ok()) {
        Some(declared) if guessed == mime_guess::mime::APPLICATION_OCTET_STREAM => {
            declared.essence_str().to_owned()
        }
        _ => guessed.to_string(),
    };
    (name, content_type)
}

/// What an upload's small fields must prove before its file is stored, and how many bytes
/// the file may have: the session's CSRF token for the owner's own uploads, the form token,
/// password and a slot of the link for an upload link ([`crate::upload_links`]).
pub(crate) trait Gate {
    /// The longest value of field `name` this gate reads before the file, or `None` when it
    /// does not read it (the field is skipped, its bytes counted).
    fn reads(&self, name: &str) -> Option<usize>;
    /// A field this gate [`Gate::reads`], whole.
    async fn field(&mut self, name: &str, value: String) -> Result<(), AppError>;
    /// The `file` field begins: refuse it, or say how many bytes it may have.
    async fn open(&mut self) -> Result<u64, AppError>;
    /// `size` bytes of the file have arrived so far.
    async fn progress(&mut self, size: u64) -> Result<(), AppError>;
    /// The body ended: refuse it if it lacked what this gate needed.
    fn finish(&self) -> Result<(), AppError>;
}

/// The owner's own upload: the CSRF token from the header or a `csrf_token` field ahead of
/// the file, and `--max-upload-bytes`.
struct SessionGate<'a> {
    session: &'a Session,
    csrf: Csrf,
    max: u64,
}

impl Gate for SessionGate<'_> {
    fn reads(&self, name: &str) -> Option<usize> {
        (name == CSRF_FIELD).then_some(MAX_CSRF_FIELD_BYTES)
    }

    async fn field(&mut self, _name: &str, value: String) -> Result<(), AppError> {
        self.session.check_csrf(Some(&value))?;
        self.csrf = Csrf::CheckedHeader;
        Ok(())
    }

    async fn open(&mut self) -> Result<u64, AppError> {
        match self.csrf {
            Csrf::CheckedHeader => Ok(self.max),
            Csrf::ExpectField => Err(AppError::Csrf),
        }
    }

    async fn progress(&mut self, _size: u64) -> Result<(), AppError> {
        Ok(())
    }

    fn finish(&self) -> Result<(), AppError> {
        match self.csrf {
            Csrf::CheckedHeader => Ok(()),
            Csrf::ExpectField => Err(AppError::Csrf),
        }
    }
}

/// Reads the whole multipart body; the one `file` field goes into the store (after `gate`
/// opened it, capped at what it said), with a guard that deletes it left in `stored`. Other
/// fields are skipped but count against `--max-upload-bytes`.
pub(crate) async fn receive(
    to: &Destination<'_>,
    gate: &mut impl Gate,
    mut multipart: Multipart,
    stored: &mut Option<DeleteOnDrop>,
) -> Result<Stored, AppError> {
    let mut other_bytes: u64 = 0;
    let mut received = None;
    while let Some(field) = multipart.next().await {
        let mut field = field.map_err(malformed)?;
        let name = field.name().unwrap_or("").to_owned();
        if name == FILE_FIELD {
            if received.is_some() {
                return Err(AppError::BadRequest(format!(
                    "one file per upload: the body has more than one {FILE_FIELD:?} field"
                )));
            }
            let cap = gate.open().await?;
            received = Some(write_file(to, field, cap, gate, stored).await?);
        } else if let Some(max) = gate.reads(&name) {
            let value = read_small(&mut field, max).await?;
            gate.field(&name, value).await?;
        } else {
            while let Some(chunk) = field.next().await {
                other_bytes += chunk.map_err(malformed)?.len() as u64;
                if other_bytes > to.limits.max_upload_bytes {
                    return Err(AppError::TooLarge(to.limits.max_upload_bytes));
                }
            }
        }
    }
    gate.finish()?;
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

/// A small field's value; a longer one than `max` or one that is not UTF-8 is refused as a
/// wrong token would be (`Csrf`).
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

async fn write_file(
    to: &Destination<'_>,
    field: Field,
    cap: u64,
    gate: &mut impl Gate,
    stored: &mut Option<DeleteOnDrop>,
) -> Result<Stored, AppError> {
    let raw_name = field
        .content_disposition()
        .and_then(|cd| cd.get_filename())
        .unwrap_or("")
        .to_owned();
    let (name, content_type) = describe(&raw_name, None);
    let key = StorageKey::generate();
    let mut upload = to.files.create(&key).await.map_err(storage_error)?;
    let size = match write_field(&mut upload, field, cap, gate).await {
        Ok(size) => size,
        Err(e) => {
            upload.abort().await;
            return Err(e);
        }
    };
    upload.finish().await.map_err(storage_error)?;
    *stored = Some(DeleteOnDrop::new(to.files.clone(), key.clone()));
    Ok(Stored {
        id: FileId::generate(),
        key,
        name,
        content_type,
        size,
    })
}

/// Where a file came from, as its row records it: `None` for the owner's own upload.
pub(crate) struct Origin<'a> {
    pub link_id: &'a str,
    pub client: Option<String>,
    pub user_agent: Option<String>,
}

/// Inserts the row of a stored file on `conn` (the caller's transaction, or a connection).
pub(crate) async fn insert(
    conn: &mut sqlx::AnyConnection,
    user_id: &str,
    stored: &Stored,
    origin: Option<&Origin<'_>>,
) -> Result<FileInfo, AppError> {
    let id = &stored.id;
    let created_at = crate::now();
    let size = i64::try_from(stored.size).map_err(|_| AppError::TooLarge(i64::MAX as u64))?;
    sqlx::query(
        "INSERT INTO files \
         (id, user_id, name, storage_key, size, content_type, created_at, created_us, \
         received_via, received_from, received_agent) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(id.as_str())
    .bind(user_id)
    .bind(stored.name.as_str())
    .bind(stored.key.as_str())
    .bind(size)
    .bind(&stored.content_type)
    .bind(created_at)
    .bind(crate::now_micros())
    .bind(origin.map(|o| o.link_id))
    .bind(origin.and_then(|o| o.client.clone()))
    .bind(origin.and_then(|o| o.user_agent.clone()))
    .execute(&mut *conn)
    .await?;
    Ok(FileInfo {
        id: id.as_str().to_owned(),
        name: stored.name.as_str().to_owned(),
        size,
        content_type: stored.content_type.clone(),
        created_at,
        received: origin.map(|o| ReceivedFrom {
            link_id: o.link_id.to_owned(),
            client: o.client.clone(),
            user_agent: o.user_agent.clone(),
        }),
    })
}

/// Records the stored file; the guard follows the file, so a failed insert leaves nothing.
/// Recording an id already recorded for this user and key (a tus finish repeated) answers the
/// row there.
pub(crate) async fn commit(
    to: &Destination<'_>,
    user_id: &str,
    stored_file: Stored,
    stored: &mut Option<DeleteOnDrop>,
) -> Result<FileInfo, AppError> {
    if stored.is_none() {
        return Err(AppError::Internal(
            "an upload without its stored file".into(),
        ));
    }
    let recorded: Option<FileRow> = sqlx::query_as(&format!(
        "SELECT {FILE_COLUMNS} FROM files WHERE id = $1 AND user_id = $2 AND storage_key = $3"
    ))
    .bind(stored_file.id.as_str())
    .bind(user_id)
    .bind(stored_file.key.as_str())
    .fetch_optional(to.db)
    .await?;
    if let Some(row) = recorded {
        if let Some(guard) = stored.as_mut() {
            guard.keep();
        }
        return Ok(info(row));
    }
    let mut conn = to.db.acquire().await?;
    let file = insert(&mut conn, user_id, &stored_file, None).await?;
    drop(conn);
    // Concurrent uploads may all have passed the first check: the one that went over removes
    // its own row (and, through the guard, its file).
    if let Err(e) = check_quota(to, user_id, true).await {
        sqlx::query("DELETE FROM files WHERE id = $1")
            .bind(&file.id)
            .execute(to.db)
            .await?;
        return Err(e);
    }
    if let Some(guard) = stored.as_mut() {
        guard.keep();
    }
    tracing::info!(
        file = file.id,
        user = user_id,
        size = file.size,
        "file uploaded"
    );
    Ok(file)
}

/// A full disk or exhausted quota is `InsufficientStorage` (507): the client can do nothing
/// about it but should know it is not their mistake nor a bug.
pub(crate) fn storage_error(e: std::io::Error) -> AppError {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded | ErrorKind::FileTooLarge => {
            tracing::error!(error = %e, "upload refused: no space left");
            AppError::InsufficientStorage
        }
        _ => AppError::Io(e),
    }
}

/// Copies the field into `upload`, refusing more than `max` bytes, telling `gate` as bytes
/// arrive.
async fn write_field(
    upload: &mut Upload,
    mut field: Field,
    max: u64,
    gate: &mut impl Gate,
) -> Result<u64, AppError> {
    let mut size: u64 = 0;
    while let Some(chunk) = field.next().await {
        let chunk = chunk.map_err(malformed)?;
        size += chunk.len() as u64;
        if size > max {
            return Err(AppError::TooLarge(max));
        }
        upload.write(chunk).await.map_err(storage_error)?;
        gate.progress(size).await?;
    }
    Ok(size)
}

/// Deletes a stored file when dropped unless [`DeleteOnDrop::keep`] was called: covers errors
/// and a cancelled request alike.
pub(crate) struct DeleteOnDrop {
    files: Files,
    key: Option<StorageKey>,
}

impl DeleteOnDrop {
    pub(crate) fn new(files: Files, key: StorageKey) -> DeleteOnDrop {
        DeleteOnDrop {
            files,
            key: Some(key),
        }
    }

    pub(crate) fn keep(&mut self) {
        self.key = None;
    }

    /// Deletes the file now, so it is gone before the response is sent.
    pub(crate) async fn remove_now(mut self) {
        if let Some(key) = self.key.take() {
            remove(&self.files, &key).await;
        }
    }
}

async fn remove(files: &Files, key: &StorageKey) {
    if let Err(e) = files.delete(key).await {
        tracing::warn!(error = %e, "a failed upload's stored file was not removed");
    }
}

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let files = self.files.clone();
                handle.spawn(async move { remove(&files, &key).await });
            }
            Err(_) => {
                if let Some(dir) = self.files.local_dir() {
                    let _ = std::fs::remove_file(dir.join(key.as_str()));
                }
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
        let files = Files::new(file_store::LocalStore::new(dir.path()));
        let (a, b) = (StorageKey::generate(), StorageKey::generate());
        let removed = dir.path().join(a.as_str());
        let kept = dir.path().join(b.as_str());
        std::fs::write(&removed, b"x").unwrap();
        std::fs::write(&kept, b"x").unwrap();
        drop(DeleteOnDrop::new(files.clone(), a));
        let mut guard = DeleteOnDrop::new(files, b);
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
