//! Users: the username and password rules, argon2id hashing, and the user table.
//!
//! Hashing and verification are CPU-heavy by design, so they always run on the blocking pool,
//! never on the async runtime.

use std::fmt;
use std::sync::PoisonError;

use argon2::password_hash::{self, Output, ParamsString, PasswordHash, SaltString};
use argon2::{Argon2, Block, Params};
use sqlx::AnyPool;

use crate::error::AppError;

/// 1 to 64 characters of `A-Z a-z 0-9 . _ -`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(s: &str) -> Result<Username, AppError> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(Username(s.to_owned()))
        } else {
            Err(AppError::BadRequest(
                "a username is 1 to 64 characters of A-Z a-z 0-9 . _ -".into(),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Username {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A password: 8 to 1024 bytes. Never shown, including in `Debug`.
#[derive(Clone)]
pub struct Password(String);

pub const MIN_PASSWORD_BYTES: usize = 8;
pub const MAX_PASSWORD_BYTES: usize = 1024;

impl Password {
    pub fn parse(s: &str) -> Result<Password, AppError> {
        if (MIN_PASSWORD_BYTES..=MAX_PASSWORD_BYTES).contains(&s.len()) {
            Ok(Password(s.to_owned()))
        } else {
            Err(AppError::BadRequest(format!(
                "a password is {MIN_PASSWORD_BYTES} to {MAX_PASSWORD_BYTES} bytes"
            )))
        }
    }

    fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// An argon2id PHC string (argon2 crate defaults: m=19456 KiB, t=2, p=1).
pub fn hash_password(password: &Password) -> Result<String, AppError> {
    let mut salt = [0u8; 16];
    rand::fill(&mut salt);
    let argon = Argon2::default();
    let output = argon2_output(&argon, password.expose(), &salt, Params::DEFAULT_OUTPUT_LEN)?;
    let salt = SaltString::encode_b64(&salt).map_err(hash_error)?;
    let phc = PasswordHash {
        algorithm: argon2::Algorithm::default().ident(),
        version: Some(argon2::Version::default().into()),
        params: ParamsString::try_from(argon.params()).map_err(hash_error)?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// True when `password` matches the PHC string `phc`; a malformed stored hash is an error.
pub fn verify_password(password: &[u8], phc: &str) -> Result<bool, AppError> {
    let stored = |e: password_hash::Error| AppError::Internal(format!("stored hash: {e}"));
    let hash = PasswordHash::new(phc).map_err(stored)?;
    let algorithm = argon2::Algorithm::try_from(hash.algorithm).map_err(stored)?;
    let version = match hash.version {
        Some(v) => argon2::Version::try_from(v).map_err(|e| stored(e.into()))?,
        None => argon2::Version::default(),
    };
    let params = Params::try_from(&hash).map_err(stored)?;
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return Err(stored(password_hash::Error::PhcStringField));
    };
    let mut salt_bytes = [0u8; 64];
    let salt = salt.decode_b64(&mut salt_bytes).map_err(stored)?;
    let argon = Argon2::new(algorithm, version, params);
    let output = argon2_output(&argon, password, salt, expected.len())?;
    // `Output`'s equality is constant-time.
    Ok(output == expected)
}

fn hash_error(e: password_hash::Error) -> AppError {
    AppError::Internal(format!("hashing a password: {e}"))
}

/// Argon2 working memory (19 MiB per hash), kept for the next hash. Allocated and freed per
/// hash, it landed in the malloc arena of whichever blocking thread ran it, and glibc keeps
/// each arena at its peak: a 10-minute soak grew the app to 1.6 GB in 25 arenas of about
/// 60 MB. Reused, there are never more buffers than hashes at once ([`MAX_CONCURRENT_HASHES`]).
static ARGON2_MEMORY: std::sync::Mutex<Vec<Vec<Block>>> = std::sync::Mutex::new(Vec::new());

/// The argon2 output for `password` and `salt`, computed in reused memory.
fn argon2_output(
    argon: &Argon2<'_>,
    password: &[u8],
    salt: &[u8],
    len: usize,
) -> Result<Output, AppError> {
    let pool = || ARGON2_MEMORY.lock().unwrap_or_else(PoisonError::into_inner);
    let mut memory = pool().pop().unwrap_or_default();
    let blocks = argon.params().block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let output = Output::init_with(len, |out| {
        argon
            .hash_password_into_with_memory(password, salt, out, &mut memory[..blocks])
            .map_err(password_hash::Error::from)
    });
    pool().push(memory);
    output.map_err(hash_error)
}

/// Password hashes computed at once, process-wide. Each argon2id hash takes 19 MiB and a
/// core for tens of milliseconds: unbounded, a burst of logins grows memory without limit
/// (a 10-minute soak reached 1.3 GB) and starves every other request of CPU. Waiting here
/// is the cheap part: the login throttle reserves each attempt before it queues here and
/// bounds the logins waiting (`--max-pending-logins`), so a flood is refused, not queued.
static HASHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_CONCURRENT_HASHES);
const MAX_CONCURRENT_HASHES: usize = 4;

/// Runs password hashing on the blocking pool, at most [`MAX_CONCURRENT_HASHES`] at a time.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, AppError> + Send + 'static,
) -> Result<T, AppError> {
    let _permit = HASHING
        .acquire()
        .await
        .map_err(|e| AppError::Internal(format!("hashing semaphore: {e}")))?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| AppError::Internal(format!("blocking task: {e}")))?
}

/// A hash of a random password, computed once at start: verifying an unknown user's login
/// against it costs what a wrong password costs, so timing does not tell which users exist.
pub async fn dummy_hash() -> Result<String, AppError> {
    blocking(|| {
        let password = Password(shared::random_token(24));
        hash_password(&password)
    })
    .await
}

/// The stored password hash of a user who signs in through the identity provider: not a PHC
/// string, so no password verifies against it ([`authenticate`] treats it as an unknown user).
pub const NO_PASSWORD: &str = "!";

/// A stored user.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub username: Username,
}

/// Creates a user; `UserExists` when the name is taken.
pub async fn create(
    db: &AnyPool,
    username: &Username,
    password: Password,
) -> Result<User, AppError> {
    if find(db, username).await?.is_some() {
        return Err(AppError::UserExists(username.to_string()));
    }
    let hash = blocking(move || hash_password(&password)).await?;
    let id = shared::random_token(16);
    let inserted = sqlx::query(
        "INSERT INTO users (id, username, password_hash, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(&id)
    .bind(username.as_str())
    .bind(&hash)
    .bind(crate::now())
    .execute(db)
    .await;
    match inserted {
        Ok(_) => Ok(User {
            id,
            username: username.clone(),
        }),
        // Lost a race with another insert of the same name.
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            Err(AppError::UserExists(username.to_string()))
        }
        Err(e) => Err(e.into()),
    }
}

async fn find(db: &AnyPool, username: &Username) -> Result<Option<(String, String)>, AppError> {
    Ok(sqlx::query_as::<_, (String, String)>(
        "SELECT id, password_hash FROM users WHERE username = $1",
    )
    .bind(username.as_str())
    .fetch_optional(db)
    .await?)
}

/// Checks a login. Unknown users, malformed names and wrong passwords all cost one argon2
/// verification and all answer `InvalidCredentials`.
pub async fn authenticate(
    db: &AnyPool,
    dummy_hash: &str,
    username: &str,
    password: &str,
) -> Result<User, AppError> {
    let parsed = Username::parse(username).ok();
    let found = match &parsed {
        Some(name) => find(db, name).await?,
        None => None,
    };
    let (id, phc) = match &found {
        Some((id, phc)) if phc != NO_PASSWORD => (Some(id.clone()), phc.clone()),
        _ => (None, dummy_hash.to_owned()),
    };
    let candidate = password.as_bytes().to_vec();
    let matches = blocking(move || verify_password(&candidate, &phc)).await?;
    match (matches, id, parsed) {
        (true, Some(id), Some(username)) => Ok(User { id, username }),
        _ => Err(AppError::InvalidCredentials),
    }
}

/// Sets a new password and ends every session and access token of the user. `NotFound` for an unknown user.
pub async fn change_password(
    db: &AnyPool,
    username: &Username,
    password: Password,
) -> Result<(), AppError> {
    let (id, phc) = find(db, username).await?.ok_or(AppError::NotFound)?;
    if phc == NO_PASSWORD {
        return Err(AppError::BadRequest(format!(
            "{username} signs in through the identity provider and has no password"
        )));
    }
    let hash = blocking(move || hash_password(&password)).await?;
    let mut tx = db.begin().await?;
    sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
        .bind(&hash)
        .bind(&id)
        .execute(&mut *tx)
        .await?;
    for table in [
        "DELETE FROM sessions WHERE user_id = $1",
        "DELETE FROM access_tokens WHERE user_id = $1",
    ] {
        sqlx::query(table).bind(&id).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Deletes a user with their sessions, shares, download history and file rows, then their
/// stored files. Returns how many
/// files were removed from disk. `NotFound` for an unknown user.
pub async fn delete(
    db: &AnyPool,
    files: &file_store::Files,
    username: &Username,
) -> Result<usize, AppError> {
    let (id, _) = find(db, username).await?.ok_or(AppError::NotFound)?;
    let keys: Vec<(String,)> = sqlx::query_as("SELECT storage_key FROM files WHERE user_id = $1")
        .bind(&id)
        .fetch_all(db)
        .await?;
    let parts = crate::uploads::unfinished_parts(db, &id).await?;
    let mut tx = db.begin().await?;
    // Explicit deletes as well as ON DELETE CASCADE: a SQLite connection without
    // foreign_keys=ON would otherwise leave orphans.
    for table in [
        "DELETE FROM sessions WHERE user_id = $1",
        "DELETE FROM access_tokens WHERE user_id = $1",
        "DELETE FROM share_takes WHERE share_id IN (SELECT id FROM shares WHERE user_id = $1)",
        "DELETE FROM shares WHERE user_id = $1",
        "DELETE FROM download_events WHERE user_id = $1",
        "DELETE FROM files WHERE user_id = $1",
        "DELETE FROM uploads WHERE user_id = $1",
        "DELETE FROM oidc_identities WHERE user_id = $1",
        "DELETE FROM users WHERE id = $1",
    ] {
        sqlx::query(table).bind(&id).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    for (key, state) in parts {
        crate::uploads::discard(files, &key, &state).await;
    }
    let mut removed = 0;
    for (key,) in keys {
        let Ok(key) = shared::StorageKey::parse(&key) else {
            continue;
        };
        match file_store::FileStore::delete(files, &key).await {
            Ok(()) => removed += 1,
            Err(e) => tracing::warn!(error = %e, "could not remove a deleted user's file"),
        }
    }
    Ok(removed)
}

/// True when no user exists yet.
pub async fn none_exist(db: &AnyPool) -> Result<bool, AppError> {
    let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users")
        .fetch_one(db)
        .await?;
    Ok(count == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn username_rules() {
        for good in ["a", "alice", "A.b_c-9", &"x".repeat(64)] {
            assert!(Username::parse(good).is_ok(), "{good:?}");
        }
        for bad in ["", "a b", "a/b", "ä", "a@b", &"x".repeat(65), "<script>"] {
            assert!(Username::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn password_rules_and_redaction() {
        assert!(Password::parse("1234567").is_err());
        assert!(Password::parse(&"x".repeat(1025)).is_err());
        let password = Password::parse("correct horse").unwrap();
        assert!(!format!("{password:?}").contains("horse"));
    }

    #[test]
    fn hashes_verify_and_reject() {
        let password = Password::parse("correct horse").unwrap();
        let phc = hash_password(&password).unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify_password(b"correct horse", &phc).unwrap());
        assert!(!verify_password(b"wrong horse", &phc).unwrap());
    }

    /// Hashes stored before hashing moved to reused memory still verify, ours verify with
    /// the argon2 crate's own verifier, and other parameters in a stored hash are honoured.
    #[test]
    fn hashes_agree_with_the_argon2_crate() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let salt = SaltString::encode_b64(b"sixteen byte sal").unwrap();
        let theirs = Argon2::default()
            .hash_password(b"correct horse", &salt)
            .unwrap()
            .to_string();
        assert!(verify_password(b"correct horse", &theirs).unwrap());
        assert!(!verify_password(b"correct horsf", &theirs).unwrap());

        let ours = hash_password(&Password::parse("correct horse").unwrap()).unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", &parsed)
                .is_ok()
        );

        let small = Params::new(1024, 1, 1, None).unwrap();
        let argon = Argon2::new(argon2::Algorithm::Argon2i, argon2::Version::V0x10, small);
        let other = argon.hash_password(b"pw", &salt).unwrap().to_string();
        assert!(verify_password(b"pw", &other).unwrap());
        assert!(!verify_password(b"pX", &other).unwrap());
        assert!(verify_password(b"pw", "$argon2id$v=19$m=19456,t=2,p=1$bad").is_err());
    }
}
