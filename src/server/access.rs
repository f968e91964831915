//! The server's gate ([`Gate`], built of the authorization layer's parts): for every call, before its request is decoded, who is
//! calling — its TLS peer's names, its verified bearer token — found once, and whether the
//! policies in force let it call this method.
//!
//! A token that is there but wrong (expired, another issuer, a bad signature, …) ends the
//! call UNAUTHENTICATED whatever the policies say; a call without a token is refused so only
//! when tokens are required. A call a policy denies ends PERMISSION_DENIED with grpc-go's
//! message. Either way the caller is told why in words, never shown a token, and no handler
//! runs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use grpcio::{RpcContext, RpcStatus, RpcStatusCode};

use crate::authz::check::{Authorizer, AuthzSettings, Call, DENIED_MESSAGE};
use crate::authz::identity::{IdentityCache, PeerIdentity};
use crate::authz::jwt::{bearer_token, JwtKeys, JwtSettings, JwtVerifier, TokenError};
use crate::authz::CONTENT_TYPE;
use crate::call::{Caller, Gate, Refusal, Verdict};
use crate::error::ServerError;

/// Who may call what (docs/security.md): gRFC A43 policies on the TLS peer and on bearer
/// tokens, and how tokens are checked. The default checks nothing and allows every call, but
/// still finds each caller's certificate identity for the traces and the access log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorization {
    /// A gRFC A43 policy file, the same file grpc-go's `authz.NewFileWatcher` reads: its
    /// principals are the TLS peer's names (URI SANs such as SPIFFE IDs, else DNS SANs, else
    /// the subject).
    pub policy: Option<PathBuf>,
    /// A policy file in the same format whose principals are the verified bearer token's
    /// `iss/sub` (this crate's: A43 has no request principals). A call must be allowed by
    /// every policy configured.
    pub token_policy: Option<PathBuf>,
    /// How often the policy files (and a JWKS file) are read again; a changed, valid file
    /// applies to the calls that follow, an invalid one is logged and counted and the one in
    /// force stays.
    pub refresh: Duration,
    /// Check bearer tokens (`authorization: Bearer <JWT>`) on every call.
    pub tokens: Option<TokenCheck>,
}

impl Default for Authorization {
    fn default() -> Self {
        Authorization { policy: None, token_policy: None, refresh: Duration::from_secs(10), tokens: None }
    }
}

/// How bearer tokens are checked: signed by one of `keys`, issued by `issuer` for
/// `audience`, within their `exp` and `nbf` (30 s of clock skew allowed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenCheck {
    pub issuer: String,
    pub audience: String,
    pub keys: TokenKeys,
    /// A call without a token is refused (UNAUTHENTICATED); otherwise it goes on with no
    /// token principal, for the token policy to judge.
    pub required: bool,
}

/// Where the keys that verify tokens are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenKeys {
    /// A JWKS file (`{"keys": [...]}`), read again every `refresh`.
    Jwks(PathBuf),
    /// PEM public keys (RSA, EC P-256/P-384, Ed25519), read once.
    Pem(Vec<PathBuf>),
}

/// The gate the server installs.
pub(crate) struct AccessGate {
    identities: IdentityCache,
    tokens: Option<(JwtVerifier, bool)>,
    authorizer: Option<Authorizer>,
}

impl AccessGate {
    /// Loads the policies and keys `settings` names (an invalid file is an error that names
    /// it, its rule and where possible its line) and starts watching them.
    pub(crate) fn start(settings: &Authorization) -> Result<Self, ServerError> {
        let authorizer = Authorizer::start(&AuthzSettings {
            peer_policy: settings.policy.clone(),
            token_policy: settings.token_policy.clone(),
            refresh: settings.refresh,
        })
        .map_err(|e| ServerError::Authorization(e.to_string()))?;
        let tokens = match &settings.tokens {
            Some(check) => {
                let keys = match &check.keys {
                    TokenKeys::Jwks(path) => JwtKeys::Jwks { path: path.clone(), refresh: settings.refresh },
                    TokenKeys::Pem(paths) => JwtKeys::Pem(paths.clone()),
                };
                let jwt = JwtSettings { issuer: check.issuer.clone(), audience: check.audience.clone(), keys };
                Some((JwtVerifier::start(&jwt).map_err(|e| ServerError::Authorization(e.to_string()))?, check.required))
            }
            None => None,
        };
        Ok(AccessGate { identities: IdentityCache::new(), tokens, authorizer })
    }

    /// Invalid policy files found at a refresh so far (the one in force stayed).
    pub(crate) fn reload_failures(&self) -> impl Fn() -> u64 + Send + Sync + 'static {
        let counters: Vec<_> = self
            .authorizer
            .iter()
            .flat_map(|a| [a.peer_policy(), a.token_policy()])
            .flatten()
            .map(|watched| watched.failures_counter())
            .collect();
        move || counters.iter().map(|count| count()).sum()
    }

    /// Audit lines lost because stdout could not keep up.
    pub(crate) fn audit_lines_dropped(&self) -> impl Fn() -> u64 + Send + Sync + 'static {
        let counter = self.authorizer.as_ref().map(Authorizer::audit_lines_dropped_counter);
        move || counter.as_ref().map_or(0, |count| count())
    }

    /// The TLS peer of the call in `ctx`.
    fn peer(&self, ctx: &RpcContext) -> Arc<PeerIdentity> {
        #[cfg(tls)]
        if let Some(auth) = ctx.auth_context() {
            return self.identities.lookup(&auth);
        }
        let _ = ctx;
        self.identities.plaintext()
    }
}

impl Gate for AccessGate {
    fn check(&self, ctx: &RpcContext) -> Verdict {
        let peer = self.peer(ctx);
        let mut caller = Caller { peer: peer.names.first().cloned(), token: None };
        let mut headers: Vec<(&str, &[u8])> = ctx.request_headers().iter().collect();
        headers.push(CONTENT_TYPE);
        let token = match &self.tokens {
            None => None,
            Some((verifier, required)) => match bearer_token(&headers).and_then(|t| verifier.verify(t)) {
                Ok(principal) => {
                    caller.token = Some(principal.name().to_owned());
                    Some(principal)
                }
                Err(TokenError::Missing) if !required => None,
                Err(e) => {
                    let status = RpcStatus::with_message(RpcStatusCode::UNAUTHENTICATED, e.to_string());
                    return Verdict { caller, refusal: Some(Refusal { status, reason: e.reason(), rule: None }) };
                }
            },
        };
        if let Some(authorizer) = &self.authorizer {
            let path = std::str::from_utf8(ctx.method()).unwrap_or("");
            let call = Call { path, headers: &headers, peer: &peer, token: token.as_ref() };
            if let Err(denial) = authorizer.check(&call) {
                let rule = format!("{}/{}", denial.policy, denial.rule.as_deref().unwrap_or("(no allow rule matched)"));
                let status = RpcStatus::with_message(RpcStatusCode::PERMISSION_DENIED, DENIED_MESSAGE.to_owned());
                return Verdict { caller, refusal: Some(Refusal { status, reason: "policy", rule: Some(rule) }) };
            }
        }
        Verdict { caller, refusal: None }
    }
}
