//! The tutorial's Greeter on tonic, for bench/run: `--port P --ticks N --interval-ms MS`
//! (and `--host`), prints `LISTENING <port>` once it accepts. One tokio current_thread
//! runtime: a single thread does all I/O and runs every handler.

use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt as _};
use rand::{rngs::StdRng, Rng as _, SeedableRng as _};
use tonic::{Request, Response, Status, Streaming};

pub mod pb {
    tonic::include_proto!("greeter");
}
use pb::greeter_server::{Greeter, GreeterServer};
use pb::{ChatMessage, HelloReply, HelloRequest, Metric, MetricSummary, StockReply, StockRequest};

struct Svc {
    ticks: u32,
    interval: Duration,
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl Greeter for Svc {
    async fn say_hello(&self, req: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        Ok(Response::new(HelloReply { message: format!("Hello {}", req.into_inner().name) }))
    }

    type GetStockPriceStream = BoxStream<StockReply>;

    async fn get_stock_price(&self, req: Request<StockRequest>) -> Result<Response<Self::GetStockPriceStream>, Status> {
        let symbol = req.into_inner().symbol;
        eprintln!("Received subscription: {symbol}");
        let (ticks, interval) = (self.ticks, self.interval);
        // The stream is polled by tonic as the client reads; dropping it (client gone) stops it.
        let stream = futures::stream::unfold((0u32, StdRng::from_entropy()), move |(i, mut rng)| {
            let symbol = symbol.clone();
            async move {
                if i >= ticks {
                    return None;
                }
                if i > 0 && !interval.is_zero() {
                    tokio::time::sleep(interval).await;
                }
                let reply = StockReply { symbol, price: 500.0 + rng.gen::<f64>() * 100.0 };
                Some((Ok(reply), (i + 1, rng)))
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn record_metrics(&self, req: Request<Streaming<Metric>>) -> Result<Response<MetricSummary>, Status> {
        let mut stream = req.into_inner();
        let (mut sum, mut count) = (0.0f64, 0i32);
        while let Some(m) = stream.message().await? {
            if !m.value.is_finite() {
                return Err(Status::invalid_argument(format!("metric value must be finite, got {}", m.value)));
            }
            sum += m.value;
            count += 1;
        }
        let average = if count > 0 { sum / f64::from(count) } else { 0.0 };
        Ok(Response::new(MetricSummary { count, average }))
    }

    type ChatStream = BoxStream<ChatMessage>;

    async fn chat(&self, req: Request<Streaming<ChatMessage>>) -> Result<Response<Self::ChatStream>, Status> {
        let replies = req.into_inner().map(|msg| {
            msg.map(|m| ChatMessage { user: "Server".to_owned(), message: format!("Server received: {}", m.message) })
        });
        Ok(Response::new(Box::pin(replies)))
    }
}

fn flag(args: &[String], name: &str, default: &str) -> String {
    args.windows(2).find(|w| w[0] == name).map(|w| w[1].clone()).unwrap_or_else(|| default.to_owned())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let host = flag(&args, "--host", "127.0.0.1");
    let port: u16 = flag(&args, "--port", "0").parse()?;
    let ticks: u32 = flag(&args, "--ticks", "5").parse()?;
    let interval = Duration::from_millis(flag(&args, "--interval-ms", "500").parse()?);

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind((host.as_str(), port)).await?;
        println!("LISTENING {}", listener.local_addr()?.port());
        let incoming = Box::pin(futures::stream::unfold(listener, |listener| async move {
            let conn = listener.accept().await.map(|(stream, _)| {
                let _ = stream.set_nodelay(true);
                stream
            });
            Some((conn, listener))
        }));
        tonic::transport::Server::builder()
            // h2 >= 0.4.20 sends GOAWAY(ENHANCE_YOUR_CALM, "too_many_data_frames") when small
            // DATA frames pile up unread; its budget is half the connection window. With the
            // 64 KiB default, ghz's 1000 tiny messages per stream trip it; 8 MiB does not.
            .initial_connection_window_size(8 << 20)
            .add_service(GreeterServer::new(Svc { ticks, interval }))
            .serve_with_incoming(incoming)
            .await?;
        Ok(())
    })
}
