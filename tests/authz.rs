//! Authorization, answer for answer against grpc-go. Every case of `tests/authz/cases.json` (a
//! gRFC A43 policy file under `tests/authz/policies/`, a caller, a method, metadata, and the
//! status grpc-go gives) runs against each target of [`TARGETS`], and each must give the
//! expected status:
//!
//! - `grpc-go`: grpc-go's own `authz.NewFileWatcher` interceptors
//!   (`tests/interop/go/cmd/authz-server`);
//! - `engine`: our policy engine (`src/authz`, compiled into this test), judging the facts
//!   grpcio gives a server for the same call: a grpcio server's checker captures the method,
//!   the metadata and the peer's identity (`principals_from_auth_context`) and aborts the call.
//!
//! A target is one function `fn(&Case, &Fixture) -> Answer`; a server that enforces policies
//! joins by adding its function to [`TARGETS`].
//!
//! Also here: a policy reloaded while calls flow and a broken reload (grpc-go and our
//! watcher, side by side), A59's audit lines (grpc-go's and ours), the names a certificate
//! gives (Go's `crypto/x509` and ours through grpcio), and the bearer-token cases of
//! `tests/authz/jwt_cases.json`, which only our engine has.
//!
//! Needs a TLS build (the default features): callers present certificates.
#![cfg(tls)]

mod common;

// The crate's authorization layer itself, compiled into this program (its items are
// `pub(crate)`); what this program does not use of it is no concern here.
#[allow(dead_code)]
#[path = "../src/authz/mod.rs"]
mod authz;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::executor::block_on;
use futures::{SinkExt, TryStreamExt};
use grpcio::{
    CallOption, ChannelBuilder, ChannelCredentialsBuilder, CheckResult, EnvBuilder, Marshaller, MetadataBuilder,
    Method, MethodType, RpcContext, RpcStatus, RpcStatusCode, ServerBuilder, ServerChecker, ServerCredentials,
    ServerCredentialsBuilder, ServiceBuilder, WriteFlags,
};
use rcgen::{CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, SanType};
use serde::Deserialize;

use authz::audit::{json_line, AuditEvent};
use authz::check::DENIED_MESSAGE;
use authz::identity::{principals_from_auth_context, CertNames, PeerIdentity};
use authz::jwt::{bearer_token, JwtKeys, JwtSettings, JwtVerifier, KeySet};
use authz::policy::Policy;
use authz::watch::Watched;
use authz::{CallFacts, Principals, CONTENT_TYPE};
use common::pki::{Issued, Pki};
use common::process::{output_within, KillOnDrop};
use common::tools::tools;
use greeter::{Authorization, ClientCert, ServerError, ServerTls, TokenCheck, TokenKeys};

const CASES: &str = "tests/authz/cases.json";
const JWT_CASES: &str = "tests/authz/jwt_cases.json";

/// How long any one call may take on a loaded machine.
const CALL_DEADLINE: Duration = Duration::from_secs(30);

/// A target: what it answers to a case.
type Target = fn(&Case, &Fixture) -> Answer;

/// The targets every case runs against: add a server here as one more function.
const TARGETS: &[(&str, Target)] = &[("grpc-go", grpc_go), ("engine", engine), ("our server", our_server)];

// ---------------------------------------------------------------------------------------
// The case table

#[derive(Deserialize)]
struct Table {
    identities: HashMap<String, Identity>,
    cases: Vec<Case>,
}

/// What a client certificate says.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Identity {
    #[serde(default)]
    uris: Vec<String>,
    #[serde(default)]
    dns: Vec<String>,
    /// Attributes in certificate order: `["CN", "x"]`, or a dotted OID for others.
    #[serde(default)]
    subject: Vec<(String, String)>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    policy: String,
    /// "plaintext", "tls" (no client certificate), or the name of an identity.
    #[serde(default)]
    caller: Option<String>,
    #[serde(default)]
    call: Option<String>,
    #[serde(default)]
    headers: Vec<(String, String)>,
    /// A status code name, or "REFUSED": the policy does not load.
    expect: String,
}

/// What a target answered.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Code(RpcStatusCode),
    /// The policy was not loaded; why.
    Refused(String),
}

impl Answer {
    fn matches(&self, expect: &str) -> bool {
        match self {
            Answer::Refused(_) => expect == "REFUSED",
            Answer::Code(code) => code_name(*code) == expect,
        }
    }
}

fn code_name(code: RpcStatusCode) -> String {
    let debug = format!("{code:?}"); // "7-PERMISSION_DENIED"
    debug.split_once('-').map_or(debug.clone(), |(_, name)| name.to_owned())
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------------------
// Certificates and callers

/// The CA, the server's certificate, and one client certificate per identity, as files.
struct Fixture {
    table: Table,
    pki: Pki,
    dir: tempfile::TempDir,
    clients: HashMap<String, Issued>,
    /// Our capture servers, one plaintext and one TLS, made on first use.
    capture: Mutex<HashMap<bool, Arc<CaptureServer>>>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let text = std::fs::read_to_string(repo().join(CASES)).unwrap();
        let table: Table = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{CASES}: {e}"));
        let pki = Pki::new("authz test CA");
        let dir = tempfile::tempdir().unwrap();
        let server = pki.server();
        std::fs::write(dir.path().join("ca.pem"), pki.ca_pem()).unwrap();
        std::fs::write(dir.path().join("server.pem"), &server.cert).unwrap();
        std::fs::write(dir.path().join("server.key"), &server.key).unwrap();
        let clients = table.identities.iter().map(|(name, id)| (name.clone(), issue(&pki, id))).collect();
        Fixture { table, pki, dir, clients, capture: Mutex::default() }
    })
}

/// A client certificate with exactly `id`'s names and subject.
fn issue(pki: &Pki, id: &Identity) -> Issued {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = DistinguishedName::new();
    for (kind, value) in &id.subject {
        let kind = match kind.as_str() {
            "CN" => DnType::CommonName,
            "O" => DnType::OrganizationName,
            "OU" => DnType::OrganizationalUnitName,
            "C" => DnType::CountryName,
            "L" => DnType::LocalityName,
            "ST" => DnType::StateOrProvinceName,
            oid => DnType::CustomDnType(oid.split('.').map(|arc| arc.parse().unwrap()).collect()),
        };
        params.distinguished_name.push(kind, value.as_str());
    }
    for uri in &id.uris {
        params.subject_alt_names.push(SanType::URI(uri.as_str().try_into().unwrap()));
    }
    for dns in &id.dns {
        params.subject_alt_names.push(SanType::DnsName(dns.as_str().try_into().unwrap()));
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    pki.sign(params)
}

impl Fixture {
    fn file(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// A channel to `addr` as `caller` calls: plaintext, TLS without a certificate, or mutual
    /// TLS with an identity's certificate.
    fn channel(&self, addr: &str, caller: &str) -> grpcio::Channel {
        let env = Arc::new(EnvBuilder::new().cq_count(1).build());
        let builder = ChannelBuilder::new(env);
        if caller == "plaintext" {
            return builder.connect(addr);
        }
        let mut creds = ChannelCredentialsBuilder::new().root_cert(self.pki.ca_pem());
        if caller != "tls" {
            let issued = self.clients.get(caller).unwrap_or_else(|| panic!("no identity {caller:?} in {CASES}"));
            creds = creds.cert(issued.cert.clone().into_bytes(), issued.key.clone().into_bytes());
        }
        builder.set_credentials(creds.build()).connect(addr)
    }
}

/// A raw message codec: the cases send fixed bytes and ignore what comes back.
fn ser(bytes: &Vec<u8>, buf: &mut grpcio::GrpcSlice) -> grpcio::Result<()> {
    *buf = grpcio::GrpcSlice::from(bytes.as_slice());
    Ok(())
}
fn de(mut reader: grpcio::MessageReader) -> grpcio::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).map_err(|e| grpcio::Error::Codec(Box::new(e)))?;
    Ok(bytes)
}
const BYTES: Marshaller<Vec<u8>> = Marshaller { ser, de };

