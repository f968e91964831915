//! The body adapter between the server's reply and tonic-web: hyper's HTTP/2 body in,
//! `tonic::body::Body` out, and a reply that always ends with a gRPC status. A reply the
//! server cut off (it went down, it reset the stream) ends with trailers the gateway writes,
//! so the browser reads a status instead of a broken connection.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};
use hyper::body::Incoming;
use tokio::sync::OwnedSemaphorePermit;
use tonic::Code;

use crate::metrics::CallRecord;
use crate::status::{code_in, trailers};
use crate::upstream::{root_cause, Lease};

/// What a call holds until its reply ends: its record, its place among the calls in flight,
/// its share of the upstream connection.
pub(crate) struct Held {
    pub(crate) record: CallRecord,
    pub(crate) _permit: OwnedSemaphorePermit,
    pub(crate) _lease: Lease,
    /// Set when the request body went over the size limit.
    pub(crate) over_limit: Arc<AtomicBool>,
    pub(crate) max_request_bytes: u64,
}

pub(crate) struct ReplyBody {
    inner: Incoming,
    /// `None` once the reply has ended (trailers passed or written).
    held: Option<Held>,
}

impl ReplyBody {
    pub(crate) fn new(inner: Incoming, held: Held) -> Self {
        ReplyBody { inner, held: Some(held) }
    }

    fn end(&mut self, code: Code) {
        if let Some(mut held) = self.held.take() {
            held.record.finish(code);
        }
    }
}

impl Body for ReplyBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.held.is_none() {
            return Poll::Ready(None);
        }
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(e))) => {
                let held = self.held.as_ref().expect("checked above");
                let (code, message) = if held.over_limit.load(Ordering::Relaxed) {
                    (
                        Code::ResourceExhausted,
                        format!(
                            "the request body is over the gateway's limit (max_request_bytes) of {} bytes",
                            held.max_request_bytes
                        ),
                    )
                } else {
                    (Code::Unavailable, format!("the gRPC server broke off the reply: {}", root_cause(&e)))
                };
                log::debug!("a reply ended early: {message}");
                self.end(code);
                return Poll::Ready(Some(Ok(Frame::trailers(trailers(code, &message)))));
            }
            Poll::Ready(None) => {
                let message = "the gRPC server ended the reply without a status";
                self.end(Code::Internal);
                return Poll::Ready(Some(Ok(Frame::trailers(trailers(Code::Internal, message)))));
            }
        };
        if let Some(t) = frame.trailers_ref() {
            let code = code_in(t).unwrap_or(Code::Unknown);
            self.end(code);
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_none()
    }
}
