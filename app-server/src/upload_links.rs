//! Upload links: an owner's counted, revocable permission for anyone holding the link to send
//! them files without an account (docs/UPLOADS.md, "Upload links").
//!
//! A link is `<public url>/u/<secret>`, 256 random bits of which only the SHA-256 is stored
//! (as for shares). Looking at it (`GET`/`HEAD /u/<secret>`) never changes it: scanners and
//! chat previews only ever GET. Its limits hold across any number of app servers sharing the
//! database, counted on bytes actually received, through three plain steps an upload takes
//! (the multipart form here, and later a tus upload through a link):
//!
//! 1. [`reserve_slot`]: one conditional `UPDATE` takes a file slot
//!    (`files_pending + files_received < max_files`, not revoked, not expired) and says how
//!    many bytes are left; a row in `upload_link_slots` names the slot;
//! 2. the file streams into the store, capped at those bytes (and `--max-upload-bytes`);
//! 3. [`commit_bytes`], in the transaction that inserts the file's row and its
//!    `upload.received` event: one conditional `UPDATE` moves the slot to received and adds
//!    the actual size, only if `bytes_received + size <= max_bytes` and
//!    `files_received < max_files` still hold, so concurrent uploads that each saw enough room
//!    cannot together exceed it;
//!
//! and [`release`] frees the slot on any failure (a refusal, a broken connection, a dropped
//! request: [`SlotGuard`]), once, whoever calls it first. A refused or broken upload leaves
//! no file, no object and no row. A slot whose app server died mid-upload is marked seen no
//! more ([`heartbeat`]) and is reclaimed by the next upload that finds the link full
//! ([`reclaim`]).
//!
//! A resumable (tus) upload through a link (`/u/<secret>/uploads`, [`crate::uploads`]) takes
//! the same steps across its requests: the creation checks the form token and password
//! ([`admit`], as the form does), calls [`reserve_slot`] and keeps the [`Slot`]'s id with the
//! upload (its `Upload-Length` must fit `bytes_left`), marking the slot seen until the
//! upload's expiry ([`hold_slot`]: a paused upload may resume on any app server until then);
//! the last `PATCH` calls [`commit_bytes`] in the transaction that records the file
//! ([`keep`]); termination, expiry, a refusal and the link's revocation or expiry call
//! [`release`]. Every request on such an upload first finds its link live ([`open`]).

use std::net::IpAddr;

use actix_multipart::Multipart;
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, AnyPool};

use crate::error::AppError;
use crate::files::{self, Destination, FileId, FileInfo, Gate, Origin};
use crate::share_form::{Caller, FORM_TOKEN_FIELD, FormKey};
use crate::shares::{self, Guess, ShareSecret};
use crate::throttle::LoginThrottle;
use crate::users::{self, MAX_PASSWORD_BYTES, Password};

/// A link's lifetime when the owner asks for none: 7 days (or `--share-max-secs` if shorter).
pub const DEFAULT_LINK_SECS: u64 = 7 * 24 * 3600;
/// Files a link allows when the owner says nothing.
pub const DEFAULT_MAX_FILES: u64 = 10;
/// Most files one link may allow.
pub const MAX_FILES_PER_LINK: u64 = 1000;
/// Longest note, in characters.
pub const MAX_NOTE_CHARS: usize = 500;
/// The form field of the link's password.
pub const PASSWORD_FIELD: &str = "password";
/// Longest form token field.
const MAX_FORM_TOKEN_BYTES: usize = 256;

/// An upload link id as it appears in URLs (same alphabet as file ids); anything else is
/// `NotFound`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadLinkId(String);

