//! A real DNS server for one test: dnsmasq on a free loopback UDP port, answering for
//! `greeter.test` (and nothing else: the `test` domain is local) from a hosts file it re-reads
//! the moment the file is replaced, as a headless Service's records change when pods come
//! and go.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::process::KillOnDrop;
use super::tools::dnsmasq;

/// The name every replica is published under.
pub const NAME: &str = "greeter.test";

pub struct Dns {
    pub port: u16,
    dir: tempfile::TempDir,
    log: Arc<Mutex<Vec<String>>>,
    _child: KillOnDrop,
}

impl Dns {
    /// dnsmasq answering `greeter.test` with `addresses` (IPv4), up and read its hosts file.
    pub fn start(addresses: &[&str]) -> Dns {
        let mut dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hosts"), records(addresses)).unwrap();
        for attempt in 0.. {
            // A port the kernel just handed out, released for dnsmasq: another program can take
            // it in between, and then dnsmasq exits 2 and the next attempt picks another.
            let port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let mut dns = Self::spawn(port, dir);
            if dns.wait_read(0, addresses.len()).is_ok() {
                return dns;
            }
            assert!(attempt < 5, "dnsmasq did not start: {:#?}", dns.log());
            dir = dns.dir;
        }
        unreachable!()
    }

    fn spawn(port: u16, dir: tempfile::TempDir) -> Dns {
        let mut cmd = Command::new(dnsmasq());
        // In the foreground as this user (no pid file, no switch to `nobody`, who could not read
        // the test's private directory), on 127.0.0.1 only, no other configuration, answers
        // from the hosts directory alone, TTL 0, every query logged to stderr.
        cmd.args(["--no-daemon", "--log-facility=-", "--conf-file=/dev/null", "--no-resolv", "--no-hosts"])
            .args(["--listen-address=127.0.0.1", "--bind-interfaces", "--local=/test/", "--local-ttl=0"])
            .arg("--log-queries")
            .arg(format!("--port={port}"))
            .arg(format!("--hostsdir={}", dir.path().display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("dnsmasq starts");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let sink = log.clone();
        std::thread::spawn(move || stderr.lines().map_while(Result::ok).for_each(|l| sink.lock().unwrap().push(l)));
        Dns { port, dir, log, _child: KillOnDrop(child) }
    }

    fn hosts(&self) -> PathBuf {
        self.dir.path().join("hosts")
    }

    /// Every line dnsmasq has logged so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// How many times dnsmasq has read the hosts file so far.
    fn reads(&self) -> usize {
        let read = format!("read {}", self.hosts().display());
        self.log.lock().unwrap().iter().filter(|l| l.contains(&read)).count()
    }

    /// A-record queries for `greeter.test` so far: one per resolution by a C-core or grpc-go
    /// channel.
    pub fn queries(&self) -> usize {
        let query = format!("query[A] {NAME} ");
        self.log.lock().unwrap().iter().filter(|l| l.contains(&query)).count()
    }

    /// Waits (30 s at most) until dnsmasq has read the hosts file more than `reads_before`
    /// times, the last time with `names` names in it.
    fn wait_read(&mut self, reads_before: usize, names: usize) -> Result<(), ()> {
        let read = format!("read {}", self.hosts().display());
        let names = format!(" - {names} names");
        let start = Instant::now();
        loop {
            let last_read = self.log().into_iter().rev().find(|l| l.contains(&read));
            if self.reads() > reads_before && last_read.is_some_and(|l| l.contains(&names)) {
                return Ok(());
            }
            if let Ok(Some(_)) = self._child.0.try_wait() {
                return Err(());
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "dnsmasq did not read its hosts file: {:#?}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Publishes `addresses` as `greeter.test`'s records, replacing the old ones, and waits
    /// until dnsmasq answers with them: the file is replaced in one rename, which dnsmasq's
    /// inotify watch sees at once.
    pub fn set(&mut self, addresses: &[&str]) {
        let reads = self.reads();
        let tmp = self.dir.path().join(".hosts.tmp"); // dnsmasq skips names starting with '.'
        std::fs::write(&tmp, records(addresses)).unwrap();
        std::fs::rename(&tmp, self.hosts()).unwrap();
        self.wait_read(reads, addresses.len()).expect("dnsmasq keeps running");
    }

    /// The gRPC target that resolves `greeter.test` through this server: C-core's and
    /// grpc-go's DNS resolvers take the DNS server from the authority.
    pub fn target(&self, port: u16) -> String {
        format!("dns://127.0.0.1:{}/{NAME}:{port}", self.port)
    }
}

/// A hosts file that names `addresses` `greeter.test`.
fn records(addresses: &[&str]) -> String {
    addresses.iter().map(|a| format!("{a} {NAME}\n")).collect()
}
