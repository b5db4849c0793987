//! Resumable uploads: the tus 1.0 protocol (core, creation, creation-with-upload, termination,
//! expiration; <https://tus.io/protocols/resumable-upload>) at `/api/uploads`.
//!
//! An upload is a row of `uploads` (migration 0028) and a part in the file store
//! ([`FileStore::start_part`]). What the routes gather from a request goes in as plain values;
//! what comes back is a decision the route renders. The guarantees:
//!
//! - An offset is acknowledged only once its bytes are durable ([`file_store::Appending::save`])
//!   and recorded; a PATCH at another offset is 409 and changes nothing.
//! - One request writes an upload at a time, across app servers sharing the database: a PATCH
//!   takes the row's lease with one `UPDATE … WHERE upload_offset = $presented AND the lease is
//!   free` (compare-and-set) and renews it while bytes arrive; a second PATCH meanwhile is 423.
//!   The lease outlives the longest silence a body may keep (`--upload-idle-secs`), so a live
//!   holder never loses it; a crashed one's runs out.
//! - A broken connection keeps what arrived: the request is served by a task of its own, which
//!   saves and records the bytes received whether or not the client is still there.
//! - The last byte makes the file exactly as a form upload does ([`files::commit`]: the same
//!   row, the same quota check), under an id chosen at creation, so a finish interrupted by a
//!   crash is repeated (a PATCH at the full offset) without a second row.
//! - An upload not finished by `--upload-expiry-secs` answers 410 and its part is removed by
//!   [`sweep`] (a local part file deleted, an S3 multipart upload aborted).
//!
//! Who uploads is an [`Uploader`]: the owner (a session or an access token, checked by the
//! route) or anyone holding an upload link (`/u/<secret>/uploads`, the link checked by the
//! route). It carries the owner's user id and is told at creation, at the finish and when the
//! upload ends unfinished: a link's upload reserves its file slot and bytes at creation
//! ([`upload_links::reserve_slot`], holding it for the upload's life), commits them with the
//! file's row and `upload.received` event in one transaction, and gives the slot back when the
//! upload expires, is terminated, refused at its finish, or its link is revoked or expires.

use std::time::Duration;

use actix_web::web::Bytes;
use base64::Engine as _;
use file_store::{FileStore as _, Files, PartState};
use futures_util::{Stream, StreamExt};
use shared::StorageKey;
use sqlx::AnyPool;

use crate::error::AppError;
use crate::files::{self, DeleteOnDrop, Destination, FileId, FileInfo, Stored};
use crate::upload_links;

/// The protocol version this server speaks (`Tus-Resumable`, `Tus-Version`).
pub const TUS_VERSION: &str = "1.0.0";
/// The extensions it offers (`Tus-Extension`).
pub const TUS_EXTENSIONS: &str = "creation,creation-with-upload,termination,expiration";
/// The media type of a PATCH body (and of a creation-with-upload body).
pub const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";

/// From this size on, the upload page's script sends a file through tus (resuming after a
/// broken connection); below it, in one form request.
pub const BROWSER_TUS_FROM: u64 = 4 * 1024 * 1024;

/// A lease is renewed at most this often while bytes arrive.
const RENEW_EVERY_MS: i64 = 1_000;
/// Beyond `--upload-idle-secs`, how long a lease lasts: time to save and record after the body.
const LEASE_MARGIN_MS: i64 = 10_000;
/// Most expired uploads one sweep removes (the next sweep takes the rest).
const SWEEP_BATCH: i64 = 100;

/// How long uploads and their leases live, set once at start.
#[derive(Debug, Clone, Copy)]
pub struct UploadPolicy {
    /// `--upload-expiry-secs`, in milliseconds.
    pub expiry_ms: i64,
    /// How long a PATCH holds an upload past its last renewal: `--upload-idle-secs` (the
    /// longest a body may go without a byte) and a margin.
    pub lease_ms: i64,
}

impl UploadPolicy {
    pub fn new(expiry_secs: u64, idle_secs: u64) -> UploadPolicy {
        let ms = |secs: u64| i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        UploadPolicy {
            expiry_ms: ms(expiry_secs),
            lease_ms: ms(idle_secs).saturating_add(LEASE_MARGIN_MS),
        }
    }

