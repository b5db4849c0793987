//! Sign-ins waiting for the provider's answer, kept server-side (any app server of a fleet may
//! get the answer): the `nonce` and PKCE verifier under the hash of their `state`, each
//! usable once, for [`PENDING_SECS`], and only from the browser that started it: the
//! browser holds a random binding value in an HttpOnly cookie, the table its hash. An answer
//! carried to another browser (login CSRF, RFC 6749 section 10.12) finds no sign-in there.

use openidconnect::{CsrfToken, Nonce, PkceCodeVerifier};
use sqlx::AnyPool;

use super::failure::Failure;
use crate::error::AppError;

/// How long a started sign-in waits for the provider's answer.
pub const PENDING_SECS: i64 = 600;
/// Most sign-ins waiting at once, over all browsers: each costs a row until it expires, and
/// starting one needs no account, so the table is bounded (beyond: 429 `busy`).
const MAX_PENDING: i64 = 10_000;

/// What a sign-in keeps until the provider answers.
pub struct Pending {
    pub nonce: Nonce,
    pub pkce_verifier: PkceCodeVerifier,
}

/// Keeps a started sign-in for the browser whose binding value is `browser`. Expired ones
/// are deleted first.
pub async fn store(
    db: &AnyPool,
    state: &CsrfToken,
    browser: &str,
    pending: &Pending,
) -> Result<(), AppError> {
    let now = crate::now();
    sqlx::query("DELETE FROM oidc_logins WHERE expires_at < $1")
        .bind(now)
        .execute(db)
        .await?;
    let (waiting,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM oidc_logins")
        .fetch_one(db)
        .await?;
    if waiting >= MAX_PENDING {
        tracing::warn!(
            waiting,
            "sign-in refused: too many waiting for the provider"
        );
        return Err(Failure::Busy.into());
    }
    sqlx::query(
        "INSERT INTO oidc_logins (state_hash, browser_hash, nonce, pkce_verifier, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(crate::db::stored_hash(state.secret()))
    .bind(crate::db::stored_hash(browser))
    .bind(pending.nonce.secret())
    .bind(pending.pkce_verifier.secret())
    .bind(now.saturating_add(PENDING_SECS))
    .execute(db)
    .await?;
    Ok(())
}

/// Takes (deletes) the sign-in `state` names, whatever comes next: a `state` works once.
/// `Failure::State` when there is none, it expired, or `browser` is not the binding value
/// of the browser that started it.
pub async fn take(db: &AnyPool, state: &str, browser: Option<&str>) -> Result<Pending, AppError> {
    let row: Option<(String, String, String, i64)> = sqlx::query_as(
        "DELETE FROM oidc_logins WHERE state_hash = $1 \
         RETURNING browser_hash, nonce, pkce_verifier, expires_at",
    )
    .bind(crate::db::stored_hash(state))
    .fetch_optional(db)
    .await?;
    let Some((browser_hash, nonce, verifier, expires_at)) = row else {
        tracing::info!("sign-in answer with an unknown or used state");
        return Err(Failure::State.into());
    };
    let same_browser = browser.is_some_and(|value| {
        crate::sessions::csrf_matches(&browser_hash, &crate::db::stored_hash(value))
    });
    if !same_browser {
        tracing::warn!("sign-in answer brought by another browser than the one that started it");
        return Err(Failure::State.into());
    }
    if expires_at < crate::now() {
        tracing::info!("sign-in answer after the sign-in expired");
        return Err(Failure::State.into());
    }
    Ok(Pending {
        nonce: Nonce::new(nonce),
        pkce_verifier: PkceCodeVerifier::new(verifier),
    })
}

/// Forgets the sign-in `state` names, if any (the provider answered with an error).
pub async fn forget(db: &AnyPool, state: &str) -> Result<(), AppError> {
    sqlx::query("DELETE FROM oidc_logins WHERE state_hash = $1")
        .bind(crate::db::stored_hash(state))
        .execute(db)
        .await?;
    Ok(())
}
