//! The burnlink download server: knows no users and keeps no sessions. It verifies a download
//! token, burns its `jti` so it works exactly once, and streams the file the token names.

pub mod config;
pub mod error;
pub mod file;
pub mod routes;
pub mod state;
pub mod store;
pub mod telemetry;

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpServer, web};
use shared::Verifier;

pub use config::Config;
use state::AppState;
use store::{BurnStore, MemoryStore};

/// Why the server could not start. Each names the setting to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("{0}: {1}")]
    Key(&'static str, shared::KeyError),
    #[error(
        "no verification key: give --jwks-file, --public-key or --hs256-secret-file, \
         or start the app server once so it writes <data dir>/keys/jwks.json"
    )]
    NoKeys,
    #[error("--burn-store: {0}")]
    BurnStore(String),
    #[error("--bind {addr}: {source}")]
    Bind {
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
            web::resource("/d/{token}")
                .route(web::get().to(download::by_path::<S>))
                .route(web::head().to(download::by_path::<S>)),
        )
        .service(
            web::resource("/d")
                .route(web::get().to(download::by_header::<S>))
                .route(web::head().to(download::by_header::<S>)),
        );
}

/// A bound, not yet running, download server.
pub struct Application {
    addr: SocketAddr,
    server: Server,
}

impl Application {
    /// Loads keys, binds the listener (port 0 picks one: read it back with [`Self::port`])
    /// and wires the app. Nothing is served until [`Self::run_until_stopped`].
    pub async fn build(config: Config) -> Result<Application, StartupError> {
        let keys = config.load_keys()?;
        let listener = TcpListener::bind(config.bind).map_err(|source| StartupError::Bind {
            addr: config.bind,
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| StartupError::Bind {
            addr: config.bind,
            source,
        })?;
        let kids: Vec<&str> = keys.iter().map(|k| k.kid()).collect();
        tracing::info!(%addr, ?kids, store = %config.burn_store, "download server bound");

        let server = match config.burn_store.as_str() {
            "memory" => {
                let store = MemoryStore::start(Duration::from_secs(10));
                serve(&config, keys, store, listener)
            }
            other => {
                return Err(StartupError::BurnStore(format!(
                    "unknown burn store {other:?} (memory)"
                )));
            }
        }
        .map_err(|source| StartupError::Bind {
            addr: config.bind,
            source,
        })?;
        Ok(Application { addr, server })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn address(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the server gracefully (in-flight downloads get the grace period) when called.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

fn serve<S: BurnStore>(
    config: &Config,
    keys: Vec<shared::VerifyingKey>,
    store: S,
    listener: TcpListener,
) -> std::io::Result<Server> {
    let mut policy = config.policy();
    if store.forgets_on_restart() && !config.accept_tokens_issued_before_start {
        policy.not_issued_before = Some(shared::unix_now());
    }
    let state = web::Data::new(AppState {
        verifier: Verifier::new(keys, policy),
        store,
        files: config.files_dir(),
        read_buffer: config.read_buffer_kib as usize * 1024,
    });
    let mut server =
        HttpServer::new(move || App::new().app_data(state.clone()).configure(configure::<S>))
            .shutdown_timeout(config.shutdown_grace_secs)
            .listen(listener)?;
    if config.workers > 0 {
        server = server.workers(config.workers);
    }
    Ok(server.run())
}
