use serde::{Deserialize, Serialize};

/// The payload of a download token. Every field is required: a token missing one does not
/// deserialize and is refused. Times are whole seconds since the Unix epoch; a string, a float
/// or a negative number in a time claim is refused too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Who minted the token (the app server's URL or name).
    pub iss: String,
    /// Who may honour it: one string (an array is refused, see docs/TOKEN.md).
    pub aud: String,
    /// The user the link was minted for; logged, never trusted for access.
    pub sub: String,
    /// Unique id, burned on first use.
    pub jti: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    /// The file's storage key under the download server's root.
    pub file: String,
    /// The name the browser saves the file under.
    pub name: String,
}

impl Claims {
    /// Claims for a fresh token: a random 128-bit `jti`, valid from `now` for `ttl` seconds.
    pub fn new(
        iss: &str,
        aud: &str,
        sub: &str,
        file: &StorageKey,
        name: &DownloadName,
        now: u64,
        ttl: u64,
    ) -> Claims {
        Claims {
            iss: iss.to_owned(),
            aud: aud.to_owned(),
            sub: sub.to_owned(),
            jti: Jti::generate().0,
            iat: now,
            nbf: now,
            exp: now + ttl,
            file: file.as_str().to_owned(),
            name: name.as_str().to_owned(),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("jti must be 16 to 128 characters of A-Z a-z 0-9 - _")]
    Jti,
    #[error("storage key must be 1 to 128 characters of A-Z a-z 0-9 - _")]
    StorageKey,
    #[error(
        "download name must be 1 to 255 characters with no control or bidirectional formatting characters"
    )]
    DownloadName,
}

fn is_url_safe(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A token id: 16 to 128 URL-safe characters (a UUID or 22 base64url characters both fit).
/// Bounded so a burn store entry costs a known amount of memory.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Jti(String);

impl Jti {
    pub fn parse(s: &str) -> Result<Jti, NameError> {
        is_url_safe(s, 16, 128)
            .then(|| Jti(s.to_owned()))
            .ok_or(NameError::Jti)
    }

    /// 128 random bits, base64url.
    pub fn generate() -> Jti {
        Jti(crate::random_token(16))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The name of a stored file under the storage root. Only `A-Z a-z 0-9 - _`, so it can never
/// hold a path separator, `..` or NUL: checked on the download side even though it is signed,
/// so a leaked signing key still cannot read outside the root.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StorageKey(String);

impl StorageKey {
    pub fn parse(s: &str) -> Result<StorageKey, NameError> {
        is_url_safe(s, 1, 128)
            .then(|| StorageKey(s.to_owned()))
            .ok_or(NameError::StorageKey)
    }

    /// 192 random bits, base64url (32 characters).
    pub fn generate() -> StorageKey {
        StorageKey(crate::random_token(24))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Bidirectional formatting characters (Unicode UAX #9): in a file name they make
/// `invoice\u{202E}fdp.exe` display as `invoiceexe.pdf`, so names never carry them.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// A file name shown to people: any Unicode but control and bidirectional formatting
/// characters, 1 to 255 characters. It only ever reaches HTTP headers and HTML (escaped),
/// never the filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadName(String);

impl DownloadName {
    pub fn parse(s: &str) -> Result<DownloadName, NameError> {
        let chars = s.chars().count();
        if (1..=255).contains(&chars) && !s.chars().any(|c| c.is_control() || is_bidi_control(c)) {
            Ok(DownloadName(s.to_owned()))
        } else {
            Err(NameError::DownloadName)
        }
    }

    /// Turns an uploaded file's name into a download name: keeps the last path component
    /// (browsers may send `C:\dir\a.txt`), drops control characters, trims spaces and dots at
    /// the ends and caps the length, keeping the extension. Never fails: a name with nothing
    /// left becomes `file`.
    pub fn sanitize(raw: &str) -> DownloadName {
        let base = raw.rsplit(['/', '\\']).next().unwrap_or(raw);
        let cleaned: String = base
            .chars()
            .filter(|&c| !c.is_control() && !is_bidi_control(c))
            .collect();
        let trimmed = cleaned.trim_matches(|c: char| c.is_whitespace() || c == '.');
        if trimmed.is_empty() {
            return DownloadName("file".to_owned());
        }
        if trimmed.chars().count() <= 255 {
            return DownloadName(trimmed.to_owned());
        }
        let ext = trimmed
            .rsplit_once('.')
            .map(|(_, e)| e)
            .filter(|e| (1..=16).contains(&e.chars().count()))
            .map(|e| format!(".{e}"))
            .unwrap_or_default();
        let keep = 255 - ext.chars().count();
        let stem: String = trimmed.chars().take(keep).collect();
        DownloadName(format!("{stem}{ext}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_key_refuses_anything_path_like() {
        for bad in [
            "",
            "../etc",
            "a/b",
            "a\\b",
            "..",
            "a\0b",
            "a.b",
            &"x".repeat(129),
        ] {
            assert_eq!(
                StorageKey::parse(bad),
                Err(NameError::StorageKey),
                "{bad:?}"
            );
        }
        assert!(StorageKey::parse("abc-DEF_123").is_ok());
        assert!(StorageKey::parse(StorageKey::generate().as_str()).is_ok());
    }

    #[test]
    fn jti_is_bounded() {
        assert!(Jti::parse("short").is_err());
        assert!(Jti::parse(&"a".repeat(129)).is_err());
        assert!(Jti::parse("6f1c2a4e-0b7d-4c1e-9a55-3d2f6e8b9c10").is_ok());
        assert_eq!(Jti::generate().as_str().len(), 22);
    }

    #[test]
    fn sanitize_keeps_the_last_component_and_the_extension() {
        assert_eq!(
            DownloadName::sanitize("../../etc/passwd").as_str(),
            "passwd"
        );
        assert_eq!(
            DownloadName::sanitize("C:\\Users\\me\\a.txt").as_str(),
            "a.txt"
        );
        assert_eq!(DownloadName::sanitize("a\u{0}b\nc.txt").as_str(), "abc.txt");
        assert_eq!(DownloadName::sanitize(" .. ").as_str(), "file");
        assert_eq!(
            DownloadName::sanitize("invoice\u{202E}fdp.exe").as_str(),
            "invoicefdp.exe"
        );
        assert!(DownloadName::parse("invoice\u{202E}fdp.exe").is_err());
        assert!(DownloadName::parse("a\u{2066}b").is_err());
        assert_eq!(
            DownloadName::sanitize("Été 2024 📷.jpg").as_str(),
            "Été 2024 📷.jpg"
        );
        let long = format!("{}.pdf", "é".repeat(1000));
        let name = DownloadName::sanitize(&long);
        assert_eq!(name.as_str().chars().count(), 255);
        assert!(name.as_str().ends_with(".pdf"));
        assert!(DownloadName::parse(name.as_str()).is_ok());
    }
}
