//! The server side of the interop cases: `grpc.testing.TestService`, answering each request
//! exactly as it asks (payload sizes, pauses, a status to end with, metadata to echo), and
//! `grpc.testing.UnimplementedService`, which answers every call UNIMPLEMENTED.
//!
//! Both are registered through [`Registrar`], like every other service, so whatever observes
//! calls observes theirs too.
//! A request that asks for something impossible (a negative size, an unknown payload type,
//! a status code gRPC does not have) ends its call with INVALID_ARGUMENT saying which field.

use std::time::Duration;

use futures::{SinkExt as _, TryStreamExt as _};
use grpcio::{
    ClientStreamingSink, DuplexSink, Metadata, MetadataBuilder, RpcContext, RpcStatus, RpcStatusCode,
    ServerStreamingSink, Service, ServiceBuilder, UnarySink, WriteFlags,
};
use protobuf::{EnumOrUnknown, MessageField};

use crate::call::{Registrar, Replies, Reply, Requests, StreamSink};
use crate::compression::Compression;
use crate::proto::testing::{
    self as pb, BoolValue, EchoStatus, Empty, Payload, PayloadType, SimpleRequest, SimpleResponse,
    StreamingInputCallRequest, StreamingInputCallResponse, StreamingOutputCallRequest, StreamingOutputCallResponse,
};

/// Request metadata the server echoes back in its initial metadata.
pub(crate) const ECHO_INITIAL_KEY: &str = "x-grpc-test-echo-initial";
/// Request metadata the server should echo back in its trailing metadata (see
/// [`TRAILING_METADATA_LIMIT`]).
pub(crate) const ECHO_TRAILING_KEY: &str = "x-grpc-test-echo-trailing-bin";

/// Why `x-grpc-test-echo-trailing-bin` is not echoed: an engine limit, not a choice.
pub const TRAILING_METADATA_LIMIT: &str = "grpcio 0.13's server sinks cannot send custom trailing metadata \
     (the only trailer they send is grpc-status-details-bin), so x-grpc-test-echo-trailing-bin is not echoed";

/// Why `expect_compressed` cannot be honoured: an engine limit, not a choice.
pub const COMPRESSION_LIMIT: &str = "expect_compressed is set, but this server cannot tell whether a request \
     arrived compressed (grpcio 0.13 exposes neither a message's compressed flag nor the grpc-encoding header)";

/// The largest payload one response may ask for; larger asks get RESOURCE_EXHAUSTED.
pub(crate) const MAX_PAYLOAD_LEN: usize = 4 * 1024 * 1024;

/// `grpc.testing.TestService`. Stateless: every answer comes from the request.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TestService;

/// `grpc.testing.UnimplementedService`: every call ends UNIMPLEMENTED, by design.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct UnimplementedService;

impl TestService {
    /// The service, its calls counted by `registrar`. `UnimplementedCall` is left out on
    /// purpose: C-core answers it UNIMPLEMENTED, as the `unimplemented_method` case expects.
    pub(crate) fn service(self, registrar: &Registrar) -> Service {
        let b = registrar.unary(ServiceBuilder::new(), &pb::METHOD_TEST_SERVICE_EMPTY_CALL, empty_call);
        let b = registrar.unary(b, &pb::METHOD_TEST_SERVICE_UNARY_CALL, unary_call);
        let b = registrar.server_streaming(b, &pb::METHOD_TEST_SERVICE_STREAMING_OUTPUT_CALL, streaming_output_call);
        let b = registrar.client_streaming(b, &pb::METHOD_TEST_SERVICE_STREAMING_INPUT_CALL, streaming_input_call);
        let b = registrar.duplex(b, &pb::METHOD_TEST_SERVICE_FULL_DUPLEX_CALL, |ctx, requests, sink| {
            duplex(ctx, requests, sink, Mode::Full)
        });
        let b = registrar.duplex(b, &pb::METHOD_TEST_SERVICE_HALF_DUPLEX_CALL, |ctx, requests, sink| {
            duplex(ctx, requests, sink, Mode::Half)
        });
        b.build()
    }
}