/// The methods both servers have, their kinds, and a request each accepts (the empty
/// message, but for reflection: `list_services: ""`).
const METHODS: &[(&str, MethodType, &[u8])] = &[
    ("/greeter.Greeter/SayHello", MethodType::Unary, b""),
    ("/greeter.Greeter/GetStockPrice", MethodType::ServerStreaming, b""),
    ("/greeter.Greeter/RecordMetrics", MethodType::ClientStreaming, b""),
    ("/greeter.Greeter/Chat", MethodType::Duplex, b""),
    ("/grpc.health.v1.Health/Check", MethodType::Unary, b""),
    ("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", MethodType::Duplex, b"\x3a\x00"),
    ("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", MethodType::Duplex, b"\x3a\x00"),
];

fn method(path: &str) -> (Method<Vec<u8>, Vec<u8>>, Vec<u8>) {
    let (ty, request) = METHODS
        .iter()
        .find(|(known, _, _)| *known == path)
        .map_or((MethodType::Unary, &b""[..]), |(_, ty, request)| (*ty, *request));
    // grpcio names methods with &'static str; a test makes a handful.
    let name: &'static str = Box::leak(path.to_owned().into_boxed_str());
    (Method { ty, name, req_mar: BYTES, resp_mar: BYTES }, request.to_vec())
}

/// Makes the call `path` with `headers` to its end; its status.
fn call(channel: &grpcio::Channel, path: &str, headers: &[(String, String)]) -> RpcStatus {
    let (method, request) = method(path);
    let mut metadata = MetadataBuilder::new();
    for (key, value) in headers {
        if key.ends_with("-bin") {
            metadata.add_bytes(key, value.as_bytes()).unwrap();
        } else {
            metadata.add_str(key, value).unwrap();
        }
    }
    let opt = CallOption::default().headers(metadata.build()).timeout(CALL_DEADLINE);
    let client = grpcio::Client::new(channel.clone());
    let result: grpcio::Result<()> = match method.ty {
        MethodType::Unary => client.unary_call(&method, &request, opt).map(drop),
        MethodType::ServerStreaming => block_on(async {
            let mut replies = client.server_streaming(&method, &request, opt)?;
            while replies.try_next().await?.is_some() {}
            Ok(())
        }),
        MethodType::ClientStreaming => block_on(async {
            let (mut sink, reply) = client.client_streaming(&method, opt)?;
            // A denied call may end before the request is sent: its status is in the reply.
            let _ = sink.send((request, WriteFlags::default())).await;
            let _ = sink.close().await;
            reply.await.map(drop)
        }),
        MethodType::Duplex => block_on(async {
            let (mut sink, mut replies) = client.duplex_streaming(&method, opt)?;
            let _ = sink.send((request, WriteFlags::default())).await;
            let _ = sink.close().await;
            while replies.try_next().await?.is_some() {}
            Ok(())
        }),
    };
    match result {
        Ok(()) => RpcStatus::ok(),
        Err(grpcio::Error::RpcFailure(status)) => status,
        Err(e) => panic!("{path}: the call failed outside gRPC: {e}"),
    }
}

// ---------------------------------------------------------------------------------------
// grpc-go's authz-server

/// grpc-go's authz-server on a policy, killed when dropped; its stdout lines (audit lines)
/// arrive on `lines`.
struct GoServer {
    _child: KillOnDrop,
    addr: String,
    lines: Receiver<String>,
}

enum GoStart {
    Serving(GoServer),
    Refused(String),
}

impl GoServer {
    fn start(policy: &Path, tls: bool, refresh: Duration) -> GoStart {
        let fixture = fixture();
        let mut cmd = tools().go_bin("authz-server");
        cmd.arg("-policy").arg(policy).arg("-refresh").arg(format!("{}ms", refresh.as_millis()));
        if tls {
            cmd.args(["-tls-cert", &fixture.file("server.pem"), "-tls-key", &fixture.file("server.key")]);
            cmd.args(["-tls-client-ca", &fixture.file("ca.pem"), "-client-cert", "optional"]);
        }
        let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut stderr = child.stderr.take().unwrap();
        let child = KillOnDrop(child);
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (err_tx, err_text) = mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            let _ = err_tx.send(text);
        });
        match lines.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => {
                let port = line.strip_prefix("LISTENING ").unwrap_or_else(|| panic!("authz-server printed {line:?}"));
                GoStart::Serving(GoServer { _child: child, addr: format!("127.0.0.1:{port}"), lines })
            }
            Err(_) => {
                // It exited (stdout closed) or hung: either way its stderr says why.
                drop(child);
                let text = err_text.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
                assert!(text.contains("POLICY REFUSED"), "authz-server failed otherwise:\n{text}");
                GoStart::Refused(text)
            }
        }
    }
}

fn policy_path(name: &str) -> PathBuf {
    repo().join("tests/authz/policies").join(name)
}

fn grpc_go(case: &Case, fixture: &Fixture) -> Answer {
    let caller = case.caller.as_deref().unwrap_or("plaintext");
    let server = match GoServer::start(&policy_path(&case.policy), caller != "plaintext", Duration::from_secs(60)) {
        GoStart::Serving(server) => server,
        GoStart::Refused(why) => return Answer::Refused(why),
    };
    let path = case.call.as_deref().unwrap_or_else(|| panic!("{}: a policy that loads needs a call", case.name));
    let status = call(&fixture.channel(&server.addr, caller), path, &case.headers);
    if status.code() == RpcStatusCode::PERMISSION_DENIED {
        assert_eq!(status.message(), DENIED_MESSAGE, "{}: grpc-go's denial message", case.name);
    }
    Answer::Code(status.code())
}

// ---------------------------------------------------------------------------------------
// Our server

