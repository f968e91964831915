//! [`Requests`]: the messages a client streams to a handler.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use futures::{Stream, StreamExt as _};
use grpcio::{RequestStream, RpcStatus, RpcStatusCode};

use super::observe::Observed;

/// The request messages of a client-streaming or bidi call, in order.
///
/// `message().await` gives the next one, `Ok(None)` once the client has sent its last, and
/// `Err` when the call is over (the client cancelled, its deadline passed) or a message could
/// not be decoded (INVALID_ARGUMENT): return that error, and the call ends with it.
pub struct Requests<T> {
    /// Shared with the call's driver, which keeps it until the status is sent: grpcio cancels
    /// a call whose request stream is dropped unfinished, and a handler that fails early would
    /// otherwise lose its status to CANCELLED.
    stream: Arc<Mutex<RequestStream<T>>>,
    observed: Observed,
}

impl<T> Requests<T> {
    pub(crate) fn new(stream: Arc<Mutex<RequestStream<T>>>, observed: Observed) -> Self {
        Requests { stream, observed }
    }

    /// The next request; `Ok(None)` after the last.
    pub async fn message(&mut self) -> Result<Option<T>, RpcStatus> {
        futures::future::poll_fn(|cx| self.poll_message(cx)).await
    }

    fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<T>, RpcStatus>> {
        let next = self.stream.lock().unwrap_or_else(PoisonError::into_inner).poll_next_unpin(cx);
        Poll::Ready(match futures::ready!(next) {
            Some(Ok(message)) => {
                self.observed.received();
                Ok(Some(message))
            }
            Some(Err(e)) => Err(status_of(&e)),
            None => Ok(None),
        })
    }
}

impl<T> Stream for Requests<T> {
    type Item = Result<T, RpcStatus>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_message(cx).map(Result::transpose)
    }
}

/// What a grpcio error means for the call, as a status.
pub(crate) fn status_of(e: &grpcio::Error) -> RpcStatus {
    match e {
        grpcio::Error::RpcFailure(status) | grpcio::Error::RpcFinished(Some(status)) => status.clone(),
        grpcio::Error::RpcFinished(None) | grpcio::Error::RemoteStopped => {
            RpcStatus::with_message(RpcStatusCode::CANCELLED, "the call is over".to_owned())
        }
        grpcio::Error::Codec(e) => RpcStatus::with_message(
            RpcStatusCode::INVALID_ARGUMENT,
            format!("a request message cannot be decoded: {e}"),
        ),
        other => RpcStatus::with_message(RpcStatusCode::INTERNAL, other.to_string()),
    }
}
