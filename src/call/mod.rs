//! The server side of one call, as every handler sees it.
//!
//! grpcio hands a handler a request (or a request stream) and a sink for its replies. This
//! layer wraps both ([`Reply`], [`Replies`], [`Requests`]) so that whoever observes calls hears
//! of every message and of the status each call ends with, and [`Registrar`] is the one place
//! where every method of every service is registered with its handler and those observers.
//! [`reply_all`] and [`SendAllBatched`] write a stream of replies the way each kind of stream
//! wants it.
//!
//! It knows no service and no observer: services (the Greeter patterns, health, reflection,
//! the interop TestService) hand it their handlers; the server hands it its observers (the
//! Prometheus metrics, through the [`Observer`] traits).

mod observe;
mod register;
mod reply;
mod send;

pub(crate) use observe::{CallObserver, MethodName, MethodObserver, Observer};
pub(crate) use register::Registrar;
pub(crate) use reply::{Replies, Reply, Requests, StreamSink};
pub(crate) use send::{reply_all, SendAllBatched};
