//! The provider as the app knows it, and the protocol itself, which the `openidconnect` crate
//! speaks: discovery (on first use, retried by the next sign-in until it works, so the app
//! starts while the provider is down), the authorization request with PKCE (S256), `state` and
//! `nonce`, the code exchange, and the ID token's verification (issuer, audience, `exp`,
//! `iat`, `nonce`, and the signature with the provider's published keys, with only the
//! asymmetric algorithms it announces). An ID token signed with a key the app does not know
//! makes it fetch the provider's keys again, at most once a minute (OpenID Connect Core 1.0
//! section 10.1.1: providers rotate keys by publishing the new one).
//!
//! The back channel never follows a redirect, and uses https unless the issuer was allowed
//! http ([`secure_enough`]); every endpoint the discovery document names is held to that.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreClientAuthMethod,
    CoreErrorResponseType, CoreGenderClaim, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AuthType, AuthorizationCode, Client, CsrfToken, DiscoveryError,
    EmptyExtraTokenFields, EndSessionUrl, EndpointMaybeSet, EndpointNotSet, EndpointSet,
    HttpClientError, JsonWebKeySet, JwsSigningAlgorithm, LogoutRequest, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, PostLogoutRedirectUrl, ProviderMetadataWithLogout, RedirectUrl,
    RequestTokenError, SignatureVerificationError, StandardErrorResponse, StandardTokenResponse,
    TokenResponse as _,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::failure::{Endpoint, Failure, IdTokenProblem};
use super::settings::{OidcSettings, secure_enough};

/// The claims beyond the standard ones (the groups claim among them), as the ID token has them.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ExtraClaims {
    #[serde(flatten)]
    pub claims: serde_json::Map<String, serde_json::Value>,
}

impl AdditionalClaims for ExtraClaims {}

type IdTokenFields = openidconnect::IdTokenFields<
    ExtraClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type TokenAnswer = StandardTokenResponse<IdTokenFields, CoreTokenType>;
/// An ID token as the provider signed it.
pub type IdToken = openidconnect::IdToken<
    ExtraClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
/// The claims of a verified ID token.
pub type IdTokenClaims = openidconnect::IdTokenClaims<ExtraClaims, CoreGenderClaim>;

/// A client with the authorization and token endpoints set.
type OidcClient = Client<
    ExtraClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    TokenAnswer,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
    EndpointMaybeSet,
>;

/// The shortest time between two fetches of the provider's keys for an unknown `kid`.
const KEY_REFRESH_INTERVAL: Duration = Duration::from_secs(60);
/// An ID token issued further in the future than this is refused (clock skew allowance).
const IAT_LEEWAY_SECS: i64 = 60;
/// Longest wait for one request to the provider.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One discovered provider: the client built from its metadata and keys.
pub struct Provider {
    metadata: ProviderMetadataWithLogout,
    client: OidcClient,
    /// The asymmetric ID token algorithms the provider announces.
    algorithms: Vec<CoreJwsSigningAlgorithm>,
    /// Which key set this is: each refresh counts one up.
    keys_generation: u64,
}

impl Provider {
    /// The RP-initiated logout endpoint, if the provider has one.
    pub fn end_session(&self) -> Option<&EndSessionUrl> {
        self.metadata
            .additional_metadata()
            .end_session_endpoint
            .as_ref()
    }
}

/// The start of a sign-in: where to send the browser, and what to keep until it comes back.
pub struct Authorization {
    pub url: openidconnect::url::Url,
    pub state: CsrfToken,
    pub nonce: Nonce,
    pub pkce_verifier: PkceCodeVerifier,
}

/// The provider, discovered on first use.
pub struct Discovery {
    settings: Arc<OidcSettings>,
    redirect: RedirectUrl,
    http: reqwest::Client,
    current: ArcSwapOption<Provider>,
    /// Discovery and key refreshes, one at a time.
    refresh: Mutex<Refreshes>,
}

#[derive(Default)]
struct Refreshes {
    /// The last discovery that failed: when it started, and why.
    failed: Option<(Instant, Failure)>,
    /// When the keys were last fetched for an unknown key (discovery's fetch does not count:
    /// the provider may rotate right after it).
    keys_fetched: Option<Instant>,
}

