//! Level 2, server streaming: `GetStockPrice` pushes a series of simulated price ticks.
//!
//! Each subscription is an `async` task on grpcio's completion queue: a stream of ticks, each
//! after a `futures-timer` delay (no thread is blocked), written by the call layer's
//! `reply_all`, which also watches the call while it waits, so a client that cancels, or whose
//! deadline passes, stops its ticker at once instead of at the next tick.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, Stream};
use futures_timer::Delay;
use grpcio::{RpcContext, RpcStatus, RpcStatusCode, ServerStreamingSink, WriteFlags};
use rand::{rngs::StdRng, Rng as _, SeedableRng as _};

use crate::call::{reply_all, Replies};
use crate::proto::{StockReply, StockRequest};

/// Prices are uniform in this range, like the tutorial's `500 + rand.Float64()*100`.
pub const PRICE_RANGE: std::ops::Range<f64> = 500.0..600.0;

/// Serves `GetStockPrice` subscriptions. Cheap to clone: clones share the count of running
/// subscriptions, which the limit applies to.
#[derive(Clone, Debug)]
pub(crate) struct StockTicker {
    ticks: u32,
    interval: Duration,
    max_subscriptions: u64,
    active: Arc<AtomicU64>,
}

impl StockTicker {
    /// `ticks` per subscription, `interval` apart; at most `max_subscriptions` at once.
    pub(crate) fn new(ticks: u32, interval: Duration, max_subscriptions: u64) -> Self {
        StockTicker { ticks, interval, max_subscriptions, active: Arc::default() }
    }

    /// How many subscriptions are running, read when asked.
    pub(crate) fn active(&self) -> impl Fn() -> u64 + Send + Sync + 'static {
        let active = self.active.clone();
        move || active.load(Ordering::SeqCst)
    }

    /// Starts a ticker for `req.symbol` on the call's completion queue and returns at once,
    /// or refuses with RESOURCE_EXHAUSTED when `max_subscriptions` are already running.
    pub(crate) fn subscribe(
        &self,
        ctx: &RpcContext,
        req: StockRequest,
        sink: Replies<ServerStreamingSink<StockReply>>,
    ) {
        log::info!("Received subscription: {}", req.symbol);
        if self.active.fetch_add(1, Ordering::SeqCst) >= self.max_subscriptions {
            self.active.fetch_sub(1, Ordering::SeqCst);
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
        let ticks = std::pin::pin!(ticks(symbol.clone(), self.ticks, self.interval));
        if let Err(e) = reply_all(&mut sink, ticks).await {
            // The call is over from the client's side; there is nobody to tell.
            log::debug!("Subscription to {symbol} ended early: {e}");
        }
        self.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `count` ticks of `symbol`, `interval` apart, the first at once.
fn ticks(
    symbol: String,
    count: u32,
    interval: Duration,
) -> impl Stream<Item = grpcio::Result<(StockReply, WriteFlags)>> + Send {
    let rng = StdRng::from_entropy();
    stream::unfold((0, rng), move |(tick, mut rng)| {
        let symbol = symbol.clone();
        async move {
            if tick == count {
                return None;
            }
            if tick > 0 && !interval.is_zero() {
                Delay::new(interval).await;
            }
            let reply = StockReply { symbol, price: rng.gen_range(PRICE_RANGE), ..Default::default() };
            Some((Ok((reply, WriteFlags::default())), (tick + 1, rng)))
        }
    })
}
