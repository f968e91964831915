//! Shared test set-up: a real server on a free loopback port, and clients for it.
#![allow(dead_code)] // Each test binary uses its own subset.

pub mod abuse;
pub mod dns;
pub mod examples;
pub mod lb;
pub mod load;
pub mod netns;
pub mod nginx;
pub mod pki;
pub mod process;
pub mod raw;
pub mod scrape;
pub mod tools;
pub mod toxiproxy;

use std::time::{Duration, Instant};

use greeter::patterns::stock_price::PRICE_RANGE;
use greeter::proto::{GreeterClient, StockRequest};
use greeter::{blocking, Greeter, GreeterServer, ServerConfig, ShutdownOutcome};
use grpcio::{ChannelBuilder, EnvBuilder};

/// A server for one test, on `127.0.0.1:<free port>`, stopped when dropped.
pub struct TestServer {
    server: Option<GreeterServer>,
    pub addr: String,
}

impl TestServer {
    pub fn start(config: ServerConfig) -> Self {
        let server = ServerConfig { addr: "127.0.0.1:0".to_owned(), ..config }.start().expect("test server starts");
        let addr = format!("127.0.0.1:{}", server.port());
        TestServer { server: Some(server), addr }
    }

    /// The tutorial's server, with ticks `interval` apart instead of 500 ms.
    pub fn with_interval(interval: Duration) -> Self {
        let mut config = local();
        config.greeter.stock_interval = interval;
        Self::start(config)
    }

    /// The tutorial's server with `/metrics` on a free loopback port, ticks `interval` apart.
    pub fn with_metrics(interval: Duration) -> Self {
        Self::start(with_metrics(local(), interval))
    }

    pub fn server(&self) -> &GreeterServer {
        self.server.as_ref().unwrap()
    }

    /// The server's `/metrics` now (its config must have asked for them).
    pub fn scrape(&self) -> scrape::Metrics {
        scrape::scrape(self.server().metrics_local_addr().expect("the config asked for metrics"))
    }

    /// The library's blocking client, with a generous deadline.
    pub fn client(&self) -> blocking::Greeter {
        blocking::Greeter::new(&self.addr, Duration::from_secs(30))
    }

    /// The library's async client, with a generous deadline.
    pub fn async_client(&self) -> Greeter {
        Greeter::new(&self.addr, Duration::from_secs(30))
    }

    /// The generated client, for calls shaped by hand.
    pub fn raw_client(&self) -> GreeterClient {
        GreeterClient::new(self.channel())
    }

    pub fn channel(&self) -> grpcio::Channel {
        let env = std::sync::Arc::new(EnvBuilder::new().cq_count(1).build());
        ChannelBuilder::new(env).max_send_message_len(-1).connect(&self.addr)
    }

    pub fn shutdown(mut self) -> ShutdownOutcome {
        self.server.take().unwrap().shutdown()
    }

    pub async fn shutdown_async(mut self) -> ShutdownOutcome {
        self.server.take().unwrap().shutdown_async().await
    }
}

/// A raw call's options: a deadline, so a call that never ends fails its test instead of
/// hanging the test binary.
pub fn deadline() -> grpcio::CallOption {
    grpcio::CallOption::default().timeout(Duration::from_secs(60))
}

/// The tutorial's server on a free loopback port.
pub fn local() -> ServerConfig {
    ServerConfig { addr: "127.0.0.1:0".to_owned(), ..ServerConfig::default() }
}

/// `config` with `/metrics` on a free loopback port, and ticks `interval` apart.
pub fn with_metrics(mut config: ServerConfig, interval: Duration) -> ServerConfig {
    config.metrics_addr = Some("127.0.0.1:0".to_owned());
    config.greeter.stock_interval = interval;
    config
}

/// `grpc.testing.TestService/UnaryCall`, answered only once released: unary calls that stay
/// in flight, in their handler, for as long as a test wants (Greeter's own are instant).
pub struct HeldUnary {
    latch: Latch,
    pub service: greeter::Service,
}

