use std::borrow::Cow;
use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::{DecodeSliceError, Engine};
use jsonwebtoken::Validation;
use jsonwebtoken::errors::ErrorKind;
use serde::Deserialize;

use crate::keys::SignatureCheck;
use crate::{Claims, DownloadName, Jti, MAX_TOKEN_BYTES, StorageKey, TOKEN_TYPE, VerifyingKey};

/// What a verifier accepts besides a good signature.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The only accepted `iss`.
    pub issuer: String,
    /// The only accepted `aud`.
    pub audience: String,
    /// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds. Small on purpose:
    /// jsonwebtoken's default of 60 s would double a one-minute link's life.
    pub leeway: u64,
    /// Longest accepted `exp - iat`, in seconds: a leaked or misconfigured minter cannot
    /// hand out long-lived links.
    pub max_lifetime: u64,
    /// Tokens issued (`iat`) before this moment are refused: set by a download server whose
    /// burn store forgot what it burned (memory store after a restart).
    pub not_issued_before: Option<u64>,
}

impl Policy {
    pub const DEFAULT_LEEWAY: u64 = 5;
    pub const DEFAULT_MAX_LIFETIME: u64 = 300;

    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Policy {
        Policy {
            issuer: issuer.into(),
            audience: audience.into(),
            leeway: Self::DEFAULT_LEEWAY,
            max_lifetime: Self::DEFAULT_MAX_LIFETIME,
            not_issued_before: None,
        }
    }
}

/// Why a token was refused. Only [`TokenError::Expired`] is worth telling a user apart (their
/// link is simply old); every other case is "this is not a valid link".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is longer than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    #[error("token is not a compact JWS")]
    Malformed,
    #[error("token type is not {TOKEN_TYPE}")]
    WrongType,
    #[error("token header carries critical extensions")]
    CriticalHeader,
    #[error("token names no known key")]
    UnknownKey,
    #[error("token algorithm does not match its key")]
    WrongAlgorithm,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token audience is wrong")]
    WrongAudience,
    #[error("token issuer is wrong")]
    WrongIssuer,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token lives longer than allowed")]
    LifetimeTooLong,
    #[error("token was issued before the burn store's records begin")]
    IssuedBeforeStart,
    #[error("token was issued after its key was retired")]
    IssuedAfterRetirement,
    #[error("token claims are invalid: {0}")]
    BadClaims(&'static str),
    #[error("token has expired")]
    Expired,
}

/// A verified token: what it grants, as domain types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub jti: Jti,
    pub sub: String,
    pub file: StorageKey,
    pub name: DownloadName,
    pub iat: u64,
    pub exp: u64,
}

/// The header fields we read. Others (`jku`, `jwk`, `x5u`, `x5c`...) are ignored: a key is
/// never taken from the token itself (RFC 8725 section 3.10). Duplicate members are refused
/// before this is parsed ([`unique_members`]).
///
/// Strings are borrowed from the decoded header unless they hold escapes (one allocation per
/// member otherwise, on every download: issue 29).
#[derive(Deserialize)]
struct RawHeader<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(default, borrow)]
    typ: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    kid: Option<Cow<'a, str>>,
    /// `Some` whenever the member is present, even as `null`: presence alone refuses.
    #[serde(default, deserialize_with = "present")]
    crit: Option<()>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<()>, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| Some(()))
}

/// The claims as [`Claims`] reads them (every member required, the same types), their strings
/// borrowed from the decoded payload unless they hold escapes: the verifier copies only what
/// the [`Grant`] keeps.
#[derive(Deserialize)]
struct ClaimsView<'a> {
    #[serde(borrow)]
    iss: Cow<'a, str>,
    #[serde(borrow)]
    aud: Cow<'a, str>,
    #[serde(borrow)]
    sub: Cow<'a, str>,
    #[serde(borrow)]
    jti: Cow<'a, str>,
    iat: u64,
    nbf: u64,
    exp: u64,
    #[serde(borrow)]
    file: Cow<'a, str>,
    #[serde(borrow)]
    name: Cow<'a, str>,
}

