//! [`Call`]: what a method's registered closure may learn of a call before its handler runs,
//! and [`Caller`]: who is calling, as the server's gate found out.

use grpcio::{Deadline, Metadata, RpcContext};

/// Who is calling: the identities the server verified for this call, and nothing it did not.
///
/// Filled by the server's authorization layer (docs/security.md): the peer's certificate
/// principal under mutual TLS, and a bearer token's `iss/sub` when tokens are checked. Empty
/// when the server verifies neither.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    /// The client certificate's first principal (its SPIFFE ID or other URI SAN, else a DNS SAN,
    /// else its subject), when the client presented one.
    pub peer: Option<String>,
    /// `iss/sub` of the verified bearer token, when the call carried one.
    pub token: Option<String>,
}

impl Caller {
    /// The principal to report: the token's when there is one, else the certificate's.
    pub fn principal(&self) -> Option<&str> {
        self.token.as_deref().or(self.peer.as_deref())
    }
}

/// One call as it arrives: its method, its metadata, its peer and caller, its deadline; and the
/// initial metadata to send back ([`Call::set_headers`]). Valid while the method's closure
/// runs; the handler's future takes what it needs from it.
pub struct Call<'a> {
    ctx: &'a RpcContext<'a>,
    caller: &'a Caller,
    headers: Option<Metadata>,
}

impl<'a> Call<'a> {
    pub(crate) fn new(ctx: &'a RpcContext<'a>, caller: &'a Caller) -> Self {
        Call { ctx, caller, headers: None }
    }

    /// `/package.Service/Method`.
    pub fn method(&self) -> &str {
        std::str::from_utf8(self.ctx.method()).unwrap_or("")
    }

    /// The request's metadata (its custom headers).
    pub fn request_headers(&self) -> &Metadata {
        self.ctx.request_headers()
    }

    /// The client's address, as C-core names it (`ipv4:127.0.0.1:5000`).
    pub fn peer(&self) -> String {
        self.ctx.peer()
    }

    /// Who is calling.
    pub fn caller(&self) -> &Caller {
        self.caller
    }

    /// When the call must be over (the client's deadline, if it gave one).
    pub fn deadline(&self) -> Deadline {
        self.ctx.deadline()
    }

    /// The TLS peer's properties (certificate, SANs); `None` on a plaintext port.
    #[cfg(tls)]
    pub fn auth_context(&self) -> Option<grpcio::AuthContext> {
        self.ctx.auth_context()
    }

    /// Initial metadata to send with the first reply (or with the status, when there is none).
    pub fn set_headers(&mut self, headers: Metadata) {
        self.headers = Some(headers);
    }

    pub(crate) fn take_headers(&mut self) -> Option<Metadata> {
        self.headers.take()
    }
}
