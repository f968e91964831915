//! The load of `bash bench/run --gateway`: closed-loop SayHello calls or GetStockPrice
//! subscriptions, over gRPC straight to the server or over gRPC-Web through the gateway,
//! with the same client (tonic) both ways. Prints one JSON line: calls, ticks, errors,
//! rates and latency percentiles.
//!
//!   web_load --target http://127.0.0.1:50051 --protocol grpc --call unary --duration 10s
//!   web_load --target http://127.0.0.1:8080 --protocol grpc-web --call stream

use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes};
use clap::{Parser, ValueEnum};
use http::uri::PathAndQuery;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use protobuf::Message as _;
use tonic::client::{Grpc, GrpcService};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Protocol {
    /// gRPC over HTTP/2, straight to the server.
    Grpc,
    /// gRPC-Web (binary) over HTTP/1.1, to the gateway.
    GrpcWeb,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Call {
    /// SayHello, one after the other on each worker.
    Unary,
    /// GetStockPrice, one subscription after the other on each worker, every tick counted.
    Stream,
}

#[derive(Parser, Debug)]
struct Args {
    #[arg(long)]
    target: String,
    #[arg(long, value_enum)]
    protocol: Protocol,
    #[arg(long, value_enum)]
    call: Call,
    /// Workers, each with its own connection, each one call at a time.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
}

#[derive(Default)]
struct Tally {
    calls: u64,
    ticks: u64,
    errors: u64,
    first_error: Option<String>,
    latencies_us: Vec<u64>,
}

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let start = Instant::now();
    let tallies: Vec<Tally> = runtime.block_on(async {
        let workers: Vec<_> = (0..args.concurrency)
            .map(|_| {
                let target: http::Uri = args.target.parse().expect("--target is a URI");
                let end = Instant::now() + args.duration;
                match args.protocol {
                    Protocol::Grpc => {
                        let http = Client::builder(TokioExecutor::new()).http2_only(true).build(connector());
                        tokio::spawn(work(Grpc::with_origin(http, target), args.call, end))
                    }
                    Protocol::GrpcWeb => {
                        let http = Client::builder(TokioExecutor::new()).build(connector());
                        let web = tonic_web::GrpcWebClientService::new(http);
                        tokio::spawn(work(Grpc::with_origin(web, target), args.call, end))
                    }
                }
            })
            .collect();
        let mut tallies = Vec::new();
        for w in workers {
            tallies.push(w.await.expect("a worker"));
        }
        tallies
    });
    let elapsed = start.elapsed().as_secs_f64();
    let mut all = Tally::default();
    for t in tallies {
        all.calls += t.calls;
        all.ticks += t.ticks;
        all.errors += t.errors;
        all.first_error = all.first_error.or(t.first_error);
        all.latencies_us.extend(t.latencies_us);
    }
    all.latencies_us.sort_unstable();
    let pct = |p: f64| {
        let l = &all.latencies_us;
        if l.is_empty() {
            0
        } else {
            l[((l.len() - 1) as f64 * p).round() as usize]
        }
    };
    println!(
        "{{\"calls\":{},\"ticks\":{},\"errors\":{},\"first_error\":{:?},\"seconds\":{elapsed:.3},\"calls_per_s\":{:.1},\
         \"ticks_per_s\":{:.1},\"p50_us\":{},\"p90_us\":{},\"p99_us\":{}}}",
        all.calls,
        all.ticks,
        all.errors,
        all.first_error.unwrap_or_default(),
        all.calls as f64 / elapsed,
        all.ticks as f64 / elapsed,
        pct(0.5),
        pct(0.9),
        pct(0.99)
    );
}

/// TCP_NODELAY, as gRPC clients and the gateway set it: without it, Nagle's algorithm and
/// delayed ACKs hold small messages for tens of milliseconds.
fn connector() -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector
}

async fn work<T>(mut grpc: Grpc<T>, call: Call, end: Instant) -> Tally
where
    T: GrpcService<tonic::body::Body>,
    T::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    T::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    let hello = Bytes::from(
        greeter::proto::HelloRequest { name: "bench".into(), ..Default::default() }.write_to_bytes().unwrap(),
    );
    let tsmc = Bytes::from(
        greeter::proto::StockRequest { symbol: "TSMC".into(), ..Default::default() }.write_to_bytes().unwrap(),
    );
    let mut tally = Tally::default();
    while Instant::now() < end {
        if let Err(e) = grpc.ready().await {
            tally.errors += 1;
            tally.first_error.get_or_insert_with(|| e.into().to_string());
            continue;
        }
        let start = Instant::now();
        let outcome = match call {
            Call::Unary => {
                let path = PathAndQuery::from_static("/greeter.Greeter/SayHello");
                grpc.unary(tonic::Request::new(hello.clone()), path, BytesCodec).await.map(|_| 0)
            }
            Call::Stream => {
                let path = PathAndQuery::from_static("/greeter.Greeter/GetStockPrice");
                match grpc.server_streaming(tonic::Request::new(tsmc.clone()), path, BytesCodec).await {
                    Ok(reply) => {
                        let mut stream = reply.into_inner();
                        let mut ticks = 0;
                        loop {
                            match stream.message().await {
                                Ok(Some(_)) => ticks += 1,
                                Ok(None) => break Ok(ticks),
                                Err(status) => break Err(status),
                            }
                        }
                    }
                    Err(status) => Err(status),
                }
            }
        };
        match outcome {
            Ok(ticks) => {
                tally.calls += 1;
                tally.ticks += ticks;
                tally.latencies_us.push(start.elapsed().as_micros() as u64);
            }
            Err(status) => {
                tally.errors += 1;
                tally.first_error.get_or_insert_with(|| format!("{:?}: {}", status.code(), status.message()));
            }
        }
    }
    tally
}

/// Messages as bytes, encoded once: the load measures the transport, not protobuf.
#[derive(Clone, Copy, Default)]
struct BytesCodec;

impl Codec for BytesCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = BytesCodec;
    type Decoder = BytesCodec;

    fn encoder(&mut self) -> Self {
        BytesCodec
    }

    fn decoder(&mut self) -> Self {
        BytesCodec
    }
}

impl Encoder for BytesCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for BytesCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}
