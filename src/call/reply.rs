//! A call as the handlers see it: grpcio's request stream and reply sinks, each carrying the
//! call's [`Call`]. They behave exactly like the grpcio types they wrap; they also tell the
//! call's observers of each message, and of the status the call ends with.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{Sink, Stream};
use grpcio::{
    ClientStreamingSink, ClientStreamingSinkResult, DuplexSink, DuplexSinkFailure, Metadata, RequestStream, RpcStatus,
    RpcStatusCode, ServerStreamingSink, ServerStreamingSinkFailure, UnarySink, UnarySinkResult, WriteFlags,
};

use super::observe::Call;

/// grpcio's sinks for one reply: `UnarySink` and `ClientStreamingSink`.
pub(crate) trait OneReplySink<T>: Send {
    type Sent: Future<Output = grpcio::Result<()>> + Send;
    fn success(self, reply: T) -> Self::Sent;
    fn fail(self, status: RpcStatus) -> Self::Sent;
    fn set_headers(&mut self, headers: Metadata);
}

impl<T> OneReplySink<T> for UnarySink<T> {
    type Sent = UnarySinkResult;
    fn success(self, reply: T) -> UnarySinkResult {
        UnarySink::success(self, reply)
    }
    fn fail(self, status: RpcStatus) -> UnarySinkResult {
        UnarySink::fail(self, status)
    }
    fn set_headers(&mut self, headers: Metadata) {
        UnarySink::set_headers(self, headers)
    }
}

impl<T> OneReplySink<T> for ClientStreamingSink<T> {
    type Sent = ClientStreamingSinkResult;
    fn success(self, reply: T) -> ClientStreamingSinkResult {
        ClientStreamingSink::success(self, reply)
    }
    fn fail(self, status: RpcStatus) -> ClientStreamingSinkResult {
        ClientStreamingSink::fail(self, status)
    }
    fn set_headers(&mut self, headers: Metadata) {
        ClientStreamingSink::set_headers(self, headers)
    }
}

/// The one reply of a unary or client-streaming call.
pub(crate) struct Reply<S> {
    sink: S,
    call: Call,
}

impl<S> Reply<S> {
    pub(crate) fn new(sink: S, call: Call) -> Self {
        Reply { sink, call }
    }

    /// Initial metadata to send with the reply (or the failure).
    pub(crate) fn set_headers<T>(&mut self, headers: Metadata)
    where
        S: OneReplySink<T>,
    {
        self.sink.set_headers(headers)
    }

    /// Sends `reply` and OK; resolves once they are sent (an error: the client is gone).
    pub(crate) fn success<T>(self, reply: T) -> impl Future<Output = grpcio::Result<()>> + Send
    where
        S: OneReplySink<T>,
    {
        let Reply { sink, call } = self;
        call.sent();
        let sent = sink.success(reply);
        async move {
            let result = sent.await;
            match &result {
                Ok(()) => call.finish(RpcStatusCode::OK),
                Err(e) => call.failed(e),
            }
            result
        }
    }

    /// Ends the call with `status`.
    pub(crate) fn fail<T>(self, status: RpcStatus) -> impl Future<Output = grpcio::Result<()>> + Send
    where
        S: OneReplySink<T>,
    {
        failing(self.call, status, |status| self.sink.fail(status))
    }
}

fn failing<F: Future<Output = grpcio::Result<()>> + Send>(
    call: Call,
    status: RpcStatus,
    fail: impl FnOnce(RpcStatus) -> F,
) -> impl Future<Output = grpcio::Result<()>> + Send {
    let code = status.code();
    let sent = fail(status);
    async move {
        let result = sent.await;
        match &result {
            Ok(()) => call.finish(code),
            Err(e) => call.failed(e),
        }
        result
    }
}

/// grpcio's sinks for a stream of replies: `ServerStreamingSink` and `DuplexSink`.
pub(crate) trait StreamSink<T>: Sink<(T, WriteFlags), Error = grpcio::Error> + Unpin + Send {
    type Failed: Future<Output = grpcio::Result<()>> + Send;
    fn fail(self, status: RpcStatus) -> Self::Failed;
    fn enhance_batch(&mut self, on: bool);
    fn set_headers(&mut self, headers: Metadata);
}

