//! Sign-in through the organisation's OpenID Connect provider (`--oidc-issuer` and friends).
//!
//! The authorization code flow (OpenID Connect Core 1.0 section 3.1) with PKCE S256
//! (RFC 7636), as the `openidconnect` crate speaks it ([`provider`]):
//!
//! 1. `GET /oidc/login` ([`Oidc::start`]): a fresh `state`, `nonce` and PKCE verifier are
//!    kept server-side, bound to this browser by an HttpOnly cookie ([`pending`]), and the
//!    browser is sent to the provider.
//! 2. `GET /oidc/callback?code&state` ([`Oidc::finish`]): the `state` is taken (once, from
//!    this browser, within ten minutes), the code traded for tokens with the verifier, the ID
//!    token verified, the group gate applied, the local user found by (issuer, `sub`) or
//!    created ([`identity`]), and a session started exactly as a password login starts one
//!    (the old one ended, HttpOnly cookie, CSRF token, idle and absolute timeouts). The ID
//!    token is kept with the session, for the logout.
//! 3. `POST /logout` ends the session and, when the provider has an end-session endpoint,
//!    sends the browser there with the ID token as hint ([`Oidc::logout_url`]).
//!
//! Any failure ends on a page that says what failed and which setting to check
//! ([`failure`]), never a 500. The provider is discovered on first use, not at start: the app
//! starts while the provider is down, and each sign-in tries again until discovery works.

pub mod failure;
pub mod identity;
pub mod pending;
pub mod provider;
pub mod settings;

use std::sync::Arc;

use actix_web::cookie::{Cookie, SameSite};
use openidconnect::RedirectUrl;
use serde::Deserialize;
use server_kit::settings::BaseUrl;
use sqlx::AnyPool;

pub use failure::Failure;
pub use settings::{OidcSettings, SignInArgs};

use crate::error::{AppError, StartupError};
use crate::sessions::{self, NewSession, Session, SessionPolicy};
use crate::users::User;

/// Where a sign-in starts.
pub const LOGIN_PATH: &str = "/oidc/login";
/// Where the provider sends the browser back: `<public-url>/oidc/callback` is the redirect
/// URI to register at the provider.
pub const CALLBACK_PATH: &str = "/oidc/callback";
/// The cookie binding a started sign-in to its browser (path `/oidc`, ten minutes).
pub const BROWSER_COOKIE: &str = "burnlink_oidc";

/// The sign-in through the provider, as configured and discovered.
pub struct Oidc {
    settings: Arc<OidcSettings>,
    discovery: provider::Discovery,
    redirect_uri: String,
    /// `<public-url>/`: where the provider sends the browser after its logout.
    home: String,
}

/// The provider's answer, as the callback's query has it (RFC 6749 sections 4.1.2 and
/// 4.1.2.1; `iss`: RFC 9207).
#[derive(Debug, Default, Deserialize)]
pub struct Answer {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
    pub iss: Option<String>,
}

/// A started sign-in: where to send the browser, and the binding cookie's value.
pub struct Started {
    pub url: String,
    pub browser: String,
}

impl Oidc {
    /// The sign-in for checked `settings`, with the app reached at `public_url`. Contacts
    /// nothing.
    pub fn new(settings: OidcSettings, public_url: &BaseUrl) -> Result<Oidc, StartupError> {
        let redirect_uri = format!("{public_url}{CALLBACK_PATH}");
        let redirect =
            RedirectUrl::new(redirect_uri.clone()).map_err(|e| StartupError::Config {
                setting: "--public-url (APP_PUBLIC_URL)",
                reason: format!("{redirect_uri} is not a redirect URI: {e}"),
            })?;
        let settings = Arc::new(settings);
        let discovery = provider::Discovery::new(settings.clone(), redirect).map_err(|reason| {
            StartupError::Config {
                setting: "--oidc-issuer (OIDC_ISSUER)",
                reason,
            }
        })?;
        Ok(Oidc {
            settings,
            discovery,
            redirect_uri,
            home: format!("{public_url}/"),
        })
    }

    /// "Sign in with NAME".
    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// The redirect URI to register at the provider.
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// The issuer's origin: forms may be redirected there (the logout goes on to the
    /// provider, and browsers hold a form's redirects to `form-action`, CSP 3 section 6.4.2).
    pub fn origin(&self) -> String {
        self.settings.issuer.url().origin().ascii_serialization()
    }

    /// Discovers the provider now, so a wrong setting shows in the log at start; a failure
    /// is logged and the next sign-in tries again.
    pub async fn warm_up(&self) {
        match self.discovery.provider().await {
            Ok(_) => {
                tracing::info!(redirect_uri = %self.redirect_uri, "sign-in through the provider ready")
            }
            Err(failure) => tracing::warn!(
                %failure,
                "the identity provider is not usable yet; sign-ins will try again"
            ),
        }
    }