impl UploadLinkId {
    pub fn parse(s: &str) -> Result<UploadLinkId, AppError> {
        FileId::parse(s).map(|id| UploadLinkId(id.as_str().to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What an owner asks for; every field optional. No `Debug`: it holds a password.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUploadLink {
    /// Default 7 days, at most `--share-max-secs`.
    pub expires_in_secs: Option<u64>,
    /// Default 10, at most 1000.
    pub max_files: Option<u64>,
    /// All files together, in bytes; default `--max-upload-bytes`.
    pub max_bytes: Option<u64>,
    /// Asked of the uploader before each file (8 to 1024 bytes).
    pub password: Option<String>,
    /// Shown to the uploader: what to send (up to 500 characters).
    pub note: Option<String>,
}

/// A link's state as its owner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UploadLinkStatus {
    Live,
    Expired,
    Revoked,
    /// It received all the files or bytes it allows.
    Full,
}

/// The counters and limits of a link's row.
#[derive(Debug, Clone, Copy)]
struct Counts {
    max_files: i64,
    max_bytes: i64,
    files_received: i64,
    bytes_received: i64,
    expires_at: i64,
    revoked: bool,
}

impl Counts {
    fn new(limits: (i64, i64), received: (i64, i64), expires_at: i64, revoked: bool) -> Counts {
        Counts {
            max_files: limits.0,
            max_bytes: limits.1,
            files_received: received.0,
            bytes_received: received.1,
            expires_at,
            revoked,
        }
    }

    fn status(&self, now: i64) -> UploadLinkStatus {
        if self.revoked {
            UploadLinkStatus::Revoked
        } else if self.expires_at <= now {
            UploadLinkStatus::Expired
        } else if self.files_received >= self.max_files || self.bytes_received >= self.max_bytes {
            UploadLinkStatus::Full
        } else {
            UploadLinkStatus::Live
        }
    }
}

/// A link as its owner's API shows it. `url` only in the answer to its creation: the secret
/// is not stored, so it cannot be shown again.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UploadLinkInfo {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub note: String,
    pub has_password: bool,
    pub max_files: i64,
    pub max_bytes: i64,
    /// Files received and kept by the link's count (deleting a file does not give it back).
    pub files_received: i64,
    pub bytes_received: i64,
    /// Uploads streaming now, each holding a file slot.
    pub files_pending: i64,
    /// Unix seconds.
    pub expires_at: i64,
    pub created_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
    pub status: UploadLinkStatus,
    /// The files that arrived through it and are still kept, newest first.
    pub files: Vec<FileInfo>,
}

/// Checked settings of a new link.
struct Checked {
    expires_in: i64,
    max_files: i64,
    max_bytes: i64,
    password: Option<Password>,
    note: String,
}

fn check(max_secs: u64, max_upload_bytes: u64, new: NewUploadLink) -> Result<Checked, AppError> {
    let bad = |why: String| Err(AppError::BadRequest(why));
    let expires_in = new
        .expires_in_secs
        .unwrap_or(DEFAULT_LINK_SECS.min(max_secs));
    if !(1..=max_secs).contains(&expires_in) {
        return bad(format!(
            "expires_in_secs must be 1 to {max_secs} (--share-max-secs)"
        ));
    }
    let max_files = new.max_files.unwrap_or(DEFAULT_MAX_FILES);
    if !(1..=MAX_FILES_PER_LINK).contains(&max_files) {
        return bad(format!("max_files must be 1 to {MAX_FILES_PER_LINK}"));
    }
    let max_bytes = new.max_bytes.unwrap_or(max_upload_bytes);
    if max_bytes == 0 || i64::try_from(max_bytes).is_err() {
        return bad(format!("max_bytes must be 1 to {}", i64::MAX));
    }
    let password = match new.password.as_deref() {
        None | Some("") => None,
        Some(p) => Some(Password::parse(p)?),
    };
    let note = new.note.unwrap_or_default().trim().to_owned();
    if note.chars().count() > MAX_NOTE_CHARS
        || note
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\r')
    {
        return bad(format!(
            "note must be at most {MAX_NOTE_CHARS} characters, without control characters"
        ));
    }
    Ok(Checked {
        expires_in: i64::try_from(expires_in).unwrap_or(i64::MAX),
        max_files: i64::try_from(max_files).unwrap_or(i64::MAX),
        max_bytes: i64::try_from(max_bytes).unwrap_or(i64::MAX),
        password,
        note,
    })
}

/// What links may be, set once at start: `--share-max-secs` caps their lifetime,
/// `--max-upload-bytes` is their default total.
#[derive(Debug, Clone)]
pub struct LinkPolicy<'a> {
    pub max_secs: u64,
    pub max_upload_bytes: u64,
    /// The app's public URL, without a trailing slash.
    pub public_url: &'a str,
}

/// Makes an upload link for `user_id`; its URL is in this answer only.
pub async fn create(
    db: &AnyPool,
    policy: LinkPolicy<'_>,
    user_id: &str,
    new: NewUploadLink,
) -> Result<UploadLinkInfo, AppError> {
    let checked = check(policy.max_secs, policy.max_upload_bytes, new)?;
    let password_hash = match checked.password {
        Some(password) => Some(users::blocking(move || users::hash_password(&password)).await?),
        None => None,
    };
    let secret = ShareSecret::generate();
    let id = shared::random_token(16);
    let now = crate::now();
    let expires_at = now.saturating_add(checked.expires_in);
    sqlx::query(
        "INSERT INTO upload_links (id, secret_hash, user_id, note, password_hash, max_files, \
         max_bytes, files_pending, files_received, bytes_received, expires_at, revoked_at, \
         created_at, created_us) VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 0, 0, $8, NULL, $9, $10)",
    )
    .bind(&id)
    .bind(secret.hash())
    .bind(user_id)
    .bind(&checked.note)
    .bind(password_hash.clone())
    .bind(checked.max_files)
    .bind(checked.max_bytes)
    .bind(expires_at)
    .bind(now)
    .bind(crate::now_micros())
    .execute(db)
    .await?;
    tracing::info!(upload_link = %id, user = user_id, "upload link created");
    Ok(UploadLinkInfo {
        url: Some(format!("{}/u/{}", policy.public_url, secret.expose())),
        id,
        note: checked.note,
        has_password: password_hash.is_some(),
        max_files: checked.max_files,
        max_bytes: checked.max_bytes,
        files_received: 0,
        bytes_received: 0,
        files_pending: 0,
        expires_at,
        created_at: now,
        revoked_at: None,
        status: UploadLinkStatus::Live,
        files: Vec::new(),
    })
}

/// The user's links, newest first, each with the files that arrived through it: two
/// statements however many links there are.
pub async fn list(db: &AnyPool, user_id: &str) -> Result<Vec<UploadLinkInfo>, AppError> {
    type Row = (
        String,
        String,
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
        Option<i64>,
        i64,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, note, CASE WHEN password_hash IS NULL THEN 0 ELSE 1 END, max_files, \
         max_bytes, files_pending, files_received, bytes_received, expires_at, revoked_at, \
         created_at FROM upload_links WHERE user_id = $1 ORDER BY created_us DESC",
    )
    .bind(user_id)
    .fetch_all(db)
    .await?;
    let mut arrived = files::received(db, user_id).await?;
    let now = crate::now();
    Ok(rows
        .into_iter()
        .map(|row| {
            let (id, note, has_password, max_files, max_bytes, pending, received, bytes) =
                (row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7);
            let (expires_at, revoked_at, created_at) = (row.8, row.9, row.10);
            let counts = Counts::new(
                (max_files, max_bytes),
                (received, bytes),
                expires_at,
                revoked_at.is_some(),
            );
            let (mine, rest): (Vec<FileInfo>, Vec<FileInfo>) = arrived
                .drain(..)
                .partition(|f| f.received.as_ref().is_some_and(|r| r.link_id == id));
            arrived = rest;
            UploadLinkInfo {
                status: counts.status(now),
                id,
                url: None,
                note,
                has_password: has_password != 0,
                max_files,
                max_bytes,
                files_received: received,
                bytes_received: bytes,
                files_pending: pending,
                expires_at,
                created_at,
                revoked_at,
                files: mine,
            }
        })
        .collect())
}

/// Revokes one of the user's links at once (every app server reads the same row): no new
/// upload starts, and one still streaming is refused at its commit. Revoking twice is fine;
/// another user's link is `NotFound`.
pub async fn revoke(db: &AnyPool, user_id: &str, id: &UploadLinkId) -> Result<(), AppError> {
    crate::db::revoke_owned(db, "upload_links", user_id, id.as_str()).await?;
    tracing::info!(
        upload_link = id.as_str(),
        user = user_id,
        "upload link revoked"
    );
    Ok(())
}

/// The link behind `secret`, as a request on one of its resumable uploads finds it.
#[derive(Debug, Clone)]
pub struct LinkRef {
    pub id: String,
    pub owner: String,
    /// Neither revoked nor expired (a link full of files still serves the uploads holding
    /// its slots).
    pub live: bool,
}

/// The link behind `secret`, whatever its state: `NotFound` for an unknown secret.
pub async fn open(db: &AnyPool, secret: &ShareSecret) -> Result<LinkRef, AppError> {
    let row: Option<(String, String, i64, Option<i64>)> = sqlx::query_as(
        "SELECT id, user_id, expires_at, revoked_at FROM upload_links WHERE secret_hash = $1",
    )
    .bind(secret.hash())
    .fetch_optional(db)
    .await?;
    let (id, owner, expires_at, revoked_at) = row.ok_or(AppError::NotFound)?;
    Ok(LinkRef {
        id,
        owner,
        live: revoked_at.is_none() && expires_at > crate::now(),
    })
}

/// What an uploader's page shows of a live link, and what uploading through it needs.
#[derive(Clone)]
pub struct LinkVisit {
    pub id: String,
    pub note: String,
    pub expires_at: i64,
    /// Files still allowed (uploads streaming now not counted off).
    pub files_left: i64,
    pub bytes_left: i64,
    pub has_password: bool,
    /// The owner and the password's hash: for the upload, never shown.
    owner: String,
    password_hash: Option<String>,
}

impl LinkVisit {
    /// Who receives the files.
    pub fn owner(&self) -> &str {
        &self.owner
    }
}

impl std::fmt::Debug for LinkVisit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkVisit")
            .field("id", &self.id)
            .field("files_left", &self.files_left)
            .field("bytes_left", &self.bytes_left)
            .finish_non_exhaustive()
    }
}

