//! What authorization costs a call: our check (src/authz) beside grpc-go's authz interceptor
//! on the same policies, as one table.
//!
//! ```text
//! cargo run --release --example authz_bench [-- --rounds 5]
//! ```
//!
//! The policies have N rules: N/2 deny rules that do not match the call, N/2 allow rules of
//! which only the last matches (on its SPIFFE ID, its path and an `x-team` header): every rule
//! is looked at. grpc-go's side is `go test -bench Authz` in
//! `tests/interop/go/cmd/authz-server`, which builds the same policies and times grpc-go's
//! interceptor on a real mutual-TLS call's context. Each figure is the median of the rounds.

// The crate's authorization layer itself, compiled into this program (its items are
// `pub(crate)`); what this program does not use of it is no concern here.
#[allow(dead_code)]
#[path = "../src/authz/mod.rs"]
mod authz;

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use authz::check::{Authorizer, AuthzSettings, Call};
use authz::identity::{IdentityCache, PeerIdentity};
use authz::jwt::{JwtKeys, JwtSettings, JwtVerifier};
use authz::policy::Policy;
use authz::{CallFacts, Principals, CONTENT_TYPE};

const RULES: [usize; 2] = [10, 1000];
const USER_AGENT: &[u8] = b"grpc-rust/0.13.0 grpc-c/33.0.0 (linux; chttp2)";

/// The policy `go test -bench Authz` builds (benchPolicy in bench_test.go).
fn bench_policy(rules: usize) -> String {
    let mut deny = Vec::new();
    let mut allow = Vec::new();
    for i in 0..rules / 2 {
        deny.push(serde_json::json!({
            "name": format!("deny_{i}"),
            "source": {"principals": [format!("spiffe://example.org/blocked-{i}")]},
            "request": {"paths": ["/greeter.Greeter/*"]},
        }));
        allow.push(serde_json::json!({
            "name": format!("allow_{i}"),
            "source": {"principals": [format!("spiffe://example.org/team-{i}")]},
            "request": {
                "paths": ["/greeter.Greeter/SayHello", "/greeter.Greeter/Chat"],
                "headers": [{"key": "x-team", "values": [format!("team-{i}")]}],
            },
        }));
    }
    serde_json::json!({"name": "bench", "deny_rules": deny, "allow_rules": allow}).to_string()
}

/// Nanoseconds per call of `f`, the median of `rounds` rounds of about 200 ms.
fn time_per_call(rounds: usize, mut f: impl FnMut()) -> f64 {
    // Calibrate: how many calls fill a round.
    let mut n = 1u64;
    loop {
        let start = Instant::now();
        for _ in 0..n {
            f();
        }
        if start.elapsed() > Duration::from_millis(20) {
            n = (n * 10).max(1);
            break;
        }
        n *= 2;
    }
    let mut samples: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..n {
                f();
            }
            start.elapsed().as_nanos() as f64 / n as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args()
        .skip_while(|a| a != "--rounds")
        .nth(1)
        .map(|r| r.parse().expect("--rounds takes a number"))
        .unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    let mut rows: Vec<(String, String, String)> = Vec::new();
    let go = go_bench(rounds);

    for rules in RULES {
        let policy = Policy::parse(&bench_policy(rules)).unwrap();
        let caller = [format!("spiffe://example.org/team-{}", rules / 2 - 1)];
        let team = format!("team-{}", rules / 2 - 1);
        let headers: [(&str, &[u8]); 3] = [("user-agent", USER_AGENT), ("x-team", team.as_bytes()), CONTENT_TYPE];
        let facts = CallFacts {
            path: "/greeter.Greeter/SayHello",
            headers: &headers,
            principals: Principals::authenticated(&caller),
        };
        assert!(policy.evaluate(&facts).is_allowed());
        let ns = time_per_call(rounds, || {
            black_box(policy.evaluate(black_box(&facts)));
        });
        rows.push((format!("policy evaluation, {rules} rules"), grouped(ns), "—".into()));

        // The whole check as a server makes it: the watched policy, the cached identity.
        let path = dir.path().join(format!("policy-{rules}.json"));
        std::fs::write(&path, bench_policy(rules)).unwrap();
        let settings =
            AuthzSettings { peer_policy: Some(path), token_policy: None, refresh: Duration::from_secs(3600) };
        let authorizer = Authorizer::start(&settings).unwrap().unwrap();
        let peer = PeerIdentity { tls: true, names: caller.to_vec(), spiffe_id: Some(caller[0].clone()) };
        let call = Call { path: "/greeter.Greeter/SayHello", headers: &headers, peer: &peer, token: None };
        assert_eq!(authorizer.check(&call), Ok(()));
        let ns = time_per_call(rounds, || {
            let _ = black_box(authorizer.check(black_box(&call)));
        });
        let theirs = go.get(&rules).map_or("?".to_owned(), |ns| grouped(*ns));
        rows.push((format!("the check per call, {rules} rules"), grouped(ns), theirs));
    }

    let (cert_pem, parse_ns, cached_ns) = identity_costs(rounds);
    rows.push(("peer identity, certificate parsed".into(), grouped(parse_ns), "at the handshake".into()));
    rows.push(("peer identity, from the cache".into(), grouped(cached_ns), "at the handshake".into()));
    drop(cert_pem);

    for (alg, how, ns) in jwt_costs(dir.path(), rounds) {
        rows.push((format!("bearer token ({alg}), {how}"), grouped(ns), "no JWT support".into()));
    }

    println!("| per call | ours, ns | grpc-go, ns |");
    println!("|---|---:|---:|");
    for (what, ours, theirs) in rows {
        println!("| {what} | {ours} | {theirs} |");
    }
}

