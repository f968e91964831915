//! gRFC A43's authorization policy: the JSON file grpc-go's `authz.NewFileWatcher` reads, read
//! and judged exactly as grpc-go v1.85 does (its `authz/rbac_translator.go` and the RBAC
//! engine it translates to):
//!
//! - `deny_rules` first: a matching one denies; then `allow_rules`: a matching one allows;
//!   nothing matched denies.
//! - A rule matches when its `request.paths` (any), every `request.headers` entry (any of its
//!   values) and its `source.principals` (any) match; a list left out or empty matches all.
//! - A pattern is `*` (any non-empty string without a newline: grpc-go's regex `.+`), `foo*`
//!   (prefix), `*foo` (suffix) or an exact string; `foo*` wins over `*foo` in `*foo*`.
//! - A header's values are joined with "," (grpc-go's metadata join) before matching.
//! - A principal pattern matches only an authenticated caller: one of its names, or "" when it
//!   has none.
//! - Two rules of one list with the same name: the later one replaces the earlier (grpc-go
//!   keeps rules in a map by name); the policy carries a warning saying so.
//!
//! The rule reported for a decision is the first match in file order; grpc-go reports any of
//! the matching rules (it iterates a map), so the decision is the same, the name may differ.

mod go_json;

use std::collections::HashSet;

use super::watch::Load;
use super::{CallFacts, Decision, Principals};
use go_json::{RawAuditOptions, RawPolicy, RawRule};

/// A loaded policy.
#[derive(Debug)]
pub(crate) struct Policy {
    name: String,
    deny: Vec<Rule>,
    allow: Vec<Rule>,
    audit_condition: AuditCondition,
    /// The stdout logger is configured (and registered: it is the one grpc-go knows).
    audit_to_stdout: bool,
    warnings: Vec<String>,
}

/// A59's `audit_condition`: which decisions are written to the audit loggers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum AuditCondition {
    #[default]
    None,
    OnDeny,
    OnAllow,
    OnDenyAndAllow,
}

/// The policy file is not one grpc-go would load.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PolicyError {
    /// Not JSON, or JSON that does not decode into a policy (a wrong type, an unknown field).
    /// Its message gives the field's path, the line and the column.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// A policy grpc-go refuses; `place` names the rule or the setting.
    #[error("{place}: {problem}")]
    Invalid { place: String, problem: String },
}

#[derive(Debug)]
struct Rule {
    name: String,
    /// `None`: any caller, authenticated or not.
    principals: Option<Vec<Pattern>>,
    /// `None`: any method.
    paths: Option<Vec<Pattern>>,
    headers: Vec<HeaderRule>,
}

#[derive(Debug)]
struct HeaderRule {
    /// Lowercase, as metadata keys arrive.
    key: String,
    values: Vec<Pattern>,
}

/// grpc-go's `getStringMatcher`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// `*`: grpc-go's anchored regex `.+`.
    NonEmpty,
    Prefix(String),
    Suffix(String),
    Exact(String),
}

/// Header keys A43 forbids in a policy, besides those starting with ":" or "grpc-": hop-by-hop
/// and connection headers a proxy may change.
const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The one audit logger grpc-go registers by itself.
const STDOUT_LOGGER: &str = "stdout_logger";

impl Policy {
    /// Reads a policy file's text; fails as grpc-go's `authz.NewStatic` would.
    pub(crate) fn parse(json: &str) -> Result<Policy, PolicyError> {
        let raw = go_json::read(json)?;
        Policy::translate(raw)
    }

