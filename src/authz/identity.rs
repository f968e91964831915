//! A TLS peer's identity as grpc-go's policies see it.
//!
//! grpc-go matches a principal pattern against the peer's leaf certificate: its URI SANs if it
//! has any, else its DNS SANs if it has any, else its subject, as Go's `pkix.Name.String()`
//! writes it. C-core's `x509_subject` property is OpenSSL's RFC 2253 form, which differs (Go
//! puts the attributes it knows in a fixed order, writes others as `OID=#hex`, and escapes
//! less), so the subject is derived here from the certificate itself (`x509_pem_cert`).
//!
//! A TLS peer without a certificate is authenticated with no names; a plaintext peer is not
//! authenticated.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::Principals;

/// The caller on the other end of the connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PeerIdentity {
    /// The connection is TLS (grpc-go's "authenticated").
    pub(crate) tls: bool,
    /// The names principal patterns match, in grpc-go's order; empty without a certificate.
    pub(crate) names: Vec<String>,
    /// The certificate's SPIFFE ID, by grpc-go's rules: what its audit log calls the
    /// principal.
    pub(crate) spiffe_id: Option<String>,
}

impl PeerIdentity {
    /// A peer on a plaintext connection.
    pub(crate) fn plaintext() -> Self {
        PeerIdentity::default()
    }

    /// A TLS peer that presented `leaf` (DER), or no certificate.
    pub(crate) fn tls(leaf: Option<&[u8]>) -> Self {
        let Some(der) = leaf else {
            return PeerIdentity { tls: true, names: Vec::new(), spiffe_id: None };
        };
        match CertNames::from_der(der) {
            Ok(names) => PeerIdentity { tls: true, spiffe_id: names.spiffe_id(), names: names.principal_names() },
            Err(e) => {
                // C-core accepted it, Go would not have (it refuses such certificates at the
                // handshake): no principal pattern may match a holder whose names are unknown.
                log::warn!("a client certificate's names cannot be read ({e}); it matches no principal");
                PeerIdentity::plaintext()
            }
        }
    }

    pub(crate) fn principals(&self) -> Principals<'_> {
        Principals { authenticated: self.tls, names: &self.names }
    }
}

/// What grpc-go reads from a certificate to name its holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CertNames {
    /// As Go's `url.URL.String()` gives them back: the scheme lowercase.
    pub(crate) uris: Vec<String>,
    pub(crate) dns: Vec<String>,
    /// As Go's `pkix.Name.String()` writes it.
    pub(crate) subject: String,
}

impl CertNames {
    pub(crate) fn from_der(der: &[u8]) -> Result<Self, String> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let (mut uris, mut dns) = (Vec::new(), Vec::new());
        if let Some(san) = cert.subject_alternative_name().map_err(|e| format!("bad subjectAltName: {e}"))? {
            for name in &san.value.general_names {
                match name {
                    GeneralName::URI(uri) => uris.push(lowercase_scheme(uri)),
                    GeneralName::DNSName(name) => dns.push((*name).to_owned()),
                    _ => {}
                }
            }
        }
        let mut attributes = Vec::new();
        for attribute in cert.subject().iter_attributes() {
            let oid = attribute.attr_type().to_id_string();
            let value = attribute.attr_value();
            let text = go_asn1_string(value.tag().0, value.data)
                .ok_or_else(|| format!("subject attribute {oid} is not a string Go reads"))?;
            attributes.push((oid, text));
        }
        Ok(CertNames { uris, dns, subject: go_name_string(&attributes) })
    }

    /// A PEM certificate (the first one of a chain).
    #[allow(dead_code)] // used by tests/authz.rs and examples/authz_bench.rs, which include this module
    pub(crate) fn from_pem(pem: &[u8]) -> Result<Self, String> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem).map_err(|e| format!("not PEM: {e}"))?;
        CertNames::from_der(&pem.contents)
    }

    /// The names a principal pattern is matched against: the first kind the certificate has.
    pub(crate) fn principal_names(self) -> Vec<String> {
        if !self.uris.is_empty() {
            self.uris
        } else if !self.dns.is_empty() {
            self.dns
        } else {
            vec![self.subject]
        }
    }

    /// grpc-go's `SPIFFEIDFromCert`: the one URI SAN, when it is a `spiffe://` URI with a
    /// trust domain and a path; none when there are several URI SANs.
    pub(crate) fn spiffe_id(&self) -> Option<String> {
        let [uri] = self.uris.as_slice() else {
            return None;
        };
        let rest = uri.strip_prefix("spiffe://")?;
        let (authority, path) = rest.split_once('/')?;
        let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
        let valid = uri.len() <= 2048 && !host.is_empty() && host.len() <= 255 && !path.is_empty();
        valid.then(|| uri.clone())
    }
}

