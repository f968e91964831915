//! A thin client over the generated `GreeterClient`: one method per tutorial call, each with
//! a deadline and errors that name the call and the address.
//!
//! Calls block on `futures::executor`; grpcio's completion-queue threads do the I/O.

use std::sync::Arc;
use std::time::Duration;

use futures::executor::block_on;
use futures::{SinkExt as _, StreamExt as _, TryStreamExt as _};
use grpcio::{CallOption, ChannelBuilder, EnvBuilder, WriteFlags};

use crate::error::ClientError;
use crate::tls::ClientTls;
use crate::proto::{ChatMessage, GreeterClient, HelloRequest, Metric, MetricSummary, StockReply, StockRequest};

/// A connection to one Greeter server.
pub struct Greeter {
    client: GreeterClient,
    addr: String,
    deadline: Duration,
}

impl Greeter {
    /// Prepares a channel to `addr` (`host:port`). Nothing is dialled until the first call;
    /// every call must finish within `deadline`.
    pub fn connect(addr: &str, deadline: Duration) -> Self {
        Self::with_channel(channel_builder(), addr, deadline)
    }

    /// Like [`Greeter::connect`], over TLS (needs the `tls` feature).
    pub fn connect_tls(addr: &str, deadline: Duration, tls: &ClientTls) -> Result<Self, ClientError> {
        Ok(Self::with_channel(tls.apply(channel_builder())?, addr, deadline))
    }

    fn with_channel(builder: ChannelBuilder, addr: &str, deadline: Duration) -> Self {
        Greeter {
            client: GreeterClient::new(builder.connect(addr)),
            addr: addr.to_owned(),
            deadline,
        }
    }

    /// The generated client, for calls this wrapper does not cover.
    pub fn raw(&self) -> &GreeterClient {
        &self.client
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    fn options(&self) -> CallOption {
        CallOption::default().timeout(self.deadline)
    }

    fn error(&self, call: &'static str) -> impl Fn(grpcio::Error) -> ClientError + '_ {
        move |e| ClientError::from_grpc(call, &self.addr, e)
    }

    /// Level 1: the server's greeting for `name`.
    pub fn say_hello(&self, name: &str) -> Result<String, ClientError> {
        let req = HelloRequest {
            name: name.to_owned(),
            ..Default::default()
        };
        let reply = self.client.say_hello_opt(&req, self.options()).map_err(self.error("SayHello"))?;
        Ok(reply.message)
    }

    /// Level 2: subscribes to `symbol`, calling `on_tick` as each price arrives.
    pub fn stock_prices(&self, symbol: &str, mut on_tick: impl FnMut(&StockReply)) -> Result<Vec<StockReply>, ClientError> {
        let req = StockRequest {
            symbol: symbol.to_owned(),
            ..Default::default()
        };
        let err = self.error("GetStockPrice");
        let mut stream = self.client.get_stock_price_opt(&req, self.options()).map_err(&err)?;
        block_on(async {
            let mut ticks = Vec::new();
            while let Some(tick) = stream.try_next().await.map_err(&err)? {
                on_tick(&tick);
                ticks.push(tick);
            }
            Ok(ticks)
        })
    }

    /// Level 3: uploads `values` and returns the server's count and average.
    pub fn record_metrics(&self, values: &[f64]) -> Result<MetricSummary, ClientError> {
        let err = self.error("RecordMetrics");
        let (mut sink, summary) = self.client.record_metrics_opt(self.options()).map_err(&err)?;
        let mut metrics = futures::stream::iter(values).map(|&value| {
            let metric = Metric {
                value,
                ..Default::default()
            };
            Ok((metric, WriteFlags::default().buffer_hint(true)))
        });
        block_on(async {
            // A failed send means the server already answered (e.g. rejected a value): stop
            // sending and read its answer.
            if sink.send_all(&mut metrics).await.is_ok() {
                let _ = sink.close().await;
            }
            summary.await.map_err(&err)
        })
    }

    /// Level 4: sends every message as `user` while receiving replies in parallel (full
    /// duplex), calling `on_reply` for each; returns the replies in order.
    pub fn chat(&self, user: &str, messages: &[String], mut on_reply: impl FnMut(&ChatMessage)) -> Result<Vec<ChatMessage>, ClientError> {
        let err = self.error("Chat");
        let (mut sink, mut replies) = self.client.chat_opt(self.options()).map_err(&err)?;
        let send = async {
            for text in messages {
                let msg = ChatMessage {
                    user: user.to_owned(),
                    message: text.clone(),
                    ..Default::default()
                };
                sink.send((msg, WriteFlags::default())).await?;
            }
            sink.close().await
        };
        let receive = async {
            let mut received = Vec::new();
            while let Some(reply) = replies.try_next().await? {
                on_reply(&reply);
                received.push(reply);
            }
            Ok::<_, grpcio::Error>(received)
        };
        // The receive side carries the call's status. A failed send next to an OK status
        // only means the server finished first (e.g. before our half-close reached it).
        let (_sent, received) = block_on(futures::future::join(send, receive));
        received.map_err(&err)
    }
}

/// Our own message limits are the server's business: the client accepts any size.
fn channel_builder() -> ChannelBuilder {
    let env = Arc::new(EnvBuilder::new().cq_count(1).name_prefix("greeter-client").build());
    ChannelBuilder::new(env).max_receive_message_len(-1).max_send_message_len(-1)
}
