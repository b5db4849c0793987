//! Who the provider says signed in, and which local user that is: found by (issuer, `sub`)
//! alone, the pair OpenID Connect Core 1.0 section 5.7 calls stable and unique. Never by
//! e-mail address or name: an address can be reassigned or, at some providers, claimed by
//! anyone, and a local user named like someone at the provider is not them. A first sign-in
//! creates the user, named after `preferred_username` (or the e-mail address's local part);
//! a name already taken gets a suffix from the identity itself ([`candidates`]).

use sqlx::AnyPool;

use super::failure::Failure;
use super::provider::IdTokenClaims;
use super::settings::OidcSettings;
use crate::error::AppError;
use crate::users::{NO_PASSWORD, User, Username};

/// What the app takes from a verified ID token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub subject: String,
    pub preferred_username: Option<String>,
    pub email: Option<String>,
    /// The groups claim: `None` when the token has none.
    pub groups: Option<Vec<String>>,
}

impl Person {
    pub fn from_claims(claims: &IdTokenClaims, groups_claim: &str) -> Person {
        let groups = match claims.additional_claims().claims.get(groups_claim) {
            Some(serde_json::Value::Array(items)) => Some(
                items
                    .iter()
                    .filter_map(|g| g.as_str().map(str::to_owned))
                    .collect(),
            ),
            Some(serde_json::Value::String(group)) => Some(vec![group.clone()]),
            _ => None,
        };
        Person {
            subject: claims.subject().as_str().to_owned(),
            preferred_username: claims.preferred_username().map(|u| u.as_str().to_owned()),
            email: claims.email().map(|e| e.as_str().to_owned()),
            groups,
        }
    }

    fn in_any(&self, wanted: &[String]) -> bool {
        self.groups
            .iter()
            .flatten()
            .any(|group| wanted.iter().any(|w| w == group))
    }
}

/// Whether `person` may sign in, and whether as an administrator: `Some(flag)` when
/// `--oidc-admin-groups` decides, `None` when it is unset (the stored flag stays). Members of
/// the admin groups are always let in.
pub fn admit(settings: &OidcSettings, person: &Person) -> Result<Option<bool>, Failure> {
    let admin = (!settings.admin_groups.is_empty()).then(|| person.in_any(&settings.admin_groups));
    let allowed = settings.allowed_groups.is_empty()
        || admin == Some(true)
        || person.in_any(&settings.allowed_groups);
    if allowed {
        Ok(admin)
    } else {
        Err(Failure::NotAllowed {
            claim_present: person.groups.is_some(),
        })
    }
}

/// The local user `person` is at `issuer`, created on first sign-in; the admin flag set when
/// `admin` says.
pub async fn local_user(
    db: &AnyPool,
    issuer: &str,
    person: &Person,
    admin: Option<bool>,
) -> Result<User, AppError> {
    let user = match find(db, issuer, &person.subject).await? {
        Some(user) => user,
        None => create(db, issuer, person).await?,
    };
    let now = crate::now();
    sqlx::query("UPDATE oidc_identities SET last_login_at = $1 WHERE user_id = $2")
        .bind(now)
        .bind(&user.id)
        .execute(db)
        .await?;
    if let Some(admin) = admin {
        sqlx::query("UPDATE users SET is_admin = $1 WHERE id = $2")
            .bind(i64::from(admin))
            .bind(&user.id)
            .execute(db)
            .await?;
    }
    Ok(user)
}

async fn find(db: &AnyPool, issuer: &str, subject: &str) -> Result<Option<User>, AppError> {
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT u.id, u.username FROM oidc_identities i JOIN users u ON u.id = i.user_id \
         WHERE i.issuer = $1 AND i.subject = $2",
    )
    .bind(issuer)
    .bind(subject)
    .fetch_optional(db)
    .await?;
    row.map(|(id, username)| {
        let username = Username::parse(&username)
            .map_err(|_| AppError::Internal("a stored username is invalid".into()))?;
        Ok(User { id, username })
    })
    .transpose()
}

/// A new user for `person`, under the first free name of [`candidates`]. The same person
/// signing in twice at once makes one user: the identity's key decides, and the loser takes
/// the winner's.
async fn create(db: &AnyPool, issuer: &str, person: &Person) -> Result<User, AppError> {
    let base = base_name(person);
    for name in candidates(&base, issuer, &person.subject) {
        let username = Username::parse(&name)?;
        let id = shared::random_token(16);
        let now = crate::now();
        let mut tx = db.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO users (id, username, password_hash, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&id)
        .bind(username.as_str())
        .bind(NO_PASSWORD)
        .bind(now)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            // The name is taken: the next candidate.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => continue,
            Err(e) => return Err(e.into()),
        }
        let linked = sqlx::query(
            "INSERT INTO oidc_identities (issuer, subject, user_id, created_at, last_login_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(issuer)
        .bind(&person.subject)
        .bind(&id)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await;
        match linked {
            Ok(_) => {
                tx.commit().await?;
                tracing::info!(user = %username, issuer, "user created on first sign-in");
                return Ok(User { id, username });
            }
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                drop(tx);
                return find(db, issuer, &person.subject).await?.ok_or_else(|| {
                    AppError::Internal("an identity vanished while signing in".into())
                });
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(AppError::Internal(format!(
        "no free username for {base:?} and its two suffixes"
    )))
}

/// Longest base name: room for `-` and a 12-digit suffix within a username's 64 characters.
const MAX_BASE: usize = 51;

/// `preferred_username`, else the e-mail address, up to any `@`, in a username's alphabet
/// (other characters become `-`), at most [`MAX_BASE`] long; `user` when nothing is left.
pub fn base_name(person: &Person) -> String {
    let source = person
        .preferred_username
        .as_deref()
        .or(person.email.as_deref())
        .unwrap_or("");
    let local = source.split('@').next().unwrap_or("");
    let mut name = String::new();
    for c in local.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
            name.push(c);
        } else if !name.ends_with('-') {
            name.push('-');
        }
    }
    let trim = |s: &str| s.trim_matches(|c| c == '-' || c == '.').to_owned();
    let mut name = trim(&name);
    name.truncate(MAX_BASE);
    let name = trim(&name);
    if name.is_empty() { "user".into() } else { name }
}

