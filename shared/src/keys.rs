use std::fmt;
use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::Signer as _;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use hmac::{Hmac, Mac};
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, KeyAlgorithm,
    OctetKeyPairParameters, OctetKeyPairType, OctetKeyParameters, OctetKeyType, PublicKeyUse,
    ThumbprintHash,
};
use sha2::Sha256;

use crate::{Claims, TOKEN_TYPE};

/// The two signing schemes. Each key is bound to exactly one of them: a token is only ever
/// checked with the algorithm of the key its `kid` names, whatever its header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Ed25519 (RFC 8037): the download server can verify but never mint. The default.
    EdDSA,
    /// HMAC-SHA-256 with a shared 256-bit secret: about 200 times cheaper to verify, but any
    /// holder of the secret, the download server included, can mint tokens. Opt-in.
    HS256,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::EdDSA => "EdDSA",
            Algorithm::HS256 => "HS256",
        }
    }

    pub(crate) fn jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            Algorithm::EdDSA => jsonwebtoken::Algorithm::EdDSA,
            Algorithm::HS256 => jsonwebtoken::Algorithm::HS256,
        }
    }
}

impl std::str::FromStr for Algorithm {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        match s.to_ascii_lowercase().as_str() {
            "eddsa" | "ed25519" => Ok(Algorithm::EdDSA),
            "hs256" => Ok(Algorithm::HS256),
            _ => Err(KeyError::Invalid(format!(
                "unknown algorithm {s:?} (EdDSA or HS256)"
            ))),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid key: {0}")]
    Invalid(String),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes key material to `path` readable by the owner only (mode 0600), through a temporary
/// file in the same directory and a rename: a crash never leaves half a key.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", crate::random_token(6)));
    let write = || -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, crate::FILE_MODE);
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_error(path)(e)
    })
}

/// HS256 secrets shorter than this are refused (RFC 7518 section 3.2 asks for at least the
/// hash size).
const MIN_HMAC_SECRET: usize = 32;

/// The private half: mints tokens. Its `Debug` shows the key id only.
pub struct SigningKey {
    signer: Signer,
    verifying: VerifyingKey,
}

