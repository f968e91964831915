//! One call through every configured policy: the peer policy (a gRFC A43 file whose principals
//! are the TLS peer's names, as in grpc-go) and the token policy (a file in the same format
//! whose principals are the bearer token's request principal `iss/sub`). A call must be
//! allowed by each policy that is configured; the first that denies it decides, and the rest
//! are not asked (as grpc-go's chain of RBAC engines stops at its first denial). Each policy
//! writes its own audit lines, as its `audit_logging_options` say.

use std::path::PathBuf;
use std::time::Duration;

use super::audit::{AuditEvent, AuditLog};
use super::identity::PeerIdentity;
use super::jwt::RequestPrincipal;
use super::policy::Policy;
use super::watch::{WatchError, Watched};
use super::{CallFacts, Principals};

/// The status message of a denied call: grpc-go's, word for word.
pub(crate) const DENIED_MESSAGE: &str = "authz: unauthorized RPC request rejected";

/// Which policies to enforce.
#[derive(Clone, Debug)]
pub(crate) struct AuthzSettings {
    /// The A43 policy on the TLS peer's identity (`--authz-policy`).
    pub(crate) peer_policy: Option<PathBuf>,
    /// The A43 policy on the token's request principal (`--authz-token-policy`).
    pub(crate) token_policy: Option<PathBuf>,
    /// How often the files are read again (`--authz-policy-refresh`).
    pub(crate) refresh: Duration,
}

/// The authorizer could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AuthzError {
    /// A policy file is unreadable or invalid; the message names the file, the rule and
    /// where possible the line and column.
    #[error(transparent)]
    Policy(#[from] WatchError),
    #[error("cannot start the audit log's writer thread: {0}")]
    AuditLog(std::io::Error),
}

/// The policies in force, and the stdout audit logger they share.
pub(crate) struct Authorizer {
    peer_policy: Option<Watched<Policy>>,
    token_policy: Option<Watched<Policy>>,
    audit: AuditLog,
}

/// What the check knows of one call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Call<'a> {
    /// `/package.Service/Method`.
    pub(crate) path: &'a str,
    /// The metadata, as [`CallFacts::headers`] describes it.
    pub(crate) headers: &'a [(&'a str, &'a [u8])],
    pub(crate) peer: &'a PeerIdentity,
    /// The verified bearer token's caller; `None` when the call carries no token.
    pub(crate) token: Option<&'a RequestPrincipal>,
}

/// Which policy denied a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PolicyKind {
    Peer,
    Token,
}

/// A denied call: for the access log, the span and the metrics (never for the caller, who
/// gets [`DENIED_MESSAGE`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Denial {
    pub(crate) by: PolicyKind,
    /// The policy's `name`.
    pub(crate) policy: String,
    /// The deny rule that matched; `None` when no allow rule did.
    pub(crate) rule: Option<String>,
}

impl Authorizer {
    /// Loads the policies (an error names the file, the line and the rule) and starts
    /// watching them; `None` when no policy is configured.
    pub(crate) fn start(settings: &AuthzSettings) -> Result<Option<Self>, AuthzError> {
        if settings.peer_policy.is_none() && settings.token_policy.is_none() {
            return Ok(None);
        }
        let watch = |path: &Option<PathBuf>| path.as_ref().map(|p| Watched::start(p, settings.refresh)).transpose();
        let peer_policy = watch(&settings.peer_policy)?;
        let token_policy = watch(&settings.token_policy)?;
        let audit = AuditLog::stdout().map_err(AuthzError::AuditLog)?;
        Ok(Some(Authorizer { peer_policy, token_policy, audit }))
    }

    /// Allowed, or which policy and rule denied the call.
    pub(crate) fn check(&self, call: &Call<'_>) -> Result<(), Denial> {
        if let Some(peer_policy) = &self.peer_policy {
            let audit_principal = call.peer.spiffe_id.as_deref().unwrap_or_default();
            self.check_one(call, &peer_policy.current(), call.peer.principals(), audit_principal, PolicyKind::Peer)?;
        }
        if let Some(token_policy) = &self.token_policy {
            let principals = call.token.map_or(Principals::UNAUTHENTICATED, RequestPrincipal::principals);
            let audit_principal = call.token.map(RequestPrincipal::name).unwrap_or_default();
            self.check_one(call, &token_policy.current(), principals, audit_principal, PolicyKind::Token)?;
        }
        Ok(())
    }