/// Whole nanoseconds with thousands separators: `12,345`.
fn grouped(ns: f64) -> String {
    let digits = format!("{ns:.0}");
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Parsing a client certificate into its names, and finding it in the cache.
fn identity_costs(rounds: usize) -> (String, f64, f64) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names =
        vec![rcgen::SanType::URI("spiffe://example.org/ns/billing/sa/quotes".try_into().unwrap())];
    let pem = params.self_signed(&key).unwrap().pem();
    let parse = time_per_call(rounds, || {
        black_box(IdentityCache::new().lookup_pem(black_box(pem.as_bytes())));
    });
    let cache = IdentityCache::new();
    cache.lookup_pem(pem.as_bytes());
    let cached = time_per_call(rounds, || {
        black_box(cache.lookup_pem(black_box(pem.as_bytes())));
    });
    (pem, parse, cached)
}

/// Verifying a valid token, ES256 and EdDSA, with the key already loaded: its signature
/// checked, and seen before (the verifier's cache).
fn jwt_costs(dir: &Path, rounds: usize) -> Vec<(&'static str, &'static str, f64)> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let claims =
        serde_json::json!({"iss": "https://issuer.example", "aud": "greeter", "sub": "billing", "exp": now + 3600});
    let mut costs = Vec::new();
    for (alg, name, algorithm) in [
        (&rcgen::PKCS_ECDSA_P256_SHA256, "ES256", jsonwebtoken::Algorithm::ES256),
        (&rcgen::PKCS_ED25519, "EdDSA", jsonwebtoken::Algorithm::EdDSA),
    ] {
        let pair = rcgen::KeyPair::generate_for(alg).unwrap();
        let public: PathBuf = dir.join(format!("{name}.pem"));
        std::fs::write(&public, pair.public_key_pem()).unwrap();
        let private = pair.serialize_pem();
        let encoding = match algorithm {
            jsonwebtoken::Algorithm::EdDSA => jsonwebtoken::EncodingKey::from_ed_pem(private.as_bytes()),
            _ => jsonwebtoken::EncodingKey::from_ec_pem(private.as_bytes()),
        }
        .unwrap();
        let token = jsonwebtoken::encode(&jsonwebtoken::Header::new(algorithm), &claims, &encoding).unwrap();
        let verifier = JwtVerifier::start(&JwtSettings {
            issuer: "https://issuer.example".into(),
            audience: "greeter".into(),
            keys: JwtKeys::Pem(vec![public]),
        })
        .unwrap();
        verifier.verify(&token).unwrap();
        costs.push((
            name,
            "signature checked",
            time_per_call(rounds, || drop(black_box(verifier.verify_uncached(black_box(&token))))),
        ));
        costs.push((
            name,
            "seen before",
            time_per_call(rounds, || drop(black_box(verifier.verify(black_box(&token))))),
        ));
    }
    costs
}

/// grpc-go's ns/op per rule count, from `go test -bench Authz` (empty when Go is missing:
/// the table says "?").
fn go_bench(rounds: usize) -> std::collections::HashMap<usize, f64> {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // The Go module needs its generated stubs, which the set-up makes.
    let setup = Command::new("bash").arg(repo.join("tests/interop/setup.sh")).status();
    if !setup.is_ok_and(|s| s.success()) {
        eprintln!("authz_bench: tests/interop/setup.sh failed: no grpc-go figures (it needs Go >= 1.26)");
        return Default::default();
    }
    let out = Command::new("go")
        .args(["test", "-run", "^$", "-bench", "Authz", "-benchtime", "1s", "-count"])
        .arg(rounds.to_string())
        .arg("./cmd/authz-server")
        .current_dir(repo.join("tests/interop/go"))
        .env("GOWORK", "off")
        .output()
        .expect("go test runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "go test -bench failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let mut samples: std::collections::HashMap<usize, Vec<f64>> = Default::default();
    for line in text.lines().filter(|l| l.starts_with("BenchmarkAuthz/rules=")) {
        let mut fields = line.split_whitespace();
        let name = fields.next().unwrap();
        let rules = name["BenchmarkAuthz/rules=".len()..].split('-').next().unwrap().parse().unwrap();
        let ns: f64 = fields.nth(1).unwrap().parse().unwrap();
        samples.entry(rules).or_default().push(ns);
    }
    samples
        .into_iter()
        .map(|(rules, mut ns)| {
            ns.sort_by(f64::total_cmp);
            (rules, ns[ns.len() / 2])
        })
        .collect()
}
