//! Every method the server serves, registered here by hand rather than through the generated
//! `create_*` functions: each call's sinks and streams are wrapped in its [`metrics`] in this
//! one place, and each method handed to the file that implements it.
//!
//! [`metrics`]: crate::metrics

use std::sync::Arc;
use std::task::Poll;

use futures::{future, Sink, SinkExt as _, Stream, StreamExt as _};
use grpcio::{
    ClientStreamingSink, DuplexSink, Method, RpcContext, ServerStreamingSink, Service, ServiceBuilder, UnarySink,
    WriteFlags,
};

use super::health::HealthService;
use super::reflection::ReflectionService;
use crate::metrics::{MethodMetrics, Replies, Reply, Requests, ServerMetrics};
use crate::patterns::stock_price::StockTicker;
use crate::patterns::{chat, record_metrics, say_hello};
use crate::proto::{self, health, reflection};

/// The `greeter.Greeter` service's state. grpcio clones each handler once per completion
/// queue, so it holds only shared, cheaply cloned state.
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

/// Builds grpcio services whose handlers count their calls (or not, without metrics).
pub struct Registrar {
    metrics: Option<Arc<ServerMetrics>>,
}

impl Registrar {
    pub fn new(metrics: Option<Arc<ServerMetrics>>) -> Self {
        Registrar { metrics }
    }

    /// `greeter.Greeter`: the tutorial's four patterns.
    pub fn greeter(&self, greeter: &GreeterService) -> Service {
        let ticker = greeter.ticker.clone();
        let max_len = greeter.max_chat_message_len;
        let builder = self.unary(ServiceBuilder::new(), &proto::METHOD_GREETER_SAY_HELLO, say_hello::say_hello);
        let builder = self.server_streaming(builder, &proto::METHOD_GREETER_GET_STOCK_PRICE, move |ctx, req, sink| {
            ticker.subscribe(ctx, req, sink)
        });
        let builder =
            self.client_streaming(builder, &proto::METHOD_GREETER_RECORD_METRICS, record_metrics::record_metrics);
        let builder = self.duplex(builder, &proto::METHOD_GREETER_CHAT, move |ctx, stream, sink| {
            chat::chat(ctx, stream, sink, max_len)
        });
        builder.build()
    }

    /// `grpc.health.v1.Health`.
    pub fn health(&self, health: &HealthService) -> Service {
        let (check, list, watch) = (health.clone(), health.clone(), health.clone());
        let builder = self.unary(ServiceBuilder::new(), &health::METHOD_HEALTH_CHECK, move |ctx, req, sink| {
            check.check(ctx, req, sink)
        });
        let builder = self.unary(builder, &health::METHOD_HEALTH_LIST, move |ctx, req, sink| list.list(ctx, req, sink));
        let builder = self
            .server_streaming(builder, &health::METHOD_HEALTH_WATCH, move |ctx, req, sink| watch.watch(ctx, req, sink));
        builder.build()
    }

    /// Server reflection, `v1` and `v1alpha`, from one index.
    pub fn reflection(&self, reflection: &ReflectionService) -> [Service; 2] {
        let (v1, v1alpha) = (reflection.clone(), reflection.clone());
        let method = &reflection::v1::METHOD_SERVER_REFLECTION_SERVER_REFLECTION_INFO;
        let v1 = self.duplex(ServiceBuilder::new(), method, move |ctx, stream, sink| v1.serve(ctx, stream, sink));
        let method = &reflection::v1alpha::METHOD_SERVER_REFLECTION_SERVER_REFLECTION_INFO;
        let v1alpha =
            self.duplex(ServiceBuilder::new(), method, move |ctx, stream, sink| v1alpha.serve(ctx, stream, sink));
        [v1.build(), v1alpha.build()]
    }

    fn method<Req, Resp>(&self, method: &Method<Req, Resp>) -> MethodMetrics {
        self.metrics.as_ref().map_or_else(MethodMetrics::off, |m| m.method(method))
    }

