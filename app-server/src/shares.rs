//! Shares: an owner's long-lived, counted, revocable permission for anyone holding the share
//! URL to mint single-use download links.
//!
//! The download server does not change: it still only sees minute-long single-use tokens. A
//! share lives here, in the app's database:
//! - its URL is `<public url>/s/<secret>`, 256 random bits of which only the SHA-256 is
//!   stored (as with session ids), so a leaked database hands out no share;
//! - looking at it (`GET`/`HEAD /s/<secret>`) never changes it: scanners, chat previews and
//!   prefetchers only ever GET;
//! - a download is *taken* by one SQL statement that counts and checks at once
//!   (`UPDATE … SET downloads = downloads + 1 WHERE … downloads < max_downloads AND
//!   revoked_at IS NULL AND expires_at > now RETURNING …`), never read-then-write, so
//!   concurrent takes on any number of app servers sharing the database never exceed the
//!   limit;
//! - a taken download whose link expired with nothing served is given back
//!   ([`settle`]), once the download outcomes say so; a partial download counts.
//!
//! Round trips are bounded: a look at a share is one statement (it also says whether a
//! download is owed back; only then does [`settle`] run), a take two more (the `UPDATE` and
//! the record of its link), and the owner's lists a fixed number whatever their length.

use std::collections::HashMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use shared::{DownloadName, StorageKey};
use sqlx::AnyPool;

use crate::db::stored_hash;
use crate::error::AppError;
use crate::files::{FileId, Link};
use crate::minter::LinkMinter;
use crate::outcomes::SERVED_OUTCOMES;
use crate::throttle::LoginThrottle;
use crate::users::{self, Password};

/// Downloads listed per share or file, at most.
pub const DOWNLOADS_SHOWN: i64 = 50;

/// A share's lifetime when the owner asks for none: 7 days (or `--share-max-secs` if shorter).
pub const DEFAULT_SHARE_SECS: u64 = 7 * 24 * 3600;
/// Random bytes of a share secret: 256 bits (the contract asks for at least 128).
const SECRET_BYTES: usize = 32;

/// What a share may be, set once at start.
#[derive(Debug, Clone)]
pub struct SharePolicy {
    /// `--share-max-secs`.
    pub max_secs: u64,
    /// `--share-max-downloads`.
    pub max_downloads: u64,
    /// Where share URLs point: the app's public URL, without a trailing slash.
    pub public_url: String,
    /// Seconds after a share link's expiry before a download nothing was heard of is given
    /// back (`--share-give-back-secs`): the outcome of a download is reported when its
    /// transfer ends, which may be well after the link expired.
    pub give_back_after_secs: i64,
    /// Whether download outcomes reach this app (all-in-one, or `--outcomes-redis`). Without
    /// them nothing is ever given back: a download not heard of may have been served.
    pub outcomes_known: bool,
}

/// A share id as it appears in URLs (same alphabet as file ids); anything else is `NotFound`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareId(String);

impl ShareId {
    pub fn parse(s: &str) -> Result<ShareId, AppError> {
        FileId::parse(s).map(|id| ShareId(id.as_str().to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The secret of a share URL. Only its hash is ever stored or compared.
#[derive(Clone)]
pub struct ShareSecret(String);

impl ShareSecret {
    /// 22 (128 bits) to 128 characters of base64url: anything else cannot be a share
    /// (`NotFound`).
    pub fn parse(s: &str) -> Result<ShareSecret, AppError> {
        let ok = (22..=128).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(ShareSecret(s.to_owned()))
        } else {
            Err(AppError::NotFound)
        }
    }

    pub(crate) fn generate() -> ShareSecret {
        ShareSecret(shared::random_token(SECRET_BYTES))
    }

    pub(crate) fn hash(&self) -> String {
        stored_hash(&self.0)
    }

    /// The secret itself, for the one answer that shows it (the new link's URL).
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ShareSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShareSecret(***)")
    }
}

/// What an owner asks for; every field optional. No `Debug`: it holds a password.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub struct NewShare {
    pub expires_in_secs: Option<u64>,
    pub max_downloads: Option<u64>,
    pub password: Option<String>,
}

/// A share's state, as its owner sees it. Visitors see only "available" or one neutral page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[derive(utoipa::ToSchema)]
pub enum ShareStatus {
    Live,
    Expired,
    Revoked,
    UsedUp,
}

impl ShareStatus {
    fn of(revoked_at: Option<i64>, expires_at: i64, downloads: i64, max: i64, now: i64) -> Self {
        if revoked_at.is_some() {
            ShareStatus::Revoked
        } else if expires_at <= now {
            ShareStatus::Expired
        } else if downloads >= max {
            ShareStatus::UsedUp
        } else {
            ShareStatus::Live
        }
    }
}

/// A share as its owner's API shows it. `url` only in the answer to its creation: the secret
/// is not stored, so it cannot be shown again.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ShareInfo {
    pub id: String,
    pub file_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub expires_at: i64,
    pub max_downloads: i64,
    pub downloads: i64,
    pub has_password: bool,
    pub created_at: i64,
    pub status: ShareStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
}

