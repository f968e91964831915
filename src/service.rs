//! `GreeterService`: the generated `Greeter` trait, each method handed to its pattern's file.

use futures::{Sink, SinkExt as _, Stream};
use grpcio::{ClientStreamingSink, DuplexSink, RequestStream, RpcContext, ServerStreamingSink, UnarySink, WriteFlags};

use crate::proto::{self, ChatMessage, HelloReply, HelloRequest, Metric, MetricSummary, StockReply, StockRequest};
use crate::stock_price::StockTicker;
use crate::{chat, record_metrics, say_hello};

/// The `greeter.Greeter` service. grpcio clones it once per completion queue, so it holds
/// only shared, cheaply cloned state.
#[derive(Clone, Debug)]
pub struct GreeterService {
    ticker: StockTicker,
    max_chat_message_len: usize,
}

impl GreeterService {
    pub fn new(ticker: StockTicker, max_chat_message_len: usize) -> Self {
        GreeterService { ticker, max_chat_message_len }
    }
}

impl proto::Greeter for GreeterService {
    fn say_hello(&mut self, ctx: RpcContext, req: HelloRequest, sink: UnarySink<HelloReply>) {
        say_hello::say_hello(&ctx, req, sink)
    }

    fn get_stock_price(&mut self, ctx: RpcContext, req: StockRequest, sink: ServerStreamingSink<StockReply>) {
        self.ticker.subscribe(&ctx, req, sink)
    }

    fn record_metrics(
        &mut self,
        ctx: RpcContext,
        stream: RequestStream<Metric>,
        sink: ClientStreamingSink<MetricSummary>,
    ) {
        record_metrics::record_metrics(&ctx, stream, sink)
    }

    fn chat(&mut self, ctx: RpcContext, stream: RequestStream<ChatMessage>, sink: DuplexSink<ChatMessage>) {
        chat::chat(&ctx, stream, sink, self.max_chat_message_len)
    }
}

/// Sends every item of `replies`, then closes the call with OK. Failing either means the
/// call already ended from the client's side: there is nobody left to tell, so it is only
/// logged, at debug level, as `what`.
pub(crate) async fn reply_all<T, S, R>(mut sink: S, mut replies: R, what: &str)
where
    S: Sink<(T, WriteFlags), Error = grpcio::Error> + Unpin,
    R: Stream<Item = Result<(T, WriteFlags), grpcio::Error>> + Unpin,
{
    let outcome = match sink.send_all(&mut replies).await {
        Ok(()) => sink.close().await,
        Err(e) => Err(e),
    };
    if let Err(e) = outcome {
        log::debug!("{what} ended early: {e}");
    }
}
