//! The burnlink download server: knows no users and keeps no sessions. It verifies a download
//! token, burns its `jti` so it works exactly once, and streams the file the token names.

pub mod audit;
pub mod config;
pub mod delivery;
pub mod error;
pub mod file;
pub mod keys;
pub mod metrics;
pub mod outcome;
pub mod resume;
pub mod routes;
pub mod state;
pub mod store;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpServer, guard, web};

pub use config::{BurnStoreSetting, Config, Embedded, Settings};
use keys::Keys;
use state::AppState;
use store::{BurnStore, MemoryStore, RedisStore};

/// Why the server could not start. Each names the setting to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("{0}: {1}")]
    Key(&'static str, shared::KeyError),
    #[error(
        "no verification key: give --jwks-url, --jwks-file, --public-key or --hs256-secret-file, \
         or start the app server once so it writes <data dir>/keys/jwks.json"
    )]
    NoKeys,
    #[error("--burn-store: {0}")]
    BurnStore(String),
    #[error("--jwks-url (JWKS_URL): {0}")]
    JwksUrl(String),
    #[error("--app-url (APP_URL): {0}")]
    AppUrl(String),
    #[error("{0}")]
    Audit(String),
    #[error("{0}")]
    Tls(#[from] server_kit::tls::TlsError),
    #[error("{0}")]
    FileStore(#[from] file_store::SettingError),
    #[error("--bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("--metrics-bind (METRICS_BIND) {addr}: {source}")]
    MetricsBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The routes, for any burn store.
pub fn configure<S: BurnStore>(cfg: &mut web::ServiceConfig) {
    use routes::{download, health};
    cfg.route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz::<S>))
        .service(
            web::resource("/d")
                .route(web::get().to(download::by_header::<S>))
                .route(web::head().to(download::by_header::<S>)),
        )
        // After `/d`, whose own route must win. A prefix, not a `{token:.*}` pattern: actix
        // matches patterns with a regex, which cost 16% of the CPU per download on a 400-byte
        // path. Any token, even one with a `/` (standard base64), reaches the verifier and
        // gets the documented 401.
        .service(
            web::scope("/d").default_service(
                web::route()
                    .guard(guard::Any(guard::Get()).or(guard::Head()))
                    .to(download::by_path::<S>),
            ),
        );
}

/// A bound, not yet running, download server.
pub struct Application {
    addr: SocketAddr,
    server: Server,
    keys: Arc<Keys>,
    tls: bool,
    /// This server's series, for whoever serves them (its metrics listener, or the
    /// all-in-one app's).
    registry: prometheus::Registry,
    metrics: Option<server_kit::metrics::MetricsServer>,
}

impl Application {
    /// Checks the configuration ([`Config::check`]), loads keys, binds the listener (port 0
    /// picks one: read it back with [`Self::port`]) and wires the app. Nothing is served
    /// until [`Self::run_until_stopped`].
    pub async fn build(config: Config) -> Result<Application, StartupError> {
        let settings = config.check()?;
        // Embedded (handed an outcome sink in-process), the app has checked the directory.
        if config.outcome_sink.is_none() {
            server_kit::permissions::warn_if_open(&config.service.data_dir);
        }
        let listener = TcpListener::bind(config.bind).map_err(|source| StartupError::Bind {
            addr: config.bind,
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| StartupError::Bind {
            addr: config.bind,
            source,
        })?;
        let metrics_listener = match config.service.metrics_bind {
            Some(addr) => Some(
                server_kit::metrics::MetricsServer::bind(addr)
                    .map_err(|source| StartupError::MetricsBind { addr, source })?,
            ),
            None => None,
        };
        let recorders = recorders(&config, &settings)?;
        // Made before the outcome sink, which may be its burn batches (`outcome_sink`).
        let redis = match &settings.burn_store {
            BurnStoreSetting::Redis(info) => Some(
                RedisStore::new(
                    info.clone(),
                    config.burn_store_timeout(),
                    config.burn_store_replicas,
                    config.leeway,
                )
                .map_err(|e| StartupError::BurnStore(e.to_string()))?,
            ),
            _ => None,
        };
        let recorders = with_outcomes(&config, &settings.burn_store, redis.as_ref(), recorders)?;
        let registry = recorders.0.registry().clone();
        let (server, keys) = match (&settings.burn_store, redis) {
            (BurnStoreSetting::Memory, _) => {
                let store = MemoryStore::start(Duration::from_secs(10));
                start(&config, &settings, store, listener, recorders).await?
            }
            (BurnStoreSetting::Redis(_), Some(store)) => {
                store.start().await;
                start(&config, &settings, store, listener, recorders).await?
            }
            (BurnStoreSetting::Redis(_), None) => unreachable!("made above for a Redis"),
            (BurnStoreSetting::RedisCluster(nodes), _) => {
                let store =
                    RedisStore::cluster(nodes.clone(), config.burn_store_timeout(), config.leeway)
                        .map_err(|e| StartupError::BurnStore(e.to_string()))?;
                store.start().await;
                start(&config, &settings, store, listener, recorders).await?
            }
        };
        let metrics = match metrics_listener {
            Some(listener) => Some(
                server_kit::metrics::MetricsServer::start(listener, vec![registry.clone()])
                    .map_err(|source| StartupError::MetricsBind {
                        addr: config.service.metrics_bind.unwrap_or(config.bind),
                        source,
                    })?,
            ),
            None => None,
        };
        let metrics_addr = metrics
            .as_ref()
            .map(server_kit::metrics::MetricsServer::address);
        tracing::info!(%addr, ?metrics_addr, kids = ?keys.kids(), store = %settings.burn_store, "download server bound");
        Ok(Application {
            addr,
            server,
            keys,
            tls: settings.tls.is_some(),
            registry,
            metrics,
        })
    }

    /// The metrics listener's address (`--metrics-bind`), if there is one.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics
            .as_ref()
            .map(server_kit::metrics::MetricsServer::address)
    }

