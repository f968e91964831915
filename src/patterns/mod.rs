//! The tutorial's four "levels", one file each: what the server computes for each call
//! pattern. They receive the call's sinks and streams from [`crate::server::service`] and
//! know nothing of binding, limits or metrics.

pub mod chat;
pub mod record_metrics;
pub mod say_hello;
pub mod stock_price;
