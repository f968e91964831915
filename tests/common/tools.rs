//! The Go and Python side of the tests: set up by `tests/interop/setup.sh` (a venv, Go tools
//! and binaries, generated stubs, all under `target/`), and helpers to run what it built.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use super::process::{output_within, status_within, DEADLINE};

const SETUP_DEADLINE: Duration = Duration::from_secs(30 * 60);

/// Where setup.sh put everything.
pub struct Tools {
    pub out: PathBuf,
    /// Go binaries and tools (interop-client, interop-server, grpcurl, …).
    pub bin: PathBuf,
    /// The venv's python, with grpcio, grpcio-tools and grpcio-reflection.
    pub python: PathBuf,
    /// Generated greeter_pb2*.py.
    pub python_gen: PathBuf,
    pub repo: PathBuf,
}

/// Runs setup.sh once per test binary (it is idempotent and cheap when nothing changed, and
/// serializes concurrent callers with a lock). Fails the test, with setup.sh's own message
/// on what to install, when Go or Python is missing.
pub fn tools() -> &'static Tools {
    static TOOLS: OnceLock<Tools> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let out = repo.join("target").join("interop");
        let mut setup = Command::new("bash");
        setup.arg(repo.join("tests/interop/setup.sh")).arg(&out);
        // A cold set-up downloads and builds Go and Python packages: minutes, not hours.
        let status = status_within(setup, "tests/interop/setup.sh (needs bash, Go and Python 3)", SETUP_DEADLINE);
        assert!(
            status.success(),
            "tests/interop/setup.sh failed (its message is above): the interop tests need Go (>= 1.26) \
             and Python 3 with venv on PATH, and the Go module proxy and PyPI reachable"
        );
        Tools {
            bin: out.join("bin"),
            python: out.join("venv/bin/python"),
            python_gen: out.join("python_gen"),
            out,
            repo,
        }
    })
}

impl Tools {
    pub fn go_bin(&self, name: &str) -> Command {
        Command::new(self.bin.join(name))
    }

    /// `python <script>` in the venv, with the generated stubs importable.
    pub fn python(&self, script: impl AsRef<Path>) -> Command {
        let mut cmd = Command::new(&self.python);
        cmd.arg(self.repo.join(script)).env("PYTHONPATH", &self.python_gen).env("PYTHONUNBUFFERED", "1");
        cmd
    }
}

/// A server process of another language, killed when dropped.
pub struct PeerServer {
    child: Child,
    pub port: u16,
}

impl PeerServer {
    /// Starts `cmd`, which must print `LISTENING <port>` on stdout once it serves.
    pub fn start(mut cmd: Command, what: &str) -> Self {
        let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let (first_line, started) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = stdout.read_line(&mut line);
            let _ = first_line.send(line);
            // Keep draining stdout so the server never blocks on a full pipe.
            std::io::copy(&mut stdout, &mut std::io::sink())
        });
        let mut server = PeerServer { child, port: 0 }; // killed if the start fails below
        let line = started
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("{what} printed nothing within 60 s"));
        server.port = line
            .trim()
            .strip_prefix("LISTENING ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{what} did not report its port; it printed {line:?}"));
        server
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `cmd` to completion (killed after [`DEADLINE`]); panics with its whole output unless
/// it exits 0.
pub fn run_ok(cmd: Command, what: &str) -> Output {
    let out = output_within(cmd, what, DEADLINE);
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs the tutorial's own Go and Python clients, as published: they dial `localhost:50051`
/// and run the four patterns. Checks every line they print.
pub fn run_tutorial_clients() {
    let tools = tools();
    // The Go client logs (stderr, timestamped) and ignores every error, so check its lines.
    let out = run_ok(tools.go_bin("tutorial-client"), "the tutorial's Go client");
    let log = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = log.lines().map(|l| l.splitn(3, ' ').nth(2).unwrap_or("")).collect();
    assert_tutorial_lines(&lines, "Go Client", &["Statistics: Count 3, Average 26.47"], &["Hello", "Bye"]);

    let mut python = Command::new(&tools.python);
    python.arg(tools.repo.join("tests/interop/tutorial/client/python_client.py"));
    let out = run_ok(python, "the tutorial's Python client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_tutorial_lines(
        &lines,
        "Python",
        &["Statistics: Count 3, Average 30.77"],
        &["Hi from Python", "Streaming is cool"],
    );
}

fn assert_tutorial_lines(lines: &[&str], name: &str, stats: &[&str], chat: &[&str]) {
    let has = |want: &str| lines.contains(&want);
    assert!(has(&format!("Response: Hello {name}")), "no greeting in {lines:#?}");
    let prices: Vec<&str> = lines.iter().filter_map(|l| l.strip_prefix("Stock: TSMC, Price: ")).collect();
    assert_eq!(prices.len(), 5, "{lines:#?}");
    for price in prices {
        // Printed with two decimals, so a price just under 600 may read "600.00".
        let value: f64 = price.parse().unwrap_or_else(|e| panic!("price {price:?}: {e}"));
        assert!((500.0..=600.0).contains(&value), "price {price} not in [500, 600]");
    }
    for line in stats {
        assert!(has(line), "no {line:?} in {lines:#?}");
    }
    for msg in chat {
        assert!(has(&format!("(Receive) Server: Server received: {msg}")), "no reply to {msg:?} in {lines:#?}");
    }
}

/// Runs one case of `tests/hostile/hostile.py` against `addr` and returns its JSON line.
pub fn hostile_case(addr: &str, case: &str, extra: &[&str]) -> serde_json::Value {
    let mut cmd = tools().python("tests/hostile/hostile.py");
    cmd.args(["--addr", addr, "--case", case]).args(extra);
    let out = run_ok(cmd, &format!("hostile.py {case}"));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("hostile.py {case}: not JSON ({e}): {line:?}"))
}

