//! Logging in: where the post came from, the throttle, the password check and the session
//! rotation, in that order. The session store itself is [`crate::sessions`].

use std::net::IpAddr;

use actix_web::HttpRequest;
use sqlx::AnyPool;

use crate::error::AppError;
use crate::metrics::{Login, Metrics};
use crate::sessions::{self, NewSession, SessionPolicy};
use crate::throttle::LoginThrottle;
use crate::users::{User, Username};

/// What stands between a login and a password check: the failed-login buckets (per account
/// and per client address) and the hash unknown users are verified against, so an unknown
/// name costs the same time as a wrong password.
pub struct LoginGate {
    pub throttle: LoginThrottle,
    /// Argon2 hash of a random password.
    pub dummy_hash: String,
    /// `--password-login`: `false` refuses every password login, before anything else.
    pub password_login: bool,
}

/// One login as the request gave it. No `Debug`: it holds a password.
pub struct Credentials<'a> {
    /// The address throttled ([`sessions::client_ip`]).
    pub client: Option<IpAddr>,
    pub username: &'a str,
    pub password: &'a str,
    /// The session cookie the request came with, ended by a successful login.
    pub previous_session: Option<&'a str>,
}

/// Checks credentials and starts a new session, ending the one the request came with (no
/// session fixation). With `--password-login false`, refused at once (`PasswordLoginDisabled`). Throttled first (see [`crate::throttle`]): while the account or the
/// client address has no attempt left, or too many logins already wait for a password check,
/// answers `Throttled` or `Busy` without looking at the password.
pub async fn login(
    db: &AnyPool,
    policy: &SessionPolicy,
    gate: &LoginGate,
    metrics: &Metrics,
    credentials: Credentials<'_>,
) -> Result<(User, NewSession), AppError> {
    let Credentials {
        client,
        username,
        password,
        previous_session,
    } = credentials;
    if !gate.password_login {
        return Err(AppError::PasswordLoginDisabled);
    }
    let account = Username::parse(username).ok();
    let attempt = match gate
        .throttle
        .reserve(account.as_ref().map(Username::as_str), client)
    {
        Ok(attempt) => attempt,
        Err(refusal) => {
            tracing::info!(?client, ?refusal, "login throttled");
            metrics.login(Login::Throttled);
            return Err(refusal.into());
        }
    };
    // Any other error drops `attempt` unsettled: the check did not happen, nothing is spent.
    let user = match crate::users::authenticate(db, &gate.dummy_hash, username, password).await {
        Ok(user) => user,
        Err(AppError::InvalidCredentials) => {
            attempt.failed();
            metrics.login(Login::BadCredentials);
            tracing::info!(?client, "login refused");
            return Err(AppError::InvalidCredentials);
        }
        Err(e) => return Err(e),
    };
    attempt.succeeded();
    metrics.login(Login::Ok);
    let session = sessions::create(db, &user, previous_session).await?;
    sessions::purge_expired(db, policy).await?;
    tracing::info!(user = %user.username, "logged in");
    Ok((user, session))
}

/// Refuses a login posted from another site: login CSRF, where an attacker's page logs the
/// victim into the attacker's account and collects what they upload (OWASP CSRF Cheat Sheet,
/// "Login CSRF"). There is no session yet to hold a token, so the browser's own word on where
/// the request comes from decides: `Sec-Fetch-Site` (Fetch Metadata) when sent, which must be
/// `same-origin` or `none` (typed, bookmarked); else `Origin`, which must be this app's
/// public origin or name the host the request was sent to (RFC 6454 section 7.3). A request
/// with neither header (curl, scripts) is no browser's cross-site post and is let through:
/// browsers send `Origin` on every cross-origin POST.
pub fn check_origin(req: &HttpRequest, public_origin: &str) -> Result<(), AppError> {
    let headers = req.headers();
    if let Some(site) = headers.get("sec-fetch-site") {
        return match site.as_bytes() {
            b"same-origin" | b"none" => Ok(()),
            _ => Err(AppError::CrossSite),
        };
    }
    let Some(origin) = headers.get(actix_web::http::header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("");
    let host = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    let same_host = host.is_some_and(|h| h.eq_ignore_ascii_case(req.connection_info().host()));
    if origin.eq_ignore_ascii_case(public_origin) || same_host {
        Ok(())
    } else {
        Err(AppError::CrossSite)
    }
}
