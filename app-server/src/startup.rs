//! Start-up: check the configuration, prepare the data directory, keys and database, bind the
//! listeners, and wire the app once, for the binary and the tests alike.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::{DefaultHeaders, Logger};
use actix_web::{App, HttpServer, web};
use sqlx::AnyPool;

use crate::config::{Config, trim_base};
use crate::error::{AppError, StartupError};
use crate::sessions::SessionPolicy;
use crate::state::{AppState, LinkMinter};
use crate::users::{self, Password, Username};
use crate::{db, keys, routes};

/// Content-Security-Policy of every response: no scripts, no external anything; inline styles
/// for the one page; forms post only to us; never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self' 'unsafe-inline'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The name and password of the user created on first start in all-in-one mode.
#[derive(Clone)]
pub struct DemoUser {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for DemoUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoUser")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// A bound app server (and, in all-in-one mode, its embedded download server).
pub struct Application {
    port: u16,
    public_url: String,
    download_url: String,
    state: web::Data<AppState>,
    server: Server,
    download: Option<download_server::Application>,
    demo_user: Option<DemoUser>,
}

impl Application {
    /// Validates `config`, creates `<data>/files` and `<data>/keys`, loads or creates the
    /// signing key, writes `<data>/keys/jwks.json`, connects to and migrates the database,
    /// binds `--bind` (port 0 picks a free port: read it back with [`Application::port`]) and,
    /// without `--download-url`, builds the embedded download server on `--download-bind`.
    /// Serving starts on the current Tokio runtime as soon as this returns;
    /// [`Application::run_until_stopped`] waits for the servers to stop.
    pub async fn build(config: Config) -> Result<Application, StartupError> {
        config.validate()?;
        let files_dir = config.data_dir.join("files");
        let keys_dir = config.data_dir.join("keys");
        create_dir(&files_dir).await?;
        create_dir(&keys_dir).await?;
        remove_stale_uploads(&files_dir).await;

        let signing_key = Arc::new(keys::load_signing_key(&keys_dir, config.alg).await?);
        let jwks_json = keys::jwks_json(&signing_key)?;
        keys::write_jwks(&keys_dir, &jwks_json).await?;

        let db = db::connect(&config.database_url()).await?;
        let dummy_hash = users::dummy_hash().await?;

        let (download, download_url) = match &config.download_url {
            Some(url) => (None, trim_base(url)),
            None => {
                let mut dl = download_server::Config::from_defaults();
                dl.bind = config.download_bind;
                dl.data_dir = config.data_dir.clone();
                dl.issuer = config.issuer.clone();
                dl.audience = config.audience.clone();
                // Only the key handed over in-process, whatever the environment says.
                dl.jwks_file = None;
                dl.public_keys = Vec::new();
                dl.hs256_secret_file = None;
                dl.keys = vec![signing_key.verifying_key().clone()];
                let dl = download_server::Application::build(dl).await?;
                let url = format!("http://{}", reachable(config.download_bind, dl.port()));
                (Some(dl), url)
            }
        };

        let listener = TcpListener::bind(config.bind).map_err(|source| StartupError::Io {
            what: format!("binding --bind (APP_BIND) {}", config.bind),
            source,
        })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Io {
                what: "reading the bound address".into(),
                source,
            })?
            .port();
        let public_url = match &config.public_url {
            Some(url) => trim_base(url),
            None => format!("http://{}", reachable(config.bind, port)),
        };

        let demo_user = if config.all_in_one() && config.demo_user && users::none_exist(&db).await?
        {
            Some(create_demo_user(&db).await?)
        } else {
            None
        };

        let state = web::Data::new(AppState {
            db,
            sessions: SessionPolicy {
                idle_secs: secs(config.session_idle_secs),
                max_secs: secs(config.session_max_secs),
                secure_cookies: config.secure_cookies,
            },
            dummy_hash,
            links: LinkMinter {
                signing_key: signing_key.clone(),
                issuer: config.issuer.clone(),
                audience: config.audience.clone(),
                ttl: config.token_ttl,
                download_url: download_url.clone(),
            },
            files_dir,
            max_upload_bytes: config.max_upload_bytes,
            jwks_json,
        });
        let server =
            serve(state.clone(), listener, config.workers).map_err(|source| StartupError::Io {
                what: "starting the HTTP server".into(),
                source,
            })?;
        tracing::info!(
            %public_url,
            %download_url,
            kid = signing_key.kid(),
            alg = %signing_key.algorithm(),
            "app server bound"
        );
        Ok(Application {
            port,
            public_url,
            download_url,
            state,
            server,
            download,
            demo_user,
        })
    }

