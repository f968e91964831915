//! Level 1, unary: `SayHello` answers one request with one reply.

use grpcio::RpcStatus;

use crate::proto::{HelloReply, HelloRequest};

/// The greeting for `name`, exactly as the tutorial's Go server builds it.
pub fn greeting(name: &str) -> String {
    format!("Hello {name}")
}

/// Replies `"Hello " + name`. Any UTF-8 name is fine, the empty one included; the size of a
/// name is bounded only by the server's receive limit, which C-core enforces before we run.
pub async fn say_hello(request: HelloRequest) -> Result<HelloReply, RpcStatus> {
    log::debug!("Received greeting request ({} bytes of name)", request.name.len());
    Ok(HelloReply { message: greeting(&request.name), ..Default::default() })
}
