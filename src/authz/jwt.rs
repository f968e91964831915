//! Bearer tokens: `authorization: Bearer <JWT>`, verified with the `jsonwebtoken` crate
//! against public keys from a JWKS file (reloaded when it changes, like a policy file) or PEM
//! files. A verified token names its caller: the request principal `<iss>/<sub>`, which a
//! token policy's `source.principals` match (as Istio's `requestPrincipals`).
//!
//! What a token must be:
//! - signed with an asymmetric algorithm its key allows: a JWK's own `alg` when it has one,
//!   else its type's (RS*/PS* for RSA, ES256 for P-256, ES384 for P-384, EdDSA for
//!   Ed25519); HMAC and `none` never;
//! - signed by a key of the set: the one its `kid` names; without a `kid`, the only key;
//! - `iss` the configured issuer, `aud` (one of) the configured audience, `sub` present;
//! - `exp` present and not past, `nbf` (if present) not ahead, each with [`LEEWAY_SECS`].
//!
//! Every failure has its own [`TokenError`] variant, with a message for the caller and the
//! logs that never contains the token.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, Validation};

use super::watch::{Load, WatchError, Watched};
use super::Principals;

/// Clock skew allowed on `exp` and `nbf`, in seconds. Hosts kept by NTP agree to well under a
/// second; 30 s also absorbs a VM resumed from a pause or a clock stepped late, while an
/// expired token stays usable for at most half a minute more. (Envoy's and Istio's default is
/// 60 s; jsonwebtoken's too.)
pub(crate) const LEEWAY_SECS: u64 = 30;

/// What a server trusts tokens from.
#[derive(Clone, Debug)]
pub(crate) struct JwtSettings {
    /// The `iss` every token must carry.
    pub(crate) issuer: String,
    /// The `aud` every token must carry (or include): this service's name for its callers.
    pub(crate) audience: String,
    pub(crate) keys: JwtKeys,
}

/// Where the verification keys are.
#[derive(Clone, Debug)]
pub(crate) enum JwtKeys {
    /// A JWKS file (`{"keys": [...]}`), read again every `refresh` and reloaded when changed.
    Jwks { path: PathBuf, refresh: Duration },
    /// PEM public keys (`-----BEGIN PUBLIC KEY-----`, RSA, EC or Ed25519), read once.
    Pem(Vec<PathBuf>),
}

/// The verifier could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JwtSetupError {
    #[error(transparent)]
    Jwks(#[from] WatchError),
    #[error("cannot read the JWT key {}: {source}", path.display())]
    PemRead { path: PathBuf, source: std::io::Error },
    #[error("the JWT key {} is not an RSA, EC (P-256, P-384) or Ed25519 public key in PEM", path.display())]
    PemKey { path: PathBuf },
    #[error("no JWT key given: name a JWKS file or at least one PEM public key")]
    NoKeys,
    #[error("the JWT {0} is empty: every token is checked against it, so it must be set")]
    Empty(&'static str),
}

/// Why a call's bearer token was not accepted. No message contains the token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TokenError {
    #[error("no bearer token: send the metadata `authorization: Bearer <JWT>`")]
    Missing,
    #[error("the bearer token is malformed: {0}")]
    Malformed(String),
    #[error("the bearer token expired at {exp} ({LEEWAY_SECS} s of clock skew allowed)")]
    Expired { exp: String },
    #[error("the bearer token is not valid before {nbf} ({LEEWAY_SECS} s of clock skew allowed)")]
    NotYetValid { nbf: String },
    #[error("the bearer token's issuer {found} is not the one this server trusts, {expected:?}")]
    WrongIssuer { found: String, expected: String },
    #[error("the bearer token's audience {found} does not include this server's, {expected:?}")]
    WrongAudience { found: String, expected: String },
    #[error("the bearer token's signature does not verify with {key}")]
    BadSignature { key: String },
    #[error("{}", match kid {
        Some(kid) => format!("the bearer token names the key {kid}, which is not among the keys this server trusts"),
        None => format!("the bearer token names no key (\"kid\") of the {keys} this server trusts"),
    })]
    UnknownKey { kid: Option<String>, keys: usize },
    #[error("the bearer token is signed with {alg}, which {why}")]
    DisallowedAlgorithm { alg: String, why: String },
}

