//! Running one call: the handler's future, spawned on the call's completion queue, and what
//! the call layer does around it — write the replies, end the call with the handler's status,
//! tell the observers, and watch for the call's end.
//!
//! A streaming call's driver polls grpcio's sink on every turn: its readiness also reports the
//! call's end (the client cancelled, its deadline passed, the server cancelled its calls) and
//! wakes the driver for it. The driver then returns at once, and the handler's future, which
//! it owns, is dropped with everything the handler holds (a health watcher, a subscription's
//! slot): what a call holds is freed when the call ends, however it ends.

use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{future, Sink, SinkExt as _};
use futures_timer::Delay;
use grpcio::{
    ClientStreamingSink, DuplexSink, DuplexSinkFailure, RpcStatus, RpcStatusCode, ServerStreamingSink,
    ServerStreamingSinkFailure, UnarySink, WriteFlags,
};

use super::observe::Observed;
use super::replies::Outbox;
use super::requests::status_of;

/// A unary call: the handler's reply, or its status.
pub(crate) async fn unary<Resp>(
    handler: impl Future<Output = Result<Resp, RpcStatus>>,
    sink: UnarySink<Resp>,
    observed: Observed,
) {
    let sent = match handler.await {
        Ok(reply) => {
            observed.sent();
            sink.success(reply).await.map(|()| RpcStatusCode::OK)
        }
        Err(status) => {
            let code = status.code();
            sink.fail(status).await.map(|()| code)
        }
    };
    report(&observed, sent);
}

/// A client-streaming call: as [`unary`]; `requests` is kept until the status is out.
pub(crate) async fn client_streaming<Resp, Keep>(
    handler: impl Future<Output = Result<Resp, RpcStatus>>,
    sink: ClientStreamingSink<Resp>,
    observed: Observed,
    requests: Keep,
) {
    let sent = match handler.await {
        Ok(reply) => {
            observed.sent();
            sink.success(reply).await.map(|()| RpcStatusCode::OK)
        }
        Err(status) => {
            let code = status.code();
            sink.fail(status).await.map(|()| code)
        }
    };
    report(&observed, sent);
    drop(requests);
}

/// A server-streaming or bidi call: the handler's replies as it sends them, then OK or its
/// status. `requests` (bidi) is kept until the status is out.
pub(crate) async fn streaming<T, S, Keep>(
    handler: impl Future<Output = Result<(), RpcStatus>>,
    mut sink: S,
    outbox: Arc<Outbox<T>>,
    observed: Observed,
    requests: Keep,
) where
    S: StreamSink<T>,
{
    let mut handler = pin!(handler);
    let mut returned = None;
    let mut flusher = Flusher::default();
    let written = future::poll_fn(|cx| {
        write_replies(cx, &mut sink, handler.as_mut(), &mut returned, &outbox, &observed, &mut flusher)
    })
    .await;
    let sent = match written {
        Ok(Ok(())) => sink.close().await.map(|()| RpcStatusCode::OK),
        Ok(Err(status)) => {
            let code = status.code();
            sink.fail(status).await.map(|()| code)
        }
        Err(e) => Err(e),
    };
    if let Err(e) = &sent {
        outbox.end(status_of(e));
    }
    report(&observed, sent);
    drop(requests);
}

