//! The artifact people deploy: the container image of `deploy/container/Containerfile`,
//! built here from the release `server` that `cargo test` built (no base image, no registry),
//! and run the way `deploy/kubernetes/deployment.yaml` runs it. The tests read that manifest
//! and turn each setting a run of the image can prove into podman's flag or check: the user,
//! the read-only root, no privilege escalation, no capabilities, the memory limit, the
//! arguments, the ports and the probes, the stop signal and the termination grace period. A
//! setting changed in the manifest is tested as changed.
//!
//! Podman and runc come from Debian's packages (the tests install them); ports are published
//! on loopback only. Run with `-- --nocapture` to see the image's size, its start-up time and
//! the server's memory.

mod common;
#[path = "container/manifest.rs"]
mod manifest;
#[path = "container/podman.rs"]
mod podman;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::netns::in_private_network;
use common::process::{output_within, DEADLINE};
use common::scrape::scrape;
use common::tools::{run_tutorial_clients, tools};
use common::{assert_all_four_patterns, tsmc};
use futures::executor::block_on_stream;
use greeter::blocking;
use greeter::proto::health::health_check_response::ServingStatus;
use greeter::proto::health::{HealthCheckRequest, HealthClient};
use greeter::proto::GreeterClient;
use grpcio::{CallOption, ChannelBuilder, EnvBuilder, RpcStatusCode};
use manifest::Deployment;
use podman::{both, image, podman, Container, Publish};

const VERSION: &str = env!("CARGO_PKG_VERSION");

#[test]
fn the_image_holds_the_server_its_libraries_and_certificates_and_nothing_else() {
    let image = image();
    let deployment = Deployment::load();
    let config = &image.inspect["Config"];

    // The user Kubernetes is told to expect, numeric so that runAsNonRoot can check it.
    assert!(deployment.run_as_non_root && deployment.run_as_user != 0, "the manifest runs as root");
    let user = format!("{}:{}", deployment.run_as_user, deployment.run_as_group);
    assert_eq!(config["User"], user.as_str(), "the image's USER");

    let exposed: BTreeSet<String> = config["ExposedPorts"].as_object().expect("EXPOSE").keys().cloned().collect();
    let ports: BTreeSet<String> = deployment.ports.values().map(|p| format!("{p}/tcp")).collect();
    assert_eq!(exposed, ports, "EXPOSE against the manifest's containerPorts");
    let (grpc, metrics) = (deployment.port("grpc"), deployment.port("metrics"));
    // Run without arguments, the image serves on the ports it exposes.
    assert_eq!(config["Entrypoint"], serde_json::json!(["/usr/local/bin/greeter-server"]));
    assert_eq!(
        config["Cmd"],
        serde_json::json!(["--addr", format!("[::]:{grpc}"), "--metrics-addr", format!("[::]:{metrics}")])
    );
    assert_eq!(config["StopSignal"], "SIGTERM", "Kubernetes stops a pod with SIGTERM, whatever the image says");
    assert_eq!(
        image.inspect["Healthcheck"]["Test"],
        serde_json::json!(["CMD", "/usr/local/bin/greeter-server", "--health-check"])
    );

    let labels = &config["Labels"];
    let label = |name: &str| labels[format!("org.opencontainers.image.{name}")].as_str().unwrap_or("(none)").to_owned();
    assert_eq!(label("version"), VERSION, "the Containerfile's VERSION against Cargo.toml's");
    assert_eq!(label("licenses"), env!("CARGO_PKG_LICENSE"));
    assert_eq!(label("source"), env!("CARGO_PKG_REPOSITORY"), "the Containerfile's SOURCE against Cargo.toml's");
    assert_eq!(label("title"), "greeter");
    assert_eq!(label("revision"), podman::git_head(), "the build's git commit");
    assert_eq!(deployment.image, format!("greeter:{VERSION}"), "the manifest deploys this version");

    // Exactly the binary, the libraries it links (as ldd resolves them here), the CA
    // certificates and the three files of /etc: no shell, no package manager.
    let mut want: BTreeSet<String> = linked_libraries(&image.binary);
    want.extend(
        [
            "usr/local/bin/greeter-server",
            "etc/ssl/certs/ca-certificates.crt",
            "etc/passwd",
            "etc/group",
            "etc/nsswitch.conf",
        ]
        .map(String::from),
    );
    assert_eq!(files_in_image(), want);

    let size = image.inspect["Size"].as_u64().expect("the image's size");
    println!("container: image {} MB ({size} bytes), {} files", mb(size), want.len());
}

