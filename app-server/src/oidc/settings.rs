//! The sign-in flags (`--oidc-*`, `--password-login`), and their check at start: a bad value
//! stops the process with the setting's name, before anything binds.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use clap::Args;
use openidconnect::{ClientId, ClientSecret, IssuerUrl, Scope};

use crate::error::StartupError;

/// How people sign in: an OpenID Connect provider, passwords, or both.
#[derive(Args, Clone, Debug)]
pub struct SignInArgs {
    /// The OpenID Connect provider's issuer URL, exactly as its discovery document
    /// (`<issuer>/.well-known/openid-configuration`) names it. Unset: no sign-in through a
    /// provider. https, except on a loopback address or with `--oidc-allow-http`.
    #[arg(long, env = "OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,

    /// The client id the app is registered with at the provider.
    #[arg(long, env = "OIDC_CLIENT_ID")]
    pub oidc_client_id: Option<String>,

    /// A file holding the client secret (one line; the secret is never printed).
    #[arg(long, env = "OIDC_CLIENT_SECRET_FILE")]
    pub oidc_client_secret_file: Option<PathBuf>,

    /// Scopes asked for, comma-separated; `openid` is always asked.
    #[arg(
        long,
        env = "OIDC_SCOPES",
        value_delimiter = ',',
        default_value = "openid,email,profile"
    )]
    pub oidc_scopes: Vec<String>,

    /// The ID token claim that lists the user's groups (a list of strings, or one string).
    #[arg(long, env = "OIDC_GROUPS_CLAIM", default_value = "groups")]
    pub oidc_groups_claim: String,

    /// Only members of one of these groups (comma-separated) may sign in; empty: anyone the
    /// provider signs in. Members of `--oidc-admin-groups` are always let in.
    #[arg(long, env = "OIDC_ALLOWED_GROUPS", value_delimiter = ',')]
    pub oidc_allowed_groups: Vec<String>,

    /// Members of one of these groups (comma-separated) are administrators, set at each sign-in;
    /// empty: the provider's groups do not decide who is an administrator.
    #[arg(long, env = "OIDC_ADMIN_GROUPS", value_delimiter = ',')]
    pub oidc_admin_groups: Vec<String>,

    /// The provider's name on the login page ("Sign in with NAME"); default: the issuer's host.
    #[arg(long, env = "OIDC_NAME")]
    pub oidc_name: Option<String>,

    /// Accept an http issuer (and http endpoints in its discovery document) on a non-loopback
    /// address: for test networks only, the client secret and the ID token then travel in
    /// clear.
    #[arg(long, env = "OIDC_ALLOW_HTTP", default_value_t = false, action = clap::ArgAction::Set)]
    pub oidc_allow_http: bool,

    /// Whether people may log in with a username and password (the form, `POST /login`,
    /// `POST /api/login`). `false` needs `--oidc-issuer`; access tokens keep working.
    #[arg(long, env = "PASSWORD_LOGIN", default_value_t = true, action = clap::ArgAction::Set)]
    pub password_login: bool,
}

/// The checked provider settings. `Debug` hides the client secret.
#[derive(Clone)]
pub struct OidcSettings {
    pub issuer: IssuerUrl,
    pub client_id: ClientId,
    pub client_secret: ClientSecret,
    /// Besides `openid`, which is always asked.
    pub scopes: Vec<Scope>,
    pub groups_claim: String,
    pub allowed_groups: Vec<String>,
    pub admin_groups: Vec<String>,
    /// "Sign in with NAME".
    pub name: String,
    /// `--oidc-allow-http`.
    pub allow_http: bool,
}

impl fmt::Debug for OidcSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcSettings")
            .field("issuer", &self.issuer.as_str())
            .field("client_id", &self.client_id.as_str())
            .field("client_secret", &"***")
            .field("scopes", &self.scopes)
            .field("groups_claim", &self.groups_claim)
            .field("allowed_groups", &self.allowed_groups)
            .field("admin_groups", &self.admin_groups)
            .field("name", &self.name)
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

const ISSUER: &str = "--oidc-issuer (OIDC_ISSUER)";
const CLIENT_ID: &str = "--oidc-client-id (OIDC_CLIENT_ID)";
const SECRET_FILE: &str = "--oidc-client-secret-file (OIDC_CLIENT_SECRET_FILE)";

