//! The example binaries as a user runs them: `cargo test` builds them next to the test
//! binaries, in target/<profile>/examples/.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::process::{output_within, wait_within, DEADLINE};

pub fn example(name: &str) -> Command {
    let mut dir = std::env::current_exe().unwrap();
    dir.pop(); // the test binary
    dir.pop(); // deps/
    let path: PathBuf = dir.join("examples").join(name);
    assert!(path.exists(), "{} is missing: run the tests with `cargo test`, which builds the examples", path.display());
    Command::new(path)
}

/// A `server` example process, killed when dropped. Its log (stderr) is kept line by line.
pub struct ServerProcess {
    pub child: Child,
    /// The host of its `--addr` (127.0.0.1 for a wildcard or no `--addr`).
    pub host: String,
    pub port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl ServerProcess {
    /// Starts `server` with `args` (which should include `--addr`) and waits for its start
    /// line, which names the port.
    pub fn start(args: &[&str], rust_log: &str) -> Self {
        Self::start_example("server", args, rust_log)
    }

    /// [`start`](Self::start) for another server example (`own_service`), same flags.
    pub fn start_example(name: &str, args: &[&str], rust_log: &str) -> Self {
        let mut child = example(name).args(args).env("RUST_LOG", rust_log).stderr(Stdio::piped()).spawn().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        // Owned from here on, so a failed start below still kills the child.
        let addr = args.iter().position(|a| *a == "--addr").and_then(|i| args.get(i + 1));
        let host = addr.and_then(|a| a.rsplit_once(':')).map(|(h, _)| h.trim_matches(['[', ']']));
        let host = host.filter(|h| !["", "::", "0.0.0.0"].contains(h)).unwrap_or("127.0.0.1").to_owned();
        let mut server = ServerProcess { child, host, port: 0, log };
        let started = server.wait_for_line("the server logs its start", |l| l.contains("gRPC Server started"));
        let port =
            started.split("(port ").nth(1).map(|s| s.chars().take_while(char::is_ascii_digit).collect::<String>());
        server.port = port.and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("no port in {started:?}"));
        server
    }

    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Runs the client example `name` against this server; it must succeed.
    pub fn run(&self, name: &str, args: &[&str]) -> Output {
        let mut cmd = example(name);
        cmd.arg("--addr").arg(self.addr()).args(args);
        let out = output_within(cmd, name, DEADLINE);
        assert!(out.status.success(), "{name} failed: {}", String::from_utf8_lossy(&out.stderr));
        out
    }

    /// Every log line so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// How many log lines so far contain `text`.
    pub fn count(&self, text: &str) -> usize {
        self.log.lock().unwrap().iter().filter(|l| l.contains(text)).count()
    }

    /// The first log line that satisfies `pred`, waiting up to 30 s for it.
    pub fn wait_for_line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            if let Some(line) = self.log.lock().unwrap().iter().find(|l| pred(l)) {
                return line.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("waiting until {what}, the server exited ({status}): {:#?}", self.log());
            }
            assert!(start.elapsed() < Duration::from_secs(30), "timed out waiting until {what}: {:#?}", self.log());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the process to exit (after a signal); fails the test after [`DEADLINE`].
    pub fn wait_exit(&mut self) -> ExitStatus {
        wait_within(&mut self.child, "the server", DEADLINE)
    }

    /// Sends `signal` (`TERM`, `KILL`, …) to the process.
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill").arg(format!("-{signal}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(sent.success(), "kill -{signal} failed");
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
