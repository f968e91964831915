//! Level 4, bidirectional streaming: `Chat` answers every message as soon as it arrives.

use futures::{SinkExt as _, TryStreamExt as _};
use grpcio::{DuplexSink, RequestStream, RpcContext, WriteFlags};

use crate::proto::ChatMessage;

/// The name the server signs its replies with.
pub const SERVER_USER: &str = "Server";

/// The server's answer to one chat message.
pub fn reply_to(msg: &ChatMessage) -> ChatMessage {
    ChatMessage {
        user: SERVER_USER.to_owned(),
        message: format!("Server received: {}", msg.message),
        ..Default::default()
    }
}

/// Echoes each message back as `Server received: …`, in order, ending OK on half-close.
///
/// `send_all` forwards a reply as soon as its message is read and flushes whenever the
/// incoming side has nothing ready, so a client that waits for each reply before sending the
/// next one never waits on us.
pub fn chat(ctx: &RpcContext, stream: RequestStream<ChatMessage>, mut sink: DuplexSink<ChatMessage>) {
    ctx.spawn(async move {
        let mut replies = stream
            .inspect_ok(|msg| log::debug!("Received message [{}]: {}", msg.user, msg.message))
            .map_ok(|msg| (reply_to(&msg), WriteFlags::default()));
        let outcome = match sink.send_all(&mut replies).await {
            Ok(()) => sink.close().await,
            Err(e) => Err(e),
        };
        if let Err(e) = outcome {
            log::debug!("Chat ended early: {e}");
        }
    });
}
