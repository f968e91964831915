//! One gRPC-Web call, below tonic-web (so already a gRPC request): admitted or refused,
//! forwarded upstream, and its reply handed back with the body adapter.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use tonic::body::Body;

use crate::body::{Held, ReplyBody};
use crate::limits::Limits;
use crate::metrics::{Format, Metrics};
use crate::status::{self, code_in};
use crate::upstream::Upstream;

/// What the router saw of the request before tonic-web rewrote its headers.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct AsSent {
    pub(crate) format: Format,
    /// Its `content-length`, when it had one.
    pub(crate) length: Option<u64>,
}

#[derive(Clone)]
pub(crate) struct CallService {
    pub(crate) upstream: Arc<Upstream>,
    pub(crate) limits: Arc<Limits>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) max_request_bytes: u64,
}

impl tower::Service<Request<Body>> for CallService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.forward(req).await) })
    }
}

impl CallService {
    async fn forward(self, req: Request<Body>) -> Response<Body> {
        let sent = req.extensions().get::<AsSent>().copied().unwrap_or_default();
        let mut record = self.metrics.start(req.uri().path(), sent.format);
        let permit = match self.limits.admit(sent.length) {
            Ok(permit) => permit,
            Err((why, status)) => {
                self.metrics.rejected(why.label());
                record.finish(status.code());
                return status::reply(status);
            }
        };
        let over_limit = Arc::new(AtomicBool::new(false));
        let req = req.map(|body| self.limits.bound(body, over_limit.clone()));
        let (reply, lease) = match self.upstream.send(req).await {
            Ok(sent) => sent,
            Err(failed) => {
                let status = if over_limit.load(std::sync::atomic::Ordering::Relaxed) {
                    self.limits.too_large("larger")
                } else {
                    failed
                };
                log::debug!("{}: {}", self.upstream.authority(), status.message());
                record.finish(status.code());
                return status::reply(status);
            }
        };
        let (parts, body) = reply.into_parts();
        if parts.status != StatusCode::OK {
            let status = status::from_http(parts.status);
            record.finish(status.code());
            return status::reply(status);
        }
        if let Some(code) = code_in(&parts.headers) {
            // Trailers-only: the status is in the headers, and there is no body to wait for.
            record.finish(code);
            return Response::from_parts(parts, Body::empty());
        }
        let held =
            Held { record, _permit: permit, _lease: lease, over_limit, max_request_bytes: self.max_request_bytes };
        Response::from_parts(parts, Body::new(ReplyBody::new(body, held)))
    }
}
