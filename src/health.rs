//! `grpc.health.v1.Health`: whether the server, and each service, should get traffic.
//!
//! Ours rather than `grpcio-health`'s: that crate's protobuf-3 code only compiles against
//! protobuf 3.2.0 exactly, and protobuf before 3.7.2 overflows its stack on deeply nested
//! input (RUSTSEC-2024-0437) — not something a server facing the network may link.
//!
//! A Watch call holds a [`Watcher`]: registered when the call arrives, removed when it is
//! dropped, which the call layer does the moment the call ends, however it ends. A watcher
//! keeps only the latest status it has not sent yet, so a client that reads slowly costs the
//! same few bytes as one that reads at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use grpcio::{RpcStatus, RpcStatusCode};
use protobuf::EnumOrUnknown;

use crate::call::{Replies, Service};
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
    /// The Watch calls open now, by an id of their own.
    watchers: HashMap<u64, WatchEntry>,
    next_id: u64,
    shut_down: bool,
}

#[derive(Debug)]
struct WatchEntry {
    service: String,
    /// The status not sent yet, if any.
    pending: Option<ServingStatus>,
    waker: Option<Waker>,
}

impl HealthState {
    /// Gives `service`'s watchers `status` to send next.
    fn notify(&mut self, service: &str, status: ServingStatus) {
        for entry in self.watchers.values_mut().filter(|w| w.service == service) {
            entry.pending = Some(status);
            if let Some(waker) = entry.waker.take() {
                waker.wake();
            }
        }
    }
}

impl HealthService {
    fn lock(&self) -> MutexGuard<'_, HealthState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets a service's status ("" is the whole server); watchers hear of a change at once.
    /// Ignored after [`HealthService::shutdown`], which is final.
    pub(crate) fn set_serving_status(&self, service: &str, status: ServingStatus) {
        let mut state = self.lock();
        if state.shut_down {
            return;
        }
        if state.statuses.insert(service.to_owned(), status) != Some(status) {
            state.notify(service, status);
        }
    }

    pub(crate) fn status(&self, service: &str) -> Option<ServingStatus> {
        self.lock().statuses.get(service).copied()
    }

    /// How many Watch calls are open.
    pub(crate) fn watchers(&self) -> impl Fn() -> u64 + Send + Sync + 'static {
        let health = self.clone();
        move || health.lock().watchers.len() as u64
    }

    /// Marks every service NOT_SERVING for good and tells the watchers, whose streams then
    /// end (with OK) once they have sent it, so that they do not hold up a graceful shutdown.
    /// Returns how many watchers were told: each is a client, or a load balancer, that may
    /// still route calls here.
    pub(crate) fn shutdown(&self) -> usize {
        let mut state = self.lock();
        state.shut_down = true;
        let services: Vec<String> = state.statuses.keys().cloned().collect();
        for service in services {
            state.statuses.insert(service.clone(), ServingStatus::NOT_SERVING);
            state.notify(&service, ServingStatus::NOT_SERVING);
        }
        for entry in state.watchers.values_mut() {
            if let Some(waker) = entry.waker.take() {
                waker.wake();
            }
        }
        state.watchers.len()
    }

    /// A watcher of `service`, its current status (SERVICE_UNKNOWN when it has none) first.
    fn watch(&self, service: &str) -> Watcher {
        let mut state = self.lock();
        let current = state.statuses.get(service).copied().unwrap_or(ServingStatus::SERVICE_UNKNOWN);
        let id = state.next_id;
        state.next_id += 1;
        state.watchers.insert(id, WatchEntry { service: service.to_owned(), pending: Some(current), waker: None });
        Watcher { health: self.clone(), id }
    }

    /// `grpc.health.v1.Health`: Check, List and Watch.
    pub(crate) fn service(&self) -> Service {
        let (check, list, watch) = (self.clone(), self.clone(), self.clone());
        Service::new(health::file_descriptor(), "grpc.health.v1.Health")
            .unary("Check", move |_, request| std::future::ready(check.check(&request)))
            .unary("List", move |_, _: HealthListRequest| std::future::ready(Ok(list.list())))
            .server_streaming("Watch", move |_, request, replies| watch.clone().send_statuses(request, replies))
    }

    fn check(&self, request: &HealthCheckRequest) -> Result<HealthCheckResponse, RpcStatus> {
        match self.status(&request.service) {
            Some(status) => Ok(response(status)),
            None => {
                Err(RpcStatus::with_message(RpcStatusCode::NOT_FOUND, format!("unknown service {:?}", request.service)))
            }
        }
    }

    fn list(&self) -> HealthListResponse {
        let statuses = self.lock().statuses.clone();
        HealthListResponse {
            statuses: statuses.into_iter().map(|(name, status)| (name, response(status))).collect(),
            ..Default::default()
        }
    }

    /// Watch: the service's status now, then each change, until the server shuts down.
    async fn send_statuses(
        self,
        request: HealthCheckRequest,
        mut replies: Replies<HealthCheckResponse>,
    ) -> Result<(), RpcStatus> {
        let mut watcher = self.watch(&request.service);
        while let Some(status) = watcher.next().await {
            replies.send(response(status)).await?;
        }
        Ok(())
    }
}

fn response(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse { status: EnumOrUnknown::new(status), ..Default::default() }
}

/// One Watch call's place among the watchers, given up when dropped.
struct Watcher {
    health: HealthService,
    id: u64,
}

impl Watcher {
    /// The next status to send; `None` once the server has shut down and the last is sent.
    async fn next(&mut self) -> Option<ServingStatus> {
        futures::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<ServingStatus>> {
        let mut state = self.health.lock();
        let shut_down = state.shut_down;
        let Some(entry) = state.watchers.get_mut(&self.id) else { return Poll::Ready(None) };
        match entry.pending.take() {
            Some(status) => Poll::Ready(Some(status)),
            None if shut_down => Poll::Ready(None),
            None => {
                entry.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.health.lock().watchers.remove(&self.id);
    }
}
