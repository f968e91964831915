//! Replicas named by a service mesh's control plane: clients dial `xds:///greeter` and learn
//! the servers from `xds-control-plane` (go-control-plane, over ADS) — an API listener with an
//! inline route to one EDS cluster, whose localities and endpoints each test sets and changes.
//! The replicas are our server, in this process; where each call went is in their access logs.
//!
//! C-core's xDS client is process-wide and reads its bootstrap once, so each client runs in a
//! process of its own: ours (the `xds_client`, `soak` and `say_hello` examples) and grpc-go's
//! (`xds-client`) as the reference, each with a bootstrap that names it (its node id), so the
//! control plane's ACK lines say which client accepted which version.

#[path = "xds/clients.rs"]
mod clients;
mod common;
#[path = "xds/control_plane.rs"]
mod control_plane;
#[path = "xds/replicas.rs"]
mod replicas;

use std::time::{Duration, SystemTime};

use clients::{rust_example, xds_client, Bootstrap, Lang, Running};
use common::process::{output_within, DEADLINE};
use common::RefusedPort;
use control_plane::{ControlPlane, Locality};
use replicas::{calls, say_hellos, wait_calls, wait_say_hellos, wait_warm, Replica};

/// How soon after the control plane serves new endpoints the calls follow them: the first
/// call on an added endpoint, the last one on a removed endpoint, start within this. (They
/// take under 20 ms here; the rest is room for a loaded machine.)
const FOLLOW_BOUND: Duration = Duration::from_secs(2);

/// How soon a client reconnects to a control plane that is back (see
/// `survives_the_control_plane_going_away`).
const RECONNECT_BOUND: Duration = Duration::from_secs(10);

fn one_locality(replicas: &[&Replica]) -> Vec<Locality<'static>> {
    vec![Locality { zone: "a", weight: 1, endpoints: replicas.iter().map(|r| r.addr.clone()).collect() }]
}

fn node(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => "greeter-rust",
        Lang::Go => "grpc-go",
    }
}

/// A bootstrap file naming `plane`, for the client of `lang`.
fn bootstrap_file(dir: &tempfile::TempDir, plane: &ControlPlane, lang: Lang) -> Bootstrap {
    let path = dir.path().join(format!("bootstrap-{}.json", node(lang)));
    std::fs::write(&path, plane.bootstrap(node(lang))).unwrap();
    Bootstrap::File(path)
}

fn millis_between(earlier: SystemTime, later: SystemTime) -> i128 {
    match later.duration_since(earlier) {
        Ok(d) => d.as_millis() as i128,
        Err(e) => -(e.duration().as_millis() as i128),
    }
}

/// Once the client's channel has connected to all three endpoints the control plane lists
/// (its warm-up health checks reached each), round robin takes them in turn: 300 calls land
/// exactly 100 on each.
fn spreads_300_calls_over_the_listed_replicas(lang: Lang) {
    let dir = tempfile::tempdir().unwrap();
    let replicas = replicas::start(dir.path(), 3);
    let all: Vec<&Replica> = replicas.iter().collect();
    let mut plane = ControlPlane::start();
    plane.serve(&one_locality(&all));

    let cmd = xds_client(lang, &bootstrap_file(&dir, &plane, lang), &["--warmup", "--calls", "300"]);
    let mut client = Running::start(cmd, &format!("the {lang:?} xDS client"));
    wait_warm(&all);
    client.go_on();
    let (ok, failed, stderr) = client.finish_calls();
    assert_eq!((ok, failed), (300, 0), "{lang:?}: {stderr}");
    wait_say_hellos(&all, "the logs show all 300 calls", |c| c.iter().sum::<usize>() == 300);
    assert_eq!(say_hellos(&all), [100, 100, 100], "{lang:?}: SayHello calls per replica");
}

#[test]
fn our_client_spreads_300_calls_over_the_replicas_the_control_plane_lists() {
    spreads_300_calls_over_the_listed_replicas(Lang::Rust);
}

#[test]
fn grpc_go_spreads_300_calls_over_the_replicas_the_control_plane_lists() {
    spreads_300_calls_over_the_listed_replicas(Lang::Go);
}

