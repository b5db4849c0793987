//! Why a sign-in through the provider failed: each case a row of the app's error table
//! ([`crate::error::AppError::describe`]), whose page says what failed and which setting to
//! check (pingvin-share's setup reports, PEERS.md, are the lesson). The cause behind a case (a
//! connection error, the provider's own words) is logged where the failure is made, never a
//! token or a code.

/// A step of the back channel that can be unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Discovery,
    Jwks,
    Token,
}

impl Endpoint {
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Discovery => "discovery document",
            Endpoint::Jwks => "signing keys (jwks_uri)",
            Endpoint::Token => "token endpoint",
        }
    }
}

/// What was wrong with the ID token (OpenID Connect Core 1.0 section 3.1.3.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdTokenProblem {
    /// The token answer carried no ID token (the `openid` scope was not honoured).
    Missing,
    /// Not signed by a key of the provider's JWKS, or altered since.
    Signature,
    /// Signed with an algorithm the provider does not announce, or a symmetric one.
    Algorithm(String),
    /// Issued to another client: `aud` as found.
    Audience(String),
    /// Issued by another issuer: `iss` as found.
    Issuer(String),
    /// Not issued for this sign-in (`nonce`).
    Nonce,
    /// Expired, or issued in the future.
    Time(String),
    /// Malformed, or a claim the app needs is missing.
    Malformed(String),
}

/// A sign-in through the provider that did not end in a session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The provider sent the browser back with an error (`error=access_denied`, …).
    #[error("the provider refused the sign-in: {error}")]
    Denied {
        error: String,
        description: Option<String>,
    },
    /// The callback is not one the provider makes (no code, no state, another `iss`).
    #[error("malformed sign-in callback: {0}")]
    Callback(&'static str),
    /// No sign-in waiting with this `state` in this browser: unknown, used, expired, or
    /// started in another browser.
    #[error("unknown sign-in state")]
    State,
    /// An endpoint of the provider could not be reached, or answered with an HTTP error.
    #[error("the provider's {} could not be reached", .0.name())]
    Unreachable(Endpoint),
    /// The discovery document (or the key set) is not what OpenID Connect requires.
    #[error("the provider's discovery document is unusable: {0}")]
    Discovery(String),
    /// The token endpoint refused the code.
    #[error("the token endpoint refused the code: {error}")]
    TokenRefused {
        error: String,
        description: Option<String>,
    },
    /// The token endpoint's answer could not be read.
    #[error("the token endpoint's answer could not be read")]
    TokenAnswer,
    /// The ID token failed verification.
    #[error("the ID token failed verification: {0:?}")]
    IdToken(IdTokenProblem),
    /// The user is in none of `--oidc-allowed-groups`; `claim_present`: whether the ID token
    /// had the groups claim at all.
    #[error("not in an allowed group")]
    NotAllowed { claim_present: bool },
    /// Too many sign-ins are waiting for the provider's answer.
    #[error("too many sign-ins in progress")]
    Busy,
}

/// `--oidc-issuer`, as the pages name it.
pub const ISSUER: &str = "--oidc-issuer (OIDC_ISSUER)";
/// The client's two settings, as the pages name them.
pub const CLIENT: &str = "--oidc-client-id (OIDC_CLIENT_ID) and --oidc-client-secret-file \
                          (OIDC_CLIENT_SECRET_FILE)";

/// `: description` when the provider gave one.
pub fn said(description: &Option<String>) -> String {
    description
        .as_deref()
        .map(|d| format!(": {d}"))
        .unwrap_or_default()
}

impl IdTokenProblem {
    /// What was wrong, and what to check, for the page.
    pub fn text(&self) -> String {
        match self {
            IdTokenProblem::Missing => {
                "the provider sent none. Check that the client may use the openid scope.".into()
            }
            IdTokenProblem::Signature => "its signature does not verify with the provider's \
                 published keys. Sign in again; if it persists, the answer was altered on the \
                 way."
                .into(),
            IdTokenProblem::Algorithm(alg) => format!(
                "it is signed with {alg}, which the provider does not announce or this server \
                 does not accept (RS256, PS256, ES256, EdDSA and the like; never a shared \
                 secret)."
            ),
            IdTokenProblem::Audience(found) => format!(
                "it was issued to another client ({found}). Check --oidc-client-id \
                 (OIDC_CLIENT_ID)."
            ),
            IdTokenProblem::Issuer(found) => format!("it was issued by {found}. Check {ISSUER}."),
            IdTokenProblem::Nonce => {
                "it was not issued for this sign-in (nonce mismatch). Sign in again.".into()
            }
            IdTokenProblem::Time(why) => format!(
                "{why}. Check that the clocks of this server and the provider agree, then sign \
                 in again."
            ),
            IdTokenProblem::Malformed(why) => format!("{why}."),
        }
    }
}