    /// Starts a sign-in for the browser whose binding cookie is `browser` (a new value when it
    /// has none, so sign-ins started in two tabs both work).
    pub async fn start(&self, db: &AnyPool, browser: Option<&str>) -> Result<Started, AppError> {
        let provider = self.discovery.provider().await?;
        let authorization = self.discovery.authorize(&provider);
        let browser = match browser {
            Some(value) if value.len() >= 32 => value.to_owned(),
            _ => shared::random_token(32),
        };
        let kept = pending::Pending {
            nonce: authorization.nonce,
            pkce_verifier: authorization.pkce_verifier,
        };
        pending::store(db, &authorization.state, &browser, &kept).await?;
        Ok(Started {
            url: authorization.url.into(),
            browser,
        })
    }

    /// Finishes a sign-in: `answer` is what the provider sent the browser back with,
    /// `browser` its binding cookie, `previous_session` the session cookie it came with (ended:
    /// no session fixation).
    pub async fn finish(
        &self,
        db: &AnyPool,
        policy: &SessionPolicy,
        answer: Answer,
        browser: Option<&str>,
        previous_session: Option<&str>,
    ) -> Result<(User, NewSession), AppError> {
        if let Some(error) = answer.error {
            if let Some(state) = &answer.state {
                pending::forget(db, state).await?;
            }
            tracing::info!(%error, "the provider refused the sign-in");
            return Err(Failure::Denied {
                error,
                description: answer.error_description,
            }
            .into());
        }
        let Some(state) = answer.state else {
            return Err(Failure::Callback("it has no state").into());
        };
        let Some(code) = answer.code else {
            return Err(Failure::Callback("it has no code").into());
        };
        let kept = pending::take(db, &state, browser).await?;
        // RFC 9207: an answer naming another issuer is a mix-up, whatever else it holds.
        if answer
            .iss
            .as_deref()
            .is_some_and(|iss| iss != self.settings.issuer.as_str())
        {
            tracing::warn!(iss = ?answer.iss, "sign-in answer from another issuer");
            return Err(Failure::Callback("it names another issuer").into());
        }
        let provider = self.discovery.provider().await?;
        let (id_token, claims) = self
            .discovery
            .sign_in(&provider, code, kept.pkce_verifier, &kept.nonce)
            .await?;
        let person = identity::Person::from_claims(&claims, &self.settings.groups_claim);
        let admin = identity::admit(&self.settings, &person).inspect_err(|_| {
            tracing::info!(
                sub = %person.subject,
                groups = ?person.groups,
                "sign-in refused: in no allowed group"
            );
        })?;
        let user = identity::local_user(db, self.settings.issuer.as_str(), &person, admin).await?;
        let session = sessions::create(db, &user, previous_session).await?;
        sqlx::query("UPDATE sessions SET id_token = $1 WHERE id_hash = $2")
            .bind(id_token.to_string())
            .bind(sessions::hash_session_id(&session.id))
            .execute(db)
            .await?;
        sessions::purge_expired(db, policy).await?;
        tracing::info!(user = %user.username, "signed in through the identity provider");
        Ok((user, session))
    }

    /// Where to send the browser after `session` ends: the provider's end-session endpoint
    /// when the session started there and the provider has one on the issuer's origin (the
    /// only one the pages' `form-action` allows); `None`: the app's own page.
    pub async fn logout_url(&self, db: &AnyPool, session: &Session) -> Option<String> {
        let stored: Result<Option<(Option<String>,)>, sqlx::Error> =
            sqlx::query_as("SELECT id_token FROM sessions WHERE id_hash = $1")
                .bind(session.id_hash())
                .fetch_optional(db)
                .await;
        let id_token = match stored {
            Ok(Some((Some(token),))) => token,
            Ok(_) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "provider logout skipped: the session's ID token");
                return None;
            }
        };
        let url = self.discovery.logout_url(&id_token, &self.home).await?;
        if url.origin().ascii_serialization() != self.origin() {
            tracing::warn!(
                end_session = %url.origin().ascii_serialization(),
                "provider logout skipped: its end_session_endpoint is not on the issuer's origin"
            );
            return None;
        }
        Some(url.into())
    }

    /// The binding cookie for a started sign-in.
    pub fn browser_cookie(value: String, policy: &SessionPolicy) -> Cookie<'static> {
        Cookie::build(BROWSER_COOKIE, value)
            .path("/oidc")
            .http_only(true)
            // Lax: the provider's redirect back is a top-level GET from its site.
            .same_site(SameSite::Lax)
            .secure(policy.secure_cookies)
            .max_age(actix_web::cookie::time::Duration::seconds(
                pending::PENDING_SECS,
            ))
            .finish()
    }
}