/// Two localities weighted 3:1, a replica each: of 400 calls, the first takes 300 ± 40. The
/// locality is picked at random with those weights (C-core's and grpc-go's weighted_target
/// alike), so the count is binomial, its standard deviation 8.7: ± 40 is 4.6 of them, a
/// chance of some 4 in a million that a correct client fails the test.
fn honours_locality_weights_3_to_1(lang: Lang, bootstrap: impl Fn(&ControlPlane) -> Bootstrap) {
    let dir = tempfile::tempdir().unwrap();
    let replicas = replicas::start(dir.path(), 2);
    let all: Vec<&Replica> = replicas.iter().collect();
    let mut plane = ControlPlane::start();
    plane.serve(&[
        Locality { zone: "a", weight: 3, endpoints: vec![replicas[0].addr.clone()] },
        Locality { zone: "b", weight: 1, endpoints: vec![replicas[1].addr.clone()] },
    ]);

    let cmd = xds_client(lang, &bootstrap(&plane), &["--warmup", "--calls", "400"]);
    let mut client = Running::start(cmd, &format!("the {lang:?} xDS client"));
    wait_warm(&all);
    client.go_on();
    let (ok, failed, stderr) = client.finish_calls();
    assert_eq!((ok, failed), (400, 0), "{lang:?}: {stderr}");
    let counts = wait_say_hellos(&all, "the logs show all 400 calls", |c| c.iter().sum::<usize>() == 400);
    eprintln!("{lang:?}: 400 calls over localities weighted 3:1: {counts:?}");
    assert!((260..=340).contains(&counts[0]), "{lang:?}: {counts:?} is not 3:1 within ± 40 calls");
}

#[test]
fn our_client_honours_locality_weights_3_to_1() {
    // The bootstrap's JSON itself, in GRPC_XDS_BOOTSTRAP_CONFIG (the other tests use a file).
    honours_locality_weights_3_to_1(Lang::Rust, |plane| Bootstrap::Config(plane.bootstrap(node(Lang::Rust))));
}

#[test]
fn grpc_go_honours_locality_weights_3_to_1() {
    let dir = tempfile::tempdir().unwrap();
    honours_locality_weights_3_to_1(Lang::Go, |plane| bootstrap_file(&dir, plane, Lang::Go));
}

/// Endpoints change while calls flow: one added, then one removed. Each time, the client
/// accepts the update (the control plane hears its ACK), and its calls follow within
/// [`FOLLOW_BOUND`] of the control plane serving it. `calls_flow` starts the calling client,
/// which must exit 0; returns its stdout.
fn follows_endpoint_updates(lang: Lang, calls_flow: impl FnOnce(&Bootstrap) -> Running) -> String {
    let dir = tempfile::tempdir().unwrap();
    let replicas = replicas::start(dir.path(), 3);
    let [a, b, c] = [&replicas[0], &replicas[1], &replicas[2]];
    let mut plane = ControlPlane::start();
    plane.serve(&one_locality(&[a, b]));
    let mut client = calls_flow(&bootstrap_file(&dir, &plane, lang));
    wait_calls(&[a, b], "both first replicas get calls", |n| n.iter().all(|&n| n >= 20));

    let (added, served) = plane.serve(&one_locality(&[a, b, c]));
    plane.wait_acked(node(lang), &added);
    wait_calls(&[c], "the added replica gets calls", |n| n[0] >= 20);
    let first_on_c = c.first_call_since(served).expect("calls on the added replica");
    let add_ms = millis_between(served, first_on_c);

    let (removed, served) = plane.serve(&one_locality(&[b, c]));
    plane.wait_acked(node(lang), &removed);
    let after = calls(&[b, c]);
    wait_calls(&[b, c], "the other two serve on", |n| n[0] >= after[0] + 50 && n[1] >= after[1] + 50);
    let last_on_a = a.last_call().expect("calls on the removed replica");
    let remove_ms = millis_between(served, last_on_a);
    assert!(client.running(), "{lang:?}: the client stopped before both updates were followed");

    let (status, stdout, stderr) = client.finish();
    eprintln!("{lang:?}: first call on the added endpoint {add_ms} ms after it was served, last on the removed one {remove_ms} ms after");
    assert!(status.success(), "{lang:?} ({status}): {stdout}\n{stderr}");
    assert!(
        add_ms <= FOLLOW_BOUND.as_millis() as i128,
        "{lang:?}: the added endpoint got its first call after {add_ms} ms"
    );
    assert!(
        remove_ms <= FOLLOW_BOUND.as_millis() as i128,
        "{lang:?}: the removed endpoint got a call {remove_ms} ms later"
    );
    stdout
}

