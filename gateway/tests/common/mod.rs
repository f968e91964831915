//! The gateway's tests: a server behind it (ours, or gRPC's interop TestService), the
//! gateway in-process, and two clients: tonic-web's gRPC-Web client for typed calls, and a
//! raw HTTP client for requests shaped by hand (text mode, malformed bodies, CORS).
#![allow(dead_code)] // Each test binary uses its own subset.

use std::marker::PhantomData;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use greeter::interop::{InteropServer, InteropServerConfig};
use greeter::{GreeterServer, ServerConfig};
use greeter_gateway::{Gateway, GatewayConfig};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;
use tonic_web::{GrpcWebCall, GrpcWebClientService};

/// Our server on a free loopback port, ticks `interval` apart.
pub fn greeter_server(interval: Duration) -> GreeterServer {
    let mut config = ServerConfig { addr: "127.0.0.1:0".into(), ..Default::default() };
    config.greeter.stock_interval = interval;
    config.start().expect("the greeter server starts")
}

/// gRPC's interop TestService: any status code, echoed metadata, payloads of any size.
pub fn interop_server() -> InteropServer {
    InteropServerConfig { addr: "127.0.0.1:0".into(), tls: None }.start().expect("the interop server starts")
}

/// The gateway on a free loopback port in front of `upstream_port`, with `tweak` applied to
/// its default configuration.
pub async fn gateway(upstream_port: u16, tweak: impl FnOnce(&mut GatewayConfig)) -> Gateway {
    let mut config = GatewayConfig {
        listen: "127.0.0.1:0".into(),
        upstream: format!("127.0.0.1:{upstream_port}"),
        metrics_addr: Some("127.0.0.1:0".into()),
        ..Default::default()
    };
    tweak(&mut config);
    config.start().await.expect("the gateway starts")
}

type WebClient = GrpcWebClientService<Client<HttpConnector, GrpcWebCall<tonic::body::Body>>>;

/// tonic's client over tonic-web's gRPC-Web client layer, HTTP/1.1, as a browser speaks it.
pub fn web_client(gateway: &Gateway) -> tonic::client::Grpc<WebClient> {
    let http = Client::builder(TokioExecutor::new()).build_http();
    let uri: http::Uri = gateway.url().parse().unwrap();
    tonic::client::Grpc::with_origin(GrpcWebClientService::new(http), uri)
}

/// Unary call `path` through `client`.
pub async fn unary<Req, Resp>(
    client: &mut tonic::client::Grpc<WebClient>,
    path: &'static str,
    request: tonic::Request<Req>,
) -> Result<tonic::Response<Resp>, Status>
where
    Req: protobuf::Message + Send + Sync + 'static,
    Resp: protobuf::Message + Send + Sync + 'static,
{
    client.ready().await.map_err(|e| Status::unavailable(e.to_string()))?;
    client.unary(request, http::uri::PathAndQuery::from_static(path), ProtoCodec::<Req, Resp>::default()).await
}

/// Server-streaming call `path`: every message received before the status, and the status.
pub async fn server_stream<Req, Resp>(
    client: &mut tonic::client::Grpc<WebClient>,
    path: &'static str,
    request: tonic::Request<Req>,
) -> (Vec<Resp>, Status)
where
    Req: protobuf::Message + Send + Sync + 'static,
    Resp: protobuf::Message + Send + Sync + 'static,
{
    if let Err(e) = client.ready().await {
        return (Vec::new(), Status::unavailable(e.to_string()));
    }
    let path = http::uri::PathAndQuery::from_static(path);
    let mut stream = match client.server_streaming(request, path, ProtoCodec::<Req, Resp>::default()).await {
        Ok(reply) => reply.into_inner(),
        Err(status) => return (Vec::new(), status),
    };
    let mut messages = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(m)) => messages.push(m),
            Ok(None) => return (messages, Status::ok("")),
            Err(status) => return (messages, status),
        }
    }
}

/// tonic's codec for rust-protobuf messages (the greeter crate's generated types).
pub struct ProtoCodec<Req, Resp>(PhantomData<fn(Req) -> Resp>);

impl<Req, Resp> Default for ProtoCodec<Req, Resp> {
    fn default() -> Self {
        ProtoCodec(PhantomData)
    }
}

