use crate::delivery::Gate;

/// What every handler shares, built once in [`crate::Application::build`].
pub struct AppState<S> {
    /// What each download is decided with: keys, burn store, files and the rules.
    pub gate: Gate<S>,
    /// Whether cookies are set `Secure` (served over TLS).
    pub secure_cookies: bool,
    /// The app's public URL, for the "go back" link of error pages.
    pub app_url: Option<String>,
    pub metrics: crate::metrics::Metrics,
    /// Where every download attempt is recorded.
    pub audit: crate::audit::AuditLog,
}