impl<'a> ClaimsView<'a> {
    fn of(c: &'a Claims) -> ClaimsView<'a> {
        ClaimsView {
            iss: Cow::Borrowed(&c.iss),
            aud: Cow::Borrowed(&c.aud),
            sub: Cow::Borrowed(&c.sub),
            jti: Cow::Borrowed(&c.jti),
            iat: c.iat,
            nbf: c.nbf,
            exp: c.exp,
            file: Cow::Borrowed(&c.file),
            name: Cow::Borrowed(&c.name),
        }
    }
}

/// A JSON object whose member names are all distinct (compared after unescaping, so `"kid"`
/// and `"k\u0069d"` are the same name). RFC 7515 section 4 and RFC 7519 section 4 let a
/// parser refuse duplicates; we do, so no two parsers can read different claims from one token.
struct UniqueMembers;

impl<'de> Deserialize<'de> for UniqueMembers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = UniqueMembers;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<UniqueMembers, A::Error> {
                // The first names on the stack (a token has about ten), any more in a `Vec`.
                let mut first: [Cow<'de, str>; 16] = Default::default();
                let mut more: Vec<Cow<'de, str>> = Vec::new();
                let mut count = 0;
                while let Some(Name(name)) = map.next_key::<Name<'de>>()? {
                    if first[..count.min(first.len())].contains(&name) || more.contains(&name) {
                        return Err(serde::de::Error::custom("duplicate member"));
                    }
                    match first.get_mut(count) {
                        Some(slot) => *slot = name,
                        None => more.push(name),
                    }
                    count += 1;
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
                Ok(UniqueMembers)
            }
        }
        d.deserialize_map(Visitor)
    }
}

/// A member name: borrowed from the JSON when it has no escapes (serde's own `Cow<str>` always
/// copies: one allocation per member of every token, issue 29), unescaped into a copy when it
/// has some.
struct Name<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, name: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Borrowed(name)))
            }
            fn visit_str<E>(self, name: &str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(name.to_owned())))
            }
            fn visit_string<E>(self, name: String) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(name)))
            }
        }
        d.deserialize_str(Visitor)
    }
}

/// Whether `json` is one object with no duplicate member names.
fn unique_members(json: &[u8]) -> bool {
    serde_json::from_slice::<UniqueMembers>(json).is_ok()
}

struct KeyEntry {
    key: VerifyingKey,
    validation: Validation,
}

/// The one validation function, with its keys and policy. Built once, shared by reference.
pub struct Verifier {
    keys: HashMap<String, KeyEntry>,
    policy: Policy,
    known: KnownHeaders,
}

/// How many distinct headers [`KnownHeaders`] remembers: a minter signs every token of a key
/// under one header, so this is room for a few minters per key.
const KNOWN_HEADERS: usize = 16;

/// Header segments (still base64) that passed every check made of a header alone, under a
/// good signature, each with its key's `kid`. Whether a header passes depends only on its bytes and the verifier's keys,
/// which never change, so a token whose header is here skips the decode and the three JSON
/// reads of [`Verifier::check_whole_header`] (issue 29). Bounded and lock-free: slots are set
/// once, a full table stays as it is and other headers are checked every time.
#[derive(Default)]
struct KnownHeaders([std::sync::OnceLock<(Box<str>, Box<str>)>; KNOWN_HEADERS]);

impl KnownHeaders {
    fn kid(&self, header: &str) -> Option<&str> {
        self.0
            .iter()
            .map_while(|slot| slot.get())
            .find(|(known, _)| **known == *header)
            .map(|(_, kid)| &**kid)
    }

    /// Remembers the header of `token`, which `entry`'s key has just been seen to sign, in the
    /// first free slot, unless it is there already or none is free. Only a signed header goes
    /// in: anyone can send headers that pass the checks, but not fill the table with them.
    /// Two threads may fill two slots with the same header; lookups find the first.
    fn remember(&self, token: &str, entry: &KeyEntry) {
        let header = token.split('.').next().unwrap_or_default();
        if self.kid(header).is_some() {
            return;
        }
        for slot in &self.0 {
            if slot
                .set((header.into(), entry.key.kid.as_str().into()))
                .is_ok()
            {
                return;
            }
        }
    }
}