impl HeldUnary {
    pub fn new() -> Self {
        use greeter::proto::testing::{file_descriptor, SimpleRequest, SimpleResponse};
        let latch = Latch::default();
        let opened = latch.clone();
        let service = greeter::Service::new(file_descriptor(), "grpc.testing.TestService").unary(
            "UnaryCall",
            move |_, request: SimpleRequest| {
                let opened = opened.clone();
                async move {
                    opened.opened().await;
                    Ok(SimpleResponse { username: format!("held {}", request.response_size), ..Default::default() })
                }
            },
        );
        HeldUnary { latch, service }
    }

    /// Lets every held call, and every later one, be answered.
    pub fn release(&mut self) {
        self.latch.open();
    }
}

/// A latch futures wait on until it is opened. Wakes its waiters after letting go of its
/// lock: a waker may drop a task (grpcio's does, for a call already over), and with it a
/// waiting future that would take the lock again.
#[derive(Clone, Default)]
pub struct Latch(std::sync::Arc<std::sync::Mutex<(bool, Vec<std::task::Waker>)>>);

impl Latch {
    pub fn open(&self) {
        let waiting = {
            let mut state = self.0.lock().unwrap();
            state.0 = true;
            std::mem::take(&mut state.1)
        };
        waiting.into_iter().for_each(std::task::Waker::wake);
    }

    pub async fn opened(&self) {
        futures::future::poll_fn(|cx| {
            let mut state = self.0.lock().unwrap();
            if state.0 {
                return std::task::Poll::Ready(());
            }
            state.1.push(cx.waker().clone());
            std::task::Poll::Pending
        })
        .await
    }
}

/// `N` free loopback ports, all different: bound at once, then let go for a program that
/// cannot report the ports it chose (which should retry if one was taken in between).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<std::net::TcpListener> =
        (0..N).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    std::array::from_fn(|i| held[i].local_addr().unwrap().port())
}

/// A loopback port bound but not listening, held for as long as the value lives: connecting
/// to it is refused, and no other process can start listening on it meanwhile (unlike a port
/// bound, dropped and then reused).
pub struct RefusedPort {
    _socket: socket2::Socket,
    pub addr: String,
}

impl RefusedPort {
    pub fn hold() -> Self {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        socket.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
        let port = socket.local_addr().unwrap().as_socket().unwrap().port();
        RefusedPort { _socket: socket, addr: format!("127.0.0.1:{port}") }
    }
}

/// The tutorial's four calls through `greeter`, every result checked: the greeting, five
/// TSMC ticks in the price range, the metrics summary (and an empty one), both chat replies.
pub fn assert_all_four_patterns(greeter: &blocking::Greeter, name: &str) {
    assert_eq!(greeter.say_hello(name).unwrap(), format!("Hello {name}"));

    let ticks = greeter.stock_prices("TSMC", |_| {}).unwrap();
    assert_eq!(ticks.len(), 5, "ticks: {ticks:?}");
    for tick in &ticks {
        assert_eq!(tick.symbol, "TSMC");
        assert!(PRICE_RANGE.contains(&tick.price), "price {} not in [500, 600)", tick.price);
    }

    let summary = greeter.record_metrics(&[25.5, 26.8, 27.1]).unwrap();
    assert_eq!(summary.count, 3);
    assert!((summary.average - (25.5 + 26.8 + 27.1) / 3.0).abs() < 1e-9, "average {}", summary.average);
    let empty = greeter.record_metrics(&[]).unwrap();
    assert_eq!((empty.count, empty.average), (0, 0.0));

    let messages = ["Hello".to_owned(), "Bye".to_owned()];
    let replies = greeter.chat("Rust", &messages, |_| {}).unwrap();
    let replies: Vec<(&str, &str)> = replies.iter().map(|r| (r.user.as_str(), r.message.as_str())).collect();
    assert_eq!(replies, [("Server", "Server received: Hello"), ("Server", "Server received: Bye")]);
}

/// Polls `condition` every 10 ms until it holds; panics with `what` after 10 s.
pub fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < Duration::from_secs(10), "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The status code of a failed grpcio call.
pub fn status_code(err: &grpcio::Error) -> grpcio::RpcStatusCode {
    match err {
        grpcio::Error::RpcFailure(status) => status.code(),
        other => panic!("expected an RPC status, got {other:?}"),
    }
}

/// The tutorial's subscription: `GetStockPrice` for TSMC.
pub fn tsmc() -> StockRequest {
    StockRequest { symbol: "TSMC".into(), ..Default::default() }
}