fn bad<T>(setting: &'static str, reason: impl Into<String>) -> Result<T, StartupError> {
    Err(StartupError::Config {
        setting,
        reason: reason.into(),
    })
}

impl SignInArgs {
    /// The provider settings (`None`: no provider), the secret file read. Refuses provider
    /// settings without an issuer, and `--password-login false` without a provider (nobody
    /// could sign in).
    pub fn check(&self) -> Result<Option<OidcSettings>, StartupError> {
        let Some(issuer) = self.oidc_issuer.as_deref() else {
            if !self.password_login {
                return bad(
                    "--password-login (PASSWORD_LOGIN)",
                    "false needs --oidc-issuer: nobody could sign in",
                );
            }
            let dangling = [
                (self.oidc_client_id.is_some(), CLIENT_ID),
                (self.oidc_client_secret_file.is_some(), SECRET_FILE),
                (
                    !self.oidc_allowed_groups.is_empty(),
                    "--oidc-allowed-groups",
                ),
                (!self.oidc_admin_groups.is_empty(), "--oidc-admin-groups"),
            ];
            if let Some((_, setting)) = dangling.iter().find(|(set, _)| *set) {
                return bad(ISSUER, format!("is needed by {setting}"));
            }
            return Ok(None);
        };
        let issuer = check_issuer(issuer, self.oidc_allow_http)?;
        let client_id = match self.oidc_client_id.as_deref().map(str::trim) {
            Some(id) if !id.is_empty() => ClientId::new(id.to_owned()),
            _ => return bad(CLIENT_ID, "is needed with --oidc-issuer"),
        };
        let Some(secret_file) = &self.oidc_client_secret_file else {
            return bad(SECRET_FILE, "is needed with --oidc-issuer");
        };
        let client_secret = read_secret(secret_file)?;
        let mut scopes = Vec::new();
        for scope in self.oidc_scopes.iter().map(|s| s.trim()) {
            if scope.is_empty() || scope.contains(char::is_whitespace) {
                return bad(
                    "--oidc-scopes (OIDC_SCOPES)",
                    format!("{scope:?} is not a scope (comma-separated, no spaces)"),
                );
            }
            if scope != "openid" && !scopes.iter().any(|s: &Scope| s.as_str() == scope) {
                scopes.push(Scope::new(scope.to_owned()));
            }
        }
        let groups_claim = self.oidc_groups_claim.trim().to_owned();
        if groups_claim.is_empty() {
            return bad(
                "--oidc-groups-claim (OIDC_GROUPS_CLAIM)",
                "must not be empty",
            );
        }
        let groups = |list: &[String]| -> Vec<String> {
            list.iter()
                .map(|g| g.trim().to_owned())
                .filter(|g| !g.is_empty())
                .collect()
        };
        let name = match self.oidc_name.as_deref().map(str::trim) {
            Some(name) if !name.is_empty() => name.to_owned(),
            _ => issuer
                .url()
                .host_str()
                .unwrap_or("your provider")
                .to_owned(),
        };
        Ok(Some(OidcSettings {
            issuer,
            client_id,
            client_secret,
            scopes,
            groups_claim,
            allowed_groups: groups(&self.oidc_allowed_groups),
            admin_groups: groups(&self.oidc_admin_groups),
            name,
            allow_http: self.oidc_allow_http,
        }))
    }
}

/// An issuer URL: absolute http(s), no query or fragment (OpenID Connect Discovery 1.0
/// section 2: the issuer is a URL with no query or fragment), https unless allowed.
fn check_issuer(issuer: &str, allow_http: bool) -> Result<IssuerUrl, StartupError> {
    let Ok(parsed) = IssuerUrl::new(issuer.to_owned()) else {
        return bad(ISSUER, format!("{issuer:?} is not a URL"));
    };
    let url = parsed.url();
    if url.query().is_some() || url.fragment().is_some() {
        return bad(ISSUER, "must have no query or fragment");
    }
    if url.host_str().is_none() || !matches!(url.scheme(), "https" | "http") {
        return bad(ISSUER, "must be an https:// URL");
    }
    if !secure_enough(url, allow_http) {
        return bad(
            ISSUER,
            "must be https (http only on a loopback address, or with --oidc-allow-http)",
        );
    }
    Ok(parsed)
}

