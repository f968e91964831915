//! `GET /metrics` over plain HTTP/1.1, on a thread of its own: a scrape every few seconds
//! needs no async runtime, and the library takes none.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::Prometheus;

/// A scraper that has not sent its request line by then is dropped, so one stalled client
/// cannot hold the endpoint.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The running endpoint; [`MetricsEndpoint::stop`] (or the server's graceful shutdown) ends it.
pub(crate) struct MetricsEndpoint {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsEndpoint {
    /// Listens on `addr` (`127.0.0.1:0` picks a free port) and serves `metrics`.
    pub(crate) fn start(addr: &str, metrics: Arc<Prometheus>) -> io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = stopping.clone();
        let thread = std::thread::Builder::new().name("greeter-metrics".into()).spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::Acquire) {
                    break;
                }
                if let Ok(conn) = conn {
                    if let Err(e) = answer(conn, &metrics) {
                        log::debug!("metrics request not answered: {e}");
                    }
                }
            }
        })?;
        log::info!("Metrics at http://{addr}/metrics");
        Ok(MetricsEndpoint { addr, stopping, thread: Some(thread) })
    }

    /// The address actually bound.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops listening and waits for the thread to end.
    pub(crate) fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.stopping.store(true, Ordering::Release);
            // `accept` blocks; a connection of our own wakes it to see the flag.
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
            let _ = thread.join();
        }
    }
}

impl Drop for MetricsEndpoint {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// One request, one answer, then close: `GET /metrics` gets the text format, anything else a
/// plain 404 or 405.
fn answer(conn: TcpStream, metrics: &Prometheus) -> io::Result<()> {
    conn.set_read_timeout(Some(READ_TIMEOUT))?;
    conn.set_write_timeout(Some(READ_TIMEOUT))?;
    let mut reader = BufReader::new(&conn);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Skip the headers: nothing in them changes the answer.
    let mut header = String::new();
    while reader.read_line(&mut header)? > 2 {
        header.clear();
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", metrics.render()),
        (_, "/metrics") => ("405 Method Not Allowed", "text/plain", b"only GET\n".to_vec()),
        _ => ("404 Not Found", "text/plain", b"metrics are at /metrics\n".to_vec()),
    };
    let mut conn = &conn;
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    conn.write_all(&body)?;
    conn.flush()
}
