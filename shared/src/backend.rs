//! Which implementation checks signatures: jsonwebtoken's RustCrypto backend, always built and
//! the default, or its aws-lc-rs backend with this crate's `aws-lc` feature (the benchmark
//! measures both). jsonwebtoken takes one backend per process, fixed by the first use.

use jsonwebtoken::crypto::CryptoProvider;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CryptoBackend {
    RustCrypto,
    #[cfg(feature = "aws-lc")]
    AwsLc,
}

impl CryptoBackend {
    /// Every backend this build has.
    pub const ALL: &[CryptoBackend] = &[
        CryptoBackend::RustCrypto,
        #[cfg(feature = "aws-lc")]
        CryptoBackend::AwsLc,
    ];

    /// jsonwebtoken's name for it (its crate feature).
    pub fn name(self) -> &'static str {
        match self {
            CryptoBackend::RustCrypto => "rust_crypto",
            #[cfg(feature = "aws-lc")]
            CryptoBackend::AwsLc => "aws_lc_rs",
        }
    }

    pub fn parse(name: &str) -> Option<CryptoBackend> {
        Self::ALL.iter().copied().find(|b| b.name() == name)
    }

    /// Makes this the process's backend. Call it before loading any key; `false` when the
    /// process already uses one (the first choice stands).
    pub fn install(self) -> bool {
        let provider: &'static CryptoProvider = match self {
            CryptoBackend::RustCrypto => &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER,
            #[cfg(feature = "aws-lc")]
            CryptoBackend::AwsLc => &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER,
        };
        provider.install_default().is_ok()
    }
}

/// RustCrypto unless the process chose otherwise: with both backends built, jsonwebtoken
/// would refuse to pick one. Called by the `VerifyingKey` constructors, whose `kid`
/// thumbprint is the first use of the backend (every verification needs a key first).
pub(crate) fn ensure_chosen() {
    CryptoBackend::RustCrypto.install();
}