    fn translate(raw: RawPolicy) -> Result<Policy, PolicyError> {
        let invalid = |place: &str, problem: String| PolicyError::Invalid { place: place.to_owned(), problem };
        if raw.name.is_empty() {
            return Err(invalid("the policy", "\"name\" is not present (every policy needs a name)".into()));
        }
        if raw.allow_rules.is_empty() {
            return Err(invalid(
                "the policy",
                "\"allow_rules\" is not present (a policy needs at least one allow rule)".into(),
            ));
        }
        let mut warnings = Vec::new();
        let (audit_condition, audit_to_stdout) = audit_options(raw.audit_logging_options, &mut warnings)?;
        let deny = rules(raw.deny_rules, "deny_rules", &mut warnings)?;
        let allow = rules(raw.allow_rules, "allow_rules", &mut warnings)?;
        Ok(Policy { name: raw.name, deny, allow, audit_condition, audit_to_stdout, warnings })
    }

    #[allow(dead_code)] // used by tests/authz.rs and examples/authz_bench.rs, which include this module
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// What loading noticed but accepted, as grpc-go does (a rule replaced by a later one of
    /// the same name, an optional audit logger that does not exist, a config the stdout
    /// logger ignores): for the log.
    #[allow(dead_code)] // used by tests/authz.rs and examples/authz_bench.rs, which include this module
    pub(crate) fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Deny rules first, then allow rules; nothing matched denies.
    pub(crate) fn evaluate<'p>(&'p self, call: &CallFacts<'_>) -> Decision<'p> {
        let policy = self.name.as_str();
        if let Some(rule) = self.deny.iter().find(|rule| rule.matches(call)) {
            return Decision::Deny { policy, rule: Some(&rule.name) };
        }
        match self.allow.iter().find(|rule| rule.matches(call)) {
            Some(rule) => Decision::Allow { policy, rule: &rule.name },
            None => Decision::Deny { policy, rule: None },
        }
    }

    /// Whether `decision` goes to the stdout audit logger (A59: the condition applies to the
    /// whole policy, and a call is audited at most once).
    pub(crate) fn audits(&self, decision: &Decision<'_>) -> bool {
        use AuditCondition::*;
        self.audit_to_stdout
            && match self.audit_condition {
                None => false,
                OnDeny => !decision.is_allowed(),
                OnAllow => decision.is_allowed(),
                OnDenyAndAllow => true,
            }
    }

    #[allow(dead_code)] // used by tests/authz.rs and examples/authz_bench.rs, which include this module
    pub(crate) fn audit_condition(&self) -> AuditCondition {
        self.audit_condition
    }

    /// How many rules it has, deny and allow.
    #[allow(dead_code)] // used by tests/authz.rs and examples/authz_bench.rs, which include this module
    pub(crate) fn rule_count(&self) -> (usize, usize) {
        (self.deny.len(), self.allow.len())
    }
}

