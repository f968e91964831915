//! `GET /metrics` over HTTP/1.1 on one thread of its own, which serves every scraper at once:
//! its sockets never block, `poll(2)` says which one can go on, and each connection has a
//! deadline for the whole request and another for the whole answer. A client that sends its
//! request a byte at a time, or reads its answer slowly, holds nothing but its own connection,
//! and only until its deadline; a scrape beside it is answered at once.
//!
//! Requests are parsed by `httparse` (no allocation, a bounded number of headers); a request
//! larger than [`MAX_REQUEST`] gets 431. Every answer closes its connection
//! (`Connection: close`), which every scraper expects; at most [`MAX_CONNECTIONS`] are open at
//! once, the oldest dropped first beyond that. A scrape every few seconds needs no async
//! runtime, and the library takes none.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Prometheus;

/// The most a request may take, from accept to the end of its headers.
pub(crate) const REQUEST_DEADLINE: Duration = Duration::from_secs(2);
/// The most an answer may take to be written.
pub(crate) const ANSWER_DEADLINE: Duration = Duration::from_secs(10);
/// The longest request line and headers accepted, in bytes.
pub(crate) const MAX_REQUEST: usize = 8 * 1024;
/// Connections open at once.
pub(crate) const MAX_CONNECTIONS: usize = 64;
/// Headers a request may have.
const MAX_HEADERS: usize = 32;

/// The running endpoint; [`MetricsEndpoint::stop`] (or the server's graceful shutdown) ends it.
pub(crate) struct MetricsEndpoint {
    addr: SocketAddr,
    /// Written to, to stop the thread.
    stop: UnixStream,
    thread: Option<JoinHandle<()>>,
}

impl MetricsEndpoint {
    /// Listens on `addr` (`127.0.0.1:0` picks a free port) and serves `metrics`.
    pub(crate) fn start(addr: &str, metrics: Arc<Prometheus>) -> io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = UnixStream::pair()?;
        let thread = std::thread::Builder::new()
            .name("greeter-metrics".into())
            .spawn(move || Endpoint { listener, stopped, metrics, conns: Vec::new() }.run())?;
        log::info!("Metrics at http://{addr}/metrics");
        Ok(MetricsEndpoint { addr, stop, thread: Some(thread) })
    }

    /// The address actually bound.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving (open connections are closed) and waits for the thread to end.
    pub(crate) fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = self.stop.write_all(b"x");
            let _ = thread.join();
        }
    }
}

impl Drop for MetricsEndpoint {
    fn drop(&mut self) {
        self.stop_now();
    }
}

struct Endpoint {
    listener: TcpListener,
    stopped: UnixStream,
    metrics: Arc<Prometheus>,
    conns: Vec<Conn>,
}

/// One scraper's connection: reading its request, then writing the answer.
struct Conn {
    stream: TcpStream,
    deadline: Instant,
    request: Vec<u8>,
    /// The answer, once the request is whole, and how much of it is written.
    answer: Option<(Vec<u8>, usize)>,
}

impl Endpoint {
    fn run(mut self) {
        loop {
            let mut fds = Vec::with_capacity(self.conns.len() + 2);
            fds.push(pollfd(self.stopped.as_raw_fd(), libc::POLLIN));
            fds.push(pollfd(self.listener.as_raw_fd(), libc::POLLIN));
            for conn in &self.conns {
                let events = if conn.answer.is_some() { libc::POLLOUT } else { libc::POLLIN };
                fds.push(pollfd(conn.stream.as_raw_fd(), events));
            }
            let now = Instant::now();
            let wait = self.conns.iter().map(|c| c.deadline.saturating_duration_since(now)).min();
            let timeout = wait.map_or(-1, |w| i32::try_from(w.as_millis() + 1).unwrap_or(i32::MAX));
            // SAFETY: `fds` is a valid, initialised array of `fds.len()` pollfd structs.
            let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if ready < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!("metrics endpoint stopped: poll failed: {e}");
                return;
            }
            if fds[0].revents != 0 {
                return;
            }
            // Connections first (their indices match `fds` as polled), then new ones.
            let now = Instant::now();
            let mut index = 0;
            self.conns.retain_mut(|conn| {
                let revents = fds[index + 2].revents;
                index += 1;
                if revents != 0 {
                    if let Some(done) = conn.progress(&self.metrics) {
                        if let Err(e) = done {
                            log::debug!("metrics request not answered: {e}");
                        }
                        return false;
                    }
                }
                conn.deadline > now
            });
            if fds[1].revents != 0 {
                self.accept();
            }
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    if self.conns.len() >= MAX_CONNECTIONS {
                        self.conns.remove(0);
                    }
                    let deadline = Instant::now() + REQUEST_DEADLINE;
                    self.conns.push(Conn { stream, deadline, request: Vec::new(), answer: None });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    log::debug!("metrics connection not accepted: {e}");
                    return;
                }
            }
        }
    }
}

impl Conn {
    /// Reads or writes what the socket allows; `Some` once the connection is done with.
    fn progress(&mut self, metrics: &Prometheus) -> Option<io::Result<()>> {
        if self.answer.is_none() {
            match self.read(metrics) {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => return Some(Err(e)),
            }
        }
        let (answer, written) = self.answer.as_mut()?;
        loop {
            match self.stream.write(&answer[*written..]) {
                Ok(0) => return Some(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    *written += n;
                    if *written == answer.len() {
                        let _ = self.stream.shutdown(std::net::Shutdown::Write);
                        return Some(Ok(()));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// Reads what has arrived; true once the request is whole and its answer is ready.
    fn read(&mut self, metrics: &Prometheus) -> io::Result<bool> {
        let mut buf = [0u8; 1024];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.request.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            if self.request.len() > MAX_REQUEST {
                break;
            }
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        let answer = match request.parse(&self.request) {
            Ok(httparse::Status::Partial) if self.request.len() <= MAX_REQUEST => return Ok(false),
            Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
                answer("431 Request Header Fields Too Large", "text/plain", b"request too large\n")
            }
            Err(e) => answer("400 Bad Request", "text/plain", format!("{e}\n").as_bytes()),
            Ok(httparse::Status::Complete(_)) => {
                let path = request.path.unwrap_or("").split('?').next().unwrap_or("");
                match (request.method.unwrap_or(""), path) {
                    ("GET", "/metrics") => {
                        answer("200 OK", "text/plain; version=0.0.4; charset=utf-8", &metrics.render())
                    }
                    (_, "/metrics") => answer("405 Method Not Allowed", "text/plain", b"only GET\n"),
                    _ => answer("404 Not Found", "text/plain", b"metrics are at /metrics\n"),
                }
            }
        };
        self.answer = Some((answer, 0));
        self.deadline = Instant::now() + ANSWER_DEADLINE;
        Ok(true)
    }
}

fn answer(status: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

fn pollfd(fd: i32, events: libc::c_short) -> libc::pollfd {
    libc::pollfd { fd, events, revents: 0 }
}