    /// How often [`sweep`] runs: half the expiry, between 1 s and a minute.
    pub fn sweep_every(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.expiry_ms / 2).unwrap_or(0))
            .clamp(Duration::from_secs(1), Duration::from_secs(60))
    }
}

/// Who is uploading, and so whose file the upload becomes. Rows record the link in
/// `uploads.via_link` and the slot it holds in `uploads.link_slot`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uploader {
    /// The owner, through a session (whose CSRF token the route checked) or an access token
    /// with `files:write`.
    Owner { user_id: String },
    /// Anyone holding an upload link, which the route found neither revoked nor expired (and,
    /// at creation, whose form token and password it checked). `client` and `user_agent` are
    /// the request's, recorded on the file by the request that finishes it.
    Link {
        user_id: String,
        link_id: String,
        client: Option<String>,
        user_agent: Option<String>,
    },
}

impl Uploader {
    /// Whose file the upload becomes.
    pub fn owner(&self) -> &str {
        match self {
            Uploader::Owner { user_id } | Uploader::Link { user_id, .. } => user_id,
        }
    }

    /// The upload link it came through, for the row.
    fn via_link(&self) -> Option<&str> {
        match self {
            Uploader::Owner { .. } => None,
            Uploader::Link { link_id, .. } => Some(link_id),
        }
    }

    /// The uploader of a stored row (for the sweep, which has no request).
    fn of_row(user_id: String, via_link: Option<String>) -> Uploader {
        match via_link {
            None => Uploader::Owner { user_id },
            Some(link_id) => Uploader::Link {
                user_id,
                link_id,
                client: None,
                user_agent: None,
            },
        }
    }

    /// At creation, before the row exists: may an upload of `length` bytes start? A link's
    /// upload takes a file slot here (its id is returned, for the row) and is refused (the
    /// slot given back) when `length` is more than the link has left.
    async fn reserve(&self, to: &Destination<'_>, length: u64) -> Result<Option<String>, AppError> {
        // The same check a form upload makes before its first byte.
        files::check_quota(to, self.owner(), false).await?;
        let Uploader::Link { link_id, .. } = self else {
            return Ok(None);
        };
        let stale = upload_links::stale_after_secs(to.limits.idle_secs);
        let slot = upload_links::reserve_slot(to.db, link_id, stale).await?;
        if length > slot.bytes_left {
            upload_links::release(to.db, &slot.id).await?;
            return Err(AppError::TooLarge(slot.bytes_left));
        }
        Ok(Some(slot.id))
    }

    /// The upload is created and lives until `expires_ms`: a link's slot is held that long
    /// (a paused upload resumes on any app server until then; the sweep gives the slot back).
    async fn created(&self, db: &AnyPool, slot: Option<&str>, expires_ms: i64) {
        if let Some(slot) = slot
            && let Err(e) = upload_links::hold_slot(db, slot, expires_ms / 1000 + 1).await
        {
            tracing::warn!(error = %e, "an upload's slot was not held for its life");
        }
    }

    /// Records the whole upload as the file `received`: the owner's as a form upload is; a
    /// link's with its slot's bytes committed, the file marked received and its
    /// `upload.received` event, in one transaction.
    async fn commit(
        &self,
        to: &Destination<'_>,
        slot: Option<&str>,
        received: Stored,
        stored: &mut Option<DeleteOnDrop>,
    ) -> Result<FileInfo, AppError> {
        match self {
            Uploader::Owner { user_id } => files::commit(to, user_id, received, stored).await,
            Uploader::Link {
                user_id,
                link_id,
                client,
                user_agent,
            } => {
                let slot = slot.ok_or_else(|| {
                    AppError::Internal("an upload through a link without its slot".into())
                })?;
                let kept = upload_links::Keep {
                    owner: user_id,
                    link_id,
                    slot_id: slot,
                    client: client.clone(),
                    user_agent: user_agent.clone(),
                };
                let file = upload_links::keep(to, &kept, &received).await?;
                if let Some(guard) = stored.as_mut() {
                    guard.keep();
                }
                Ok(file.0)
            }
        }
    }