/// Jaeger (`target/interop/bin/jaeger`), built by `setup.sh` on first use for the trace tests.
pub fn jaeger() -> &'static Path {
    static JAEGER: OnceLock<PathBuf> = OnceLock::new();
    JAEGER.get_or_init(|| {
        let tools = tools();
        let mut setup = Command::new("bash");
        setup.arg(tools.repo.join("tests/interop/setup.sh")).arg(&tools.out).env("WITH_JAEGER", "1");
        let status = status_within(setup, "tests/interop/setup.sh with Jaeger", SETUP_DEADLINE);
        assert!(status.success(), "building Jaeger failed (its output is above): it needs Go and the Go module proxy");
        tools.bin.join("jaeger")
    })
}

/// nginx from Debian's packages (`nginx-light` has HTTP/2 and gRPC proxying), installed with
/// apt-get the first time a test needs it.
pub fn nginx() -> &'static Path {
    static NGINX: OnceLock<PathBuf> = OnceLock::new();
    NGINX.get_or_init(|| debian_package("/usr/sbin/nginx", "nginx-light", "the nginx tests"))
}

/// Debian's `prometheus` package: the Prometheus server and `promtool`, installed the first
/// time a test needs them. Returns the directory they are in.
pub fn prometheus() -> &'static Path {
    static PROMETHEUS: OnceLock<PathBuf> = OnceLock::new();
    PROMETHEUS.get_or_init(|| {
        let promtool = debian_package("/usr/bin/promtool", "prometheus", "the metrics tests");
        promtool.parent().unwrap().to_owned()
    })
}

/// `binary`, installing Debian `package` with apt-get when it is missing (one install at a
/// time, even across test runs). Fails the test, saying what to install, when it cannot.
fn debian_package(binary: &str, package: &str, who: &str) -> PathBuf {
    let path = PathBuf::from(binary);
    if !path.exists() {
        eprintln!("tests: installing {package} with apt-get (once)");
        let script = format!(
            "flock /tmp/greeter-tests-apt.lock sh -c 'test -e {binary} || (apt-get update -qq && \
             DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends {package})'"
        );
        let mut install = Command::new("bash");
        install.args(["-c", &script]);
        let status = status_within(install, &format!("apt-get install {package}"), SETUP_DEADLINE);
        assert!(
            status.success() && path.exists(),
            "{who} need {binary}: `apt-get install {package}` (as root) failed ({status:?}); install it by hand \
             and run them again"
        );
    }
    path
}

/// dnsmasq (Debian's `dnsmasq-base`), installed with apt-get the first time.
pub fn dnsmasq() -> &'static Path {
    static DNSMASQ: OnceLock<PathBuf> = OnceLock::new();
    DNSMASQ.get_or_init(|| debian_package("/usr/sbin/dnsmasq", "dnsmasq-base", "the DNS tests"))
}

/// Podman and runc from Debian's packages, installed with apt-get the first time. runc goes
/// first, so that podman's dependency "crun | runc" is met by it: crun cannot run containers
/// under some cgroup layouts where runc can.
pub fn podman() -> &'static Path {
    static PODMAN: OnceLock<PathBuf> = OnceLock::new();
    PODMAN.get_or_init(|| {
        debian_package("/usr/sbin/runc", "runc", "the container tests");
        debian_package("/usr/bin/podman", "podman", "the container tests")
    })
}
