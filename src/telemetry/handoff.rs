//! How a call's thread hands what it recorded to a thread of telemetry's own: a bounded
//! buffer under a mutex, drained in batches. Handing off is a push under an uncontended lock,
//! no allocation (the buffer's room is kept) and, in a steady stream, no wake-up: the thread
//! is woken when the first record arrives at an idle buffer and when a batch fills, then
//! lingers for companions, so a stream of N records wakes it about N / `batch` times, never
//! once per record. When the buffer is full the record is refused and the caller counts it.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How big and how patient the hand-off is.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Records waiting at most; more are refused.
    pub(crate) capacity: usize,
    /// Records that wake the thread at once.
    pub(crate) batch: usize,
    /// How long the first record of a batch waits for companions.
    pub(crate) linger: Duration,
}

/// What the thread does with each batch: `batch` is drained by it (its room is reused);
/// `settle` asks it to finish all it started (exports in flight) before returning, for a
/// flush or the last batch.
pub(crate) trait Consumer<T>: Send + 'static {
    fn consume(&mut self, batch: &mut Vec<T>, settle: bool);
}

/// The running hand-off: the buffer and the thread that drains it.
pub(crate) struct Handoff<T> {
    shared: Arc<Shared<T>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// The thread waits here for records.
    wake: Condvar,
    /// Flushers wait here for the thread to catch up.
    caught_up: Condvar,
    limits: Limits,
}

struct State<T> {
    pending: Vec<T>,
    /// The thread sleeps until a record arrives (not lingering): the next push wakes it.
    idle: bool,
    /// Flushes asked for, and done: a flush asked as number n is done once `flushed >= n`.
    flushes_asked: u64,
    flushed: u64,
    stopping: bool,
}

impl<T: Send + 'static> Handoff<T> {
    /// Starts the thread `name`, which hands every batch to `consumer`.
    pub(crate) fn start(name: &str, limits: Limits, mut consumer: impl Consumer<T>) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                pending: Vec::with_capacity(limits.capacity),
                idle: false,
                flushes_asked: 0,
                flushed: 0,
                stopping: false,
            }),
            wake: Condvar::new(),
            caught_up: Condvar::new(),
            limits,
        });
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new().name(name.to_owned()).spawn(move || {
            let shared = thread_shared;
            let mut batch = Vec::with_capacity(shared.limits.capacity);
            loop {
                let (flush, stopping) = shared.next_batch(&mut batch);
                consumer.consume(&mut batch, flush.is_some() || stopping);
                batch.clear();
                if let Some(flush) = flush {
                    shared.state.lock().unwrap().flushed = flush;
                    shared.caught_up.notify_all();
                }
                if stopping {
                    return;
                }
            }
        })?;
        Ok(Handoff { shared, thread: Mutex::new(Some(thread)) })
    }

    /// Hands `record` off; gives it back when the buffer is full or the hand-off stopped.
    pub(crate) fn push(&self, record: T) -> Result<(), T> {
        let mut state = self.shared.state.lock().unwrap();
        if state.stopping || state.pending.len() >= self.shared.limits.capacity {
            return Err(record);
        }
        state.pending.push(record);
        let wake = std::mem::take(&mut state.idle) || state.pending.len() == self.shared.limits.batch;
        drop(state);
        if wake {
            self.shared.wake.notify_one();
        }
        Ok(())
    }

    /// Waits until everything pushed so far is consumed and settled; false after `timeout`.
    pub(crate) fn flush(&self, timeout: Duration) -> bool {
        let mut state = self.shared.state.lock().unwrap();
        if state.stopping {
            return false;
        }
        state.flushes_asked += 1;
        let asked = state.flushes_asked;
        self.shared.wake.notify_one();
        let deadline = Instant::now() + timeout;
        while state.flushed < asked {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self.shared.caught_up.wait_timeout(state, left).unwrap().0;
        }
        true
    }

    /// Consumes what is left, settles and ends the thread; waits for it up to `timeout`
    /// (false when it is still busy then: it goes on, detached).
    pub(crate) fn stop(&self, timeout: Duration) -> bool {
        self.shared.state.lock().unwrap().stopping = true;
        self.shared.wake.notify_one();
        let Some(thread) = self.thread.lock().unwrap().take() else { return true };
        let deadline = Instant::now() + timeout;
        while !thread.is_finished() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = thread.join();
        true
    }
}