impl Discovery {
    pub fn new(settings: Arc<OidcSettings>, redirect: RedirectUrl) -> Result<Discovery, String> {
        // No redirects: a redirect could lead the back channel (and the client secret)
        // anywhere.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("burnlink/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        Ok(Discovery {
            settings,
            redirect,
            http,
            current: ArcSwapOption::empty(),
            refresh: Mutex::new(Refreshes::default()),
        })
    }

    /// The provider, discovered now if it was not yet. Concurrent callers share one attempt:
    /// a caller that waited for an attempt which started after it arrived takes that
    /// attempt's answer, so a burst of sign-ins while the provider is down makes one request,
    /// not one each.
    pub async fn provider(&self) -> Result<Arc<Provider>, Failure> {
        if let Some(provider) = self.current.load_full() {
            return Ok(provider);
        }
        let arrived = Instant::now();
        let mut refreshes = self.refresh.lock().await;
        if let Some(provider) = self.current.load_full() {
            return Ok(provider);
        }
        if let Some((started, failure)) = &refreshes.failed
            && *started >= arrived
        {
            return Err(failure.clone());
        }
        let started = Instant::now();
        match self.discover().await {
            Ok(provider) => {
                let provider = Arc::new(provider);
                self.current.store(Some(provider.clone()));
                refreshes.failed = None;
                tracing::info!(
                    issuer = self.settings.issuer.as_str(),
                    end_session = provider.end_session().is_some(),
                    "identity provider discovered"
                );
                Ok(provider)
            }
            Err(failure) => {
                refreshes.failed = Some((started, failure.clone()));
                Err(failure)
            }
        }
    }

    async fn discover(&self) -> Result<Provider, Failure> {
        let issuer = self.settings.issuer.clone();
        let metadata = ProviderMetadataWithLogout::discover_async(issuer, &self.http)
            .await
            .map_err(|e| self.discovery_failure(Endpoint::Discovery, e))?;
        let mut endpoints = vec![
            (
                "authorization_endpoint",
                metadata.authorization_endpoint().url(),
            ),
            ("jwks_uri", metadata.jwks_uri().url()),
        ];
        let Some(token) = metadata.token_endpoint().cloned() else {
            return Err(self.unusable("it names no token_endpoint".into()));
        };
        endpoints.push(("token_endpoint", token.url()));
        if let Some(end) = &metadata.additional_metadata().end_session_endpoint {
            endpoints.push(("end_session_endpoint", end.url()));
        }
        for (name, url) in endpoints {
            if !secure_enough(url, self.settings.allow_http) {
                return Err(self.unusable(format!("its {name} {url} is not https")));
            }
        }
        let algorithms: Vec<CoreJwsSigningAlgorithm> = metadata
            .id_token_signing_alg_values_supported()
            .iter()
            .filter(|alg| asymmetric(alg))
            .cloned()
            .collect();
        if algorithms.is_empty() {
            return Err(self.unusable(
                "it announces no asymmetric ID token signing algorithm \
                 (id_token_signing_alg_values_supported)"
                    .into(),
            ));
        }
        Ok(self.build(metadata, token, algorithms, 0))
    }

    fn build(
        &self,
        metadata: ProviderMetadataWithLogout,
        token: openidconnect::TokenUrl,
        algorithms: Vec<CoreJwsSigningAlgorithm>,
        keys_generation: u64,
    ) -> Provider {
        // RFC 6749 section 2.3.1 asks for HTTP Basic; a provider that announces only the
        // form field gets that.
        let basic = metadata
            .token_endpoint_auth_methods_supported()
            .is_none_or(|methods| {
                methods.contains(&CoreClientAuthMethod::ClientSecretBasic)
                    || !methods.contains(&CoreClientAuthMethod::ClientSecretPost)
            });
        let client: OidcClient = Client::from_provider_metadata(
            metadata.clone(),
            self.settings.client_id.clone(),
            Some(self.settings.client_secret.clone()),
        )
        .set_token_uri(token)
        .set_redirect_uri(self.redirect.clone())
        .set_auth_type(if basic {
            AuthType::BasicAuth
        } else {
            AuthType::RequestBody
        });
        Provider {
            metadata,
            client,
            algorithms,
            keys_generation,
        }
    }

    /// Where to send the browser: the code flow, PKCE S256, a fresh `state` and `nonce`.
    pub fn authorize(&self, provider: &Provider) -> Authorization {
        let (challenge, pkce_verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = provider
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scopes(self.settings.scopes.iter().cloned())
            .set_pkce_challenge(challenge)
            .url();
        Authorization {
            url,
            state,
            nonce,
            pkce_verifier,
        }
    }

    /// Trades the code for tokens and returns the verified ID token and its claims.
    pub async fn sign_in(
        &self,
        provider: &Provider,
        code: String,
        pkce_verifier: PkceCodeVerifier,
        nonce: &Nonce,
    ) -> Result<(IdToken, IdTokenClaims), Failure> {
        let answer = provider
            .client
            .exchange_code(AuthorizationCode::new(code))
            .set_pkce_verifier(pkce_verifier)
            .request_async(&self.http)
            .await
            .map_err(|e| self.token_failure(e))?;
        let id_token = answer
            .id_token()
            .ok_or(Failure::IdToken(IdTokenProblem::Missing))?;
        let claims = match verify(provider, id_token, nonce) {
            Err(Unverified::UnknownKey) => {
                let fresh = self.refresh_keys(provider).await?;
                verify(&fresh, id_token, nonce)
            }
            other => other,
        };
        match claims {
            Ok(claims) => Ok((id_token.clone(), claims)),
            Err(Unverified::UnknownKey) => {
                tracing::warn!("ID token signed with a key the provider does not publish");
                Err(Failure::IdToken(IdTokenProblem::Signature))
            }
            Err(Unverified::Refused(problem)) => {
                tracing::warn!(?problem, "ID token refused");
                Err(Failure::IdToken(problem))
            }
        }
    }

    /// The provider with its keys fetched again, unless they were fetched less than
    /// [`KEY_REFRESH_INTERVAL`] ago (then the one in force: a token signed with a key nobody
    /// publishes cannot make the app ask the provider on every sign-in). A refresh that
    /// happened since `seen` was taken counts as this one.
    async fn refresh_keys(&self, seen: &Provider) -> Result<Arc<Provider>, Failure> {
        let mut refreshes = self.refresh.lock().await;
        let Some(current) = self.current.load_full() else {
            return Err(Failure::Unreachable(Endpoint::Discovery));
        };
        if current.keys_generation != seen.keys_generation
            || refreshes
                .keys_fetched
                .is_some_and(|at| at.elapsed() < KEY_REFRESH_INTERVAL)
        {
            return Ok(current);
        }
        refreshes.keys_fetched = Some(Instant::now());
        let keys = JsonWebKeySet::fetch_async(current.metadata.jwks_uri(), &self.http)
            .await
            .map_err(|e| self.discovery_failure(Endpoint::Jwks, e))?;
        let metadata = current.metadata.clone().set_jwks(keys);
        let Some(token) = metadata.token_endpoint().cloned() else {
            return Err(self.unusable("it names no token_endpoint".into()));
        };
        let fresh = Arc::new(self.build(
            metadata,
            token,
            current.algorithms.clone(),
            current.keys_generation + 1,
        ));
        self.current.store(Some(fresh.clone()));
        tracing::info!(
            issuer = self.settings.issuer.as_str(),
            "unknown signing key: the provider's keys fetched again"
        );
        Ok(fresh)
    }

    /// The URL that ends the provider's session too (OpenID Connect RP-Initiated Logout 1.0),
    /// when the provider has an end-session endpoint: with the session's ID token as the
    /// hint, and back to `after` once done.
    pub async fn logout_url(&self, id_token: &str, after: &str) -> Option<openidconnect::url::Url> {
        let provider = match self.provider().await {
            Ok(provider) => provider,
            Err(failure) => {
                tracing::warn!(%failure, "provider logout skipped");
                return None;
            }
        };
        let end = provider.end_session()?.clone();
        let mut request = LogoutRequest::from(end)
            .set_client_id(self.settings.client_id.clone())
            .set_post_logout_redirect_uri(PostLogoutRedirectUrl::new(after.to_owned()).ok()?);
        if let Ok(token) = id_token.parse::<IdToken>() {
            request = request.set_id_token_hint(&token);
        }
        Some(request.http_get_url())
    }

    fn unusable(&self, why: String) -> Failure {
        tracing::warn!(issuer = self.settings.issuer.as_str(), %why, "identity provider unusable");
        Failure::Discovery(why)
    }

    fn discovery_failure(
        &self,
        endpoint: Endpoint,
        error: DiscoveryError<HttpClientError<reqwest::Error>>,
    ) -> Failure {
        let failure = match &error {
            DiscoveryError::Request(_) => Failure::Unreachable(endpoint),
            DiscoveryError::Response(status, _, _) if status.is_server_error() => {
                Failure::Unreachable(endpoint)
            }
            DiscoveryError::Response(_, _, why) => Failure::Discovery(why.clone()),
            DiscoveryError::Parse(e) => Failure::Discovery(format!("not valid metadata ({e})")),
            DiscoveryError::Validation(why) => Failure::Discovery(why.clone()),
            other => Failure::Discovery(other.to_string()),
        };
        tracing::warn!(
            issuer = self.settings.issuer.as_str(),
            error = %chain(&error),
            "identity provider discovery failed"
        );
        failure
    }

    fn token_failure(
        &self,
        error: RequestTokenError<
            HttpClientError<reqwest::Error>,
            StandardErrorResponse<CoreErrorResponseType>,
        >,
    ) -> Failure {
        let failure = match &error {
            RequestTokenError::ServerResponse(answer) => Failure::TokenRefused {
                error: answer.error().as_ref().to_owned(),
                description: answer.error_description().cloned(),
            },
            RequestTokenError::Request(_) => Failure::Unreachable(Endpoint::Token),
            // Not the body: a malformed answer may still hold a token.
            RequestTokenError::Parse(..) | RequestTokenError::Other(_) => Failure::TokenAnswer,
        };
        let cause = match &error {
            RequestTokenError::Parse(e, _) => format!("unreadable answer at {}", e.path()),
            other => chain(other),
        };
        tracing::warn!(
            issuer = self.settings.issuer.as_str(),
            error = %cause,
            "identity provider refused the code exchange"
        );
        failure
    }
}