impl Verifier {
    pub fn new(keys: impl IntoIterator<Item = VerifyingKey>, policy: Policy) -> Verifier {
        let keys = keys
            .into_iter()
            .map(|key| {
                // One algorithm per key, fixed here: the header's `alg` never chooses.
                let mut v = Validation::new(key.alg.jwt());
                // `exp` and `nbf` are checked in `check_claims` against the caller's one
                // reading of the clock, the same reading its burn is kept by.
                v.validate_exp = false;
                v.validate_nbf = false;
                v.validate_aud = true;
                v.set_required_spec_claims(&["exp", "nbf", "aud", "iss", "sub"]);
                v.set_audience(&[&policy.audience]);
                v.set_issuer(&[&policy.issuer]);
                (key.kid.clone(), KeyEntry { key, validation: v })
            })
            .collect();
        Verifier {
            keys,
            policy,
            known: KnownHeaders::default(),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// Checks a token and returns what it grants. Refuses, in order: oversized or malformed
    /// input, a wrong `typ`, `crit` headers, an unknown `kid`, an `alg` other than the key's,
    /// a bad signature, wrong `aud`/`iss`, expiry/`nbf` beyond the leeway, a missing or
    /// ill-typed claim, a lifetime over the maximum, a token issued before
    /// `not_issued_before`, and a token its key signed after the key's retirement (+ leeway).
    pub fn verify(&self, token: &str) -> Result<Grant, TokenError> {
        self.verify_at(token, crate::unix_now())
    }

    /// [`Verifier::verify`] at `now` (Unix seconds): a caller that goes on to burn the token
    /// decides both with one reading of the clock.
    pub fn verify_at(&self, token: &str, now: u64) -> Result<Grant, TokenError> {
        match self.verify_allowing_expiry_at(token, now)? {
            (_, true) => Err(TokenError::Expired),
            (grant, false) => Ok(grant),
        }
    }

    /// Every check of [`Verifier::verify_at`], except that a token past `exp` (and its leeway)
    /// is returned with `true` instead of refused: for the download server's resume of a
    /// download the token started, which is allowed beyond the token's life only with the
    /// secret its first response carried.
    ///
    /// The same answers as jsonwebtoken's `decode` with our `Validation` followed by our own
    /// checks ([`Verifier::verify_with_jsonwebtoken_at`], which `shared/tests/verify_props.rs`
    /// holds this to), with each part of the token decoded once and the key's signature check
    /// prepared at load.
    pub fn verify_allowing_expiry_at(
        &self,
        token: &str,
        now: u64,
    ) -> Result<(Grant, bool), TokenError> {
        let (entry, known) = self.check_whole_header(token)?;
        self.verify_after_header(token, entry, known, now)
    }

    /// [`Verifier::verify_allowing_expiry_at`], unless `token` names an Ed25519 key and passes
    /// the header checks: then `None`, and its signature is best checked in a batch
    /// ([`Verifier::verify_batch_allowing_expiry_at`]).
    pub fn verify_unless_batchable_at(
        &self,
        token: &str,
        now: u64,
    ) -> Option<Result<(Grant, bool), TokenError>> {
        match self.check_whole_header(token) {
            Err(e) => Some(Err(e)),
            Ok((entry, _)) if matches!(entry.key.check, SignatureCheck::Ed25519(_)) => None,
            Ok((entry, known)) => Some(self.verify_after_header(token, entry, known, now)),
        }
    }

    fn verify_after_header(
        &self,
        token: &str,
        entry: &KeyEntry,
        known: bool,
        now: u64,
    ) -> Result<(Grant, bool), TokenError> {
        let mut buffer = [0; SIGNATURE_BUFFER];
        let (message, signature) = signed_parts(token, &mut buffer)?;
        let signed = match &entry.key.check {
            SignatureCheck::Ed25519(key) => {
                let signature = ed25519_signature(signature)?;
                ed25519_dalek::Verifier::verify(key, message, &signature).is_ok()
            }
            SignatureCheck::Hs256(mac) => {
                let mut mac = mac.clone();
                hmac::Mac::update(&mut mac, message);
                hmac::Mac::verify_slice(mac, signature).is_ok()
            }
        };
        if !signed {
            return Err(TokenError::BadSignature);
        }
        if !known {
            self.known.remember(token, entry);
        }
        self.after_signature(token, entry, now)
    }

    /// The reference implementation: [`Verifier::verify_allowing_expiry_at`] through
    /// `jsonwebtoken::decode`, as every download was verified before issue 18. Kept for the
    /// property tests and the benchmark's before/after figure; nothing serves with it.
    #[doc(hidden)]
    pub fn verify_with_jsonwebtoken_at(
        &self,
        token: &str,
        now: u64,
    ) -> Result<(Grant, bool), TokenError> {
        let (entry, _) = self.check_header(token)?;
        let claims = jsonwebtoken::decode::<Claims>(token, &entry.key.decoding, &entry.validation)
            .map_err(token_error)?
            .claims;
        let (mut stack, mut heap) = ([0; PAYLOAD_BUFFER], Vec::new());
        if !unique_members(decoded_payload(token, &mut stack, &mut heap)?) {
            return Err(TokenError::BadClaims("duplicate member"));
        }
        self.check_claims(ClaimsView::of(&claims), entry.key.retired_at, now)
    }

    /// [`Verifier::verify_allowing_expiry_at`] for each of `tokens` (each with its own reading
    /// of the clock), with the same answer for each, but the Ed25519 signatures checked together (`ed25519_dalek::verify_batch`, about
    /// half the cost per signature from a few dozen on). When the batch fails, every one of its
    /// tokens is checked again on its own, so a forged token never passes and costs one
    /// extra single check. HS256 tokens take the single path; an Ed25519 token alone, the
    /// single signature check with the decompressed key.
    ///
    /// The batch equation is the cofactored one, the single check (ed25519-dalek's `verify`)
    /// the cofactorless one: they differ only on signatures with a small-order component,
    /// which only the private key's holder can make, so no one else's token passes either way.
    pub fn verify_batch_allowing_expiry_at(
        &self,
        tokens: &[(&str, u64)],
    ) -> Vec<Result<(Grant, bool), TokenError>> {
        let mut out: Vec<Option<Result<(Grant, bool), TokenError>>> = vec![None; tokens.len()];
        let mut batch: Vec<(usize, &KeyEntry, bool)> = Vec::with_capacity(tokens.len());
        let mut messages: Vec<&[u8]> = Vec::with_capacity(tokens.len());
        let mut signatures = Vec::with_capacity(tokens.len());
        let mut keys = Vec::with_capacity(tokens.len());
        for (i, &(token, now)) in tokens.iter().enumerate() {
            match self.batchable(token) {
                Ok(Some((entry, known, message, signature, key))) => {
                    batch.push((i, entry, known));
                    messages.push(message);
                    signatures.push(signature);
                    keys.push(key);
                }
                Ok(None) => out[i] = Some(self.verify_allowing_expiry_at(token, now)),
                Err(e) => out[i] = Some(Err(e)),
            }
        }
        let signed = match batch.len() {
            0 => false,
            // The check jsonwebtoken's RustCrypto backend makes, with the point decompressed
            // once instead of per call.
            1 => ed25519_dalek::Verifier::verify(&keys[0], messages[0], &signatures[0]).is_ok(),
            _ => ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok(),
        };
        for (i, entry, known) in batch {
            let (token, now) = tokens[i];
            out[i] = Some(if signed {
                if !known {
                    self.known.remember(token, entry);
                }
                self.after_signature(token, entry, now)
            } else {
                self.verify_allowing_expiry_at(token, now)
            });
        }
        out.into_iter()
            .map(|r| r.unwrap_or(Err(TokenError::Malformed)))
            .collect()
    }

    /// Every check of the token before its signature: [`Verifier::check_header`], then the
    /// header read as jsonwebtoken reads it, whose typed members (`jwk`, `x5c`...) refuse what
    /// ours ignore. Returns the key, and `true` when the header was known ([`KnownHeaders`]):
    /// after the token's shape, such a header is not checked again.
    fn check_whole_header(&self, token: &str) -> Result<(&KeyEntry, bool), TokenError> {
        let segment = header_segment(token)?;
        if let Some(entry) = self.known.kid(segment).and_then(|kid| self.keys.get(kid)) {
            return Ok((entry, true));
        }
        let (entry, header) = self.check_header_segment(segment)?;
        serde_json::from_slice::<jsonwebtoken::Header>(&header)
            .map_err(|_| TokenError::BadClaims("missing or ill-typed"))?;
        Ok((entry, false))
    }

    /// The checks before the signature: size, shape, `typ`, `crit`, `kid` and `alg`. Returns
    /// the key and the decoded header.
    fn check_header(&self, token: &str) -> Result<(&KeyEntry, Vec<u8>), TokenError> {
        self.check_header_segment(header_segment(token)?)
    }

    /// [`Verifier::check_header`] after the token's shape.
    fn check_header_segment(&self, header: &str) -> Result<(&KeyEntry, Vec<u8>), TokenError> {
        let header = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| TokenError::Malformed)?;
        if !unique_members(&header) {
            return Err(TokenError::Malformed);
        }
        let raw: RawHeader = serde_json::from_slice(&header).map_err(|_| TokenError::Malformed)?;
        if !raw.typ.as_deref().is_some_and(is_download_type) {
            return Err(TokenError::WrongType);
        }
        if raw.crit.is_some() {
            // We understand no extension, so any `crit` must be refused (RFC 7515 4.1.11).
            return Err(TokenError::CriticalHeader);
        }
        let entry = raw
            .kid
            .as_deref()
            .and_then(|kid| self.keys.get(kid))
            .ok_or(TokenError::UnknownKey)?;
        if raw.alg != entry.key.alg.as_str() {
            return Err(TokenError::WrongAlgorithm);
        }
        Ok((entry, header))
    }

    /// For an Ed25519 token, what batch verification needs, after every check made before
    /// the signature, so that a token refused before its signature is refused the same way
    /// (and whether its header was known). `None`: not an Ed25519 key.
    #[allow(clippy::type_complexity)]
    fn batchable<'t>(
        &self,
        token: &'t str,
    ) -> Result<
        Option<(
            &KeyEntry,
            bool,
            &'t [u8],
            ed25519_dalek::Signature,
            ed25519_dalek::VerifyingKey,
        )>,
        TokenError,
    > {
        let (entry, known) = self.check_whole_header(token)?;
        let SignatureCheck::Ed25519(key) = entry.key.check else {
            return Ok(None);
        };
        let mut buffer = [0; SIGNATURE_BUFFER];
        let (message, signature) = signed_parts(token, &mut buffer)?;
        let signature = ed25519_signature(signature)?;
        Ok(Some((entry, known, message, signature, key)))
    }

