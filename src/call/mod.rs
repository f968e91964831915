//! The server side of one call: what a handler gets, and how it is run.
//!
//! A service is a set of handlers ([`Service`]): async functions that take their request, or
//! the stream of them ([`Requests`]), and return their reply, or send a stream of them
//! ([`Replies`]), ending with `Ok` or the status the call ends with. A handler sees neither
//! the transport nor who watches it; this layer does the rest, for every method of every
//! service alike:
//!
//! - the gate ([`Gate`], the server's, built of the authorization layer) decides who is calling
//!   and whether they may, before the request is decoded (`gate.rs`, its `Verdict` in
//!   `verdict.rs`);
//! - the observers ([`Observer`]: metrics, traces, the access log) hear of every call, every
//!   message and the status each call ends with, exactly once (`observe.rs`);
//! - the driver writes the replies, a reply whose successor is known in one write with it, ends
//!   the call with the handler's status, and drops the handler the moment the call is over,
//!   however it ends, so that whatever it holds is freed with the call (`drive.rs`);
//! - each method is a closure typed by its handler that does the above for each of its calls
//!   (`method.rs`), and [`Registrar`] registers every method of every service (`register.rs`).
//!
//! It knows no service, no observer and no policy: those are handed to it.

mod context;
mod drive;
mod gate;
mod method;
mod observe;
mod register;
mod replies;
mod requests;
mod service;
mod verdict;

pub use context::{Call, Caller};
pub(crate) use gate::Gate;
pub(crate) use observe::{CallObserver, MethodName, MethodObserver, Observer};
pub(crate) use register::Registrar;
pub use replies::Replies;
pub use requests::Requests;
pub use service::Service;
pub(crate) use verdict::{Refusal, Verdict};