/// Why an ID token did not verify.
enum Unverified {
    /// No published key has its `kid` (and type): the provider may have rotated.
    UnknownKey,
    Refused(IdTokenProblem),
}

/// The ID token's claims, verified against `provider` and `nonce`.
fn verify(
    provider: &Provider,
    id_token: &IdToken,
    nonce: &Nonce,
) -> Result<IdTokenClaims, Unverified> {
    use openidconnect::ClaimsVerificationError as E;
    let verifier = provider
        .client
        .id_token_verifier()
        .set_allowed_algs(provider.algorithms.clone())
        .set_issue_time_verifier_fn(|iat| {
            let now = i64::try_from(shared::unix_now()).unwrap_or(i64::MAX);
            if iat.timestamp() > now.saturating_add(IAT_LEEWAY_SECS) {
                Err(format!(
                    "it was issued in the future (iat {})",
                    iat.timestamp()
                ))
            } else {
                Ok(())
            }
        });
    let problem = match id_token.claims(&verifier, nonce) {
        Ok(claims) => return Ok(claims.clone()),
        Err(E::SignatureVerification(SignatureVerificationError::NoMatchingKey)) => {
            return Err(Unverified::UnknownKey);
        }
        Err(E::SignatureVerification(
            SignatureVerificationError::DisallowedAlg(why)
            | SignatureVerificationError::UnsupportedAlg(why),
        )) => IdTokenProblem::Algorithm(why),
        Err(E::SignatureVerification(_)) => IdTokenProblem::Signature,
        Err(E::InvalidAudience(why)) => IdTokenProblem::Audience(why),
        Err(E::InvalidIssuer(why)) => IdTokenProblem::Issuer(why),
        Err(E::InvalidNonce(_)) => IdTokenProblem::Nonce,
        Err(E::Expired(why)) => IdTokenProblem::Time(why),
        Err(other) => IdTokenProblem::Malformed(other.to_string()),
    };
    Err(Unverified::Refused(problem))
}

/// Algorithms a published public key verifies: never `none`, never one keyed by the client
/// secret (whoever holds it could sign any user's ID token).
fn asymmetric(alg: &CoreJwsSigningAlgorithm) -> bool {
    !matches!(alg, CoreJwsSigningAlgorithm::None) && !alg.uses_shared_secret()
}

/// An error with its causes, for the log.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_asymmetric_algorithms_are_accepted() {
        for alg in [
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            CoreJwsSigningAlgorithm::RsaSsaPssSha256,
            CoreJwsSigningAlgorithm::EcdsaP256Sha256,
            CoreJwsSigningAlgorithm::EdDsa,
        ] {
            assert!(asymmetric(&alg), "{alg:?}");
        }
        for alg in [
            CoreJwsSigningAlgorithm::None,
            CoreJwsSigningAlgorithm::HmacSha256,
            CoreJwsSigningAlgorithm::HmacSha512,
        ] {
            assert!(!asymmetric(&alg), "{alg:?}");
        }
    }
}