    /// What `jsonwebtoken::decode` checks after a good signature, for our `Validation`: the
    /// claims deserialize (every member required and typed), then `iss`, then `aud`; then our
    /// own checks, the payload decoded once for all of them.
    fn after_signature(
        &self,
        token: &str,
        entry: &KeyEntry,
        now: u64,
    ) -> Result<(Grant, bool), TokenError> {
        let (mut stack, mut heap) = ([0; PAYLOAD_BUFFER], Vec::new());
        let payload = decoded_payload(token, &mut stack, &mut heap)?;
        let claims: ClaimsView<'_> = serde_json::from_slice(payload)
            .map_err(|_| TokenError::BadClaims("missing or ill-typed"))?;
        if claims.iss != self.policy.issuer {
            return Err(TokenError::WrongIssuer);
        }
        if claims.aud != self.policy.audience {
            return Err(TokenError::WrongAudience);
        }
        if !unique_members(payload) {
            return Err(TokenError::BadClaims("duplicate member"));
        }
        self.check_claims(claims, entry.key.retired_at, now)
    }

    /// The claims' checks; `true` with a grant whose token has expired.
    fn check_claims(
        &self,
        c: ClaimsView<'_>,
        retired_at: Option<u64>,
        now: u64,
    ) -> Result<(Grant, bool), TokenError> {
        let p = &self.policy;
        if c.exp.saturating_add(p.leeway) < now {
            // Expiry is told first, as it always was. The grant goes back only for a resume,
            // which is served only with what the token's first, fully checked, download left in
            // the burn store.
            return grant(c).map(|g| (g, true)).map_err(|_| TokenError::Expired);
        }
        if c.nbf > now.saturating_add(p.leeway) {
            return Err(TokenError::NotYetValid);
        }
        if c.exp.saturating_sub(c.iat) > p.max_lifetime {
            return Err(TokenError::LifetimeTooLong);
        }
        if c.iat > now + p.leeway {
            return Err(TokenError::NotYetValid);
        }
        // No leeway here: a token burned in the last seconds before a restart must stay dead.
        if p.not_issued_before.is_some_and(|start| c.iat < start) {
            return Err(TokenError::IssuedBeforeStart);
        }
        // A retired key signs nothing new: whoever still holds it (rotation is the answer to
        // a stolen key) cannot mint links dated after the rotation.
        if retired_at.is_some_and(|at| c.iat > at.saturating_add(p.leeway)) {
            return Err(TokenError::IssuedAfterRetirement);
        }
        Ok((grant(c)?, false))
    }
}