    /// The upload ended without a file (expired, terminated, refused at its finish, its link
    /// gone): a link's slot is given back.
    async fn released(&self, db: &AnyPool, slot: Option<&str>) {
        if let Some(slot) = slot
            && let Err(e) = upload_links::release(db, slot).await
        {
            tracing::error!(error = %e, "an upload's slot was not released");
        }
    }
}

/// An upload's id as it appears in its URL: 256 random bits, URL-safe base64. The database
/// keeps only its hash. Anything that cannot be one is `NotFound`.
#[derive(Clone, PartialEq, Eq)]
pub struct UploadId(String);

impl std::fmt::Debug for UploadId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UploadId(..)")
    }
}

impl UploadId {
    pub fn parse(s: &str) -> Result<UploadId, AppError> {
        let ok = s.len() == 43
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(UploadId(s.to_owned()))
        } else {
            Err(AppError::NotFound)
        }
    }

    fn generate() -> UploadId {
        UploadId(shared::random_token(32))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn hash(&self) -> String {
        crate::db::stored_hash(&self.0)
    }
}

/// `Upload-Metadata`'s pairs this server reads (tus 1.0 creation): `filename` becomes the
/// file's name and `filetype` its type, through the rules a form upload's name follows
/// ([`files::describe`]); other keys are ignored.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub filename: Option<String>,
    pub filetype: Option<String>,
}

impl Metadata {
    /// Comma-separated `key base64value` pairs (a value may be absent); keys are unique ASCII
    /// without spaces or commas; values are standard base64 of UTF-8 (for the keys read here).
    pub fn parse(header: &str) -> Result<Metadata, AppError> {
        let bad = |why: String| AppError::BadRequest(format!("Upload-Metadata: {why}"));
        let mut metadata = Metadata::default();
        let mut seen = Vec::new();
        for pair in header.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = match pair.split_once(' ') {
                Some((key, value)) => (key, Some(value.trim())),
                None => (pair, None),
            };
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(bad(format!("{key:?} is not a key")));
            }
            if seen.contains(&key) {
                return Err(bad(format!("{key:?} is given twice")));
            }
            seen.push(key);
            let slot = match key {
                "filename" => &mut metadata.filename,
                "filetype" => &mut metadata.filetype,
                _ => continue,
            };
            let decoded = match value {
                Some(value) => base64::engine::general_purpose::STANDARD
                    .decode(value)
                    .map_err(|_| bad(format!("the value of {key:?} is not base64")))?,
                None => Vec::new(),
            };
            let text = String::from_utf8(decoded)
                .map_err(|_| bad(format!("the value of {key:?} is not UTF-8")))?;
            *slot = Some(text);
        }
        Ok(metadata)
    }
}

/// A creation request's facts.
#[derive(Debug, Clone)]
pub struct Creation {
    /// `Upload-Length`.
    pub length: u64,
    pub metadata: Metadata,
}

/// Where an upload is, as HEAD and every answer say it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub offset: u64,
    pub length: u64,
    /// Unix milliseconds (`Upload-Expires`), while unfinished.
    pub expires_ms: Option<i64>,
    /// The file it became, once whole.
    pub file_id: Option<String>,
}

/// A new upload: its id (for its URL) and where it stands (past its first bytes with
/// creation-with-upload).
#[derive(Debug)]
pub struct Created {
    pub id: UploadId,
    pub progress: Progress,
}

/// One stored upload row.
#[derive(sqlx::FromRow)]
struct Row {
    user_id: String,
    via_link: Option<String>,
    link_slot: Option<String>,
    file_id: String,
    storage_key: String,
    name: String,
    content_type: String,
    upload_length: i64,
    upload_offset: i64,
    store_state: String,
    expires_ms: i64,
    finished_ms: Option<i64>,
}

const ROW_COLUMNS: &str = "user_id, via_link, link_slot, file_id, storage_key, name, content_type, \
     upload_length, upload_offset, store_state, expires_ms, finished_ms";

impl Row {
    fn progress(&self) -> Progress {
        let finished = self.finished_ms.is_some();
        Progress {
            offset: as_u64(self.upload_offset),
            length: as_u64(self.upload_length),
            expires_ms: (!finished).then_some(self.expires_ms),
            file_id: finished.then(|| self.file_id.clone()),
        }
    }

