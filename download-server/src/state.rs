use std::path::PathBuf;
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
    /// `<data dir>/files`: the only directory files are read from.
    pub files: PathBuf,
    /// Bytes per read when streaming.
    pub read_buffer: usize,
    /// The app's public URL, for the "go back" link of error pages.
    pub app_url: Option<String>,
    pub metrics: crate::metrics::Metrics,
    /// Where every download attempt is recorded.
    pub audit: crate::audit::AuditLog,
}
