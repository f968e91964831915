//! TLS and mutual TLS. The certificates are plain PEM data, loaded here from files; turning
//! them into grpcio credentials needs a TLS build of C-core: the default feature `tls` (the
//! system's OpenSSL) or `boringssl`. Without either, asking for TLS is an error that says how
//! to get it — never a silent downgrade.

use std::path::{Path, PathBuf};

/// A server's certificate chain and key, and optionally the CA its clients' certificates are
/// checked against.
#[derive(Clone)]
pub struct ServerTls {
    pub cert_chain: Vec<u8>,
    pub private_key: Vec<u8>,
    /// When set, client certificates are checked against this CA (mutual TLS).
    pub client_ca: Option<Vec<u8>>,
    /// With a `client_ca`: whether a client must present a certificate (`Required`, the
    /// default), or may call without one (`Optional`: token-only callers and certificate
    /// holders share the port; a certificate presented is still checked).
    pub client_cert: ClientCert,
}

/// Whether a mutual-TLS server requires a client certificate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientCert {
    /// No handshake without a certificate the client CA signed.
    #[default]
    Required,
    /// A certificate, if presented, must be signed by the client CA; none is fine too.
    Optional,
}

impl std::str::FromStr for ClientCert {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "required" => Ok(ClientCert::Required),
            "optional" => Ok(ClientCert::Optional),
            other => Err(format!("{other:?}: a client certificate is required or optional")),
        }
    }
}

/// What a client trusts and, for mutual TLS, who it is.
#[derive(Clone, Default)]
pub struct ClientTls {
    /// CA that signed the server's certificate (PEM); `None` trusts the roots C-core finds on
    /// the system.
    pub server_ca: Option<Vec<u8>>,
    /// Client certificate chain and key (PEM), for servers that require one.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// Name to expect in the server's certificate instead of the host of the address.
    pub server_name: Option<String>,
}

// Keys stay out of logs.
impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("mutual", &self.client_ca.is_some())
            .field("client_cert", &self.client_cert)
            .finish_non_exhaustive()
    }
}
impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("identity", &self.identity.is_some())
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// Loading certificates failed, or TLS was asked of a build without it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the {what} {}: {source}", path.display())]
    Read { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("the {what} {} is not PEM (no \"-----BEGIN\" line)", path.display())]
    NotPem { what: &'static str, path: PathBuf },
    #[error("{0} needs the other one too: give both --tls-cert and --tls-key")]
    HalfPair(&'static str),
    #[error("{0} needs {1}")]
    Missing(&'static str, &'static str),
    #[error("this build has no TLS: rebuild with the default features (TLS through the system's OpenSSL) or `--features boringssl`")]
    NotBuiltIn,
}

/// Reads a PEM file, checking it at least looks like one.
pub(crate) fn read_pem(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Read { what, path: path.to_owned(), source })?;
    if !pem.windows(10).any(|w| w == b"-----BEGIN") {
        return Err(TlsError::NotPem { what, path: path.to_owned() });
    }
    Ok(pem)
}

impl ServerTls {
    /// Loads the server's PEM files; `client_ca` turns on mutual TLS.
    pub fn from_files(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<Self, TlsError> {
        Ok(ServerTls {
            cert_chain: read_pem("server certificate", cert)?,
            private_key: read_pem("server key", key)?,
            client_ca: client_ca.map(|p| read_pem("client CA", p)).transpose()?,
            client_cert: ClientCert::Required,
        })
    }

    #[cfg(tls)]
    pub(crate) fn credentials(&self) -> Result<grpcio::ServerCredentials, TlsError> {
        use grpcio::{CertificateRequestType, ServerCredentialsBuilder};
        let mut builder = ServerCredentialsBuilder::new().add_cert(self.cert_chain.clone(), self.private_key.clone());
        if let Some(ca) = &self.client_ca {
            let request = match self.client_cert {
                ClientCert::Required => CertificateRequestType::RequestAndRequireClientCertificateAndVerify,
                ClientCert::Optional => CertificateRequestType::RequestClientCertificateAndVerify,
            };
            builder = builder.root_cert(ca.clone(), request);
        }
        Ok(builder.build())
    }

    #[cfg(not(tls))]
    pub(crate) fn credentials(&self) -> Result<grpcio::ServerCredentials, TlsError> {
        Err(TlsError::NotBuiltIn)
    }
}

impl ClientTls {
    /// Loads the client's PEM files: the server's CA, and a certificate/key pair for mTLS.
    pub fn from_files(
        ca: &Path,
        cert: Option<&Path>,
        key: Option<&Path>,
        server_name: Option<String>,
    ) -> Result<Self, TlsError> {
        let identity = match (cert, key) {
            (Some(cert), Some(key)) => Some((read_pem("client certificate", cert)?, read_pem("client key", key)?)),
            (None, None) => None,
            (Some(_), None) => return Err(TlsError::HalfPair("--tls-cert")),
            (None, Some(_)) => return Err(TlsError::HalfPair("--tls-key")),
        };
        Ok(ClientTls { server_ca: Some(read_pem("server CA", ca)?), identity, server_name })
    }

    /// Adds these credentials to a channel being built.
    #[cfg(tls)]
    pub(crate) fn apply(&self, builder: grpcio::ChannelBuilder) -> Result<grpcio::ChannelBuilder, TlsError> {
        let mut creds = grpcio::ChannelCredentialsBuilder::new();
        if let Some(ca) = &self.server_ca {
            creds = creds.root_cert(ca.clone());
        }
        if let Some((cert, key)) = &self.identity {
            creds = creds.cert(cert.clone(), key.clone());
        }
        let builder = builder.set_credentials(creds.build());
        Ok(match &self.server_name {
            Some(name) => builder.override_ssl_target(name.clone()),
            None => builder,
        })
    }

    #[cfg(not(tls))]
    pub(crate) fn apply(&self, _builder: grpcio::ChannelBuilder) -> Result<grpcio::ChannelBuilder, TlsError> {
        Err(TlsError::NotBuiltIn)
    }
}
