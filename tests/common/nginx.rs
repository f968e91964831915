//! nginx running `deploy/nginx/greeter.conf` as it ships, only its addresses changed: the
//! port it listens on and the three upstream servers (replicas, or proxies in front of them).
//! nginx comes from Debian's packages, installed on first use (`super::tools::nginx`).

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::tools::nginx;

pub const CONF: &str = "deploy/nginx/greeter.conf";

/// nginx with the shipped config before three upstreams; stopped when dropped.
pub struct Nginx {
    child: Child,
    pub port: u16,
    upstreams: Vec<String>,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// Listens on `port` (0: a free one) on 127.0.0.1 and [::1], before `upstreams`.
    pub fn start(port: u16, upstreams: &[String]) -> Self {
        assert_eq!(upstreams.len(), 3, "{CONF} names three replicas");
        let mut front = Nginx::spawn(if port == 0 { free_port() } else { port }, upstreams);
        // nginx cannot report a port it chose, so a free one is taken first: another program
        // may bind it before nginx does. nginx then exits saying so, and tries another.
        for _ in 0..5 {
            match front.wait_listening() {
                Ok(()) => return front,
                Err(taken) if port == 0 => {
                    eprintln!("nginx: {taken}; another port");
                    front = Nginx::spawn(free_port(), upstreams);
                }
                Err(taken) => panic!("nginx cannot listen on {port}: {taken}"),
            }
        }
        panic!("nginx found no free port in 5 tries: {}", front.error_log());
    }

    fn spawn(port: u16, upstreams: &[String]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();
        std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
        write_conf(&dir.path().join("greeter.conf"), port, upstreams, None);
        // A process group of its own, so that stopping it stops its workers too; its stderr
        // (start-up errors) in the error log's directory.
        let child = Command::new(nginx())
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("greeter.conf"))
            .args(["-g", "daemon off;"])
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("logs/stderr.log")).unwrap())
            .spawn()
            .expect("nginx starts");
        Nginx { child, port, upstreams: upstreams.to_vec(), dir }
    }

    /// Waits until this nginx listens: it has written its pid file, which it does only once it
    /// has bound its ports, and the port takes connections. `Err` when the port was taken.
    fn wait_listening(&mut self) -> Result<(), String> {
        let start = Instant::now();
        let pid_file = self.dir.path().join("logs/nginx.pid");
        let ours = self.child.id().to_string();
        loop {
            let written = std::fs::read_to_string(&pid_file).is_ok_and(|pid| pid.trim() == ours);
            if written && TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = self.error_log();
                if log.contains("Address already in use") {
                    return Err(format!("port {} was taken", self.port));
                }
                panic!("nginx exited ({status}) at start: {log}");
            }
            assert!(start.elapsed() < Duration::from_secs(10), "nginx does not listen: {}", self.error_log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn error_log(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.path().join("logs").join(name)).unwrap_or_default();
        read("stderr.log") + &read("error.log")
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// nginx's access log, a line per request (the shipped `grpc` format).
    pub fn access_log(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir.path().join("logs/access.log")).unwrap_or_default();
        log.lines().map(str::to_owned).collect()
    }

    /// Greeter calls nginx passed on to a replica, by its access log.
    pub fn calls_proxied(&self) -> usize {
        let passed_on = |l: &String| l.contains("POST /greeter.Greeter/") && !l.contains(" upstream=- ");
        self.access_log().iter().filter(|l| passed_on(l)).count()
    }

    /// Requests nginx answered itself, by its access log.
    pub fn answered_at_the_front(&self) -> usize {
        self.access_log().iter().filter(|l| l.contains(" upstream=- ")).count()
    }

    /// Shuts nginx down gracefully (SIGQUIT: requests in flight finish, the logs are written)
    /// and waits for it: its logs are then whole, no line still to come.
    pub fn quit(&mut self) {
        let sent = Command::new("kill").args(["-QUIT", &self.child.id().to_string()]).status().unwrap();
        assert!(sent.success());
        let start = Instant::now();
        while matches!(self.child.try_wait(), Ok(None)) {
            assert!(start.elapsed() < Duration::from_secs(30), "nginx did not quit within 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Takes upstream `i` out and reloads nginx (SIGHUP: new workers with the new config; the
    /// old ones finish their requests and exit).
    pub fn remove_and_reload(&self, i: usize) {
        write_conf(&self.dir.path().join("greeter.conf"), self.port, &self.upstreams, Some(i));
        let sent = Command::new("kill").args(["-HUP", &self.child.id().to_string()]).status().unwrap();
        assert!(sent.success());
    }
}

impl Drop for Nginx {
    /// SIGTERM to nginx's process group (master and workers); SIGKILL to the group if the
    /// master has not exited within 5 s.
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let kill = |signal: &str| Command::new("kill").args([signal, "--", &group]).stderr(Stdio::null()).status();
        let _ = kill("-TERM");
        let start = Instant::now();
        while matches!(self.child.try_wait(), Ok(None)) && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = kill("-KILL"); // the group may be gone already
        let _ = self.child.wait();
    }
}

/// deploy/nginx/greeter.conf with our ports, leaving out upstream `skip`'s line.
fn write_conf(path: &Path, port: u16, upstreams: &[String], skip: Option<usize>) {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut conf = std::fs::read_to_string(repo.join(CONF)).unwrap();
    for (i, upstream) in upstreams.iter().enumerate() {
        conf = replaced(&conf, &format!("127.0.0.1:{}", 50081 + i), upstream);
    }
    if let Some(i) = skip {
        let gone = format!("server {} ", upstreams[i]);
        conf = conf.lines().filter(|l| !l.contains(&gone)).collect::<Vec<_>>().join("\n");
    }
    conf = replaced(&conf, "127.0.0.1:8080", &format!("127.0.0.1:{port}"));
    conf = replaced(&conf, "[::1]:8080", &format!("[::1]:{port}"));
    std::fs::write(path, conf).unwrap();
}

fn replaced(conf: &str, from: &str, to: &str) -> String {
    assert!(conf.contains(from), "{CONF} no longer mentions {from}");
    conf.replace(from, to)
}

/// A port free right now on both loopbacks (nginx cannot report the port it chose).
fn free_port() -> u16 {
    loop {
        let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = v4.local_addr().unwrap().port();
        if TcpListener::bind(("::1", port)).is_ok() {
            return port;
        }
    }
}
