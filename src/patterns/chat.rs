//! Level 4, bidirectional streaming: `Chat` answers every message as soon as it arrives.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use grpcio::{RpcStatus, RpcStatusCode};

use crate::call::{Replies, Requests};
use crate::proto::ChatMessage;

/// The name the server signs its answers with.
pub const SERVER_USER: &str = "Server";

/// The server's answer to one chat message.
pub fn answer(msg: &ChatMessage) -> ChatMessage {
    ChatMessage {
        user: SERVER_USER.to_owned(),
        message: format!("Server received: {}", msg.message),
        ..Default::default()
    }
}

/// Answers each message as `Server received: …`, in order, and ends OK when the client has
/// sent its last. A message longer than the limit ends the chat with INVALID_ARGUMENT.
pub async fn chat(
    chats: Chats,
    mut requests: Requests<ChatMessage>,
    mut replies: Replies<ChatMessage>,
) -> Result<(), RpcStatus> {
    let _open = chats.open();
    let mut index = 0;
    while let Some(msg) = requests.message().await? {
        log::debug!("Received message [{}]: {}", msg.user, msg.message);
        if msg.message.len() > chats.max_message_len {
            return Err(ChatError::TooLong { index, len: msg.message.len(), max_len: chats.max_message_len }.into());
        }
        replies.send(answer(&msg)).await?;
        index += 1;
    }
    Ok(())
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

/// Chat's limit, and the chats open now. Cheap to clone: clones share the count.
#[derive(Clone, Debug)]
pub struct Chats {
    max_message_len: usize,
    open: Arc<AtomicU64>,
}

impl Chats {
    /// Chats whose messages may be `max_message_len` bytes long at most.
    pub fn new(max_message_len: usize) -> Self {
        Chats { max_message_len, open: Arc::default() }
    }

    /// How many chats are open, read when asked.
    pub(crate) fn count(&self) -> impl Fn() -> u64 + Send + Sync + 'static {
        let open = self.open.clone();
        move || open.load(Ordering::SeqCst)
    }

    /// One more chat is open until the guard is dropped, however the chat ends.
    fn open(&self) -> OpenChat {
        self.open.fetch_add(1, Ordering::SeqCst);
        OpenChat(self.open.clone())
    }
}

/// One open chat, counted while it lives.
struct OpenChat(Arc<AtomicU64>);

impl Drop for OpenChat {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