/// Our client under the soak (all four patterns, four connections), across both updates: no
/// error.
#[test]
fn a_soak_through_xds_follows_endpoint_updates_without_an_error() {
    let stdout = follows_endpoint_updates(Lang::Rust, |bootstrap| {
        let mut soak = rust_example("soak", "xds:///greeter", bootstrap);
        // Far longer than the updates take; the test fails if they outlast it.
        soak.args(["--clients", "4", "--duration", "6s"]);
        Running::start(soak, "the soak")
    });
    let line = |name: &str| stdout.lines().find(|l| l.starts_with(name)).unwrap_or_default().to_owned();
    eprintln!("soak: {} / {}", line("calls"), line("errors"));
    assert_eq!(line("errors"), "errors            none", "{stdout}");
}

#[test]
fn grpc_go_follows_endpoint_updates_without_a_failed_call() {
    let stdout = follows_endpoint_updates(Lang::Go, |bootstrap| {
        let cmd = xds_client(Lang::Go, bootstrap, &["--until-eof", "--workers", "4"]);
        Running::start(cmd, "the Go xDS client")
    });
    assert!(stdout.trim_end().ends_with(" failed=0"), "{stdout}");
}

/// The control plane goes away under load: the client keeps calling the endpoints it last
/// heard of, and no call fails. While it is away the client's attempts to reconnect fail (a
/// listener on its port accepts each connection and closes it at once, and the test waits for
/// one such attempt). Back on its port with new endpoints, the client reconnects and follows.
fn survives_the_control_plane_going_away(lang: Lang) {
    let dir = tempfile::tempdir().unwrap();
    let replicas = replicas::start(dir.path(), 3);
    let [a, b, c] = [&replicas[0], &replicas[1], &replicas[2]];
    let mut plane = ControlPlane::start();
    let port = plane.port;
    plane.serve(&one_locality(&[a, b]));
    let cmd = xds_client(lang, &bootstrap_file(&dir, &plane, lang), &["--until-eof", "--workers", "4"]);
    let client = Running::start(cmd, &format!("the {lang:?} xDS client"));
    wait_calls(&[a, b], "both replicas get calls", |n| n.iter().all(|&n| n >= 20));

    plane.kill();
    let away = std::net::TcpListener::bind(("127.0.0.1", port)).expect("the control plane's port is free again");
    let attempt = std::thread::spawn(move || drop(away.accept().expect("the client tries to reconnect")));
    let at_kill = calls(&[a, b]);
    wait_calls(&[a, b], "calls go on without the control plane", |n| {
        attempt.is_finished() && n[0] >= at_kill[0] + 100 && n[1] >= at_kill[1] + 100
    });
    attempt.join().unwrap(); // the listener closes with it
    assert_eq!(c.served().len(), 0, "the replica nobody named got calls");

    let back = SystemTime::now();
    let mut plane = ControlPlane::start_on(port);
    let (version, _) = plane.serve(&one_locality(&[c]));
    let acked = plane.wait_acked(node(lang), &version);
    let resumed_ms = millis_between(back, acked);
    wait_calls(&[c], "calls follow the new endpoints", |n| n[0] >= 50);
    let (last_a, last_b) = (a.last_call().unwrap(), b.last_call().unwrap());
    let (ok, failed, stderr) = client.finish_calls();
    eprintln!(
        "{lang:?}: {ok} calls, none failed; back, the control plane heard the client's ACK after {resumed_ms} ms"
    );
    assert_eq!(failed, 0, "{lang:?}: {ok} calls OK; {stderr}");
    // The client retries with backoff (1 s, then 1.6 times longer each time, ± 20 %), and a
    // retry may still find the port closed while the control plane starts: 10 s covers the
    // next three.
    assert!(resumed_ms <= RECONNECT_BOUND.as_millis() as i128, "{lang:?}: reconnected after {resumed_ms} ms");
    for (name, last) in [("a", last_a), ("b", last_b)] {
        let ms = millis_between(acked, last);
        assert!(ms <= FOLLOW_BOUND.as_millis() as i128, "{lang:?}: replica {name} got a call {ms} ms after the ACK");
    }
}

#[test]
fn our_client_survives_the_control_plane_going_away() {
    survives_the_control_plane_going_away(Lang::Rust);
}

#[test]
fn grpc_go_survives_the_control_plane_going_away() {
    survives_the_control_plane_going_away(Lang::Go);
}