/// A share's row as its owner's lists read it, ending with how many of its downloads are
/// owed back ([`owed_count`]).
type ShareRow = (
    String,
    String,
    i64,
    i64,
    i64,
    Option<String>,
    i64,
    Option<i64>,
    i64,
);

const SHARE_COLUMNS: &str = "s.id, s.file_id, s.expires_at, s.max_downloads, s.downloads, \
                             s.password_hash, s.created_at, s.revoked_at";

fn info(row: ShareRow, now: i64) -> ShareInfo {
    let (id, file_id, expires_at, max_downloads, downloads, password, created_at, revoked_at, _) =
        row;
    ShareInfo {
        status: ShareStatus::of(revoked_at, expires_at, downloads, max_downloads, now),
        id,
        file_id,
        url: None,
        expires_at,
        max_downloads,
        downloads,
        has_password: password.is_some(),
        created_at,
        revoked_at,
    }
}

/// SQL: the takes `t` owed back, their link expired before `$N` (`before`, a placeholder)
/// with no served outcome stored. See [`settle`].
fn owed_takes(before: &str) -> String {
    format!(
        "t.given_back = 0 AND t.link_expires_at < {before} AND NOT EXISTS (SELECT 1 FROM \
         download_events e WHERE e.jti = t.jti AND e.outcome IN {SERVED_OUTCOMES})"
    )
}

/// SQL: a column counting the downloads owed back to share `s`, so that looking at a share
/// tells in the same statement whether [`settle`] has anything to do.
fn owed_count(before: &str) -> String {
    format!(
        "(SELECT COUNT(*) FROM share_takes t WHERE t.share_id = s.id AND {})",
        owed_takes(before)
    )
}

/// Links that expired before this are owed back if nothing was served: `--share-give-back-secs`
/// ago. Never, when this app hears no outcomes (see [`settle`]).
fn owed_before(policy: &SharePolicy) -> i64 {
    if policy.outcomes_known {
        crate::now().saturating_sub(policy.give_back_after_secs)
    } else {
        i64::MIN
    }
}

/// Checked settings of a new share.
struct Checked {
    expires_in: i64,
    max_downloads: i64,
    password: Option<Password>,
}

fn check(policy: &SharePolicy, new: NewShare) -> Result<Checked, AppError> {
    let expires_in = new
        .expires_in_secs
        .unwrap_or(DEFAULT_SHARE_SECS.min(policy.max_secs));
    if !(1..=policy.max_secs).contains(&expires_in) {
        return Err(AppError::BadRequest(format!(
            "expires_in_secs must be 1 to {} (--share-max-secs)",
            policy.max_secs
        )));
    }
    let max_downloads = new.max_downloads.unwrap_or(1);
    if !(1..=policy.max_downloads).contains(&max_downloads) {
        return Err(AppError::BadRequest(format!(
            "max_downloads must be 1 to {} (--share-max-downloads)",
            policy.max_downloads
        )));
    }
    let password = match new.password.as_deref() {
        None | Some("") => None,
        Some(p) => Some(Password::parse(p)?),
    };
    Ok(Checked {
        expires_in: i64::try_from(expires_in).unwrap_or(i64::MAX),
        max_downloads: i64::try_from(max_downloads).unwrap_or(i64::MAX),
        password,
    })
}

