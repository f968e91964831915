//! The xDS clients, each in a process of its own: C-core's xDS client (ours) and grpc-go's are
//! process-wide and read their bootstrap once. Ours is the `xds_client` example (or any other
//! client example); grpc-go's is `xds-client` (tests/interop/go/cmd/), with the same flags.

use std::io::{BufRead, BufReader, Read, Write as _};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::common::examples::example;
use crate::common::process::{KillOnDrop, DEADLINE};
use crate::common::tools::tools;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Rust,
    Go,
}

/// Where a client process finds its bootstrap.
pub enum Bootstrap {
    /// `GRPC_XDS_BOOTSTRAP`: a file.
    File(PathBuf),
    /// `GRPC_XDS_BOOTSTRAP_CONFIG`: the JSON itself.
    Config(String),
    /// Neither.
    Missing,
}

impl Bootstrap {
    /// `cmd` with this bootstrap, and none inherited from the test's environment.
    pub fn apply(&self, cmd: &mut Command) {
        cmd.env_remove("GRPC_XDS_BOOTSTRAP").env_remove("GRPC_XDS_BOOTSTRAP_CONFIG");
        match self {
            Bootstrap::File(path) => {
                cmd.env("GRPC_XDS_BOOTSTRAP", path);
            }
            Bootstrap::Config(json) => {
                cmd.env("GRPC_XDS_BOOTSTRAP_CONFIG", json);
            }
            Bootstrap::Missing => {}
        }
    }
}

/// The client example `name` (say_hello, soak, xds_client, …) dialling `target`.
pub fn rust_example(name: &str, target: &str, bootstrap: &Bootstrap) -> Command {
    let mut cmd = example(name);
    cmd.args(["--addr", target]);
    bootstrap.apply(&mut cmd);
    cmd
}

/// The xDS client of `lang`, SayHello to `xds:///greeter`, with `args` (`--calls 300`, …).
pub fn xds_client(lang: Lang, bootstrap: &Bootstrap, args: &[&str]) -> Command {
    let mut cmd = match lang {
        Lang::Rust => rust_example("xds_client", "xds:///greeter", bootstrap),
        Lang::Go => {
            let mut cmd = tools().go_bin("xds-client");
            cmd.args(["--addr", "xds:///greeter"]);
            bootstrap.apply(&mut cmd);
            cmd
        }
    };
    cmd.args(args);
    cmd
}

/// A client process running, its stdin piped and its output kept line by line; killed if
/// dropped.
pub struct Running {
    what: String,
    child: KillOnDrop,
    stdout: JoinHandle<String>,
    stderr: Arc<Mutex<Vec<String>>>,
    stderr_done: JoinHandle<()>,
}

impl Running {
    pub fn start(mut cmd: Command, what: &str) -> Self {
        let child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn();
        let mut child = KillOnDrop(child.unwrap_or_else(|e| panic!("cannot start {what}: {e}")));
        let mut stdout = child.0.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text);
            text
        });
        let stderr_lines = Arc::new(Mutex::new(Vec::new()));
        let sink = stderr_lines.clone();
        let stderr = BufReader::new(child.0.stderr.take().unwrap());
        let stderr_done = std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Running { what: what.to_owned(), child, stdout, stderr: stderr_lines, stderr_done }
    }

    /// Says a line on its stdin: `--warmup` ends, the counted calls follow.
    pub fn go_on(&mut self) {
        let stdin = self.child.0.stdin.as_mut().expect("stdin still open");
        stdin.write_all(b"go\n").and_then(|()| stdin.flush()).expect("the client reads its stdin");
    }

    /// Waits (up to 30 s) for a line on its stderr that satisfies `pred`.
    pub fn wait_stderr(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            if let Some(line) = self.stderr.lock().unwrap().iter().find(|l| pred(l)) {
                return line.clone();
            }
            if let Ok(Some(status)) = self.child.0.try_wait() {
                panic!("waiting until {what}, {} exited ({status}): {:#?}", self.what, self.stderr.lock().unwrap());
            }
            assert!(start.elapsed() < Duration::from_secs(30), "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.0.try_wait(), Ok(None))
    }

    /// Closes its stdin (`--until-eof` callers stop) and waits (up to [`DEADLINE`]) for it
    /// to exit: its status, stdout and stderr.
    pub fn finish(mut self) -> (ExitStatus, String, String) {
        drop(self.child.0.stdin.take());
        let status = self.child.wait(&self.what, DEADLINE);
        let stdout = self.stdout.join().unwrap();
        let _ = self.stderr_done.join();
        let stderr = self.stderr.lock().unwrap().join("\n");
        (status, stdout, stderr)
    }

    /// [`Running::finish`] for an xDS client: the calls it reported, ok and failed.
    pub fn finish_calls(self) -> (u64, u64, String) {
        let what = self.what.clone();
        let (status, stdout, stderr) = self.finish();
        let counts = stdout.lines().find_map(|l| {
            let (ok, failed) = l.strip_prefix("CALLS ok=")?.split_once(" failed=")?;
            Some((ok.parse().ok()?, failed.parse().ok()?))
        });
        let (ok, failed) = counts.unwrap_or_else(|| panic!("{what} ({status}) reported no calls: {stdout}\n{stderr}"));
        (ok, failed, stderr)
    }
}
