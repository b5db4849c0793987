//! The database pool: SQLite by default, PostgreSQL through `DATABASE_URL`, both through
//! sqlx's `Any` driver, so every query is written once in portable SQL (`$1` placeholders,
//! TEXT and BIGINT only).

use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor};

use crate::error::{AppError, StartupError};

/// Connects and brings the schema up to date.
pub async fn connect(url: &str) -> Result<AnyPool, StartupError> {
    sqlx::any::install_default_drivers();
    let sqlite = url.starts_with("sqlite:");
    if let Some(path) = sqlite_file(url) {
        create_private(path).await?;
    }
    let pool = AnyPoolOptions::new()
        .max_connections(if sqlite { 4 } else { 10 })
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                if sqlite {
                    // Per connection: enforce ON DELETE CASCADE, wait on a locked database
                    // rather than failing, and let readers run beside the one writer.
                    conn.execute(
                        "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; \
                         PRAGMA journal_mode = WAL;",
                    )
                    .await?;
                }
                Ok(())
            })
        })
        .connect(url)
        .await?;
    sqlx::migrate!().run(&pool).await?;
    Ok(pool)
}

/// Whether `url` names a PostgreSQL database (else SQLite).
pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The file of a `sqlite:` URL (`sqlite://data/app.db?mode=rwc`, `sqlite:app.db`); `None` for an
/// in-memory database or another scheme.
fn sqlite_file(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split(['?', '#']).next().unwrap_or("");
    (!path.is_empty() && !path.starts_with(":memory:")).then_some(path)
}

/// Creates the SQLite file 0600 before SQLite does (it would follow the umask, 0644 with the
/// usual one). SQLite gives the WAL and shared-memory files the database's mode, so they are
/// private too. An existing file is left as it is.
async fn create_private(path: &str) -> Result<(), StartupError> {
    let owned = path.to_owned();
    let created = tokio::task::spawn_blocking(move || {
        server_kit::permissions::create_options(server_kit::permissions::FILE_MODE)
            .create_new(true)
            .open(&owned)
            .map(drop)
    })
    .await
    .map_err(|e| std::io::Error::other(e.to_string()))
    .and_then(|created| created);
    match created {
        Ok(()) => Ok(()),
        // Another app server made it first, or a missing directory SQLite will report.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::AlreadyExists | std::io::ErrorKind::NotFound
            ) =>
        {
            Ok(())
        }
        Err(source) => Err(StartupError::Io {
            what: format!("creating the database file {path}"),
            source,
        }),
    }
}

/// What the database stores for a secret a client presents (a session id, an access token, a
/// share secret): hex SHA-256, so a leaked database hands out nothing live. Looking a row up by
/// this hash leaks nothing useful through timing, as the secret itself never reaches the
/// comparison.
pub fn stored_hash(secret: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(secret.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

/// Revokes row `id` of `table` for its owner `user_id`, at once (every app server reads the
/// same row): sets `revoked_at`, unless it is set already, so revoking twice is fine and keeps
/// the first time. A row the user does not own, or none, is `NotFound`. `table` is one of ours
/// with `id`, `user_id` and `revoked_at` columns (shares, upload links), never input.
pub async fn revoke_owned(
    db: &AnyPool,
    table: &'static str,
    user_id: &str,
    id: &str,
) -> Result<(), AppError> {
    let found: Option<(String,)> = sqlx::query_as(&format!(
        "SELECT id FROM {table} WHERE id = $1 AND user_id = $2"
    ))
    .bind(id)
    .bind(user_id)
    .fetch_optional(db)
    .await?;
    if found.is_none() {
        return Err(AppError::NotFound);
    }
    sqlx::query(&format!(
        "UPDATE {table} SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL"
    ))
    .bind(crate::now())
    .bind(id)
    .bind(user_id)
    .execute(db)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::sqlite_file;

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(
            sqlite_file("sqlite://data/app.db?mode=rwc"),
            Some("data/app.db")
        );
        assert_eq!(
            sqlite_file("sqlite:///var/lib/b/app.db"),
            Some("/var/lib/b/app.db")
        );
        assert_eq!(sqlite_file("sqlite:app.db"), Some("app.db"));
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("sqlite://:memory:?cache=shared"), None);
        assert_eq!(sqlite_file("postgres://u:p@h/db"), None);
    }
}