    fn key(&self) -> Result<StorageKey, AppError> {
        StorageKey::parse(&self.storage_key)
            .map_err(|_| AppError::Internal("an upload has an invalid storage key".into()))
    }

    fn expired(&self, now: i64) -> bool {
        self.finished_ms.is_none() && self.expires_ms <= now
    }
}

fn as_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn as_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The uploader's upload `id`: the owner's own, or one through the same link.
async fn find(db: &AnyPool, uploader: &Uploader, id: &UploadId) -> Result<Row, AppError> {
    let row: Option<Row> = sqlx::query_as(&format!(
        "SELECT {ROW_COLUMNS} FROM uploads WHERE id_hash = $1 AND user_id = $2 \
         AND COALESCE(via_link, '') = $3"
    ))
    .bind(id.hash())
    .bind(uploader.owner())
    .bind(uploader.via_link().unwrap_or(""))
    .fetch_optional(db)
    .await?;
    row.ok_or(AppError::NotFound)
}

/// Starts an upload of `creation.length` bytes: refused over `--max-upload-bytes` (413) or
/// over the uploader's quota, before anything is stored. Its part is started in the store,
/// then its row written; if the row cannot be, the part is discarded.
pub async fn create(
    to: &Destination<'_>,
    policy: UploadPolicy,
    uploader: &Uploader,
    creation: Creation,
) -> Result<Created, AppError> {
    let max = to.limits.max_upload_bytes;
    if creation.length > max {
        return Err(AppError::TooLarge(max));
    }
    let slot = uploader.reserve(to, creation.length).await?;
    let (name, content_type) = files::describe(
        creation.metadata.filename.as_deref().unwrap_or(""),
        creation.metadata.filetype.as_deref(),
    );
    let id = UploadId::generate();
    let key = StorageKey::generate();
    let state = match to.files.start_part(&key).await {
        Ok(state) => state,
        Err(e) => {
            uploader.released(to.db, slot.as_deref()).await;
            return Err(files::storage_error(e));
        }
    };
    let now = crate::now_millis();
    let expires_ms = now.saturating_add(policy.expiry_ms);
    let inserted = sqlx::query(
        "INSERT INTO uploads (id_hash, user_id, via_link, link_slot, file_id, storage_key, \
         name, content_type, upload_length, upload_offset, store_state, created_ms, \
         expires_ms, lease_id, lease_until_ms, finished_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $10, $11, $12, NULL, 0, NULL)",
    )
    .bind(id.hash())
    .bind(uploader.owner())
    .bind(uploader.via_link())
    .bind(slot.as_deref())
    .bind(FileId::generate().as_str())
    .bind(key.as_str())
    .bind(name.as_str())
    .bind(&content_type)
    .bind(as_i64(creation.length))
    .bind(&state.0)
    .bind(now)
    .bind(expires_ms)
    .execute(to.db)
    .await;
    if let Err(e) = inserted {
        discard(to.files, &key, &state).await;
        uploader.released(to.db, slot.as_deref()).await;
        return Err(e.into());
    }
    uploader.created(to.db, slot.as_deref(), expires_ms).await;
    tracing::info!(
        user = uploader.owner(),
        upload_link = uploader.via_link(),
        length = creation.length,
        "upload created"
    );
    Ok(Created {
        id,
        progress: Progress {
            offset: 0,
            length: creation.length,
            expires_ms: Some(expires_ms),
            file_id: None,
        },
    })
}

/// Where the upload stands (HEAD): 404 for one that is not the uploader's, 410 once expired.
pub async fn progress(
    db: &AnyPool,
    uploader: &Uploader,
    id: &UploadId,
) -> Result<Progress, AppError> {
    let row = find(db, uploader, id).await?;
    if row.expired(crate::now_millis()) {
        return Err(AppError::UploadExpired);
    }
    Ok(row.progress())
}

/// Why a PATCH's body ended early, once its bytes so far are saved.
enum Cut {
    /// The body broke off or went silent: the client resumes with HEAD.
    Body(AppError),
    /// More bytes than the upload's length.
    Overflow,
}

