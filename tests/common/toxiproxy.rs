//! Toxiproxy (Shopify's fault-injecting TCP proxy, `target/interop/bin/toxiproxy-server`,
//! installed by `tests/interop/setup.sh`), driven over its HTTP API: a proxy per path under
//! test, and toxics added to and removed from it while calls run.
//!
//! What it is, and what that means for a test: a TCP proxy. Its kernel acknowledges whatever
//! either side sends, so a `timeout` toxic is a peer that stops answering without FIN or RST (a
//! hung process, a crashed host behind a NAT that still ACKs), which TCP itself never reports.
//! Each toxic acts on one direction (`Upstream`: client to server; `Downstream`: server to
//! client). A `timeout` toxic passes on a close it sees (the far side giving up closes the near
//! side), and removing one closes the connection. `reset_peer` resets (RST) only connections
//! made while it is in place; on one already open, it closes with FIN: a reset in the middle
//! of a stream is a `reset_peer` added disarmed before the connection, then armed.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::process::KillOnDrop;
use super::tools::tools;

/// A toxiproxy-server on a free loopback port, killed when dropped.
pub struct Toxiproxy {
    child: KillOnDrop,
    api: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Toxiproxy {
    /// Starts one, its API on 127.0.0.1 only. It cannot report a port it chose, so a free one
    /// is taken first; when another program binds it first, another is tried.
    pub fn start() -> Self {
        let bin = tools().bin.join("toxiproxy-server");
        assert!(bin.exists(), "{} is missing: tests/interop/setup.sh installs it", bin.display());
        let mut dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("toxiproxy.log");
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let child = Command::new(&bin)
                .args(["-host", "127.0.0.1", "-port", &port.to_string()])
                .env("LOG_LEVEL", "info")
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&log).unwrap())
                .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
                .spawn()
                .expect("toxiproxy-server starts");
            let api = SocketAddr::from(([127, 0, 0, 1], port));
            let mut proxy = Toxiproxy { child: KillOnDrop(child), api, log: log.clone(), _dir: dir };
            if proxy.wait_serving() {
                return proxy;
            }
            eprintln!("toxiproxy: port {port} was taken; another");
            dir = proxy._dir;
        }
        panic!("toxiproxy-server found no free port in 5 tries");
    }

    /// Waits until the API answers (true), or the process exits at start (false: its port
    /// was taken).
    fn wait_serving(&mut self) -> bool {
        let start = Instant::now();
        loop {
            if TcpStream::connect(self.api).is_ok() && self.request("GET", "/version", None).0 == 200 {
                return true;
            }
            if let Ok(Some(_)) = self.child.0.try_wait() {
                let log = self.log();
                assert!(log.contains("address already in use"), "toxiproxy-server exited at start: {log}");
                return false;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "toxiproxy-server does not answer: {}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its log so far (JSON lines), for failure messages.
    pub fn log(&self) -> String {
        let stderr = self.log.with_file_name("stderr.log");
        std::fs::read_to_string(&self.log).unwrap_or_default() + &std::fs::read_to_string(stderr).unwrap_or_default()
    }

    /// A proxy named `name` on a free loopback port, to `upstream`.
    pub fn proxy(&self, name: &str, upstream: &str) -> Proxy<'_> {
        let body = json!({"name": name, "listen": "127.0.0.1:0", "upstream": upstream, "enabled": true});
        let created = self.call("POST", "/proxies", Some(body), 201);
        let addr = created["listen"].as_str().expect("the proxy's address").to_owned();
        Proxy { toxiproxy: self, name: name.to_owned(), addr }
    }

    /// `method path` with a JSON body, which must answer `want`; its JSON answer.
    fn call(&self, method: &str, path: &str, body: Option<Value>, want: u16) -> Value {
        let (status, text) = self.request(method, path, body.as_ref());
        assert_eq!(status, want, "toxiproxy {method} {path} {body:?}: {text}\n{}", self.log());
        if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("toxiproxy {method} {path}: {e}: {text}"))
        }
    }

    /// One HTTP/1.1 request on a connection of its own: the status and the body.
    fn request(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, String) {
        let body = body.map(Value::to_string).unwrap_or_default();
        let Ok(mut conn) = TcpStream::connect(self.api) else { return (0, String::new()) };
        conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            self.api,
            body.len()
        );
        let mut response = String::new();
        // An error is status 0 with its text: while the API starts it may accept, then reset.
        let sent = conn.write_all(head.as_bytes()).and_then(|()| conn.write_all(body.as_bytes()));
        if let Err(e) = sent.and_then(|()| conn.read_to_string(&mut response)) {
            return (0, format!("no answer: {e}"));
        }
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        assert!(
            !head.to_ascii_lowercase().contains("transfer-encoding: chunked"),
            "toxiproxy answered chunked, which this client does not read: {response}"
        );
        (status, body.to_owned())
    }
}

