//! The gRPC server behind the gateway: a few HTTP/2 connections (the server allows a limited
//! number of streams on each), every call sent on the one with the fewest calls in flight.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderName};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, Error as ClientError};
use hyper_util::rt::TokioExecutor;
use tonic::Status;

use crate::limits::BoundedBody;

/// What the gateway sends upstream: the browser's request body, as tonic-web decoded it,
/// bounded by the size limit.
pub(crate) type UpstreamBody = BoundedBody<tonic::body::Body>;

/// Request headers that belong to one hop (HTTP/1.1's connection management), or that
/// tonic-web adds for a server that compresses HTTP bodies, which gRPC servers do not.
const HOP_HEADERS: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HOST,
    header::ACCEPT_ENCODING,
];

pub(crate) struct Upstream {
    authority: Authority,
    connections: Vec<Connection>,
}

struct Connection {
    client: Client<HttpConnector, UpstreamBody>,
    in_flight: Arc<AtomicUsize>,
}

/// A call's share of its connection, returned when dropped (when the reply ends).
pub(crate) struct Lease(Arc<AtomicUsize>);

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamAddrError {
    #[error("{0:?} is not host:port or http://host:port")]
    Malformed(String),
    #[error("{0:?}: the gateway reaches the gRPC server in plaintext (http://) only")]
    Scheme(String),
}

impl Upstream {
    /// `addr` is `host:port` or `http://host:port`.
    pub(crate) fn new(addr: &str, connections: usize) -> Result<Self, UpstreamAddrError> {
        let uri: Uri = if addr.contains("://") { addr.parse() } else { format!("http://{addr}").parse() }
            .map_err(|_| UpstreamAddrError::Malformed(addr.to_owned()))?;
        if uri.scheme() != Some(&Scheme::HTTP) {
            return Err(UpstreamAddrError::Scheme(addr.to_owned()));
        }
        let authority = uri.authority().cloned().ok_or_else(|| UpstreamAddrError::Malformed(addr.to_owned()))?;
        if authority.port_u16().is_none() {
            return Err(UpstreamAddrError::Malformed(addr.to_owned()));
        }
        let connections = (0..connections.max(1))
            .map(|_| {
                let mut connector = HttpConnector::new();
                connector.set_nodelay(true);
                connector.set_connect_timeout(Some(Duration::from_secs(5)));
                // Each Client keeps one HTTP/2 connection: several Clients, several connections.
                // No HTTP/2 pings: C-core answers pings more often than every 5 minutes with
                // GOAWAY too_many_pings.
                let client = Client::builder(TokioExecutor::new()).http2_only(true).build(connector);
                Connection { client, in_flight: Arc::new(AtomicUsize::new(0)) }
            })
            .collect();
        Ok(Upstream { authority, connections })
    }

    pub(crate) fn authority(&self) -> &Authority {
        &self.authority
    }

    /// Sends a call (its headers as the browser sent them, less the per-hop ones) and
    /// waits for the reply's headers.
    pub(crate) async fn send(&self, mut req: Request<UpstreamBody>) -> Result<(Response<Incoming>, Lease), Status> {
        let path = req.uri().path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(self.authority.clone())
            .path_and_query(path)
            .build()
            .expect("scheme, authority and path make a URI");
        *req.version_mut() = Version::HTTP_2;
        for name in &HOP_HEADERS {
            req.headers_mut().remove(name);
        }
        let connection = self
            .connections
            .iter()
            .min_by_key(|c| c.in_flight.load(Ordering::Relaxed))
            .expect("at least one connection");
        connection.in_flight.fetch_add(1, Ordering::Relaxed);
        let lease = Lease(connection.in_flight.clone());
        match connection.client.request(req).await {
            Ok(resp) => Ok((resp, lease)),
            Err(e) => Err(self.failed(&e)),
        }
    }

    /// A call that got no reply: the server is down (or refused the connection), or it
    /// reset the call.
    fn failed(&self, e: &ClientError) -> Status {
        let cause = root_cause(e);
        if e.is_connect() {
            Status::unavailable(format!("the gateway cannot reach the gRPC server at {}: {cause}", self.authority))
        } else {
            Status::unavailable(format!("the gRPC server at {} did not answer the call: {cause}", self.authority))
        }
    }
}

/// The innermost error's words ("Connection refused (os error 111)").
pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_with_and_without_a_scheme() {
        assert_eq!(Upstream::new("127.0.0.1:50051", 1).unwrap().authority().as_str(), "127.0.0.1:50051");
        assert_eq!(Upstream::new("http://localhost:50051", 2).unwrap().authority().as_str(), "localhost:50051");
        let err = Upstream::new("https://localhost:50051", 1).err().unwrap();
        assert_eq!(
            err.to_string(),
            "\"https://localhost:50051\": the gateway reaches the gRPC server in plaintext (http://) only"
        );
        assert!(matches!(Upstream::new("localhost", 1), Err(UpstreamAddrError::Malformed(_))));
    }
}