/// Appends a request body at `presented` (the request's `Upload-Offset`). Takes the upload's
/// lease only at exactly its offset (else 409, 423 while another request writes it, 410 once
/// expired, nothing changed); appends what arrives, at most up to the upload's length; saves
/// and records it, even when the body breaks off (then the body's error is the answer); and on
/// the last byte makes the file. `declared` is the body's `Content-Length`, when it has one:
/// a body declared past the upload's length is refused before anything is written.
///
/// Run it where a dropped request does not stop it (the route spawns it): once the lease is
/// taken, it must get to recording what it saved.
pub async fn append<E>(
    to: &Destination<'_>,
    policy: UploadPolicy,
    uploader: &Uploader,
    id: &UploadId,
    presented: u64,
    declared: Option<u64>,
    body: impl Stream<Item = Result<Bytes, E>> + Unpin,
) -> Result<Progress, AppError>
where
    E: Into<AppError>,
{
    let lease = match Lease::take(to.db, policy, uploader, id, presented).await? {
        Hold::Taken(lease) => *lease,
        Hold::Done(progress) => return Ok(progress),
    };
    let row = &lease.row;
    let length = as_u64(row.upload_length);
    if declared.is_some_and(|declared| presented.saturating_add(declared) > length) {
        lease.release().await;
        return Err(AppError::BadRequest(format!(
            "the body runs past Upload-Length ({length} bytes)"
        )));
    }
    let key = row.key()?;
    let state = PartState(row.store_state.clone());
    let (saved, cut) = if presented < length {
        match write_body(to.files, &lease, &key, &state, presented, length, body).await {
            Ok(written) => written,
            Err(e) => {
                lease.release().await;
                return Err(e);
            }
        }
    } else {
        (
            file_store::Saved {
                offset: presented,
                state,
            },
            None,
        )
    };
    let whole = saved.offset == length && cut.is_none();
    // Recorded only by the lease's holder; released unless the finish follows.
    lease.record(&saved, !whole).await?;
    match cut {
        Some(Cut::Body(e)) => return Err(e),
        Some(Cut::Overflow) => {
            return Err(AppError::BadRequest(format!(
                "the body runs past Upload-Length ({length} bytes)"
            )));
        }
        None => {}
    }
    if !whole {
        return Ok(Progress {
            offset: saved.offset,
            ..row.progress()
        });
    }
    finish(to, uploader, lease, &key, &saved.state).await
}

/// Streams `body` into the part from `offset`, stopping at `length`; saves whatever arrived.
/// Errors only when the store fails (nothing past the saved offset is then acknowledged).
async fn write_body<E>(
    files: &Files,
    lease: &Lease,
    key: &StorageKey,
    state: &PartState,
    offset: u64,
    length: u64,
    mut body: impl Stream<Item = Result<Bytes, E>> + Unpin,
) -> Result<(file_store::Saved, Option<Cut>), AppError>
where
    E: Into<AppError>,
{
    let mut part = files
        .append_part(key, state, offset)
        .await
        .map_err(files::storage_error)?;
    let mut at = offset;
    let mut cut = None;
    while let Some(chunk) = body.next().await {
        let mut chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                cut = Some(Cut::Body(e.into()));
                break;
            }
        };
        let room = length - at;
        let overflow = chunk.len() as u64 > room;
        if overflow {
            chunk.truncate(usize::try_from(room).unwrap_or(usize::MAX));
        }
        at += chunk.len() as u64;
        if !chunk.is_empty() {
            part.write(chunk).await.map_err(files::storage_error)?;
        }
        if overflow {
            cut = Some(Cut::Overflow);
            break;
        }
        lease.renew().await?;
    }
    let saved = part.save().await.map_err(files::storage_error)?;
    Ok((saved, cut))
}