/// Makes a share of one of the user's files. `NotFound` for another user's file.
pub async fn create(
    db: &AnyPool,
    policy: &SharePolicy,
    user_id: &str,
    file_id: &FileId,
    new: NewShare,
) -> Result<ShareInfo, AppError> {
    let checked = check(policy, new)?;
    owned_file(db, user_id, file_id).await?;
    let password_hash = match checked.password {
        Some(password) => Some(users::blocking(move || users::hash_password(&password)).await?),
        None => None,
    };
    let secret = ShareSecret::generate();
    let id = shared::random_token(16);
    let now = crate::now();
    let expires_at = now.saturating_add(checked.expires_in);
    sqlx::query(
        "INSERT INTO shares (id, secret_hash, file_id, user_id, password_hash, max_downloads, \
         downloads, expires_at, revoked_at, created_at, created_us) \
         VALUES ($1, $2, $3, $4, $5, $6, 0, $7, NULL, $8, $9)",
    )
    .bind(&id)
    .bind(secret.hash())
    .bind(file_id.as_str())
    .bind(user_id)
    .bind(password_hash.clone())
    .bind(checked.max_downloads)
    .bind(expires_at)
    .bind(now)
    .bind(crate::now_micros())
    .execute(db)
    .await?;
    tracing::info!(share = %id, file = file_id.as_str(), user = user_id, "share created");
    Ok(ShareInfo {
        url: Some(format!("{}/s/{}", policy.public_url, secret.0)),
        id,
        file_id: file_id.as_str().to_owned(),
        expires_at,
        max_downloads: checked.max_downloads,
        downloads: 0,
        has_password: password_hash.is_some(),
        created_at: now,
        status: ShareStatus::Live,
        revoked_at: None,
    })
}

async fn owned_file(db: &AnyPool, user_id: &str, file_id: &FileId) -> Result<(), AppError> {
    let found: Option<(String,)> =
        sqlx::query_as("SELECT id FROM files WHERE id = $1 AND user_id = $2")
            .bind(file_id.as_str())
            .bind(user_id)
            .fetch_optional(db)
            .await?;
    found.map(|_| ()).ok_or(AppError::NotFound)
}

/// Every share of one of the user's files, newest first. `NotFound` for another user's file.
pub async fn list_for_file(
    db: &AnyPool,
    policy: &SharePolicy,
    user_id: &str,
    file_id: &FileId,
) -> Result<Vec<ShareInfo>, AppError> {
    owned_file(db, user_id, file_id).await?;
    let now = crate::now();
    let rows = owner_rows(db, policy, user_id, Listed::File(file_id)).await?;
    Ok(rows.into_iter().map(|row| info(row, now)).collect())
}

/// Which of a user's shares an owner's list shows.
#[derive(Clone, Copy)]
enum Listed<'a> {
    /// Every share of one file.
    File(&'a FileId),
    /// The shares neither revoked nor expired at this time, of every file.
    Live(i64),
}

/// The user's `listed` shares, newest first, after giving back what is owed to them: one
/// statement, or (when one of them is owed a download) the give-back and the rows again.
async fn owner_rows(
    db: &AnyPool,
    policy: &SharePolicy,
    user_id: &str,
    listed: Listed<'_>,
) -> Result<Vec<ShareRow>, AppError> {
    let before = owed_before(policy);
    let filter = match listed {
        Listed::File(_) => "s.file_id = $3",
        Listed::Live(_) => "s.revoked_at IS NULL AND s.expires_at > $3",
    };
    let sql = format!(
        "SELECT {SHARE_COLUMNS}, {} FROM shares s WHERE s.user_id = $1 AND {filter} \
         ORDER BY s.created_us DESC",
        owed_count("$2")
    );
    let select = async || -> Result<Vec<ShareRow>, AppError> {
        let query = sqlx::query_as(&sql).bind(user_id).bind(before);
        let query = match listed {
            Listed::File(file_id) => query.bind(file_id.as_str()),
            Listed::Live(now) => query.bind(now),
        };
        Ok(query.fetch_all(db).await?)
    };
    let rows = select().await?;
    if rows.iter().all(|row| row.8 == 0) {
        return Ok(rows);
    }
    settle(db, policy, Owed::Owner(user_id)).await?;
    select().await
}

/// Revokes one of the user's shares at once (every app server reads the same row). Revoking
/// twice is fine; another user's share is `NotFound`.
pub async fn revoke(db: &AnyPool, user_id: &str, id: &ShareId) -> Result<(), AppError> {
    crate::db::revoke_owned(db, "shares", user_id, id.as_str()).await?;
    tracing::info!(share = id.as_str(), user = user_id, "share revoked");
    Ok(())
}

