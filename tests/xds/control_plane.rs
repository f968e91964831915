//! The tests' service mesh control plane: `xds-control-plane` (tests/interop/go/cmd/), an
//! xDS server on go-control-plane, run as a process whose snapshot the test sets through its
//! stdin, and whose stdout says what each client accepted.

use std::io::{BufRead, BufReader, Write as _};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::json;

use crate::common::process::KillOnDrop;
use crate::common::tools::tools;

/// The listener and cluster every snapshot names: clients dial `xds:///greeter`.
pub const LISTENER: &str = "greeter";

/// How long a step the control plane or a client takes may last before the test gives up: far
/// beyond what any takes, for a loaded machine.
const PATIENCE: Duration = Duration::from_secs(30);

/// One locality of the cluster: its zone, its weight, its endpoints (`host:port`).
pub struct Locality<'a> {
    pub zone: &'a str,
    pub weight: u32,
    pub endpoints: Vec<String>,
}

/// A line the control plane printed, and when the test read it.
struct Line {
    text: String,
    at: SystemTime,
}

/// A running `xds-control-plane`, killed when dropped.
pub struct ControlPlane {
    child: KillOnDrop,
    stdin: ChildStdin,
    lines: Arc<Mutex<Vec<Line>>>,
    pub port: u16,
}

impl ControlPlane {
    /// Starts one on a free loopback port.
    pub fn start() -> Self {
        Self::start_on(0)
    }

    /// Starts one on `127.0.0.1:port` (0: any free port), serving nothing yet.
    pub fn start_on(port: u16) -> Self {
        let mut cmd = Command::new(tools().bin.join("xds-control-plane"));
        cmd.args(["-port", &port.to_string()]).stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut child = KillOnDrop(cmd.spawn().expect("cannot start xds-control-plane"));
        let stdin = child.0.stdin.take().unwrap();
        let stdout = BufReader::new(child.0.stdout.take().unwrap());
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for text in stdout.lines().map_while(Result::ok) {
                sink.lock().unwrap().push(Line { text, at: SystemTime::now() });
            }
        });
        let mut plane = ControlPlane { child, stdin, lines, port: 0 };
        let (listening, _) = plane.wait_line("it reports its port", |l| l.starts_with("LISTENING "));
        plane.port = listening["LISTENING ".len()..].parse().expect("LISTENING <port>");
        plane
    }

    /// Serves `localities` as the endpoints of the `greeter` listener's cluster, replacing
    /// what was served before. Returns the snapshot's version and when it was served.
    pub fn serve(&mut self, localities: &[Locality<'_>]) -> (String, SystemTime) {
        self.serve_listener(LISTENER, localities)
    }

    /// Like [`ControlPlane::serve`], under another listener name (`greeter` then is unknown).
    pub fn serve_listener(&mut self, listener: &str, localities: &[Locality<'_>]) -> (String, SystemTime) {
        let localities: Vec<_> =
            localities.iter().map(|l| json!({"zone": l.zone, "weight": l.weight, "endpoints": l.endpoints})).collect();
        let snapshot = json!({"listener": listener, "cluster": LISTENER, "localities": localities});
        let seen = self.lines.lock().unwrap().len();
        writeln!(self.stdin, "{snapshot}").expect("the control plane reads its stdin");
        let (line, at) = self
            .wait_line_after(seen, "it serves the snapshot", |l| l.starts_with("SNAPSHOT ") || l.starts_with("ERROR "));
        let version =
            line.strip_prefix("SNAPSHOT ").unwrap_or_else(|| panic!("the control plane refused {snapshot}: {line}"));
        (version.to_owned(), at)
    }

    /// Waits until the client whose bootstrap names `node` has accepted `version` of the
    /// endpoints (EDS); returns when the control plane heard so. Fails at once on a NACK.
    pub fn wait_acked(&self, node: &str, version: &str) -> SystemTime {
        let ack = format!("ACK {node} EDS {version}");
        let nack = format!("NACK {node} ");
        let (line, at) = self
            .wait_line(&format!("{node} accepts endpoints version {version}"), |l| l == ack || l.starts_with(&nack));
        assert_eq!(line, ack, "the client rejected what the control plane served");
        at
    }

    /// A bootstrap for a client named `node`: this control plane, over plaintext, xDS v3.
    pub fn bootstrap(&self, node: &str) -> String {
        bootstrap(&format!("127.0.0.1:{}", self.port), node)
    }

    /// Stops it at once, as a crash would (SIGKILL); its port is free again.
    pub fn kill(mut self) {
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
    }

    fn wait_line(&self, what: &str, pred: impl Fn(&str) -> bool) -> (String, SystemTime) {
        self.wait_line_after(0, what, pred)
    }

    /// The first line from the `skip`th on that satisfies `pred`, waiting for it.
    fn wait_line_after(&self, skip: usize, what: &str, pred: impl Fn(&str) -> bool) -> (String, SystemTime) {
        let start = Instant::now();
        loop {
            if let Some(line) = self.lines.lock().unwrap().iter().skip(skip).find(|l| pred(&l.text)) {
                return (line.text.clone(), line.at);
            }
            assert!(
                start.elapsed() < PATIENCE,
                "timed out waiting until {what}; the control plane said:\n{}",
                self.said()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn said(&self) -> String {
        self.lines.lock().unwrap().iter().map(|l| l.text.as_str()).collect::<Vec<_>>().join("\n")
    }
}

/// A bootstrap naming the control plane at `server` (`host:port`), for a client named `node`.
pub fn bootstrap(server: &str, node: &str) -> String {
    json!({
        "xds_servers": [{
            "server_uri": server,
            "channel_creds": [{"type": "insecure"}],
            "server_features": ["xds_v3"],
        }],
        "node": {"id": node, "locality": {"region": "test", "zone": "a"}},
    })
    .to_string()
}
