//! The first stop of every request: gRPC-Web calls (and their CORS preflights) go to the
//! translation, GET and HEAD to the page's files, anything else gets a plain HTTP error.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::CONTENT_TYPE;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tonic::body::Body;
use tonic_web::GrpcWebService;
use tower::ServiceExt as _;
use tower_http::cors::Cors;
use tower_http::services::ServeDir;

use crate::call::{AsSent, CallService};
use crate::metrics::{Format, Metrics};

/// gRPC-Web's content types (those tonic-web translates).
const GRPC_WEB: [&str; 4] = [
    "application/grpc-web",
    "application/grpc-web+proto",
    "application/grpc-web-text",
    "application/grpc-web-text+proto",
];

#[derive(Clone)]
pub(crate) struct Router {
    pub(crate) grpc_web: Cors<GrpcWebService<CallService>>,
    pub(crate) files: Option<ServeDir>,
    pub(crate) metrics: Arc<Metrics>,
}

impl tower::Service<Request<Incoming>> for Router {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Incoming>) -> Self::Future {
        let content_type = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let grpc_web = GRPC_WEB.contains(&content_type);
        if grpc_web || req.method() == Method::OPTIONS {
            let format =
                if content_type.starts_with("application/grpc-web-text") { Format::Text } else { Format::Binary };
            let length = req.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
            req.extensions_mut().insert(AsSent { format, length });
            return Box::pin(self.grpc_web.clone().oneshot(req));
        }
        if req.method() == Method::POST {
            return ready(plain(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the gateway takes gRPC-Web calls (content-type application/grpc-web or application/grpc-web-text); \
                 gRPC clients reach the server directly\n",
            ));
        }
        match (&self.files, req.method()) {
            (Some(files), &Method::GET | &Method::HEAD) => {
                let (files, metrics) = (files.clone(), self.metrics.clone());
                Box::pin(async move {
                    let reply = files.oneshot(req).await.unwrap_or_else(|e| match e {});
                    metrics.file(reply.status());
                    Ok(reply.map(Body::new))
                })
            }
            (None, &Method::GET | &Method::HEAD) => ready(plain(
                StatusCode::NOT_FOUND,
                "this gateway serves no page (start it with --static-dir); it takes gRPC-Web calls\n",
            )),
            _ => ready(plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "the gateway takes GET for its page and POST for gRPC-Web\n",
            )),
        }
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut reply = Response::new(Body::new(http_body_util::Full::new(bytes::Bytes::from_static(text.as_bytes()))));
    *reply.status_mut() = status;
    reply.headers_mut().insert(CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
    reply
}

fn ready(reply: Response<Body>) -> Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>> {
    Box::pin(std::future::ready(Ok(reply)))
}