/// The key material, parsed once: jsonwebtoken's `encode` re-parses a PKCS#8 key and
/// recomputes the public point on every call, which halved minting throughput.
enum Signer {
    Ed25519(ed25519_dalek::SigningKey),
    /// The secret (for saving) and the HMAC keyed with it (cloned per token).
    Hs256(Vec<u8>, Hmac<Sha256>),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.verifying.kid)
            .field("alg", &self.verifying.alg)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A new random key.
    pub fn generate(alg: Algorithm) -> SigningKey {
        let mut seed = [0u8; 32];
        rand::fill(&mut seed);
        match alg {
            Algorithm::EdDSA => Self::ed25519(ed25519_dalek::SigningKey::from_bytes(&seed)),
            Algorithm::HS256 => Self::hs256(&seed).expect("32 bytes is a valid HS256 secret"),
        }
    }

    /// An Ed25519 key from a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`, as `openssl genpkey
    /// -algorithm ed25519` writes).
    pub fn ed25519_from_pem(pem: &str) -> Result<SigningKey, KeyError> {
        let key = ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
            .map_err(|e| KeyError::Invalid(format!("not an Ed25519 PKCS#8 PEM key: {e}")))?;
        Ok(Self::ed25519(key))
    }

    /// An HS256 key from the raw secret bytes (at least 32).
    pub fn hs256(secret: &[u8]) -> Result<SigningKey, KeyError> {
        if secret.len() < MIN_HMAC_SECRET {
            return Err(KeyError::Invalid(format!(
                "an HS256 secret needs at least {MIN_HMAC_SECRET} bytes, got {}",
                secret.len()
            )));
        }
        let mac =
            Hmac::<Sha256>::new_from_slice(secret).map_err(|e| KeyError::Invalid(e.to_string()))?;
        Ok(SigningKey {
            signer: Signer::Hs256(secret.to_vec(), mac),
            verifying: VerifyingKey::hs256(secret)?,
        })
    }

    fn ed25519(key: ed25519_dalek::SigningKey) -> SigningKey {
        SigningKey {
            verifying: VerifyingKey::ed25519(key.verifying_key()),
            signer: Signer::Ed25519(key),
        }
    }

    /// Reads the key at `path`, or creates one there (mode 0600, written to a temporary file
    /// and renamed, so a crash never leaves half a key). Ed25519 keys are stored as PKCS#8 PEM,
    /// HS256 secrets as one line of base64url.
    pub fn load_or_generate(path: &Path, alg: Algorithm) -> Result<SigningKey, KeyError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_file_text(&text, alg),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate(alg);
                key.save(path)?;
                Ok(key)
            }
            Err(e) => Err(io_error(path)(e)),
        }
    }

    /// Reads a key written by [`SigningKey::load_or_generate`].
    pub fn load(path: &Path, alg: Algorithm) -> Result<SigningKey, KeyError> {
        let text = std::fs::read_to_string(path).map_err(io_error(path))?;
        Self::from_file_text(&text, alg)
    }

    fn from_file_text(text: &str, alg: Algorithm) -> Result<SigningKey, KeyError> {
        match alg {
            Algorithm::EdDSA => Self::ed25519_from_pem(text),
            Algorithm::HS256 => {
                let secret = URL_SAFE_NO_PAD
                    .decode(text.trim())
                    .map_err(|_| KeyError::Invalid("HS256 secret is not base64url".into()))?;
                Self::hs256(&secret)
            }
        }
    }

    fn save(&self, path: &Path) -> Result<(), KeyError> {
        let text = match &self.signer {
            Signer::Ed25519(key) => ed25519_pkcs8_v1_pem(key)?,
            Signer::Hs256(secret, _) => URL_SAFE_NO_PAD.encode(secret) + "\n",
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        }
        write_private_file(path, text.as_bytes())
    }

    pub fn kid(&self) -> &str {
        &self.verifying.kid
    }

    pub fn algorithm(&self) -> Algorithm {
        self.verifying.alg
    }

    /// The public half (for HS256, the same secret: keep it private).
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.verifying
    }

    /// Signs `claims` as a download token: a compact JWS (RFC 7515 section 7.1) with header
    /// `{"alg", "typ": "dl+jwt", "kid"}`. Verified by jsonwebtoken on the other side, which
    /// the tests hold to.
    pub fn mint(&self, claims: &Claims) -> Result<String, KeyError> {
        #[derive(serde::Serialize)]
        struct TokenHeader<'a> {
            alg: &'static str,
            typ: &'static str,
            kid: &'a str,
        }
        let header = serde_json::to_vec(&TokenHeader {
            alg: self.verifying.alg.as_str(),
            typ: TOKEN_TYPE,
            kid: &self.verifying.kid,
        })
        .map_err(|e| KeyError::Invalid(e.to_string()))?;
        let payload = serde_json::to_vec(claims).map_err(|e| KeyError::Invalid(e.to_string()))?;
        let mut token = String::with_capacity((header.len() + payload.len() + 64) * 4 / 3 + 8);
        URL_SAFE_NO_PAD.encode_string(header, &mut token);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(payload, &mut token);
        let signature = match &self.signer {
            Signer::Ed25519(key) => key.sign(token.as_bytes()).to_bytes().to_vec(),
            Signer::Hs256(_, mac) => {
                let mut mac = mac.clone();
                mac.update(token.as_bytes());
                mac.finalize().into_bytes().to_vec()
            }
        };
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        Ok(token)
    }
}

/// The RFC 8410 section 7 form (PKCS#8 v1, the private key only) that `openssl genpkey
/// -algorithm ed25519` writes. ed25519-dalek's own encoder writes v2 with the public key
/// attached, which OpenSSL 3.0, Python's `cryptography`, PyJWT and Node's `crypto`/`jose`
/// refuse ("extra data", "DECODER routines::unsupported"). Both forms are read.
fn ed25519_pkcs8_v1_pem(key: &ed25519_dalek::SigningKey) -> Result<String, KeyError> {
    let bytes = ed25519_dalek::pkcs8::KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    };
    Ok(bytes
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| KeyError::Invalid(e.to_string()))?
        .to_string())
}