/// Polls the handler and writes what it sends, until it has returned and every reply is
/// written (its result), or the call is over (the error that says so).
///
/// A reply goes out with the buffer hint when its successor is already known — the handler
/// waits to send another, or has returned — so it leaves in one write with what follows. A
/// reply after which the handler waits for something else goes out at once, or, when the
/// client is ahead of us, one turn later ([`Flusher`]).
fn write_replies<T, S: StreamSink<T>>(
    cx: &mut Context<'_>,
    sink: &mut S,
    mut handler: Pin<&mut impl Future<Output = Result<(), RpcStatus>>>,
    returned: &mut Option<Result<(), RpcStatus>>,
    outbox: &Outbox<T>,
    observed: &Observed,
    flusher: &mut Flusher,
) -> Poll<grpcio::Result<Result<(), RpcStatus>>> {
    loop {
        // Ready: no write in flight. An error: the call is over.
        let sink_ready = match Pin::new(&mut *sink).poll_ready(cx) {
            Poll::Ready(Ok(())) => true,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => false,
        };
        let waiting = outbox.has_reply();
        if waiting && !sink_ready {
            flusher.ahead = true;
        }
        if waiting && sink_ready {
            let followed = outbox.has_another() || returned.is_some();
            if followed || !flusher.defers(cx) {
                let ((reply, flags), _) = outbox.take().expect("a reply is waiting");
                Pin::new(&mut *sink).start_send((reply, flags.buffer_hint(followed)))?;
                observed.sent();
                outbox.release(cx.waker());
                flusher.wrote(followed);
                continue;
            }
        }
        if sink_ready && !waiting {
            if let Some(result) = returned.take() {
                return Poll::Ready(Ok(result));
            }
        }
        if returned.is_none() {
            if let Poll::Ready(result) = handler.as_mut().poll(cx) {
                *returned = Some(result);
                continue;
            }
            if outbox.has_reply() {
                if !sink_ready {
                    flusher.ahead = true;
                } else if !flusher.holding() {
                    continue;
                }
            }
        }
        return Poll::Pending;
    }
}

/// When a reply whose successor is not known yet is written.
///
/// A pipelining client's next request is often already in C-core's buffer, but grpcio's
/// request stream reads it only on a later completion-queue turn: written at once, every
/// reply would be a write (a `sendmsg`) of its own. So when the client is ahead of us (a reply
/// had to wait for a write in flight since the last flush), the flush is put off by one turn:
/// a `futures-timer` delay of zero, whose wake comes from the timer's thread and so reaches
/// this task through the completion queue, after the read already queued there. If the next
/// request comes first, the held reply leaves with the buffer hint ahead of the next one; if
/// not, it is flushed then. A client in lock-step is never ahead: its replies go at once.
#[derive(Default)]
struct Flusher {
    ahead: bool,
    /// The flush put off until this fires.
    deferred: Option<Delay>,
}

impl Flusher {
    /// Whether to hold the waiting reply for now.
    fn defers(&mut self, cx: &mut Context<'_>) -> bool {
        match &mut self.deferred {
            Some(delay) => Pin::new(delay).poll(cx).is_pending(),
            None if self.ahead => {
                let mut delay = Delay::new(Duration::ZERO);
                let pending = Pin::new(&mut delay).poll(cx).is_pending();
                self.deferred = pending.then_some(delay);
                pending
            }
            None => false,
        }
    }

    fn holding(&self) -> bool {
        self.deferred.is_some()
    }

    /// A reply was written, with the buffer hint when `followed`; a write without it is a
    /// flush, after which the client has yet to show it is ahead again.
    fn wrote(&mut self, followed: bool) {
        self.deferred = None;
        if !followed {
            self.ahead = false;
        }
    }
}

/// Tells the observers how the call ended.
fn report(observed: &Observed, sent: grpcio::Result<RpcStatusCode>) {
    match sent {
        Ok(code) => observed.finish(code),
        Err(e) => observed.failed(&e),
    }
}

/// grpcio's sinks for a stream of replies: `ServerStreamingSink` and `DuplexSink`.
pub(crate) trait StreamSink<T>: Sink<(T, WriteFlags), Error = grpcio::Error> + Unpin + Send {
    type Failed: Future<Output = grpcio::Result<()>> + Send;
    fn fail(self, status: RpcStatus) -> Self::Failed;
}

impl<T> StreamSink<T> for ServerStreamingSink<T> {
    type Failed = ServerStreamingSinkFailure;
    fn fail(self, status: RpcStatus) -> ServerStreamingSinkFailure {
        ServerStreamingSink::fail(self, status)
    }
}

impl<T> StreamSink<T> for DuplexSink<T> {
    type Failed = DuplexSinkFailure;
    fn fail(self, status: RpcStatus) -> DuplexSinkFailure {
        DuplexSink::fail(self, status)
    }
}