impl UnimplementedService {
    pub(crate) fn service(self, registrar: &Registrar) -> Service {
        let method = &pb::METHOD_UNIMPLEMENTED_SERVICE_UNIMPLEMENTED_CALL;
        registrar
            .unary(ServiceBuilder::new(), method, |ctx, _: Empty, sink: Reply<UnarySink<Empty>>| {
                let status = RpcStatus::with_message(
                    RpcStatusCode::UNIMPLEMENTED,
                    "grpc.testing.UnimplementedService is not implemented by this server, by design".to_owned(),
                );
                ctx.spawn(finish("UnimplementedCall", sink.fail(status)));
            })
            .build()
    }
}

fn empty_call(ctx: &RpcContext, _: Empty, mut sink: Reply<UnarySink<Empty>>) {
    initial_metadata(ctx, false, |headers| sink.set_headers(headers));
    ctx.spawn(finish("EmptyCall", sink.success(Empty::new())));
}

fn unary_call(ctx: &RpcContext, req: SimpleRequest, mut sink: Reply<UnarySink<SimpleResponse>>) {
    initial_metadata(ctx, is_set(&req.response_compressed), |headers| sink.set_headers(headers));
    match simple_response(ctx, &req) {
        Ok(resp) => ctx.spawn(finish("UnaryCall", sink.success(resp))),
        Err(status) => ctx.spawn(finish("UnaryCall", sink.fail(status))),
    }
}

fn simple_response(ctx: &RpcContext, req: &SimpleRequest) -> Result<SimpleResponse, RpcStatus> {
    check_compressed(&req.expect_compressed)?;
    if let Some(status) = echo_status(req.response_status.as_ref())? {
        return Err(status);
    }
    let body_len = payload_len(req.response_size, "response_size")?;
    let mut resp = SimpleResponse::new();
    resp.payload = MessageField::some(payload(req.response_type, body_len)?);
    if req.fill_username {
        resp.username = username(ctx).unwrap_or_default();
    }
    Ok(resp)
}

fn streaming_input_call(
    ctx: &RpcContext,
    requests: Requests<StreamingInputCallRequest>,
    sink: Reply<ClientStreamingSink<StreamingInputCallResponse>>,
) {
    ctx.spawn(async move {
        let mut requests = requests;
        // The request stream lives until the status is out: grpcio cancels a call whose
        // request stream is dropped unfinished, and the status would be CANCELLED.
        match aggregate(&mut requests).await {
            Ok(Ok(total)) => {
                let resp = StreamingInputCallResponse { aggregated_payload_size: total, ..Default::default() };
                finish("StreamingInputCall", sink.success(resp)).await
            }
            Ok(Err(status)) => finish("StreamingInputCall", sink.fail(status)).await,
            Err(e) => log::debug!("StreamingInputCall ended early: {e}"),
        }
    });
}

/// The total size of the payloads of every request, or the status a request earns; the
/// outer error: the call ended from the client's side.
async fn aggregate(requests: &mut Requests<StreamingInputCallRequest>) -> grpcio::Result<Result<i32, RpcStatus>> {
    let mut total: i32 = 0;
    while let Some(req) = requests.try_next().await? {
        if let Err(status) = check_compressed(&req.expect_compressed) {
            return Ok(Err(status));
        }
        let len = req.payload.as_ref().map_or(0, |p| p.body.len());
        match i32::try_from(len).ok().and_then(|len| total.checked_add(len)) {
            Some(sum) => total = sum,
            None => {
                let message = "the payloads add up to more than aggregated_payload_size (int32) holds";
                return Ok(Err(RpcStatus::with_message(RpcStatusCode::RESOURCE_EXHAUSTED, message.to_owned())));
            }
        }
    }
    Ok(Ok(total))
}

fn streaming_output_call(
    ctx: &RpcContext,
    req: StreamingOutputCallRequest,
    mut sink: Replies<ServerStreamingSink<StreamingOutputCallResponse>>,
) {
    // The call compresses when any response asks for it; the others opt out one by one.
    let compressed = req.response_parameters.iter().any(|p| is_set(&p.compressed));
    initial_metadata(ctx, compressed, |headers| sink.set_headers(headers));
    ctx.spawn(async move {
        let outcome = match plan(&req) {
            Ok(plan) => match send(&mut sink, plan).await {
                Ok(()) => sink.close().await,
                Err(e) => Err(e),
            },
            Err(status) => sink.fail(status).await,
        };
        if let Err(e) = outcome {
            log::debug!("StreamingOutputCall ended early: {e}");
        }
    });
}