/// The live link behind `secret`, read only: `NotFound` for an unknown secret,
/// `UploadLinkGone` for an expired, revoked or full one. One statement.
pub async fn visit(db: &AnyPool, secret: &ShareSecret) -> Result<LinkVisit, AppError> {
    type Row = (
        String,
        String,
        String,
        Option<String>,
        i64,
        i64,
        i64,
        i64,
        i64,
        Option<i64>,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT id, user_id, note, password_hash, max_files, max_bytes, files_received, \
         bytes_received, expires_at, revoked_at FROM upload_links WHERE secret_hash = $1",
    )
    .bind(secret.hash())
    .fetch_optional(db)
    .await?;
    let (id, owner, note, password_hash, max_files, max_bytes, received, bytes, expires_at, rev) =
        row.ok_or(AppError::NotFound)?;
    let counts = Counts::new(
        (max_files, max_bytes),
        (received, bytes),
        expires_at,
        rev.is_some(),
    );
    if counts.status(crate::now()) != UploadLinkStatus::Live {
        return Err(AppError::UploadLinkGone);
    }
    Ok(LinkVisit {
        id,
        note,
        expires_at,
        files_left: max_files - received,
        bytes_left: max_bytes - bytes,
        has_password: password_hash.is_some(),
        owner,
        password_hash,
    })
}

