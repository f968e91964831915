//! The server's gate: who is calling, and whether they may, decided for every call of every
//! method before its request is decoded and before any handler runs.
//!
//! grpcio has no interceptors; its `ServerChecker` hook runs on the completion-queue thread
//! after C-core has received a call (and, for a unary call, its request bytes) and before the
//! method's handler decodes anything. [`Gatekeeper`] is that hook: it asks the [`Gate`] (the
//! authorization layer implements it), tells the method's observers of a refused call, and
//! hands the caller it found to the call's handler, which grpcio runs next on the same thread,
//! so the identity is verified once per call.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use grpcio::{CheckResult, Metadata, RpcContext, ServerChecker};

use super::context::Caller;
use super::observe::{MethodObserver, Observed};
use super::verdict::Verdict;

/// Decides who is calling, and whether they may.
pub(crate) trait Gate: Send + Sync {
    /// The caller of the call in `ctx` (its method, metadata and TLS peer), and why it is
    /// refused, if it is.
    fn check(&self, ctx: &RpcContext) -> Verdict;
}

/// The method's observers, by path, as the registrar registered them.
pub(crate) type ObserversByPath = HashMap<&'static str, Arc<[Arc<dyn MethodObserver>]>>;

/// grpcio's per-call hook, asking the gate.
#[derive(Clone)]
pub(crate) struct Gatekeeper {
    gate: Arc<dyn Gate>,
    methods: Arc<ObserversByPath>,
}

impl Gatekeeper {
    pub(crate) fn new(gate: Arc<dyn Gate>, methods: ObserversByPath) -> Self {
        Gatekeeper { gate, methods: Arc::new(methods) }
    }
}

impl ServerChecker for Gatekeeper {
    fn check(&mut self, ctx: &RpcContext) -> CheckResult {
        let Verdict { caller, refusal } = self.gate.check(ctx);
        match refusal {
            None => {
                ADMITTED.with(|slot| *slot.borrow_mut() = Some((key(ctx), caller)));
                CheckResult::Continue
            }
            Some(refusal) => {
                let path = std::str::from_utf8(ctx.method()).unwrap_or("");
                if let Some(observers) = self.methods.get(path) {
                    Observed::start(observers, ctx, &caller, false).refused(&refusal);
                }
                CheckResult::Abort(refusal.status)
            }
        }
    }

    fn box_clone(&self) -> Box<dyn ServerChecker> {
        Box::new(self.clone())
    }
}

thread_local! {
    /// The caller the gate admitted last on this thread, for the handler grpcio runs next.
    static ADMITTED: RefCell<Option<(usize, Caller)>> = const { RefCell::new(None) };
}

/// The call's identity while it is being dispatched: where C-core keeps its request metadata.
fn key(ctx: &RpcContext) -> usize {
    ctx.request_headers() as *const Metadata as usize
}

/// The caller the gate admitted for the call in `ctx`; the default (nobody verified) when the
/// server has no gate.
pub(crate) fn admitted(ctx: &RpcContext) -> Caller {
    ADMITTED.with(|slot| slot.borrow_mut().take()).filter(|(k, _)| *k == key(ctx)).map(|(_, c)| c).unwrap_or_default()
}