/// Our server enforcing `policy` (refreshed every `refresh`), with /metrics, over TLS (client
/// certificates optional, like the Go server's) unless `tls` is false; or why it refused
/// the policy.
fn our_server_on(policy: &Path, tls: bool, refresh: Duration) -> Result<greeter::GreeterServer, String> {
    let fixture = fixture();
    let mut config = common::local();
    config.metrics_addr = Some("127.0.0.1:0".to_owned());
    config.authorization = Some(Authorization { policy: Some(policy.to_owned()), refresh, ..Authorization::default() });
    if tls {
        let (cert, key, ca) = (fixture.file("server.pem"), fixture.file("server.key"), fixture.file("ca.pem"));
        let files = ServerTls::from_files(Path::new(&cert), Path::new(&key), Some(Path::new(&ca))).unwrap();
        config.tls = Some(ServerTls { client_cert: ClientCert::Optional, ..files });
    }
    match config.start() {
        Ok(server) => Ok(server),
        Err(e @ ServerError::Authorization(_)) => Err(e.to_string()),
        Err(e) => panic!("our server did not start: {e}"),
    }
}

fn our_server(case: &Case, fixture: &Fixture) -> Answer {
    let caller = case.caller.as_deref().unwrap_or("plaintext");
    let server = match our_server_on(&policy_path(&case.policy), caller != "plaintext", Duration::from_secs(60)) {
        Ok(server) => server,
        Err(why) => return Answer::Refused(why),
    };
    let path = case.call.as_deref().unwrap_or_else(|| panic!("{}: a policy that loads needs a call", case.name));
    let status = call(&fixture.channel(&format!("127.0.0.1:{}", server.port()), caller), path, &case.headers);
    if status.code() == RpcStatusCode::PERMISSION_DENIED {
        assert_eq!(status.message(), DENIED_MESSAGE, "{}: our denial message", case.name);
        // Refused before any handler: counted as refused by the policy, no message sent.
        let metrics = common::scrape::scrape(server.metrics_local_addr().unwrap());
        let (service, method) = path.trim_start_matches('/').split_once('/').unwrap();
        let labels = [("grpc_service", service), ("grpc_method", method), ("reason", "policy")];
        assert_eq!(metrics.get("greeter_authz_refused_total", &labels), Some(1.0), "{}", case.name);
    }
    Answer::Code(status.code())
}

// ---------------------------------------------------------------------------------------
// Our engine, on what grpcio gives a server

/// What a grpcio server's checker saw of one call.
#[derive(Clone, Debug)]
struct Captured {
    path: String,
    headers: Vec<(String, Vec<u8>)>,
    peer: PeerIdentity,
    /// C-core's own rendering of the subject, for comparison.
    x509_subject: Option<String>,
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Option<Captured>>>);

/// The status the capture server ends every known call with, once it saw it.
const CAPTURED: RpcStatusCode = RpcStatusCode::ABORTED;

impl ServerChecker for Capture {
    fn check(&mut self, ctx: &RpcContext) -> CheckResult {
        let headers = ctx.request_headers().iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        let auth = ctx.auth_context();
        let x509_subject = auth.as_ref().and_then(|auth| {
            auth.into_iter().find(|p| p.name() == "x509_subject").map(|p| String::from_utf8_lossy(p.value()).into())
        });
        let peer = auth.as_ref().map_or_else(PeerIdentity::plaintext, principals_from_auth_context);
        let path = String::from_utf8_lossy(ctx.method()).into_owned();
        *self.0.lock().unwrap() = Some(Captured { path, headers, peer, x509_subject });
        CheckResult::Abort(RpcStatus::with_message(CAPTURED, "captured".into()))
    }
    fn box_clone(&self) -> Box<dyn ServerChecker> {
        Box::new(self.clone())
    }
}

/// A grpcio server with the methods of [`METHODS`] whose checker captures each call.
struct CaptureServer {
    server: Mutex<grpcio::Server>,
    addr: String,
    seen: Capture,
    /// One call at a time: the capture slot is shared.
    turn: Mutex<()>,
}

impl CaptureServer {
    fn start(tls: bool) -> Self {
        let env = Arc::new(EnvBuilder::new().cq_count(1).build());
        let mut service = ServiceBuilder::new();
        for (path, _, _) in METHODS {
            let (method, _) = method(path);
            // Never run: the checker ends every call first.
            service = match method.ty {
                MethodType::Unary => service.add_unary_handler(&method, |_, _, _| {}),
                MethodType::ServerStreaming => service.add_server_streaming_handler(&method, |_, _, _| {}),
                MethodType::ClientStreaming => service.add_client_streaming_handler(&method, |_, _, _| {}),
                MethodType::Duplex => service.add_duplex_streaming_handler(&method, |_, _, _| {}),
            };
        }
        let seen = Capture::default();
        let mut server =
            ServerBuilder::new(env).register_service(service.build()).add_checker(seen.clone()).build().unwrap();
        let creds = if tls {
            let fixture = fixture();
            let issued = fixture.pki.server();
            ServerCredentialsBuilder::new()
                .add_cert(issued.cert.into_bytes(), issued.key.into_bytes())
                .root_cert(fixture.pki.ca_pem(), grpcio::CertificateRequestType::RequestClientCertificateAndVerify)
                .build()
        } else {
            ServerCredentials::insecure()
        };
        let port = server.add_listening_port("127.0.0.1:0", creds).unwrap();
        server.start();
        CaptureServer { server: Mutex::new(server), addr: format!("127.0.0.1:{port}"), seen, turn: Mutex::default() }
    }

    /// Makes the call and returns what the server saw, or the status when no checker ran.
    fn capture(&self, caller: &str, path: &str, headers: &[(String, String)]) -> Result<Captured, RpcStatusCode> {
        let _turn = self.turn.lock().unwrap();
        *self.seen.0.lock().unwrap() = None;
        let status = call(&fixture().channel(&self.addr, caller), path, headers);
        let seen = self.seen.0.lock().unwrap().take();
        match (status.code(), seen) {
            (CAPTURED, Some(seen)) => Ok(seen),
            (code, None) => Err(code),
            (code, Some(_)) => panic!("{path}: the checker ran but the call ended with {code:?}"),
        }
    }
}

impl Drop for CaptureServer {
    fn drop(&mut self) {
        let _ = block_on(self.server.lock().unwrap().shutdown());
    }
}

impl Fixture {
    fn capture_server(&self, tls: bool) -> Arc<CaptureServer> {
        self.capture.lock().unwrap().entry(tls).or_insert_with(|| Arc::new(CaptureServer::start(tls))).clone()
    }
}

impl Captured {
    /// The call's facts as our server gives them to the engine: grpcio's metadata and
    /// C-core's hidden `content-type`.
    fn facts(&self) -> (Vec<(&str, &[u8])>, Principals<'_>) {
        let mut headers: Vec<(&str, &[u8])> = self.headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
        headers.push(CONTENT_TYPE);
        (headers, self.peer.principals())
    }
}

