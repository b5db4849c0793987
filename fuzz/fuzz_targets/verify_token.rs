//! Any bytes as a token: `Verifier::verify` must never panic, and nothing unsigned by the
//! configured key is ever accepted.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use shared::{Algorithm, Policy, SigningKey, Verifier};

fn verifiers() -> &'static [Verifier; 2] {
    static V: OnceLock<[Verifier; 2]> = OnceLock::new();
    V.get_or_init(|| {
        [Algorithm::EdDSA, Algorithm::HS256].map(|alg| {
            let key = SigningKey::generate(alg);
            Verifier::new(
                [key.verifying_key().clone()],
                Policy::new("burnlink-app", "burnlink-download"),
            )
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    for verifier in verifiers() {
        // A random key per run: no input can carry a valid signature.
        assert!(verifier.verify(token).is_err());
    }
});