/// FullDuplexCall answers each request as it arrives; HalfDuplexCall reads them all first.
#[derive(Clone, Copy)]
enum Mode {
    Full,
    Half,
}

fn duplex(
    ctx: &RpcContext,
    mut requests: Requests<StreamingOutputCallRequest>,
    mut sink: Replies<DuplexSink<StreamingOutputCallResponse>>,
    mode: Mode,
) {
    // Its headers go before the first request is read, so a duplex call never compresses
    // (upstream's compression cases use StreamingOutputCall).
    initial_metadata(ctx, false, |headers| sink.set_headers(headers));
    ctx.spawn(async move {
        let outcome = async {
            let mut buffered = Vec::new();
            while let Some(req) = requests.try_next().await? {
                match mode {
                    Mode::Half => buffered.push(req),
                    Mode::Full => match plan(&req) {
                        Ok(plan) => send(&mut sink, plan).await?,
                        // Echo Status: end the call now; later requests are not read.
                        Err(status) => return sink.fail(status).await,
                    },
                }
            }
            for req in &buffered {
                match plan(req) {
                    Ok(plan) => send(&mut sink, plan).await?,
                    Err(status) => return sink.fail(status).await,
                }
            }
            sink.close().await
        };
        if let Err(e) = outcome.await {
            log::debug!("a duplex TestService call ended early: {e}");
        }
    });
}

/// One response still to send: after `delay`, a payload of `len` zeros.
struct Planned {
    delay: Duration,
    len: usize,
    kind: EnumOrUnknown<PayloadType>,
    /// Compressed, when the call compresses at all.
    compressed: bool,
}

/// The responses `req` asks for, every parameter checked before the first is sent; or the
/// status to end the call with (the one it asks for, or why it cannot be answered).
fn plan(req: &StreamingOutputCallRequest) -> Result<Vec<Planned>, RpcStatus> {
    if let Some(status) = echo_status(req.response_status.as_ref())? {
        return Err(status);
    }
    payload(req.response_type, 0)?; // the type, checked once
    req.response_parameters
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let len = payload_len(p.size, &format!("response_parameters[{i}].size"))?;
            let delay = u64::try_from(p.interval_us).map_err(|_| {
                invalid(format!("response_parameters[{i}].interval_us is {}; it cannot be negative", p.interval_us))
            })?;
            let compressed = is_set(&p.compressed);
            Ok(Planned { delay: Duration::from_micros(delay), len, kind: req.response_type, compressed })
        })
        .collect()
}

/// Sends `plan`, pausing before each response as asked (interval_us accumulates: each
/// pause counts from the previous response).
async fn send<S: StreamSink<StreamingOutputCallResponse>>(
    sink: &mut Replies<S>,
    plan: Vec<Planned>,
) -> grpcio::Result<()> {
    for step in plan {
        if !step.delay.is_zero() {
            futures_timer::Delay::new(step.delay).await;
        }
        let payload = payload(step.kind, step.len).expect("checked by plan()");
        let resp = StreamingOutputCallResponse { payload: MessageField::some(payload), ..Default::default() };
        sink.send((resp, WriteFlags::default().force_no_compress(!step.compressed))).await?;
    }
    Ok(())
}

/// Awaits the end of a call; a failure means the client already left, so it is only logged.
async fn finish(what: &str, sent: impl std::future::Future<Output = grpcio::Result<()>>) {
    if let Err(e) = sent.await {
        log::debug!("{what} ended early: {e}");
    }
}

fn invalid(message: String) -> RpcStatus {
    RpcStatus::with_message(RpcStatusCode::INVALID_ARGUMENT, message)
}

