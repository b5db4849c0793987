//! The burnlink app server: users log in, upload files, and get single-use download links
//! signed for a separate, stateless download server (or, in all-in-one mode, an embedded one).
//!
//! [`Application::build`] wires everything once; `main.rs` and the integration tests both use
//! it.

pub mod accounts;
pub mod admin;
pub mod config;
pub mod db;
pub mod downloads;
pub mod error;
pub mod files;
pub mod keys;
pub mod login;
pub mod metrics;
pub mod minter;
pub mod oidc;
pub mod outcomes;
pub mod routes;
pub mod sessions;
pub mod share_form;
pub mod shares;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod throttle;
pub mod tokens;
pub mod upload_links;
pub mod uploads;
pub mod users;
pub mod views;
pub mod webhooks;

pub use config::{Cli, Command, Config, KeysCommand, UserCommand};
pub use error::{AppError, StartupError};
pub use startup::{Application, DemoUser};

/// Unix seconds, as the database stores them.
pub(crate) fn now() -> i64 {
    i64::try_from(shared::unix_now()).unwrap_or(i64::MAX)
}

/// Unix microseconds: orders rows created within the same second.
pub(crate) fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Unix milliseconds: webhook retries run to the second and below.
pub(crate) fn now_millis() -> i64 {
    now_micros() / 1000
}