/// Go's URL parser lowercases the scheme (and keeps the rest as written, for the URIs
/// certificates carry).
fn lowercase_scheme(uri: &str) -> String {
    match uri.split_once(':') {
        Some((scheme, rest))
            if !scheme.is_empty() && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)) =>
        {
            format!("{}:{rest}", scheme.to_ascii_lowercase())
        }
        _ => uri.to_owned(),
    }
}

/// A subject attribute's value as Go's `crypto/x509` decodes it; `None` for a type or a
/// content Go refuses.
fn go_asn1_string(tag: u32, data: &[u8]) -> Option<String> {
    const UTF8: u32 = 12;
    const NUMERIC: u32 = 18;
    const PRINTABLE: u32 = 19;
    const T61: u32 = 20;
    const IA5: u32 = 22;
    const BMP: u32 = 30;
    match tag {
        // Go reads T.61 as Latin-1, as BoringSSL does.
        T61 => Some(data.iter().map(|&b| char::from(b)).collect()),
        PRINTABLE if data.iter().all(|&b| printable(b, true, true)) => String::from_utf8(data.to_vec()).ok(),
        UTF8 => String::from_utf8(data.to_vec()).ok(),
        IA5 if data.is_ascii() => String::from_utf8(data.to_vec()).ok(),
        NUMERIC if data.iter().all(|&b| b.is_ascii_digit() || b == b' ') => String::from_utf8(data.to_vec()).ok(),
        BMP if data.len().is_multiple_of(2) => {
            let mut units: Vec<u16> = data.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
            if units.last() == Some(&0) {
                units.pop();
            }
            let bad = |u: &u16| matches!(u, 0xfffe | 0xffff | 0xfdd0..=0xfdef | 0xd800..=0xdfff);
            if units.iter().any(bad) {
                return None;
            }
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

/// Go's `asn1` PrintableString alphabet; Go's reader also lets `*` and `&` through.
fn printable(b: u8, asterisk: bool, ampersand: bool) -> bool {
    b.is_ascii_alphanumeric()
        || (b'\''..=b')').contains(&b)
        || (b'+'..=b'/').contains(&b)
        || matches!(b, b' ' | b':' | b'=' | b'?')
        || (asterisk && b == b'*')
        || (ampersand && b == b'&')
}

/// The attributes Go parses into named fields, by the last arc of `2.5.4.x`, in the order
/// `pkix.Name.ToRDNSequence` puts them back, with their short names.
const NAMED: &[(&str, &str)] = &[
    ("2.5.4.6", "C"),
    ("2.5.4.8", "ST"),
    ("2.5.4.7", "L"),
    ("2.5.4.9", "STREET"),
    ("2.5.4.17", "POSTALCODE"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.3", "CN"),
    ("2.5.4.5", "SERIALNUMBER"),
];

/// Go's `pkix.Name.String()` of a parsed certificate name: the attributes Go has no field for
/// first (each its own RDN, in certificate order), then C, ST, L, STREET, POSTALCODE, O and
/// OU (all values of one type in one multi-valued RDN), CN and SERIALNUMBER (the last value
/// of each); the whole written last RDN first.
fn go_name_string(attributes: &[(String, String)]) -> String {
    let named = |oid: &str| NAMED.iter().any(|(known, _)| *known == oid);
    let mut rdns: Vec<Vec<(&str, &str)>> = Vec::new();
    for (oid, value) in attributes.iter().filter(|(oid, _)| !named(oid)) {
        rdns.push(vec![(oid.as_str(), value.as_str())]);
    }
    for &(oid, _) in NAMED {
        let values: Vec<(&str, &str)> =
            attributes.iter().filter(|(o, _)| o == oid).map(|(o, v)| (o.as_str(), v.as_str())).collect();
        match oid {
            // One value, the last; an empty one is left out.
            "2.5.4.3" | "2.5.4.5" => {
                if let Some(last) = values.last().filter(|(_, v)| !v.is_empty()) {
                    rdns.push(vec![*last]);
                }
            }
            _ if !values.is_empty() => rdns.push(values),
            _ => {}
        }
    }
    let mut out = String::new();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, (oid, value)) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            match NAMED.iter().find(|(known, _)| known == oid) {
                Some((_, short)) => {
                    out.push_str(short);
                    out.push('=');
                    escape_value(&mut out, value);
                }
                None => {
                    out.push_str(oid);
                    out.push_str("=#");
                    for byte in go_asn1_marshal_string(value) {
                        let _ = write!(out, "{byte:02x}");
                    }
                }
            }
        }
    }
    out
}

/// Go's RDN value escaping: `,+"\<>;` always, a space first or last, a `#` first.
fn escape_value(out: &mut String, value: &str) {
    let last = value.len().saturating_sub(1);
    for (k, c) in value.char_indices() {
        let escape = match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' => true,
            ' ' => k == 0 || k == last,
            '#' => k == 0,
            _ => false,
        };
        if escape {
            out.push('\\');
        }
        out.push(c);
    }
}