impl Load for Policy {
    const WHAT: &'static str = "authorization policy";
    type Error = PolicyError;
    fn load(text: &str) -> Result<Self, PolicyError> {
        Policy::parse(text)
    }
    fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

fn rules(raw: Vec<RawRule>, list: &str, warnings: &mut Vec<String>) -> Result<Vec<Rule>, PolicyError> {
    let mut rules: Vec<Rule> = Vec::with_capacity(raw.len());
    let mut names = HashSet::new();
    for (i, raw) in raw.into_iter().enumerate() {
        let place =
            if raw.name.is_empty() { format!("{list}[{i}]") } else { format!("{list}[{i}] (rule {:?})", raw.name) };
        let invalid = |problem: String| PolicyError::Invalid { place: place.clone(), problem };
        if raw.name.is_empty() {
            return Err(invalid("\"name\" is not present (every rule needs a name)".into()));
        }
        let mut headers = Vec::with_capacity(raw.request.headers.len());
        for (j, header) in raw.request.headers.into_iter().enumerate() {
            if header.key.is_empty() {
                return Err(invalid(format!("request.headers[{j}]: \"key\" is not present")));
            }
            let key = header.key.to_ascii_lowercase();
            if forbidden_header(&key) {
                return Err(invalid(format!(
                    "request.headers[{j}]: the header {:?} cannot be matched: gRFC A43 forbids \":\"- and \
                     \"grpc-\"-prefixed headers and {}",
                    header.key,
                    FORBIDDEN_HEADERS.join(", ")
                )));
            }
            if header.values.is_empty() {
                return Err(invalid(format!("request.headers[{j}] ({key}): \"values\" is not present")));
            }
            headers.push(HeaderRule { key, values: header.values.iter().map(|v| Pattern::new(v)).collect() });
        }
        let rule = Rule {
            principals: non_empty(raw.source.principals),
            paths: non_empty(raw.request.paths),
            headers,
            name: raw.name,
        };
        if !names.insert(rule.name.clone()) {
            warnings.push(format!(
                "{place}: a rule of this name comes earlier in {list}; this one replaces it (as in grpc-go)"
            ));
            rules.retain(|earlier| earlier.name != rule.name);
        }
        rules.push(rule);
    }
    Ok(rules)
}

fn non_empty(patterns: Vec<String>) -> Option<Vec<Pattern>> {
    (!patterns.is_empty()).then(|| patterns.iter().map(|p| Pattern::new(p)).collect())
}

/// A43: pseudo-headers, gRPC's own headers, and hop-by-hop headers (`key` is lowercase).
fn forbidden_header(key: &str) -> bool {
    key.starts_with(':') || key.starts_with("grpc-") || FORBIDDEN_HEADERS.contains(&key)
}

fn audit_options(raw: RawAuditOptions, warnings: &mut Vec<String>) -> Result<(AuditCondition, bool), PolicyError> {
    let invalid = |place: String, problem: String| PolicyError::Invalid { place, problem };
    let condition = match raw.audit_condition.as_str() {
        "" | "NONE" => AuditCondition::None,
        "ON_DENY" => AuditCondition::OnDeny,
        "ON_ALLOW" => AuditCondition::OnAllow,
        "ON_DENY_AND_ALLOW" => AuditCondition::OnDenyAndAllow,
        other => {
            return Err(invalid(
                "audit_logging_options.audit_condition".into(),
                format!("{other:?} is not one of NONE, ON_DENY, ON_ALLOW, ON_DENY_AND_ALLOW"),
            ))
        }
    };
    let mut stdout = false;
    for (i, logger) in raw.audit_loggers.into_iter().enumerate() {
        let place = format!("audit_logging_options.audit_loggers[{i}]");
        // grpc-go crashes on a null logger; refusing the file is the useful answer.
        let Some(logger) = logger else {
            return Err(invalid(place, "null is not a logger".into()));
        };
        if logger.name.is_empty() {
            return Err(invalid(place, "\"name\" is not present".into()));
        }
        // grpc-go names the logger type by what follows the last "/" of the name.
        let kind = logger.name.rsplit('/').next().unwrap_or_default();
        if kind.is_empty() {
            return Err(invalid(place, format!("the logger name {:?} ends in \"/\"", logger.name)));
        }
        if kind == STDOUT_LOGGER {
            stdout = true;
            if logger.config.entries.is_some_and(|n| n > 0) {
                warnings.push(format!("{place}: the stdout logger takes no config; it is ignored"));
            }
        } else if logger.is_optional {
            warnings.push(format!("{place}: no audit logger {kind:?} exists; skipped, as it is optional"));
        } else {
            return Err(invalid(
                place,
                format!(
                    "no audit logger {kind:?} exists (there is {STDOUT_LOGGER:?}); mark it \"is_optional\": true \
                     to run without it"
                ),
            ));
        }
    }
    Ok((condition, stdout))
}

impl Pattern {
    fn new(pattern: &str) -> Self {
        if pattern == "*" {
            Pattern::NonEmpty
        } else if let Some(prefix) = pattern.strip_suffix('*') {
            Pattern::Prefix(prefix.to_owned())
        } else if let Some(suffix) = pattern.strip_prefix('*') {
            Pattern::Suffix(suffix.to_owned())
        } else {
            Pattern::Exact(pattern.to_owned())
        }
    }