/// `say_hello --addr TARGET` with `bootstrap`: it must fail; returns its error line.
fn say_hello_fails(target: &str, bootstrap: &Bootstrap, deadline: &str) -> String {
    let mut cmd = rust_example("say_hello", target, bootstrap);
    cmd.args(["--deadline", deadline]);
    let out = output_within(cmd, "say_hello", DEADLINE);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "say_hello through {target} succeeded: {stderr}");
    let error = stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("no error line: {stderr}"));
    error.to_owned()
}

#[test]
fn without_a_bootstrap_the_error_says_how_to_give_one() {
    let error = say_hello_fails("xds:///greeter", &Bootstrap::Missing, "10s");
    assert_eq!(
        error,
        "error: cannot find the servers of xds:///greeter: no xDS bootstrap: set GRPC_XDS_BOOTSTRAP to the \
         bootstrap file's path (or GRPC_XDS_BOOTSTRAP_CONFIG to its JSON) in the client's environment before it starts"
    );

    let dir = tempfile::tempdir().unwrap();
    let error = say_hello_fails("xds:///greeter", &Bootstrap::File(dir.path().join("missing.json")), "10s");
    assert_eq!(
        error,
        "error: cannot find the servers of xds:///greeter: its xDS bootstrap (GRPC_XDS_BOOTSTRAP or \
         GRPC_XDS_BOOTSTRAP_CONFIG) is unusable: Failed to load file"
    );
}

#[test]
fn an_unreachable_control_plane_is_named_in_the_error() {
    let refused = RefusedPort::hold();
    let bootstrap = Bootstrap::Config(control_plane::bootstrap(&refused.addr, "greeter-rust"));
    let error = say_hello_fails("xds:///greeter", &bootstrap, "10s");
    assert_eq!(
        error,
        format!(
            "error: cannot find the servers of xds:///greeter: the xDS control plane at {} (named in the \
             bootstrap) is unreachable: connection refused",
            refused.addr
        )
    );
}

/// A listener the control plane has never served: C-core waits 15 s (its does-not-exist
/// timer) for it before it fails calls with "does not exist"; a call with a shorter deadline
/// ends DEADLINE_EXCEEDED first, and its error says what the call was waiting for. The
/// "does not exist" error itself is the next test's.
#[test]
fn a_call_to_a_listener_never_served_ends_at_its_deadline_saying_why() {
    let dir = tempfile::tempdir().unwrap();
    let replica = Replica::start(dir.path(), "replica");
    let mut plane = ControlPlane::start();
    plane.serve(&one_locality(&[&replica]));
    let bootstrap = bootstrap_file(&dir, &plane, Lang::Rust);
    let error = say_hello_fails("xds:///unknown", &bootstrap, "1s");
    assert!(
        error.starts_with(
            "error: SayHello to xds:///unknown failed: 4-DEADLINE_EXCEEDED: Deadline Exceeded; no server \
             was ready: the xDS control plane has not named one yet (a name it does not know is reported after 15 s)"
        ),
        "{error}"
    );
}

/// A listener the control plane stops serving fails the calls at once (no timer: the
/// client had it, and the control plane's whole list of listeners no longer names it), with
/// the error an unknown listener gets after 15 s.
#[test]
fn a_listener_the_control_plane_no_longer_knows_fails_calls_saying_so() {
    let dir = tempfile::tempdir().unwrap();
    let replica = Replica::start(dir.path(), "replica");
    let mut plane = ControlPlane::start();
    plane.serve(&one_locality(&[&replica]));
    let cmd = xds_client(Lang::Rust, &bootstrap_file(&dir, &plane, Lang::Rust), &["--until-eof"]);
    let mut client = Running::start(cmd, "our xDS client");
    wait_say_hellos(&[&replica], "calls succeed", |n| n[0] >= 20);

    plane.serve_listener("another", &one_locality(&[&replica]));
    let failure = client.wait_stderr("calls fail", |l| l.starts_with("FAILED "));
    assert_eq!(
        failure,
        "FAILED cannot find the servers of xds:///greeter: the xDS control plane does not know a resource it \
         needs (greeter: xDS listener resource does not exist)"
    );
    let (ok, failed, stderr) = client.finish_calls();
    assert!(ok >= 20 && failed > 0, "{ok} OK, {failed} failed: {stderr}");
    assert_eq!(stderr.lines().filter(|l| l.starts_with("FAILED ")).count(), 1, "one kind of failure: {stderr}");
}