/// What verifies a token: a key id, the one algorithm it is bound to, and the key.
#[derive(Clone)]
pub struct VerifyingKey {
    pub(crate) kid: String,
    pub(crate) alg: Algorithm,
    pub(crate) decoding: DecodingKey,
    /// The public JWK, for Ed25519 keys only: a shared secret is never published.
    public_jwk: Option<Jwk>,
    /// When the key stopped signing (Unix seconds): tokens it signed later are refused.
    pub(crate) retired_at: Option<u64>,
    /// What checks a signature, made once here: the Ed25519 point decompressed, the HMAC
    /// keyed (cloned per token).
    pub(crate) check: SignatureCheck,
}

/// A key's signature check, ready to run.
#[derive(Clone)]
pub(crate) enum SignatureCheck {
    Ed25519(ed25519_dalek::VerifyingKey),
    Hs256(Hmac<Sha256>),
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    fn ed25519(key: ed25519_dalek::VerifyingKey) -> VerifyingKey {
        crate::backend::ensure_chosen();
        let mut jwk = Jwk {
            common: CommonParameters {
                public_key_use: Some(PublicKeyUse::Signature),
                key_algorithm: Some(KeyAlgorithm::EdDSA),
                ..Default::default()
            },
            algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                key_type: OctetKeyPairType::OctetKeyPair,
                curve: EllipticCurve::Ed25519,
                x: URL_SAFE_NO_PAD.encode(key.as_bytes()),
            }),
        };
        let kid = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .expect("an Ed25519 JWK always has a thumbprint");
        jwk.common.key_id = Some(kid.clone());
        VerifyingKey {
            kid,
            alg: Algorithm::EdDSA,
            decoding: DecodingKey::from_ed_der(key.as_bytes()),
            public_jwk: Some(jwk),
            retired_at: None,
            check: SignatureCheck::Ed25519(key),
        }
    }

    /// An HS256 verification key; its `kid` is the RFC 7638 thumbprint of the secret's JWK,
    /// which reveals nothing of a 256-bit random secret.
    pub fn hs256(secret: &[u8]) -> Result<VerifyingKey, KeyError> {
        if secret.len() < MIN_HMAC_SECRET {
            return Err(KeyError::Invalid(format!(
                "an HS256 secret needs at least {MIN_HMAC_SECRET} bytes"
            )));
        }
        crate::backend::ensure_chosen();
        let jwk = Jwk {
            common: CommonParameters::default(),
            algorithm: AlgorithmParameters::OctetKey(OctetKeyParameters {
                key_type: OctetKeyType::Octet,
                value: URL_SAFE_NO_PAD.encode(secret),
            }),
        };
        let kid = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|e| KeyError::Invalid(e.to_string()))?;
        Ok(VerifyingKey {
            kid: format!("hs-{kid}"),
            alg: Algorithm::HS256,
            decoding: DecodingKey::from_secret(secret),
            public_jwk: None,
            retired_at: None,
            check: SignatureCheck::Hs256(
                Hmac::<Sha256>::new_from_slice(secret)
                    .map_err(|e| KeyError::Invalid(e.to_string()))?,
            ),
        })
    }

    /// An Ed25519 public key from an SPKI PEM (`-----BEGIN PUBLIC KEY-----`); its `kid` is the
    /// RFC 7638 thumbprint, the same the app server publishes.
    pub fn ed25519_from_pem(pem: &str) -> Result<VerifyingKey, KeyError> {
        let key = ed25519_dalek::VerifyingKey::from_public_key_pem(pem)
            .map_err(|e| KeyError::Invalid(format!("not an Ed25519 public key PEM: {e}")))?;
        Ok(Self::ed25519(key))
    }

    /// The SPKI PEM of an Ed25519 key (`None` for a shared secret).
    pub fn to_pem(&self) -> Option<String> {
        let jwk = self.public_jwk.as_ref()?;
        let AlgorithmParameters::OctetKeyPair(p) = &jwk.algorithm else {
            return None;
        };
        let bytes: [u8; 32] = URL_SAFE_NO_PAD.decode(&p.x).ok()?.try_into().ok()?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes).ok()?;
        key.to_public_key_pem(LineEnding::LF).ok()
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    pub fn public_jwk(&self) -> Option<&Jwk> {
        self.public_jwk.as_ref()
    }

    /// This key, retired at `at` (Unix seconds): a token it signed with an `iat` later than
    /// `at` plus the leeway is refused, so a stolen retired key mints nothing new.
    pub fn retired(mut self, at: u64) -> VerifyingKey {
        self.retired_at = Some(at);
        self
    }

    /// When the key was retired, if it was.
    pub fn retired_at(&self) -> Option<u64> {
        self.retired_at
    }
}

