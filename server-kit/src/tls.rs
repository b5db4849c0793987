//! The optional TLS listener (`--tls-cert`, `--tls-key`): rustls with the ring provider, TLS 1.2
//! and 1.3, no client certificates. The app server's listeners use the same loader.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why a certificate or key could not be used; the caller names the setting.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("--tls-cert (TLS_CERT) {path}: {reason}")]
    Cert { path: String, reason: String },
    #[error("--tls-key (TLS_KEY) {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("--tls-cert and --tls-key (TLS_CERT, TLS_KEY) must be given together")]
    Half,
    #[error("--tls-cert / --tls-key (TLS_CERT / TLS_KEY): {0}")]
    Mismatch(String),
}

/// Reads a PEM certificate chain (leaf first) and its PEM private key (PKCS#8, PKCS#1 or SEC1).
/// `None` when neither is set; one without the other is an error.
pub fn load(cert: Option<&Path>, key: Option<&Path>) -> Result<Option<ServerConfig>, TlsError> {
    let (cert, key) = match (cert, key) {
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => (cert, key),
        _ => return Err(TlsError::Half),
    };
    let cert_error = |reason: String| TlsError::Cert {
        path: cert.display().to_string(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| cert_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_error(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_error("no CERTIFICATE in the file".into()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.display().to_string(),
        reason: e.to_string(),
    })?;
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Mismatch(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .map_err(|e| TlsError::Mismatch(e.to_string()))?;
    Ok(Some(config))
}
