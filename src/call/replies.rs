//! [`Replies`]: the messages a handler streams back, and the outbox it shares with the call's
//! driver (`drive.rs`), which writes them.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use grpcio::{RpcStatus, WriteFlags};

/// The replies of a server-streaming or bidi call.
///
/// `send(reply).await` hands a reply over and returns as soon as the call can take another:
/// at once, unless the previous reply is still waiting for the connection (backpressure). It
/// fails once the call is over (the client went away, or its deadline passed): return that
/// error, nobody is left to tell.
///
/// The call ends when the handler returns: `Ok(())` sends OK after the last reply, `Err` sends
/// that status instead. A reply that is followed at once by another, or by the end of the
/// call, leaves in one write with it.
pub struct Replies<T> {
    outbox: Arc<Outbox<T>>,
}

impl<T> Replies<T> {
    pub(crate) fn new(outbox: Arc<Outbox<T>>) -> Self {
        Replies { outbox }
    }

    /// Sends `reply`.
    pub async fn send(&mut self, reply: T) -> Result<(), RpcStatus> {
        self.send_with(reply, WriteFlags::default()).await
    }

    /// Sends `reply` with grpcio's write flags (e.g. `force_no_compress`).
    pub async fn send_with(&mut self, reply: T, flags: WriteFlags) -> Result<(), RpcStatus> {
        let mut reply = Some((reply, flags));
        futures::future::poll_fn(|cx| self.outbox.offer(&mut reply, cx)).await
    }
}

/// One reply in passing from the handler to the driver.
pub(crate) struct Outbox<T> {
    state: Mutex<OutboxState<T>>,
}

struct OutboxState<T> {
    reply: Option<(T, WriteFlags)>,
    /// A `send` that found the outbox full: the handler has its next reply ready.
    waiting: Option<Waker>,
    /// The call is over; every `send` fails with this.
    ended: Option<RpcStatus>,
}

impl<T> Default for Outbox<T> {
    fn default() -> Self {
        Outbox { state: Mutex::new(OutboxState { reply: None, waiting: None, ended: None }) }
    }
}

impl<T> Outbox<T> {
    fn lock(&self) -> MutexGuard<'_, OutboxState<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn offer(&self, reply: &mut Option<(T, WriteFlags)>, cx: &mut Context<'_>) -> Poll<Result<(), RpcStatus>> {
        let mut state = self.lock();
        if let Some(status) = &state.ended {
            return Poll::Ready(Err(status.clone()));
        }
        if state.reply.is_some() {
            state.waiting = Some(cx.waker().clone());
            return Poll::Pending;
        }
        state.reply = reply.take();
        Poll::Ready(Ok(()))
    }

    /// The reply waiting, and whether another is ready behind it.
    pub(crate) fn take(&self) -> Option<((T, WriteFlags), bool)> {
        let mut state = self.lock();
        let reply = state.reply.take()?;
        Some((reply, state.waiting.is_some()))
    }

    pub(crate) fn has_reply(&self) -> bool {
        self.lock().reply.is_some()
    }

    /// Whether the handler waits to send another reply behind the one waiting.
    pub(crate) fn has_another(&self) -> bool {
        self.lock().waiting.is_some()
    }

    /// Lets a `send` that waited try again; `current` is the driver's own task, which polls
    /// the handler next anyway and needs no wake.
    pub(crate) fn release(&self, current: &Waker) {
        let waiting = self.lock().waiting.take();
        if let Some(waker) = waiting.filter(|w| !w.will_wake(current)) {
            waker.wake();
        }
    }

    /// Fails every later `send` with `status`, and wakes one that waits.
    pub(crate) fn end(&self, status: RpcStatus) {
        let waiting = {
            let mut state = self.lock();
            state.ended = Some(status);
            state.reply = None;
            state.waiting.take()
        };
        if let Some(waker) = waiting {
            waker.wake();
        }
    }
}