/// One published key: the JWK plus `retired_at` (Unix seconds) for a retired key, a private
/// member (RFC 7517 section 4 lets a JWK carry more; other readers ignore it).
#[derive(serde::Serialize, serde::Deserialize)]
struct PublishedJwk {
    #[serde(flatten)]
    jwk: Jwk,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retired_at: Option<u64>,
}

/// The public JWK Set the app server publishes: serializes as `{"keys":[…]}`.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct PublishedJwks {
    keys: Vec<PublishedJwk>,
}

/// The public JWK Set (RFC 7517 section 5) for these keys, each retired one with its
/// `retired_at`; shared secrets are left out.
pub fn jwks<'a>(keys: impl IntoIterator<Item = &'a VerifyingKey>) -> PublishedJwks {
    PublishedJwks {
        keys: keys
            .into_iter()
            .filter_map(|k| {
                Some(PublishedJwk {
                    jwk: k.public_jwk.clone()?,
                    retired_at: k.retired_at,
                })
            })
            .collect(),
    }
}

/// Reads the Ed25519 keys of a JWK Set. Each key must be `kty: OKP`, `crv: Ed25519`, carry a
/// `kid`, and say `alg: EdDSA` if it says an algorithm; anything else is an error rather than
/// silently skipped, so a mistyped file is noticed at start. A key's `retired_at` (an
/// integer, Unix seconds) is kept: see [`VerifyingKey::retired`].
pub fn parse_jwks(json: &str) -> Result<Vec<VerifyingKey>, KeyError> {
    let set: PublishedJwks =
        serde_json::from_str(json).map_err(|e| KeyError::Invalid(format!("JWKS: {e}")))?;
    set.keys
        .iter()
        .map(|PublishedJwk { jwk, retired_at }| {
            let kid = jwk
                .common
                .key_id
                .as_deref()
                .ok_or_else(|| KeyError::Invalid("JWKS: a key has no kid".into()))?;
            let bad = |why: &str| KeyError::Invalid(format!("JWKS key {kid:?}: {why}"));
            if !matches!(jwk.common.key_algorithm, None | Some(KeyAlgorithm::EdDSA)) {
                return Err(bad("alg must be EdDSA"));
            }
            let AlgorithmParameters::OctetKeyPair(p) = &jwk.algorithm else {
                return Err(bad("kty must be OKP"));
            };
            if p.curve != EllipticCurve::Ed25519 {
                return Err(bad("crv must be Ed25519"));
            }
            let bytes: [u8; 32] = URL_SAFE_NO_PAD
                .decode(&p.x)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| bad("x is not 32 bytes of base64url"))?;
            let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                .map_err(|_| bad("x is not an Ed25519 point"))?;
            let mut vk = VerifyingKey::ed25519(key);
            // The publisher names its keys; keep its kid so its tokens find their key.
            vk.kid = kid.to_owned();
            if let Some(j) = vk.public_jwk.as_mut() {
                j.common.key_id = Some(kid.to_owned());
            }
            vk.retired_at = *retired_at;
            Ok(vk)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_round_trip_through_files() {
        let dir = tempfile::tempdir().unwrap();
        for alg in [Algorithm::EdDSA, Algorithm::HS256] {
            let path = dir.path().join(format!("{alg}.key"));
            let first = SigningKey::load_or_generate(&path, alg).unwrap();
            let again = SigningKey::load_or_generate(&path, alg).unwrap();
            assert_eq!(first.kid(), again.kid());
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(&path).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600);
            }
        }
    }

    #[test]
    fn jwks_publishes_ed25519_only_and_parses_back() {
        let ed = SigningKey::generate(Algorithm::EdDSA);
        let hs = SigningKey::generate(Algorithm::HS256);
        let set = jwks([ed.verifying_key(), hs.verifying_key()]);
        let json = serde_json::to_string(&set).unwrap();
        assert!(
            !json.contains("\"k\""),
            "a secret leaked into the JWKS: {json}"
        );
        let keys = parse_jwks(&json).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid(), ed.kid());
        assert_eq!(keys[0].retired_at(), None);
        assert!(!json.contains("retired_at"), "{json}");
    }

    #[test]
    fn a_retired_keys_retirement_time_is_published_and_read_back() {
        let ed = SigningKey::generate(Algorithm::EdDSA);
        let retired = ed.verifying_key().clone().retired(1_795_450_000);
        let json = serde_json::to_string(&jwks([&retired])).unwrap();
        assert!(json.contains(r#""retired_at":1795450000"#), "{json}");
        let keys = parse_jwks(&json).unwrap();
        assert_eq!(keys[0].kid(), ed.kid());
        assert_eq!(keys[0].retired_at(), Some(1_795_450_000));
        // Anything but an integer is a mistyped file.
        let bad = json.replace("1795450000", r#""soon""#);
        assert!(parse_jwks(&bad).is_err());
    }

    #[test]
    fn ed25519_keys_are_written_as_pkcs8_v1_and_v2_files_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ed25519.pem");
        let key = SigningKey::load_or_generate(&path, Algorithm::EdDSA).unwrap();
        let pem = std::fs::read_to_string(&path).unwrap();
        let der = ed25519_dalek::pkcs8::spki::der::Document::from_pem(&pem)
            .unwrap()
            .1;
        // RFC 8410 section 7: SEQUENCE { INTEGER 0, AlgorithmIdentifier, OCTET STRING }, 48 bytes.
        assert_eq!(der.as_bytes().len(), 48, "{pem}");
        assert_eq!(
            &der.as_bytes()[..5],
            [0x30, 0x2e, 0x02, 0x01, 0x00],
            "{pem}"
        );

        // A v2 file (public key attached), as earlier versions wrote, still loads.
        let Signer::Ed25519(inner) = &key.signer else {
            unreachable!()
        };
        let v2 = inner.to_pkcs8_pem(LineEnding::LF).unwrap();
        assert_ne!(v2.as_str(), pem);
        std::fs::write(&path, v2.as_bytes()).unwrap();
        assert_eq!(
            SigningKey::load(&path, Algorithm::EdDSA).unwrap().kid(),
            key.kid()
        );
    }

    #[test]
    fn pem_public_key_gets_the_published_kid() {
        let ed = SigningKey::generate(Algorithm::EdDSA);
        let pem = ed.verifying_key().to_pem().unwrap();
        assert_eq!(
            VerifyingKey::ed25519_from_pem(&pem).unwrap().kid(),
            ed.kid()
        );
    }

    #[test]
    fn short_hmac_secret_is_refused() {
        assert!(SigningKey::hs256(&[7u8; 31]).is_err());
    }

    #[test]
    fn debug_never_shows_key_material() {
        let hs = SigningKey::hs256(&[0x41u8; 32]).unwrap();
        let shown = format!("{hs:?} {:?}", hs.verifying_key());
        assert!(
            !shown.contains("QUFB") && !shown.contains("65, 65"),
            "{shown}"
        );
    }
}