/// The last byte is in: the part becomes the file, recorded as a form upload is, and the row
/// says so. Refused at the finish (the quota filled meanwhile), the upload is removed whole.
async fn finish(
    to: &Destination<'_>,
    uploader: &Uploader,
    lease: Lease,
    key: &StorageKey,
    state: &PartState,
) -> Result<Progress, AppError> {
    let row = &lease.row;
    to.files
        .finish_part(key, state)
        .await
        .map_err(files::storage_error)?;
    let mut stored = Some(DeleteOnDrop::new(to.files.clone(), key.clone()));
    let received = Stored {
        id: FileId::parse(&row.file_id)?,
        key: key.clone(),
        name: shared::DownloadName::sanitize(&row.name),
        content_type: row.content_type.clone(),
        size: as_u64(row.upload_length),
    };
    let slot = row.link_slot.as_deref();
    let committed = uploader.commit(to, slot, received, &mut stored).await;
    if let Some(guard) = stored.take() {
        guard.remove_now().await;
    }
    let file = match committed {
        Ok(file) => file,
        Err(e) => {
            // Its file is gone with the guard: the upload cannot be finished again.
            sqlx::query("DELETE FROM uploads WHERE id_hash = $1")
                .bind(&lease.id_hash)
                .execute(to.db)
                .await?;
            uploader.released(to.db, slot).await;
            return Err(e);
        }
    };
    sqlx::query(
        "UPDATE uploads SET finished_ms = $1, lease_id = NULL, lease_until_ms = 0 \
         WHERE id_hash = $2 AND lease_id = $3",
    )
    .bind(crate::now_millis())
    .bind(&lease.id_hash)
    .bind(&lease.lease_id)
    .execute(to.db)
    .await?;
    tracing::info!(
        file = file.id,
        user = uploader.owner(),
        upload_link = uploader.via_link(),
        "upload finished"
    );
    Ok(Progress {
        offset: as_u64(row.upload_length),
        length: as_u64(row.upload_length),
        expires_ms: None,
        file_id: Some(file.id),
    })
}

/// What [`Lease::take`] found.
enum Hold {
    Taken(Box<Lease>),
    Done(Progress),
}

/// A PATCH's hold on one upload row (see the module's guarantees).
struct Lease {
    id_hash: String,
    lease_id: String,
    lease_ms: i64,
    renewed_ms: std::cell::Cell<i64>,
    db: AnyPool,
    row: Row,
}

impl Lease {
    /// Takes the upload at exactly `presented`, or says why not. A finished upload asked at its
    /// full length (the last PATCH repeated: its answer was lost) is done, not a conflict.
    async fn take(
        db: &AnyPool,
        policy: UploadPolicy,
        uploader: &Uploader,
        id: &UploadId,
        presented: u64,
    ) -> Result<Hold, AppError> {
        let id_hash = id.hash();
        let lease_id = shared::random_token(16);
        let now = crate::now_millis();
        let taken = sqlx::query(
            "UPDATE uploads SET lease_id = $1, lease_until_ms = $2 \
             WHERE id_hash = $3 AND user_id = $4 AND COALESCE(via_link, '') = $7 \
             AND upload_offset = $5 AND lease_until_ms < $6 AND expires_ms > $6 \
             AND finished_ms IS NULL",
        )
        .bind(&lease_id)
        .bind(now.saturating_add(policy.lease_ms))
        .bind(&id_hash)
        .bind(uploader.owner())
        .bind(as_i64(presented))
        .bind(now)
        .bind(uploader.via_link().unwrap_or(""))
        .execute(db)
        .await?
        .rows_affected();
        let row = find(db, uploader, id).await?;
        if taken == 1 {
            return Ok(Hold::Taken(Box::new(Lease {
                id_hash,
                lease_id,
                lease_ms: policy.lease_ms,
                renewed_ms: std::cell::Cell::new(now),
                db: db.clone(),
                row,
            })));
        }
        let offset = as_u64(row.upload_offset);
        if row.finished_ms.is_some() && presented == offset {
            return Ok(Hold::Done(row.progress()));
        }
        Err(if row.finished_ms.is_some() {
            AppError::OffsetMismatch { presented, offset }
        } else if row.expired(now) {
            AppError::UploadExpired
        } else if offset != presented {
            AppError::OffsetMismatch { presented, offset }
        } else {
            AppError::UploadBusy
        })
    }