/// Room on the stack for a decoded signature: the longest of ours is Ed25519's 64 bytes, and
/// base64's decoder asks for room by the encoded length (3 bytes per 4 characters).
const SIGNATURE_BUFFER: usize = 96;

/// The first part of a token of the right size and shape (three parts of base64url
/// characters), still encoded.
fn header_segment(token: &str) -> Result<&str, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    if !token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(TokenError::Malformed);
    }
    Ok(header)
}

/// The signed message and the signature, decoded into `buffer`, of a token of the right shape
/// ([`header_segment`]). A signature too long for `buffer` is longer than any key of ours
/// makes: decoded only to tell a bad signature from bad base64.
fn signed_parts<'t, 'b>(
    token: &'t str,
    buffer: &'b mut [u8; SIGNATURE_BUFFER],
) -> Result<(&'t [u8], &'b [u8]), TokenError> {
    let dot = token.rfind('.').ok_or(TokenError::Malformed)?;
    let encoded = &token[dot + 1..];
    match URL_SAFE_NO_PAD.decode_slice(encoded, buffer) {
        Ok(len) => Ok((&token.as_bytes()[..dot], &buffer[..len])),
        Err(DecodeSliceError::OutputSliceTooSmall) => match URL_SAFE_NO_PAD.decode(encoded) {
            Ok(_) => Err(TokenError::BadSignature),
            Err(_) => Err(TokenError::Malformed),
        },
        Err(DecodeSliceError::DecodeError(_)) => Err(TokenError::Malformed),
    }
}

/// Room on the stack for a decoded payload: a minted token's claims are about 300 bytes, and
/// base64's decoder asks for room by the encoded length.
const PAYLOAD_BUFFER: usize = 768;

