//! Server-side sessions and their CSRF tokens.
//!
//! The cookie holds a random 256-bit id; the database holds only its SHA-256, so a leaked
//! database does not hand out live sessions. Sessions end after `--session-idle-secs` without
//! use and `--session-max-secs` after login, whichever comes first (OWASP Session Management
//! Cheat Sheet, "Session Expiration"). Every state-changing request made with a session must
//! echo the session's synchronizer token (OWASP CSRF Cheat Sheet).
//!
//! Logging in (origin check, throttle, password check, then [`create`]) is [`crate::login`].

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use sqlx::AnyPool;
use subtle::ConstantTimeEq;

use crate::error::AppError;
use crate::tokens::RouteScopes;
use crate::users::{User, Username};

pub const COOKIE_NAME: &str = "burnlink_session";
/// The header JSON clients echo the CSRF token in.
pub const CSRF_HEADER: &str = "X-CSRF-Token";
/// The form field HTML forms echo it in.
pub const CSRF_FIELD: &str = "csrf_token";
/// `last_seen` is written at most this often, so reads do not all become writes.
const TOUCH_INTERVAL: i64 = 60;

/// What the database stores for a session id ([`crate::db::stored_hash`]).
pub fn hash_session_id(id: &str) -> String {
    crate::db::stored_hash(id)
}

/// Constant-time comparison of a presented CSRF token with the session's.
pub fn csrf_matches(expected: &str, presented: &str) -> bool {
    expected.as_bytes().ct_eq(presented.as_bytes()).into()
}

/// How long sessions live.
#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    pub idle_secs: i64,
    pub max_secs: i64,
    pub secure_cookies: bool,
}

impl SessionPolicy {
    /// The session cookie for a new session id.
    pub fn cookie(&self, id: String) -> Cookie<'static> {
        Cookie::build(COOKIE_NAME, id)
            .path("/")
            .http_only(true)
            .same_site(SameSite::Lax)
            .secure(self.secure_cookies)
            .finish()
    }

    /// A cookie that makes the browser forget the session.
    pub fn removal_cookie(&self) -> Cookie<'static> {
        let mut cookie = self.cookie(String::new());
        cookie.make_removal();
        cookie
    }

    fn expired(&self, created_at: i64, last_seen: i64, now: i64) -> bool {
        last_seen.saturating_add(self.idle_secs) < now
            || created_at.saturating_add(self.max_secs) < now
    }
}

/// A logged-in request. As an extractor it answers 401 `unauthorized` when the request has
/// no live session.
#[derive(Clone)]
pub struct Session {
    pub user_id: String,
    pub username: Username,
    /// The user may see and manage every user (`/admin/users`).
    pub is_admin: bool,
    csrf_token: String,
    id_hash: String,
    /// Set when the request came with an access token instead of a cookie.
    token: Option<Box<crate::tokens::TokenGrant>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("user_id", &self.user_id)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl Session {
    pub fn csrf_token(&self) -> &str {
        &self.csrf_token
    }

    /// What the database stores for this session's id (empty for an access token).
    pub(crate) fn id_hash(&self) -> &str {
        &self.id_hash
    }

    /// The access token this request was authenticated with, if it was.
    pub fn token(&self) -> Option<&crate::tokens::TokenGrant> {
        self.token.as_deref()
    }

    /// A request authenticated by an access token, as a session for the handlers. It carries
    /// no CSRF token and needs none: browsers never attach `Authorization` on their own.
    fn from_token(grant: crate::tokens::TokenGrant) -> Result<Session, AppError> {
        let username = Username::parse(&grant.username)
            .map_err(|_| AppError::Internal("a stored username is invalid".into()))?;
        Ok(Session {
            user_id: grant.user_id.clone(),
            username,
            // No token scope reaches the administrators' pages.
            is_admin: false,
            csrf_token: String::new(),
            id_hash: String::new(),
            token: Some(Box::new(grant)),
        })
    }

    /// Refuses a state-changing request whose CSRF token is missing or wrong (a token-
    /// authenticated request is never refused here).
    pub fn check_csrf(&self, presented: Option<&str>) -> Result<(), AppError> {
        if self.token.is_some() {
            return Ok(());
        }
        match presented {
            Some(token) if csrf_matches(&self.csrf_token, token) => Ok(()),
            _ => Err(AppError::Csrf),
        }
    }

    /// The token a JSON request carries in `X-CSRF-Token`.
    pub fn check_csrf_header(&self, req: &HttpRequest) -> Result<(), AppError> {
        self.check_csrf(req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()))
    }
}

