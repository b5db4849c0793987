//! Start-up: check the configuration, prepare the data directory, keys and database, bind the
//! listeners, and wire the app once, for the binary and the tests alike.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use file_store::FileStore as _;
use sqlx::AnyPool;
use utoipa_actix_web::AppExt;

use crate::config::Config;
use crate::error::{AppError, StartupError};
use crate::files::UploadLimits;
use crate::login::LoginGate;
use crate::minter::LinkMinter;
use crate::sessions::SessionPolicy;
use crate::state::AppState;
use crate::users::{self, Password, Username};
use crate::{db, keys, routes};
use server_kit::metrics::MetricsServer;
use server_kit::settings::BaseUrl;

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
    metrics: Option<MetricsServer>,
    delivery: crate::webhooks::delivery::Delivery,
}

impl Application {
    /// Validates `config`, creates `<data>/files` and `<data>/keys`, loads the signing key
    /// (`--signing-key`, or the data dir's, created on first start), writes
    /// `<data>/keys/jwks.json`, connects to and migrates the database, binds `--bind` (port 0
    /// picks a free port: read it back with [`Application::port`]) and, without
    /// `--download-url`, builds the embedded download server on `--download-bind`.
    /// Serving starts on the current Tokio runtime as soon as this returns;
    /// [`Application::run_until_stopped`] waits for the servers to stop.
    pub async fn build(config: Config) -> Result<Application, StartupError> {
        let settings = config.check()?;
        let data = config.service.data();
        let (files_dir, keys_dir) = (data.files(), data.keys());
        prepare_data_dir(&data, &[&files_dir, &keys_dir]).await?;
        let files = config.file_store.open(files_dir).await?;
        tracing::info!(store = %files.describe(), "file store");
        files.tidy().await;

        let key_source = keys::KeySource::new(config.signing_key.as_deref(), &keys_dir, config.alg);
        let key_watch = keys::KeyWatch::new(
            key_source,
            config.alg,
            &keys_dir,
            config.retired_key_publish_secs,
        );
        let (live_keys, published) = key_watch.start().await?;

        let tls = config.service.tls()?;

        let db = db::connect(&config.database_url()).await?;
        let wake = crate::webhooks::Wake::default();
        let dummy_hash = users::dummy_hash().await?;

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
        let metrics_listener = match config.service.metrics_bind {
            Some(addr) => Some(
                MetricsServer::bind(addr).map_err(|source| StartupError::Io {
                    what: format!("binding --metrics-bind (METRICS_BIND) {addr}"),
                    source,
                })?,
            ),
            None => None,
        };
        let public_url = match settings.public_url {
            Some(url) => url,
            None => BaseUrl::for_address(tls.is_some(), reachable(config.bind, port)),
        };

        let (download, download_url) = match settings.download_url {
            Some(url) => (None, url),
            None => {
                // The app's own settings for what both servers take (served over TLS with the
                // app's certificate when the app is); its error pages link back here; outcomes
                // come straight to this app's database.
                let embedded = download_server::Embedded {
                    bind: config.download_bind,
                    service: config.service.clone(),
                    token: config.token.clone(),
                    leeway: config.leeway,
                    file_store: config.file_store.clone(),
                    keys: published.clone(),
                    app_url: public_url.to_string(),
                    outcome_sink: std::sync::Arc::new(crate::outcomes::InProcessSink::start(
                        db.clone(),
                        wake.clone(),
                    )),
                };
                let dl = download_server::Application::build(download_server::Config::embedded(
                    embedded,
                ))
                .await?;
                let url =
                    BaseUrl::for_address(tls.is_some(), reachable(config.download_bind, dl.port()));
                (Some(dl), url)
            }
        };
        let download_url = download_url.to_string();

        // Rotations reach the embedded download server in-process.
        let embedded_keys = download.as_ref().map(|dl| dl.keys());
        key_watch.spawn(&live_keys, published, move |keys| {
            if let Some(dl) = &embedded_keys {
                dl.replace_in_process(keys);
            }
        });

        if let Some(info) = settings.outcomes_redis {
            crate::outcomes::spawn_stream_reader(db.clone(), wake.clone(), info)?;
        }
        let form_key = crate::share_form::FormKey::load_or_create(&db).await?;
        let api = routes::api()?;

        let oidc = match settings.oidc {
            Some(oidc) => Some(crate::oidc::Oidc::new(oidc, &public_url)?),
            None => None,
        };
        let demo_user = if config.all_in_one()
            && config.demo_user
            && config.sign_in.password_login
            && users::none_exist(&db).await?
        {
            Some(create_demo_user(&db).await?)
        } else {
            None
        };

        let webhooks = crate::webhooks::WebhookPolicy {
            allow_http: settings.webhooks.allow_http,
            reach: settings.webhooks.reach,
            wake: wake.clone(),
        };
        let delivery = crate::webhooks::delivery::Delivery::start(
            db.clone(),
            db::is_postgres(&config.database_url()),
            settings.webhooks,
            wake.clone(),
        )?;
        let metrics = crate::metrics::Metrics::new();
        let upload_policy =
            crate::uploads::UploadPolicy::new(config.upload_expiry_secs, config.upload_idle_secs);
        crate::uploads::sweep(db.clone(), files.clone(), upload_policy);
        let state = web::Data::new(AppState {
            db,
            sessions: SessionPolicy {
                idle_secs: secs(config.session_idle_secs),
                max_secs: secs(config.session_max_secs),
                // Over TLS the cookie is always `Secure` (RFC 6265 section 4.1.2.5).
                secure_cookies: config.secure_cookies || tls.is_some(),
            },
            public_origin: public_url.origin().to_owned(),
            login: LoginGate {
                throttle: crate::throttle::LoginThrottle::new(
                    config.login_attempts_per_minute,
                    usize::try_from(config.max_pending_logins).unwrap_or(usize::MAX),
                ),
                dummy_hash,
                password_login: config.sign_in.password_login,
            },
            links: LinkMinter {
                keys: live_keys,
                issuer: config.token.issuer.clone(),
                audience: config.token.audience.clone(),
                ttl: config.token_ttl,
                download_url: download_url.clone(),
                minted: metrics.tokens_minted.clone(),
            },
            files,
            uploads: UploadLimits {
                max_upload_bytes: config.max_upload_bytes,
                max_files_per_user: config.max_files_per_user,
                idle_secs: config.upload_idle_secs,
            },
            upload_policy,
            metrics,
            audit_dir: data.audit(),
            shares: crate::shares::SharePolicy {
                max_secs: config.share_max_secs,
                max_downloads: config.share_max_downloads,
                public_url: public_url.to_string(),
                give_back_after_secs: secs(config.share_give_back_secs),
                outcomes_known: download.is_some() || config.outcomes_redis.is_some(),
            },
            share_throttle: crate::throttle::LoginThrottle::new(
                config.login_attempts_per_minute,
                config.max_pending_logins as usize,
            ),
            form_key,
            webhooks,
            oidc,
        });
        if let Some(oidc) = &state.oidc {
            tracing::info!(
                redirect_uri = oidc.redirect_uri(),
                "sign-in through the identity provider: register this redirect URI there"
            );
            // Discovery now, so a wrong setting shows in the log at once; the app serves
            // either way, and sign-ins discover again until it works.
            let warm = state.clone();
            tokio::spawn(async move {
                if let Some(oidc) = &warm.oidc {
                    oidc.warm_up().await;
                }
            });
        }
        let body_timeouts = server_kit::body_timeout::BodyTimeouts {
            deadline: config.service.body_timeout(),
            idle: Duration::from_secs(config.upload_idle_secs),
        };
        let server = serve(
            state.clone(),
            api,
            listener,
            tls,
            config.workers,
            body_timeouts,
        )
        .map_err(|source| StartupError::Io {
            what: "starting the HTTP server".into(),
            source,
        })?;
        let metrics = match metrics_listener {
            Some(listener) => {
                let mut registries = vec![state.metrics.registry().clone()];
                registries.extend(download.as_ref().map(|dl| dl.metrics_registry()));
                Some(
                    MetricsServer::start(listener, registries).map_err(|source| {
                        StartupError::Io {
                            what: "starting the metrics listener".into(),
                            source,
                        }
                    })?,
                )
            }
            None => None,
        };
        tracing::info!(
            %public_url,
            %download_url,
            metrics = ?metrics.as_ref().map(MetricsServer::address),
            kid = state.links.keys.kid(),
            alg = %state.links.keys.algorithm(),
            "app server bound"
        );
        Ok(Application {
            port,
            public_url: public_url.to_string(),
            download_url,
            state,
            server,
            download,
            demo_user,
            metrics,
            delivery,
        })
    }