/// The payload of a token of the right shape ([`header_segment`]), base64-decoded into
/// `stack`, or into `heap` when longer (a token of up to `MAX_TOKEN_BYTES` is still read).
fn decoded_payload<'b>(
    token: &str,
    stack: &'b mut [u8; PAYLOAD_BUFFER],
    heap: &'b mut Vec<u8>,
) -> Result<&'b [u8], TokenError> {
    let payload = token.split('.').nth(1).unwrap_or_default();
    match URL_SAFE_NO_PAD.decode_slice(payload, stack) {
        Ok(len) => Ok(&stack[..len]),
        Err(DecodeSliceError::OutputSliceTooSmall) => {
            *heap = URL_SAFE_NO_PAD
                .decode(payload)
                .map_err(|_| TokenError::Malformed)?;
            Ok(heap)
        }
        Err(DecodeSliceError::DecodeError(_)) => Err(TokenError::Malformed),
    }
}

fn ed25519_signature(bytes: &[u8]) -> Result<ed25519_dalek::Signature, TokenError> {
    ed25519_dalek::Signature::from_slice(bytes).map_err(|_| TokenError::BadSignature)
}

/// jsonwebtoken's refusal as ours.
fn token_error(e: jsonwebtoken::errors::Error) -> TokenError {
    match e.kind() {
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::InvalidAudience => TokenError::WrongAudience,
        ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
        ErrorKind::InvalidAlgorithm => TokenError::WrongAlgorithm,
        ErrorKind::Json(_)
        | ErrorKind::MissingRequiredClaim(_)
        | ErrorKind::InvalidClaimFormat(_) => TokenError::BadClaims("missing or ill-typed"),
        _ => TokenError::Malformed,
    }
}

/// The claims as domain types.
fn grant(c: ClaimsView<'_>) -> Result<Grant, TokenError> {
    Ok(Grant {
        jti: Jti::parse(&c.jti).map_err(|_| TokenError::BadClaims("jti"))?,
        file: StorageKey::parse(&c.file).map_err(|_| TokenError::BadClaims("file"))?,
        name: DownloadName::parse(&c.name).map_err(|_| TokenError::BadClaims("name"))?,
        sub: c.sub.into_owned(),
        iat: c.iat,
        exp: c.exp,
    })
}

/// `typ` is a media type and compared case-insensitively, with or without the
/// `application/` prefix (RFC 7515 section 4.1.9).
fn is_download_type(typ: &str) -> bool {
    const PREFIX: &str = "application/";
    let t = match typ.get(..PREFIX.len()) {
        Some(p) if p.eq_ignore_ascii_case(PREFIX) => &typ[PREFIX.len()..],
        _ => typ,
    };
    t.eq_ignore_ascii_case(TOKEN_TYPE)
}

#[cfg(test)]
mod tests {
    use hmac::{Hmac, Mac as _};

    use super::*;
    use crate::{Algorithm, SigningKey};

    fn setup(alg: Algorithm) -> (SigningKey, Verifier) {
        let key = SigningKey::generate(alg);
        let verifier = Verifier::new(
            [key.verifying_key().clone()],
            Policy::new("https://app", "https://dl"),
        );
        (key, verifier)
    }

    fn claims(now: u64, ttl: u64) -> Claims {
        Claims::new(
            "https://app",
            "https://dl",
            "u1",
            &StorageKey::parse("abc").unwrap(),
            &DownloadName::parse("a.txt").unwrap(),
            now,
            ttl,
        )
    }

    /// The payload is decoded on the stack when it fits; a longer one (the longest name, of
    /// three-byte characters) still verifies, by the same checks.
    #[test]
    fn a_payload_longer_than_the_stack_buffer_verifies() {
        let name = DownloadName::parse(&"\u{20ac}".repeat(255)).unwrap();
        let (key, verifier) = setup(Algorithm::HS256);
        let mut c = claims(crate::unix_now(), 60);
        c.name = name.as_str().to_owned();
        let token = key.mint(&c).unwrap();
        let payload = token.split('.').nth(1).unwrap();
        assert!(payload.len() / 4 * 3 > PAYLOAD_BUFFER, "{}", payload.len());
        let grant = verifier.verify(&token).unwrap();
        assert_eq!(grant.name.as_str(), name.as_str());
        let (grant, _) = verifier
            .verify_with_jsonwebtoken_at(&token, crate::unix_now())
            .unwrap();
        assert_eq!(grant.name.as_str(), name.as_str());
    }

    #[test]
    fn a_minted_token_verifies_for_both_algorithms() {
        for alg in [Algorithm::EdDSA, Algorithm::HS256] {
            let (key, verifier) = setup(alg);
            let c = claims(crate::unix_now(), 60);
            let grant = verifier.verify(&key.mint(&c).unwrap()).unwrap();
            assert_eq!(grant.jti.as_str(), c.jti);
            assert_eq!(grant.file.as_str(), "abc");
        }
    }

