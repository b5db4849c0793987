//! The database pool: SQLite by default, PostgreSQL through `DATABASE_URL`, both through
//! sqlx's `Any` driver, so every query is written once in portable SQL (`$1` placeholders,
//! TEXT and BIGINT only).

use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor};

use crate::error::StartupError;

/// Connects and brings the schema up to date.
pub async fn connect(url: &str) -> Result<AnyPool, StartupError> {
    sqlx::any::install_default_drivers();
    let sqlite = url.starts_with("sqlite:");
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
