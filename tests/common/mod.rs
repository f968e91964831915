//! Shared test set-up: a real server on a free loopback port, and clients for it.
#![allow(dead_code)] // Each test binary uses its own subset.

pub mod examples;
pub mod load;
pub mod tools;

use std::time::{Duration, Instant};

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
        let mut config = ServerConfig::local();
        config.ticker.interval = interval;
        Self::start(config)
    }

    pub fn server(&self) -> &GreeterServer {
        self.server.as_ref().unwrap()
    }

    /// The library's blocking client, with a generous deadline.
    pub fn client(&self) -> blocking::Greeter {
        blocking::Greeter::connect(&self.addr, Duration::from_secs(30))
    }

    /// The library's async client, with a generous deadline.
    pub fn async_client(&self) -> Greeter {
        Greeter::connect(&self.addr, Duration::from_secs(30))
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
