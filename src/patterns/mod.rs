//! The Greeter service: the tutorial's four "levels", one file each, one handler each.
//!
//! Each handler is an async function that reads like the tutorial's Go server: it takes the
//! request (or [`Requests`](crate::Requests), the stream of them), returns the reply (or sends
//! [`Replies`](crate::Replies)), and ends with `Ok` or a status. What the call layer does
//! around them (the authorization check, metrics, traces, writing replies, noticing that a
//! client went away) they never see. [`greeter_service`] registers them, as a service of your
//! own would be registered (see `examples/own_service.rs`).

pub mod chat;
pub(crate) mod config;
pub mod record_metrics;
pub mod say_hello;
pub mod stock_price;

use crate::call::Service;
use crate::proto;
use chat::Chats;
use config::GreeterConfig;
use stock_price::StockTicker;

/// `greeter.Greeter`, its four handlers registered, with the state they share.
pub fn greeter_service(config: &GreeterConfig) -> Service {
    greeter_parts(config).0
}

/// The service, and the two counts its handlers keep (subscriptions running, chats open), for
/// the server's gauges.
pub(crate) fn greeter_parts(config: &GreeterConfig) -> (Service, StockTicker, Chats) {
    let ticker = StockTicker::new(config.stock_ticks, config.stock_interval, config.max_subscriptions);
    let chats = Chats::new(config.max_chat_message_len);
    let (t, c) = (ticker.clone(), chats.clone());
    let service = Service::new(proto::file_descriptor(), proto::GREETER_SERVICE)
        .unary("SayHello", |_, request| say_hello::say_hello(request))
        .server_streaming("GetStockPrice", move |_, request, replies| {
            stock_price::get_stock_price(t.clone(), request, replies)
        })
        .client_streaming("RecordMetrics", |_, requests| record_metrics::record_metrics(requests))
        .bidi("Chat", move |_, requests, replies| chat::chat(c.clone(), requests, replies));
    (service, ticker, chats)
}
