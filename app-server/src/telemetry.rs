//! Logging: one set-up for both servers, in `download_server::telemetry` (the app server
//! already depends on that library for its all-in-one mode).

pub use download_server::telemetry::{
    LogFormat, REQUEST_ID, RequestId, init, request_span, try_init,
};
