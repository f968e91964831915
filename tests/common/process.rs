//! External processes with a deadline: a program that hangs (the tutorial's Go client loops
//! forever on a stream error) fails its test with its output so far, instead of hanging the
//! suite. Each runs in a process group of its own, and the whole group is killed: a killed
//! `bash → python → ghz` chain would otherwise leave its children holding the pipes open.

use std::io::Read;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Long enough for any client or tool the tests run on a loaded 2-core machine (each takes
/// seconds), short enough that a hang is reported the same run.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// Runs `cmd` to completion with stdout and stderr captured, killing it after `limit`.
pub fn output_within(mut cmd: Command, what: &str, limit: Duration) -> Output {
    let child = cmd
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    KillOnDrop(child).wait_with_output(what, limit)
}

/// Runs `cmd` with the test's own stdout and stderr (for set-up that reports progress),
/// killing it after `limit`.
pub fn status_within(mut cmd: Command, what: &str, limit: Duration) -> ExitStatus {
    let child = cmd.process_group(0).spawn().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    KillOnDrop(child).wait(what, limit)
}

/// A child process (a client, an app, a server) killed if the test gives up on it.
pub struct KillOnDrop(pub Child);

impl KillOnDrop {
    /// Waits for the process to exit; kills it and fails the test after `limit`.
    pub fn wait(&mut self, what: &str, limit: Duration) -> ExitStatus {
        wait_within(&mut self.0, what, limit)
    }

    /// Waits for the process and collects its output (stdout and stderr must be piped), both
    /// read at once: a child blocked on a full stderr pipe would never close stdout.
    pub fn wait_with_output(&mut self, what: &str, limit: Duration) -> Output {
        let stdout = drain(self.0.stdout.take());
        let stderr = drain(self.0.stderr.take());
        let status = wait_until(&mut self.0, limit);
        let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
        match status {
            Some(status) => Output { status, stdout, stderr },
            None => panic!(
                "{what} did not finish within {limit:?}; killed.\n--- stdout ---\n{}\n--- stderr ---\n{}",
                String::from_utf8_lossy(&stdout),
                String::from_utf8_lossy(&stderr)
            ),
        }
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        kill(&mut self.0);
        let _ = self.0.wait();
    }
}

/// Kills `child`'s process group when it leads one (everything it started goes too), else
/// `child` alone.
pub fn kill(child: &mut Child) {
    let pid = child.id() as libc::pid_t;
    // SAFETY: kill(2) with a negative pid signals that process group; no memory is involved.
    if unsafe { libc::kill(-pid, libc::SIGKILL) } != 0 {
        let _ = child.kill();
    }
}

/// Waits for `child` to exit; kills it and fails the test after `limit`.
pub fn wait_within(child: &mut Child, what: &str, limit: Duration) -> ExitStatus {
    wait_until(child, limit).unwrap_or_else(|| panic!("{what} did not exit within {limit:?}; killed"))
}

/// The exit status, or `None` after killing the child when `limit` passed first.
fn wait_until(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if start.elapsed() > limit {
            kill(child);
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}