    /// This server's metrics registry (the all-in-one app serves it on its own listener).
    pub fn metrics_registry(&self) -> prometheus::Registry {
        self.registry.clone()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn address(&self) -> SocketAddr {
        self.addr
    }

    /// `https://<address>` with `--tls-cert`, else `http://<address>`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The keys in force, for the all-in-one app server to hand rotated keys over
    /// ([`Keys::replace_in_process`]).
    pub fn keys(&self) -> Arc<Keys> {
        self.keys.clone()
    }

    /// Stops the server gracefully (in-flight downloads get the grace period) when called.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped; the metrics listener stops with it.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        if let Some(metrics) = self.metrics {
            metrics.stop().await;
        }
        result
    }
}

/// With a store that forgets what it burned when the process stops, a token burned by the
/// previous process must not work again: tokens issued before
/// [`store::forgotten_burns_boundary`] are refused, and the server waits for it before it
/// serves (at most `1 + leeway` seconds), so no token minted after it starts serving is refused.
async fn restart_boundary(store: &impl BurnStore, config: &Config) -> Option<u64> {
    if !store.forgets_on_restart() || config.accept_tokens_issued_before_start {
        return None;
    }
    let boundary = store::forgotten_burns_boundary(config.leeway);
    tracing::info!(
        refused_before = boundary,
        leeway = config.leeway,
        "memory burn store: tokens issued before this second are refused (a restart forgets \
         what was burned); downloads are served from then on"
    );
    store::wait_for_second(boundary).await;
    Some(boundary)
}

/// The keys, checked against the policy with the restart boundary.
async fn load_keys(
    config: &Config,
    settings: &Settings,
    not_issued_before: Option<u64>,
    batch_sizes: prometheus::Histogram,
) -> Result<Arc<Keys>, StartupError> {
    let mut policy = config.policy();
    policy.not_issued_before = not_issued_before;
    Keys::load(config, settings.jwks_url.clone(), policy, batch_sizes).await
}

/// The metrics registry and the audit log (its file opened, or refused at start).
fn recorders(
    config: &Config,
    settings: &Settings,
) -> Result<(metrics::Metrics, audit::AuditLog), StartupError> {
    let metrics = metrics::Metrics::new();
    let path = settings.audit_log.clone();
    let dropped = metrics.audit_dropped.clone();
    let audit = match audit::AuditLog::open(path.as_deref(), dropped.clone()) {
        Ok(audit) => audit,
        // The default file on a read-only data dir: audit to the log only, and say so.
        Err(e) if config.audit_log.is_none() => {
            let path = path.unwrap_or_default();
            let path = path.display();
            tracing::warn!(error = %e, %path, "no audit file: the `audit` log target only");
            audit::AuditLog::open(None, dropped).map_err(|e| StartupError::Audit(e.to_string()))?
        }
        Err(e) => {
            let path = path.unwrap_or_default();
            return Err(StartupError::Audit(format!(
                "--audit-log (AUDIT_LOG) {}: {e}",
                path.display()
            )));
        }
    };
    Ok((metrics, audit))
}