/// docs/operations.md quotes the Deployment's settings for shutdown and discovery: each line
/// it quotes (without its comment) is a line of the file.
#[test]
fn the_docs_quote_the_manifest_as_it_is() {
    let guide = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md")).unwrap();
    let manifest = Deployment::text();
    let lines: BTreeSet<&str> = manifest.lines().map(str::trim).collect();
    let blocks = guide.split("```yaml\n").skip(1).map(|b| b.split("```").next().unwrap());
    let quoted: Vec<&str> = blocks.filter(|b| b.contains("terminationGracePeriodSeconds")).collect();
    assert_eq!(quoted.len(), 1, "one quote of the Deployment in docs/operations.md");
    for line in quoted[0].lines() {
        let line = line.split(" #").next().unwrap().trim();
        assert!(lines.contains(line), "docs/operations.md quotes {line:?}, which deployment.yaml does not have");
    }
}

/// The image's regular files, as `podman export` writes them out of a container of it.
fn files_in_image() -> BTreeSet<String> {
    let name = format!("greeter-test-export-{}", std::process::id());
    podman::run(&["create", "--name", &name, &image().id], DEADLINE);
    let tar = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/container/export.tar");
    let exported =
        output_within(podman(&["export", "--output", tar.to_str().unwrap(), &name]), "podman export", DEADLINE);
    let _ = output_within(podman(&["rm", &name]), "podman rm", DEADLINE);
    assert!(exported.status.success(), "podman export:\n{}", both(&exported));
    let mut list = std::process::Command::new("tar");
    list.arg("--list").arg("--verbose").arg("--file").arg(&tar);
    let out = output_within(list, "tar --list", DEADLINE);
    assert!(out.status.success(), "tar --list:\n{}", both(&out));
    let _ = std::fs::remove_file(&tar);
    // "-rw-r--r-- root/root 27 2026-12-07 01:56 etc/group": regular files start with '-'.
    let listing = String::from_utf8_lossy(&out.stdout);
    let files = listing.lines().filter(|l| l.starts_with('-'));
    files.map(|l| l.rsplit(' ').next().unwrap().trim_start_matches("./").to_owned()).collect()
}

