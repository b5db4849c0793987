//! Whether, and what, one download request is served: the download path's decision, made from
//! the request's facts ([`Facts`]) with what it must consult ([`Gate`]: the keys, the burn
//! store, the files), returned as a [`Decision`] that the route renders. No HTTP here.
//!
//! Order matters and is the contract: verify the token (an expired one goes on only to resume);
//! open the file (missing: 404, nothing burned); settle a resume (file changed: 412); settle the
//! range (unsatisfiable: 416, nothing burned); answer HEAD and prefetch without burning (each
//! learns whether the link was used); burn the `jti` (already burned: 410; store down: 503,
//! nothing served); serve.

use std::sync::Arc;
use std::time::Instant;

use actix_web::http::header::HeaderValue;
use file_store::FileStore as _;
use prometheus::Histogram;
use shared::{Grant, TokenError};

use crate::error::DownloadError;
use crate::file::{self, ByteRange, RangeRequest, StoredFile};
use crate::keys::Keys;
use crate::resume::{self, Offer};
use crate::store::{Burn, BurnRequest, BurnStore, ResumeGrant, keep_until_ms};

/// What one request says, gathered by the route before anything is decided.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'r> {
    /// The token as the request carried it (path or bearer header); `None`: it carried none.
    pub token: Option<&'r str>,
    /// The one reading of the clock (Unix milliseconds) that decides the token's validity and
    /// how long its burn is kept.
    pub now_ms: u64,
    /// `HEAD` (else `GET`, the only other method routed here).
    pub head: bool,
    /// A browser fetching ahead of the person (`Sec-Purpose: prefetch` and kin).
    pub prefetch: bool,
    /// The `Range` header when present (a value that is not text reads as `""`: ignored).
    pub range: Option<&'r str>,
    /// The `If-Range` header when present, likewise.
    pub if_range: Option<&'r str>,
    /// The `Cookie` headers: a resume secret may be in one.
    pub cookies: &'r [HeaderValue],
}

/// The server's settings the decision applies.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// `--clock-skew-secs`: how long burn records outlive the last second this server accepts
    /// their token, for servers whose clocks run behind.
    pub clock_skew: u64,
    /// `--resume-window-secs` in milliseconds: how long a burned download may be resumed by
    /// the client it was sent to (0: never).
    pub resume_window_ms: u64,
    /// `--resume-min-bytes`: smaller files get no resume grant.
    pub resume_min_bytes: u64,
    /// Bytes per read when streaming; a whole-file GET reads this much with the open.
    pub read_buffer: usize,
}

/// What a decision consults, built once in [`crate::Application::build`].
pub struct Gate<S> {
    /// The verification keys in force; swapped whole when they change.
    pub verifier: Arc<Keys>,
    pub store: S,
    /// Where files are read from: `<data dir>/files` or the S3 bucket (`--file-store`).
    pub files: file_store::Files,
    pub rules: Rules,
    /// `burnlink_burn_store_seconds`: how long each burn took.
    pub burn_seconds: Histogram,
}

/// A file to answer with, for the token that named it.
pub struct Parcel {
    pub grant: Grant,
    pub file: StoredFile,
    /// `None`: the whole file (200); else the one satisfiable range asked for (206).
    pub part: Option<ByteRange>,
}

impl Parcel {
    /// The bytes the response carries.
    pub fn range(&self) -> ByteRange {
        self.part.unwrap_or(ByteRange::whole(self.file.size))
    }
}

/// What to answer. Rendered by the route; each refusal's status, code and page are the row of
/// its [`DownloadError`] in [`DownloadError::describe`].
pub enum Decision {
    /// Burned by this request: send it. With `secret`, the response starts a resumable
    /// download (its validator and a cookie carry the secret).
    Serve {
        parcel: Parcel,
        secret: Option<String>,
    },
    /// The rest of the download this token started, for the client that proved its secret:
    /// nothing is burned again.
    Resume { parcel: Parcel, secret: String },
    /// `HEAD` of an unused link: what a `GET` would be answered with, nothing burned.
    Head(Parcel),
    /// Nothing served. `grant` is the verified token's, when verification got that far.
    Refuse {
        reason: DownloadError,
        grant: Option<Grant>,
    },
}

