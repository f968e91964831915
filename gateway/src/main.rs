//! `greeter-gateway`: gRPC-Web in (browsers), gRPC out, and the web page.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use greeter_gateway::{GatewayConfig, TlsFiles};

/// gRPC-Web in (browsers), gRPC out: a gateway in front of the greeter server, serving its
/// web page too. SIGINT or SIGTERM shuts it down gracefully.
#[derive(Parser, Debug)]
#[command(name = "greeter-gateway", version)]
struct Args {
    /// Listen on HOST:PORT (port 0: any free port; the log says which).
    #[arg(long, default_value = "localhost:8080")]
    listen: String,
    /// The gRPC server: HOST:PORT or http://HOST:PORT.
    #[arg(long, default_value = "localhost:50051")]
    upstream: String,
    /// HTTP/2 connections to the server; each carries as many calls at once as the server
    /// allows streams per connection (ours: --max-concurrent-streams, 100).
    #[arg(long, default_value_t = 4)]
    upstream_connections: usize,
    /// Serve the page's files from DIR at / (the page's build: web/dist).
    #[arg(long, value_name = "DIR")]
    static_dir: Option<PathBuf>,
    /// An origin (scheme://host[:port]) whose pages may call the gateway across origins;
    /// repeat for more, or `*` for any. None by default.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    allowed_origins: Vec<String>,
    /// The largest request body taken, in bytes as sent (base64 text counts 4/3).
    #[arg(long, default_value_t = 4 << 20)]
    max_request_bytes: u64,
    /// Calls in flight at once (a subscription counts until it ends); past it,
    /// RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = 400)]
    max_concurrent_calls: usize,
    /// On SIGINT/SIGTERM, how long calls in flight get to finish.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    grace: Duration,
    /// Serve TLS (HTTP/2 and HTTP/1.1) with this PEM certificate chain (needs --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve the gateway's Prometheus metrics at http://HOST:PORT/metrics.
    #[arg(long, value_name = "HOST:PORT")]
    metrics_addr: Option<String>,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        _ => None,
    };
    let config = GatewayConfig {
        listen: args.listen,
        upstream: args.upstream,
        upstream_connections: args.upstream_connections,
        static_dir: args.static_dir,
        allowed_origins: args.allowed_origins,
        max_request_bytes: args.max_request_bytes,
        max_concurrent_calls: args.max_concurrent_calls,
        grace: args.grace,
        tls,
        metrics_addr: args.metrics_addr,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    runtime.block_on(async {
        // Listening for the signals before the gateway announces itself: a signal that came
        // between the two would otherwise end the process without a graceful shutdown.
        let signals = Signals::listen();
        let gateway = match config.start().await {
            Ok(gateway) => gateway,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Some(at) = gateway.metrics_addr() {
            log::info!("metrics at http://{at}/metrics");
        }
        let signal = signals.next().await;
        log::info!("{signal}: shutting down gracefully");
        if gateway.shutdown().await {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        }
    })
}

/// SIGINT and SIGTERM, caught from the moment they are listened for.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn listen() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        Signals {
            interrupt: signal(SignalKind::interrupt()).expect("a SIGINT handler"),
            terminate: signal(SignalKind::terminate()).expect("a SIGTERM handler"),
        }
    }

    async fn next(mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}