/// A file slot an upload holds while it streams ([`reserve_slot`]).
#[derive(Debug, Clone)]
pub struct Slot {
    pub id: String,
    pub link_id: String,
    /// The most bytes the file may have: what the link had left when the slot was taken.
    pub bytes_left: u64,
}

/// Why a link refuses an upload now, from its row: revoked or expired is `UploadLinkGone`;
/// `size` bytes more than it has left is `TooLarge` (with what is left); else its files are
/// all received or in flight, `UploadLinkFull`.
async fn refusal(conn: &mut AnyConnection, link_id: &str, size: Option<u64>) -> AppError {
    type Row = (i64, i64, i64, Option<i64>);
    let row: Result<Option<Row>, _> = sqlx::query_as(
        "SELECT max_bytes, bytes_received, expires_at, revoked_at FROM upload_links \
         WHERE id = $1",
    )
    .bind(link_id)
    .fetch_optional(&mut *conn)
    .await;
    match row {
        Err(e) => e.into(),
        Ok(None) => AppError::UploadLinkGone,
        Ok(Some((_, _, expires_at, revoked_at)))
            if revoked_at.is_some() || expires_at <= crate::now() =>
        {
            AppError::UploadLinkGone
        }
        Ok(Some((max, received, _, _))) => {
            let left = u64::try_from(max - received).unwrap_or(0);
            match size {
                Some(size) if size > left => AppError::TooLarge(left),
                _ => AppError::UploadLinkFull,
            }
        }
    }
}

/// The longest a streaming upload goes without marking its slot seen (`seen_at`).
pub const HEARTBEAT_SECS: i64 = 30;

/// How often an upload marks its slot seen: every [`HEARTBEAT_SECS`], or every
/// `--upload-idle-secs` when that is shorter (one statement per idle period at most).
pub fn heartbeat_secs(idle_secs: u64) -> i64 {
    i64::try_from(idle_secs)
        .unwrap_or(i64::MAX)
        .min(HEARTBEAT_SECS)
}

/// A slot not seen for this long has no upload behind it any more (its app server died
/// mid-upload): an upload still running receives a byte at least every `idle_secs`
/// (`--upload-idle-secs`, else it fails) and marks its slot on the first byte after each
/// [`heartbeat_secs`]; a minute more covers clocks that differ between app servers.
pub fn stale_after_secs(idle_secs: u64) -> i64 {
    i64::try_from(idle_secs)
        .unwrap_or(i64::MAX)
        .saturating_add(heartbeat_secs(idle_secs) + 60)
}

/// Takes a file slot of link `link_id`, if one is left, the link is neither revoked nor
/// expired and it has bytes left: one conditional `UPDATE` (it decides, whatever was looked at
/// before) and the slot's row, in one transaction. When none is left, slots not seen for
/// `stale_secs` are reclaimed ([`reclaim`]) and the slot tried once more.
pub async fn reserve_slot(db: &AnyPool, link_id: &str, stale_secs: i64) -> Result<Slot, AppError> {
    match try_reserve(db, link_id).await? {
        Ok(slot) => Ok(slot),
        Err(why) => {
            if reclaim(db, link_id, crate::now().saturating_sub(stale_secs)).await? == 0 {
                return Err(why);
            }
            try_reserve(db, link_id).await?
        }
    }
}