/// Go's `asn1.Marshal` of a string: a PrintableString when every byte is in its alphabet
/// (without `*` and `&`), else a UTF8String; DER length.
fn go_asn1_marshal_string(value: &str) -> Vec<u8> {
    let tag = if value.bytes().all(|b| printable(b, false, false)) { 0x13 } else { 0x0c };
    let len = value.len();
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|&b| b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(value.as_bytes());
    out
}

/// The identity of the peer of a call, from grpcio's view of its connection. Parses the
/// certificate: a server keeps the result in an [`IdentityCache`].
#[cfg(tls)]
#[allow(dead_code)] // used by tests/authz.rs and examples/authz_bench.rs, which include this module
pub(crate) fn principals_from_auth_context(auth: &grpcio::AuthContext) -> PeerIdentity {
    match peer_certificate(auth) {
        None => PeerIdentity::plaintext(),
        Some(pem) => PeerIdentity::tls(pem.and_then(pem_to_der).as_deref()),
    }
}

/// `None` for a plaintext peer; `Some(None)` for a TLS peer without a certificate.
#[cfg(tls)]
fn peer_certificate(auth: &grpcio::AuthContext) -> Option<Option<&[u8]>> {
    let mut tls = false;
    let mut pem = None;
    for property in auth {
        match property.name() {
            "transport_security_type" => tls = property.value() == b"ssl",
            "x509_pem_cert" => pem = Some(property.value()),
            _ => {}
        }
    }
    tls.then_some(pem)
}

fn pem_to_der(pem: &[u8]) -> Option<Vec<u8>> {
    x509_parser::pem::parse_x509_pem(pem).ok().map(|(_, pem)| pem.contents)
}

/// Peer identities by certificate: a connection's certificate is parsed on its first call,
/// not on every call (a parse costs microseconds; a lookup, a hash of the certificate's last
/// bytes and one comparison).
pub(crate) struct IdentityCache {
    entries: Mutex<Entries>,
    plaintext: Arc<PeerIdentity>,
    no_certificate: Arc<PeerIdentity>,
}

/// By a hash of the certificate's tail: the certificates with that hash and their holders.
type Entries = HashMap<u64, Vec<(Box<[u8]>, Arc<PeerIdentity>)>>;

/// Certificates remembered at most; past that the cache starts over.
const CACHED_CERTIFICATES: usize = 4096;

impl IdentityCache {
    pub(crate) fn new() -> Self {
        IdentityCache {
            entries: Mutex::default(),
            plaintext: Arc::new(PeerIdentity::plaintext()),
            no_certificate: Arc::new(PeerIdentity::tls(None)),
        }
    }

    /// A peer on a plaintext connection.
    pub(crate) fn plaintext(&self) -> Arc<PeerIdentity> {
        self.plaintext.clone()
    }

    /// [`principals_from_auth_context`], remembered.
    #[cfg(tls)]
    pub(crate) fn lookup(&self, auth: &grpcio::AuthContext) -> Arc<PeerIdentity> {
        match peer_certificate(auth) {
            None => self.plaintext.clone(),
            Some(None) => self.no_certificate.clone(),
            Some(Some(pem)) => self.lookup_pem(pem),
        }
    }

