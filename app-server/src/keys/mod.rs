//! The signing key (one for the whole fleet of app servers: `--signing-key`, or the shared
//! data dir's) and the public key set a separately run download server reads.
//!
//! Rotation (`app-server keys rotate`, data-dir keys only) keeps this layout under
//! `<data>/keys/`: the active key stays at `ed25519.pem` (or `hs256.key`); each retired key
//! goes to `retired/` (Ed25519: the public key only; HS256: the secret, which is also what
//! verifies) and is listed with its retirement time in `rotation.json`. Running app servers
//! notice a rotation within [`KEY_CHECK_INTERVAL`] and publish the active key plus every
//! retired key younger than `--retired-key-publish-secs`, each with its `retired_at`: a
//! token a retired key signed after that is refused, so a stolen retired key mints nothing.
//! `app-server keys revoke KID` drops a key from `rotation.json` (and so from the published
//! set) at once.

mod layout;
mod live;
mod rotation;

pub use layout::*;
pub use live::*;
pub use rotation::*;
#[cfg(test)]
use rotation::{RETIRED_DIR, ROTATION_FILE};

#[cfg(test)]
mod tests {

    use shared::{Algorithm, SigningKey, VerifyingKey};

    use super::*;

    #[test]
    fn app_servers_racing_to_create_the_key_all_get_the_same_one() {
        for alg in [Algorithm::EdDSA, Algorithm::HS256] {
            let dir = tempfile::tempdir().unwrap();
            let path = signing_key_path(dir.path(), alg);
            let barrier = std::sync::Barrier::new(8);
            let kids: Vec<String> = std::thread::scope(|s| {
                let racers: Vec<_> = (0..8)
                    .map(|_| {
                        s.spawn(|| {
                            barrier.wait();
                            load_or_create(&path, alg).unwrap().kid().to_owned()
                        })
                    })
                    .collect();
                racers.into_iter().map(|r| r.join().unwrap()).collect()
            });
            let on_disk = SigningKey::load(&path, alg).unwrap();
            assert!(kids.iter().all(|kid| kid == on_disk.kid()), "{kids:?}");
            // Only the key is left: no candidate files.
            let names: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names, [path.file_name().unwrap()], "{alg}");
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(&path).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "{alg}");
            }
        }
    }

    #[test]
    fn an_existing_key_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = signing_key_path(dir.path(), Algorithm::EdDSA);
        let first = load_or_create(&path, Algorithm::EdDSA).unwrap();
        let again = load_or_create(&path, Algorithm::EdDSA).unwrap();
        assert_eq!(first.kid(), again.kid());
    }

    #[test]
    fn rotation_keeps_the_active_path_and_ages_retired_keys_out() {
        for alg in [Algorithm::EdDSA, Algorithm::HS256] {
            let dir = tempfile::tempdir().unwrap();
            let path = signing_key_path(dir.path(), alg);
            let first = load_or_create(&path, alg).unwrap();
            let rotation = rotate(dir.path(), alg, 3600).unwrap();
            assert_eq!(rotation.retired_kid, first.kid());
            let source = KeySource::DataDir(path.clone());
            let ring = KeyRing::load(&source, alg).unwrap();
            assert_eq!(ring.active.kid(), rotation.active_kid, "{alg}");
            assert_eq!(
                SigningKey::load(&path, alg).unwrap().kid(),
                rotation.active_kid
            );
            let now = shared::unix_now();
            let kids = |keys: Vec<VerifyingKey>| {
                keys.iter().map(|k| k.kid().to_owned()).collect::<Vec<_>>()
            };
            assert_eq!(
                kids(ring.published(now, 3600)),
                [rotation.active_kid.clone(), first.kid().to_owned()]
            );
            assert_eq!(
                kids(ring.published(now + 3600, 3600)),
                std::slice::from_ref(&rotation.active_kid)
            );

            // A second rotation with a zero window forgets the first retired key and its file.
            let second = rotate(dir.path(), alg, 0).unwrap();
            let ring = KeyRing::load(&source, alg).unwrap();
            let retired: Vec<_> = ring
                .retired
                .iter()
                .map(|(k, _)| k.kid().to_owned())
                .collect();
            assert_eq!(retired, std::slice::from_ref(&second.retired_kid), "{alg}");
            assert_eq!(
                std::fs::read_dir(dir.path().join(RETIRED_DIR))
                    .unwrap()
                    .count(),
                1
            );
            // Retired Ed25519 keys keep only their public half.
            if alg == Algorithm::EdDSA {
                let entry = std::fs::read_dir(dir.path().join(RETIRED_DIR))
                    .unwrap()
                    .next()
                    .unwrap();
                let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
                assert!(
                    text.contains("PUBLIC KEY") && !text.contains("PRIVATE"),
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn published_retired_keys_carry_their_retirement_and_revoked_keys_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        let alg = Algorithm::EdDSA;
        let path = signing_key_path(dir.path(), alg);
        let source = KeySource::DataDir(path.clone());
        let first = load_or_create(&path, alg).unwrap();
        let before = shared::unix_now();
        let rotation = rotate(dir.path(), alg, 3600).unwrap();
        let ring = KeyRing::load(&source, alg).unwrap();
        let published = ring.published(shared::unix_now(), 3600);
        assert_eq!(published[0].retired_at(), None, "the active key");
        let retired_at = published[1].retired_at().expect("retired_at");
        assert!(
            retired_at >= before + KEY_CHECK_INTERVAL.as_secs(),
            "{retired_at}"
        );

        // A retired key: dropped with its file.
        let revoked = revoke(dir.path(), alg, first.kid(), 3600).unwrap();
        assert!(revoked.rotated_to.is_none());
        let ring = KeyRing::load(&source, alg).unwrap();
        assert!(ring.retired.is_empty());
        assert_eq!(
            std::fs::read_dir(dir.path().join(RETIRED_DIR))
                .unwrap()
                .count(),
            0
        );
        // The active key: rotated out, then dropped.
        let revoked = revoke(dir.path(), alg, &rotation.active_kid, 3600).unwrap();
        let ring = KeyRing::load(&source, alg).unwrap();
        assert_eq!(Some(ring.active.kid()), revoked.rotated_to.as_deref());
        assert!(ring.retired.is_empty());
        // An unknown kid is an error naming the known ones.
        let e = revoke(dir.path(), alg, "nope", 3600)
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope") && e.contains(ring.active.kid()), "{e}");
    }

    #[tokio::test]
    async fn a_missing_signing_key_file_names_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let err = load_signing_key(KeySource::File(missing.clone()), Algorithm::EdDSA)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("SIGNING_KEY_FILE"), "{err}");
        assert!(!missing.exists(), "an explicit key file is never created");
    }
}