/// What rootfs.sh should have copied: every library `ldd` resolves for `binary`, and the loader.
fn linked_libraries(binary: &Path) -> BTreeSet<String> {
    let mut ldd = std::process::Command::new("ldd");
    ldd.arg(binary);
    let out = output_within(ldd, "ldd", DEADLINE);
    assert!(out.status.success(), "ldd {}:\n{}", binary.display(), both(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let paths = text.lines().filter_map(|line| {
        let path = line.split("=>").last()?.split_whitespace().next()?;
        path.strip_prefix('/').map(String::from)
    });
    paths.collect()
}

/// The pod's settings, seen from outside the container (the kernel's view of the process),
/// then the four patterns and `/metrics` through the published loopback ports.
#[test]
fn runs_read_only_as_nonroot_without_capabilities_and_serves_the_four_patterns() {
    let deployment = Deployment::load();
    let container = Container::run(&deployment, Publish::LoopbackFreePorts, &deployment.args);
    // The probes, as the kubelet makes them: the readiness probe's until it passes, then the
    // liveness probe's ("" when it names no service: the whole server).
    let (readiness, liveness) = (&deployment.readiness, &deployment.liveness);
    let start_up = wait_serving(&container, &container.addr(readiness.port), &readiness.service);
    assert_eq!(check(&container.addr(liveness.port), &liveness.service).ok(), Some(ServingStatus::SERVING));
    let grpc = container.addr(deployment.port("grpc"));
    let rss_started = container.rss_kib();

    // What the kernel says about the server's process, from outside the container.
    let (uid, gid) = (deployment.run_as_user.to_string(), deployment.run_as_group.to_string());
    assert_eq!(container.status("Uid").split_whitespace().collect::<Vec<_>>(), [uid.as_str(); 4]);
    assert_eq!(container.status("Gid").split_whitespace().collect::<Vec<_>>(), [gid.as_str(); 4]);
    assert_eq!(container.status("NoNewPrivs"), if deployment.allow_privilege_escalation { "0" } else { "1" });
    if deployment.capabilities_dropped.iter().any(|c| c == "ALL") {
        for set in ["CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            assert_eq!(container.status(set), "0000000000000000", "{set}: every capability dropped");
        }
    }
    let mounts = container.proc_file("mountinfo");
    let root = mounts.lines().find(|l| l.split(' ').nth(4) == Some("/")).expect("a root mount");
    let root_options = root.split(' ').nth(5).unwrap();
    assert_eq!(
        root_options.split(',').next(),
        Some(if deployment.read_only_root_filesystem { "ro" } else { "rw" }),
        "the root mount: {root}"
    );
    let writable: Vec<&str> = mounts
        .lines()
        .filter(|l| l.split(' ').nth(5).is_some_and(|o| o.split(',').any(|o| o == "rw")))
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| !["/proc", "/sys", "/dev"].iter().any(|kernel| m.starts_with(kernel)))
        .collect();
    if deployment.read_only_root_filesystem {
        // Not even /tmp, nor the files podman mounts into /etc, as on Kubernetes.
        assert_eq!(writable, Vec::<&str>::new(), "writable mounts besides /proc, /sys and /dev");
    }
    assert_eq!(container.inspect()["HostConfig"]["Memory"].as_u64(), Some(deployment.memory_limit));

    let greeter = blocking::Greeter::new(&grpc, Duration::from_secs(30));
    assert_all_four_patterns(&greeter, "container");
    let rss_served = container.rss_kib();

    // /metrics on the manifest's metrics port counted exactly those calls.
    let metrics_addr: SocketAddr = container.addr(deployment.port("metrics")).parse().unwrap();
    let metrics = scrape(metrics_addr);
    assert_eq!(metrics.handled("unary", "SayHello", "OK"), 1.0);
    assert_eq!(metrics.handled("server_stream", "GetStockPrice", "OK"), 1.0);
    assert_eq!(metrics.handled("client_stream", "RecordMetrics", "OK"), 2.0);
    assert_eq!(metrics.handled("bidi_stream", "Chat", "OK"), 1.0);

    println!(
        "container: start-up {:.2} s (podman run to SERVING); RSS {:.1} MiB serving, {:.1} MiB after the four patterns",
        start_up.as_secs_f64(),
        rss_started as f64 / 1024.0,
        rss_served as f64 / 1024.0
    );
}

#[test]
fn the_health_check_reports_healthy_and_fails_where_nothing_serves() {
    let deployment = Deployment::load();
    let container = Container::run(&deployment, Publish::LoopbackFreePorts, &deployment.args);
    container.wait_healthy();
    assert_eq!(container.inspect()["State"]["Health"]["Status"], "healthy");

    // The same check in a container of its own, where nothing listens: it fails, saying why.
    let nothing = Container::run(&deployment, Publish::None, &["--health-check", "--addr", "127.0.0.1:50051"]);
    let code = nothing.wait_exit();
    let logs = nothing.logs();
    assert_eq!(code, 1, "{logs}");
    assert!(logs.contains("error: health check of 127.0.0.1:50051: "), "{logs}");
}

/// `podman stop` sends the image's stop signal and waits the manifest's grace period before
/// it kills, as the kubelet does. The server turns NOT_SERVING (a watching client hears it,
/// the readiness probe sees it), serves new calls for `--drain`, then refuses them while a
/// subscription in flight carries on to its last tick in `--grace`, and exits 0 before the
/// kill. (Podman runs no health check in a container it is stopping, so the probe stands in
/// for it here.)
#[test]
fn sigterm_drains_then_lets_a_subscription_finish_and_exits_0_within_the_grace_period() {
    let deployment = Deployment::load();
    let (drain, grace) = (deployment.duration_arg("--drain"), deployment.duration_arg("--grace"));
    // The server keeps connections 250 ms after its grace (docs/operations.md, "Graceful shutdown").
    let shutdown_bound = drain + grace + Duration::from_millis(250);
    assert!(deployment.termination_grace > shutdown_bound, "terminationGracePeriodSeconds below {shutdown_bound:?}");
    // Five ticks, the first at once: the other four outlast the drain by two seconds, and
    // end well inside the grace.
    let interval = (drain + Duration::from_secs(2)) / 4;
    assert!(drain + Duration::from_secs(2) < shutdown_bound - Duration::from_secs(2), "no room in the grace");
    let mut args = deployment.args.clone();
    args.extend(["--stock-interval".to_owned(), format!("{}ms", interval.as_millis())]);
    let container = Container::run(&deployment, Publish::LoopbackFreePorts, &args);
    let grpc = container.addr(deployment.port("grpc"));
    let probe = (container.addr(deployment.readiness.port), &deployment.readiness.service);
    wait_serving(&container, &probe.0, probe.1);

    let channel = channel(&grpc);
    let long = CallOption::default().timeout(Duration::from_secs(120));
    // A health watcher, as every load-balancing client keeps: what makes the server drain.
    let health = HealthClient::new(channel.clone());
    let request = HealthCheckRequest { service: deployment.readiness.service.clone(), ..Default::default() };
    let mut watch = block_on_stream(health.watch_opt(&request, long.clone()).unwrap());
    let mut status = || watch.next().expect("a status").expect("the watch carries on").status.enum_value_or_default();
    assert_eq!(status(), ServingStatus::SERVING);
    // The subscription, read by a thread of its own: its ticks, and when it ended.
    let mut ticks = block_on_stream(GreeterClient::new(channel.clone()).get_stock_price_opt(&tsmc(), long).unwrap());
    ticks.next().expect("a first tick").expect("the subscription runs");
    let subscription = std::thread::spawn(move || {
        let rest: Result<Vec<_>, _> = ticks.collect();
        (rest, Instant::now())
    });

    let stop_after = deployment.termination_grace.as_secs().to_string();
    let stopping = {
        let id = container.id.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            let out = output_within(podman(&["stop", "--time", &stop_after, &id]), "podman stop", DEADLINE);
            (out, start.elapsed())
        })
    };
    assert_eq!(status(), ServingStatus::NOT_SERVING, "the watcher hears it first");
    // What the readiness probe sees now, so Kubernetes takes the pod out of the Service.
    assert_eq!(check(&probe.0, probe.1).ok(), Some(ServingStatus::NOT_SERVING));
    let late = blocking::Greeter::new(&grpc, Duration::from_secs(10));
    assert_eq!(late.say_hello("during the drain").unwrap(), "Hello during the drain", "a call during the drain");

    // Once the drain is over, new calls are refused (CANCELLED when the call's headers were
    // already in, docs/operations.md says)...
    let refused = loop {
        let greeter = blocking::Greeter::new(&grpc, Duration::from_secs(5));
        match greeter.say_hello("after the drain") {
            Ok(_) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => {
                let code = e.code();
                let refused = [Some(RpcStatusCode::UNAVAILABLE), Some(RpcStatusCode::CANCELLED)];
                assert!(refused.contains(&code), "a call after the drain: {e}");
                break Instant::now();
            }
        }
    };
    // ...while the subscription carries on, and ends OK with every tick.
    let (rest, ended) = subscription.join().unwrap();
    let rest = rest.expect("the subscription ends OK");
    assert_eq!(rest.len(), 4, "the subscription sent every tick");
    assert!(ended > refused, "the subscription was still running when calls were refused");

    let (stopped, took) = stopping.join().unwrap();
    assert!(stopped.status.success(), "podman stop:\n{}", both(&stopped));
    let state = &container.inspect()["State"];
    assert_eq!(state["ExitCode"], 0, "the server exited by itself, not killed: {state}");
    assert!(took < deployment.termination_grace, "stopped after {took:?}");
    let logs = container.logs();
    assert!(logs.contains("signal 15 received: shutting down"), "the stop signal is SIGTERM:\n{logs}");
    println!(
        "container: podman stop took {:.2} s (drain {drain:?}, then a subscription's last ticks)",
        took.as_secs_f64()
    );
}

