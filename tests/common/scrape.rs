//! Reading a server's `/metrics`, series by series: how tests see what the server counted
//! (calls, messages, running subscriptions, open chats) without a hook into its internals.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Every status code as go-grpc-prometheus spells it in `grpc_code`, by number.
pub const CODE_NAMES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// `GET path` over HTTP/1.1: the status line and the body.
pub fn get(addr: SocketAddr, path: &str) -> (String, String) {
    try_get(addr, path).unwrap_or_else(|e| panic!("GET http://{addr}{path}: {e}"))
}

/// `GET path`, or the I/O error that stopped it: for a probe that waits for a server which
/// may accept a connection before it is ready to answer on it (and reset it meanwhile).
pub fn try_get(addr: SocketAddr, path: &str) -> std::io::Result<(String, String)> {
    let mut conn = TcpStream::connect(addr)?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(conn, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    conn.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let chunked = head.lines().any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"));
    let body = if chunked { dechunk(body) } else { body.to_owned() };
    Ok((head.lines().next().unwrap().to_owned(), body))
}

/// A chunked body (RFC 9112 §7.1) put together: each chunk is its hex length, CRLF, the
/// bytes, CRLF; a zero length ends it.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").expect("a chunk size line");
        let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).expect("a hex chunk size");
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
}

/// `/metrics` at `addr`, now.
pub fn scrape(addr: SocketAddr) -> Metrics {
    let (status, body) = get(addr, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    Metrics(body)
}

/// A server's `/metrics` address, kept to scrape it once the server itself has moved on
/// (into its shutdown).
pub struct Scraper(pub SocketAddr);

impl Scraper {
    pub fn scrape(&self) -> Metrics {
        scrape(self.0)
    }
}

/// A scrape, read series by series.
pub struct Metrics(pub String);

impl Metrics {
    /// The value of the series `name` with exactly `labels`; `None` when it is not there.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<&str, &str> = labels.iter().copied().collect();
        self.0.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, labels) = series.split_once('{').unwrap_or((series, "}"));
            let labels: BTreeMap<&str, &str> = labels
                .trim_end_matches('}')
                .split(',')
                .filter(|kv| !kv.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap();
                    (k, v.trim_matches('"'))
                })
                .collect();
            (series_name == name && labels == want).then(|| value.parse().unwrap())
        })
    }

    /// A `greeter.Greeter` method's series of `name` (`handled` with a code).
    pub fn greeter(&self, name: &str, kind: &str, method: &str, code: Option<&str>) -> f64 {
        let mut labels = vec![("grpc_type", kind), ("grpc_service", "greeter.Greeter"), ("grpc_method", method)];
        labels.extend(code.map(|c| ("grpc_code", c)));
        self.get(name, &labels).unwrap_or_else(|| panic!("no {name} {labels:?} in:\n{}", self.0))
    }

    pub fn started(&self, kind: &str, method: &str) -> f64 {
        self.greeter("grpc_server_started_total", kind, method, None)
    }

    pub fn handled(&self, kind: &str, method: &str, code: &str) -> f64 {
        self.greeter("grpc_server_handled_total", kind, method, Some(code))
    }

    pub fn handled_all(&self, kind: &str, method: &str) -> f64 {
        CODE_NAMES.iter().map(|code| self.handled(kind, method, code)).sum()
    }

    /// A gauge or counter without labels (`greeter_stock_subscriptions_active`, …).
    pub fn value(&self, name: &str) -> f64 {
        self.get(name, &[]).unwrap_or_else(|| panic!("no {name} in:\n{}", self.0))
    }

    /// GetStockPrice subscriptions running now.
    pub fn subscriptions_active(&self) -> f64 {
        self.value("greeter_stock_subscriptions_active")
    }

    /// Ticks handed to grpcio, all subscriptions.
    pub fn ticks_sent(&self) -> f64 {
        self.greeter("grpc_server_msg_sent_total", "server_stream", "GetStockPrice", None)
    }

    /// GetStockPrice calls that ended with `code`.
    pub fn subscriptions_ended(&self, code: &str) -> f64 {
        self.handled("server_stream", "GetStockPrice", code)
    }
}
