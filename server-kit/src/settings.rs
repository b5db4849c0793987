//! The settings both servers take to run as a service, declared once as a clap flag group
//! that each server's `Config` flattens (`#[command(flatten)]`), and [`BaseUrl`], the checked
//! form of the public URLs they are given, and [`SecretUrl`], a service URL that may carry a
//! password. Token settings (`--issuer`, `--audience`) are
//! `shared::TokenArgs`; the file store's are `file_store::FileStoreArgs`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::telemetry::LogFormat;
use crate::tls::TlsError;

/// `--config`, `--data-dir`, TLS, logs, metrics and the body deadline: the same flag, variable
/// and default on both servers. In all-in-one mode the app hands its own to the embedded
/// download server (which then serves no metrics listener of its own).
#[derive(clap::Args, Clone, Debug)]
pub struct ServiceArgs {
    /// A TOML file of settings (keys are the long flag names); flags and environment
    /// variables override it. See docs/OPERATIONS.md, "Configuration".
    #[arg(long = "config", env = "BURNLINK_CONFIG", value_name = "FILE")]
    pub config_file: Option<PathBuf>,

    /// Data directory the servers share: files in `<dir>/files/` (unless `--file-store` names
    /// a bucket), the app's keys in `<dir>/keys/` (the download server reads
    /// `<dir>/keys/jwks.json` unless a key option is given), audit files in `<dir>/audit/`.
    #[arg(long, env = "BURNLINK_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// TLS certificate chain (PEM, leaf first): serve https on `--bind` (the app, all-in-one:
    /// also on `--download-bind`), with `Strict-Transport-Security` (and, on the app, `Secure`
    /// cookies). Needs `--tls-key`.
    #[arg(long, env = "TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// Log format on standard error: `text` or `json` (one JSON object per line).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Address of the metrics listener (`GET /metrics`, Prometheus text), e.g.
    /// `127.0.0.1:9100`; the all-in-one app also serves the embedded download server's series
    /// there. Unset: no metrics listener. Never the public port: the counters show each
    /// download's size and outcome as it happens.
    #[arg(long, env = "METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,

    /// Seconds a request body (on the app, one other than an upload: a login, a form) may take
    /// to arrive whole (1 to 3600); past it the request fails with 408 `timeout` and the
    /// connection closes. The headers have actix's 5 s.
    #[arg(long, env = "BODY_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub body_timeout_secs: u64,
}

impl ServiceArgs {
    /// The data directory's layout.
    pub fn data(&self) -> shared::DataDir {
        shared::DataDir::new(&self.data_dir)
    }

    /// `--tls-cert` and `--tls-key`, loaded: `None` for plain http.
    pub fn tls(&self) -> Result<Option<rustls::ServerConfig>, TlsError> {
        crate::tls::load(self.tls_cert.as_deref(), self.tls_key.as_deref())
    }

    /// `--body-timeout-secs`.
    pub fn body_timeout(&self) -> Duration {
        Duration::from_secs(self.body_timeout_secs)
    }
}

/// An `http(s)://host[...]` URL with no query, fragment or space, kept without trailing
/// slashes so `format!("{base}/d/…")` never doubles one. The only way to one is
/// [`BaseUrl::parse`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseUrl(String);

impl BaseUrl {
    /// Checks `url`; the error says why, quoting it (the caller names the setting).
    pub fn parse(url: &str) -> Result<BaseUrl, String> {
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(|| format!("{url:?} must start with http:// or https://"))?;
        if rest.is_empty() || rest.starts_with('/') {
            return Err(format!("{url:?} has no host"));
        }
        if rest.contains(['?', '#', ' ']) {
            return Err(format!("{url:?} must not have a query, fragment or space"));
        }
        Ok(BaseUrl(url.trim_end_matches('/').to_owned()))
    }

    /// `http(s)://<addr>`: what a listener bound to `addr` is reached at.
    pub fn for_address(tls: bool, addr: SocketAddr) -> BaseUrl {
        let scheme = if tls { "https" } else { "http" };
        BaseUrl(format!("{scheme}://{addr}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `scheme://authority` (what `Origin` carries): any path dropped.
    pub fn origin(&self) -> &str {
        let url = self.0.as_str();
        let scheme_end = url.find("://").map_or(0, |i| i + 3);
        match url[scheme_end..].find('/') {
            Some(i) => &url[..scheme_end + i],
            None => url,
        }
    }
}

impl std::fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A service URL as configured (`redis://user:secret@host`, `postgres://…`,
/// `redis+unix:///path?pass=secret`) that may carry a password: `Debug` shows it with the
/// password as `***`, so a printed `Config` never holds one. The text is reached only through
/// [`SecretUrl::expose`], where it is used.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// The URL itself, password included: to connect with, never to print.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for SecretUrl {
    fn from(url: &str) -> SecretUrl {
        SecretUrl(url.to_owned())
    }
}

impl From<String> for SecretUrl {
    fn from(url: String) -> SecretUrl {
        SecretUrl(url)
    }
}

/// Any text is a setting's value; its own check says what is wrong with it.
impl std::str::FromStr for SecretUrl {
    type Err = std::convert::Infallible;

    fn from_str(url: &str) -> Result<SecretUrl, Self::Err> {
        Ok(url.into())
    }
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&redact_url_password(&self.0), f)
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`, and the value of a `pass`
/// or `password` query parameter (`redis+unix:///run/redis.sock?pass=secret`) likewise.
pub fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query)),
        None => (rest, None),
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let mut out = format!("{scheme}://");
    match authority.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or("");
            out.push_str(&format!("{user}:***@{host}"));
        }
        _ => out.push_str(authority),
    }
    out.push_str(tail);
    if let Some(query) = query {
        for (i, pair) in query.split('&').enumerate() {
            out.push(if i == 0 { '?' } else { '&' });
            match pair.split_once('=') {
                Some((key, _)) if matches!(key, "pass" | "password") => {
                    out.push_str(&format!("{key}=***"));
                }
                _ => out.push_str(pair),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_lose_trailing_slashes_and_know_their_origin() {
        let url = BaseUrl::parse("https://files.example/burnlink//").unwrap();
        assert_eq!(url.as_str(), "https://files.example/burnlink");
        assert_eq!(url.origin(), "https://files.example");
        let bare = BaseUrl::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(bare.origin(), "http://127.0.0.1:8080");
        for bad in [
            "ftp://x",
            "http://",
            "https:///x",
            "http://x/?a",
            "http://x#f",
            "http://a b",
        ] {
            let e = BaseUrl::parse(bad).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn passwords_in_urls_are_redacted_and_nothing_else() {
        for (url, shown) in [
            (
                "postgres://me:hunter22@db:5432/app",
                "postgres://me:***@db:5432/app",
            ),
            (
                "redis://:hunter22@10.0.0.1:6379/2",
                "redis://:***@10.0.0.1:6379/2",
            ),
            (
                "redis+cluster://u:hunter22@a:7000,b:7001",
                "redis+cluster://u:***@a:7000,b:7001",
            ),
            (
                "redis+unix:///run/redis.sock?db=1&pass=hunter22",
                "redis+unix:///run/redis.sock?db=1&pass=***",
            ),
            ("redis://user@host/0", "redis://user@host/0"),
            ("redis://host:6379", "redis://host:6379"),
            ("memory", "memory"),
        ] {
            assert_eq!(redact_url_password(url), shown);
            assert_eq!(format!("{:?}", SecretUrl::from(url)), format!("{shown:?}"));
            assert_eq!(SecretUrl::from(url).expose(), url);
        }
    }
}
