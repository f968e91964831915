//! `grpc.health.v1.Health`: whether the server, and each service, should get traffic.
//!
//! Ours rather than `grpcio-health`'s: that crate's protobuf-3 code only compiles against
//! protobuf 3.2.0 exactly, and protobuf before 3.7.2 overflows its stack on deeply nested
//! input (RUSTSEC-2024-0437) — not something a server facing the network may link.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::channel::mpsc;
use futures::StreamExt as _;
use grpcio::{
    RpcContext, RpcStatus, RpcStatusCode, ServerStreamingSink, Service, ServiceBuilder, UnarySink, WriteFlags,
};
use protobuf::EnumOrUnknown;

use crate::call::{reply_all, Registrar, Replies, Reply};
use crate::proto::health::{
    self, health_check_response::ServingStatus, HealthCheckRequest, HealthCheckResponse, HealthListRequest,
    HealthListResponse,
};

/// The statuses a server reports, shared by every clone. Starts empty: a service is unknown
/// (Check: NOT_FOUND) until given a status.
#[derive(Clone, Debug, Default)]
pub(crate) struct HealthService {
    state: Arc<Mutex<HealthState>>,
}

#[derive(Debug, Default)]
struct HealthState {
    statuses: BTreeMap<String, ServingStatus>,
    watchers: Vec<Watcher>,
    shut_down: bool,
}

#[derive(Debug)]
struct Watcher {
    service: String,
    updates: mpsc::UnboundedSender<ServingStatus>,
}

impl HealthState {
    /// Tells `service`'s watchers; forgets the ones that have hung up.
    fn notify(&mut self, service: &str, status: ServingStatus) {
        self.watchers.retain(|w| w.service != service || w.updates.unbounded_send(status).is_ok());
    }
}

impl HealthService {
    /// Sets a service's status ("" is the whole server); watchers hear of a change at once.
    /// Ignored after [`HealthService::shutdown`], which is final.
    pub(crate) fn set_serving_status(&self, service: &str, status: ServingStatus) {
        let mut state = self.state.lock().unwrap();
        if state.shut_down {
            return;
        }
        if state.statuses.insert(service.to_owned(), status) != Some(status) {
            state.notify(service, status);
        }
    }

    pub(crate) fn status(&self, service: &str) -> Option<ServingStatus> {
        self.state.lock().unwrap().statuses.get(service).copied()
    }

    /// Marks every service NOT_SERVING for good, tells the watchers, then ends their streams
    /// (with OK), so that they do not hold up a graceful shutdown. Returns how many watchers
    /// were told: each is a client, or a load balancer, that may still route calls here.
    pub(crate) fn shutdown(&self) -> usize {
        let mut state = self.state.lock().unwrap();
        state.shut_down = true;
        let services: Vec<String> = state.statuses.keys().cloned().collect();
        for service in services {
            state.statuses.insert(service.clone(), ServingStatus::NOT_SERVING);
            state.notify(&service, ServingStatus::NOT_SERVING);
        }
        let told = state.watchers.len();
        state.watchers.clear();
        told
    }
}

fn response(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse { status: EnumOrUnknown::new(status), ..Default::default() }
}

/// The three methods.
impl HealthService {
    /// `grpc.health.v1.Health`, registered through `registrar`.
    pub(crate) fn service(&self, registrar: &Registrar) -> Service {
        let (check, list, watch) = (self.clone(), self.clone(), self.clone());
        let b = registrar.unary(ServiceBuilder::new(), &health::METHOD_HEALTH_CHECK, move |ctx, req, sink| {
            check.check(ctx, req, sink)
        });
        let b = registrar.unary(b, &health::METHOD_HEALTH_LIST, move |ctx, req, sink| list.list(ctx, req, sink));
        let b = registrar
            .server_streaming(b, &health::METHOD_HEALTH_WATCH, move |ctx, req, sink| watch.watch(ctx, req, sink));
        b.build()
    }

    fn check(&self, ctx: &RpcContext, req: HealthCheckRequest, sink: Reply<UnarySink<HealthCheckResponse>>) {
        let status = self.status(&req.service);
        ctx.spawn(async move {
            let _ = match status {
                Some(status) => sink.success(response(status)).await,
                None => {
                    let unknown = format!("unknown service {:?}", req.service);
                    sink.fail(RpcStatus::with_message(RpcStatusCode::NOT_FOUND, unknown)).await
                }
            };
        });
    }

    fn list(&self, ctx: &RpcContext, _req: HealthListRequest, sink: Reply<UnarySink<HealthListResponse>>) {
        let statuses = self.state.lock().unwrap().statuses.clone();
        let reply = HealthListResponse {
            statuses: statuses.into_iter().map(|(name, status)| (name, response(status))).collect(),
            ..Default::default()
        };
        ctx.spawn(async move {
            let _ = sink.success(reply).await;
        });
    }

    fn watch(
        &self,
        ctx: &RpcContext,
        req: HealthCheckRequest,
        mut sink: Replies<ServerStreamingSink<HealthCheckResponse>>,
    ) {
        let (updates, received) = mpsc::unbounded();
        {
            let mut state = self.state.lock().unwrap();
            let current = state.statuses.get(&req.service).copied();
            let _ = updates.unbounded_send(current.unwrap_or(ServingStatus::SERVICE_UNKNOWN));
            if !state.shut_down {
                state.watchers.push(Watcher { service: req.service, updates });
            } // else: `updates` drops here and the stream ends after the current status.
        }
        let responses = received.map(|status| Ok((response(status), WriteFlags::default())));
        ctx.spawn(async move {
            if let Err(e) = reply_all(&mut sink, responses).await {
                log::debug!("health watch ended early: {e}");
            }
        });
    }
}
