//! `grpc.health.v1.Health`: whether the server, and each service, should get traffic.
//!
//! Ours rather than `grpcio-health`'s: that crate's protobuf-3 code only compiles against
//! protobuf 3.2.0 exactly, and protobuf before 3.7.2 overflows its stack on deeply nested
//! input (RUSTSEC-2024-0437) — not something a server facing the network may link.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::channel::mpsc;
use futures::StreamExt as _;
use grpcio::{RpcContext, RpcStatus, RpcStatusCode, ServerStreamingSink, UnarySink, WriteFlags};

use crate::metrics::{Replies, Reply};
use protobuf::EnumOrUnknown;

use super::service::reply_all;
use crate::proto::health::{
    health_check_response::ServingStatus, HealthCheckRequest, HealthCheckResponse, HealthListRequest,
    HealthListResponse,
};

/// The statuses a server reports, shared by every clone. Starts empty: a service is unknown
/// (Check: NOT_FOUND) until given a status.
#[derive(Clone, Debug, Default)]
pub struct HealthService {
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
    pub fn set_serving_status(&self, service: &str, status: ServingStatus) {
        let mut state = self.state.lock().unwrap();
        if state.shut_down {
            return;
        }
        if state.statuses.insert(service.to_owned(), status) != Some(status) {
            state.notify(service, status);
        }
    }

    pub fn status(&self, service: &str) -> Option<ServingStatus> {
        self.state.lock().unwrap().statuses.get(service).copied()
    }

    /// Marks every service NOT_SERVING for good, tells the watchers, then ends their streams
    /// (with OK), so that they do not hold up a graceful shutdown. Returns how many watchers
    /// were told: each is a client, or a load balancer, that may still route calls here.
    pub fn shutdown(&self) -> usize {
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

/// The three methods, registered by [`Registrar::health`](super::service::Registrar::health).
impl HealthService {
    pub fn check(&self, ctx: &RpcContext, req: HealthCheckRequest, sink: Reply<UnarySink<HealthCheckResponse>>) {
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

    pub fn list(&self, ctx: &RpcContext, _req: HealthListRequest, sink: Reply<UnarySink<HealthListResponse>>) {
        let statuses = self.state.lock().unwrap().statuses.clone();
        let reply = HealthListResponse {
            statuses: statuses.into_iter().map(|(name, status)| (name, response(status))).collect(),
            ..Default::default()
        };
        ctx.spawn(async move {
            let _ = sink.success(reply).await;
        });
    }

    pub fn watch(
        &self,
        ctx: &RpcContext,
        req: HealthCheckRequest,
        sink: Replies<ServerStreamingSink<HealthCheckResponse>>,
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
        ctx.spawn(reply_all(sink, responses, "health watch"));
    }
}