/// Whether the back channel may use `url`: https, or http on a loopback address (nothing on
/// the wire), or any http with `--oidc-allow-http`.
pub(crate) fn secure_enough(url: &openidconnect::url::Url, allow_http: bool) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => allow_http || url.host_str().is_some_and(is_loopback),
        _ => false,
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The client secret: the file's first line, which must not be empty.
fn read_secret(path: &Path) -> Result<ClientSecret, StartupError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => return bad(SECRET_FILE, format!("cannot read {}: {e}", path.display())),
    };
    let secret = text.lines().next().unwrap_or("").trim();
    if secret.is_empty() {
        return bad(SECRET_FILE, format!("{} is empty", path.display()));
    }
    Ok(ClientSecret::new(secret.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sign_in: SignInArgs,
    }

    fn check(args: &[&str]) -> Result<Option<OidcSettings>, String> {
        let mut all = vec!["app-server"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all)
            .expect("valid arguments")
            .sign_in
            .check()
            .map_err(|e| e.to_string())
    }

    fn secret_file(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn no_provider_is_the_default() {
        assert!(check(&[]).unwrap().is_none());
    }

    #[test]
    fn a_full_setting_is_read_and_the_secret_is_never_shown() {
        let file = secret_file("s3cret-value\n");
        let settings = check(&[
            "--oidc-issuer",
            "https://id.example.com/realms/staff",
            "--oidc-client-id",
            "burnlink",
            "--oidc-client-secret-file",
            file.path().to_str().unwrap(),
            "--oidc-scopes",
            "openid,email,groups,email",
            "--oidc-allowed-groups",
            "staff, ops",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(settings.client_secret.secret(), "s3cret-value");
        let scopes: Vec<&str> = settings.scopes.iter().map(|s| s.as_str()).collect();
        assert_eq!(scopes, ["email", "groups"]);
        assert_eq!(settings.allowed_groups, ["staff", "ops"]);
        assert_eq!(settings.name, "id.example.com");
        assert!(!format!("{settings:?}").contains("s3cret"));
    }

    #[test]
    fn each_refusal_names_its_setting() {
        let file = secret_file("s\n");
        let path = file.path().to_str().unwrap();
        let empty = secret_file("\n");
        let issuer = ["--oidc-issuer", "https://id.example.com"];
        let client = [issuer.as_slice(), &["--oidc-client-id", "x"]].concat();
        let secret_flag = "--oidc-client-secret-file";
        let missing = [client.as_slice(), &[secret_flag, "/nonexistent/secret"]].concat();
        let blank = [
            client.as_slice(),
            &[secret_flag, empty.path().to_str().unwrap()],
        ]
        .concat();
        let cases: [(Vec<&str>, &str); 8] = [
            (vec!["--password-login", "false"], "PASSWORD_LOGIN"),
            (vec!["--oidc-client-id", "x"], "OIDC_ISSUER"),
            (
                vec![
                    "--oidc-issuer",
                    "http://id.example.com",
                    "--oidc-client-id",
                    "x",
                ],
                "OIDC_ISSUER",
            ),
            (
                vec!["--oidc-issuer", "https://id.example.com?x=1"],
                "OIDC_ISSUER",
            ),
            (issuer.to_vec(), "OIDC_CLIENT_ID"),
            (client.clone(), "OIDC_CLIENT_SECRET_FILE"),
            (missing, "OIDC_CLIENT_SECRET_FILE"),
            (blank, "OIDC_CLIENT_SECRET_FILE"),
        ];
        for (args, setting) in cases {
            let err = check(&args)
                .err()
                .unwrap_or_else(|| panic!("{args:?} accepted"));
            assert!(err.contains(setting), "{args:?}: {err}");
        }
        let with = |issuer: &str, extra: &[&str]| {
            let mut args = vec![
                "--oidc-issuer",
                issuer,
                "--oidc-client-id",
                "x",
                "--oidc-client-secret-file",
                path,
            ];
            args.extend_from_slice(extra);
            check(&args)
        };
        assert!(with("http://127.0.0.1:9000", &[]).is_ok(), "loopback http");
        assert!(with("http://[::1]:9000/idp", &[]).is_ok(), "loopback http");
        assert!(with("http://id.internal", &["--oidc-allow-http", "true"]).is_ok());
        assert!(with("http://id.internal", &[]).is_err());
        assert!(with("ftp://id.internal", &["--oidc-allow-http", "true"]).is_err());
        let err = with("https://id.example.com", &["--oidc-scopes", "openid,a b"]).unwrap_err();
        assert!(err.contains("OIDC_SCOPES"), "{err}");
    }
}
