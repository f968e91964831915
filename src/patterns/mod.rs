//! The Greeter service: the tutorial's four "levels", one file each, what the server computes
//! for each call pattern. The handlers get their call from the call layer (`src/call/`) and
//! know nothing of binding, the transport's limits or who observes the calls.
//!
//! What a reader learns from is public: the greeting, the price range, the accumulator behind
//! RecordMetrics and the errors each pattern answers with.

pub mod chat;
pub mod record_metrics;
pub mod say_hello;
pub mod stock_price;

use std::time::Duration;

use grpcio::{Service, ServiceBuilder};

use crate::call::Registrar;
use crate::proto;
use chat::OpenChats;
use stock_price::StockTicker;

/// The Greeter service's settings; the default is the tutorial's service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GreeterConfig {
    /// Ticks per GetStockPrice subscription (the tutorial sends 5).
    pub stock_ticks: u32,
    /// The pause between two ticks (the tutorial sleeps 500 ms); zero sends them back to back.
    pub stock_interval: Duration,
    /// Concurrent GetStockPrice subscriptions, server-wide; one more gets RESOURCE_EXHAUSTED.
    pub max_subscriptions: u64,
    /// A longer `ChatMessage.message` (bytes of UTF-8) ends the Chat with INVALID_ARGUMENT.
    pub max_chat_message_len: usize,
}

impl Default for GreeterConfig {
    fn default() -> Self {
        GreeterConfig {
            stock_ticks: 5,
            stock_interval: Duration::from_millis(500),
            max_subscriptions: 10_000,
            max_chat_message_len: 64 * 1024,
        }
    }
}

/// `greeter.Greeter`'s state. grpcio clones each handler once per completion queue, so it
/// holds only shared, cheaply cloned state.
#[derive(Clone, Debug)]
pub(crate) struct GreeterService {
    ticker: StockTicker,
    chats: OpenChats,
    max_chat_message_len: usize,
}

impl GreeterService {
    pub(crate) fn new(config: &GreeterConfig) -> Self {
        GreeterService {
            ticker: StockTicker::new(config.stock_ticks, config.stock_interval, config.max_subscriptions),
            chats: OpenChats::default(),
            max_chat_message_len: config.max_chat_message_len,
        }
    }

    /// The four methods, registered through `registrar`.
    pub(crate) fn service(&self, registrar: &Registrar) -> Service {
        let (ticker, chats, max_len) = (self.ticker.clone(), self.chats.clone(), self.max_chat_message_len);
        let b = registrar.unary(ServiceBuilder::new(), &proto::METHOD_GREETER_SAY_HELLO, say_hello::say_hello);
        let b = registrar.server_streaming(b, &proto::METHOD_GREETER_GET_STOCK_PRICE, move |ctx, req, sink| {
            ticker.subscribe(ctx, req, sink)
        });
        let b = registrar.client_streaming(b, &proto::METHOD_GREETER_RECORD_METRICS, record_metrics::record_metrics);
        let b = registrar.duplex(b, &proto::METHOD_GREETER_CHAT, move |ctx, stream, sink| {
            chat::chat(ctx, stream, sink, &chats, max_len)
        });
        b.build()
    }

    /// How many GetStockPrice subscriptions are sending ticks right now.
    pub(crate) fn subscriptions_active(&self) -> impl Fn() -> u64 + Send + Sync + 'static {
        self.ticker.active()
    }

    /// How many Chat calls are open right now.
    pub(crate) fn chats_open(&self) -> impl Fn() -> u64 + Send + Sync + 'static {
        self.chats.count()
    }
}
