//! The same client for code that is not async: each call blocks the calling thread until it
//! is done (on `futures::executor::block_on`, whatever runtime the program has or has not).
//!
//! Do not call these from inside an async task: they hold the executor's thread for the
//! whole call. Use [`crate::Greeter`] there.

use std::time::Duration;

use futures::executor::block_on;
use futures::TryStreamExt as _;

use crate::error::ClientError;
use crate::proto::{ChatMessage, GreeterClient, MetricSummary, StockReply};

/// A blocking connection to one Greeter server; a thin layer over the async [`crate::Greeter`].
#[derive(Clone)]
pub struct Greeter {
    inner: crate::Greeter,
}

impl Greeter {
    /// A client of `target`: `host:port`, or any target [`crate::Greeter::new`] takes
    /// (`ipv4:…`, `dns:///…`, `xds:///NAME` with an xDS bootstrap). Nothing is dialled until the
    /// first call; every call must finish within `timeout`. For TLS and the other settings,
    /// build the async client ([`crate::Greeter::builder`]) and convert it (`From`).
    pub fn new(target: &str, timeout: Duration) -> Self {
        crate::Greeter::new(target, timeout).into()
    }

    /// The async client underneath, sharing this one's connection.
    pub fn as_async(&self) -> &crate::Greeter {
        &self.inner
    }

    /// The generated client, for calls this wrapper does not cover.
    pub fn raw(&self) -> &GreeterClient {
        self.inner.raw()
    }

    /// The target this client calls.
    pub fn target(&self) -> &str {
        self.inner.target()
    }

    /// Level 1: the server's greeting for `name`.
    pub fn say_hello(&self, name: &str) -> Result<String, ClientError> {
        block_on(self.inner.say_hello(name))
    }

    /// Level 2: subscribes to `symbol`, calling `on_tick` as each price arrives.
    pub fn stock_prices(
        &self,
        symbol: &str,
        mut on_tick: impl FnMut(&StockReply),
    ) -> Result<Vec<StockReply>, ClientError> {
        let ticks = self.inner.stock_prices(symbol)?;
        block_on(ticks.inspect_ok(|tick| on_tick(tick)).try_collect())
    }

    /// Level 3: uploads `values` and returns the server's count and average.
    pub fn record_metrics(&self, values: &[f64]) -> Result<MetricSummary, ClientError> {
        block_on(self.inner.record_metrics(futures::stream::iter(values.iter().copied())))
    }

    /// Level 4: sends every message as `user` while receiving replies in parallel (full
    /// duplex), calling `on_reply` for each; returns the replies in order.
    pub fn chat(
        &self,
        user: &str,
        messages: &[String],
        mut on_reply: impl FnMut(&ChatMessage),
    ) -> Result<Vec<ChatMessage>, ClientError> {
        let replies = self.inner.chat(user, futures::stream::iter(messages.to_vec()))?;
        block_on(replies.inspect_ok(|reply| on_reply(reply)).try_collect())
    }
}

impl From<crate::Greeter> for Greeter {
    fn from(inner: crate::Greeter) -> Self {
        Greeter { inner }
    }
}
