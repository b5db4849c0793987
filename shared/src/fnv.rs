//! 64-bit FNV-1a (Fowler–Noll–Vo, as in draft-eastlake-fnv), written once: file versions
//! (`ETag`s, and what a resume grant is bound to), the app's asset URLs and the Redis burn
//! store's hash slots all depend on its exact values, so they never change. A fingerprint,
//! not a secret and no defence against chosen inputs.

const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a over several pieces, as over their concatenation (so no buffer is needed to join
/// them). `const`, so a hash of compiled-in bytes costs nothing at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fnv1a(u64);

impl Fnv1a {
    pub const fn new() -> Fnv1a {
        Fnv1a(OFFSET_BASIS)
    }

    /// The hash continued over `bytes`.
    pub const fn write(self, bytes: &[u8]) -> Fnv1a {
        let mut hash = self.0;
        let mut i = 0;
        while i < bytes.len() {
            hash = (hash ^ bytes[i] as u64).wrapping_mul(PRIME);
            i += 1;
        }
        Fnv1a(hash)
    }

    pub const fn finish(self) -> u64 {
        self.0
    }
}

impl Default for Fnv1a {
    fn default() -> Fnv1a {
        Fnv1a::new()
    }
}

/// 64-bit FNV-1a of `bytes`.
pub const fn fnv1a(bytes: &[u8]) -> u64 {
    Fnv1a::new().write(bytes).finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors of the FNV reference test suite: a changed constant, or multiply before xor
    /// (FNV-1), fails them.
    #[test]
    fn known_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn pieces_hash_as_their_concatenation() {
        assert_eq!(
            Fnv1a::new().write(b"foo").write(b"").write(b"bar").finish(),
            fnv1a(b"foobar")
        );
        assert_eq!(Fnv1a::default(), Fnv1a::new());
    }
}
