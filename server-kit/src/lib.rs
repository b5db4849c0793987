//! What both burnlink servers need to run as a service, and nothing about tokens or files:
//! logging and request ids, TLS loading, config-file merging, the metrics listener, body
//! deadlines, private file modes, the headers every response carries, and the flag group of
//! those settings (`settings::ServiceArgs`).

pub mod body_timeout;
pub mod config_file;
pub mod headers;
pub mod metrics;
pub mod permissions;
pub mod settings;
pub mod telemetry;
pub mod tls;