impl<T> StreamSink<T> for ServerStreamingSink<T> {
    type Failed = ServerStreamingSinkFailure;
    fn fail(self, status: RpcStatus) -> ServerStreamingSinkFailure {
        ServerStreamingSink::fail(self, status)
    }
    fn enhance_batch(&mut self, on: bool) {
        ServerStreamingSink::enhance_batch(self, on)
    }
    fn set_headers(&mut self, headers: Metadata) {
        ServerStreamingSink::set_headers(self, headers)
    }
}

impl<T> StreamSink<T> for DuplexSink<T> {
    type Failed = DuplexSinkFailure;
    fn fail(self, status: RpcStatus) -> DuplexSinkFailure {
        DuplexSink::fail(self, status)
    }
    fn enhance_batch(&mut self, on: bool) {
        DuplexSink::enhance_batch(self, on)
    }
    fn set_headers(&mut self, headers: Metadata) {
        DuplexSink::set_headers(self, headers)
    }
}

/// The replies of a server-streaming or bidi call: a `Sink` like grpcio's; closing it sends OK.
pub(crate) struct Replies<S> {
    sink: S,
    call: Call,
}

impl<S> Replies<S> {
    pub(crate) fn new(sink: S, call: Call) -> Self {
        Replies { sink, call }
    }

    /// Ends the call with `status` instead of OK.
    pub(crate) fn fail<T>(self, status: RpcStatus) -> impl Future<Output = grpcio::Result<()>> + Send
    where
        S: StreamSink<T>,
    {
        failing(self.call, status, |status| self.sink.fail(status))
    }

    /// grpcio's `enhance_batch`: let C-core hold replies back until a flush.
    pub(crate) fn enhance_batch<T>(&mut self, on: bool)
    where
        S: StreamSink<T>,
    {
        self.sink.enhance_batch(on)
    }

    /// Initial metadata, sent with the first reply (a `fail` before any reply sends none:
    /// grpcio drops them there); set it before the first reply.
    pub(crate) fn set_headers<T>(&mut self, headers: Metadata)
    where
        S: StreamSink<T>,
    {
        self.sink.set_headers(headers)
    }

    fn noted<R>(&self, result: Poll<grpcio::Result<R>>) -> Poll<grpcio::Result<R>> {
        if let Poll::Ready(Err(e)) = &result {
            self.call.failed(e);
        }
        result
    }
}

impl<S: StreamSink<T>, T> Sink<(T, WriteFlags)> for Replies<S> {
    type Error = grpcio::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<grpcio::Result<()>> {
        let result = Pin::new(&mut self.sink).poll_ready(cx);
        self.noted(result)
    }

    fn start_send(mut self: Pin<&mut Self>, item: (T, WriteFlags)) -> grpcio::Result<()> {
        let result = Pin::new(&mut self.sink).start_send(item);
        match &result {
            Ok(()) => self.call.sent(),
            Err(e) => self.call.failed(e),
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<grpcio::Result<()>> {
        let result = Pin::new(&mut self.sink).poll_flush(cx);
        self.noted(result)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<grpcio::Result<()>> {
        let result = Pin::new(&mut self.sink).poll_close(cx);
        if let Poll::Ready(Ok(())) = result {
            self.call.finish(RpcStatusCode::OK);
        }
        self.noted(result)
    }
}

/// The request stream of a client-streaming or bidi call, as grpcio's; each message counted.
/// Dropping it before its end cancels the call, as grpcio's does.
pub(crate) struct Requests<T> {
    stream: RequestStream<T>,
    call: Call,
}

impl<T> Requests<T> {
    pub(crate) fn new(stream: RequestStream<T>, call: Call) -> Self {
        Requests { stream, call }
    }
}

impl<T> Stream for Requests<T> {
    type Item = grpcio::Result<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<grpcio::Result<T>>> {
        let next = Pin::new(&mut self.stream).poll_next(cx);
        match &next {
            Poll::Ready(Some(Ok(_))) => self.call.received(),
            Poll::Ready(Some(Err(e))) => self.call.failed(e),
            _ => {}
        }
        next
    }
}
