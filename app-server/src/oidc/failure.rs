//! Why a sign-in through the provider failed, in words a person can act on: what failed and
//! which setting to check (pingvin-share's setup reports, PEERS.md, are the lesson). Each
//! case is one row of [`Failure::facts`]; the app's error table takes its status, code, title
//! and text from there, and the page shows them. The cause behind a row (a connection error,
//! the provider's own words) is logged where the failure is made, never a token or a code.

use actix_web::http::StatusCode;

/// A step of the back channel that can be unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Discovery,
    Jwks,
    Token,
}

impl Endpoint {
    fn name(self) -> &'static str {
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

/// What a failed sign-in answers.
pub struct FailureFacts {
    pub status: StatusCode,
    pub code: &'static str,
    pub title: &'static str,
    /// What happened and what to do, with the setting to check.
    pub message: String,
}

const ISSUER: &str = "--oidc-issuer (OIDC_ISSUER)";
const CLIENT: &str = "--oidc-client-id (OIDC_CLIENT_ID) and --oidc-client-secret-file \
                      (OIDC_CLIENT_SECRET_FILE)";

impl Failure {
    /// The one table of sign-in failures.
    pub fn facts(&self) -> FailureFacts {
        use StatusCode as S;
        let row = |status, code, title, message: String| FailureFacts {
            status,
            code,
            title,
            message,
        };
        match self {
            Failure::Denied { error, description } => row(
                S::FORBIDDEN,
                "oidc_denied",
                "Sign-in refused",
                format!(
                    "The identity provider did not sign you in ({error}{}). Nothing was \
                     changed here; sign in again, or ask your administrator.",
                    said(description)
                ),
            ),
            Failure::Callback(why) => row(
                S::BAD_REQUEST,
                "bad_request",
                "Sign-in refused",
                format!("This sign-in answer is malformed ({why}). Sign in again."),
            ),
            Failure::State => row(
                S::BAD_REQUEST,
                "oidc_state",
                "Sign-in expired",
                "This sign-in answer does not belong to a sign-in started in this browser in \
                 the last ten minutes, or it was used already. Sign in again."
                    .into(),
            ),
            Failure::Unreachable(endpoint) => row(
                S::BAD_GATEWAY,
                "oidc_unreachable",
                "Identity provider unreachable",
                format!(
                    "The identity provider's {} could not be reached, so nobody can sign in \
                     through it right now. Try again in a moment; if it persists, check \
                     {ISSUER} and that this server reaches the provider.",
                    endpoint.name()
                ),
            ),
            Failure::Discovery(why) => row(
                S::BAD_GATEWAY,
                "oidc_discovery",
                "Identity provider misconfigured",
                format!(
                    "The identity provider's discovery document cannot be used: {why}. Check \
                     {ISSUER}: it must be the provider's issuer exactly as the document names \
                     it."
                ),
            ),
            Failure::TokenRefused { error, description } => {
                let said = said(description);
                match error.as_str() {
                    "invalid_grant" => row(
                        S::BAD_REQUEST,
                        "oidc_token",
                        "Sign-in expired",
                        format!(
                            "The identity provider refused the sign-in code ({error}{said}): \
                             it was used already or has expired. Sign in again."
                        ),
                    ),
                    "invalid_client" | "unauthorized_client" => row(
                        S::BAD_GATEWAY,
                        "oidc_token",
                        "Identity provider refused this server",
                        format!(
                            "The identity provider did not accept this server as its client \
                             ({error}{said}). Check {CLIENT} against the client registered at \
                             the provider."
                        ),
                    ),
                    _ => row(
                        S::BAD_GATEWAY,
                        "oidc_token",
                        "Sign-in failed",
                        format!(
                            "The identity provider refused to finish the sign-in \
                             ({error}{said}). Check the client registered at the provider \
                             ({CLIENT}, its redirect URI)."
                        ),
                    ),
                }
            }
            Failure::TokenAnswer => row(
                S::BAD_GATEWAY,
                "oidc_token",
                "Sign-in failed",
                format!(
                    "The identity provider's token endpoint sent an answer that is not an \
                     OpenID Connect token response. Check {ISSUER}."
                ),
            ),
            Failure::IdToken(problem) => row(
                S::BAD_GATEWAY,
                "oidc_id_token",
                "Sign-in refused",
                format!(
                    "The identity provider's ID token was refused: {}",
                    id_token_text(problem)
                ),
            ),
            Failure::NotAllowed { claim_present } => row(
                S::FORBIDDEN,
                "oidc_not_allowed",
                "Not allowed",
                if *claim_present {
                    "Your account is not in a group allowed to use this service \
                     (--oidc-allowed-groups). Ask your administrator."
                        .into()
                } else {
                    "The identity provider sent no groups for your account, and only members \
                     of some groups may use this service (--oidc-allowed-groups). Ask your \
                     administrator to have the provider send the groups claim \
                     (--oidc-groups-claim)."
                        .into()
                },
            ),
            Failure::Busy => row(
                S::TOO_MANY_REQUESTS,
                "busy",
                "Too many sign-ins at once",
                "Too many sign-ins are in progress right now. Try again in a minute.".into(),
            ),
        }
    }
}

fn said(description: &Option<String>) -> String {
    description
        .as_deref()
        .map(|d| format!(": {d}"))
        .unwrap_or_default()
}

fn id_token_text(problem: &IdTokenProblem) -> String {
    match problem {
        IdTokenProblem::Missing => {
            "the provider sent none. Check that the client may use the openid scope.".into()
        }
        IdTokenProblem::Signature => "its signature does not verify with the provider's \
             published keys. Sign in again; if it persists, the answer was altered on the way."
            .into(),
        IdTokenProblem::Algorithm(alg) => format!(
            "it is signed with {alg}, which the provider does not announce or this server does \
             not accept (RS256, PS256, ES256, EdDSA and the like; never a shared secret)."
        ),
        IdTokenProblem::Audience(found) => format!(
            "it was issued to another client ({found}). Check --oidc-client-id \
             (OIDC_CLIENT_ID)."
        ),
        IdTokenProblem::Issuer(found) => {
            format!("it was issued by {found}. Check {ISSUER}.")
        }
        IdTokenProblem::Nonce => {
            "it was not issued for this sign-in (nonce mismatch). Sign in again.".into()
        }
        IdTokenProblem::Time(why) => format!(
            "{why}. Check that the clocks of this server and the provider agree, then sign in \
             again."
        ),
        IdTokenProblem::Malformed(why) => format!("{why}."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_setting_problem_names_its_setting() {
        let cases = [
            (Failure::Unreachable(Endpoint::Discovery), "OIDC_ISSUER"),
            (
                Failure::Discovery("unexpected issuer".into()),
                "OIDC_ISSUER",
            ),
            (
                Failure::TokenRefused {
                    error: "invalid_client".into(),
                    description: None,
                },
                "OIDC_CLIENT_SECRET_FILE",
            ),
            (
                Failure::IdToken(IdTokenProblem::Audience("other".into())),
                "OIDC_CLIENT_ID",
            ),
            (
                Failure::NotAllowed {
                    claim_present: false,
                },
                "--oidc-groups-claim",
            ),
        ];
        for (failure, setting) in cases {
            let facts = failure.facts();
            assert!(
                facts.message.contains(setting),
                "{failure:?}: {}",
                facts.message
            );
            assert!(!facts.status.is_server_error() || facts.status == StatusCode::BAD_GATEWAY);
        }
    }

    #[test]
    fn a_used_code_is_the_client_s_mistake() {
        let facts = Failure::TokenRefused {
            error: "invalid_grant".into(),
            description: Some("grant request is invalid".into()),
        }
        .facts();
        assert_eq!(facts.status, StatusCode::BAD_REQUEST);
        assert!(
            facts
                .message
                .contains("invalid_grant: grant request is invalid")
        );
    }
}