/// What [`Gate::settle`] decided for a verified token.
enum Answer {
    Serve(Option<String>),
    Resume(String),
    Head,
}

impl<S: BurnStore> Gate<S> {
    /// The decision for one request. Awaits the verifier, the file store and the burn store,
    /// each at most once and in the order of the module's contract.
    pub async fn decide(&self, facts: &Facts<'_>) -> Decision {
        let refuse = |reason: DownloadError| Decision::Refuse {
            reason,
            grant: None,
        };
        let Some(token) = facts.token else {
            return refuse(DownloadError::MissingToken);
        };
        let verified = self
            .verifier
            .verify_allowing_expiry_at(token, facts.now_ms / 1000)
            .await;
        let (grant, expired) = match verified {
            Ok(verified) => verified,
            Err(e) => return refuse(e.into()),
        };
        // An expired token goes further only to resume, with a secret its first response
        // carried. Only a range request can resume: a plain GET does not look for one at all.
        let resuming = self.rules.resume_window_ms > 0 && facts.range.is_some();
        let offer = resuming
            .then(|| Offer::of(facts.if_range, facts.cookies, &grant.jti))
            .flatten();
        if expired && offer.is_none() {
            return refuse(DownloadError::Token(TokenError::Expired));
        }
        match self.settle(facts, &grant, expired, offer).await {
            Ok((file, part, answer)) => {
                let parcel = Parcel { grant, file, part };
                match answer {
                    Answer::Serve(secret) => Decision::Serve { parcel, secret },
                    Answer::Resume(secret) => Decision::Resume { parcel, secret },
                    Answer::Head => Decision::Head(parcel),
                }
            }
            Err(reason) => Decision::Refuse {
                reason,
                grant: Some(grant),
            },
        }
    }

    /// A verified token's file, range and answer; every refusal past verification.
    async fn settle(
        &self,
        facts: &Facts<'_>,
        grant: &Grant,
        expired: bool,
        offer: Option<Offer>,
    ) -> Result<(StoredFile, Option<ByteRange>, Answer), DownloadError> {
        let ticket = BurnRequest {
            jti: &grant.jti,
            iat: grant.iat,
            now_ms: facts.now_ms,
            keep_until_ms: keep_until_ms(
                grant.exp,
                self.verifier.policy().leeway,
                self.rules.clock_skew,
            ),
        };
        // A whole-file GET reads its first chunk with the open: one blocking hop for a small
        // file.
        let plain_get = !facts.head && facts.range.is_none() && !facts.prefetch;
        let head = if plain_get { self.rules.read_buffer } else { 0 };
        let file = self
            .files
            .open(&grant.file, head)
            .await?
            .ok_or(DownloadError::NotFound)?;
        // A resume: the rest of the download this token started, for the client holding its
        // secret, while the grant lasts. Anything else is an ordinary request (and so, for a
        // burned token, 410).
        let resumed = match offer {
            Some(offer) if !facts.head && facts.range.is_some() => {
                self.resumed(&ticket, &offer, file.version.tag).await?
            }
            _ => None,
        };
        if expired && resumed.is_none() {
            return Err(DownloadError::Token(TokenError::Expired));
        }
        // `If-Range` is honoured by ignoring `Range`, unless a resume matched it (it was the
        // grant's own validator): only a resume can match, since our validators carry a
        // secret an ordinary request did not prove (RFC 9110 section 13.1.5).
        let range = match facts.if_range {
            Some(_) if resumed.is_none() => RangeRequest::Full,
            _ => file::parse_range(facts.range, file.size),
        };
        let part = match range {
            RangeRequest::Full => None,
            RangeRequest::Partial(r) => Some(r),
            RangeRequest::Unsatisfiable => {
                return Err(DownloadError::RangeNotSatisfiable { size: file.size });
            }
        };
        if let Some(secret) = resumed {
            return Ok((file, part, Answer::Resume(secret)));
        }

        // Link scanners send HEAD and browsers prefetch: neither may consume the download, but
        // both learn whether it has been consumed.
        if (facts.head || facts.prefetch) && self.store.is_burned(&ticket).await? {
            return Err(DownloadError::Used);
        }
        if facts.head {
            return Ok((file, part, Answer::Head));
        }
        if facts.prefetch {
            return Err(DownloadError::PrefetchDeclined);
        }

        let secret = self.burn(&ticket, &file).await?;
        Ok((file, part, Answer::Serve(secret)))
    }