/// The storage key of one of the user's files (`NotFound` for another user's).
pub async fn storage_key_of(
    db: &AnyPool,
    user_id: &str,
    file_id: &FileId,
) -> Result<String, AppError> {
    let found: Option<(String,)> =
        sqlx::query_as("SELECT storage_key FROM files WHERE id = $1 AND user_id = $2")
            .bind(file_id.as_str())
            .bind(user_id)
            .fetch_optional(db)
            .await?;
    found.map(|(key,)| key).ok_or(AppError::NotFound)
}

/// Served downloads through one of the user's shares, newest first.
pub async fn downloads(
    db: &AnyPool,
    user_id: &str,
    id: &ShareId,
) -> Result<Vec<crate::outcomes::ShareDownload>, AppError> {
    let found: Option<(String,)> = sqlx::query_as(
        "SELECT f.storage_key FROM shares s JOIN files f ON f.id = s.file_id \
         WHERE s.id = $1 AND s.user_id = $2",
    )
    .bind(id.as_str())
    .bind(user_id)
    .fetch_optional(db)
    .await?;
    let (key,) = found.ok_or(AppError::NotFound)?;
    crate::outcomes::for_file(db, user_id, &key, Some(id.as_str()), DOWNLOADS_SHOWN).await
}

/// The user's shares the file list shows: not revoked and not expired (live or used up),
/// newest first, each with its downloads. Two statements however many shares there are (the
/// shares, then all their downloads at once), plus a give-back when one is owed.
pub async fn for_file_list(
    db: &AnyPool,
    policy: &SharePolicy,
    user_id: &str,
) -> Result<Vec<OwnerShare>, AppError> {
    let now = crate::now();
    let rows = owner_rows(db, policy, user_id, Listed::Live(now)).await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut downloads: HashMap<String, Vec<crate::outcomes::ShareDownload>> = HashMap::new();
    for download in crate::outcomes::for_live_shares(db, user_id, now, DOWNLOADS_SHOWN).await? {
        if let Some(share) = download.share_id.clone() {
            downloads.entry(share).or_default().push(download);
        }
    }
    Ok(rows
        .into_iter()
        .map(|row| {
            let info = info(row, now);
            let downloads = downloads.remove(&info.id).unwrap_or_default();
            OwnerShare { info, downloads }
        })
        .collect())
}

/// A share as its owner's file list shows it, with the downloads made through it.
pub struct OwnerShare {
    pub info: ShareInfo,
    pub downloads: Vec<crate::outcomes::ShareDownload>,
}

/// What a visitor's page shows of a live share, and what taking a download from it needs.
#[derive(Debug, Clone)]
pub struct Visit {
    pub id: String,
    pub name: String,
    pub size: i64,
    pub expires_at: i64,
    pub downloads_left: i64,
    pub has_password: bool,
    /// The owner, the file's storage key and the password's hash: for [`take`], not shown.
    owner: String,
    storage_key: String,
    password_hash: Option<StoredHash>,
}

/// A share password's argon2 PHC string: never shown, including in `Debug`.
#[derive(Clone)]
struct StoredHash(String);

impl std::fmt::Debug for StoredHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoredHash(***)")
    }
}

/// The live share behind `secret`: `NotFound` for an unknown secret, `ShareGone` for an
/// expired, revoked or used-up one. Reads only (after giving back expired untouched links):
/// one statement, or, when a download is owed back, the give-back and that statement again.
pub async fn visit(
    db: &AnyPool,
    policy: &SharePolicy,
    secret: &ShareSecret,
) -> Result<Visit, AppError> {
    type VisitRow = (
        String,
        String,
        i64,
        i64,
        i64,
        Option<String>,
        Option<i64>,
        String,
        i64,
        String,
        i64,
    );
    let (hash, before) = (secret.hash(), owed_before(policy));
    let sql = format!(
        "SELECT s.id, s.user_id, s.expires_at, s.max_downloads, s.downloads, s.password_hash, \
         s.revoked_at, f.name, f.size, f.storage_key, {} \
         FROM shares s JOIN files f ON f.id = s.file_id WHERE s.secret_hash = $1",
        owed_count("$2")
    );
    let select = async || -> Result<VisitRow, AppError> {
        let row: Option<VisitRow> = sqlx::query_as(&sql)
            .bind(&hash)
            .bind(before)
            .fetch_optional(db)
            .await?;
        row.ok_or(AppError::NotFound)
    };
    let mut row = select().await?;
    if row.10 > 0 {
        settle(db, policy, Owed::Share(&row.0)).await?;
        row = select().await?;
    }
    let (id, owner, expires_at, max, downloads, password, revoked_at, name, size, key, _) = row;
    if ShareStatus::of(revoked_at, expires_at, downloads, max, crate::now()) != ShareStatus::Live {
        return Err(AppError::ShareGone);
    }
    Ok(Visit {
        id,
        name,
        size,
        expires_at,
        downloads_left: max - downloads,
        has_password: password.is_some(),
        owner,
        storage_key: key,
        password_hash: password.map(StoredHash),
    })
}