/// One try of [`reserve_slot`]: the slot, or why the link refuses one.
async fn try_reserve(db: &AnyPool, link_id: &str) -> Result<Result<Slot, AppError>, AppError> {
    let mut tx = db.begin().await?;
    let now = crate::now();
    let left: Option<(i64,)> = sqlx::query_as(
        "UPDATE upload_links SET files_pending = files_pending + 1 \
         WHERE id = $1 AND revoked_at IS NULL AND expires_at > $2 \
         AND files_pending + files_received < max_files AND bytes_received < max_bytes \
         RETURNING max_bytes - bytes_received",
    )
    .bind(link_id)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((left,)) = left else {
        let why = refusal(&mut tx, link_id, None).await;
        tx.rollback().await?;
        return Ok(Err(why));
    };
    let id = shared::random_token(16);
    sqlx::query(
        "INSERT INTO upload_link_slots (id, link_id, reserved_at, seen_at) \
         VALUES ($1, $2, $3, $3)",
    )
    .bind(&id)
    .bind(link_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Ok(Slot {
        id,
        link_id: link_id.to_owned(),
        bytes_left: u64::try_from(left).unwrap_or(0),
    }))
}

/// Frees the slots of link `link_id` last seen before `before` (their uploads are gone), each
/// once whichever app server gets there first: the rows are deleted and as many taken off
/// `files_pending`, in one transaction. Returns how many were freed.
pub async fn reclaim(db: &AnyPool, link_id: &str, before: i64) -> Result<u64, AppError> {
    let mut tx = db.begin().await?;
    let freed: Vec<(String,)> = sqlx::query_as(
        "DELETE FROM upload_link_slots WHERE link_id = $1 AND seen_at < $2 RETURNING id",
    )
    .bind(link_id)
    .bind(before)
    .fetch_all(&mut *tx)
    .await?;
    let n = i64::try_from(freed.len()).unwrap_or(i64::MAX);
    if n > 0 {
        sqlx::query(
            "UPDATE upload_links SET files_pending = CASE WHEN files_pending > $2 \
             THEN files_pending - $2 ELSE 0 END WHERE id = $1",
        )
        .bind(link_id)
        .bind(n)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    for (slot,) in &freed {
        tracing::warn!(
            upload_link = link_id,
            slot,
            "a stale upload slot was reclaimed"
        );
    }
    Ok(freed.len() as u64)
}

/// Marks slot `slot_id` seen until `until` (Unix seconds): a resumable upload holds its slot
/// for its life.
pub async fn hold_slot(db: &AnyPool, slot_id: &str, until: i64) -> Result<(), AppError> {
    sqlx::query("UPDATE upload_link_slots SET seen_at = $1 WHERE id = $2")
        .bind(until)
        .bind(slot_id)
        .execute(db)
        .await?;
    Ok(())
}

/// Marks `slot` seen now: its upload is still receiving bytes.
pub async fn heartbeat(db: &AnyPool, slot: &Slot) -> Result<(), AppError> {
    sqlx::query("UPDATE upload_link_slots SET seen_at = $1 WHERE id = $2")
        .bind(crate::now())
        .bind(&slot.id)
        .execute(db)
        .await?;
    Ok(())
}

/// What a link has left after a commit.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct Left {
    pub files_left: i64,
    pub bytes_left: i64,
}

/// Moves `slot` to received with `size` bytes, on `conn` (the transaction that records the
/// file): one conditional `UPDATE` that refuses when the link was revoked since, or when the
/// bytes would exceed `max_bytes` (concurrent uploads took them) or the files `max_files`.
/// On a refusal the caller rolls its transaction back and [`release`]s the slot.
pub async fn commit_bytes(
    conn: &mut AnyConnection,
    slot: &Slot,
    size: u64,
) -> Result<Left, AppError> {
    let size_i64 = i64::try_from(size).map_err(|_| AppError::TooLarge(slot.bytes_left))?;
    let gone: Option<(String,)> =
        sqlx::query_as("DELETE FROM upload_link_slots WHERE id = $1 RETURNING id")
            .bind(&slot.id)
            .fetch_optional(&mut *conn)
            .await?;
    if gone.is_none() {
        // Reclaimed: the upload went unseen for longer than a live one can.
        tracing::warn!(
            slot = slot.id,
            "an upload's slot was reclaimed before its commit"
        );
        return Err(AppError::BodyTimeout);
    }
    let left: Option<(i64, i64)> = sqlx::query_as(
        "UPDATE upload_links SET files_pending = files_pending - 1, \
         files_received = files_received + 1, bytes_received = bytes_received + $2 \
         WHERE id = $1 AND revoked_at IS NULL AND files_received < max_files \
         AND bytes_received + $2 <= max_bytes \
         RETURNING max_files - files_received - files_pending, max_bytes - bytes_received",
    )
    .bind(&slot.link_id)
    .bind(size_i64)
    .fetch_optional(&mut *conn)
    .await?;
    match left {
        Some((files_left, bytes_left)) => Ok(Left {
            files_left,
            bytes_left,
        }),
        None => Err(refusal(conn, &slot.link_id, Some(size)).await),
    }
}

