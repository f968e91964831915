//! Who hears of calls: the [`Observer`] traits an observer (the metrics) implements, and
//! [`Call`], one call's link to its observers, which reports the call's end exactly once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use grpcio::{MethodType, RpcContext, RpcStatusCode};

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
    /// A call of the method has arrived (its metadata and peer are in `ctx`).
    fn call_started(&self, ctx: &RpcContext) -> Box<dyn CallObserver>;
}

/// One observer's view of one call.
pub(crate) trait CallObserver: Send + Sync {
    fn message_received(&self);
    fn message_sent(&self);
    /// The call is over, with `code`: said once per call.
    fn finished(&self, code: RpcStatusCode);
}

/// One call's observers, shared by its request stream and its reply sink. Holds nothing, and
/// costs nothing, when the server has no observer.
#[derive(Clone, Default)]
pub(crate) struct Call(Option<Arc<Observed>>);

struct Observed {
    observers: Vec<Box<dyn CallObserver>>,
    deadline: grpcio::Deadline,
    done: AtomicBool,
}

impl Call {
    /// A call of a method with `methods` observing it has arrived; `request_included` when its
    /// request came with it (unary and server-streaming calls).
    pub(crate) fn start(methods: &[Arc<dyn MethodObserver>], ctx: &RpcContext, request_included: bool) -> Call {
        if methods.is_empty() {
            return Call(None);
        }
        let observed = Observed {
            observers: methods.iter().map(|m| m.call_started(ctx)).collect(),
            deadline: ctx.deadline(),
            done: AtomicBool::new(false),
        };
        let call = Call(Some(Arc::new(observed)));
        if request_included {
            call.received();
        }
        call
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

impl Observed {
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

impl Drop for Observed {
    /// Handlers always end a call with a status; one that ends unreported was cancelled by
    /// grpcio (the client went away, or its deadline passed).
    fn drop(&mut self) {
        if !self.done.load(Ordering::Acquire) {
            self.finish(self.ended_by_client());
        }
    }
}
