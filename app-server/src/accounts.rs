//! What administrators see and do (`/admin/users`): every user with how they sign in, and
//! ending all of a user's sessions at once (a lost laptop, someone leaving). An administrator
//! is a user whose `is_admin` is set: by `app-server user add --admin` or `user admin NAME`,
//! or at each sign-in through the provider from `--oidc-admin-groups`.

use sqlx::AnyPool;

use crate::error::AppError;
use crate::sessions::{Session, SessionPolicy};
use crate::users::Username;

/// The administrators' Users page.
pub const USERS_PATH: &str = "/admin/users";

/// How a user logs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginMethod {
    Password,
    /// Through the identity provider `issuer`; last signed in at `last_login_at`.
    Provider {
        issuer: String,
        last_login_at: i64,
    },
}

/// A user as the Users page lists them.
#[derive(Debug, Clone)]
pub struct Account {
    pub id: String,
    pub username: String,
    pub admin: bool,
    pub method: LoginMethod,
    pub created_at: i64,
    /// Sessions that have not expired.
    pub sessions: i64,
}

/// A user id from a URL: what `users` ids look like, else `NotFound`.
pub struct UserId(String);

impl UserId {
    pub fn parse(s: &str) -> Result<UserId, AppError> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(UserId(s.to_owned()))
        } else {
            Err(AppError::NotFound)
        }
    }
}

/// `AdminOnly` unless `session` is an administrator's.
pub fn require_admin(session: &Session) -> Result<(), AppError> {
    if session.is_admin {
        Ok(())
    } else {
        Err(AppError::AdminOnly)
    }
}

/// id, username, is_admin, created_at, issuer, last_login_at, live sessions.
type AccountRow = (String, String, i64, i64, Option<String>, Option<i64>, i64);

/// Every user, by name, in one query.
pub async fn list(db: &AnyPool, policy: &SessionPolicy) -> Result<Vec<Account>, AppError> {
    let now = crate::now();
    let rows: Vec<AccountRow> = sqlx::query_as(
        "SELECT u.id, u.username, u.is_admin, u.created_at, i.issuer, i.last_login_at, \
                    (SELECT COUNT(*) FROM sessions s WHERE s.user_id = u.id \
                       AND s.last_seen >= $1 AND s.created_at >= $2) \
             FROM users u LEFT JOIN oidc_identities i ON i.user_id = u.id \
             ORDER BY u.username",
    )
    .bind(now.saturating_sub(policy.idle_secs))
    .bind(now.saturating_sub(policy.max_secs))
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, username, admin, created_at, issuer, last_login_at, sessions)| Account {
                id,
                username,
                admin: admin != 0,
                method: match issuer {
                    Some(issuer) => LoginMethod::Provider {
                        issuer,
                        last_login_at: last_login_at.unwrap_or(created_at),
                    },
                    None => LoginMethod::Password,
                },
                created_at,
                sessions,
            },
        )
        .collect())
}

/// Ends every session of the user `id` (their access tokens stay: revoking those is theirs,
/// or `app-server user passwd`/`del`). Returns the user's name; `NotFound` for no such user.
pub async fn end_sessions(db: &AnyPool, id: &UserId) -> Result<String, AppError> {
    let (username,): (String,) = sqlx::query_as("SELECT username FROM users WHERE id = $1")
        .bind(&id.0)
        .fetch_optional(db)
        .await?
        .ok_or(AppError::NotFound)?;
    let ended = sqlx::query("DELETE FROM sessions WHERE user_id = $1")
        .bind(&id.0)
        .execute(db)
        .await?
        .rows_affected();
    tracing::info!(user = %username, ended, "an administrator ended a user's sessions");
    Ok(username)
}

/// Makes the user named `username` an administrator, or not; `NotFound` for no such user.
pub async fn set_admin_by_name(
    db: &AnyPool,
    username: &Username,
    admin: bool,
) -> Result<(), AppError> {
    let changed = sqlx::query("UPDATE users SET is_admin = $1 WHERE username = $2")
        .bind(i64::from(admin))
        .bind(username.as_str())
        .execute(db)
        .await?
        .rows_affected();
    if changed == 0 {
        return Err(AppError::NotFound);
    }
    Ok(())
}

/// Makes the user `user_id` an administrator, or not.
pub async fn set_admin(db: &AnyPool, user_id: &str, admin: bool) -> Result<(), AppError> {
    sqlx::query("UPDATE users SET is_admin = $1 WHERE id = $2")
        .bind(i64::from(admin))
        .bind(user_id)
        .execute(db)
        .await?;
    Ok(())
}