impl TokenError {
    /// A short label, for metrics.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            TokenError::Missing => "missing",
            TokenError::Malformed(_) => "malformed",
            TokenError::Expired { .. } => "expired",
            TokenError::NotYetValid { .. } => "not_yet_valid",
            TokenError::WrongIssuer { .. } => "wrong_issuer",
            TokenError::WrongAudience { .. } => "wrong_audience",
            TokenError::BadSignature { .. } => "bad_signature",
            TokenError::UnknownKey { .. } => "unknown_key",
            TokenError::DisallowedAlgorithm { .. } => "disallowed_algorithm",
        }
    }
}

/// A verified token's caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RequestPrincipal {
    /// `<iss>/<sub>`.
    name: String,
}

impl RequestPrincipal {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// As a token policy matches it.
    pub(crate) fn principals(&self) -> Principals<'_> {
        Principals::authenticated(std::slice::from_ref(&self.name))
    }
}

#[cfg(test)]
impl RequestPrincipal {
    pub(crate) fn for_tests(name: &str) -> Self {
        RequestPrincipal { name: name.to_owned() }
    }
}

/// The token of `authorization: Bearer <token>` among a call's metadata. The scheme's case
/// does not matter (RFC 7235); a second `authorization` is malformed.
pub(crate) fn bearer_token<'a>(headers: &[(&str, &'a [u8])]) -> Result<&'a str, TokenError> {
    let mut values = headers.iter().filter(|(key, _)| *key == "authorization").map(|(_, value)| *value);
    let value = values.next().ok_or(TokenError::Missing)?;
    if values.next().is_some() {
        return Err(TokenError::Malformed("the call has more than one `authorization` header".into()));
    }
    let not_bearer = || TokenError::Malformed("the `authorization` header is not `Bearer <JWT>`".into());
    let (scheme, token) = value.split_at_checked(7).ok_or_else(not_bearer)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return Err(not_bearer());
    }
    let token = std::str::from_utf8(token).ok().map(str::trim).filter(|t| !t.is_empty()).ok_or_else(not_bearer)?;
    if !token.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'=')) {
        return Err(TokenError::Malformed("it has characters a JWT never has (JWTs are base64url and dots)".into()));
    }
    Ok(token)
}

/// One verification key.
struct Key {
    kid: Option<String>,
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
    /// For messages: `key "kid"`, `the PEM key file.pem`.
    label: String,
}

/// The keys tokens are verified with.
pub(crate) struct KeySet {
    keys: Vec<Key>,
    warnings: Vec<String>,
}

/// Asymmetric algorithms only: a token signed with a shared secret, or unsigned, is refused
/// before any key is looked at.
const ASYMMETRIC: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];
const RSA: &[Algorithm] =
    &[Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::PS384, Algorithm::PS512];

impl Load for KeySet {
    const WHAT: &'static str = "JWKS";
    type Error = String;

    /// A JWKS document. Keys that cannot verify signatures (encryption keys, shared secrets,
    /// unsupported types or curves) are skipped with a warning; a set with none left is
    /// an error.
    fn load(text: &str) -> Result<Self, String> {
        #[derive(serde::Deserialize)]
        struct Document {
            keys: Vec<serde_json::Value>,
        }
        let document: Document = serde_json::from_str(text).map_err(|e| format!("not a JWKS document ({e})"))?;
        let mut set = KeySet { keys: Vec::new(), warnings: Vec::new() };
        for (i, value) in document.keys.into_iter().enumerate() {
            match jwk_key(value) {
                Ok(key) => set.keys.push(key),
                Err(why) => set.warnings.push(format!("keys[{i}] is skipped: {why}")),
            }
        }
        if set.keys.is_empty() {
            let why = set.warnings.join("; ");
            return Err(format!(
                "it has no key tokens can be verified with{}",
                if why.is_empty() { why } else { format!(": {why}") }
            ));
        }
        Ok(set)
    }

    fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

fn jwk_key(value: serde_json::Value) -> Result<Key, String> {
    let jwk: Jwk = serde_json::from_value(value).map_err(|e| format!("not a JWK ({e})"))?;
    let kid = jwk.common.key_id.clone();
    let label = match &kid {
        Some(kid) => format!("key {kid:?}"),
        None => "the key without a kid".to_owned(),
    };
    if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
        return Err(format!("{label} is for encryption (\"use\": \"enc\")"));
    }
    let of_type: &[Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => RSA,
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => &[Algorithm::ES256],
            EllipticCurve::P384 => &[Algorithm::ES384],
            _ => return Err(format!("{label} is on a curve tokens are not verified with ({:?})", ec.curve)),
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => &[Algorithm::EdDSA],
        AlgorithmParameters::OctetKey(_) => return Err(format!("{label} is a shared secret (\"kty\": \"oct\")")),
        _ => return Err(format!("{label} is of a type tokens are not verified with")),
    };
    let algorithms = match jwk.common.key_algorithm {
        None => of_type.to_vec(),
        Some(alg) => match Algorithm::try_from(alg) {
            Ok(alg) if of_type.contains(&alg) => vec![alg],
            _ => return Err(format!("{label} names the algorithm {alg:?}, which does not fit its key type")),
        },
    };
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("{label} is not a valid key ({e})"))?;
    Ok(Key { kid, key, algorithms, label })
}

fn pem_key(path: &Path) -> Result<Key, JwtSetupError> {
    let pem = std::fs::read(path).map_err(|source| JwtSetupError::PemRead { path: path.to_owned(), source })?;
    let label = format!("the PEM key {}", path.display());
    let (key, algorithms) = if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
        (key, RSA.to_vec())
    } else if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
        // The key is the curve's uncompressed point: 0x04, then X and Y.
        let algorithm = match key.kind() {
            DecodingKeyKind::SecretOrDer(point) if point.len() == 65 => Algorithm::ES256,
            DecodingKeyKind::SecretOrDer(point) if point.len() == 97 => Algorithm::ES384,
            _ => return Err(JwtSetupError::PemKey { path: path.to_owned() }),
        };
        (key, vec![algorithm])
    } else if let Ok(key) = DecodingKey::from_ed_pem(&pem) {
        (key, vec![Algorithm::EdDSA])
    } else {
        return Err(JwtSetupError::PemKey { path: path.to_owned() });
    };
    Ok(Key { kid: None, key, algorithms, label })
}

/// Verifies bearer tokens.
pub(crate) struct JwtVerifier {
    issuer: String,
    audience: String,
    keys: Keys,
    /// One per algorithm: jsonwebtoken wants every algorithm of a `Validation` to be of the
    /// key's family.
    validations: Vec<(Algorithm, Validation)>,
    verified: VerifiedTokens,
}

/// Tokens verified lately. A client sends the same token on every call until it nears its
/// expiry, and checking a signature costs from a hundred microseconds (EdDSA) to a
/// millisecond (ES256): a token seen before is looked up instead, while its `exp` and `nbf`
/// still hold and the keys have not been reloaded since.
struct VerifiedTokens {
    entries: Mutex<HashMap<u64, Verified>>,
    hasher: RandomState,
}

struct Verified {
    token: Box<str>,
    principal: RequestPrincipal,
    exp: u64,
    nbf: u64,
    /// The key set's generation it was verified with.
    keys: u64,
}

/// Tokens remembered at most; past that the cache starts over.
const VERIFIED_TOKENS: usize = 1024;

impl VerifiedTokens {
    /// A token ends with its signature: its last bytes tell tokens apart.
    fn slot(&self, token: &str) -> u64 {
        let tail = &token.as_bytes()[token.len().saturating_sub(64)..];
        self.hasher.hash_one((token.len(), tail))
    }

