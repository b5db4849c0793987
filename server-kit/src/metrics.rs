//! Serving Prometheus registries: the text format, and the `--metrics-bind` listener both
//! servers use.

use std::net::{SocketAddr, TcpListener};

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpResponse, HttpServer, web};
use prometheus::{Encoder, Registry, TextEncoder};

/// The exposition's media type (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A registry in the Prometheus text format 0.0.4 (shared with the app server).
pub fn render(registry: &Registry) -> String {
    render_all(std::slice::from_ref(registry))
}

/// Several registries (the all-in-one app and its embedded download server) as one
/// exposition; their series names do not overlap.
pub fn render_all(registries: &[Registry]) -> String {
    let families: Vec<_> = registries.iter().flat_map(Registry::gather).collect();
    let mut out = Vec::with_capacity(4096);
    // Encoding into a Vec cannot fail on I/O; a malformed family would be our bug. Serve what
    // was encoded rather than nothing.
    if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
        tracing::error!(error = %e, "encoding metrics");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// `GET /metrics` on its own listener (`--metrics-bind`, `METRICS_BIND`), never on a public
/// port: the counters move with every download, so whoever can scrape them watches each
/// download's size and outcome go by. Unset, no listener and no metrics over HTTP. One worker,
/// plain HTTP, nothing else served there (404); stopped with the server it belongs to.
pub struct MetricsServer {
    addr: SocketAddr,
    handle: ServerHandle,
}

impl MetricsServer {
    /// Binds the listener (at start, before anything is served, so a taken port stops the
    /// start).
    pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
        TcpListener::bind(addr)
    }

    /// Serves `registries` on `listener`, on the current runtime.
    pub fn start(listener: TcpListener, registries: Vec<Registry>) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let registries = web::Data::new(registries);
        let server: Server = HttpServer::new(move || {
            App::new()
                .wrap(crate::headers::defaults(false, "default-src 'none'"))
                .app_data(registries.clone())
                .route("/metrics", web::get().to(scrape))
        })
        .workers(1)
        .shutdown_timeout(1)
        // Stopped by its server's `run_until_stopped`, not by signals of its own.
        .disable_signals()
        .listen(listener)?
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(MetricsServer { addr, handle })
    }

    pub fn address(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the listener (scrapes in flight finish).
    pub async fn stop(self) {
        self.handle.stop(true).await;
    }
}

async fn scrape(registries: web::Data<Vec<Registry>>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .body(render_all(&registries))
}
