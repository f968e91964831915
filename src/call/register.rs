//! [`Registrar`]: every method of every service is registered here, by hand, rather than
//! through the generated `create_*` functions, so that each call's request stream and reply
//! sink are wrapped with the server's observers in this one place.

use std::sync::Arc;

use grpcio::{ClientStreamingSink, DuplexSink, Method, RpcContext, ServerStreamingSink, ServiceBuilder, UnarySink};

use super::observe::{Call, MethodName, MethodObserver, Observer};
use super::reply::{Replies, Reply, Requests};

/// Builds grpcio services whose handlers get their call wrapped for the server's observers
/// (none: the wrappers hold nothing and count nothing).
#[derive(Clone, Default)]
pub(crate) struct Registrar {
    observers: Vec<Arc<dyn Observer>>,
}

impl Registrar {
    pub(crate) fn new(observers: Vec<Arc<dyn Observer>>) -> Self {
        Registrar { observers }
    }

    /// What each observer keeps about `method`, asked once, here.
    fn observers_of<Req, Resp>(&self, method: &Method<Req, Resp>) -> Arc<[Arc<dyn MethodObserver>]> {
        let name = MethodName::new(method.name, method.ty);
        self.observers.iter().map(|o| o.method(name)).collect()
    }

    pub(crate) fn unary<Req: 'static, Resp: 'static>(
        &self,
        builder: ServiceBuilder,
        method: &Method<Req, Resp>,
        handler: impl Fn(&RpcContext, Req, Reply<UnarySink<Resp>>) + Send + Clone + 'static,
    ) -> ServiceBuilder {
        let observers = self.observers_of(method);
        builder.add_unary_handler(method, move |ctx, req, sink| {
            let call = Call::start(&observers, &ctx, true);
            handler(&ctx, req, Reply::new(sink, call))
        })
    }

    pub(crate) fn server_streaming<Req: 'static, Resp: 'static>(
        &self,
        builder: ServiceBuilder,
        method: &Method<Req, Resp>,
        handler: impl Fn(&RpcContext, Req, Replies<ServerStreamingSink<Resp>>) + Send + Clone + 'static,
    ) -> ServiceBuilder {
        let observers = self.observers_of(method);
        builder.add_server_streaming_handler(method, move |ctx, req, sink| {
            let call = Call::start(&observers, &ctx, true);
            handler(&ctx, req, Replies::new(sink, call))
        })
    }

    pub(crate) fn client_streaming<Req: 'static, Resp: 'static>(
        &self,
        builder: ServiceBuilder,
        method: &Method<Req, Resp>,
        handler: impl Fn(&RpcContext, Requests<Req>, Reply<ClientStreamingSink<Resp>>) + Send + Clone + 'static,
    ) -> ServiceBuilder {
        let observers = self.observers_of(method);
        builder.add_client_streaming_handler(method, move |ctx, stream, sink| {
            let call = Call::start(&observers, &ctx, false);
            handler(&ctx, Requests::new(stream, call.clone()), Reply::new(sink, call))
        })
    }

    pub(crate) fn duplex<Req: 'static, Resp: 'static>(
        &self,
        builder: ServiceBuilder,
        method: &Method<Req, Resp>,
        handler: impl Fn(&RpcContext, Requests<Req>, Replies<DuplexSink<Resp>>) + Send + Clone + 'static,
    ) -> ServiceBuilder {
        let observers = self.observers_of(method);
        builder.add_duplex_streaming_handler(method, move |ctx, stream, sink| {
            let call = Call::start(&observers, &ctx, false);
            handler(&ctx, Requests::new(stream, call.clone()), Replies::new(sink, call))
        })
    }
}
