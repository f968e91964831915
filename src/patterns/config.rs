//! The Greeter service's settings (exported at the crate's root, beside `ServerConfig`).

use std::time::Duration;

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