    /// Extends the lease while bytes arrive (at most once a second). A lease found taken by
    /// another holder (it ran out: this process stalled) stops the request before it writes.
    async fn renew(&self) -> Result<(), AppError> {
        let now = crate::now_millis();
        if now - self.renewed_ms.get() < RENEW_EVERY_MS {
            return Ok(());
        }
        let renewed = sqlx::query(
            "UPDATE uploads SET lease_until_ms = $1 WHERE id_hash = $2 AND lease_id = $3",
        )
        .bind(now.saturating_add(self.lease_ms))
        .bind(&self.id_hash)
        .bind(&self.lease_id)
        .execute(&self.db)
        .await?
        .rows_affected();
        if renewed != 1 {
            return Err(AppError::UploadBusy);
        }
        self.renewed_ms.set(now);
        Ok(())
    }

    /// Records what was saved; lets the upload go when `release` (else its finish follows).
    async fn record(&self, saved: &file_store::Saved, release: bool) -> Result<(), AppError> {
        let query = if release {
            "UPDATE uploads SET upload_offset = $1, store_state = $2, lease_id = NULL, \
             lease_until_ms = 0 WHERE id_hash = $3 AND lease_id = $4"
        } else {
            "UPDATE uploads SET upload_offset = $1, store_state = $2 \
             WHERE id_hash = $3 AND lease_id = $4"
        };
        let recorded = sqlx::query(query)
            .bind(as_i64(saved.offset))
            .bind(&saved.state.0)
            .bind(&self.id_hash)
            .bind(&self.lease_id)
            .execute(&self.db)
            .await?
            .rows_affected();
        if recorded != 1 {
            return Err(AppError::UploadBusy);
        }
        Ok(())
    }

    /// Lets the upload go without recording anything.
    async fn release(&self) {
        let released = sqlx::query(
            "UPDATE uploads SET lease_id = NULL, lease_until_ms = 0 \
             WHERE id_hash = $1 AND lease_id = $2",
        )
        .bind(&self.id_hash)
        .bind(&self.lease_id)
        .execute(&self.db)
        .await;
        if let Err(e) = released {
            tracing::warn!(error = %e, "an upload's lease was not released; it runs out");
        }
    }
}

/// Ends an upload (tus termination): its part is removed and its URL answers 404. One being
/// written is 423; a finished one's row goes, its file stays.
pub async fn terminate(
    db: &AnyPool,
    files: &Files,
    uploader: &Uploader,
    id: &UploadId,
) -> Result<(), AppError> {
    let now = crate::now_millis();
    let row = find(db, uploader, id).await?;
    let deleted = sqlx::query(
        "DELETE FROM uploads WHERE id_hash = $1 AND user_id = $2 AND lease_until_ms < $3",
    )
    .bind(id.hash())
    .bind(uploader.owner())
    .bind(now)
    .execute(db)
    .await?
    .rows_affected();
    if deleted != 1 {
        return Err(AppError::UploadBusy);
    }
    if row.finished_ms.is_none() {
        discard(files, &row.key()?, &PartState(row.store_state.clone())).await;
        uploader.released(db, row.link_slot.as_deref()).await;
    }
    tracing::info!(
        user = uploader.owner(),
        upload_link = uploader.via_link(),
        "upload terminated"
    );
    Ok(())
}

/// The parts of the user's unfinished uploads (to discard when the user is deleted).
pub(crate) async fn unfinished_parts(
    db: &AnyPool,
    user_id: &str,
) -> Result<Vec<(StorageKey, PartState)>, AppError> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT storage_key, store_state FROM uploads \
         WHERE user_id = $1 AND finished_ms IS NULL",
    )
    .bind(user_id)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(key, state)| Some((StorageKey::parse(&key).ok()?, PartState(state))))
        .collect())
}

/// Removes a part, logging (not failing) when the store cannot.
pub(crate) async fn discard(files: &Files, key: &StorageKey, state: &PartState) {
    if let Err(e) = files.discard_part(key, state).await {
        tracing::warn!(error = %e, "an upload's part was not removed");
    }
}

