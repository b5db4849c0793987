pub mod download;
pub mod health;

/// Content-Security-Policy of every response ([`server_kit::headers::defaults`]): nothing
/// loads, and an uploaded HTML file opened in place runs no script on this origin (the
/// sandbox makes it an opaque origin). The error pages, which carry a style, set their own.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; sandbox";