impl<T> std::fmt::Debug for Handoff<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handoff").field("limits", &self.shared.limits).finish_non_exhaustive()
    }
}

impl<T> Shared<T> {
    /// Waits for a batch and swaps it into `batch` (empty, with room); says whether a flush
    /// (its number) or the stop asked for it.
    fn next_batch(&self, batch: &mut Vec<T>) -> (Option<u64>, bool) {
        let mut state = self.state.lock().unwrap();
        let asked = |s: &MutexGuard<'_, State<T>>| s.stopping || s.flushes_asked > s.flushed;
        while state.pending.is_empty() && !asked(&state) {
            state.idle = true;
            state = self.wake.wait(state).unwrap();
        }
        state.idle = false;
        let lingering_until = Instant::now() + self.limits.linger;
        while state.pending.len() < self.limits.batch && !asked(&state) {
            let left = lingering_until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = self.wake.wait_timeout(state, left).unwrap().0;
        }
        std::mem::swap(&mut state.pending, batch);
        let flush = (state.flushes_asked > state.flushed).then_some(state.flushes_asked);
        (flush, state.stopping)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting(Arc<AtomicUsize>, Arc<AtomicUsize>);

    impl Consumer<u32> for Counting {
        fn consume(&mut self, batch: &mut Vec<u32>, _settle: bool) {
            self.0.fetch_add(batch.len(), Ordering::SeqCst);
            self.1.fetch_add(1, Ordering::SeqCst);
            batch.clear();
        }
    }

    fn counting(limits: Limits) -> (Handoff<u32>, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let (records, batches) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let handoff = Handoff::start("test-handoff", limits, Counting(records.clone(), batches.clone())).unwrap();
        (handoff, records, batches)
    }

    #[test]
    fn a_flush_sees_every_record_pushed_before_it() {
        let limits = Limits { capacity: 100, batch: 10, linger: Duration::from_secs(60) };
        let (handoff, records, _) = counting(limits);
        for i in 0..25 {
            handoff.push(i).unwrap();
        }
        assert!(handoff.flush(Duration::from_secs(10)));
        assert_eq!(records.load(Ordering::SeqCst), 25);
        assert!(handoff.stop(Duration::from_secs(10)));
    }

    #[test]
    fn a_full_buffer_refuses_and_a_stopped_one_too() {
        // A linger longer than the test: the thread takes nothing until the batch fills.
        let limits = Limits { capacity: 4, batch: 1000, linger: Duration::from_secs(60) };
        let (handoff, records, _) = counting(limits);
        for i in 0..4 {
            handoff.push(i).unwrap();
        }
        assert_eq!(handoff.push(4), Err(4));
        assert!(handoff.stop(Duration::from_secs(10)));
        assert_eq!(records.load(Ordering::SeqCst), 4, "the stop consumes what was left");
        assert_eq!(handoff.push(5), Err(5));
    }

    #[test]
    fn records_go_in_batches_not_one_by_one() {
        let limits = Limits { capacity: 10_000, batch: 100, linger: Duration::from_secs(60) };
        let (handoff, records, batches) = counting(limits);
        for i in 0..1000 {
            handoff.push(i).unwrap();
        }
        assert!(handoff.stop(Duration::from_secs(10)));
        assert_eq!(records.load(Ordering::SeqCst), 1000);
        // Each batch is taken once it holds 100 (or more, when the thread is slow to wake).
        assert!(batches.load(Ordering::SeqCst) <= 11, "{} batches", batches.load(Ordering::SeqCst));
    }
}
