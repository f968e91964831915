//! Level 4, bidirectional streaming: `Chat` answers every message as soon as it arrives.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::{future, SinkExt as _, TryStreamExt as _};
use grpcio::{DuplexSink, RpcContext, RpcStatus, RpcStatusCode, WriteFlags};

use crate::call::{Replies, Requests, SendAllBatched};
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
/// [`SendAllBatched`] forwards a reply as soon as its message is read and flushes whenever the
/// incoming side has nothing ready (at most one completion-queue turn later), so a client
/// that waits for each reply before sending the next one never waits on us, and one that
/// pipelines gets its replies batched.
/// A message longer than `max_len` bytes ends the call with INVALID_ARGUMENT.
pub(crate) fn chat(
    ctx: &RpcContext,
    mut stream: Requests<ChatMessage>,
    mut sink: Replies<DuplexSink<ChatMessage>>,
    open: &OpenChats,
    max_len: usize,
) {
    // grpcio keeps the last reply back and writes the earlier ones with the buffer hint (no
    // `sendmsg`); `SendAllBatched` decides when that last one is flushed.
    sink.enhance_batch(true);
    let open = open.enter();
    ctx.spawn(async move {
        let _open = open;
        let mut too_long = None;
        let mut index = 0u64;
        let sent = {
            // Borrowed, not consumed: dropping a grpcio RequestStream early cancels the call,
            // and the rejection below must reach the client as a status.
            let replies = (&mut stream)
                .try_take_while(|msg| {
                    let len = msg.message.len();
                    if len > max_len {
                        too_long = Some(ChatError::TooLong { index, len, max_len });
                    }
                    index += 1;
                    future::ready(Ok(len <= max_len))
                })
                .inspect_ok(|msg| log::debug!("Received message [{}]: {}", msg.user, msg.message))
                .map_ok(|msg| (reply_to(&msg), WriteFlags::default()));
            SendAllBatched::new(replies, &mut sink).await
        };
        let outcome = match (sent, too_long) {
            (Ok(()), None) => sink.close().await,
            (Ok(()), Some(e)) => {
                log::info!("Chat rejected: {e}");
                sink.fail(e.into()).await
            }
            (Err(e), _) => Err(e),
        };
        if let Err(e) = outcome {
            log::debug!("Chat ended early: {e}");
        }
    });
}

/// Why a chat was ended by the server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    #[error("chat message #{index} is {len} bytes; the limit (max_chat_message_len) is {max_len}")]
    TooLong { index: u64, len: usize, max_len: usize },
}

impl From<ChatError> for RpcStatus {
    fn from(e: ChatError) -> Self {
        RpcStatus::with_message(RpcStatusCode::INVALID_ARGUMENT, e.to_string())
    }
}

/// The Chat calls open right now. Cheap to clone: clones share the count.
#[derive(Clone, Debug, Default)]
pub(crate) struct OpenChats(Arc<AtomicU64>);

impl OpenChats {
    /// One more chat is open until the guard is dropped (when its task ends, however it ends).
    fn enter(&self) -> OpenChat {
        self.0.fetch_add(1, Ordering::SeqCst);
        OpenChat(self.0.clone())
    }

    /// The count, read when asked.
    pub(crate) fn count(&self) -> impl Fn() -> u64 + Send + Sync + 'static {
        let open = self.0.clone();
        move || open.load(Ordering::SeqCst)
    }
}

/// One open chat, counted in [`OpenChats`] while it lives.
struct OpenChat(Arc<AtomicU64>);

impl Drop for OpenChat {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
