//! Logging: one set-up for both servers, in `server_kit::telemetry` (the app server
//! already depends on that library for its all-in-one mode).

pub use server_kit::telemetry::{LogFormat, REQUEST_ID, init, request_span, try_init};