/// Frees `slot_id` if it is still held; a second release (or one after its commit) changes
/// nothing. Two statements in one transaction.
pub async fn release(db: &AnyPool, slot_id: &str) -> Result<(), AppError> {
    let mut tx = db.begin().await?;
    let freed: Option<(String,)> =
        sqlx::query_as("DELETE FROM upload_link_slots WHERE id = $1 RETURNING link_id")
            .bind(slot_id)
            .fetch_optional(&mut *tx)
            .await?;
    if let Some((link_id,)) = freed {
        sqlx::query(
            "UPDATE upload_links SET files_pending = files_pending - 1 \
             WHERE id = $1 AND files_pending > 0",
        )
        .bind(&link_id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Releases its slot when dropped unless [`SlotGuard::committed`] was called: a refusal, an
/// error and a request dropped mid-stream (the client went away) alike.
pub struct SlotGuard {
    db: AnyPool,
    slot: Option<Slot>,
}

impl SlotGuard {
    pub fn new(db: AnyPool, slot: Slot) -> SlotGuard {
        SlotGuard {
            db,
            slot: Some(slot),
        }
    }

    pub fn slot(&self) -> Option<&Slot> {
        self.slot.as_ref()
    }

    /// The slot's commit is in the database: nothing to release.
    pub fn committed(&mut self) {
        self.slot = None;
    }

    /// Releases now, so the slot is free before the answer goes out.
    pub async fn release_now(mut self) {
        if let Some(slot) = self.slot.take() {
            released(&self.db, &slot.id).await;
        }
    }
}

async fn released(db: &AnyPool, slot_id: &str) {
    if let Err(e) = release(db, slot_id).await {
        tracing::error!(error = %e, slot = slot_id, "an upload slot was not released");
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let Some(slot) = self.slot.take() else {
            return;
        };
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let db = self.db.clone();
            handle.spawn(async move { released(&db, &slot.id).await });
        } else {
            tracing::error!(
                slot = slot.id,
                "an upload slot was dropped outside a runtime"
            );
        }
    }
}

/// Who is uploading, as far as the request tells.
pub struct Uploader<'a> {
    pub caller: Caller,
    pub client: Option<IpAddr>,
    pub user_agent: Option<String>,
    /// Signs and checks the page's form token (a browser's upload needs a fresh one).
    pub form_key: &'a FormKey,
    /// Wrong passwords per link and per client address (the shares' throttle).
    pub throttle: &'a LoginThrottle,
}

/// A file received through a link, as the uploader's answer says it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Arrived {
    pub name: String,
    pub size: i64,
    #[serde(flatten)]
    pub left: Left,
    /// The file's id, for the owner's webhooks and logs; not shown to the uploader.
    #[serde(skip)]
    pub file_id: String,
}

/// Receives one file through the link `visit` looked at: the form token (from a browser) and
/// the password (throttled) come before the file; then a slot is taken, the file streamed
/// into the store capped at what the link has left, and its row, the link's count and its
/// `upload.received` event written in one transaction. On any failure the slot is released
/// and the stored object removed before the answer goes out (on drop, if the client left).
pub async fn upload(
    to: Destination<'_>,
    visit: &LinkVisit,
    uploader: Uploader<'_>,
    multipart: Multipart,
) -> Result<Arrived, AppError> {
    let mut gate = LinkGate {
        to: &to,
        visit,
        uploader: &uploader,
        form_token: None,
        password: None,
        slot: None,
        last_beat: 0,
    };
    let mut stored = None;
    let received = files::receive(&to, &mut gate, multipart, &mut stored).await;
    let mut guard = gate.slot.take();
    let result = match (received, guard.as_mut()) {
        (Ok(file), Some(guard)) => record(&to, visit, &uploader, &file, guard).await,
        (Ok(_), None) => Err(AppError::Internal("an upload without its slot".into())),
        (Err(e), _) => Err(e),
    };
    match &result {
        Ok(_) => {
            if let Some(stored) = stored.as_mut() {
                stored.keep();
            }
        }
        Err(e) => {
            tracing::info!(upload_link = %visit.id, error = %e, "upload through a link refused")
        }
    }
    if let Some(stored) = stored.take() {
        stored.remove_now().await;
    }
    if let Some(guard) = guard {
        guard.release_now().await;
    }
    result
}