/// Takes one download of the share a visitor just looked at ([`visit`]) and mints its
/// single-use link.
///
/// In order: throttled (per share and per client address, before any hashing), the password
/// checked (a wrong one takes nothing and costs an attempt), then one atomic statement takes
/// the download or finds none left (revoked, expired or used up since the look: it decides,
/// not the look). The minted link's jti is recorded so that, if it expires unused, the
/// download is given back. Two statements.
pub async fn take(
    db: &AnyPool,
    throttle: &LoginThrottle,
    links: &LinkMinter,
    visit: &Visit,
    password: Option<&str>,
    client: Option<IpAddr>,
) -> Result<Link, AppError> {
    if let Some(StoredHash(phc)) = &visit.password_hash {
        let guess = Guess {
            throttled_as: &visit.id,
            phc,
            password,
            client,
        };
        check_password(throttle, guess, AppError::WrongSharePassword).await?;
    }
    let key = StorageKey::parse(&visit.storage_key).map_err(|_| {
        AppError::Internal(format!("share {} has an invalid storage key", visit.id))
    })?;
    let name =
        DownloadName::parse(&visit.name).unwrap_or_else(|_| DownloadName::sanitize(&visit.name));
    // The one statement that decides: counts and checks at once, on every database.
    let now = crate::now();
    let taken: Option<(String,)> = sqlx::query_as(
        "UPDATE shares SET downloads = downloads + 1 \
         WHERE id = $1 AND downloads < max_downloads AND revoked_at IS NULL \
         AND expires_at > $2 RETURNING id",
    )
    .bind(&visit.id)
    .bind(now)
    .fetch_optional(db)
    .await?;
    if taken.is_none() {
        return Err(AppError::ShareGone);
    }
    let link = links.mint(&visit.owner, &key, &name)?;
    sqlx::query(
        "INSERT INTO share_takes (jti, share_id, taken_at, link_expires_at, given_back) \
         VALUES ($1, $2, $3, $4, 0)",
    )
    .bind(&link.jti)
    .bind(&visit.id)
    .bind(now)
    .bind(i64::try_from(link.expires_at).unwrap_or(i64::MAX))
    .execute(db)
    .await?;
    tracing::info!(share = %visit.id, jti = %link.jti, "share download taken");
    Ok(link)
}

/// A visitor's password against a link's stored hash.
pub(crate) struct Guess<'a> {
    /// The link's id: its own bucket of failures (beside the client address's).
    pub throttled_as: &'a str,
    /// The stored argon2id PHC string.
    pub phc: &'a str,
    pub password: Option<&'a str>,
    pub client: Option<IpAddr>,
}

/// Checks a share's or an upload link's password: throttled per link and per client address
/// with the login throttle's buckets, reserved before hashing (as logins are: parallel
/// guesses cannot overspend it); a wrong or missing password costs an attempt and is `wrong`.
pub(crate) async fn check_password(
    throttle: &LoginThrottle,
    guess: Guess<'_>,
    wrong: AppError,
) -> Result<(), AppError> {
    let attempt = match throttle.reserve(Some(guess.throttled_as), guess.client) {
        Ok(attempt) => attempt,
        Err(refusal) => {
            tracing::info!(link = guess.throttled_as, client = ?guess.client, ?refusal, "link password throttled");
            return Err(refusal.into());
        }
    };
    let candidate = guess.password.unwrap_or("").as_bytes().to_vec();
    let phc = guess.phc.to_owned();
    let matches = users::blocking(move || users::verify_password(&candidate, &phc)).await?;
    if !matches {
        attempt.failed();
        tracing::info!(link = guess.throttled_as, "link password wrong");
        return Err(wrong);
    }
    attempt.succeeded();
    Ok(())
}

