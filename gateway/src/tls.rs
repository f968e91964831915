//! TLS for browsers: HTTP/2 (which browsers speak only over TLS) and HTTP/1.1, by ALPN.

use std::path::PathBuf;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// A certificate chain and its private key, PEM files.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the certificate chain {path}: {source}")]
    Cert { path: PathBuf, source: rustls_pki_types::pem::Error },
    #[error("{0} holds no certificate")]
    NoCert(PathBuf),
    #[error("cannot read the private key {path}: {source}")]
    Key { path: PathBuf, source: rustls_pki_types::pem::Error },
    #[error("the key does not fit the certificate, or is of a kind rustls does not take: {0}")]
    Config(#[from] tokio_rustls::rustls::Error),
}

impl TlsFiles {
    pub(crate) fn acceptor(&self) -> Result<TlsAcceptor, TlsError> {
        let certs = CertificateDer::pem_file_iter(&self.cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|source| TlsError::Cert { path: self.cert.clone(), source })?;
        if certs.is_empty() {
            return Err(TlsError::NoCert(self.cert.clone()));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|source| TlsError::Key { path: self.key.clone(), source })?;
        // ring, not aws-lc-rs: no second C library to build beside C-core. Browsers then
        // agree on a classical key exchange (X25519), not a post-quantum one.
        #[allow(deprecated)]
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}