fn payload_len(size: i32, field: &str) -> Result<usize, RpcStatus> {
    let len = usize::try_from(size).map_err(|_| invalid(format!("{field} is {size}; it cannot be negative")))?;
    if len > MAX_PAYLOAD_LEN {
        return Err(RpcStatus::with_message(
            RpcStatusCode::RESOURCE_EXHAUSTED,
            format!("{field} is {len}; this server sends payloads of at most {MAX_PAYLOAD_LEN} bytes"),
        ));
    }
    Ok(len)
}

/// `len` zeros of the requested type (COMPRESSABLE is the only one there is).
fn payload(kind: EnumOrUnknown<PayloadType>, len: usize) -> Result<Payload, RpcStatus> {
    match kind.enum_value() {
        Ok(PayloadType::COMPRESSABLE) => Ok(Payload { type_: kind, body: vec![0; len], ..Default::default() }),
        Err(other) => Err(invalid(format!("response_type {other} is not a PayloadType this server knows"))),
    }
}

/// The status a request asks the call to end with (Echo Status); `None` for none or OK.
fn echo_status(status: Option<&EchoStatus>) -> Result<Option<RpcStatus>, RpcStatus> {
    match status {
        None | Some(EchoStatus { code: 0, .. }) => Ok(None),
        Some(EchoStatus { code: code @ 1..=16, message, .. }) => {
            Ok(Some(RpcStatus::with_message(RpcStatusCode::from(*code), message.clone())))
        }
        Some(EchoStatus { code, .. }) => {
            Err(invalid(format!("response_status.code {code} is not a gRPC status code (0..=16)")))
        }
    }
}

/// The call's initial metadata, given to `set` when there is any. Echo Metadata:
/// `x-grpc-test-echo-initial` goes back. `x-grpc-test-echo-trailing-bin` cannot go back at
/// all ([`TRAILING_METADATA_LIMIT`]): it is logged, so the limit shows where the missing
/// trailer would have come from. `compress`: the replies go gzip-compressed (C-core's per-call
/// key, which it takes out of the headers before they are sent).
fn initial_metadata(ctx: &RpcContext, compress: bool, set: impl FnOnce(Metadata)) {
    let mut echoed = MetadataBuilder::new();
    let mut any = compress;
    if compress {
        Compression::Gzip.for_call(&mut echoed);
    }
    for (key, value) in ctx.request_headers().iter() {
        if key.eq_ignore_ascii_case(ECHO_INITIAL_KEY) {
            match std::str::from_utf8(value).ok().map(|v| echoed.add_str(ECHO_INITIAL_KEY, v)) {
                Some(Ok(_)) => any = true,
                _ => log::warn!("{ECHO_INITIAL_KEY} is not printable ASCII; not echoed"),
            }
        } else if key.eq_ignore_ascii_case(ECHO_TRAILING_KEY) {
            log::warn!("{TRAILING_METADATA_LIMIT}");
        }
    }
    if any {
        set(echoed.build());
    }
}

/// The CompressedRequest feature: `expect_compressed` set means "fail with INVALID_ARGUMENT
/// unless this request arrived compressed". This server cannot tell ([`COMPRESSION_LIMIT`]),
/// so it never claims a request was: it answers INVALID_ARGUMENT naming the limit. Unset or
/// false: nothing to check.
fn check_compressed(expect: &MessageField<BoolValue>) -> Result<(), RpcStatus> {
    if expect.as_ref().is_some_and(|b| b.value) {
        return Err(invalid(COMPRESSION_LIMIT.to_owned()));
    }
    Ok(())
}

fn is_set(flag: &MessageField<BoolValue>) -> bool {
    flag.as_ref().is_some_and(|b| b.value)
}

/// Echo Authenticated Username: the peer's identity, when TLS authenticated one (a client
/// certificate); none otherwise.
#[cfg(tls)]
fn username(ctx: &RpcContext) -> Option<String> {
    let auth = ctx.auth_context()?;
    if !auth.peer_is_authenticated() {
        return None;
    }
    let identity = auth.peer_identity().next()?;
    identity.value_str().ok().map(str::to_owned)
}

/// Without TLS no peer is ever authenticated.
#[cfg(not(tls))]
fn username(_: &RpcContext) -> Option<String> {
    None
}
