//! Personal access tokens: how programs (scripts, CI jobs, the `burnlink` CLI) call the JSON
//! API without a browser session.
//!
//! A token is `blpat_` followed by 256 random bits (base64url): the fixed prefix lets secret
//! scanners recognise a leaked one. Only its SHA-256 is stored, as for session ids. A token is
//! sent as `Authorization: Bearer <token>` (RFC 6750 section 2.1) on `/api/*`; a browser never
//! attaches that header by itself, so such a request needs no CSRF token. Each token carries
//! scopes, and each API route names the one scope it needs beside its handler (its OpenAPI
//! `security`, read into [`RouteScopes`] at start-up); a route that names none (token
//! management, logout, `/api/me`) is refused to every token, so a token can never mint more
//! tokens. Revoking deletes the row; so do a password change and the
//! user's deletion.

use std::fmt;

use actix_web::http::Method;
use serde::{Deserialize, Serialize};
use sqlx::AnyPool;

use crate::db::stored_hash;
use crate::error::AppError;

/// What every token starts with.
pub const TOKEN_PREFIX: &str = "blpat_";
/// Random bytes after the prefix (256 bits).
const TOKEN_BYTES: usize = 32;
/// Most tokens one user may hold.
pub const MAX_TOKENS_PER_USER: i64 = 50;
/// Longest lifetime a token may be given: about ten years.
pub const MAX_EXPIRES_IN_SECS: u64 = 10 * 366 * 86_400;
/// `last_used_at` is written at most this often.
const TOUCH_INTERVAL: i64 = 60;

/// What a token may do.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
pub enum Scope {
    /// List files, their shares and downloads.
    #[serde(rename = "files:read")]
    FilesRead,
    /// Upload and delete files.
    #[serde(rename = "files:write")]
    FilesWrite,
    /// Create and revoke share links.
    #[serde(rename = "shares:write")]
    SharesWrite,
    /// Mint one-time download links.
    #[serde(rename = "links:mint")]
    LinksMint,
    /// List webhooks and their delivery logs.
    #[serde(rename = "webhooks:read")]
    WebhooksRead,
    /// Add, rotate, test, re-enable and delete webhooks.
    #[serde(rename = "webhooks:write")]
    WebhooksWrite,
    /// Create and revoke upload links.
    #[serde(rename = "uploads:write")]
    UploadsWrite,
}

impl Scope {
    pub const ALL: [Scope; 7] = [
        Scope::FilesRead,
        Scope::FilesWrite,
        Scope::SharesWrite,
        Scope::LinksMint,
        Scope::WebhooksRead,
        Scope::WebhooksWrite,
        Scope::UploadsWrite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::FilesRead => "files:read",
            Scope::FilesWrite => "files:write",
            Scope::SharesWrite => "shares:write",
            Scope::LinksMint => "links:mint",
            Scope::WebhooksRead => "webhooks:read",
            Scope::WebhooksWrite => "webhooks:write",
            Scope::UploadsWrite => "uploads:write",
        }
    }

    pub fn parse(s: &str) -> Result<Scope, AppError> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| AppError::BadRequest(format!("unknown scope {s:?}")))
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The scope each `/api` route needs from a token, by method and route pattern, as each route
/// declares it beside its handler (`routes::api` reads it from the routes as registered). A
/// route that is not here is refused to tokens (403 `insufficient_scope`), whatever their
/// scopes.
#[derive(Debug, Default)]
pub struct RouteScopes(Vec<(Method, String, Scope)>);

impl RouteScopes {
    pub fn insert(&mut self, method: Method, pattern: &str, scope: Scope) {
        self.0.push((method, pattern.to_owned(), scope));
    }

    /// The scope `method pattern` needs; `None`: a browser session only.
    pub fn required(&self, method: &Method, pattern: &str) -> Option<Scope> {
        self.0
            .iter()
            .find(|(m, p, _)| m == method && p == pattern)
            .map(|(_, _, scope)| *scope)
    }
}

/// A token's name: 1 to 64 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenName(String);