    fn matches(&self, value: &[u8]) -> bool {
        match self {
            // Go's `.` matches any character but "\n", an invalid UTF-8 byte included.
            Pattern::NonEmpty => !value.is_empty() && !value.contains(&b'\n'),
            Pattern::Prefix(prefix) => value.starts_with(prefix.as_bytes()),
            Pattern::Suffix(suffix) => value.ends_with(suffix.as_bytes()),
            Pattern::Exact(exact) => value == exact.as_bytes(),
        }
    }
}

impl Rule {
    fn matches(&self, call: &CallFacts<'_>) -> bool {
        let path = call.path.as_bytes();
        self.paths.as_ref().is_none_or(|paths| paths.iter().any(|p| p.matches(path)))
            && self.headers.iter().all(|header| header.matches(call.headers))
            && self.principals.as_ref().is_none_or(|patterns| principal_matches(patterns, &call.principals))
    }
}

impl HeaderRule {
    fn matches(&self, headers: &[(&str, &[u8])]) -> bool {
        let mut values = headers.iter().filter(|(key, _)| *key == self.key).map(|(_, value)| *value);
        let Some(first) = values.next() else {
            return false;
        };
        match values.next() {
            None => self.values.iter().any(|p| p.matches(first)),
            Some(second) => {
                // Repeated: grpc-go matches the values joined with ",".
                let mut joined = [first, b",", second].concat();
                for value in values {
                    joined.push(b',');
                    joined.extend_from_slice(value);
                }
                self.values.iter().any(|p| p.matches(&joined))
            }
        }
    }
}

fn principal_matches(patterns: &[Pattern], who: &Principals<'_>) -> bool {
    if !who.authenticated {
        return false;
    }
    if who.names.is_empty() {
        return patterns.iter().any(|p| p.matches(b""));
    }
    patterns.iter().any(|p| who.names.iter().any(|name| p.matches(name.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAY_HELLO: &str = "/greeter.Greeter/SayHello";

    fn call<'a>(path: &'a str, headers: &'a [(&'a str, &'a [u8])], principals: Principals<'a>) -> CallFacts<'a> {
        CallFacts { path, headers, principals }
    }

    fn decide(policy: &str, call: &CallFacts<'_>) -> (bool, Option<String>) {
        let policy = Policy::parse(policy).unwrap_or_else(|e| panic!("{e}"));
        let decision = policy.evaluate(call);
        (decision.is_allowed(), decision.rule().map(str::to_owned))
    }

    #[test]
    fn patterns_are_grpc_go_string_matchers() {
        assert_eq!(Pattern::new("*"), Pattern::NonEmpty);
        assert_eq!(Pattern::new("foo*"), Pattern::Prefix("foo".into()));
        assert_eq!(Pattern::new("*foo"), Pattern::Suffix("foo".into()));
        assert_eq!(Pattern::new("*foo*"), Pattern::Prefix("*foo".into()));
        assert_eq!(Pattern::new("**"), Pattern::Prefix("*".into()));
        assert_eq!(Pattern::new("f*o"), Pattern::Exact("f*o".into()));
        assert_eq!(Pattern::new(""), Pattern::Exact("".into()));
        assert!(Pattern::NonEmpty.matches(b"x"));
        assert!(Pattern::NonEmpty.matches(b"\xff"));
        assert!(!Pattern::NonEmpty.matches(b""));
        assert!(!Pattern::NonEmpty.matches(b"a\nb"));
    }

    #[test]
    fn deny_rules_come_first_and_nothing_matched_denies() {
        let policy = r#"{"name": "p",
            "deny_rules": [{"name": "no_chat", "request": {"paths": ["/greeter.Greeter/Chat"]}}],
            "allow_rules": [{"name": "all_greeter", "request": {"paths": ["/greeter.Greeter/*"]}}]}"#;
        let none = Principals::UNAUTHENTICATED;
        assert_eq!(decide(policy, &call(SAY_HELLO, &[], none)), (true, Some("all_greeter".into())));
        assert_eq!(decide(policy, &call("/greeter.Greeter/Chat", &[], none)), (false, Some("no_chat".into())));
        assert_eq!(decide(policy, &call("/grpc.health.v1.Health/Check", &[], none)), (false, None));
    }

    #[test]
    fn principals_match_only_authenticated_callers() {
        let policy = r#"{"name": "p", "allow_rules": [{"name": "any_cert", "source": {"principals": ["*"]}}]}"#;
        let names = ["spiffe://example.org/billing".to_owned()];
        assert!(decide(policy, &call(SAY_HELLO, &[], Principals::authenticated(&names))).0);
        assert!(!decide(policy, &call(SAY_HELLO, &[], Principals::UNAUTHENTICATED)).0);
        // TLS without a certificate: authenticated, no names; "*" needs a non-empty name.
        assert!(!decide(policy, &call(SAY_HELLO, &[], Principals::authenticated(&[]))).0);
        let empty = r#"{"name": "p", "allow_rules": [{"name": "r", "source": {"principals": [""]}}]}"#;
        assert!(decide(empty, &call(SAY_HELLO, &[], Principals::authenticated(&[]))).0);
        assert!(!decide(empty, &call(SAY_HELLO, &[], Principals::UNAUTHENTICATED)).0);
    }

    #[test]
    fn repeated_header_values_are_joined_with_a_comma() {
        let policy = r#"{"name": "p", "allow_rules": [{"name": "r",
            "request": {"headers": [{"key": "X-Team", "values": ["a,b"]}]}}]}"#;
        let one: &[(&str, &[u8])] = &[("x-team", b"a")];
        let two: &[(&str, &[u8])] = &[("x-team", b"a"), ("other", b"z"), ("x-team", b"b")];
        let none = Principals::UNAUTHENTICATED;
        assert!(!decide(policy, &call(SAY_HELLO, one, none)).0);
        assert!(decide(policy, &call(SAY_HELLO, two, none)).0);
        assert!(!decide(policy, &call(SAY_HELLO, &[], none)).0);
    }

    #[test]
    fn every_header_entry_must_match_and_any_of_its_values() {
        let policy = r#"{"name": "p", "allow_rules": [{"name": "r", "request": {"headers": [
            {"key": "x-a", "values": ["1", "2*"]}, {"key": "x-b", "values": ["*"]}]}}]}"#;
        let none = Principals::UNAUTHENTICATED;
        assert!(decide(policy, &call(SAY_HELLO, &[("x-a", b"22"), ("x-b", b"y")], none)).0);
        assert!(!decide(policy, &call(SAY_HELLO, &[("x-a", b"3"), ("x-b", b"y")], none)).0);
        assert!(!decide(policy, &call(SAY_HELLO, &[("x-a", b"1")], none)).0);
    }

    #[test]
    fn a_later_rule_of_the_same_name_replaces_the_earlier() {
        let policy = r#"{"name": "p", "allow_rules": [
            {"name": "r", "request": {"paths": ["/greeter.Greeter/SayHello"]}},
            {"name": "r", "request": {"paths": ["/greeter.Greeter/Chat"]}}]}"#;
        let none = Principals::UNAUTHENTICATED;
        assert!(!decide(policy, &call(SAY_HELLO, &[], none)).0);
        assert!(decide(policy, &call("/greeter.Greeter/Chat", &[], none)).0);
        let warnings = Policy::parse(policy).unwrap().warnings().to_vec();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].starts_with("allow_rules[1] (rule \"r\")"), "{warnings:?}");
    }

    #[test]
    fn forbidden_headers_are_refused_whatever_their_case() {
        for key in ["Host", ":path", "grpc-timeout", "GRPC-foo", "TE", "connection", "Proxy-Authorization"] {
            let policy = format!(
                r#"{{"name": "p", "allow_rules": [{{"name": "r", "request": {{"headers": [{{"key": "{key}", "values": ["x"]}}]}}}}]}}"#
            );
            let err = Policy::parse(&policy).unwrap_err().to_string();
            assert!(err.starts_with("allow_rules[0] (rule \"r\"): request.headers[0]: the header"), "{key}: {err}");
        }
        let ok = r#"{"name": "p", "allow_rules": [{"name": "r", "request": {"headers": [
            {"key": "x-grpc-thing", "values": ["x"]}, {"key": "user-agent", "values": ["x"]}]}}]}"#;
        Policy::parse(ok).unwrap();
    }

    #[test]
    fn what_grpc_go_refuses_is_refused_with_the_place() {
        let cases = [
            (r#"{"allow_rules": [{"name": "r"}]}"#, "the policy: \"name\" is not present"),
            (r#"{"name": "p"}"#, "the policy: \"allow_rules\" is not present"),
            (r#"{"name": "p", "allow_rules": []}"#, "the policy: \"allow_rules\" is not present"),
            (r#"{"name": "p", "allow_rules": [{"request": {}}]}"#, "allow_rules[0]: \"name\" is not present"),
            (
                r#"{"name": "p", "allow_rules": [{"name": "a"}], "deny_rules": [{"name": "d", "request": {"headers": [{"values": ["x"]}]}}]}"#,
                "deny_rules[0] (rule \"d\"): request.headers[0]: \"key\" is not present",
            ),
            (
                r#"{"name": "p", "allow_rules": [{"name": "a", "request": {"headers": [{"key": "x-a"}]}}]}"#,
                "allow_rules[0] (rule \"a\"): request.headers[0] (x-a): \"values\" is not present",
            ),
            (
                r#"{"name": "p", "allow_rules": [{"name": "a"}], "audit_logging_options": {"audit_condition": "on_deny"}}"#,
                "audit_logging_options.audit_condition: \"on_deny\" is not one of",
            ),
            (
                r#"{"name": "p", "allow_rules": [{"name": "a"}], "audit_logging_options": {"audit_loggers": [{"name": "file_logger"}]}}"#,
                "audit_logging_options.audit_loggers[0]: no audit logger \"file_logger\" exists",
            ),
            (r#"{"name": "p", "allow_rules": [{"name": "a", "source": {"principal": ["x"]}}]}"#, "unknown field"),
        ];
        for (policy, want) in cases {
            let err = Policy::parse(policy).unwrap_err().to_string();
            assert!(err.contains(want), "{policy}\n  gave: {err}\n  want: {want}");
        }
    }

    #[test]
    fn audit_options_as_grpc_go_reads_them() {
        let with = |options: &str| {
            Policy::parse(&format!(
                r#"{{"name": "p", "allow_rules": [{{"name": "a"}}], "audit_logging_options": {options}}}"#
            ))
        };
        let policy = with(r#"{"audit_condition": "ON_DENY", "audit_loggers": [{"name": "stdout_logger"}]}"#).unwrap();
        let allow = Decision::Allow { policy: "p", rule: "a" };
        let deny = Decision::Deny { policy: "p", rule: None };
        assert!(policy.audits(&deny) && !policy.audits(&allow));
        let optional =
            with(r#"{"audit_condition": "ON_ALLOW", "audit_loggers": [{"name": "x", "is_optional": true}]}"#);
        let optional = optional.unwrap();
        assert!(!optional.audits(&allow), "no logger that exists: nothing is audited");
        assert_eq!(optional.warnings().len(), 1);
        let by_type_url =
            with(r#"{"audit_condition": "ON_DENY_AND_ALLOW", "audit_loggers": [{"name": "a/stdout_logger"}]}"#);
        assert!(by_type_url.unwrap().audits(&allow));
        assert!(with(r#"{"audit_loggers": [{"name": "stdout_logger", "config": 5}]}"#).is_err());
        assert!(with(r#"{"audit_loggers": [null]}"#).is_err());
        assert!(with(r#"{"audit_loggers": [{"name": "stdout_logger/"}]}"#).is_err());
    }
}
