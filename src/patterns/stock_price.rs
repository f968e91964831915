//! Level 2, server streaming: `GetStockPrice` pushes a series of simulated price ticks.
//!
//! Each subscription is an `async` task on grpcio's completion queue. Between ticks it waits
//! on a `futures-timer` delay (no thread is blocked) *and* on the call's own completion, so a
//! client that cancels, or whose deadline passes, stops its ticker at once instead of at the
//! next tick.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures::{future, SinkExt as _};
use futures_timer::Delay;
use grpcio::{RpcContext, RpcStatus, RpcStatusCode, ServerStreamingSink, WriteFlags};
use rand::{rngs::StdRng, Rng as _, SeedableRng as _};

use crate::metrics::Replies;
use crate::proto::{StockReply, StockRequest};

/// Prices are uniform in this range, like the tutorial's `500 + rand.Float64()*100`.
pub const PRICE_RANGE: std::ops::Range<f64> = 500.0..600.0;

/// How many ticks a subscription gets and how far apart they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TickerConfig {
    /// Ticks per subscription (the tutorial sends 5).
    pub ticks: u32,
    /// Pause between two ticks (the tutorial sleeps 500 ms); zero sends them back to back.
    pub interval: Duration,
}

impl Default for TickerConfig {
    fn default() -> Self {
        TickerConfig { ticks: 5, interval: Duration::from_millis(500) }
    }
}

/// Counters a test or an operator can read to see what the tickers did.
#[derive(Debug, Default)]
pub struct TickerStats {
    ticks_sent: AtomicU64,
    active: AtomicU64,
    completed: AtomicU64,
    stopped_early: AtomicU64,
}

impl TickerStats {
    /// Ticks handed to grpcio across all subscriptions.
    pub fn ticks_sent(&self) -> u64 {
        self.ticks_sent.load(Ordering::SeqCst)
    }
    /// Subscriptions whose ticker is still running.
    pub fn active(&self) -> u64 {
        self.active.load(Ordering::SeqCst)
    }
    /// Subscriptions that sent every tick and closed with OK.
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::SeqCst)
    }
    /// Subscriptions stopped because the client cancelled, its deadline passed, or the
    /// server cancelled calls at the end of a shutdown grace period.
    pub fn stopped_early(&self) -> u64 {
        self.stopped_early.load(Ordering::SeqCst)
    }
}

/// Serves `GetStockPrice` subscriptions. Cheap to clone: clones share config and stats.
#[derive(Clone, Debug)]
pub struct StockTicker {
    config: TickerConfig,
    max_subscriptions: u64,
    stats: Arc<TickerStats>,
}

impl StockTicker {
    /// A ticker serving at most `max_subscriptions` subscriptions at once.
    pub fn new(config: TickerConfig, max_subscriptions: u64) -> Self {
        StockTicker { config, max_subscriptions, stats: Arc::default() }
    }

    pub fn stats(&self) -> Arc<TickerStats> {
        self.stats.clone()
    }

    /// Starts a ticker for `req.symbol` on the call's completion queue and returns at once,
    /// or refuses with RESOURCE_EXHAUSTED when `max_subscriptions` are already running.
    pub fn subscribe(&self, ctx: &RpcContext, req: StockRequest, sink: Replies<ServerStreamingSink<StockReply>>) {
        log::info!("Received subscription: {}", req.symbol);
        if self.stats.active.fetch_add(1, Ordering::SeqCst) >= self.max_subscriptions {
            self.stats.active.fetch_sub(1, Ordering::SeqCst);
            let message = format!(
                "too many stock subscriptions: the limit (max_subscriptions) is {}; retry later",
                self.max_subscriptions
            );
            log::warn!("{message}");
            let refused = sink.fail(RpcStatus::with_message(RpcStatusCode::RESOURCE_EXHAUSTED, message));
            ctx.spawn(async move {
                let _ = refused.await;
            });
            return;
        }
        ctx.spawn(self.clone().run(req.symbol, sink));
    }

    /// Runs one subscription; `subscribe` has already counted it as active.
    async fn run(self, symbol: String, mut sink: Replies<ServerStreamingSink<StockReply>>) {
        let outcome = self.send_ticks(&symbol, &mut sink).await;
        let outcome = match outcome {
            Ok(()) => sink.close().await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => self.stats.completed.fetch_add(1, Ordering::SeqCst),
            Err(e) => {
                // The call is over from the client's side; there is nobody to tell.
                log::debug!("Subscription to {symbol} ended early: {e}");
                self.stats.stopped_early.fetch_add(1, Ordering::SeqCst)
            }
        };
        self.stats.active.fetch_sub(1, Ordering::SeqCst);
    }

    async fn send_ticks(
        &self,
        symbol: &str,
        sink: &mut Replies<ServerStreamingSink<StockReply>>,
    ) -> grpcio::Result<()> {
        let mut rng = StdRng::from_entropy();
        for tick in 0..self.config.ticks {
            if tick > 0 && !self.config.interval.is_zero() {
                wait_unless_finished(sink, self.config.interval).await?;
            }
            let reply =
                StockReply { symbol: symbol.to_owned(), price: rng.gen_range(PRICE_RANGE), ..Default::default() };
            let last = tick + 1 == self.config.ticks;
            if self.config.interval.is_zero() || last {
                // Buffered: back-to-back ticks are coalesced by C-core into a few writes (a
                // syscall per tick was 63% of the CPU), and the last tick leaves in one write
                // with the status `close` sends, as `reply_all` does for other streams (why:
                // README, "Graceful shutdown and soak").
                sink.feed((reply, WriteFlags::default().buffer_hint(true))).await?;
            } else {
                sink.send((reply, WriteFlags::default())).await?;
            }
            self.stats.ticks_sent.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

/// Sleeps for `interval`, returning early with an error if the call finishes meanwhile.
///
/// A grpcio sink's `poll_ready` reports `RemoteStopped` once the call is over, and registers
/// our waker for that event; polling it beside the timer is how we hear of a cancellation.
async fn wait_unless_finished(
    sink: &mut Replies<ServerStreamingSink<StockReply>>,
    interval: Duration,
) -> grpcio::Result<()> {
    let mut delay = Delay::new(interval);
    future::poll_fn(|cx| {
        if let Poll::Ready(Err(e)) = futures::Sink::poll_ready(Pin::new(&mut *sink), cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut delay).poll(cx).map(Ok)
    })
    .await
}
