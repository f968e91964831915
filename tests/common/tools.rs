//! The Go and Python side of the tests: set up by `tests/interop/setup.sh` (a venv, Go tools
//! and binaries, generated stubs, all under `target/`), and helpers to run what it built.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

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
        let status = Command::new("bash")
            .arg(repo.join("tests/interop/setup.sh"))
            .arg(&out)
            .status()
            .expect("cannot run bash: the interop tests need bash, Go and Python 3");
        assert!(
            status.success(),
            "tests/interop/setup.sh failed (its message is above): the interop tests need Go (>= 1.21) \
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
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let port = line
            .trim()
            .strip_prefix("LISTENING ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{what} did not report its port; it printed {line:?}"));
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        PeerServer { child, port }
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

/// Runs `cmd` to completion; panics with its whole output unless it exits 0.
pub fn run_ok(mut cmd: Command, what: &str) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