pub struct ProtoEncoder<T>(PhantomData<fn(T)>);
pub struct ProtoDecoder<T>(PhantomData<fn() -> T>);

impl<Req, Resp> Codec for ProtoCodec<Req, Resp>
where
    Req: protobuf::Message + Send + 'static,
    Resp: protobuf::Message + Send + 'static,
{
    type Encode = Req;
    type Decode = Resp;
    type Encoder = ProtoEncoder<Req>;
    type Decoder = ProtoDecoder<Resp>;

    fn encoder(&mut self) -> Self::Encoder {
        ProtoEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProtoDecoder(PhantomData)
    }
}

impl<T: protobuf::Message> Encoder for ProtoEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        let bytes = item.write_to_bytes().map_err(|e| Status::internal(e.to_string()))?;
        dst.put_slice(&bytes);
        Ok(())
    }
}

impl<T: protobuf::Message> Decoder for ProtoDecoder<T> {
    type Item = T;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<T>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        T::parse_from_bytes(&bytes).map(Some).map_err(|e| Status::internal(e.to_string()))
    }
}

/// A reply read whole: HTTP status, headers, body, and HTTP trailers (gRPC-Web has none;
/// its trailers are a frame of the body).
pub struct RawReply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl RawReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends `request` over HTTP/1.1 and reads the whole reply (deadline 30 s).
pub async fn raw(request: Request<Full<Bytes>>) -> RawReply {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let exchange = async {
        let reply = client.request(request).await.expect("the gateway answers");
        let (parts, body) = reply.into_parts();
        let body = body.collect().await.expect("the reply's body arrives whole").to_bytes();
        RawReply { status: parts.status, headers: parts.headers, body }
    };
    tokio::time::timeout(Duration::from_secs(30), exchange).await.expect("the reply within 30 s")
}

/// A gRPC-Web POST of `body` to `path` on `gateway`.
pub fn post(gateway: &Gateway, path: &str, content_type: &str, body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    Request::post(format!("{}{path}", gateway.url()))
        .header("content-type", content_type)
        .header("x-grpc-web", "1")
        .body(Full::new(body.into()))
        .unwrap()
}

/// One message in gRPC's length-prefixed framing.
pub fn frame(message: &impl protobuf::Message) -> Vec<u8> {
    let bytes = message.write_to_bytes().unwrap();
    let mut out = vec![0];
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(&bytes);
    out
}

/// A gRPC-Web reply body taken apart: its messages, and its trailers frame (flag 0x80) as
/// `name: value` lines, lower-cased names.
pub fn frames(mut body: &[u8]) -> (Vec<Bytes>, Vec<(String, String)>) {
    let (mut messages, mut trailers) = (Vec::new(), Vec::new());
    while !body.is_empty() {
        assert!(body.len() >= 5, "a truncated frame header: {body:?}");
        let flag = body[0];
        let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
        assert!(body.len() >= 5 + len, "a frame of {len} bytes with {} left", body.len() - 5);
        let payload = &body[5..5 + len];
        if flag & 0x80 != 0 {
            assert!(trailers.is_empty(), "two trailers frames");
            for line in String::from_utf8(payload.to_vec()).unwrap().split("\r\n").filter(|l| !l.is_empty()) {
                let (name, value) = line.split_once(':').unwrap_or_else(|| panic!("trailer line {line:?}"));
                trailers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        } else {
            assert!(trailers.is_empty(), "a message after the trailers");
            messages.push(Bytes::copy_from_slice(payload));
        }
        body = &body[5 + len..];
    }
    (messages, trailers)
}

pub fn trailer<'a>(trailers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    trailers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// The gateway's `/metrics` now.
pub async fn scrape(gateway: &Gateway) -> String {
    let url = format!("http://{}/metrics", gateway.metrics_addr().expect("metrics are on"));
    let reply = raw(Request::get(url).body(Full::new(Bytes::new())).unwrap()).await;
    assert_eq!(reply.status, StatusCode::OK);
    String::from_utf8(reply.body.to_vec()).unwrap()
}

/// The value of the series `name{labels}` (labels exactly as the exposition prints them),
/// or 0 when absent.
pub fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}