    /// The identity of a TLS peer that presented the PEM certificate `pem`.
    pub(crate) fn lookup_pem(&self, pem: &[u8]) -> Arc<PeerIdentity> {
        // A PEM certificate ends with its signature: its last bytes tell certificates apart.
        let tail = &pem[pem.len().saturating_sub(64)..];
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (pem.len(), tail).hash(&mut hasher);
        let key = hasher.finish();
        let entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, identity)) = entries.get(&key).and_then(|list| list.iter().find(|(cert, _)| **cert == *pem)) {
            return identity.clone();
        }
        drop(entries);
        let identity = Arc::new(PeerIdentity::tls(pem_to_der(pem).as_deref()));
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if entries.len() >= CACHED_CERTIFICATES {
            entries.clear();
        }
        entries.entry(key).or_default().push((pem.into(), identity.clone()));
        identity
    }
}

impl Default for IdentityCache {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(attributes: &[(&str, &str)]) -> String {
        let owned: Vec<(String, String)> = attributes.iter().map(|(o, v)| (o.to_string(), v.to_string())).collect();
        go_name_string(&owned)
    }

    #[test]
    fn the_subject_is_written_as_go_writes_it() {
        // Named attributes in Go's order whatever the certificate's, the last RDN first.
        assert_eq!(subject(&[("2.5.4.3", "svc"), ("2.5.4.10", "Acme"), ("2.5.4.6", "NL")]), "CN=svc,O=Acme,C=NL");
        // Several values of one type: one multi-valued RDN; CN: the last one.
        assert_eq!(
            subject(&[("2.5.4.11", "a"), ("2.5.4.11", "b"), ("2.5.4.3", "x"), ("2.5.4.3", "y")]),
            "CN=y,OU=a+OU=b"
        );
        // Escaping.
        assert_eq!(subject(&[("2.5.4.3", " a,b+c#\"d\\ ")]), "CN=\\ a\\,b\\+c#\\\"d\\\\\\ ");
        assert_eq!(subject(&[("2.5.4.3", "#x")]), "CN=\\#x");
        // Attributes Go has no name for: OID=#DER, written last, in reverse certificate order.
        assert_eq!(
            subject(&[("1.2.840.113549.1.9.1", "a@b"), ("2.5.4.3", "svc"), ("0.9.2342.19200300.100.1.25", "org")]),
            "CN=svc,0.9.2342.19200300.100.1.25=#13036f7267,1.2.840.113549.1.9.1=#0c03614062"
        );
        assert_eq!(subject(&[]), "");
    }

    #[test]
    fn spiffe_ids_by_grpc_gos_rules() {
        let names = |uris: &[&str]| CertNames {
            uris: uris.iter().map(|u| u.to_string()).collect(),
            dns: vec![],
            subject: String::new(),
        };
        assert_eq!(names(&["spiffe://td/ns/a"]).spiffe_id().as_deref(), Some("spiffe://td/ns/a"));
        assert_eq!(names(&["spiffe://td/ns/a", "https://x/y"]).spiffe_id(), None);
        assert_eq!(names(&["spiffe://td"]).spiffe_id(), None);
        assert_eq!(names(&["https://td/a"]).spiffe_id(), None);
        assert_eq!(lowercase_scheme("SPIFFE://TD/A"), "spiffe://TD/A");
    }

    #[test]
    fn the_cache_parses_a_certificate_once() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["a.example".to_owned()]).unwrap();
        let first = params.clone().self_signed(&key).unwrap().pem();
        params.subject_alt_names = vec![rcgen::SanType::DnsName("b.example".try_into().unwrap())];
        let second = params.self_signed(&key).unwrap().pem();
        let cache = IdentityCache::new();
        let a = cache.lookup_pem(first.as_bytes());
        assert_eq!(a.names, ["a.example"]);
        assert!(Arc::ptr_eq(&a, &cache.lookup_pem(first.as_bytes())), "parsed again");
        assert_eq!(cache.lookup_pem(second.as_bytes()).names, ["b.example"]);
    }

    #[test]
    fn names_come_from_the_first_kind_the_certificate_has() {
        let names = |uris: Vec<&str>, dns: Vec<&str>| {
            CertNames {
                uris: uris.into_iter().map(String::from).collect(),
                dns: dns.into_iter().map(String::from).collect(),
                subject: "CN=s".into(),
            }
            .principal_names()
        };
        assert_eq!(names(vec!["spiffe://td/a"], vec!["d"]), ["spiffe://td/a"]);
        assert_eq!(names(vec![], vec!["d", "e"]), ["d", "e"]);
        assert_eq!(names(vec![], vec![]), ["CN=s"]);
    }
}
