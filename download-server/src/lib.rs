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

pub use config::{BurnStoreSetting, Config};
use state::AppState;
use store::{BurnStore, MemoryStore, RedisStore};

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
    #[error("--app-url (APP_URL): {0}")]
    AppUrl(String),
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
            // `.*`: a token with a `/` (standard base64) still reaches the verifier and gets
            // the documented 401, not a bare 404.
            web::resource("/d/{token:.*}")
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
        let burn_store = config.burn_store()?;
        config.app_url()?;
        let kids: Vec<&str> = keys.iter().map(|k| k.kid()).collect();
        tracing::info!(%addr, ?kids, store = %burn_store, "download server bound");

        let server = match burn_store {
            BurnStoreSetting::Memory => {
                let store = MemoryStore::start(Duration::from_secs(10));
                let not_before = restart_boundary(&store, &config).await;
                serve(&config, keys, store, not_before, listener)
            }
            BurnStoreSetting::Redis(info) => {
                let store = RedisStore::new(info, config.burn_store_timeout())
                    .map_err(|e| StartupError::BurnStore(e.to_string()))?;
                store.connect_in_background();
                let not_before = restart_boundary(&store, &config).await;
                serve(&config, keys, store, not_before, listener)
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

/// With a store that forgets what it burned when the process stops, a token burned by the
/// previous process must not work again: every token issued before this process is refused.
/// `iat` has one-second resolution, so the boundary is the next whole second, and the server
/// waits for it before it serves (at most a second), so no token minted after it starts
/// serving is refused.
async fn restart_boundary(store: &impl BurnStore, config: &Config) -> Option<u64> {
    if !store.forgets_on_restart() || config.accept_tokens_issued_before_start {
        return None;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let boundary = now.as_secs() + 1;
    tokio::time::sleep(Duration::from_secs(boundary).saturating_sub(now)).await;
    Some(boundary)
}

fn serve<S: BurnStore>(
    config: &Config,
    keys: Vec<shared::VerifyingKey>,
    store: S,
    not_issued_before: Option<u64>,
    listener: TcpListener,
) -> std::io::Result<Server> {
    let mut policy = config.policy();
    policy.not_issued_before = not_issued_before;
    let state = web::Data::new(AppState {
        verifier: Verifier::new(keys, policy),
        store,
        files: config.files_dir(),
        read_buffer: config.read_buffer_kib as usize * 1024,
        app_url: config.app_url().ok().flatten(),
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
