//! Any bytes as a token: `Verifier::verify` must never panic, nothing unsigned by the
//! configured key is ever accepted, and every refusal is the one the reference path through
//! `jsonwebtoken::decode` gives.
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
    let now = shared::unix_now();
    for verifier in verifiers() {
        // A random key per run: no input can carry a valid signature.
        let answer = verifier.verify_allowing_expiry_at(token, now);
        assert!(answer.is_err());
        assert_eq!(answer, verifier.verify_with_jsonwebtoken_at(token, now));
    }
});
