use std::sync::Arc;

use crate::keys::Keys;

/// What every handler shares, built once in [`crate::Application::build`].
pub struct AppState<S> {
    /// The verification keys in force; swapped whole when they change.
    pub verifier: Arc<Keys>,
    pub store: S,
    /// `--clock-skew-secs`: how long burn records outlive the last second this server
    /// accepts their token, for servers whose clocks run behind.
    pub clock_skew: u64,
    /// `--resume-window-secs` in milliseconds: how long a burned download may be resumed by
    /// the client it was sent to (0: never).
    pub resume_window_ms: u64,
    /// `--resume-min-bytes`: smaller files get no resume grant.
    pub resume_min_bytes: u64,
    /// Whether cookies are set `Secure` (served over TLS).
    pub secure_cookies: bool,
    /// Where files are read from: `<data dir>/files` or the S3 bucket (`--file-store`).
    pub files: file_store::Files,
    /// Bytes per read when streaming.
    pub read_buffer: usize,
    /// The app's public URL, for the "go back" link of error pages.
    pub app_url: Option<String>,
    pub metrics: crate::metrics::Metrics,
    /// Where every download attempt is recorded.
    pub audit: crate::audit::AuditLog,
}
