//! Level 1, unary: `SayHello` answers one request with one reply.

use futures::FutureExt as _;
use grpcio::{RpcContext, UnarySink};

use crate::call::Reply;
use crate::proto::{HelloReply, HelloRequest};

/// The greeting for `name`, exactly as the tutorial's Go server builds it.
pub fn greeting(name: &str) -> String {
    format!("Hello {name}")
}

/// Replies `"Hello " + name`. Any UTF-8 name is fine, the empty one included; the size of a
/// name is bounded only by the server's receive limit, which grpcio enforces before we run.
pub(crate) fn say_hello(ctx: &RpcContext, req: HelloRequest, sink: Reply<UnarySink<HelloReply>>) {
    log::debug!("Received greeting request ({} bytes of name)", req.name.len());
    let reply = HelloReply { message: greeting(&req.name), ..Default::default() };
    // The reply is sent by grpcio's completion queue; a failure here means the caller has
    // already gone away, which is theirs to know, not ours to log as an error.
    ctx.spawn(sink.success(reply).map(|result| {
        if let Err(e) = result {
            log::debug!("SayHello reply not delivered: {e}");
        }
    }));
}