/// The one transaction that keeps a received file: the link's count, the file's row (the
/// owner's, marked received), the owner's `--max-files-per-user`, the `upload.received` event.
async fn record(
    to: &Destination<'_>,
    visit: &LinkVisit,
    uploader: &Uploader<'_>,
    file: &files::Stored,
    guard: &mut SlotGuard,
) -> Result<Arrived, AppError> {
    let slot = guard
        .slot()
        .cloned()
        .ok_or_else(|| AppError::Internal("an upload slot committed twice".into()))?;
    let kept = Keep {
        owner: &visit.owner,
        link_id: &visit.id,
        slot_id: &slot.id,
        client: uploader.client.map(|ip| ip.to_string()),
        user_agent: uploader.user_agent.clone(),
    };
    let (info, left) = keep(to, &kept, file).await?;
    guard.committed();
    Ok(Arrived {
        name: info.name,
        size: info.size,
        left,
        file_id: info.id,
    })
}

/// A file received through a link, to keep: whose, through which link and slot, from where.
pub(crate) struct Keep<'a> {
    pub owner: &'a str,
    pub link_id: &'a str,
    pub slot_id: &'a str,
    pub client: Option<String>,
    pub user_agent: Option<String>,
}

/// Keeps a file received through a link, in one transaction: the slot's bytes committed
/// ([`commit_bytes`]), the file's row (the owner's, marked received), the owner's
/// `--max-files-per-user`, the `upload.received` event. A file already recorded under
/// `file.id` (a resumable upload's finish repeated) is answered as it is.
pub(crate) async fn keep(
    to: &Destination<'_>,
    kept: &Keep<'_>,
    file: &files::Stored,
) -> Result<(FileInfo, Left), AppError> {
    let slot = Slot {
        id: kept.slot_id.to_owned(),
        link_id: kept.link_id.to_owned(),
        bytes_left: file.size,
    };
    let mut tx = to.db.begin().await?;
    let left = commit_bytes(&mut tx, &slot, file.size).await?;
    let origin = Origin {
        link_id: kept.link_id,
        client: kept.client.clone(),
        user_agent: kept.user_agent.clone(),
    };
    let info = files::insert(&mut tx, kept.owner, file, Some(&origin)).await?;
    files::check_quota_on(&mut tx, to.limits, kept.owner, true).await?;
    crate::webhooks::outbox::for_upload(
        &mut tx,
        &crate::webhooks::outbox::UploadFacts {
            user_id: kept.owner,
            file_id: &info.id,
            file_name: &info.name,
            link_id: kept.link_id,
            bytes: file.size,
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(upload_link = %kept.link_id, file = %info.id, user = %kept.owner, size = info.size, "file received through an upload link");
    Ok((info, left))
}

/// Checks what an upload through a link must prove before a slot is taken, in this order: a
/// browser's fresh form token (`Caller::Browser`), the password (throttled, before any
/// hashing).
pub(crate) async fn admit(
    visit: &LinkVisit,
    uploader: &Uploader<'_>,
    form_token: Option<&str>,
    password: Option<&str>,
) -> Result<(), AppError> {
    if uploader.caller == Caller::Browser {
        let fresh =
            form_token.is_some_and(|t| uploader.form_key.verify(t, &visit.id, crate::now()));
        if !fresh {
            return Err(AppError::Csrf);
        }
    }
    if let Some(phc) = &visit.password_hash {
        let guess = Guess {
            throttled_as: &visit.id,
            phc,
            password,
            client: uploader.client,
        };
        shares::check_password(uploader.throttle, guess, AppError::WrongUploadPassword).await?;
    }
    Ok(())
}

/// The upload link's side of a multipart upload: the form token and password ahead of the
/// file, then the slot that caps it.
struct LinkGate<'a> {
    to: &'a Destination<'a>,
    visit: &'a LinkVisit,
    uploader: &'a Uploader<'a>,
    form_token: Option<String>,
    password: Option<String>,
    slot: Option<SlotGuard>,
    /// When the slot was last marked seen.
    last_beat: i64,
}

impl Gate for LinkGate<'_> {
    fn reads(&self, name: &str) -> Option<usize> {
        match name {
            FORM_TOKEN_FIELD => Some(MAX_FORM_TOKEN_BYTES),
            PASSWORD_FIELD => Some(MAX_PASSWORD_BYTES),
            _ => None,
        }
    }

    async fn field(&mut self, name: &str, value: String) -> Result<(), AppError> {
        match name {
            FORM_TOKEN_FIELD => self.form_token = Some(value),
            _ => self.password = Some(value),
        }
        Ok(())
    }

    /// In order: a browser's form token, the password (throttled, before any hashing), the
    /// owner's file count, then the slot.
    async fn open(&mut self) -> Result<u64, AppError> {
        admit(
            self.visit,
            self.uploader,
            self.form_token.as_deref(),
            self.password.as_deref(),
        )
        .await?;
        files::check_quota(self.to, &self.visit.owner, false).await?;
        let stale = stale_after_secs(self.to.limits.idle_secs);
        let slot = reserve_slot(self.to.db, &self.visit.id, stale).await?;
        let cap = slot.bytes_left.min(self.to.limits.max_upload_bytes);
        self.slot = Some(SlotGuard::new(self.to.db.clone(), slot));
        self.last_beat = crate::now();
        Ok(cap)
    }

    /// Marks the slot seen every [`heartbeat_secs`] while bytes arrive, so that no other app
    /// server takes it for the slot of a dead upload.
    async fn progress(&mut self, _size: u64) -> Result<(), AppError> {
        let now = crate::now();
        if now - self.last_beat < heartbeat_secs(self.to.limits.idle_secs) {
            return Ok(());
        }
        if let Some(slot) = self.slot.as_ref().and_then(SlotGuard::slot) {
            heartbeat(self.to.db, slot).await?;
        }
        self.last_beat = now;
        Ok(())
    }

    fn finish(&self) -> Result<(), AppError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_caps() {
        let c = check(30 * 86_400, 1 << 30, NewUploadLink::default()).unwrap();
        assert_eq!(
            (c.expires_in, c.max_files, c.max_bytes),
            (7 * 86_400, 10, 1 << 30)
        );
        assert!(c.password.is_none() && c.note.is_empty());
        assert_eq!(
            check(60, 1, NewUploadLink::default()).unwrap().expires_in,
            60
        );
        let cases = [
            (Some(0), None, None, None),
            (Some(30 * 86_400 + 1), None, None, None),
            (None, Some(0), None, None),
            (None, Some(MAX_FILES_PER_LINK + 1), None, None),
            (None, None, Some(0), None),
            (None, None, Some(u64::MAX), None),
            (None, None, None, Some("x".repeat(MAX_NOTE_CHARS + 1))),
            (None, None, None, Some("bell\u{7}".to_owned())),
        ];
        for (secs, files, bytes, note) in cases {
            let new = NewUploadLink {
                expires_in_secs: secs,
                max_files: files,
                max_bytes: bytes,
                password: None,
                note: note.clone(),
            };
            assert!(
                check(30 * 86_400, 1 << 30, new).is_err(),
                "{secs:?} {files:?} {bytes:?} {note:?}"
            );
        }
        let short_password = NewUploadLink {
            password: Some("short".into()),
            ..NewUploadLink::default()
        };
        assert!(check(60, 1, short_password).is_err());
    }

    #[test]
    fn a_live_upload_is_never_stale() {
        for idle in [1, 5, 30, 3600] {
            let beat = heartbeat_secs(idle);
            assert!((1..=HEARTBEAT_SECS).contains(&beat), "{idle}");
            // The longest a live upload leaves its slot unmarked: a beat's wait, then an
            // idle gap before the byte that marks it.
            assert!(
                beat + i64::try_from(idle).unwrap() < stale_after_secs(idle),
                "{idle}"
            );
        }
        assert_eq!(stale_after_secs(30), 120);
    }

    #[test]
    fn status_order() {
        let counts = Counts {
            max_files: 2,
            max_bytes: 100,
            files_received: 0,
            bytes_received: 0,
            expires_at: 10,
            revoked: false,
        };
        assert_eq!(counts.status(5), UploadLinkStatus::Live);
        assert_eq!(
            counts.status(10),
            UploadLinkStatus::Expired,
            "at the exact second"
        );
        let full = Counts {
            files_received: 2,
            ..counts
        };
        assert_eq!(full.status(5), UploadLinkStatus::Full);
        let bytes_used = Counts {
            bytes_received: 100,
            ..counts
        };
        assert_eq!(bytes_used.status(5), UploadLinkStatus::Full);
        let revoked = Counts {
            revoked: true,
            ..full
        };
        assert_eq!(revoked.status(11), UploadLinkStatus::Revoked);
    }
}