/// Whose shares a give-back ([`settle`]) looks at.
#[derive(Debug, Clone, Copy)]
pub enum Owed<'a> {
    /// One share, by id.
    Share(&'a str),
    /// Every share of one user, by user id.
    Owner(&'a str),
}

/// `given_back` of the takes one [`settle`] is giving back, inside its transaction only: no
/// committed row holds it (0: open; 1: given back).
const GIVING_BACK: i64 = 2;

/// Gives back to the shares `owed` names each download whose link expired more than
/// `--share-give-back-secs` ago with no served outcome reported. Each take is given back at
/// most once, whichever app server gets there first: one transaction claims the owed takes
/// (`UPDATE share_takes … WHERE … given_back = 0`, so a concurrent claim finds them taken),
/// takes as many off each share's count as it claimed, and marks them given back; three
/// statements however many shares and takes. A served outcome reported later takes the
/// download again ([`crate::outcomes`]). Nothing is given back when this app hears no
/// download outcomes.
pub async fn settle(db: &AnyPool, policy: &SharePolicy, owed: Owed<'_>) -> Result<(), AppError> {
    if !policy.outcomes_known {
        return Ok(());
    }
    let (column, value) = match owed {
        Owed::Share(id) => ("id", id),
        Owed::Owner(user_id) => ("user_id", user_id),
    };
    let shares = format!("SELECT id FROM shares WHERE {column} = $1");
    let mut tx = db.begin().await?;
    let claimed: Vec<(String, String)> = sqlx::query_as(&format!(
        "UPDATE share_takes AS t SET given_back = {GIVING_BACK} \
         WHERE t.share_id IN ({shares}) AND {} RETURNING jti, share_id",
        owed_takes("$2")
    ))
    .bind(value)
    .bind(owed_before(policy))
    .fetch_all(&mut *tx)
    .await?;
    if !claimed.is_empty() {
        let claimed_of_share = format!(
            "(SELECT COUNT(*) FROM share_takes t WHERE t.share_id = shares.id \
             AND t.given_back = {GIVING_BACK})"
        );
        sqlx::query(&format!(
            "UPDATE shares SET downloads = CASE WHEN downloads > {claimed_of_share} \
             THEN downloads - {claimed_of_share} ELSE 0 END \
             WHERE {column} = $1 AND {claimed_of_share} > 0"
        ))
        .bind(value)
        .execute(&mut *tx)
        .await?;
        sqlx::query(&format!(
            "UPDATE share_takes SET given_back = 1 \
             WHERE given_back = {GIVING_BACK} AND share_id IN ({shares})"
        ))
        .bind(value)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    for (jti, share) in claimed {
        tracing::info!(%share, %jti, "unused share download given back");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> SharePolicy {
        SharePolicy {
            max_secs: 30 * 24 * 3600,
            max_downloads: 100,
            public_url: "http://x".into(),
            give_back_after_secs: 300,
            outcomes_known: true,
        }
    }

    #[test]
    fn defaults_and_caps() {
        let c = check(&policy(), NewShare::default()).unwrap();
        assert_eq!((c.expires_in, c.max_downloads), (7 * 24 * 3600, 1));
        assert!(c.password.is_none());
        let short = SharePolicy {
            max_secs: 60,
            ..policy()
        };
        assert_eq!(check(&short, NewShare::default()).unwrap().expires_in, 60);
        for (secs, n) in [
            (Some(0), None),
            (Some(30 * 24 * 3600 + 1), None),
            (None, Some(0)),
            (None, Some(101)),
        ] {
            let new = NewShare {
                expires_in_secs: secs,
                max_downloads: n,
                password: None,
            };
            assert!(check(&policy(), new).is_err(), "{secs:?} {n:?}");
        }
    }

    #[test]
    fn secrets_are_long_and_never_shown() {
        let secret = ShareSecret::generate();
        assert!(secret.0.len() >= 22, "at least 128 bits");
        assert!(ShareSecret::parse(&secret.0).is_ok());
        assert!(!format!("{secret:?}").contains(&secret.0));
        for bad in [
            "",
            "short",
            "../../etc/passwd/../../../../..",
            &"x".repeat(129),
        ] {
            assert!(ShareSecret::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn status_order() {
        assert_eq!(ShareStatus::of(Some(1), 10, 0, 1, 5), ShareStatus::Revoked);
        assert_eq!(ShareStatus::of(None, 5, 0, 1, 5), ShareStatus::Expired);
        assert_eq!(ShareStatus::of(None, 10, 1, 1, 5), ShareStatus::UsedUp);
        assert_eq!(ShareStatus::of(None, 10, 0, 1, 5), ShareStatus::Live);
    }
}