/// The tutorial's own clients dial `localhost:50051` as published, so the container is
/// published on 127.0.0.1:50051 in a network of the test's own, where that port is free
/// (podman sets its bridge and port forwarding up in there too).
#[test]
fn the_tutorials_own_clients_work_through_the_published_port() {
    let deployment = Deployment::load();
    assert_eq!(deployment.port("grpc"), 50051, "the tutorial's clients dial port 50051");
    tools(); // set up (it may download) before the network goes private
    image();
    let (ticks, completed) = in_private_network(move || {
        let mut args = deployment.args.clone();
        args.extend(["--stock-interval".to_owned(), "10ms".to_owned()]);
        let container = Container::run(&deployment, Publish::LoopbackSamePorts, &args);
        container.wait_healthy();
        run_tutorial_clients();
        // This thread's sockets are in the private network, where the metrics port is too.
        let metrics = scrape(SocketAddr::from(([127, 0, 0, 1], deployment.port("metrics"))));
        (metrics.ticks_sent(), metrics.subscriptions_ended("OK"))
    });
    // Five ticks for the Go client and five for the Python one, all sent by the container.
    assert_eq!((ticks, completed), (10.0, 2.0));
}

fn channel(addr: &str) -> grpcio::Channel {
    let env = Arc::new(EnvBuilder::new().cq_count(1).build());
    ChannelBuilder::new(env).connect(addr)
}

/// One `Health/Check` of `service` at `addr`, as the kubelet's gRPC probe makes it.
fn check(addr: &str, service: &str) -> Result<ServingStatus, grpcio::Error> {
    let health = HealthClient::new(channel(addr));
    let request = HealthCheckRequest { service: service.to_owned(), ..Default::default() };
    let reply = health.check_opt(&request, CallOption::default().timeout(Duration::from_secs(5)))?;
    Ok(reply.status.enum_value_or_default())
}

/// Probes `service` through the published `addr` until it is SERVING, as the readiness probe
/// does; returns how long after `podman run` began that was. Fails after 30 s.
fn wait_serving(container: &Container, addr: &str, service: &str) -> Duration {
    loop {
        match check(addr, service) {
            Ok(ServingStatus::SERVING) => return container.started.elapsed(),
            other if container.started.elapsed() > Duration::from_secs(30) => {
                panic!("{service} is not SERVING at {addr} after 30 s: {other:?}\n{}", container.logs())
            }
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / 1e6)
}