    /// The port the app server is bound to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL people reach the app at (`--public-url`, or the bound address).
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// The download server's public base URL (the embedded one's bound address in all-in-one
    /// mode), without a trailing slash.
    pub fn download_url(&self) -> &str {
        &self.download_url
    }

    /// The embedded download server's port (all-in-one mode only).
    pub fn download_port(&self) -> Option<u16> {
        self.download.as_ref().map(|dl| dl.port())
    }

    /// The user created on this start in all-in-one mode, if one was.
    pub fn demo_user(&self) -> Option<&DemoUser> {
        self.demo_user.as_ref()
    }

    /// The database pool (for checks from tests and tools).
    pub fn db(&self) -> &AnyPool {
        &self.state.db
    }

    /// Where stored files live: `<data>/files`.
    pub fn files_dir(&self) -> &Path {
        &self.state.files_dir
    }

    /// Stops the app server gracefully when called.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Creates a user (same rules as `app-server user add`).
    pub async fn create_user(&self, username: &str, password: &str) -> Result<(), AppError> {
        let username = Username::parse(username)?;
        let password = Password::parse(password)?;
        users::create(&self.state.db, &username, password).await?;
        Ok(())
    }

    /// Changes a password and ends all of the user's sessions (`app-server user passwd`).
    pub async fn change_password(&self, username: &str, password: &str) -> Result<(), AppError> {
        let username = Username::parse(username)?;
        let password = Password::parse(password)?;
        users::change_password(&self.state.db, &username, password).await
    }

    /// Deletes a user, their sessions, file rows and stored files (`app-server user del`).
    pub async fn delete_user(&self, username: &str) -> Result<(), AppError> {
        let username = Username::parse(username)?;
        users::delete(&self.state.db, &self.state.files_dir, &username).await?;
        Ok(())
    }

    /// Serves until the app server (and the embedded download server) stop; the first error
    /// stops both.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        match self.download {
            Some(download) => {
                tokio::try_join!(self.server, download.run_until_stopped())?;
                Ok(())
            }
            None => self.server.await,
        }
    }
}

fn serve(
    state: web::Data<AppState>,
    listener: TcpListener,
    workers: usize,
) -> std::io::Result<Server> {
    let mut server = HttpServer::new(move || {
        App::new()
            .wrap(
                DefaultHeaders::new()
                    .add(("Content-Security-Policy", CONTENT_SECURITY_POLICY))
                    .add(("X-Content-Type-Options", "nosniff"))
                    .add(("Referrer-Policy", "no-referrer"))
                    .add(("X-Frame-Options", "DENY")),
            )
            .wrap(Logger::new("%a \"%r\" %s %b %Dms"))
            .app_data(state.clone())
            .configure(routes::configure)
    });
    if workers > 0 {
        server = server.workers(workers);
    }
    Ok(server.listen(listener)?.run())
}

/// A URL host for a bound address: an unspecified address (`0.0.0.0`, `::`) becomes loopback.
fn reachable(bound: SocketAddr, port: u16) -> SocketAddr {
    let ip = match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, port)
}

fn secs(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

async fn create_dir(path: &PathBuf) -> Result<(), StartupError> {
    tokio::fs::create_dir_all(path)
        .await
        .map_err(|source| StartupError::Io {
            what: format!("creating {}", path.display()),
            source,
        })
}

/// Removes `.tmp-*` files a crash left behind. Only day-old ones: another app server sharing
/// the directory may be writing fresh ones right now.
async fn remove_stale_uploads(files_dir: &Path) {
    const STALE: Duration = Duration::from_secs(24 * 3600);
    let Ok(mut entries) = tokio::fs::read_dir(files_dir).await else {
        return;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        if !entry.file_name().to_string_lossy().starts_with(".tmp-") {
            continue;
        }
        let stale = entry
            .metadata()
            .await
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE);
        if stale {
            let _ = tokio::fs::remove_file(entry.path()).await;
        }
    }
}

async fn create_demo_user(db: &AnyPool) -> Result<DemoUser, StartupError> {
    let password = shared::random_token(12);
    let username = Username::parse("demo")?;
    users::create(db, &username, Password::parse(&password)?).await?;
    Ok(DemoUser {
        username: username.to_string(),
        password,
    })
}
