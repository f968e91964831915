//! Admission: the request size limit and the limit on calls in flight. A call over either is
//! answered `RESOURCE_EXHAUSTED` by the gateway and never reaches the server.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;

/// Why a call was refused, a label of `greeter_gateway_rejected_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rejection {
    TooLarge,
    TooManyCalls,
}

impl Rejection {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Rejection::TooLarge => "too_large",
            Rejection::TooManyCalls => "too_many_calls",
        }
    }
}

pub(crate) struct Limits {
    max_request_bytes: u64,
    max_calls: usize,
    calls: Arc<Semaphore>,
}

impl Limits {
    pub(crate) fn new(max_request_bytes: u64, max_calls: usize) -> Self {
        Limits { max_request_bytes, max_calls, calls: Arc::new(Semaphore::new(max_calls)) }
    }

    /// A place among the calls in flight, held until the reply ends, for a request whose
    /// body declared `declared` bytes (`None`: a body sent in chunks, counted as it comes).
    pub(crate) fn admit(&self, declared: Option<u64>) -> Result<OwnedSemaphorePermit, (Rejection, Status)> {
        if let Some(len) = declared.filter(|&len| len > self.max_request_bytes) {
            return Err((Rejection::TooLarge, self.too_large(&format!("{len} bytes"))));
        }
        self.calls.clone().try_acquire_owned().map_err(|_| {
            let message = format!(
                "the gateway is at its limit of {} calls in flight (max_concurrent_calls); retry later",
                self.max_calls
            );
            (Rejection::TooManyCalls, Status::resource_exhausted(message))
        })
    }

    pub(crate) fn too_large(&self, size: &str) -> Status {
        Status::resource_exhausted(format!(
            "the request body is {size}, over the gateway's limit (max_request_bytes) of {} bytes",
            self.max_request_bytes
        ))
    }

    /// `body`, cut off with an error once more than the limit has arrived (`over` is then set).
    pub(crate) fn bound<B>(&self, body: B, over: Arc<AtomicBool>) -> BoundedBody<B> {
        BoundedBody { inner: body, seen: 0, max: self.max_request_bytes, over }
    }
}

/// A request body that fails once it carries more than `max` bytes.
pub(crate) struct BoundedBody<B> {
    inner: B,
    seen: u64,
    max: u64,
    over: Arc<AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
#[error("the request body is over the gateway's limit of {0} bytes")]
pub(crate) struct OverLimit(u64);

impl<B> Body for BoundedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        if let Some(data) = frame.data_ref() {
            self.seen += data.len() as u64;
            if self.seen > self.max {
                self.over.store(true, Ordering::Relaxed);
                return Poll::Ready(Some(Err(Box::new(OverLimit(self.max)))));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    #[test]
    fn a_declared_size_over_the_limit_is_refused() {
        let limits = Limits::new(10, 5);
        let (why, status) = limits.admit(Some(11)).unwrap_err();
        assert_eq!(why, Rejection::TooLarge);
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            status.message(),
            "the request body is 11 bytes, over the gateway's limit (max_request_bytes) of 10 bytes"
        );
        assert!(limits.admit(Some(10)).is_ok());
    }

    #[test]
    fn calls_past_the_limit_are_refused_until_one_ends() {
        let limits = Limits::new(10, 2);
        let first = limits.admit(None).unwrap();
        let _second = limits.admit(None).unwrap();
        let (why, status) = limits.admit(None).unwrap_err();
        assert_eq!(why, Rejection::TooManyCalls);
        assert_eq!(
            status.message(),
            "the gateway is at its limit of 2 calls in flight (max_concurrent_calls); retry later"
        );
        drop(first);
        assert!(limits.admit(None).is_ok());
    }

    #[tokio::test]
    async fn a_body_over_the_limit_fails_and_says_so() {
        let limits = Limits::new(4, 1);
        let over = Arc::new(AtomicBool::new(false));
        let ok = limits.bound(Full::new(Bytes::from_static(b"1234")), over.clone());
        assert_eq!(ok.collect().await.unwrap().to_bytes(), "1234");
        assert!(!over.load(Ordering::Relaxed));
        let big = limits.bound(Full::new(Bytes::from_static(b"12345")), over.clone());
        let err = big.collect().await.unwrap_err();
        assert_eq!(err.to_string(), "the request body is over the gateway's limit of 4 bytes");
        assert!(over.load(Ordering::Relaxed));
    }
}