impl TokenName {
    pub fn parse(s: &str) -> Result<TokenName, AppError> {
        let s = s.trim();
        if s.is_empty() || s.chars().count() > 64 || s.chars().any(char::is_control) {
            return Err(AppError::BadRequest(
                "a token name is 1 to 64 characters, none of them control characters".into(),
            ));
        }
        Ok(TokenName(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A token id as a path segment (`DELETE /api/tokens/{id}`): what [`crate::files::FileId`]
/// accepts; anything else is simply not found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenId(String);

impl TokenId {
    pub fn parse(s: &str) -> Result<TokenId, AppError> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(TokenId(s.to_owned()))
        } else {
            Err(AppError::NotFound)
        }
    }
}

/// `POST /api/tokens` body. `expires_in_secs` absent or null: the token does not expire.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub name: String,
    pub scopes: Vec<String>,
    #[serde(default)]
    pub expires_in_secs: Option<u64>,
}

/// The answer to a creation: the only time `token` is ever shown.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    pub id: String,
    /// The secret: shown once, stored only as a hash.
    pub token: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    /// Unix seconds; null: never.
    pub expires_at: Option<i64>,
}

impl fmt::Debug for CreatedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatedToken")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A token as its owner's list shows it (never the secret).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub created_at: i64,
    /// Unix seconds; null: never.
    pub expires_at: Option<i64>,
    /// Unix seconds, to the minute; null: never used.
    pub last_used_at: Option<i64>,
}

/// A request authenticated by a token: whose, and what it may do.
#[derive(Debug, Clone)]
pub struct TokenGrant {
    pub token_id: String,
    pub user_id: String,
    pub username: String,
    pub scopes: Vec<Scope>,
}

impl TokenGrant {
    /// Refuses a route needing a scope this token lacks, or a browser session (`None`).
    pub fn allow(&self, required: Option<Scope>) -> Result<(), AppError> {
        match required {
            Some(scope) if self.scopes.contains(&scope) => Ok(()),
            Some(scope) => Err(AppError::InsufficientScope(scope.as_str())),
            None => Err(AppError::InsufficientScope("a browser session")),
        }
    }
}

fn parse_scopes(list: &[String]) -> Result<Vec<Scope>, AppError> {
    let mut scopes = list
        .iter()
        .map(|s| Scope::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    scopes.sort();
    scopes.dedup();
    if scopes.is_empty() {
        return Err(AppError::BadRequest(
            "a token needs at least one scope".into(),
        ));
    }
    Ok(scopes)
}

fn stored_scopes(s: &str) -> Vec<Scope> {
    s.split(' ').filter_map(|s| Scope::parse(s).ok()).collect()
}

fn join_scopes(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Creates a token for `user_id`. Refuses an unknown scope, an empty scope list, a bad name,
/// a zero or too long lifetime (400), and more than [`MAX_TOKENS_PER_USER`] tokens (409).
pub async fn create(db: &AnyPool, user_id: &str, new: NewToken) -> Result<CreatedToken, AppError> {
    let name = TokenName::parse(&new.name)?;
    let scopes = parse_scopes(&new.scopes)?;
    let now = crate::now();
    let expires_at = match new.expires_in_secs {
        None => None,
        Some(secs) if (1..=MAX_EXPIRES_IN_SECS).contains(&secs) => {
            Some(now.saturating_add(secs as i64))
        }
        Some(_) => {
            return Err(AppError::BadRequest(format!(
                "expires_in_secs is 1 to {MAX_EXPIRES_IN_SECS}, or null for no expiry"
            )));
        }
    };
    let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM access_tokens WHERE user_id = $1")
        .bind(user_id)
        .fetch_one(db)
        .await?;
    if count >= MAX_TOKENS_PER_USER {
        return Err(AppError::TooManyTokens(MAX_TOKENS_PER_USER as u64));
    }
    let id = shared::random_token(12);
    let token = format!("{TOKEN_PREFIX}{}", shared::random_token(TOKEN_BYTES));
    sqlx::query(
        "INSERT INTO access_tokens \
         (id, token_hash, user_id, name, scopes, created_at, created_us, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&id)
    .bind(stored_hash(&token))
    .bind(user_id)
    .bind(name.as_str())
    .bind(join_scopes(&scopes))
    .bind(now)
    .bind(crate::now_micros())
    .bind(expires_at)
    .execute(db)
    .await?;
    tracing::info!(token_id = %id, scopes = %join_scopes(&scopes), "access token created");
    Ok(CreatedToken {
        id,
        token,
        name: name.0,
        scopes,
        expires_at,
    })
}

/// The user's tokens, newest first.
pub async fn list(db: &AnyPool, user_id: &str) -> Result<Vec<TokenInfo>, AppError> {
    type Row = (String, String, String, i64, Option<i64>, Option<i64>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, name, scopes, created_at, expires_at, last_used_at FROM access_tokens \
         WHERE user_id = $1 ORDER BY created_us DESC",
    )
    .bind(user_id)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, name, scopes, created_at, expires_at, last_used_at)| TokenInfo {
                id,
                name,
                scopes: stored_scopes(&scopes),
                created_at,
                expires_at,
                last_used_at,
            },
        )
        .collect())
}