/// The audit log, also handing outcomes to the sink given in-process, else (`--outcomes-redis`)
/// to the Redis Stream: the burn store's Redis by default (`auto`, written by its burn batches:
/// one round trip per download), none for `off`.
fn with_outcomes(
    config: &Config,
    burn_store: &BurnStoreSetting,
    redis: Option<&RedisStore>,
    (metrics, audit): (metrics::Metrics, audit::AuditLog),
) -> Result<(metrics::Metrics, audit::AuditLog), StartupError> {
    let bad = |why: String| StartupError::BurnStore(format!("--outcomes-redis: {why}"));
    let info = match (config.outcome_sink.clone(), config.outcomes_redis.expose()) {
        (Some(sink), _) => return Ok((metrics, audit.with_outcomes(Some(sink)))),
        (None, "off") => None,
        (None, "auto") if redis.is_some() => {
            let sink = redis.and_then(|store| {
                store.outcome_sink(
                    config.outcomes_stream_maxlen,
                    Duration::from_millis(config.outcomes_linger_ms),
                    metrics.outcomes_dropped.clone(),
                )
            });
            let sink = sink.map(|s| outcome::SinkHandle(Arc::new(s)));
            return Ok((metrics, audit.with_outcomes(sink)));
        }
        (None, "auto") => match burn_store {
            BurnStoreSetting::Redis(info) => Some(info.clone()),
            _ => None,
        },
        (None, url) => Some(
            redis::IntoConnectionInfo::into_connection_info(url)
                .map_err(|e| bad(format!("not a usable Redis URL: {e}")))?,
        ),
    };
    let Some(info) = info else {
        return Ok((metrics, audit));
    };
    let sink = outcome::redis::RedisStreamSink::start(
        info,
        config.outcomes_stream_maxlen,
        metrics.outcomes_dropped.clone(),
    )
    .map_err(|e| bad(e.to_string()))?;
    let sink = outcome::SinkHandle(Arc::new(sink));
    Ok((metrics, audit.with_outcomes(Some(sink))))
}

/// Keys (with the restart boundary of a forgetful store) and the server, for any store.
async fn start<S: BurnStore>(
    config: &Config,
    settings: &Settings,
    store: S,
    listener: TcpListener,
    recorders: (metrics::Metrics, audit::AuditLog),
) -> Result<(Server, Arc<Keys>), StartupError> {
    let files = config.file_store.open(config.files_dir()).await?;
    let not_before = restart_boundary(&store, config).await;
    let batch_sizes = recorders.0.verify_batch_tokens.clone();
    let keys = load_keys(config, settings, not_before, batch_sizes).await?;
    let server = serve(
        config,
        settings,
        keys.clone(),
        store,
        files,
        listener,
        recorders,
    )
    .map_err(|source| StartupError::Bind {
        addr: config.bind,
        source,
    })?;
    Ok((server, keys))
}

fn serve<S: BurnStore>(
    config: &Config,
    settings: &Settings,
    keys: Arc<Keys>,
    store: S,
    files: file_store::Files,
    listener: TcpListener,
    (metrics, audit): (metrics::Metrics, audit::AuditLog),
) -> std::io::Result<Server> {
    let tls = settings.tls.clone();
    let hsts = tls.is_some();
    let state = web::Data::new(AppState {
        gate: delivery::Gate {
            verifier: keys,
            store,
            files,
            rules: delivery::Rules {
                clock_skew: config.clock_skew_secs,
                resume_window_ms: config.resume_window_secs.saturating_mul(1000),
                resume_min_bytes: config.resume_min_bytes,
                read_buffer: config.read_buffer_kib as usize * 1024,
            },
            burn_seconds: metrics.burn_seconds.clone(),
        },
        secure_cookies: hsts,
        app_url: settings.app_url.as_ref().map(ToString::to_string),
        metrics,
        audit,
    });
    // Nothing here reads a body; one sent anyway must still arrive in time.
    let body_timeouts = server_kit::body_timeout::BodyTimeouts {
        deadline: config.service.body_timeout(),
        idle: config.service.body_timeout(),
    };
    let server = HttpServer::new(move || {
        let headers = server_kit::headers::defaults(hsts, routes::CONTENT_SECURITY_POLICY);
        App::new()
            .wrap(headers)
            .wrap(actix_web::middleware::from_fn(
                server_kit::body_timeout::limit,
            ))
            .wrap(actix_web::middleware::from_fn(
                server_kit::telemetry::request_span,
            ))
            .app_data(body_timeouts)
            .app_data(state.clone())
            .configure(configure::<S>)
    })
    // Headers and a small body go out at once instead of waiting on the client's delayed
    // ACK (Nagle): without it every small download took 40 ms.
    .tcp_nodelay(true)
    // Stop filling the connection's write buffer at 8 KiB (actix's default is 32 KiB): the
    // body's chunk goes out on its own, so a slow client holds one chunk, not two.
    .h1_write_buffer_size(8 * 1024)
    // The blocking pool that reads files, per worker (actix's default shares 512 threads
    // among the workers: 256 each on two cores).
    .worker_max_blocking_threads(config.io_threads as usize)
    .shutdown_timeout(config.shutdown_grace_secs);
    let mut server = match tls {
        Some(tls) => server.listen_rustls_0_23(listener, tls)?,
        None => server.listen(listener)?,
    };
    if config.workers > 0 {
        server = server.workers(config.workers);
    }
    Ok(server.run())
}