    pub(crate) fn unary<Req: 'static, Resp: 'static>(
        &self,
        builder: ServiceBuilder,
        method: &Method<Req, Resp>,
        handler: impl Fn(&RpcContext, Req, Reply<UnarySink<Resp>>) + Send + Clone + 'static,
    ) -> ServiceBuilder {
        let metrics = self.method(method);
        builder.add_unary_handler(method, move |ctx, req, sink| {
            let call = metrics.start(&ctx, true);
            handler(&ctx, req, Reply::new(sink, call))
        })
    }

    pub(crate) fn server_streaming<Req: 'static, Resp: 'static>(
        &self,
        builder: ServiceBuilder,
        method: &Method<Req, Resp>,
        handler: impl Fn(&RpcContext, Req, Replies<ServerStreamingSink<Resp>>) + Send + Clone + 'static,
    ) -> ServiceBuilder {
        let metrics = self.method(method);
        builder.add_server_streaming_handler(method, move |ctx, req, sink| {
            let call = metrics.start(&ctx, true);
            handler(&ctx, req, Replies::new(sink, call))
        })
    }

    pub(crate) fn client_streaming<Req: 'static, Resp: 'static>(
        &self,
        builder: ServiceBuilder,
        method: &Method<Req, Resp>,
        handler: impl Fn(&RpcContext, Requests<Req>, Reply<ClientStreamingSink<Resp>>) + Send + Clone + 'static,
    ) -> ServiceBuilder {
        let metrics = self.method(method);
        builder.add_client_streaming_handler(method, move |ctx, stream, sink| {
            let call = metrics.start(&ctx, false);
            handler(&ctx, Requests::new(stream, call.clone()), Reply::new(sink, call))
        })
    }

    pub(crate) fn duplex<Req: 'static, Resp: 'static>(
        &self,
        builder: ServiceBuilder,
        method: &Method<Req, Resp>,
        handler: impl Fn(&RpcContext, Requests<Req>, Replies<DuplexSink<Resp>>) + Send + Clone + 'static,
    ) -> ServiceBuilder {
        let metrics = self.method(method);
        builder.add_duplex_streaming_handler(method, move |ctx, stream, sink| {
            let call = metrics.start(&ctx, false);
            handler(&ctx, Requests::new(stream, call.clone()), Replies::new(sink, call))
        })
    }
}

/// Sends every item of `replies`, then closes the call with OK. Failing either means the
/// call already ended from the client's side: there is nobody left to tell, so it is only
/// logged, at debug level, as `what`.
///
/// A reply whose successor (or the stream's end) is already known goes out with the buffer
/// hint, so it leaves in one write with what follows: in particular the last reply and the
/// status. That matters at a graceful shutdown, when a health `Watch` gets NOT_SERVING and
/// then its end: C-core closes the connection as soon as its last stream ends, and a client
/// frame provoked by a lone last reply, arriving in that instant, would make the kernel
/// answer RST and drop the status (README, "Graceful shutdown and soak").
pub(crate) async fn reply_all<T, S, R>(mut sink: S, mut replies: R, what: &str)
where
    S: Sink<(T, WriteFlags), Error = grpcio::Error> + Unpin,
    R: Stream<Item = Result<(T, WriteFlags), grpcio::Error>> + Unpin,
{
    let outcome = async {
        let mut next = replies.next().await.transpose()?;
        while let Some((reply, flags)) = next.take() {
            match future::poll_fn(|cx| Poll::Ready(replies.poll_next_unpin(cx))).await {
                Poll::Ready(following) => {
                    sink.feed((reply, flags.buffer_hint(true))).await?;
                    next = following.transpose()?;
                }
                Poll::Pending => {
                    sink.send((reply, flags)).await?;
                    next = replies.next().await.transpose()?;
                }
            }
        }
        sink.close().await
    }
    .await;
    if let Err(e) = outcome {
        log::debug!("{what} ended early: {e}");
    }
}