fn engine(case: &Case, fixture: &Fixture) -> Answer {
    let text = std::fs::read_to_string(policy_path(&case.policy)).unwrap();
    let policy = match Policy::parse(&text) {
        Ok(policy) => policy,
        Err(e) => return Answer::Refused(e.to_string()),
    };
    let caller = case.caller.as_deref().unwrap_or("plaintext");
    let path = case.call.as_deref().unwrap_or_else(|| panic!("{}: a policy that loads needs a call", case.name));
    let seen = match fixture.capture_server(caller != "plaintext").capture(caller, path, &case.headers) {
        Ok(seen) => seen,
        // No checker ran: grpcio answered by itself (an unknown method).
        Err(code) => return Answer::Code(code),
    };
    assert_eq!(seen.path, path);
    let (headers, principals) = seen.facts();
    let decision = policy.evaluate(&CallFacts { path, headers: &headers, principals });
    Answer::Code(if decision.is_allowed() { RpcStatusCode::OK } else { RpcStatusCode::PERMISSION_DENIED })
}

// ---------------------------------------------------------------------------------------
// The parity table

#[test]
fn every_case_gives_grpc_gos_answer_on_every_target() {
    let fixture = fixture();
    assert!(fixture.table.cases.len() >= 25, "the table is the point: keep it large");
    let mut wrong = Vec::new();
    for case in &fixture.table.cases {
        for (target, run) in TARGETS {
            let answer = run(case, fixture);
            if !answer.matches(&case.expect) {
                wrong.push(format!(
                    "{target}: {} ({}): expected {}, got {answer:?}",
                    case.name, case.policy, case.expect
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} answers differ:\n{}",
        wrong.len(),
        fixture.table.cases.len() * TARGETS.len(),
        wrong.join("\n")
    );
}

#[test]
fn a_refused_policy_is_refused_with_the_place_to_fix() {
    // Each refusal names where: the rule (or setting) and, for JSON errors, line and column.
    let refusals = [
        (
            "forbidden_host.json",
            "allow_rules[0] (rule \"by_header\"): request.headers[0]: the header \"Host\" cannot be matched",
        ),
        ("unknown_field.json", "allow_rules[0] (rule \"typo\").source: unknown field \"principal\""),
        ("no_allow_rules.json", "the policy: \"allow_rules\" is not present"),
        ("rule_without_name.json", "allow_rules[0]: \"name\" is not present"),
        ("bad_audit_condition.json", "audit_logging_options.audit_condition: \"ALWAYS\" is not one of"),
    ];
    for (file, want) in refusals {
        let err = Policy::parse(&std::fs::read_to_string(policy_path(file)).unwrap()).unwrap_err().to_string();
        assert!(err.starts_with(want), "{file}: {err}");
    }
    let err = Policy::parse(&std::fs::read_to_string(policy_path("unknown_field.json")).unwrap()).unwrap_err();
    assert!(err.to_string().ends_with("at line 4 column 43"), "{err}");
}

// ---------------------------------------------------------------------------------------
// Reloads

/// A policy file that the test rewrites, atomically (a rename), as an operator's tools do.
struct PolicyFile {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl PolicyFile {
    fn new(json: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let file = PolicyFile { path: dir.path().join("policy.json"), _dir: dir };
        file.write(json);
        file
    }

    fn write(&self, json: &str) {
        let next = self.path.with_extension("next");
        std::fs::write(&next, json).unwrap();
        std::fs::rename(&next, &self.path).unwrap();
    }
}

const ONLY_SAY_HELLO: &str =
    r#"{"name": "v1", "allow_rules": [{"name": "say_hello", "request": {"paths": ["/greeter.Greeter/SayHello"]}}]}"#;
const ONLY_CHAT: &str =
    r#"{"name": "v2", "allow_rules": [{"name": "chat", "request": {"paths": ["/greeter.Greeter/Chat"]}}]}"#;
const BROKEN: &str =
    r#"{"name": "v3", "allow_rules": [{"name": "host", "request": {"headers": [{"key": "host", "values": ["*"]}]}}]}"#;

/// Calls SayHello and Chat in turn until stopped; every status, in order.
struct Traffic {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<(String, RpcStatus)>>>,
    latest: Arc<Mutex<HashMap<String, RpcStatusCode>>>,
}

impl Traffic {
    fn start(addr: &str) -> Self {
        let channel = fixture().channel(addr, "plaintext");
        let stop = Arc::new(AtomicBool::new(false));
        let latest = Arc::new(Mutex::new(HashMap::new()));
        let (stop2, latest2) = (stop.clone(), latest.clone());
        let thread = std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !stop2.load(Ordering::Relaxed) {
                for path in ["/greeter.Greeter/SayHello", "/greeter.Greeter/Chat"] {
                    let status = call(&channel, path, &[]);
                    latest2.lock().unwrap().insert(path.to_owned(), status.code());
                    seen.push((path.to_owned(), status));
                }
            }
            seen
        });
        Traffic { stop, thread: Some(thread), latest }
    }

    /// Waits until the latest answers are `want` (10 s at most: many refreshes).
    fn until(&self, want: &[(&str, RpcStatusCode)], what: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let latest = self.latest.lock().unwrap().clone();
            if want.iter().all(|(path, code)| latest.get(*path) == Some(code)) {
                return;
            }
            assert!(Instant::now() < deadline, "{what}: after 10 s the answers are still {latest:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn stop(mut self) -> Vec<(String, RpcStatus)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

#[test]
fn a_reload_applies_while_calls_flow_and_a_broken_one_keeps_the_policy_in_force() {
    let file = PolicyFile::new(ONLY_SAY_HELLO);
    let refresh = Duration::from_millis(100);
    let GoStart::Serving(go) = GoServer::start(&file.path, false, refresh) else { panic!("v1 is refused") };
    let ours = Watched::<Policy>::start(&file.path, refresh).unwrap();
    let our_server = our_server_on(&file.path, false, refresh).expect("v1 loads");
    let our_traffic = Traffic::start(&format!("127.0.0.1:{}", our_server.port()));
    let (ok, denied) = (RpcStatusCode::OK, RpcStatusCode::PERMISSION_DENIED);
    let ours_allows = |path: &str| {
        ours.current().evaluate(&CallFacts { path, headers: &[], principals: Principals::UNAUTHENTICATED }).is_allowed()
    };

    let traffic = Traffic::start(&go.addr);
    traffic.until(&[("/greeter.Greeter/SayHello", ok), ("/greeter.Greeter/Chat", denied)], "v1");
    our_traffic.until(&[("/greeter.Greeter/SayHello", ok), ("/greeter.Greeter/Chat", denied)], "v1, our server");
    assert!(ours_allows("/greeter.Greeter/SayHello") && !ours_allows("/greeter.Greeter/Chat"));

    file.write(ONLY_CHAT);
    traffic.until(&[("/greeter.Greeter/SayHello", denied), ("/greeter.Greeter/Chat", ok)], "v2 after the reload");
    our_traffic.until(
        &[("/greeter.Greeter/SayHello", denied), ("/greeter.Greeter/Chat", ok)],
        "v2 after the reload, our server",
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while ours.reloads() < 1 {
        assert!(Instant::now() < deadline, "our watcher did not reload v2 within 10 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!ours_allows("/greeter.Greeter/SayHello") && ours_allows("/greeter.Greeter/Chat"));

    file.write(BROKEN);
    // Ten refreshes of ours see the broken file; grpc-go refreshes as often.
    let deadline = Instant::now() + Duration::from_secs(20);
    while ours.failures() < 10 {
        assert!(Instant::now() < deadline, "our watcher did not refresh 10 times within 20 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    let reload_failures = || {
        common::scrape::scrape(our_server.metrics_local_addr().unwrap())
            .value("greeter_authz_policy_reload_failures_total")
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while reload_failures() < 10.0 {
        assert!(Instant::now() < deadline, "our server counted fewer than 10 broken refreshes within 20 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    let seen = traffic.stop();
    let our_seen = our_traffic.stop();
    assert_eq!(ours.reloads(), 1, "the broken file was not loaded");
    assert!(!ours_allows("/greeter.Greeter/SayHello") && ours_allows("/greeter.Greeter/Chat"), "v2 stays in force");

    // No call failed for another reason; and once v2 answered, v1 never did again.
    for (server, seen) in [("grpc-go", &seen), ("our server", &our_seen)] {
        let mut v2 = false;
        for (path, status) in seen {
            assert!([ok, denied].contains(&status.code()), "{server}: {path}: {status:?}");
            let by_v2 = (path.ends_with("/Chat")) == (status.code() == ok);
            assert!(by_v2 || !v2, "{server}: {path} answered by v1 after v2 took over: {status:?}");
            v2 |= by_v2 && path.ends_with("/Chat");
        }
        // The calls after the broken write kept v2's answers (traffic.until saw v2 before it).
        let last = &seen[seen.len() - 2..];
        assert_eq!(last.iter().map(|(_, s)| s.code()).collect::<Vec<_>>(), [denied, ok], "{server} keeps v2");
    }
    drop(go);
}

// ---------------------------------------------------------------------------------------
// Audit lines

/// A59's stdout audit line without its time, which differs by nature.
fn without_timestamp(line: &str) -> String {
    let mut json: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
    let event = json["grpc_audit_log"].as_object_mut().unwrap_or_else(|| panic!("not an audit line: {line}"));
    let time = event.remove("timestamp").unwrap_or_else(|| panic!("no timestamp in {line}"));
    let time = time.as_str().unwrap();
    assert!(time.ends_with('Z') || time.contains('+') || time.rfind('-') > Some(10), "timestamp {time}");
    serde_json::to_string(&json).unwrap()
}

#[test]
fn audit_lines_are_grpc_gos() {
    let fixture = fixture();
    let path = policy_path("audit.json");
    let policy = Policy::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let GoStart::Serving(go) = GoServer::start(&path, true, Duration::from_secs(60)) else { panic!("refused") };
    let calls = [
        ("billing", "/greeter.Greeter/SayHello"),
        ("billing", "/greeter.Greeter/Chat"),
        ("tls", "/grpc.health.v1.Health/Check"),
        ("batch", "/greeter.Greeter/GetStockPrice"),
    ];
    for (caller, method) in calls {
        call(&fixture.channel(&go.addr, caller), method, &[]);
        let go_line =
            go.lines.recv_timeout(Duration::from_secs(10)).unwrap_or_else(|_| panic!("{method}: no audit line"));

        let seen = fixture.capture_server(true).capture(caller, method, &[]).unwrap();
        let (headers, principals) = seen.facts();
        let decision = policy.evaluate(&CallFacts { path: method, headers: &headers, principals });
        assert!(policy.audits(&decision));
        let event = AuditEvent {
            rpc_method: method,
            principal: seen.peer.spiffe_id.as_deref().unwrap_or_default(),
            policy_name: decision.policy(),
            matched_rule: &decision.matched_rule(),
            authorized: decision.is_allowed(),
        };
        let ours = json_line(&event, SystemTime::now());
        assert_eq!(without_timestamp(&ours), without_timestamp(&go_line), "{caller} {method}");
        // Byte for byte, the time aside: the same keys in the same order.
        let shape = |line: &str| line.split("\"timestamp\"").next().unwrap().to_owned();
        assert_eq!(shape(&ours), shape(&go_line));
    }
    assert!(go.lines.recv_timeout(Duration::from_millis(300)).is_err(), "one line per call");
}

// ---------------------------------------------------------------------------------------
// Identities

#[derive(Deserialize, Debug)]
struct GoNames {
    uris: Vec<String>,
    dns: Vec<String>,
    subject: String,
}

#[test]
fn a_certificate_names_its_holder_as_go_reads_it() {
    let fixture = fixture();
    let mut identities: Vec<(String, Identity)> =
        fixture.table.identities.iter().map(|(n, i)| (n.clone(), i.clone())).collect();
    identities.sort_by(|a, b| a.0.cmp(&b.0));
    // And a few more subjects where Go and OpenSSL write names differently.
    let extra = |subject: &[(&str, &str)]| Identity {
        subject: subject.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..Identity::default()
    };
    identities
        .push(("several".into(), extra(&[("C", "NL"), ("L", "Delft"), ("O", "Acme"), ("OU", "ops"), ("CN", "svc")])));
    identities.push(("leading".into(), extra(&[("CN", " #lead;<x>"), ("ST", "Zuid-Holland")])));
    identities.push(("unicode".into(), extra(&[("CN", "café ünïcode"), ("0.9.2342.19200300.100.1.1", "uid7")])));
    identities.push(("empty".into(), Identity::default()));

    let mut differ_from_openssl = 0;
    for (name, identity) in &identities {
        let made;
        let issued = match fixture.clients.get(name) {
            Some(issued) => issued,
            None => {
                made = issue(&fixture.pki, identity);
                &made
            }
        };
        let pem_path = fixture.dir.path().join(format!("{name}.pem"));
        std::fs::write(&pem_path, &issued.cert).unwrap();
        let mut describe = tools().go_bin("authz-server");
        describe.arg("-describe-cert").arg(&pem_path);
        let out = output_within(describe, "authz-server -describe-cert", Duration::from_secs(60));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let go: GoNames = serde_json::from_slice(&out.stdout).unwrap();

        let ours = CertNames::from_pem(issued.cert.as_bytes()).unwrap();
        assert_eq!((&ours.uris, &ours.dns, &ours.subject), (&go.uris, &go.dns, &go.subject), "{name}");

        // Through grpcio: the names a server sees for a caller with this certificate.
        let seen = if fixture.clients.contains_key(name) {
            fixture.capture_server(true).capture(name, "/greeter.Greeter/SayHello", &[]).unwrap()
        } else {
            capture_with(fixture, issued)
        };
        let want = if !go.uris.is_empty() {
            go.uris.clone()
        } else if !go.dns.is_empty() {
            go.dns.clone()
        } else {
            vec![go.subject.clone()]
        };
        assert!(seen.peer.tls, "{name}");
        assert_eq!(seen.peer.names, want, "{name}: the names grpc-go matches");
        if seen.x509_subject.as_deref() != Some(go.subject.as_str()) {
            differ_from_openssl += 1;
        }
    }
    // Why the subject is derived from the certificate: C-core's own differs for several.
    assert!(differ_from_openssl >= 3, "C-core's x509_subject differs from Go's for {differ_from_openssl}");
}

/// A call with a certificate that is not one of the table's identities.
fn capture_with(fixture: &Fixture, issued: &Issued) -> Captured {
    let server = fixture.capture_server(true);
    let env = Arc::new(EnvBuilder::new().cq_count(1).build());
    let creds = ChannelCredentialsBuilder::new()
        .root_cert(fixture.pki.ca_pem())
        .cert(issued.cert.clone().into_bytes(), issued.key.clone().into_bytes())
        .build();
    let channel = ChannelBuilder::new(env).set_credentials(creds).connect(&server.addr);
    let _turn = server.turn.lock().unwrap();
    *server.seen.0.lock().unwrap() = None;
    assert_eq!(call(&channel, "/greeter.Greeter/SayHello", &[]).code(), CAPTURED);
    let seen = server.seen.0.lock().unwrap().take();
    seen.unwrap()
}

#[test]
fn a_plaintext_or_certificate_less_caller_has_no_names() {
    let fixture = fixture();
    let plaintext = fixture.capture_server(false).capture("plaintext", "/greeter.Greeter/SayHello", &[]).unwrap();
    assert_eq!(plaintext.peer, PeerIdentity::plaintext());
    let tls = fixture.capture_server(true).capture("tls", "/greeter.Greeter/SayHello", &[]).unwrap();
    assert_eq!(tls.peer, PeerIdentity { tls: true, names: vec![], spiffe_id: None });
    // What grpcio gives a checker of the metadata: the caller's and user-agent, as grpc-go's
    // policies see them; not content-type, which the server adds (CONTENT_TYPE).
    let keys: Vec<&str> = tls.headers.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["user-agent"]);
}

// ---------------------------------------------------------------------------------------
// Bearer tokens (grpc-go has no request principals: our engine only)

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JwtTable {
    #[allow(dead_code)] // for the reader of the file
    about: String,
    issuer: String,
    audience: String,
    token_policy: String,
    cases: Vec<JwtCase>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct JwtCase {
    name: String,
    /// How the token is made; absent: the `authorization` values below are sent as they are.
    #[serde(default)]
    token: Option<TokenSpec>,
    /// `authorization` values sent instead of `Bearer <token>` (none: no header).
    #[serde(default)]
    authorization: Option<Vec<String>>,
    call: String,
    /// "OK", "PERMISSION_DENIED", or "UNAUTHENTICATED <reason>".
    expect: String,
    /// The request principal a verified token gives.
    #[serde(default)]
    principal: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct TokenSpec {
    /// A key of [`JwtKeys::make`].
    key: String,
    /// The header's `kid`; absent: the key's own; null: none.
    #[serde(default, deserialize_with = "some")]
    kid: Option<Option<String>>,
    /// The header's `alg`, to sign with the key as an HMAC secret (`HS256`).
    #[serde(default)]
    alg: Option<String>,
    /// Claims over the defaults (iss, aud, sub "billing", exp in 10 minutes); null drops one.
    #[serde(default)]
    claims: serde_json::Map<String, serde_json::Value>,
    /// `exp` and `nbf` relative to now, in seconds.
    #[serde(default)]
    exp_in: Option<i64>,
    #[serde(default)]
    nbf_in: Option<i64>,
}

fn some<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// The test's signing keys: name → (algorithm, kid, private PEM, the public key as a JWK).
struct TestKey {
    alg: jsonwebtoken::Algorithm,
    kid: &'static str,
    private_pem: String,
    jwk: serde_json::Value,
    public_pem: String,
}

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn test_key(alg: &'static rcgen::SignatureAlgorithm, kid: &'static str) -> TestKey {
    let pair = rcgen::KeyPair::generate_for(alg).unwrap();
    let raw = pair.public_key_raw();
    let (alg, jwk) = if alg == &rcgen::PKCS_ED25519 {
        (
            jsonwebtoken::Algorithm::EdDSA,
            serde_json::json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64url(raw)}),
        )
    } else {
        let (x, y) = raw[1..].split_at(32);
        let jwk =
            serde_json::json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": b64url(x), "y": b64url(y), "use": "sig"});
        (jsonwebtoken::Algorithm::ES256, jwk)
    };
    TestKey { alg, kid, private_pem: pair.serialize_pem(), jwk, public_pem: pair.public_key_pem() }
}

fn make_token(spec: &TokenSpec, keys: &HashMap<&str, TestKey>, issuer: &str, audience: &str) -> String {
    let key = keys.get(spec.key.as_str()).unwrap_or_else(|| panic!("no test key {:?}", spec.key));
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let mut claims = serde_json::json!({"iss": issuer, "aud": audience, "sub": "billing", "exp": now + 600});
    let object = claims.as_object_mut().unwrap();
    if let Some(exp_in) = spec.exp_in {
        object.insert("exp".into(), (now + exp_in).into());
    }
    if let Some(nbf_in) = spec.nbf_in {
        object.insert("nbf".into(), (now + nbf_in).into());
    }
    for (name, value) in &spec.claims {
        if value.is_null() {
            object.remove(name);
        } else {
            object.insert(name.clone(), value.clone());
        }
    }
    let kid = spec.kid.clone().unwrap_or_else(|| Some(key.kid.to_owned()));
    match spec.alg.as_deref() {
        None => {
            let mut header = jsonwebtoken::Header::new(key.alg);
            header.kid = kid;
            let encoding = match key.alg {
                jsonwebtoken::Algorithm::EdDSA => jsonwebtoken::EncodingKey::from_ed_pem(key.private_pem.as_bytes()),
                _ => jsonwebtoken::EncodingKey::from_ec_pem(key.private_pem.as_bytes()),
            };
            jsonwebtoken::encode(&header, &claims, &encoding.unwrap()).unwrap()
        }
        // The key-confusion forgery: the public key's PEM used as an HMAC secret.
        Some("HS256") => {
            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
            header.kid = kid;
            let secret = jsonwebtoken::EncodingKey::from_secret(key.public_pem.as_bytes()).unwrap();
            jsonwebtoken::encode(&header, &claims, &secret).unwrap()
        }
        // Unsigned: the header {"alg":"none"} and an empty signature.
        Some("none") => {
            let signed = jsonwebtoken::encode(&jsonwebtoken::Header::new(key.alg), &claims, &{
                match key.alg {
                    jsonwebtoken::Algorithm::EdDSA => {
                        jsonwebtoken::EncodingKey::from_ed_pem(key.private_pem.as_bytes())
                    }
                    _ => jsonwebtoken::EncodingKey::from_ec_pem(key.private_pem.as_bytes()),
                }
                .unwrap()
            })
            .unwrap();
            format!("{}.{}.", b64url(br#"{"alg":"none"}"#), signed.split('.').nth(1).unwrap())
        }
        Some(other) => panic!("alg {other:?}: the table makes HS256 and none forgeries only"),
    }
}

/// The JWKS the verifier trusts: the first two keys; the others sign forgeries.
fn jwks(keys: &[&TestKey]) -> String {
    serde_json::json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}).to_string()
}

/// What our server would answer a call carrying `authorization` values: a bad token
/// UNAUTHENTICATED with its reason, else the token policy's decision.
fn token_answer(
    verifier: &JwtVerifier,
    policy: &Policy,
    path: &str,
    authorization: &[String],
) -> (String, Option<String>) {
    let headers: Vec<(&str, &[u8])> = authorization.iter().map(|v| ("authorization", v.as_bytes())).collect();
    let principal = match bearer_token(&headers).and_then(|token| verifier.verify(token)) {
        Ok(principal) => principal,
        Err(e) => {
            let message = e.to_string();
            for value in authorization {
                let token = value.get(7..).unwrap_or_default();
                assert!(token.len() < 12 || !message.contains(token), "the message shows the token: {message}");
            }
            return (format!("UNAUTHENTICATED {}", e.reason()), None);
        }
    };
    let decision = policy.evaluate(&CallFacts { path, headers: &headers, principals: principal.principals() });
    let code = if decision.is_allowed() { "OK" } else { "PERMISSION_DENIED" };
    (code.to_owned(), Some(principal.name().to_owned()))
}

#[test]
fn every_token_case_gets_its_answer() {
    let table: JwtTable = serde_json::from_str(&std::fs::read_to_string(repo().join(JWT_CASES)).unwrap())
        .unwrap_or_else(|e| panic!("{JWT_CASES}: {e}"));
    let keys: HashMap<&str, TestKey> = HashMap::from([
        ("es256", test_key(&rcgen::PKCS_ECDSA_P256_SHA256, "es-1")),
        ("ed25519", test_key(&rcgen::PKCS_ED25519, "ed-1")),
        // Not in the JWKS: same kid as a trusted key, and a kid nobody knows.
        ("stranger", test_key(&rcgen::PKCS_ECDSA_P256_SHA256, "es-1")),
        ("unlisted", test_key(&rcgen::PKCS_ECDSA_P256_SHA256, "es-9")),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let jwks_path = dir.path().join("jwks.json");
    std::fs::write(&jwks_path, jwks(&[&keys["es256"], &keys["ed25519"]])).unwrap();
    let verifier = JwtVerifier::start(&JwtSettings {
        issuer: table.issuer.clone(),
        audience: table.audience.clone(),
        keys: JwtKeys::Jwks { path: jwks_path, refresh: Duration::from_secs(60) },
    })
    .unwrap();
    let policy = Policy::parse(&std::fs::read_to_string(policy_path(&table.token_policy)).unwrap()).unwrap();
    // Our server, checking the same tokens against the same JWKS and token policy.
    let mut config = common::local();
    config.metrics_addr = Some("127.0.0.1:0".to_owned());
    config.authorization = Some(Authorization {
        token_policy: Some(policy_path(&table.token_policy)),
        tokens: Some(TokenCheck {
            issuer: table.issuer.clone(),
            audience: table.audience.clone(),
            keys: TokenKeys::Jwks(dir.path().join("jwks.json")),
            required: true,
        }),
        ..Authorization::default()
    });
    let server = config.start().unwrap();
    let channel = fixture().channel(&format!("127.0.0.1:{}", server.port()), "plaintext");
    let scrape = || common::scrape::scrape(server.metrics_local_addr().unwrap());

    assert!(table.cases.len() >= 15);
    let mut wrong = Vec::new();
    for case in &table.cases {
        let authorization = match (&case.token, &case.authorization) {
            (Some(spec), None) => vec![format!("Bearer {}", make_token(spec, &keys, &table.issuer, &table.audience))],
            (None, Some(values)) => values.clone(),
            (None, None) => vec![],
            (Some(_), Some(_)) => panic!("{}: a token or authorization values, not both", case.name),
        };
        let (answer, principal) = token_answer(&verifier, &policy, &case.call, &authorization);
        if answer != case.expect || (case.principal.is_some() && principal != case.principal) {
            wrong.push(format!(
                "{}: expected {} {:?}, got {answer} {principal:?}",
                case.name, case.expect, case.principal
            ));
        }
        // Our server: the same code; a refused call refused before its handler ran (counted
        // with its reason, no reply sent); the token never in the message.
        let (service, method) = case.call.trim_start_matches('/').split_once('/').unwrap();
        // Replies the method has sent, whatever its kind (the one label not given).
        let sent_total = |m: &common::scrape::Metrics| -> f64 {
            let (service, method) = (format!("grpc_service=\"{service}\""), format!("grpc_method=\"{method}\""));
            m.0.lines()
                .filter(|l| l.starts_with("grpc_server_msg_sent_total{") && l.contains(&service) && l.contains(&method))
                .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
                .sum()
        };
        let before = scrape();
        let headers: Vec<(String, String)> =
            authorization.iter().map(|v| ("authorization".to_owned(), v.clone())).collect();
        let status = call(&channel, &case.call, &headers);
        let after = scrape();
        let (code, reason) = case.expect.split_once(' ').unwrap_or((case.expect.as_str(), "policy"));
        let ours = code_name(status.code());
        if ours != code {
            wrong.push(format!(
                "our server: {}: expected {}, got {ours} {:?}",
                case.name,
                case.expect,
                status.message()
            ));
        }
        if code != "OK" {
            let refused = [("grpc_service", service), ("grpc_method", method), ("reason", reason)];
            let counted = after.get("greeter_authz_refused_total", &refused).unwrap_or(0.0)
                - before.get("greeter_authz_refused_total", &refused).unwrap_or(0.0);
            if counted != 1.0 || sent_total(&after) != sent_total(&before) {
                wrong.push(format!(
                    "our server: {}: refused {counted} times as {reason:?}; replies sent: {} → {}",
                    case.name,
                    sent_total(&before),
                    sent_total(&after)
                ));
            }
            for value in &authorization {
                let token = value.get(7..).unwrap_or_default();
                assert!(
                    token.len() < 12 || !status.message().contains(token),
                    "our server shows the token: {status:?}"
                );
            }
        }
    }
    assert!(wrong.is_empty(), "{} of {} token cases differ:\n{}", wrong.len(), table.cases.len(), wrong.join("\n"));
}

#[test]
fn a_rotated_jwks_applies_within_the_refresh() {
    let old = test_key(&rcgen::PKCS_ECDSA_P256_SHA256, "2026-11");
    let new = test_key(&rcgen::PKCS_ED25519, "2026-12");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks(&[&old])).unwrap();
    let settings = JwtSettings {
        issuer: "https://issuer.example".into(),
        audience: "greeter".into(),
        keys: JwtKeys::Jwks { path: path.clone(), refresh: Duration::from_millis(50) },
    };
    let verifier = JwtVerifier::start(&settings).unwrap();
    let keys = HashMap::from([("old", old), ("new", new)]);
    let token = |key: &str| {
        let spec =
            TokenSpec { key: key.into(), kid: None, alg: None, claims: Default::default(), exp_in: None, nbf_in: None };
        make_token(&spec, &keys, "https://issuer.example", "greeter")
    };
    verifier.verify(&token("old")).unwrap();
    assert_eq!(verifier.verify(&token("new")).unwrap_err().reason(), "unknown_key");

    std::fs::write(&path, jwks(&[&keys["new"]])).unwrap();
    let watched: &Watched<KeySet> = verifier.jwks().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while watched.reloads() < 1 {
        assert!(Instant::now() < deadline, "the JWKS was not reloaded within 10 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    verifier.verify(&token("new")).unwrap();
    assert_eq!(verifier.verify(&token("old")).unwrap_err().reason(), "unknown_key");

    std::fs::write(&path, "{\"keys\": [}").unwrap();
    while watched.failures() < 2 {
        assert!(Instant::now() < deadline + Duration::from_secs(10), "the broken JWKS was not noticed");
        std::thread::sleep(Duration::from_millis(5));
    }
    verifier.verify(&token("new")).unwrap();
}

// ---------------------------------------------------------------------------------------
// Clients that carry tokens, and where identity does not reach

/// A token policy that lets `https://issuer.example/billing` call every method.
const BILLING_CALLS_ALL: &str = r#"{"name": "tokens", "allow_rules": [{"name": "billing", "source": {"principals": ["https://issuer.example/billing"]}}]}"#;

/// A server that checks tokens signed by a key of the test's (required or not) against the
/// token policy `policy`; and a valid token for `https://issuer.example/billing`.
struct TokenServer {
    server: greeter::GreeterServer,
    token: String,
    _dir: tempfile::TempDir,
}

impl TokenServer {
    fn start(required: bool, policy: &str) -> Self {
        let key = test_key(&rcgen::PKCS_ED25519, "ed-1");
        let dir = tempfile::tempdir().unwrap();
        let jwks_path = dir.path().join("jwks.json");
        std::fs::write(&jwks_path, jwks(&[&key])).unwrap();
        let token_policy = dir.path().join("token-policy.json");
        std::fs::write(&token_policy, policy).unwrap();
        let mut config = common::local();
        config.greeter.stock_interval = Duration::from_millis(5);
        config.authorization = Some(Authorization {
            token_policy: Some(token_policy),
            tokens: Some(TokenCheck {
                issuer: "https://issuer.example".into(),
                audience: "greeter".into(),
                keys: TokenKeys::Jwks(jwks_path),
                required,
            }),
            ..Authorization::default()
        });
        let server = config.start().unwrap();
        let keys = HashMap::from([("ed25519", key)]);
        let spec: TokenSpec = serde_json::from_str(r#"{"key": "ed25519"}"#).unwrap();
        let token = make_token(&spec, &keys, "https://issuer.example", "greeter");
        TokenServer { server, token, _dir: dir }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.server.port())
    }
}

/// Our client (`GreeterBuilder::bearer_token`), grpc-go's and Python's (`--token`) each make
/// all four calls with a token; without one, the same call is UNAUTHENTICATED, saying so.
#[test]
fn clients_of_every_language_send_tokens_and_call_all_four_patterns() {
    let server = TokenServer::start(true, BILLING_CALLS_ALL);
    let with_token = greeter::Greeter::builder(&server.addr(), CALL_DEADLINE).bearer_token(&server.token).build();
    common::assert_all_four_patterns(&with_token.unwrap().into(), "Rust client with a token");
    let without = greeter::blocking::Greeter::new(&server.addr(), CALL_DEADLINE).say_hello("no token").unwrap_err();
    assert_eq!(without.code(), Some(RpcStatusCode::UNAUTHENTICATED), "{without}");
    assert!(without.to_string().contains("no bearer token"), "{without}");

    for (what, mut cmd) in [
        ("the Go interop client", tools().go_bin("interop-client")),
        ("the Python interop client", tools().python("tests/interop/python/interop_client.py")),
    ] {
        cmd.args(["--addr", &server.addr(), "--ticks", "5", "--token", &server.token]);
        let out = output_within(cmd, what, common::process::DEADLINE);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && stdout.lines().any(|l| l == "OK all four patterns"), "{what}:\n{stdout}");
    }
}

/// C-core's round_robin health checks (`Health/Watch`) carry no token: where tokens are
/// required, every subchannel's health check is refused, no replica is ever healthy, and a
/// balancing client's calls end UNAVAILABLE, though they carry a valid token. A token policy
/// that lets anyone watch health, with tokens not required, balances as usual; and a
/// pick_first client (no health checks) is served either way.
#[test]
fn where_tokens_are_required_a_health_checking_client_cannot_balance() {
    use greeter::LoadBalancing;
    let balancing = |server: &TokenServer| {
        greeter::Greeter::builder(&format!("ipv4:{}", server.addr()), Duration::from_secs(5))
            .load_balancing(LoadBalancing::RoundRobin)
            .retry_unavailable(false)
            .bearer_token(&server.token)
            .build()
            .unwrap()
    };
    let required = TokenServer::start(true, BILLING_CALLS_ALL);
    let err = block_on(balancing(&required).say_hello("balanced")).unwrap_err();
    assert_eq!(err.code(), Some(RpcStatusCode::UNAVAILABLE), "{err}");
    let direct = greeter::Greeter::builder(&required.addr(), CALL_DEADLINE).bearer_token(&required.token).build();
    assert_eq!(block_on(direct.unwrap().say_hello("direct")).unwrap(), "Hello direct");

    let health_for_all = r#"{"name": "tokens", "allow_rules": [
        {"name": "health", "request": {"paths": ["/grpc.health.v1.Health/*"]}},
        {"name": "billing", "source": {"principals": ["https://issuer.example/billing"]}}]}"#;
    let exempt = TokenServer::start(false, health_for_all);
    assert_eq!(block_on(balancing(&exempt).say_hello("balanced")).unwrap(), "Hello balanced");
    let without = block_on(greeter::Greeter::new(&exempt.addr(), CALL_DEADLINE).say_hello("none")).unwrap_err();
    assert_eq!(without.code(), Some(RpcStatusCode::PERMISSION_DENIED), "{without}");
}