/// The names tried for a new user, in order: the base name, then the base name with 6, then
/// 12 hex digits of the SHA-256 of the identity (`issuer`, newline, `sub`): stable for the
/// person, and not chosen by them.
pub fn candidates(base: &str, issuer: &str, subject: &str) -> [String; 3] {
    let digest = crate::db::stored_hash(&format!("{issuer}\n{subject}"));
    [
        base.to_owned(),
        format!("{base}-{}", &digest[..6]),
        format!("{base}-{}", &digest[..12]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(preferred: Option<&str>, email: Option<&str>, groups: Option<&[&str]>) -> Person {
        Person {
            subject: "sub-1".into(),
            preferred_username: preferred.map(str::to_owned),
            email: email.map(str::to_owned),
            groups: groups.map(|g| g.iter().map(|s| (*s).to_owned()).collect()),
        }
    }

    #[test]
    fn names_come_from_the_username_then_the_address() {
        let cases = [
            (person(Some("carol"), Some("x@y"), None), "carol"),
            (person(Some("carol@contoso.com"), None, None), "carol"),
            (
                person(None, Some("dave.o'neil@example.org"), None),
                "dave.o-neil",
            ),
            (person(Some("Zoë Ölund"), None, None), "Zo-lund"),
            (person(Some("../.."), None, None), "user"),
            (person(None, None, None), "user"),
        ];
        for (person, name) in cases {
            assert_eq!(base_name(&person), name, "{person:?}");
            assert!(Username::parse(&base_name(&person)).is_ok());
        }
        let long = "x".repeat(200);
        let base = base_name(&person(Some(&long), None, None));
        for name in candidates(&base, "https://id.example.com", "sub") {
            assert!(Username::parse(&name).is_ok(), "{name}");
        }
    }

    #[test]
    fn suffixes_depend_on_the_identity_not_the_name() {
        let a = candidates("carol", "https://id.example.com", "sub-1");
        let b = candidates("carol", "https://id.example.com", "sub-2");
        let c = candidates("carol", "https://other.example.com", "sub-1");
        assert_eq!(a[0], "carol");
        assert_ne!(a[1], b[1]);
        assert_ne!(a[1], c[1]);
        assert_eq!(a, candidates("carol", "https://id.example.com", "sub-1"));
        assert!(a[2].starts_with(&a[1]));
    }

    fn settings(allowed: &[&str], admins: &[&str]) -> OidcSettings {
        OidcSettings {
            issuer: openidconnect::IssuerUrl::new("https://id.example.com".into()).unwrap(),
            client_id: openidconnect::ClientId::new("c".into()),
            client_secret: openidconnect::ClientSecret::new("s".into()),
            scopes: Vec::new(),
            groups_claim: "groups".into(),
            allowed_groups: allowed.iter().map(|s| (*s).to_owned()).collect(),
            admin_groups: admins.iter().map(|s| (*s).to_owned()).collect(),
            name: "id".into(),
            allow_http: false,
        }
    }

    #[test]
    fn the_group_gate_and_the_admin_flag() {
        let staff = person(Some("a"), None, Some(&["staff"]));
        let admin = person(Some("a"), None, Some(&["it-admins"]));
        let outsider = person(Some("a"), None, Some(&["contractors"]));
        let no_claim = person(Some("a"), None, None);

        let open = settings(&[], &[]);
        assert_eq!(admit(&open, &outsider), Ok(None));
        assert_eq!(admit(&open, &no_claim), Ok(None));

        let gated = settings(&["staff"], &["it-admins"]);
        assert_eq!(admit(&gated, &staff), Ok(Some(false)));
        assert_eq!(admit(&gated, &admin), Ok(Some(true)));
        assert_eq!(
            admit(&gated, &outsider),
            Err(Failure::NotAllowed {
                claim_present: true
            })
        );
        assert_eq!(
            admit(&gated, &no_claim),
            Err(Failure::NotAllowed {
                claim_present: false
            })
        );
        assert_eq!(
            admit(&settings(&[], &["it-admins"]), &outsider),
            Ok(Some(false))
        );
    }
}