    fn check_one(
        &self,
        call: &Call<'_>,
        policy: &Policy,
        principals: Principals<'_>,
        audit_principal: &str,
        by: PolicyKind,
    ) -> Result<(), Denial> {
        let decision = policy.evaluate(&CallFacts { path: call.path, headers: call.headers, principals });
        if policy.audits(&decision) {
            self.audit.log(&AuditEvent {
                rpc_method: call.path,
                principal: audit_principal,
                policy_name: decision.policy(),
                matched_rule: &decision.matched_rule(),
                authorized: decision.is_allowed(),
            });
        }
        if decision.is_allowed() {
            return Ok(());
        }
        Err(Denial { by, policy: decision.policy().to_owned(), rule: decision.rule().map(str::to_owned) })
    }

    /// The watched peer policy, for its reload counters.
    pub(crate) fn peer_policy(&self) -> Option<&Watched<Policy>> {
        self.peer_policy.as_ref()
    }

    /// The watched token policy, for its reload counters.
    pub(crate) fn token_policy(&self) -> Option<&Watched<Policy>> {
        self.token_policy.as_ref()
    }

    /// Audit lines dropped because stdout could not keep up.
    #[allow(dead_code)] // used by tests/authz.rs and examples/authz_bench.rs, which include this module
    pub(crate) fn audit_lines_dropped(&self) -> u64 {
        self.audit.dropped()
    }

    /// [`Self::audit_lines_dropped`] for a metrics counter.
    pub(crate) fn audit_lines_dropped_counter(&self) -> impl Fn() -> u64 + Send + Sync + 'static {
        self.audit.dropped_counter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &std::path::Path, name: &str, json: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, json).unwrap();
        path
    }

    #[test]
    fn a_call_must_pass_every_configured_policy() {
        let dir = tempfile::tempdir().unwrap();
        let settings = AuthzSettings {
            peer_policy: Some(write(
                dir.path(),
                "peer.json",
                r#"{"name": "mesh", "allow_rules": [
                {"name": "billing", "source": {"principals": ["spiffe://example.org/billing"]}}]}"#,
            )),
            token_policy: Some(write(
                dir.path(),
                "token.json",
                r#"{"name": "users", "allow_rules": [
                {"name": "alice", "source": {"principals": ["https://issuer.example/alice"]}}]}"#,
            )),
            refresh: Duration::from_secs(60),
        };
        let authorizer = Authorizer::start(&settings).unwrap().unwrap();
        let billing = PeerIdentity::tls(None);
        let billing = PeerIdentity { names: vec!["spiffe://example.org/billing".into()], ..billing };
        let call = |peer, token| Call { path: "/greeter.Greeter/SayHello", headers: &[], peer, token };
        let alice = jwt_principal("https://issuer.example/alice");
        let bob = jwt_principal("https://issuer.example/bob");

        assert_eq!(authorizer.check(&call(&billing, Some(&alice))), Ok(()));
        let denial = authorizer.check(&call(&billing, Some(&bob))).unwrap_err();
        assert_eq!(denial, Denial { by: PolicyKind::Token, policy: "users".into(), rule: None });
        let denial = authorizer.check(&call(&billing, None)).unwrap_err();
        assert_eq!(denial.by, PolicyKind::Token);
        let denial = authorizer.check(&call(&PeerIdentity::plaintext(), Some(&alice))).unwrap_err();
        assert_eq!(denial, Denial { by: PolicyKind::Peer, policy: "mesh".into(), rule: None });
    }

    fn jwt_principal(name: &str) -> RequestPrincipal {
        RequestPrincipal::for_tests(name)
    }

    #[test]
    fn without_policies_there_is_no_authorizer() {
        let settings = AuthzSettings { peer_policy: None, token_policy: None, refresh: Duration::from_secs(1) };
        assert!(Authorizer::start(&settings).unwrap().is_none());
    }
}