    /// The metrics listener's address (`--metrics-bind`), if there is one.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(MetricsServer::address)
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

    /// Where stored files live: `<data>/files` or the S3 bucket.
    pub fn files(&self) -> &file_store::Files {
        &self.state.files
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
        users::delete(&self.state.db, &self.state.files, &username).await?;
        Ok(())
    }

    /// Serves until the app server (and the embedded download server) stop; the first error
    /// stops both. Then webhook delivery stops: the attempts in flight end and are recorded.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = match self.download {
            Some(download) => {
                tokio::try_join!(self.server, download.run_until_stopped()).map(|_| ())
            }
            None => self.server.await,
        };
        if let Some(metrics) = self.metrics {
            metrics.stop().await;
        }
        self.delivery.stop().await;
        result
    }
}

fn serve(
    state: web::Data<AppState>,
    api: routes::openapi::Api,
    listener: TcpListener,
    tls: Option<rustls::ServerConfig>,
    workers: usize,
    body_timeouts: server_kit::body_timeout::BodyTimeouts,
) -> std::io::Result<Server> {
    let hsts = tls.is_some();
    // The logout form may go on to the identity provider (see `oidc::Oidc::origin`).
    let csp = match &state.oidc {
        Some(oidc) => routes::render::CONTENT_SECURITY_POLICY.replace(
            "form-action 'self'",
            &format!("form-action 'self' {}", oidc.origin()),
        ),
        None => routes::render::CONTENT_SECURITY_POLICY.to_owned(),
    };
    // The session extractor's two pieces, apart from the handlers' state.
    let db = web::Data::new(state.db.clone());
    let session_policy = web::Data::new(state.sessions);
    let mut server = HttpServer::new(move || {
        // Only where a handler set nothing: static assets keep their own caching.
        let headers = server_kit::headers::defaults(hsts, &csp);
        App::new()
            .wrap(headers)
            // Every body arrives in time, or the request fails (server_kit::body_timeout).
            .wrap(from_fn(server_kit::body_timeout::limit))
            // Method, route pattern, status, latency and a request id: never a path or query.
            .wrap(from_fn(crate::telemetry::request_span))
            .app_data(body_timeouts)
            .app_data(state.clone())
            .app_data(db.clone())
            .app_data(session_policy.clone())
            .app_data(api.scopes.clone())
            .app_data(api.document.clone())
            .into_utoipa_app()
            .configure(routes::configure)
            .into_app()
    })
    // Small responses go out at once rather than after the client's delayed ACK (Nagle).
    .tcp_nodelay(true);
    if workers > 0 {
        server = server.workers(workers);
    }
    let server = match tls {
        Some(tls) => server.listen_rustls_0_23(listener, tls)?,
        None => server.listen(listener)?,
    };
    Ok(server.run())
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

/// Creates the data directory and `subdirs` of it, with any missing parent, 0700 whatever the
/// umask, and warns in the log when the data directory is open to its group or others
/// ([`server_kit::permissions::create_data_dir`]). Every command that may be the first to
/// touch a data directory starts here: the server, `user …` and `keys …`.
pub(crate) async fn prepare_data_dir(
    data: &shared::DataDir,
    subdirs: &[&Path],
) -> Result<(), StartupError> {
    let root = data.root().to_owned();
    let subdirs: Vec<PathBuf> = subdirs.iter().map(|dir| dir.to_path_buf()).collect();
    tokio::task::spawn_blocking(move || {
        let failed = |path: &Path| {
            let what = format!("creating {}", path.display());
            move |source| StartupError::Io { what, source }
        };
        server_kit::permissions::create_data_dir(&root).map_err(failed(&root))?;
        for dir in &subdirs {
            server_kit::permissions::create_dir_all(dir).map_err(failed(dir))?;
        }
        Ok(())
    })
    .await
    .map_err(|e| StartupError::Io {
        what: "preparing the data directory".into(),
        source: std::io::Error::other(e.to_string()),
    })?
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