    fn get(&self, token: &str, keys: u64, now: u64) -> Option<RequestPrincipal> {
        let entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let hit = entries.get(&self.slot(token))?;
        let valid = *hit.token == *token
            && hit.keys == keys
            && now <= hit.exp.saturating_add(LEEWAY_SECS)
            && hit.nbf <= now.saturating_add(LEEWAY_SECS);
        valid.then(|| hit.principal.clone())
    }

    fn insert(&self, token: &str, verified: Verified) {
        let slot = self.slot(token);
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if entries.len() >= VERIFIED_TOKENS {
            entries.clear();
        }
        entries.insert(slot, verified);
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

enum Keys {
    Jwks(Watched<KeySet>),
    Pem(Arc<KeySet>),
}

/// The claims the request principal is made of. Any JSON here, so that a claim of the wrong
/// type is reported as such, after the signature and the times are checked.
#[derive(serde::Deserialize)]
struct Claims {
    sub: Option<serde_json::Value>,
    iss: Option<serde_json::Value>,
    exp: Option<serde_json::Value>,
    nbf: Option<serde_json::Value>,
}

impl JwtVerifier {
    /// Loads the keys (and starts watching a JWKS file).
    pub(crate) fn start(settings: &JwtSettings) -> Result<Self, JwtSetupError> {
        if settings.issuer.is_empty() {
            return Err(JwtSetupError::Empty("issuer"));
        }
        if settings.audience.is_empty() {
            return Err(JwtSetupError::Empty("audience"));
        }
        let keys = match &settings.keys {
            JwtKeys::Jwks { path, refresh } => Keys::Jwks(Watched::start(path, *refresh)?),
            JwtKeys::Pem(paths) if paths.is_empty() => return Err(JwtSetupError::NoKeys),
            JwtKeys::Pem(paths) => Keys::Pem(Arc::new(KeySet {
                keys: paths.iter().map(|path| pem_key(path)).collect::<Result<_, _>>()?,
                warnings: Vec::new(),
            })),
        };
        let validation = |alg: Algorithm| {
            let mut validation = Validation::new(alg);
            validation.leeway = LEEWAY_SECS;
            validation.validate_exp = true;
            validation.validate_nbf = true;
            validation.validate_aud = true;
            validation.set_issuer(&[&settings.issuer]);
            validation.set_audience(&[&settings.audience]);
            validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            (alg, validation)
        };
        let validations = ASYMMETRIC.iter().map(|&alg| validation(alg)).collect();
        let verified = VerifiedTokens { entries: Mutex::default(), hasher: RandomState::new() };
        Ok(JwtVerifier {
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            keys,
            validations,
            verified,
        })
    }

    /// The JWKS file being watched, if keys come from one: its reload counters.
    #[allow(dead_code)] // used by tests/authz.rs and examples/authz_bench.rs, which include this module
    pub(crate) fn jwks(&self) -> Option<&Watched<KeySet>> {
        match &self.keys {
            Keys::Jwks(watched) => Some(watched),
            Keys::Pem(_) => None,
        }
    }

    /// Verifies `token` (without its `Bearer ` prefix) and names its caller; a token verified
    /// before with the same keys is looked up, its times checked again.
    pub(crate) fn verify(&self, token: &str) -> Result<RequestPrincipal, TokenError> {
        let keys = match &self.keys {
            Keys::Jwks(watched) => watched.reloads(),
            Keys::Pem(_) => 0,
        };
        if let Some(principal) = self.verified.get(token, keys, unix_now()) {
            return Ok(principal);
        }
        let (principal, claims) = self.check(token)?;
        let time = |claim: &Option<serde_json::Value>| claim.as_ref().and_then(serde_json::Value::as_f64);
        let (exp, nbf) = (time(&claims.exp).unwrap_or(0.0) as u64, time(&claims.nbf).unwrap_or(0.0) as u64);
        let verified = Verified { token: token.into(), principal: principal.clone(), exp, nbf, keys };
        self.verified.insert(token, verified);
        Ok(principal)
    }

    /// [`Self::verify`] without the cache: the signature is checked every time.
    #[allow(dead_code)] // used by tests/authz.rs and examples/authz_bench.rs, which include this module
    pub(crate) fn verify_uncached(&self, token: &str) -> Result<RequestPrincipal, TokenError> {
        self.check(token).map(|(principal, _)| principal)
    }

    fn check(&self, token: &str) -> Result<(RequestPrincipal, Claims), TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            ErrorKind::InvalidAlgorithmName | ErrorKind::Json(_) => TokenError::Malformed(
                "its header is not a JWT header with a supported \"alg\" (RS*, PS*, ES256, ES384, EdDSA)".into(),
            ),
            _ => TokenError::Malformed("it is not three base64url parts of JSON separated by dots".into()),
        })?;
        let alg = header.alg;
        if !ASYMMETRIC.contains(&alg) {
            return Err(TokenError::DisallowedAlgorithm {
                alg: format!("{alg:?}"),
                why: "is a shared-secret algorithm: only public-key signatures are accepted".into(),
            });
        }
        let set = match &self.keys {
            Keys::Jwks(watched) => watched.current(),
            Keys::Pem(set) => set.clone(),
        };
        let named = |key: &&Key| match (&header.kid, &key.kid) {
            (Some(wanted), Some(kid)) => wanted == kid,
            _ => true,
        };
        let mut candidates: Vec<&Key> = set.keys.iter().filter(named).collect();
        let with_kids = candidates.iter().filter(|k| k.kid.is_some()).count();
        if candidates.is_empty() || (header.kid.is_none() && with_kids > 1) {
            let kid = header.kid.as_deref().map(|kid| short(&format!("{kid:?}")));
            return Err(TokenError::UnknownKey { kid, keys: set.keys.len() });
        }
        let unfit = candidates.clone();
        candidates.retain(|key| key.algorithms.contains(&alg));
        if candidates.is_empty() {
            let allowed: Vec<String> = unfit.iter().map(|k| format!("{} allows {:?}", k.label, k.algorithms)).collect();
            return Err(TokenError::DisallowedAlgorithm { alg: format!("{alg:?}"), why: allowed.join("; ") });
        }
        let validation = match self.validations.iter().find(|(a, _)| *a == alg) {
            Some((_, validation)) => validation,
            None => unreachable!("every asymmetric algorithm has its validation"),
        };
        let mut last = None;
        for key in candidates {
            match jsonwebtoken::decode::<Claims>(token, &key.key, validation) {
                Ok(data) => {
                    let text =
                        |claim: &Option<serde_json::Value>| claim.as_ref().and_then(|v| v.as_str().map(str::to_owned));
                    let (Some(iss), Some(sub)) = (text(&data.claims.iss), text(&data.claims.sub)) else {
                        return Err(TokenError::Malformed("its \"iss\" or \"sub\" is not a string".into()));
                    };
                    return Ok((RequestPrincipal { name: format!("{iss}/{sub}") }, data.claims));
                }
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => last = Some(key.label.clone()),
                Err(e) => return Err(self.explain(token, e.into_kind(), &key.label)),
            }
        }
        Err(TokenError::BadSignature { key: last.unwrap_or_default() })
    }

    /// A failed check, said with what the token claimed (never the token itself).
    fn explain(&self, token: &str, kind: ErrorKind, key: &str) -> TokenError {
        let claims = jsonwebtoken::dangerous::insecure_decode_claims::<serde_json::Value>(token).ok();
        let claim = |name: &str| claims.as_ref().and_then(|c| c.get(name)).cloned();
        let time = |name: &str| {
            claim(name)
                .and_then(|v| v.as_u64())
                .map(|secs| super::audit::rfc3339_utc(UNIX_EPOCH + Duration::from_secs(secs)))
        };
        let shown = |name: &str| claim(name).map(|v| short(&v.to_string())).unwrap_or_else(|| "(none)".into());
        match kind {
            ErrorKind::ExpiredSignature => TokenError::Expired { exp: time("exp").unwrap_or_default() },
            ErrorKind::ImmatureSignature => TokenError::NotYetValid { nbf: time("nbf").unwrap_or_default() },
            ErrorKind::InvalidIssuer => TokenError::WrongIssuer { found: shown("iss"), expected: self.issuer.clone() },
            ErrorKind::InvalidAudience => {
                TokenError::WrongAudience { found: shown("aud"), expected: self.audience.clone() }
            }
            ErrorKind::MissingRequiredClaim(claim) => TokenError::Malformed(format!("it has no \"{claim}\" claim")),
            ErrorKind::InvalidClaimFormat(claim) => {
                TokenError::Malformed(format!("its \"{claim}\" claim has the wrong type"))
            }
            ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
                TokenError::Malformed("its parts are not base64url-encoded JSON".into())
            }
            ErrorKind::InvalidAlgorithm => {
                TokenError::DisallowedAlgorithm { alg: "an algorithm".into(), why: format!("{key} does not allow") }
            }
            _ => TokenError::BadSignature { key: key.to_owned() },
        }
    }
}

