//! [`Registrar`]: every method of every service is registered here, so that each call meets
//! the gate's verdict, the server's observers and its driver in this one place.

use std::sync::{Arc, Mutex, PoisonError};

use futures::Future;
use grpcio::{MethodType, RpcContext, RpcStatus, ServiceBuilder};
use protobuf::MessageFull;

use super::context::{Call, Caller};
use super::drive;
use super::gate::{self, Gate, Gatekeeper, ObserversByPath};
use super::observe::{MethodName, MethodObserver, Observed, Observer};
use super::replies::{Outbox, Replies};
use super::requests::Requests;
use super::service::{grpc_method, Service};

type MethodObservers = Arc<[Arc<dyn MethodObserver>]>;

/// Builds grpcio services from [`Service`]s, each call of each method observed by the
/// server's observers (none: the observed call holds nothing and counts nothing).
pub(crate) struct Registrar {
    observers: Vec<Arc<dyn Observer>>,
    /// What each method's observers are, for the gate's refusals.
    registered: Mutex<ObserversByPath>,
}

impl Registrar {
    pub(crate) fn new(observers: Vec<Arc<dyn Observer>>) -> Self {
        Registrar { observers, registered: Mutex::default() }
    }

    /// `service`'s methods, registered.
    pub(crate) fn register(&self, service: &Service) -> grpcio::Service {
        service
            .builder(|builder, def, path| {
                let name = MethodName::new(path, def.kind);
                let observers: MethodObservers = self.observers.iter().map(|o| o.method(name)).collect();
                self.registered.lock().unwrap_or_else(PoisonError::into_inner).insert(path, observers.clone());
                (def.register)(builder, path, observers)
            })
            .build()
    }

    /// The hook that asks `gate` about every call of every method registered so far.
    pub(crate) fn gatekeeper(&self, gate: Arc<dyn Gate>) -> Gatekeeper {
        let registered = self.registered.lock().unwrap_or_else(PoisonError::into_inner);
        Gatekeeper::new(gate, registered.clone())
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