/// A fresh session: its cookie value (the only copy of the id) and its CSRF token.
pub struct NewSession {
    pub id: String,
    pub csrf_token: String,
}

/// Starts a new session for `user`, first ending the one `previous_id` names, if any, so a
/// login always rotates the id (no session fixation).
pub async fn create(
    db: &AnyPool,
    user: &User,
    previous_id: Option<&str>,
) -> Result<NewSession, AppError> {
    if let Some(previous) = previous_id {
        delete(db, previous).await?;
    }
    let id = shared::random_token(32);
    let csrf_token = shared::random_token(32);
    let now = crate::now();
    sqlx::query(
        "INSERT INTO sessions (id_hash, user_id, csrf_token, created_at, last_seen) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(hash_session_id(&id))
    .bind(&user.id)
    .bind(&csrf_token)
    .bind(now)
    .bind(now)
    .execute(db)
    .await?;
    Ok(NewSession { id, csrf_token })
}

/// Deletes every expired session, so sessions never presented again do not pile up. Run on
/// each login: cheap with the table's size bounded by live sessions.
pub(crate) async fn purge_expired(db: &AnyPool, policy: &SessionPolicy) -> Result<(), AppError> {
    let now = crate::now();
    sqlx::query("DELETE FROM sessions WHERE last_seen < $1 OR created_at < $2")
        .bind(now.saturating_sub(policy.idle_secs))
        .bind(now.saturating_sub(policy.max_secs))
        .execute(db)
        .await?;
    Ok(())
}

/// Ends the session `id` names (nothing if none).
pub async fn delete(db: &AnyPool, id: &str) -> Result<(), AppError> {
    sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
        .bind(hash_session_id(id))
        .execute(db)
        .await?;
    Ok(())
}

/// The live session `id` names, if any; an expired one is deleted on sight.
pub async fn lookup(
    db: &AnyPool,
    policy: &SessionPolicy,
    id: &str,
) -> Result<Option<Session>, AppError> {
    let id_hash = hash_session_id(id);
    let row: Option<(String, String, String, i64, i64, i64)> = sqlx::query_as(
        "SELECT s.user_id, u.username, s.csrf_token, s.created_at, s.last_seen, u.is_admin \
         FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_hash = $1",
    )
    .bind(&id_hash)
    .fetch_optional(db)
    .await?;
    let Some((user_id, username, csrf_token, created_at, last_seen, is_admin)) = row else {
        return Ok(None);
    };
    let now = crate::now();
    if policy.expired(created_at, last_seen, now) {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(&id_hash)
            .execute(db)
            .await?;
        return Ok(None);
    }
    if now - last_seen >= TOUCH_INTERVAL {
        sqlx::query("UPDATE sessions SET last_seen = $1 WHERE id_hash = $2")
            .bind(now)
            .bind(&id_hash)
            .execute(db)
            .await?;
    }
    let username = Username::parse(&username)
        .map_err(|_| AppError::Internal("a stored username is invalid".into()))?;
    Ok(Some(Session {
        user_id,
        username,
        is_admin: is_admin != 0,
        csrf_token,
        id_hash,
        token: None,
    }))
}

impl Session {
    /// Ends this session.
    pub async fn end(self, db: &AnyPool) -> Result<(), AppError> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(&self.id_hash)
            .execute(db)
            .await?;
        Ok(())
    }
}

/// The address logins are throttled by: the TCP peer. `X-Forwarded-For` is not trusted, as any
/// client can send it; behind a proxy every login shares the proxy's bucket (see
/// docs/OPERATIONS.md).
pub fn client_ip(req: &HttpRequest) -> Option<IpAddr> {
    req.peer_addr().map(|addr| addr.ip())
}

/// The session cookie's value, if the request has one.
pub fn cookie_value(req: &HttpRequest) -> Option<String> {
    req.cookie(COOKIE_NAME)
        .map(|c| c.value().to_owned())
        .filter(|v| !v.is_empty())
}

