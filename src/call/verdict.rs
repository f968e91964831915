//! A gate's verdict on one call: who is calling, and why the call is refused, if it is.

use grpcio::RpcStatus;

use super::context::Caller;

/// A gate's answer for one call.
pub(crate) struct Verdict {
    pub(crate) caller: Caller,
    /// `None`: admitted.
    pub(crate) refusal: Option<Refusal>,
}

/// Why a call was refused.
#[derive(Clone, Debug)]
pub(crate) struct Refusal {
    /// What the client gets: UNAUTHENTICATED or PERMISSION_DENIED, with a message.
    pub(crate) status: RpcStatus,
    /// The reason in a word, for metrics (`missing_token`, `expired`, `policy`, …).
    pub(crate) reason: &'static str,
    /// The policy rule that denied it, when one did (`policy/rule`).
    pub(crate) rule: Option<String>,
}
