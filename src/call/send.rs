//! Writing a stream of replies: [`reply_all`] for streams whose replies come from the server
//! (stock ticks, health statuses, reflection answers), [`SendAllBatched`] for a bidi stream that
//! answers each message of an interactive client (Chat).

use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{mpsc, Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};

use futures::{future, Future, Sink, SinkExt as _, Stream, StreamExt as _};
use grpcio::WriteFlags;

/// Sends every item of `replies`, then closes the call with OK; an error means the call already
/// ended from the client's side (or C-core ended it), and there is nobody left to tell.
///
/// A reply whose successor (or the stream's end) is already known goes out with the buffer
/// hint, so it leaves in one write with what follows: replies that are ready together share a
/// write, and the last reply leaves with the status. That matters at a graceful shutdown: C-core
/// closes a connection as soon as its last stream ends, and a client frame provoked by a lone
/// last reply, arriving in that instant, would make the kernel answer RST and drop the status
/// (docs/design.md, "The last reply and the status in one write").
///
/// While it waits for the next reply it also watches the call, so a client that cancels, or
/// whose deadline passes, ends the stream at once, not when the next reply is due.
pub(crate) async fn reply_all<T, S, R>(sink: &mut S, mut replies: R) -> grpcio::Result<()>
where
    S: Sink<(T, WriteFlags), Error = grpcio::Error> + Unpin,
    R: Stream<Item = grpcio::Result<(T, WriteFlags)>> + Unpin,
{
    let mut next = next_unless_finished(sink, &mut replies).await?;
    while let Some((reply, flags)) = next.take() {
        match future::poll_fn(|cx| Poll::Ready(replies.poll_next_unpin(cx))).await {
            Poll::Ready(following) => {
                sink.feed((reply, flags.buffer_hint(true))).await?;
                next = following.transpose()?;
            }
            Poll::Pending => {
                sink.send((reply, flags)).await?;
                next = next_unless_finished(sink, &mut replies).await?;
            }
        }
    }
    sink.close().await
}

/// The next reply, or the call's end if that comes first. A grpcio sink's `poll_ready` reports
/// `RemoteStopped` once the call is over, and registers the waker for that event: polling it
/// beside the stream is how a handler that waits hears of a cancellation.
async fn next_unless_finished<T, S, R>(sink: &mut S, replies: &mut R) -> grpcio::Result<Option<(T, WriteFlags)>>
where
    S: Sink<(T, WriteFlags), Error = grpcio::Error> + Unpin,
    R: Stream<Item = grpcio::Result<(T, WriteFlags)>> + Unpin,
{
    future::poll_fn(|cx| {
        if let Poll::Ready(Err(e)) = sink.poll_ready_unpin(cx) {
            return Poll::Ready(Err(e));
        }
        replies.poll_next_unpin(cx).map(Option::transpose)
    })
    .await
}

/// `SinkExt::send_all` for a bidi handler (`chat`), except that it may put a flush off by one
/// completion-queue turn. It resolves after the stream's end *and* a flush, so `close`/`fail` never leave a
/// reply behind in grpcio's buffer.
///
/// Why: grpcio's `RequestStream` starts reading message N+1 before it yields N; if N+1 is
/// already buffered, its completion is queued on the completion queue (CQ) but reaches us only
/// on a later turn. `send_all` sees an empty stream in between and flushes the one reply it
/// holds: one non-hinted write, one `sendmsg`, per reply. With a write in flight nothing is
/// lost (its completion is our next turn; grpcio's `poll_flush` starts no write before it).
/// With the sink idle, and the client known to be ahead of us, we wait one turn for the queued
/// read instead: the held reply then goes out with the buffer hint ahead of the next one, and
/// from there on each write's completion is the turn that lets the next read in.
///
/// The turn must go through the CQ, which `cx.waker().wake_by_ref()` does not do: grpcio 0.13's
/// executor re-polls a task woken during its own poll in place (`SpawnTask`'s state goes to
/// NOTIFIED and `poll` loops), and a wake on the CQ thread while it is idle goes to the thread's
/// work queue (`cq.rs`'s `WorkQueue`), drained right after the current event, before the next
/// `grpc_completion_queue_next` (`env.rs`'s `poll_queue` loop). Only a wake of an idle task from
/// another thread is kicked through the CQ (`Kicker::kick`: an empty batch on the call), behind
/// the read already queued there; hence [`requeue`]. If nothing came in by then we flush, so a
/// reply waits one turn at most.
pub(crate) struct SendAllBatched<'a, St, Si, T> {
    replies: St,
    sink: &'a mut Si,
    /// A reply taken from `replies` while the sink was busy.
    held: Option<T>,
    /// Replies given to the sink since its last flush.
    unflushed: bool,
    /// A reply had to wait for the sink since the last flush: the client is ahead of us, so
    /// its next message is likely queued. A client in lock-step never sets it: no deferral.
    ahead: bool,
    /// The flush was put off once already; the next empty poll flushes.
    deferred: bool,
    /// `replies` has ended (it is not polled again).
    ended: bool,
    /// Whether `poll` is running, so that [`requeue`] wakes us only once we are idle.
    polling: Arc<Polling>,
}

/// How often the requeue thread yields to a task still in its `poll` before it sleeps.
const YIELDS_BEFORE_SLEEP: u32 = 8;

