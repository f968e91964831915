//! grpc_health_probe (grpc-ecosystem/grpc-health-probe v0.4.62, what Kubernetes images and
//! most platforms probe gRPC servers with; installed by `tests/interop/setup.sh`) against the
//! server: plaintext, TLS and mutual TLS, and across a graceful shutdown. Its exit codes: 0
//! SERVING, 2 cannot connect, 3 the health call failed, 4 NOT_SERVING.

mod common;

use std::process::Command;
use std::time::Duration;

use common::process::output_within;
use common::tools::tools;
use common::TestServer;
use futures::executor::block_on;
use futures::TryStreamExt as _;
use greeter::proto::health::health_check_response::ServingStatus;
use greeter::proto::health::{HealthCheckRequest, HealthClient};

const SERVING: i32 = 0;
const CANNOT_CONNECT: i32 = 2;
const CALL_FAILED: i32 = 3;
const NOT_SERVING: i32 = 4;

/// The probe against `addr` with `args`: its exit code and what it printed. Generous
/// timeouts (its defaults are 1 s), so a busy machine is not a failed probe.
fn probe(addr: &str, args: &[&str]) -> (i32, String) {
    let mut cmd: Command = tools().go_bin("grpc-health-probe");
    cmd.args(["-addr", addr, "-connect-timeout", "10s", "-rpc-timeout", "10s"]).args(args);
    let out = output_within(cmd, &format!("grpc-health-probe {args:?}"), Duration::from_secs(60));
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().expect("the probe exits"), said.trim().to_owned())
}

#[test]
fn the_probe_finds_the_server_and_greeter_serving() {
    let server = TestServer::start(common::local());
    assert_eq!(probe(&server.addr, &[]), (SERVING, "status: SERVING".to_owned()));
    assert_eq!(probe(&server.addr, &["-service", "greeter.Greeter"]), (SERVING, "status: SERVING".to_owned()));
    let (code, said) = probe(&server.addr, &["-service", "no.Such"]);
    assert_eq!(code, CALL_FAILED, "{said}");
    assert!(said.contains("code = NotFound desc = unknown service \"no.Such\""), "{said}");
}

#[test]
fn the_probe_cannot_connect_where_nothing_listens() {
    let refused = common::RefusedPort::hold();
    let (code, said) = probe(&refused.addr, &["-connect-timeout", "2s"]);
    assert_eq!(code, CANNOT_CONNECT, "{said}");
}

/// On shutdown, health turns NOT_SERVING at once and the server serves on for `drain` while
/// someone watches its health: a probe in that window is told NOT_SERVING (exit 4), before the
/// port closes; once the server has stopped, the probe cannot connect (exit 2).
#[test]
fn during_a_graceful_shutdown_the_probe_is_told_not_serving_before_the_port_closes() {
    let mut config = common::local();
    config.shutdown.drain = Duration::from_secs(15); // far longer than the probe takes, even loaded
    let server = TestServer::start(config);
    let addr = server.addr.clone();
    // A health watcher (as a balancing client keeps), which makes the server drain.
    let health = HealthClient::new(server.channel());
    let mut watch = health.watch_opt(&HealthCheckRequest::default(), common::deadline()).unwrap();
    let status = |w: &mut grpcio::ClientSStreamReceiver<_>| {
        let reply: greeter::proto::health::HealthCheckResponse = block_on(w.try_next()).unwrap().expect("a status");
        reply.status.enum_value_or_default()
    };
    assert_eq!(status(&mut watch), ServingStatus::SERVING);
    assert_eq!(probe(&addr, &[]).0, SERVING);

    let stopping = std::thread::spawn(move || server.shutdown());
    assert_eq!(status(&mut watch), ServingStatus::NOT_SERVING, "the watcher hears it first");
    let (code, said) = probe(&addr, &[]);
    assert_eq!((code, said.as_str()), (NOT_SERVING, "service unhealthy (responded with \"NOT_SERVING\")"));
    let (code, said) = probe(&addr, &["-service", "greeter.Greeter"]);
    assert_eq!(code, NOT_SERVING, "{said}");

    let outcome = stopping.join().unwrap();
    assert!(outcome.elapsed >= Duration::from_secs(15), "the drain was served in full: {outcome:?}");
    let (code, said) = probe(&addr, &["-connect-timeout", "2s"]);
    assert_eq!(code, CANNOT_CONNECT, "the port is closed once the server stopped: {said}");
}

#[cfg(tls)]
mod tls {
    use super::*;
    use common::pki::{PemFiles, Pki};

    fn server(pki: &Pki, mutual: bool) -> TestServer {
        let mut config = common::local();
        config.tls = Some(pki.server_tls(mutual));
        TestServer::start(config)
    }

    #[test]
    fn the_probe_checks_a_tls_server() {
        let pki = Pki::new("greeter probe CA");
        let server = server(&pki, false);
        let files = PemFiles::new(&pki, pki.client());
        let tls = ["-tls", "-tls-ca-cert", &files.path("ca.pem"), "-tls-server-name", "localhost"];
        assert_eq!(probe(&server.addr, &tls), (SERVING, "status: SERVING".to_owned()));
        // Plaintext against TLS: no connection.
        assert_eq!(probe(&server.addr, &["-connect-timeout", "2s"]).0, CANNOT_CONNECT);
    }

    #[test]
    fn the_probe_checks_a_mutual_tls_server_with_a_client_certificate() {
        let pki = Pki::new("greeter probe CA");
        let server = server(&pki, true);
        let files = PemFiles::new(&pki, pki.client());
        let (ca, cert, key) = (files.path("ca.pem"), files.path("client.pem"), files.path("client.key"));
        let tls = ["-tls", "-tls-ca-cert", &ca, "-tls-server-name", "localhost"];
        let mutual = [&tls[..], &["-tls-client-cert", &cert, "-tls-client-key", &key]].concat();
        assert_eq!(probe(&server.addr, &mutual), (SERVING, "status: SERVING".to_owned()));
        // Without a client certificate the handshake fails: no connection.
        let (code, said) = probe(&server.addr, &[&tls[..], &["-connect-timeout", "2s"]].concat());
        assert_eq!(code, CANNOT_CONNECT, "{said}");
    }
}
