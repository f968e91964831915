//! The image and its containers, through podman: every command with a deadline, runc as
//! the runtime (crun cannot run containers under some cgroup layouts where runc can), and
//! rlimits given explicitly (a machine may forbid raising a limit, and runtimes raise them
//! by default).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::common::examples::example;
use super::common::process::{output_within, DEADLINE};
use super::common::tools;
use super::manifest::Deployment;

/// The tag the tests give the image; containers run it by ID, so a rebuild meanwhile (another
/// test run) cannot swap it under them.
pub const TAG: &str = "localhost/greeter:test";

/// Where the image's path for the tests keeps its files: `context/rootfs/` (rootfs.sh's
/// output), the built image's ID.
fn work_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/container")
}

/// `podman --runtime runc …`.
pub fn podman(args: &[&str]) -> Command {
    let mut cmd = Command::new(tools::podman());
    cmd.args(["--runtime", "runc"]).args(args);
    cmd
}

/// Runs a podman command within `limit`; its stdout, or a failed test with all it printed.
pub fn run(args: &[&str], limit: Duration) -> String {
    let out = output_within(podman(args), &format!("podman {}", args.join(" ")), limit);
    assert!(out.status.success(), "podman {} failed ({}):\n{}", args.join(" "), out.status, both(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A command's stdout and stderr, for a message.
pub fn both(out: &Output) -> String {
    format!(
        "--- stdout ---\n{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `podman inspect` of one image or container, as JSON.
pub fn inspect(kind: &str, id: &str) -> Value {
    let text = run(&[kind, "inspect", id], DEADLINE);
    let mut all: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("podman {kind} inspect: {e}: {text}"));
    all[0].take()
}

pub struct Image {
    pub id: String,
    /// `podman image inspect`.
    pub inspect: Value,
    /// The release `server` binary the image holds (stripped).
    pub binary: PathBuf,
}

/// The image, built once per test binary the way the Containerfile says for a binary cargo
/// has already built: rootfs.sh lays out the `server` example that `cargo test` built, and
/// the Containerfile copies that with `ROOTFS=prebuilt`. No base image, no registry.
pub fn image() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(|| {
        tools::podman(); // installed first, so the build's time below is the build's
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let binary = PathBuf::from(example("server").get_program());
        let context = work_dir().join("context");
        let mut rootfs = Command::new("sh");
        rootfs.arg(repo.join("deploy/container/rootfs.sh")).arg(&binary).arg(context.join("rootfs"));
        let out = output_within(rootfs, "deploy/container/rootfs.sh", DEADLINE);
        assert!(out.status.success(), "deploy/container/rootfs.sh failed:\n{}", both(&out));

        let id_file = work_dir().join("image-id");
        let previous = std::fs::read_to_string(&id_file).ok();
        let containerfile = repo.join("deploy/container/Containerfile");
        let revision = format!("REVISION={}", git_head());
        let started = Instant::now();
        run(
            &[
                "build",
                // The docker format keeps HEALTHCHECK; OCI's has no field for it.
                "--format",
                "docker",
                // No layer cache: Buildah 1.28's ignores a changed --build-arg (REVISION), and
                // the whole build takes seconds.
                "--layers=false",
                "--file",
                containerfile.to_str().unwrap(),
                "--build-arg",
                "ROOTFS=prebuilt",
                "--build-arg",
                &revision,
                "--iidfile",
                id_file.to_str().unwrap(),
                "--tag",
                TAG,
                context.to_str().unwrap(),
            ],
            Duration::from_secs(600),
        );
        let id = std::fs::read_to_string(&id_file).unwrap().trim().to_owned();
        eprintln!("container: image {id} built in {:.1} s", started.elapsed().as_secs_f64());
        // The image an earlier build tagged, unless a container still uses it: without this,
        // every change of the binary would leave 20 MB behind.
        if let Some(previous) = previous.filter(|p| p.trim() != id) {
            let _ = output_within(podman(&["image", "rm", previous.trim()]), "podman image rm", DEADLINE);
        }
        Image { inspect: inspect("image", &id), id, binary }
    })
}

/// The commit the sources are at, or "unknown" outside a git checkout.
pub fn git_head() -> String {
    let mut git = Command::new("git");
    git.arg("-C").arg(env!("CARGO_MANIFEST_DIR")).args(["rev-parse", "HEAD"]);
    let out = output_within(git, "git rev-parse HEAD", DEADLINE);
    if out.status.success() {
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    } else {
        "unknown".to_owned()
    }
}

/// How a container's ports are published.
#[derive(Clone, Copy)]
pub enum Publish {
    /// Not at all.
    None,
    /// On 127.0.0.1, each on a free port the tests ask podman for: tests on a shared machine.
    LoopbackFreePorts,
    /// On 127.0.0.1, each on its own number: in a network of the test's own, where they are free.
    LoopbackSamePorts,
}

/// A container of the image, removed when dropped.
pub struct Container {
    pub id: String,
    pub started: Instant,
}

impl Container {
    /// Runs the image with the server arguments `server_args` as `deployment` runs it (its
    /// user, read-only root, capabilities, privilege escalation and memory limit), its ports
    /// published on loopback.
    pub fn run(deployment: &Deployment, publish: Publish, server_args: &[impl AsRef<str>]) -> Self {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let name = format!("greeter-test-{}-{}", std::process::id(), COUNT.fetch_add(1, Ordering::Relaxed));
        let mut args: Vec<String> = ["run", "--detach", "--name", &name].map(String::from).to_vec();
        // Kubernetes mounts nothing writable unless asked: no tmpfs on /tmp or /run either.
        if deployment.read_only_root_filesystem {
            args.extend(["--read-only", "--read-only-tmpfs=false"].map(String::from));
        }
        if !deployment.allow_privilege_escalation {
            args.extend(["--security-opt", "no-new-privileges"].map(String::from));
        }
        for capability in &deployment.capabilities_dropped {
            args.extend(["--cap-drop".to_owned(), capability.clone()]);
        }
        args.extend(["--memory".to_owned(), deployment.memory_limit.to_string()]);
        // At most what this process has (raising a limit may be forbidden), at most what a
        // test server needs.
        let nofile = soft_limit(libc::RLIMIT_NOFILE).min(4096);
        let nproc = soft_limit(libc::RLIMIT_NPROC).min(4096);
        args.extend(["--ulimit".to_owned(), format!("nofile={nofile}:{nofile}")]);
        args.extend(["--ulimit".to_owned(), format!("nproc={nproc}:{nproc}")]);
        // The tests run the health check themselves (podman healthcheck run); periodic runs
        // would need systemd's timers and could change the status between two looks.
        args.extend(["--health-interval", "disable"].map(String::from));
        for port in deployment.ports.values() {
            let host = match publish {
                Publish::None => continue,
                Publish::LoopbackFreePorts => format!("127.0.0.1::{port}"),
                Publish::LoopbackSamePorts => format!("127.0.0.1:{port}:{port}"),
            };
            args.extend(["--publish".to_owned(), host]);
        }
        args.push(image().id.clone());
        args.extend(server_args.iter().map(|a| a.as_ref().to_owned()));

        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let started = Instant::now();
        let out = output_within(podman(&args), "podman run", DEADLINE);
        if !out.status.success() {
            let _ = output_within(podman(&["rm", "--force", "--time", "0", &name]), "podman rm", DEADLINE);
            panic!(
                "containers cannot run here: podman run failed ({}). The container tests need root, podman and \
                 runc (installed by the tests with apt-get), overlay storage, and the right to set the rlimits \
                 nofile={nofile} and nproc={nproc}.\npodman {}\n{}",
                out.status,
                args.join(" "),
                both(&out)
            );
        }
        Container { id: String::from_utf8_lossy(&out.stdout).trim().to_owned(), started }
    }

    pub fn inspect(&self) -> Value {
        inspect("container", &self.id)
    }

    /// The loopback address podman published `container_port` on.
    pub fn addr(&self, container_port: u16) -> String {
        let port = run(&["port", &self.id, &format!("{container_port}/tcp")], DEADLINE);
        // "127.0.0.1:41683"; more than one line if published twice.
        port.lines().next().unwrap_or_else(|| panic!("{container_port} is not published")).to_owned()
    }

    /// The server's process id on this machine (the container runs it as its first process).
    pub fn pid(&self) -> u32 {
        let pid = &self.inspect()["State"]["Pid"];
        pid.as_u64().filter(|p| *p > 0).unwrap_or_else(|| panic!("the container has no process: {pid}")) as u32
    }

    /// `/proc/<pid>/<file>` of the server, from this machine's side.
    pub fn proc_file(&self, file: &str) -> String {
        let path = format!("/proc/{}/{file}", self.pid());
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// A line of `/proc/<pid>/status` (`Uid`, `VmRSS`, …), without its name.
    pub fn status(&self, field: &str) -> String {
        let status = self.proc_file("status");
        let line = status.lines().find_map(|l| l.strip_prefix(&format!("{field}:")));
        line.unwrap_or_else(|| panic!("no {field} in {status}")).trim().to_owned()
    }

    /// The server's resident memory now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let rss = self.status("VmRSS");
        rss.trim_end_matches(" kB").trim().parse().unwrap_or_else(|e| panic!("VmRSS {rss:?}: {e}"))
    }

    /// `podman healthcheck run`: the image's health check, run in the container.
    pub fn health_check(&self) -> Output {
        output_within(podman(&["healthcheck", "run", &self.id]), "podman healthcheck run", DEADLINE)
    }

    /// Runs the health check until it passes; fails the test after 30 s.
    pub fn wait_healthy(&self) {
        let start = Instant::now();
        loop {
            let out = self.health_check();
            if out.status.success() {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the container is not healthy after 30 s:\n{}\n--- log ---\n{}",
                both(&out),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the container's process to exit; its exit code.
    pub fn wait_exit(&self) -> i64 {
        let code = run(&["wait", &self.id], DEADLINE);
        code.parse().unwrap_or_else(|e| panic!("podman wait printed {code:?}: {e}"))
    }

    /// What the server printed (its log goes to stderr).
    pub fn logs(&self) -> String {
        let out = output_within(podman(&["logs", &self.id]), "podman logs", DEADLINE);
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = output_within(podman(&["rm", "--force", "--time", "0", &self.id]), "podman rm", DEADLINE);
    }
}

fn soft_limit(resource: libc::__rlimit_resource_t) -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the struct we own.
    let ok = unsafe { libc::getrlimit(resource, &mut limit) } == 0;
    assert!(ok, "getrlimit: {}", std::io::Error::last_os_error());
    limit.rlim_cur
}
