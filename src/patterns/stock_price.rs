//! Level 2, server streaming: `GetStockPrice` pushes a series of simulated price ticks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_timer::Delay;
use grpcio::{RpcStatus, RpcStatusCode};
use rand::{rngs::StdRng, Rng as _, SeedableRng as _};

use crate::call::Replies;
use crate::proto::{StockReply, StockRequest};

/// Prices are uniform in this range, like the tutorial's `500 + rand.Float64()*100`.
pub const PRICE_RANGE: std::ops::Range<f64> = 500.0..600.0;

/// Sends `ticks` prices of the requested symbol, `interval` apart, the first at once, then
/// ends OK. A delay is a `futures-timer` timer: no thread waits.
///
/// A subscription over the limit ends RESOURCE_EXHAUSTED. The subscription's slot is freed
/// when this future is dropped: at its end, or as soon as the call ends under it (the client
/// cancelled, its deadline passed), when the call layer drops it.
pub async fn get_stock_price(
    ticker: StockTicker,
    request: StockRequest,
    mut replies: Replies<StockReply>,
) -> Result<(), RpcStatus> {
    log::info!("Received subscription: {}", request.symbol);
    let _slot = ticker.subscribe()?;
    let mut rng = StdRng::from_entropy();
    for tick in 0..ticker.ticks {
        if tick > 0 && !ticker.interval.is_zero() {
            Delay::new(ticker.interval).await;
        }
        let price = rng.gen_range(PRICE_RANGE);
        replies.send(StockReply { symbol: request.symbol.clone(), price, ..Default::default() }).await?;
    }
    Ok(())
}

/// GetStockPrice's settings, and the subscriptions running now. Cheap to clone: clones share
/// the count, which the limit applies to.
#[derive(Clone, Debug)]
pub struct StockTicker {
    ticks: u32,
    interval: Duration,
    max_subscriptions: u64,
    active: Arc<AtomicU64>,
}

impl StockTicker {
    /// `ticks` per subscription, `interval` apart; at most `max_subscriptions` at once.
    pub fn new(ticks: u32, interval: Duration, max_subscriptions: u64) -> Self {
        StockTicker { ticks, interval, max_subscriptions, active: Arc::default() }
    }

    /// How many subscriptions are running, read when asked.
    pub(crate) fn active(&self) -> impl Fn() -> u64 + Send + Sync + 'static {
        let active = self.active.clone();
        move || active.load(Ordering::SeqCst)
    }

    /// A slot for one more subscription, or RESOURCE_EXHAUSTED when every slot is taken.
    fn subscribe(&self) -> Result<Slot, RpcStatus> {
        if self.active.fetch_add(1, Ordering::SeqCst) >= self.max_subscriptions {
            self.active.fetch_sub(1, Ordering::SeqCst);
            let message = format!(
                "too many stock subscriptions: the limit (max_subscriptions) is {}; retry later",
                self.max_subscriptions
            );
            log::warn!("{message}");
            return Err(RpcStatus::with_message(RpcStatusCode::RESOURCE_EXHAUSTED, message));
        }
        Ok(Slot(self.active.clone()))
    }
}

/// One running subscription, counted while it lives.
struct Slot(Arc<AtomicU64>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