    /// The secret of the resume `offer` proves, if it proves the grant kept with the burn.
    async fn resumed(
        &self,
        ticket: &BurnRequest<'_>,
        offer: &Offer,
        version: u64,
    ) -> Result<Option<String>, DownloadError> {
        let Some(grant) = self.store.resume_grant(ticket).await? else {
            return Ok(None);
        };
        if grant.until_ms <= ticket.now_ms {
            return Ok(None);
        }
        match offer.proves(&grant) {
            // Never bytes of two versions: the one granted is the only one resumed.
            Some(_) if grant.version != version => Err(DownloadError::FileChanged),
            Some(_) if offer.if_range_version.is_some_and(|v| v != grant.version) => {
                Err(DownloadError::FileChanged)
            }
            Some(secret) => Ok(Some(secret.to_owned())),
            None => Ok(None),
        }
    }

    /// Burns the token for `file`; the resume secret of the response when the file is
    /// resumable. The grant is made with the burn, in the same write, for this response's
    /// client alone.
    async fn burn(
        &self,
        ticket: &BurnRequest<'_>,
        file: &StoredFile,
    ) -> Result<Option<String>, DownloadError> {
        let window = self.rules.resume_window_ms;
        let resumable = window > 0 && file.size >= self.rules.resume_min_bytes;
        let secret = resumable.then(resume::new_secret);
        let resume_grant = secret.as_deref().map(|secret| ResumeGrant {
            version: file.version.tag,
            proof: resume::proof(secret),
            until_ms: ticket.now_ms.saturating_add(window),
        });
        let burning = Instant::now();
        let burned = self.store.burn(ticket, resume_grant.as_ref()).await;
        self.burn_seconds.observe(burning.elapsed().as_secs_f64());
        match burned? {
            Burn::Fresh => Ok(secret),
            Burn::AlreadyUsed => Err(DownloadError::Used),
            Burn::Expired => Err(DownloadError::Token(TokenError::Expired)),
            Burn::IssuedBeforeLoss => Err(DownloadError::Token(TokenError::IssuedBeforeStart)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use bytes::Bytes;
    use file_store::{FileStore, Files, LocalStore};
    use prometheus::HistogramOpts;
    use shared::{Claims, DownloadName, SigningKey, StorageKey};

    use super::*;
    use crate::Config;
    use crate::store::{MemoryStore, StoreError};

    const SECRET: &[u8] = b"a test secret of at least thirty-two bytes";

    /// The memory store, watched: how often a burn was asked for, and a switch that takes the
    /// store down (every question fails) or scripts the burn's answer.
    #[derive(Default)]
    struct Watched {
        memory: Arc<MemoryStore>,
        burns: AtomicUsize,
        down: AtomicBool,
        scripted: Mutex<Option<Burn>>,
    }

    impl Watched {
        fn up(&self) -> Result<(), StoreError> {
            match self.down.load(Ordering::SeqCst) {
                true => Err(StoreError("down".into())),
                false => Ok(()),
            }
        }
    }

    impl BurnStore for Watched {
        fn forgets_on_restart(&self) -> bool {
            false
        }

        async fn ready(&self) -> Result<(), StoreError> {
            self.up()
        }

        async fn burn(
            &self,
            req: &BurnRequest<'_>,
            grant: Option<&ResumeGrant>,
        ) -> Result<Burn, StoreError> {
            self.burns.fetch_add(1, Ordering::SeqCst);
            self.up()?;
            let scripted = *self.scripted.lock().unwrap();
            match scripted {
                Some(answer) => Ok(answer),
                None => self.memory.burn(req, grant).await,
            }
        }

        async fn resume_grant(
            &self,
            req: &BurnRequest<'_>,
        ) -> Result<Option<ResumeGrant>, StoreError> {
            self.up()?;
            self.memory.resume_grant(req).await
        }

        async fn is_burned(&self, req: &BurnRequest<'_>) -> Result<bool, StoreError> {
            self.up()?;
            self.memory.is_burned(req).await
        }
    }

    /// A gate over a temporary directory, with the key its tokens are signed with.
    struct Fixture {
        gate: Gate<Watched>,
        key: SigningKey,
        config: Config,
        _dir: tempfile::TempDir,
    }

    const WINDOW_MS: u64 = 3_600_000;

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::hs256(SECRET).unwrap();
        let config = Config {
            keys: vec![key.verifying_key().clone()],
            ..Config::from_defaults()
        };
        let histogram = || Histogram::with_opts(HistogramOpts::new("h", "h")).unwrap();
        let verifier = Keys::load(&config, None, config.policy(), histogram())
            .await
            .unwrap();
        let gate = Gate {
            verifier,
            store: Watched::default(),
            files: Files::new(LocalStore::new(dir.path())),
            rules: Rules {
                clock_skew: 60,
                resume_window_ms: WINDOW_MS,
                // Every file resumable, so every burn hands out a secret.
                resume_min_bytes: 0,
                read_buffer: 8 * 1024,
            },
            burn_seconds: histogram(),
        };
        Fixture {
            gate,
            key,
            config,
            _dir: dir,
        }
    }

    impl Fixture {
        async fn put(&self, key: &StorageKey, bytes: &[u8]) {
            let mut upload = self.gate.files.create(key).await.unwrap();
            upload.write(Bytes::copy_from_slice(bytes)).await.unwrap();
            upload.finish().await.unwrap();
        }

        /// A stored file of `bytes` and a token for it, valid for five minutes from now.
        async fn file(&self, bytes: &[u8]) -> (StorageKey, String) {
            let file = StorageKey::generate();
            self.put(&file, bytes).await;
            (file.clone(), self.token(&file))
        }

        fn token(&self, file: &StorageKey) -> String {
            let claims = Claims::new(
                &self.config.token.issuer,
                &self.config.token.audience,
                "u1",
                file,
                &DownloadName::sanitize("a.bin"),
                shared::unix_now(),
                300,
            );
            self.key.mint(&claims).unwrap()
        }

        fn burns(&self) -> usize {
            self.gate.store.burns.load(Ordering::SeqCst)
        }

        /// A clock reading past the expiry (and leeway) of every token minted above.
        fn after_expiry(&self) -> u64 {
            (shared::unix_now() + 300 + self.config.leeway + 1) * 1000
        }
    }

    fn get(token: &str) -> Facts<'_> {
        Facts {
            token: Some(token),
            now_ms: shared::unix_now_ms(),
            head: false,
            prefetch: false,
            range: None,
            if_range: None,
            cookies: &[],
        }
    }

    /// A `GET` of `token` with `Range: range`.
    fn ranged<'a>(token: &'a str, range: &'a str) -> Facts<'a> {
        Facts {
            range: Some(range),
            ..get(token)
        }
    }

    fn refused(decision: Decision) -> (DownloadError, Option<Grant>) {
        match decision {
            Decision::Refuse { reason, grant } => (reason, grant),
            _ => panic!("expected a refusal"),
        }
    }

    fn served(decision: Decision) -> (Parcel, Option<String>) {
        match decision {
            Decision::Serve { parcel, secret } => (parcel, secret),
            Decision::Refuse { reason, .. } => panic!("refused: {reason}"),
            _ => panic!("expected a burn"),
        }
    }

    fn resume_cookie(parcel: &Parcel, secret: &str) -> [HeaderValue; 1] {
        let cookie = format!("blr_{}={secret}", parcel.grant.jti.as_str());
        [HeaderValue::from_str(&cookie).unwrap()]
    }

    #[tokio::test]
    async fn no_token_and_bad_tokens_are_refused_before_anything_else() {
        let f = fixture().await;
        let (reason, grant) = refused(
            f.gate
                .decide(&Facts {
                    token: None,
                    ..get("")
                })
                .await,
        );
        assert!(matches!(reason, DownloadError::MissingToken), "{reason}");
        assert!(grant.is_none());
        let (reason, grant) = refused(f.gate.decide(&get("a.b.c")).await);
        assert!(
            matches!(reason, DownloadError::Token(TokenError::Malformed)),
            "{reason}"
        );
        assert!(grant.is_none());
        assert_eq!(f.burns(), 0);
    }

    #[tokio::test]
    async fn a_get_burns_once_and_a_replay_is_used() {
        let f = fixture().await;
        let (_, token) = f.file(b"hello world").await;
        let (parcel, secret) = served(f.gate.decide(&get(&token)).await);
        assert_eq!((parcel.part, parcel.range().len()), (None, 11));
        assert!(secret.is_some(), "a resumable download carries its secret");
        let (reason, grant) = refused(f.gate.decide(&get(&token)).await);
        assert!(matches!(reason, DownloadError::Used), "{reason}");
        assert_eq!(grant.map(|g| g.jti), Some(parcel.grant.jti));
    }

    #[tokio::test]
    async fn a_range_is_served_as_a_part_unless_if_range_cannot_match() {
        let f = fixture().await;
        let (file, token) = f.file(b"hello world").await;
        let part = ranged(&token, "bytes=2-5");
        let (parcel, _) = served(f.gate.decide(&part).await);
        assert_eq!(parcel.part, Some(ByteRange { start: 2, end: 6 }));

        // `If-Range` naming a validator this request cannot prove: the whole file.
        let token = f.token(&file);
        let whole = Facts {
            if_range: Some("\"0000000000000001-guess\""),
            ..part
        };
        let whole = Facts {
            token: Some(&token),
            ..whole
        };
        let (parcel, _) = served(f.gate.decide(&whole).await);
        assert_eq!(parcel.part, None);
    }

    #[tokio::test]
    async fn head_and_prefetch_never_burn_but_learn_of_a_burn() {
        let f = fixture().await;
        let (_, token) = f.file(b"hello").await;
        let head = Facts {
            head: true,
            ..get(&token)
        };
        let prefetch = Facts {
            prefetch: true,
            ..get(&token)
        };
        let Decision::Head(parcel) = f.gate.decide(&head).await else {
            panic!("HEAD answered");
        };
        assert_eq!(parcel.range().len(), 5);
        let (reason, _) = refused(f.gate.decide(&prefetch).await);
        assert!(
            matches!(reason, DownloadError::PrefetchDeclined),
            "{reason}"
        );
        assert_eq!(f.burns(), 0, "neither HEAD nor a prefetch burns");

        served(f.gate.decide(&get(&token)).await);
        for facts in [head, prefetch] {
            let (reason, _) = refused(f.gate.decide(&facts).await);
            assert!(matches!(reason, DownloadError::Used), "{reason}");
        }
        assert_eq!(f.burns(), 1);
    }

    #[tokio::test]
    async fn a_missing_file_is_refused_before_the_store_is_asked() {
        let f = fixture().await;
        let token = f.token(&StorageKey::generate());
        f.gate.store.down.store(true, Ordering::SeqCst);
        let (reason, grant) = refused(f.gate.decide(&get(&token)).await);
        assert!(matches!(reason, DownloadError::NotFound), "{reason}");
        assert!(grant.is_some(), "the audit record names the link");
        assert_eq!(f.burns(), 0);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_file_that_cannot_be_read_is_a_server_error_and_burns_nothing() {
        let f = fixture().await;
        let file = StorageKey::generate();
        let token = f.token(&file);
        // A link to itself: opening it fails (`ELOOP`), as a failing disk would.
        let path = f.gate.files.local_dir().unwrap().join(file.as_str());
        std::os::unix::fs::symlink(&path, &path).unwrap();
        let (reason, _) = refused(f.gate.decide(&get(&token)).await);
        assert!(matches!(reason, DownloadError::Io(_)), "{reason}");
        assert_eq!(f.burns(), 0);
    }

    #[tokio::test]
    async fn an_unsatisfiable_range_burns_nothing() {
        let f = fixture().await;
        let (_, token) = f.file(b"hello").await;
        let (reason, _) = refused(f.gate.decide(&ranged(&token, "bytes=5-")).await);
        assert!(
            matches!(reason, DownloadError::RangeNotSatisfiable { size: 5 }),
            "{reason}"
        );
        assert_eq!(f.burns(), 0);
        served(f.gate.decide(&get(&token)).await);
    }

    #[tokio::test]
    async fn a_store_that_is_down_fails_closed() {
        let f = fixture().await;
        let (_, token) = f.file(b"hello").await;
        f.gate.store.down.store(true, Ordering::SeqCst);
        let plain = get(&token);
        let head = Facts {
            head: true,
            ..plain
        };
        let prefetch = Facts {
            prefetch: true,
            ..plain
        };
        for facts in [plain, head, prefetch] {
            let (reason, _) = refused(f.gate.decide(&facts).await);
            assert!(matches!(reason, DownloadError::Store(_)), "{reason}");
        }
        f.gate.store.down.store(false, Ordering::SeqCst);
        served(f.gate.decide(&plain).await);
    }

    #[tokio::test]
    async fn the_store_s_burn_answers_are_refusals() {
        let f = fixture().await;
        let (_, token) = f.file(b"hello").await;
        for (answer, expected) in [
            (Burn::AlreadyUsed, "token_used"),
            (Burn::Expired, "token_expired"),
            (Burn::IssuedBeforeLoss, "invalid_token"),
        ] {
            *f.gate.store.scripted.lock().unwrap() = Some(answer);
            let (reason, _) = refused(f.gate.decide(&get(&token)).await);
            assert_eq!(reason.code(), expected, "{answer:?}");
        }
    }

    /// An expired token goes on only to resume: a request offering no secret is refused
    /// before its file is even opened; one offering a secret is refused unless it proves it.
    #[tokio::test]
    async fn an_expired_token_only_resumes() {
        let f = fixture().await;
        let (_, token) = f.file(b"hello world").await;
        let (parcel, secret) = served(f.gate.decide(&get(&token)).await);
        let secret = secret.expect("a resume secret");
        let later = Facts {
            now_ms: f.after_expiry(),
            ..get(&token)
        };

        let (reason, grant) = refused(f.gate.decide(&later).await);
        assert!(matches!(reason, DownloadError::Token(TokenError::Expired)));
        assert!(grant.is_none(), "refused at verification");
        let no_proof = Facts {
            range: Some("bytes=4-"),
            ..later
        };
        let (reason, grant) = refused(f.gate.decide(&no_proof).await);
        assert!(matches!(reason, DownloadError::Token(TokenError::Expired)));
        assert!(grant.is_none(), "refused at verification");

        let wrong = resume_cookie(&parcel, "not-the-secret");
        let (reason, grant) = refused(
            f.gate
                .decide(&Facts {
                    cookies: &wrong,
                    ..no_proof
                })
                .await,
        );
        assert!(matches!(reason, DownloadError::Token(TokenError::Expired)));
        assert!(grant.is_some(), "refused after the resume was looked for");

        let proof = resume_cookie(&parcel, &secret);
        let resume = Facts {
            cookies: &proof,
            ..no_proof
        };
        let Decision::Resume { parcel, secret: s } = f.gate.decide(&resume).await else {
            panic!("resumed");
        };
        assert_eq!(parcel.part, Some(ByteRange { start: 4, end: 11 }));
        assert_eq!(s, secret);
        // A resume never burns, and a HEAD never resumes.
        assert_eq!(f.burns(), 1);
        let head = Facts {
            head: true,
            ..resume
        };
        let (reason, _) = refused(f.gate.decide(&head).await);
        assert!(matches!(reason, DownloadError::Token(TokenError::Expired)));
    }

    #[tokio::test]
    async fn a_resume_of_a_changed_file_is_refused() {
        let f = fixture().await;
        let (file, token) = f.file(b"version one").await;
        let (parcel, secret) = served(f.gate.decide(&get(&token)).await);
        let proof = resume_cookie(&parcel, &secret.unwrap());
        let resume = Facts {
            cookies: &proof,
            ..ranged(&token, "bytes=4-")
        };
        f.gate.files.delete(&file).await.unwrap();
        f.put(&file, b"version two, longer").await;
        let (reason, _) = refused(f.gate.decide(&resume).await);
        assert!(matches!(reason, DownloadError::FileChanged), "{reason}");
        assert_eq!(f.burns(), 1);
    }
}