/// The uploads [`sweep_once`] removes (`$1` now in milliseconds, `$2` in seconds): past their
/// expiry, or unfinished through a link revoked or expired since; no request holding them.
const DUE: &str = "lease_until_ms < $1 AND (expires_ms <= $1 OR (finished_ms IS NULL \
     AND via_link IN (SELECT id FROM upload_links WHERE revoked_at IS NOT NULL \
     OR expires_at <= $2)))";

/// Removes uploads past their expiry (or whose link is gone) that no request holds: an unfinished one's part is
/// discarded (local part deleted, S3 multipart upload aborted) and its uploader told; a
/// finished one's row goes. Each row is removed by one `DELETE` that re-checks both, so app
/// servers sweeping together remove each once. Returns how many went.
pub async fn sweep_once(db: &AnyPool, files: &Files) -> Result<usize, AppError> {
    let now = crate::now_millis();
    let due: Vec<(String, Row)> = {
        #[derive(sqlx::FromRow)]
        struct Due {
            id_hash: String,
            #[sqlx(flatten)]
            row: Row,
        }
        let rows: Vec<Due> = sqlx::query_as(&format!(
            "SELECT id_hash, {ROW_COLUMNS} FROM uploads WHERE {DUE} LIMIT {SWEEP_BATCH}"
        ))
        .bind(now)
        .bind(now / 1000)
        .fetch_all(db)
        .await?;
        rows.into_iter().map(|d| (d.id_hash, d.row)).collect()
    };
    let mut removed = 0;
    for (id_hash, row) in due {
        let deleted = sqlx::query(&format!("DELETE FROM uploads WHERE {DUE} AND id_hash = $3"))
            .bind(now)
            .bind(now / 1000)
            .bind(&id_hash)
            .execute(db)
            .await?
            .rows_affected();
        if deleted != 1 {
            continue;
        }
        removed += 1;
        if row.finished_ms.is_none() {
            if let Ok(key) = row.key() {
                discard(files, &key, &PartState(row.store_state.clone())).await;
            }
            Uploader::of_row(row.user_id, row.via_link)
                .released(db, row.link_slot.as_deref())
                .await;
        }
    }
    if removed > 0 {
        tracing::info!(removed, "expired uploads removed");
    }
    Ok(removed)
}

/// The app server's sweep task: [`sweep_once`] every [`UploadPolicy::sweep_every`], for as long
/// as the runtime runs.
pub fn sweep(db: AnyPool, files: Files, policy: UploadPolicy) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(policy.sweep_every());
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if let Err(e) = sweep_once(&db, &files).await {
                tracing::warn!(error = %e, "sweeping expired uploads failed");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_gives_name_and_type() {
        let m = Metadata::parse(
            "filename bGV0dGVyLnBkZg==,filetype YXBwbGljYXRpb24vcGRm,is_confidential",
        )
        .unwrap();
        assert_eq!(m.filename.as_deref(), Some("letter.pdf"));
        assert_eq!(m.filetype.as_deref(), Some("application/pdf"));
        assert_eq!(Metadata::parse("").unwrap(), Metadata::default());
    }

    #[test]
    fn bad_metadata_is_refused() {
        for bad in [
            "filename !!!",
            "filename YQ==,filename Yg==",
            "filename /w==",
        ] {
            assert!(
                matches!(Metadata::parse(bad), Err(AppError::BadRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn upload_ids_are_256_bits_or_not_found() {
        let id = UploadId::generate();
        assert_eq!(UploadId::parse(id.as_str()).unwrap(), id);
        for bad in [
            "",
            "../x",
            &"a".repeat(42),
            &"a".repeat(44),
            &format!("{}.", "a".repeat(42)),
        ] {
            assert!(
                matches!(UploadId::parse(bad), Err(AppError::NotFound)),
                "{bad}"
            );
        }
        assert!(!format!("{id:?}").contains(id.as_str()));
    }

    #[test]
    fn sweeps_run_between_a_second_and_a_minute() {
        assert_eq!(
            UploadPolicy::new(1, 30).sweep_every(),
            Duration::from_secs(1)
        );
        assert_eq!(
            UploadPolicy::new(86_400, 30).sweep_every(),
            Duration::from_secs(60)
        );
        assert_eq!(UploadPolicy::new(1, 30).lease_ms, 40_000);
    }
}