/// Whether a task is inside its `poll`, and a way to wait until it is not.
#[derive(Default)]
struct Polling {
    state: Mutex<PollState>,
    left: Condvar,
}

#[derive(Default)]
struct PollState {
    busy: bool,
    /// The requeue thread waits for `busy` to clear: only then does leaving notify, since a
    /// notify is a system call and `leave` runs on every poll of every chat.
    waiting: bool,
}

impl Polling {
    fn enter(&self) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).busy = true;
    }

    fn leave(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.busy = false;
        if state.waiting {
            self.left.notify_all();
        }
    }

    /// Blocks (the requeue thread, never a completion-queue thread) until the task has left
    /// its `poll`. A poll that is about to end usually has by the time the thread has yielded
    /// a few times, which costs less than the sleep and the notify; past that, it sleeps.
    fn wait_idle(&self) {
        for _ in 0..YIELDS_BEFORE_SLEEP {
            if !self.state.lock().unwrap_or_else(PoisonError::into_inner).busy {
                return;
            }
            std::thread::yield_now();
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.waiting = true;
        let mut state = self.left.wait_while(state, |s| s.busy).unwrap_or_else(PoisonError::into_inner);
        state.waiting = false;
    }
}

impl<'a, St, Si, T> SendAllBatched<'a, St, Si, T> {
    pub(crate) fn new(replies: St, sink: &'a mut Si) -> Self {
        SendAllBatched {
            replies,
            sink,
            held: None,
            unflushed: false,
            ahead: false,
            deferred: false,
            ended: false,
            polling: Arc::default(),
        }
    }
}

impl<St, Si, T, E> Future for SendAllBatched<'_, St, Si, T>
where
    St: Stream<Item = Result<T, E>> + Unpin,
    Si: Sink<T, Error = E> + Unpin,
    T: Unpin,
{
    type Output = Result<(), E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let polling = Arc::clone(&self.polling);
        polling.enter();
        // Left even if `forward` panics, or `requeue`'s thread would wait for ever.
        let _idle = Idle(&polling);
        self.forward(cx)
    }
}

/// Marks a [`SendAllBatched`] as out of its `poll` when dropped.
struct Idle<'a>(&'a Polling);

impl Drop for Idle<'_> {
    fn drop(&mut self) {
        self.0.leave();
    }
}

impl<St, Si, T, E> SendAllBatched<'_, St, Si, T>
where
    St: Stream<Item = Result<T, E>> + Unpin,
    Si: Sink<T, Error = E> + Unpin,
{
    fn forward(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        loop {
            if let Some(item) = self.held.take() {
                match Pin::new(&mut *self.sink).poll_ready(cx)? {
                    Poll::Ready(()) => {
                        Pin::new(&mut *self.sink).start_send(item)?;
                        self.unflushed = true;
                    }
                    Poll::Pending => {
                        self.held = Some(item);
                        self.ahead = true;
                        return Poll::Pending;
                    }
                }
            }
            if self.ended {
                return Pin::new(&mut *self.sink).poll_flush(cx);
            }
            match Pin::new(&mut self.replies).poll_next(cx)? {
                Poll::Ready(Some(item)) => {
                    self.held = Some(item);
                    self.deferred = false;
                }
                Poll::Ready(None) => self.ended = true,
                Poll::Pending => {
                    // A write in flight: its completion is our CQ turn.
                    if Pin::new(&mut *self.sink).poll_ready(cx)?.is_pending() {
                        return Poll::Pending;
                    }
                    if self.unflushed && self.ahead && !self.deferred && requeue(cx.waker(), &self.polling) {
                        self.deferred = true;
                        return Poll::Pending;
                    }
                    // The sink is idle, so this starts the write of what it holds; Ready or
                    // not, the stream and that write will wake us.
                    let _: Poll<()> = Pin::new(&mut *self.sink).poll_flush(cx)?;
                    self.unflushed = false;
                    self.ahead = false;
                    self.deferred = false;
                    return Poll::Pending;
                }
            }
        }
    }
}

/// Wakes `waker` from a thread of its own once its task has left `poll`, so that grpcio kicks
/// the wake through the completion queue (see [`SendAllBatched`]); woken while still polling,
/// the task would be re-polled in place. The thread sleeps until then (no spinning). A wake
/// that panics is caught, so the thread goes on with the next. False if that thread could not
/// be started: then flush at once.
fn requeue(waker: &Waker, polling: &Arc<Polling>) -> bool {
    type Wake = (Waker, Arc<Polling>);
    static REQUEUE: OnceLock<Option<mpsc::Sender<Wake>>> = OnceLock::new();
    let tx = REQUEUE.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Wake>();
        let wake_when_idle = move || {
            for (waker, polling) in rx {
                polling.wait_idle();
                if std::panic::catch_unwind(AssertUnwindSafe(|| waker.wake())).is_err() {
                    log::error!("a chat's deferred wake panicked; it is woken no more");
                }
            }
        };
        std::thread::Builder::new().name("chat-requeue".into()).spawn(wake_when_idle).ok().map(|_| tx)
    });
    tx.as_ref().is_some_and(|tx| tx.send((waker.clone(), polling.clone())).is_ok())
}