/// A claim's JSON as shown in a message: at most 100 characters.
fn short(json: &str) -> String {
    match json.char_indices().nth(100) {
        Some((cut, _)) => format!("{}…", &json[..cut]),
        None => json.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use jsonwebtoken::{encode, EncodingKey, Header};

    use super::*;

    const ISSUER: &str = "https://issuer.example";
    const AUDIENCE: &str = "greeter";

    /// An Ed25519 key pair made for the test: (private PKCS#8 PEM, public SPKI PEM).
    fn ed25519() -> (String, String) {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        (pair.serialize_pem(), pair.public_key_pem())
    }

    fn now() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
    }

    fn token(private_pem: &str, kid: Option<&str>, claims: serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = kid.map(str::to_owned);
        encode(&header, &claims, &EncodingKey::from_ed_pem(private_pem.as_bytes()).unwrap()).unwrap()
    }

    fn claims() -> serde_json::Value {
        serde_json::json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "billing", "exp": now() + 600})
    }

    fn verifier(dir: &Path, public_pems: &[&str]) -> JwtVerifier {
        let paths: Vec<PathBuf> = public_pems
            .iter()
            .enumerate()
            .map(|(i, pem)| {
                let path = dir.join(format!("key{i}.pem"));
                std::fs::write(&path, pem).unwrap();
                path
            })
            .collect();
        JwtVerifier::start(&JwtSettings { issuer: ISSUER.into(), audience: AUDIENCE.into(), keys: JwtKeys::Pem(paths) })
            .unwrap()
    }

    #[test]
    fn a_valid_token_names_iss_slash_sub() {
        let dir = tempfile::tempdir().unwrap();
        let (private, public) = ed25519();
        let verifier = verifier(dir.path(), &[&public]);
        let principal = verifier.verify(&token(&private, None, claims())).unwrap();
        assert_eq!(principal.name(), "https://issuer.example/billing");
        assert!(principal.principals().authenticated);
    }

    #[test]
    fn every_bad_token_has_its_reason_and_no_message_shows_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let (private, public) = ed25519();
        let (other_private, _) = ed25519();
        let verifier = verifier(dir.path(), &[&public]);
        let with = |change: &dyn Fn(&mut serde_json::Value)| {
            let mut claims = claims();
            change(&mut claims);
            token(&private, None, claims)
        };
        let cases = [
            ("malformed", "not.a.jwt".to_owned()),
            ("expired", with(&|c| c["exp"] = (now() - 3600).into())),
            ("not_yet_valid", with(&|c| c["nbf"] = (now() + 3600).into())),
            ("wrong_issuer", with(&|c| c["iss"] = "https://elsewhere.example".into())),
            ("wrong_audience", with(&|c| c["aud"] = "someone-else".into())),
            ("malformed", with(&|c| drop(c.as_object_mut().unwrap().remove("sub")))),
            ("malformed", with(&|c| drop(c.as_object_mut().unwrap().remove("exp")))),
            ("bad_signature", token(&other_private, None, claims())),
        ];
        for (reason, token) in cases {
            let err = verifier.verify(&token).unwrap_err();
            assert_eq!(err.reason(), reason, "{err}");
            let message = err.to_string();
            for part in token.split('.').filter(|p| p.len() > 8) {
                assert!(!message.contains(part), "{message} shows the token");
            }
        }
        // Within the leeway, a just-expired token still passes.
        verifier.verify(&with(&|c| c["exp"] = (now() - LEEWAY_SECS / 2).into())).unwrap();
    }

    #[test]
    fn a_token_verified_before_is_looked_up_until_it_expires() {
        let dir = tempfile::tempdir().unwrap();
        let (private, public) = ed25519();
        let verifier = verifier(dir.path(), &[&public]);
        let fresh = token(&private, None, claims());
        assert_eq!(verifier.verify(&fresh), verifier.verify_uncached(&fresh));
        assert_eq!(verifier.verify(&fresh).unwrap().name(), "https://issuer.example/billing");
        // Looked up while its exp holds; checked again once it is past (and the leeway).
        let slot = verifier.verified.slot(&fresh);
        let remembered = |exp: u64| {
            let mut entries = verifier.verified.entries.lock().unwrap();
            let entry = entries.get_mut(&slot).unwrap();
            entry.principal = RequestPrincipal::for_tests("from the cache");
            entry.exp = exp;
        };
        remembered(now() + 600);
        assert_eq!(verifier.verify(&fresh).unwrap().name(), "from the cache");
        remembered(now() - LEEWAY_SECS - 1);
        assert_eq!(verifier.verify(&fresh).unwrap().name(), "https://issuer.example/billing");
        // Another token with the same tail is not mistaken for it.
        let forged = format!("x{}", &fresh[1..]);
        assert_eq!(verifier.verify(&forged).unwrap_err().reason(), "malformed");
    }

    #[test]
    fn shared_secret_tokens_are_refused_before_any_key_is_tried() {
        let dir = tempfile::tempdir().unwrap();
        let (_, public) = ed25519();
        let verifier = verifier(dir.path(), &[&public]);
        // HS256 with the public key's PEM as the secret: the classic key-confusion attack.
        let forged =
            encode(&Header::new(Algorithm::HS256), &claims(), &EncodingKey::from_secret(public.as_bytes()).unwrap())
                .unwrap();
        assert_eq!(verifier.verify(&forged).unwrap_err().reason(), "disallowed_algorithm");
        // alg "none" (the header `{"alg":"none"}`), no signature: the payload of a good token.
        let private = ed25519().0;
        let payload = token(&private, None, claims()).split('.').nth(1).unwrap().to_owned();
        let unsigned = format!("eyJhbGciOiJub25lIn0.{payload}.");
        assert_eq!(verifier.verify(&unsigned).unwrap_err().reason(), "malformed");
    }

    #[test]
    fn the_bearer_header_is_read_strictly() {
        let ok: &[(&str, &[u8])] = &[("authorization", b"bearer abc.def.ghi")];
        assert_eq!(bearer_token(ok), Ok("abc.def.ghi"));
        assert_eq!(bearer_token(&[]), Err(TokenError::Missing));
        let two: &[(&str, &[u8])] = &[("authorization", b"Bearer a.b.c"), ("authorization", b"Bearer d.e.f")];
        assert_eq!(bearer_token(two).unwrap_err().reason(), "malformed");
        for bad in [&b"Basic dXNlcjpwYXNz"[..], b"Bearer", b"Bearer   ", b"Bearer a b", b"Bearer\xff"] {
            let err = bearer_token(&[("authorization", bad)]).unwrap_err();
            assert_eq!(err.reason(), "malformed", "{bad:?}");
            assert!(!err.to_string().contains("dXNlcjpwYXNz"));
        }
    }
}
