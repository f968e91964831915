//! Certificates made at run time for the TLS tests (rcgen): a CA and what it signs, as PEM.
//! Nothing secret is committed.

use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair};

/// A CA and what it signed, as PEM.
pub struct Pki {
    ca_cert: rcgen::Certificate,
    ca_key: KeyPair,
}

pub struct Issued {
    pub cert: String,
    pub key: String,
}

impl Pki {
    pub fn new(name: &str) -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        Pki { ca_cert: params.self_signed(&ca_key).unwrap(), ca_key }
    }

    pub fn ca_pem(&self) -> Vec<u8> {
        self.ca_cert.pem().into_bytes()
    }

    pub fn issue(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Issued {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.ca_cert, &self.ca_key).unwrap();
        Issued { cert: cert.pem(), key: key.serialize_pem() }
    }

    /// A certificate from this CA made from `params` (its names, subject and usages).
    pub fn sign(&self, params: CertificateParams) -> Issued {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca_cert, &self.ca_key).unwrap();
        Issued { cert: cert.pem(), key: key.serialize_pem() }
    }

    pub fn server(&self) -> Issued {
        self.issue(&["localhost", "127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth)
    }

    pub fn client(&self) -> Issued {
        self.issue(&["greeter-test-client"], ExtendedKeyUsagePurpose::ClientAuth)
    }
}

impl Pki {
    /// A server's TLS settings with a certificate from this CA (for `localhost` and
    /// 127.0.0.1); with `mutual`, clients must show a certificate from this CA too.
    pub fn server_tls(&self, mutual: bool) -> greeter::ServerTls {
        let issued = self.server();
        greeter::ServerTls {
            cert_chain: issued.cert.into_bytes(),
            private_key: issued.key.into_bytes(),
            client_ca: mutual.then(|| self.ca_pem()),
            client_cert: greeter::ClientCert::Required,
        }
    }
}

/// The PEM files other programs read (Go and Python clients, grpc_health_probe): `ca.pem`,
/// `client.pem` and `client.key`, in a temp dir removed when this is dropped.
pub struct PemFiles {
    dir: tempfile::TempDir,
}

impl PemFiles {
    pub fn new(pki: &Pki, client: Issued) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), pki.ca_pem()).unwrap();
        std::fs::write(dir.path().join("client.pem"), client.cert).unwrap();
        std::fs::write(dir.path().join("client.key"), client.key).unwrap();
        PemFiles { dir }
    }

    /// The path of one of the files, as an argument.
    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}