    #[test]
    fn time_claims_are_checked_with_a_small_leeway() {
        let (key, verifier) = setup(Algorithm::EdDSA);
        let now = crate::unix_now();
        let mut c = claims(now - 100, 60);
        c.exp = now - 6;
        assert_eq!(
            verifier.verify(&key.mint(&c).unwrap()),
            Err(TokenError::Expired)
        );
        c.exp = now - 3; // inside the 5 s leeway
        assert!(verifier.verify(&key.mint(&c).unwrap()).is_ok());

        let mut c = claims(now, 60);
        c.nbf = now + 30;
        assert_eq!(
            verifier.verify(&key.mint(&c).unwrap()),
            Err(TokenError::NotYetValid)
        );

        let c = claims(now, 301);
        assert_eq!(
            verifier.verify(&key.mint(&c).unwrap()),
            Err(TokenError::LifetimeTooLong)
        );
    }

    #[test]
    fn a_token_from_before_start_is_refused_when_asked() {
        let key = SigningKey::generate(Algorithm::EdDSA);
        let mut policy = Policy::new("https://app", "https://dl");
        let now = crate::unix_now();
        policy.not_issued_before = Some(now);
        let verifier = Verifier::new([key.verifying_key().clone()], policy);
        let c = claims(now - 30, 60);
        assert_eq!(
            verifier.verify(&key.mint(&c).unwrap()),
            Err(TokenError::IssuedBeforeStart)
        );
        assert!(
            verifier
                .verify(&key.mint(&claims(now, 60)).unwrap())
                .is_ok()
        );
    }

    #[test]
    fn a_retired_key_verifies_only_what_it_signed_before_its_retirement() {
        let key = SigningKey::generate(Algorithm::EdDSA);
        let now = crate::unix_now();
        let retired_at = now - 100;
        let verifier = Verifier::new(
            [key.verifying_key().clone().retired(retired_at)],
            Policy::new("https://app", "https://dl"),
        );
        let at = |iat: u64| verifier.verify(&key.mint(&claims(iat, 200)).unwrap());
        assert!(at(retired_at - 50).is_ok());
        assert!(at(retired_at + 5).is_ok(), "inside the leeway");
        assert_eq!(at(retired_at + 6), Err(TokenError::IssuedAfterRetirement));
        assert_eq!(at(now), Err(TokenError::IssuedAfterRetirement));
    }

    #[test]
    fn the_other_keys_algorithm_is_refused() {
        let ed = SigningKey::generate(Algorithm::EdDSA);
        let hs = SigningKey::generate(Algorithm::HS256);
        let verifier = Verifier::new(
            [ed.verifying_key().clone()],
            Policy::new("https://app", "https://dl"),
        );
        let token = hs.mint(&claims(crate::unix_now(), 60)).unwrap();
        assert_eq!(verifier.verify(&token), Err(TokenError::UnknownKey));
    }

    #[test]
    fn shape_errors_come_before_any_crypto() {
        let (_, verifier) = setup(Algorithm::EdDSA);
        assert_eq!(
            verifier.verify(&"a".repeat(5000)),
            Err(TokenError::TooLarge)
        );
        assert_eq!(verifier.verify("a.b"), Err(TokenError::Malformed));
        assert_eq!(verifier.verify("a.b.c.d.e"), Err(TokenError::Malformed));
        assert_eq!(verifier.verify("a b.c.d"), Err(TokenError::Malformed));
        assert_eq!(verifier.verify("e30=.e30.e30"), Err(TokenError::Malformed));
    }

    const SECRET: [u8; 32] = [9; 32];

    /// An HS256 token under any header JSON, signed with [`SECRET`].
    fn signed_under(header: &str, payload: &[u8]) -> String {
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&SECRET).unwrap();
        hmac::Mac::update(&mut mac, message.as_bytes());
        let signature = hmac::Mac::finalize(mac).into_bytes();
        format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// A verifier of [`SECRET`]'s tokens, its key's `kid`, and good claims to sign.
    fn secret_verifier() -> (Verifier, String, Vec<u8>) {
        let key = VerifyingKey::hs256(&SECRET).unwrap();
        let kid = key.kid().to_owned();
        let verifier = Verifier::new([key], Policy::new("https://app", "https://dl"));
        let payload = serde_json::to_vec(&claims(crate::unix_now(), 60)).unwrap();
        (verifier, kid, payload)
    }