/// Revokes one of the user's tokens; `NotFound` when the user has no such token.
pub async fn revoke(db: &AnyPool, user_id: &str, id: &TokenId) -> Result<(), AppError> {
    let done = sqlx::query("DELETE FROM access_tokens WHERE id = $1 AND user_id = $2")
        .bind(&id.0)
        .bind(user_id)
        .execute(db)
        .await?;
    if done.rows_affected() == 0 {
        return Err(AppError::NotFound);
    }
    tracing::info!(token_id = %id.0, "access token revoked");
    Ok(())
}

/// The grant a presented token gives: `InvalidToken` (401) when it is malformed, unknown
/// (revoked) or expired. Records the time of use, to the minute.
pub async fn authenticate(db: &AnyPool, presented: &str) -> Result<TokenGrant, AppError> {
    if !presented.starts_with(TOKEN_PREFIX) || presented.len() > 128 {
        return Err(AppError::InvalidToken);
    }
    let hash = stored_hash(presented);
    type Row = (String, String, String, String, Option<i64>, Option<i64>);
    let row: Option<Row> = sqlx::query_as(
        "SELECT t.id, t.user_id, u.username, t.scopes, t.expires_at, t.last_used_at \
         FROM access_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1",
    )
    .bind(&hash)
    .fetch_optional(db)
    .await?;
    let Some((token_id, user_id, username, scopes, expires_at, last_used)) = row else {
        return Err(AppError::InvalidToken);
    };
    let now = crate::now();
    if expires_at.is_some_and(|at| at <= now) {
        return Err(AppError::InvalidToken);
    }
    if last_used.is_none_or(|at| now - at >= TOUCH_INTERVAL) {
        sqlx::query("UPDATE access_tokens SET last_used_at = $1 WHERE id = $2")
            .bind(now)
            .bind(&token_id)
            .execute(db)
            .await?;
    }
    Ok(TokenGrant {
        token_id,
        user_id,
        username,
        scopes: stored_scopes(&scopes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_show() {
        for scope in Scope::ALL {
            assert_eq!(Scope::parse(scope.as_str()).unwrap(), scope);
            let json = serde_json::to_string(&scope).unwrap();
            assert_eq!(json, format!("\"{scope}\""));
        }
        assert!(Scope::parse("files:*").is_err());
        assert!(parse_scopes(&[]).is_err());
        let scopes = parse_scopes(&[
            "links:mint".into(),
            "files:read".into(),
            "links:mint".into(),
        ]);
        assert_eq!(scopes.unwrap(), vec![Scope::FilesRead, Scope::LinksMint]);
    }

    #[test]
    fn names_are_checked() {
        assert!(TokenName::parse("backup job").is_ok());
        assert!(TokenName::parse("  ").is_err());
        assert!(TokenName::parse("a\nb").is_err());
        assert!(TokenName::parse(&"x".repeat(65)).is_err());
    }
}
