//! What both burnlink servers need to run as a service, and nothing about what tokens say or
//! where files live: logging and request ids, TLS loading, config-file merging, the metrics
//! listener, body deadlines, private file modes, the security headers every response carries,
//! reading an `Authorization: Bearer` header, and the flag group of those settings
//! (`settings::ServiceArgs`).

pub mod bearer;
pub mod body_timeout;
pub mod config_file;
pub mod headers;
pub mod metrics;
pub mod permissions;
pub mod settings;
pub mod telemetry;
pub mod tls;
