//! Who may call what: gRPC's authorization policy (gRFC A43, the JSON file grpc-go's `authz`
//! package reads, with A59's audit logging), evaluated the way grpc-go evaluates it, and the
//! caller identities it is evaluated against: a mutual-TLS peer's certificate names, or the
//! request principal of a verified bearer token (JWT).
//!
//! ```text
//!  policy.rs    a policy file → Policy; Policy::evaluate(CallFacts) → Decision
//!  audit.rs     A59's stdout logger: grpc-go's JSON line, written by a thread of its own
//!  watch.rs     a file reloaded every `refresh` (policy files, JWKS files)
//!  jwt.rs       bearer tokens → the request principal `iss/sub`, or why not
//!  identity.rs  a TLS peer (its certificate, grpcio's auth_context) → the names grpc-go matches
//!  check.rs     one call through every configured policy, with its audit line
//! ```
//!
//! Nothing here knows the call layer: it judges the facts it is given (a method, metadata, a
//! peer, a token), which is how the tests hold it against grpc-go answer for answer. The
//! server's gate (`server/access.rs`) gathers a call's facts and asks it.

pub(crate) mod audit;
pub(crate) mod check;
pub(crate) mod identity;
pub(crate) mod jwt;
pub(crate) mod policy;
pub(crate) mod watch;

/// What a policy looks at in one call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CallFacts<'a> {
    /// The full method, `/package.Service/Method`.
    pub(crate) path: &'a str,
    /// The request metadata as received: keys lowercase, a key repeated once per value, binary
    /// (`-bin`) values decoded. grpc-go's metadata, which its policies see, also has
    /// `user-agent` (grpcio gives it too) and `content-type` (add [`CONTENT_TYPE`]).
    pub(crate) headers: &'a [(&'a str, &'a [u8])],
    /// Who is calling, as the policy's `source.principals` are matched.
    pub(crate) principals: Principals<'a>,
}

/// The `content-type` header of a gRPC request, as grpc-go's metadata has it. C-core keeps
/// the request's own from the application; every gRPC client of C-core and grpc-go sends
/// exactly this, so a server adds it to [`CallFacts::headers`] for a policy that matches it.
pub(crate) const CONTENT_TYPE: (&str, &[u8]) = ("content-type", b"application/grpc");

/// A caller's identity, as the policy's `source.principals` are matched against it.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Principals<'a> {
    /// For a peer policy: the connection is TLS (grpc-go counts a TLS peer without a client
    /// certificate as authenticated, with no names). For a token policy: a token was verified.
    pub(crate) authenticated: bool,
    /// The names a principal pattern may match, any of them: a certificate's URI SANs, else
    /// its DNS SANs, else its subject (grpc-go's order); a token's one `iss/sub`. Empty for
    /// an authenticated caller without names, who matches only a pattern that matches "".
    pub(crate) names: &'a [String],
}

impl<'a> Principals<'a> {
    /// A caller nobody vouched for: plaintext, or no token. Only rules without principals
    /// match it.
    pub(crate) const UNAUTHENTICATED: Principals<'static> = Principals { authenticated: false, names: &[] };

    pub(crate) fn authenticated(names: &'a [String]) -> Self {
        Principals { authenticated: true, names }
    }
}

/// A policy's answer for one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision<'p> {
    /// An allow rule matched and no deny rule did.
    Allow { policy: &'p str, rule: &'p str },
    /// A deny rule matched (`rule`), or no allow rule did (`rule` is `None`).
    Deny { policy: &'p str, rule: Option<&'p str> },
}

impl<'p> Decision<'p> {
    pub(crate) fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }

    /// The policy's `name`.
    pub(crate) fn policy(&self) -> &'p str {
        match *self {
            Decision::Allow { policy, .. } | Decision::Deny { policy, .. } => policy,
        }
    }

    /// The rule that decided, as the policy file names it; `None` when no rule matched.
    pub(crate) fn rule(&self) -> Option<&'p str> {
        match *self {
            Decision::Allow { rule, .. } => Some(rule),
            Decision::Deny { rule, .. } => rule,
        }
    }

    /// The rule as grpc-go's audit log names it (`matched_rule`): `<policy>_<rule>`, or ""
    /// when no rule matched.
    pub(crate) fn matched_rule(&self) -> String {
        self.rule().map(|rule| format!("{}_{rule}", self.policy())).unwrap_or_default()
    }
}
