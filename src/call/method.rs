//! One method of a [`Service`](super::Service) as grpcio registers it: a closure typed by its
//! handler, which, for each call, takes the caller the gate admitted, tells the observers,
//! runs the method's closure and spawns the handler's future with its driver.

use std::sync::{Arc, Mutex};

use futures::Future;
use grpcio::{Marshaller, Method, MethodType, RpcContext, RpcStatus, ServiceBuilder};
use protobuf::MessageFull;

use super::context::{Call, Caller};
use super::drive;
use super::gate;
use super::observe::{MethodObserver, Observed};
use super::replies::{Outbox, Replies};
use super::requests::Requests;

/// The observers of one method.
pub(crate) type MethodObservers = Arc<[Arc<dyn MethodObserver>]>;

/// grpcio's descriptor of one method, with rust-protobuf 3's codec.
pub(crate) fn grpc_method<Req: MessageFull, Resp: MessageFull>(
    kind: MethodType,
    path: &'static str,
) -> Method<Req, Resp> {
    Method {
        ty: kind,
        name: path,
        req_mar: Marshaller { ser: grpcio::pb_ser, de: grpcio::pb_de },
        resp_mar: Marshaller { ser: grpcio::pb_ser, de: grpcio::pb_de },
    }
}

/// How one method of a [`Service`] goes into a grpcio service: a closure typed by its
/// handler, so that the untyped [`Service`] can keep it.
pub(crate) type MethodRegistration =
    dyn Fn(ServiceBuilder, &'static str, MethodObservers) -> ServiceBuilder + Send + Sync;

/// What every call starts with, before its handler: the caller the gate admitted, and its
/// observers told of it.
fn arrive(ctx: &RpcContext, observers: &[Arc<dyn MethodObserver>], request_included: bool) -> (Caller, Observed) {
    let caller = gate::admitted(ctx);
    let observed = Observed::start(observers, ctx, &caller, request_included);
    (caller, observed)
}

pub(crate) fn unary<Req, Resp, H, F>(handler: H) -> Arc<MethodRegistration>
where
    Req: MessageFull,
    Resp: MessageFull,
    H: Fn(&mut Call<'_>, Req) -> F + Send + Sync + 'static,
    F: Future<Output = Result<Resp, RpcStatus>> + Send + 'static,
{
    let handler = Arc::new(handler);
    Arc::new(move |builder: ServiceBuilder, path, observers: MethodObservers| {
        let handler = handler.clone();
        builder.add_unary_handler(&grpc_method::<Req, Resp>(MethodType::Unary, path), move |ctx, req, mut sink| {
            let (caller, observed) = arrive(&ctx, &observers, true);
            let mut call = Call::new(&ctx, &caller);
            let reply = handler(&mut call, req);
            if let Some(headers) = call.take_headers() {
                sink.set_headers(headers);
            }
            ctx.spawn(drive::unary(reply, sink, observed));
        })
    })
}

pub(crate) fn server_streaming<Req, Resp, H, F>(handler: H) -> Arc<MethodRegistration>
where
    Req: MessageFull,
    Resp: MessageFull,
    H: Fn(&mut Call<'_>, Req, Replies<Resp>) -> F + Send + Sync + 'static,
    F: Future<Output = Result<(), RpcStatus>> + Send + 'static,
{
    let handler = Arc::new(handler);
    Arc::new(move |builder: ServiceBuilder, path, observers: MethodObservers| {
        let handler = handler.clone();
        let method = grpc_method::<Req, Resp>(MethodType::ServerStreaming, path);
        builder.add_server_streaming_handler(&method, move |ctx, req, mut sink| {
            let (caller, observed) = arrive(&ctx, &observers, true);
            let outbox = Arc::new(Outbox::default());
            let mut call = Call::new(&ctx, &caller);
            let sent = handler(&mut call, req, Replies::new(outbox.clone()));
            if let Some(headers) = call.take_headers() {
                sink.set_headers(headers);
            }
            ctx.spawn(drive::streaming(sent, sink, outbox, observed, ()));
        })
    })
}

pub(crate) fn client_streaming<Req, Resp, H, F>(handler: H) -> Arc<MethodRegistration>
where
    Req: MessageFull,
    Resp: MessageFull,
    H: Fn(&mut Call<'_>, Requests<Req>) -> F + Send + Sync + 'static,
    F: Future<Output = Result<Resp, RpcStatus>> + Send + 'static,
{
    let handler = Arc::new(handler);
    Arc::new(move |builder: ServiceBuilder, path, observers: MethodObservers| {
        let handler = handler.clone();
        let method = grpc_method::<Req, Resp>(MethodType::ClientStreaming, path);
        builder.add_client_streaming_handler(&method, move |ctx, stream, mut sink| {
            let (caller, observed) = arrive(&ctx, &observers, false);
            let stream = Arc::new(Mutex::new(stream));
            let mut call = Call::new(&ctx, &caller);
            let reply = handler(&mut call, Requests::new(stream.clone(), observed.clone()));
            if let Some(headers) = call.take_headers() {
                sink.set_headers(headers);
            }
            ctx.spawn(drive::client_streaming(reply, sink, observed, stream));
        })
    })
}

pub(crate) fn bidi<Req, Resp, H, F>(handler: H) -> Arc<MethodRegistration>
where
    Req: MessageFull,
    Resp: MessageFull,
    H: Fn(&mut Call<'_>, Requests<Req>, Replies<Resp>) -> F + Send + Sync + 'static,
    F: Future<Output = Result<(), RpcStatus>> + Send + 'static,
{
    let handler = Arc::new(handler);
    Arc::new(move |builder: ServiceBuilder, path, observers: MethodObservers| {
        let handler = handler.clone();
        let method = grpc_method::<Req, Resp>(MethodType::Duplex, path);
        builder.add_duplex_streaming_handler(&method, move |ctx, stream, mut sink| {
            let (caller, observed) = arrive(&ctx, &observers, false);
            let stream = Arc::new(Mutex::new(stream));
            let outbox = Arc::new(Outbox::default());
            let mut call = Call::new(&ctx, &caller);
            let sent =
                handler(&mut call, Requests::new(stream.clone(), observed.clone()), Replies::new(outbox.clone()));
            if let Some(headers) = call.take_headers() {
                sink.set_headers(headers);
            }
            ctx.spawn(drive::streaming(sent, sink, outbox, observed, stream));
        })
    })
}