/// Which way a toxic acts.
#[derive(Clone, Copy, Debug)]
pub enum Direction {
    /// From the client to the server.
    Upstream,
    /// From the server to the client.
    Downstream,
}

impl Direction {
    fn name(self) -> &'static str {
        match self {
            Direction::Upstream => "upstream",
            Direction::Downstream => "downstream",
        }
    }
}

/// A toxic, before it is added: its type and attributes (Toxiproxy's README names them).
#[derive(Clone, Debug)]
pub struct Toxic {
    kind: &'static str,
    attributes: Value,
}

impl Toxic {
    /// Every chunk delayed by `ms` ± `jitter_ms` (order kept).
    pub fn latency(ms: u64, jitter_ms: u64) -> Self {
        Toxic { kind: "latency", attributes: json!({"latency": ms, "jitter": jitter_ms}) }
    }

    /// At most `kb_per_s` kilobytes (1000 bytes) a second.
    pub fn bandwidth(kb_per_s: u64) -> Self {
        Toxic { kind: "bandwidth", attributes: json!({"rate": kb_per_s}) }
    }

    /// A black hole: nothing passes, and nothing is closed (no FIN) by the toxic itself.
    pub fn black_hole() -> Self {
        Toxic { kind: "timeout", attributes: json!({"timeout": 0}) }
    }

    /// The connection closed `after_ms` after its next data in this direction (that data and
    /// what follows it meanwhile are dropped): a reset (RST, both sides) for connections made
    /// while the toxic was in place, a close (FIN) for those open before.
    pub fn reset_peer(after_ms: u64) -> Self {
        Toxic { kind: "reset_peer", attributes: json!({"timeout": after_ms}) }
    }

    /// Data cut into segments of about `average` ± `variation` bytes, `delay_us` apart.
    pub fn slicer(average: u64, variation: u64, delay_us: u64) -> Self {
        Toxic {
            kind: "slicer",
            attributes: json!({"average_size": average, "size_variation": variation, "delay": delay_us}),
        }
    }

    /// The connection closed once `bytes` have passed in this direction (counted from when it
    /// was opened, for connections made while the toxic is in place).
    pub fn limit_data(bytes: u64) -> Self {
        Toxic { kind: "limit_data", attributes: json!({"bytes": bytes}) }
    }
}

/// One proxy of a [`Toxiproxy`]: clients dial `addr` instead of the upstream.
pub struct Proxy<'a> {
    toxiproxy: &'a Toxiproxy,
    name: String,
    pub addr: String,
}

impl Proxy<'_> {
    /// Adds `toxic` in `direction` as `name` (unique in this proxy); it acts on the
    /// connections open now and on new ones.
    pub fn add(&self, name: &str, direction: Direction, toxic: Toxic) {
        self.add_with_toxicity(name, direction, toxic, 1.0);
    }

    /// Adds `toxic` as [`add`](Self::add) does, but acting on nothing until [`arm`](Self::arm)
    /// (toxicity 0). A `reset_peer` added so sets up the connections made meanwhile to be reset
    /// (RST) once it is armed: a reset in the middle of a stream.
    pub fn add_disarmed(&self, name: &str, direction: Direction, toxic: Toxic) {
        self.add_with_toxicity(name, direction, toxic, 0.0);
    }

    /// The toxic `name` acts from now on, on every connection.
    pub fn arm(&self, name: &str) {
        self.toxiproxy.call(
            "POST",
            &format!("/proxies/{}/toxics/{name}", self.name),
            Some(json!({"toxicity": 1.0})),
            200,
        );
    }

    fn add_with_toxicity(&self, name: &str, direction: Direction, toxic: Toxic, toxicity: f64) {
        let body = json!({"name": name, "type": toxic.kind, "stream": direction.name(), "toxicity": toxicity,
                          "attributes": toxic.attributes});
        self.toxiproxy.call("POST", &format!("/proxies/{}/toxics", self.name), Some(body), 200);
    }

    /// Adds `toxic` in both directions, as `name-up` and `name-down`.
    pub fn add_both_ways(&self, name: &str, toxic: Toxic) {
        self.add(&format!("{name}-up"), Direction::Upstream, toxic.clone());
        self.add(&format!("{name}-down"), Direction::Downstream, toxic);
    }

    /// Removes the toxic `name`.
    pub fn remove(&self, name: &str) {
        self.toxiproxy.call("DELETE", &format!("/proxies/{}/toxics/{name}", self.name), None, 204);
    }

    /// Removes the toxics [`add_both_ways`](Self::add_both_ways) added.
    pub fn remove_both_ways(&self, name: &str) {
        self.remove(&format!("{name}-up"));
        self.remove(&format!("{name}-down"));
    }
}
