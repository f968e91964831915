//! What an interop client reports: which case failed, and which check or call.

use grpcio::RpcStatusCode;

use crate::tls::TlsError;

/// An interop case failed, or could not be run as asked.
#[derive(Debug, thiserror::Error)]
pub enum InteropError {
    #[error("unknown test case {0:?}; the cases are {list}, or all", list = super::Case::ALL.map(|c| c.name()).join(", "))]
    UnknownCase(String),
    /// A flag combination that cannot work (e.g. `--use_test_ca` without `--ca_file`).
    #[error("{0}")]
    Flags(String),
    /// A call ended with a status the case did not expect.
    #[error("{case}: {call} failed: {code:?}: {message}")]
    Rpc { case: super::Case, call: &'static str, code: RpcStatusCode, message: String },
    /// The call went through, but something in it was not what the case requires.
    #[error("{case}: {check}")]
    Check { case: super::Case, check: String },
    /// grpcio cannot do what the case requires; the reason names the limit.
    #[error("{case}: engine limit: {limit}")]
    EngineLimit { case: super::Case, limit: &'static str },
    #[error(transparent)]
    Tls(#[from] TlsError),
}