    fn header_json(kid: &str, alg: &str, extra: &str) -> String {
        format!(r#"{{"typ":"{TOKEN_TYPE}","alg":"{alg}","kid":"{kid}"{extra}}}"#)
    }

    #[test]
    fn a_header_seen_before_is_remembered_and_every_token_under_it_is_still_checked() {
        for alg in [Algorithm::EdDSA, Algorithm::HS256] {
            let (key, verifier) = setup(alg);
            let now = crate::unix_now();
            let token = key.mint(&claims(now, 60)).unwrap();
            let header = token.split('.').next().unwrap();
            let (signed, _) = token.rsplit_once('.').unwrap();
            let unsigned = format!("{signed}.{}", URL_SAFE_NO_PAD.encode([0u8; 64]));
            assert_eq!(verifier.verify(&unsigned), Err(TokenError::BadSignature));
            assert_eq!(
                verifier.known.kid(header),
                None,
                "a header goes in only under a good signature"
            );
            verifier.verify(&token).unwrap();
            assert_eq!(verifier.known.kid(header), Some(key.kid()));

            // Under the remembered header: another token passes, and anything changed after
            // the header is refused as before.
            let other = key.mint(&claims(now, 60)).unwrap();
            assert!(verifier.verify(&other).is_ok());
            let (signed, signature) = other.rsplit_once('.').unwrap();
            let (_, payload) = signed.split_once('.').unwrap();
            let mut forged = claims(now, 60);
            forged.file = "another".into();
            let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
            assert_eq!(
                verifier.verify(&format!("{header}.{forged_payload}.{signature}")),
                Err(TokenError::BadSignature)
            );
            assert_eq!(
                // A length of 4n + 1 characters is no base64 of anything.
                verifier.verify(&format!(
                    "{header}.{payload}.{}",
                    &signature[..signature.len() / 4 * 4 + 1]
                )),
                Err(TokenError::Malformed),
                "a signature that is not base64"
            );
            let long = URL_SAFE_NO_PAD.encode([1u8; 200]);
            assert_eq!(
                verifier.verify(&format!("{header}.{payload}.{long}")),
                Err(TokenError::BadSignature),
                "a signature longer than any key makes"
            );
            assert_eq!(
                verifier.verify(&format!("{header}.{payload}")),
                Err(TokenError::Malformed)
            );
        }
    }

    #[test]
    fn a_batch_remembers_the_headers_it_found_signed() {
        let (key, verifier) = setup(Algorithm::EdDSA);
        let now = crate::unix_now();
        let tokens: Vec<String> = (0..3)
            .map(|_| key.mint(&claims(now, 60)).unwrap())
            .collect();
        let (signed, _) = tokens[0].rsplit_once('.').unwrap();
        let forged = format!("{signed}.{}", URL_SAFE_NO_PAD.encode([0u8; 64]));
        let header = tokens[0].split('.').next().unwrap();

        let answers = verifier.verify_batch_allowing_expiry_at(&[(&forged, now), (&forged, now)]);
        assert!(answers.iter().all(|a| *a == Err(TokenError::BadSignature)));
        assert_eq!(verifier.known.kid(header), None);

        let batch: Vec<(&str, u64)> = tokens.iter().map(|t| (t.as_str(), now)).collect();
        assert!(
            verifier
                .verify_batch_allowing_expiry_at(&batch)
                .iter()
                .all(Result::is_ok)
        );
        assert_eq!(verifier.known.kid(header), Some(key.kid()));
        let answers = verifier.verify_batch_allowing_expiry_at(&[(&forged, now), batch[1]]);
        assert_eq!(answers[0], Err(TokenError::BadSignature));
        assert!(answers[1].is_ok());
    }

    #[test]
    fn a_refused_header_is_not_remembered_and_is_refused_each_time() {
        let (verifier, kid, payload) = secret_verifier();
        for (header, refusal) in [
            (header_json(&kid, "EdDSA", ""), TokenError::WrongAlgorithm),
            (
                header_json(&kid, "HS256", r#","crit":[]"#),
                TokenError::CriticalHeader,
            ),
            (header_json("nope", "HS256", ""), TokenError::UnknownKey),
            // Ours ignores `jwk`, jsonwebtoken's typed header refuses this one.
            (
                header_json(&kid, "HS256", r#","jwk":1"#),
                TokenError::BadClaims("missing or ill-typed"),
            ),
        ] {
            let token = signed_under(&header, &payload);
            for _ in 0..2 {
                assert_eq!(verifier.verify(&token), Err(refusal.clone()), "{header}");
            }
            assert_eq!(verifier.known.kid(token.split('.').next().unwrap()), None);
        }
    }

    #[test]
    fn headers_past_the_table_are_checked_every_time() {
        let (verifier, kid, payload) = secret_verifier();
        for i in 0..KNOWN_HEADERS + 4 {
            let token = signed_under(
                &header_json(&kid, "HS256", &format!(r#","n":{i}"#)),
                &payload,
            );
            assert!(verifier.verify(&token).is_ok(), "header {i}");
            let header = token.split('.').next().unwrap();
            assert_eq!(verifier.known.kid(header).is_some(), i < KNOWN_HEADERS);
            let (signed, _) = token.rsplit_once('.').unwrap();
            let forged = format!("{signed}.{}", URL_SAFE_NO_PAD.encode([0u8; 32]));
            assert_eq!(verifier.verify(&forged), Err(TokenError::BadSignature));
        }
    }
}
