//! A network of the test's own: a thread in a fresh network namespace, with only a loopback
//! interface. The tutorial's clients dial `localhost:50051`, a fixed port; in here that port
//! is always free, whatever else runs on the machine (a user's own server from the README's
//! first command, another test run), and no name lookup can reach the machine's nameserver.
//!
//! Linux keeps network namespaces per thread: sockets the thread creates (a server's listening
//! socket included) and processes it starts belong to the namespace, the rest of the test
//! process does not. Threads that others started before (C-core's own, for instance) stay
//! outside, so a client made in here must be a process started in here, not a channel of
//! this process.

use std::io;

/// Runs `body` on a thread of its own in a new network namespace and returns what it returns
/// (or re-raises its panic). Fails with what to do where the machine does not allow one.
pub fn in_private_network<T: Send + 'static>(body: impl FnOnce() -> T + Send + 'static) -> T {
    let thread = std::thread::Builder::new().name("private-network".into()).spawn(move || {
        enter_new_namespace().unwrap_or_else(|e| {
            panic!(
                "this test runs in a network namespace of its own, so that port 50051 is free whatever \
                 else runs here, and creating one failed: {e}. It needs root (CAP_SYS_ADMIN): run the \
                 tests as root, or in a container that grants it"
            )
        });
        body()
    });
    thread.expect("a thread starts").join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

fn enter_new_namespace() -> io::Result<()> {
    // SAFETY: plain system calls on this thread's own state and on a socket we own.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNET) != 0 {
            return Err(io::Error::last_os_error());
        }
        // A new namespace's loopback is down: bring it up (what `ip link set lo up` does).
        let socket = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        if socket < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut request: libc::ifreq = std::mem::zeroed();
        for (to, from) in request.ifr_name.iter_mut().zip(b"lo\0") {
            *to = *from as libc::c_char;
        }
        let up = if libc::ioctl(socket, libc::SIOCGIFFLAGS, &mut request) == 0 {
            request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            libc::ioctl(socket, libc::SIOCSIFFLAGS, &request)
        } else {
            -1
        };
        let error = io::Error::last_os_error();
        libc::close(socket);
        if up != 0 {
            return Err(io::Error::new(error.kind(), format!("bringing up the loopback interface: {error}")));
        }
    }
    Ok(())
}