/// The request's live session, if any. On `/api/*` an `Authorization: Bearer` header takes
/// the cookie's place: the token must be live (else 401 `invalid_token`, whatever cookie came
/// along) and carry the scope the route needs (else 403 `insufficient_scope`).
pub async fn from_request(req: &HttpRequest) -> Result<Option<Session>, AppError> {
    // Two narrow pieces registered beside the app's state (`startup::serve`).
    let db = req
        .app_data::<web::Data<AnyPool>>()
        .ok_or_else(|| AppError::Internal("the database pool is not registered".into()))?;
    let policy = req
        .app_data::<web::Data<SessionPolicy>>()
        .ok_or_else(|| AppError::Internal("the session policy is not registered".into()))?;
    // Another scheme (`Basic` from a reverse proxy's own login) is not ours and is left alone:
    // the request is then judged by its cookie; a `Bearer` header without a token is refused.
    if req.path().starts_with("/api/")
        && let Some(presented) = server_kit::bearer::token(req.headers())
    {
        let presented = presented.map_err(|_| AppError::InvalidToken)?;
        let grant = crate::tokens::authenticate(db, presented).await?;
        // The routes' own declarations (`routes::api`), registered beside the state.
        let scopes = req
            .app_data::<web::Data<RouteScopes>>()
            .ok_or_else(|| AppError::Internal("the route scopes are not registered".into()))?;
        let pattern = req.match_pattern().unwrap_or_default();
        grant.allow(scopes.required(req.method(), &pattern))?;
        return Session::from_token(grant).map(Some);
    }
    match cookie_value(req) {
        Some(id) => lookup(db, policy, &id).await,
        None => Ok(None),
    }
}

impl FromRequest for Session {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Session, AppError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { from_request(&req).await?.ok_or(AppError::Unauthorized) })
    }
}

/// A request that may or may not be logged in (pages). Unlike `Option<Session>`, a database
/// failure is an error, not "logged out".
pub struct MaybeSession(pub Option<Session>);

impl FromRequest for MaybeSession {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<MaybeSession, AppError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { Ok(MaybeSession(from_request(&req).await?)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_stored_hashed() {
        let id = shared::random_token(32);
        let hash = hash_session_id(&id);
        assert_eq!(hash.len(), 64);
        assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(hash, id);
        assert_eq!(hash, hash_session_id(&id));
        assert_eq!(
            hash_session_id("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn csrf_compare() {
        assert!(csrf_matches("token-123", "token-123"));
        assert!(!csrf_matches("token-123", "token-124"));
        assert!(!csrf_matches("token-123", "token-12"));
        assert!(!csrf_matches("token-123", ""));
    }

    #[test]
    fn check_csrf_refuses_missing_and_wrong() {
        let session = Session {
            user_id: "u".into(),
            username: Username::parse("alice").unwrap(),
            is_admin: false,
            csrf_token: "right".into(),
            id_hash: "h".into(),
            token: None,
        };
        assert!(session.check_csrf(Some("right")).is_ok());
        assert!(matches!(
            session.check_csrf(Some("wrong")),
            Err(AppError::Csrf)
        ));
        assert!(matches!(session.check_csrf(None), Err(AppError::Csrf)));
    }

    #[test]
    fn expiry_is_idle_or_absolute() {
        let policy = SessionPolicy {
            idle_secs: 100,
            max_secs: 1000,
            secure_cookies: false,
        };
        assert!(!policy.expired(0, 0, 100));
        assert!(policy.expired(0, 0, 101));
        assert!(!policy.expired(0, 950, 1000));
        assert!(policy.expired(0, 950, 1001));
    }

    #[test]
    fn cookie_attributes() {
        let policy = SessionPolicy {
            idle_secs: 1,
            max_secs: 1,
            secure_cookies: true,
        };
        let shown = policy.cookie("v".into()).to_string();
        for part in [
            "burnlink_session=v",
            "HttpOnly",
            "SameSite=Lax",
            "Path=/",
            "Secure",
        ] {
            assert!(shown.contains(part), "{shown}");
        }
    }
}
