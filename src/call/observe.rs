//! Who hears of calls: the [`Observer`] traits an observer (metrics, traces, the access log)
//! implements, and [`Observed`], one call's link to its observers, which reports the call's
//! end exactly once, however it ends: a status sent, the client gone, the call dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use grpcio::{MethodType, RpcContext, RpcStatusCode};

use super::context::Caller;
use super::verdict::Refusal;

/// A registered method: `greeter.Greeter` / `SayHello`, unary.
#[derive(Clone, Copy)]
pub(crate) struct MethodName<'a> {
    pub service: &'a str,
    pub method: &'a str,
    pub kind: MethodType,
}

impl<'a> MethodName<'a> {
    /// From grpcio's full name, `/service/method`.
    pub(crate) fn new(full_name: &'a str, kind: MethodType) -> Self {
        let (service, method) = full_name.trim_start_matches('/').split_once('/').expect("a method is /service/name");
        MethodName { service, method, kind }
    }
}

/// Something that watches every call of a server. Asked once per method, when the method is
/// registered, for what it keeps about that method.
pub(crate) trait Observer: Send + Sync {
    fn method(&self, method: MethodName<'_>) -> Arc<dyn MethodObserver>;
}

/// One observer's view of one method.
pub(crate) trait MethodObserver: Send + Sync {
    /// A call of the method has arrived (its metadata and peer are in `ctx`), from `caller`.
    fn call_started(&self, ctx: &RpcContext, caller: &Caller) -> Box<dyn CallObserver>;
}

/// One observer's view of one call.
pub(crate) trait CallObserver: Send + Sync {
    fn message_received(&self);
    fn message_sent(&self);
    /// The server's gate refused the call (said just before `finished`); no handler ran.
    fn refused(&self, _refusal: &Refusal) {}
    /// The call is over, with `code`: said once per call.
    fn finished(&self, code: RpcStatusCode);
}

/// One call's observers, shared by its request stream and its driver. Holds nothing, and
/// costs nothing, when the server has no observer.
#[derive(Clone, Default)]
pub(crate) struct Observed(Option<Arc<Observers>>);

struct Observers {
    observers: Vec<Box<dyn CallObserver>>,
    deadline: grpcio::Deadline,
    done: AtomicBool,
}

impl Observed {
    /// A call of a method with `methods` observing it has arrived from `caller`;
    /// `request_included` when its request came with it (unary and server-streaming calls).
    pub(crate) fn start(
        methods: &[Arc<dyn MethodObserver>],
        ctx: &RpcContext,
        caller: &Caller,
        request_included: bool,
    ) -> Observed {
        if methods.is_empty() {
            return Observed(None);
        }
        let observers = Observers {
            observers: methods.iter().map(|m| m.call_started(ctx, caller)).collect(),
            deadline: ctx.deadline(),
            done: AtomicBool::new(false),
        };
        let observed = Observed(Some(Arc::new(observers)));
        if request_included {
            observed.received();
        }
        observed
    }

    /// The gate refused the call with `refusal`: the call's whole story.
    pub(crate) fn refused(&self, refusal: &Refusal) {
        self.each(|o| o.refused(refusal));
        self.finish(refusal.status.code());
    }

    pub(crate) fn received(&self) {
        self.each(|o| o.message_received());
    }

    pub(crate) fn sent(&self) {
        self.each(|o| o.message_sent());
    }

    /// The call is over with `code`; only the first report counts.
    pub(crate) fn finish(&self, code: RpcStatusCode) {
        if let Some(observed) = &self.0 {
            observed.finish(code);
        }
    }

    /// The call ended with grpcio error `e`: a status from C-core, or the client gone.
    pub(crate) fn failed(&self, e: &grpcio::Error) {
        if let Some(observed) = &self.0 {
            let code = match e {
                grpcio::Error::RpcFailure(status) | grpcio::Error::RpcFinished(Some(status)) => status.code(),
                _ => observed.ended_by_client(),
            };
            observed.finish(code);
        }
    }

    fn each(&self, event: impl Fn(&dyn CallObserver)) {
        if let Some(observed) = &self.0 {
            observed.observers.iter().for_each(|o| event(o.as_ref()));
        }
    }
}

impl Observers {
    fn finish(&self, code: RpcStatusCode) {
        if !self.done.swap(true, Ordering::AcqRel) {
            self.observers.iter().for_each(|o| o.finished(code));
        }
    }

    /// What the client saw when the call ended without a status from us.
    fn ended_by_client(&self) -> RpcStatusCode {
        if self.deadline.exceeded() {
            RpcStatusCode::DEADLINE_EXCEEDED
        } else {
            RpcStatusCode::CANCELLED
        }
    }
}

impl Drop for Observers {
    /// A call that ends unreported was cancelled under its handler (the client went away, or
    /// its deadline passed) or dropped with its server.
    fn drop(&mut self) {
        if !self.done.load(Ordering::Acquire) {
            self.finish(self.ended_by_client());
        }
    }
}
