//! The server side of the interop cases: `grpc.testing.TestService`, answering each request
//! exactly as it asks (payload sizes, pauses, a status to end with, metadata to echo), and
//! `grpc.testing.UnimplementedService`, which answers every call UNIMPLEMENTED.
//!
//! Both are [`Service`]s like every other, so whatever observes calls observes theirs too.
//! A request that asks for something impossible (a negative size, an unknown payload type,
//! a status code gRPC does not have) ends its call with INVALID_ARGUMENT saying which field.

use std::time::Duration;

use grpcio::{MetadataBuilder, RpcStatus, RpcStatusCode, WriteFlags};
use protobuf::{EnumOrUnknown, MessageField};

use crate::call::{Call, Replies, Requests, Service};
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

/// `grpc.testing.TestService`: every answer comes from the request. `UnimplementedCall` is
/// left out on purpose: C-core answers it UNIMPLEMENTED, as the `unimplemented_method` case
/// expects.
pub(crate) fn test_service() -> Service {
    Service::new(pb::file_descriptor(), "grpc.testing.TestService")
        .unary("EmptyCall", |call, _: Empty| {
            echo_metadata(call, false);
            std::future::ready(Ok(Empty::new()))
        })
        .unary("UnaryCall", |call, request: SimpleRequest| {
            echo_metadata(call, is_set(&request.response_compressed));
            let username = username(call);
            std::future::ready(simple_response(&request, username))
        })
        .server_streaming("StreamingOutputCall", |call, request: StreamingOutputCallRequest, replies| {
            // The call compresses when any response asks for it; the others opt out one by one.
            echo_metadata(call, request.response_parameters.iter().any(|p| is_set(&p.compressed)));
            streaming_output_call(request, replies)
        })
        .client_streaming("StreamingInputCall", |call, requests| {
            echo_metadata(call, false);
            streaming_input_call(requests)
        })
        .bidi("FullDuplexCall", |call, requests, replies| {
            // Its headers go before the first request is read, so a duplex call never
            // compresses (upstream's compression cases use StreamingOutputCall).
            echo_metadata(call, false);
            duplex(requests, replies, Mode::Full)
        })
        .bidi("HalfDuplexCall", |call, requests, replies| {
            echo_metadata(call, false);
            duplex(requests, replies, Mode::Half)
        })
}

/// `grpc.testing.UnimplementedService`: every call ends UNIMPLEMENTED, by design.
pub(crate) fn unimplemented_service() -> Service {
    Service::new(pb::file_descriptor(), "grpc.testing.UnimplementedService").unary(
        "UnimplementedCall",
        |_, _: Empty| {
            std::future::ready(Err::<Empty, _>(RpcStatus::with_message(
                RpcStatusCode::UNIMPLEMENTED,
                "grpc.testing.UnimplementedService is not implemented by this server, by design".to_owned(),
            )))
        },
    )
}

fn simple_response(req: &SimpleRequest, username: Option<String>) -> Result<SimpleResponse, RpcStatus> {
    check_compressed(&req.expect_compressed)?;
    if let Some(status) = echo_status(req.response_status.as_ref())? {
        return Err(status);
    }
    let body_len = payload_len(req.response_size, "response_size")?;
    let mut resp = SimpleResponse::new();
    resp.payload = MessageField::some(payload(req.response_type, body_len)?);
    if req.fill_username {
        resp.username = username.unwrap_or_default();
    }
    Ok(resp)
}

/// The total size of the payloads of every request.
async fn streaming_input_call(
    mut requests: Requests<StreamingInputCallRequest>,
) -> Result<StreamingInputCallResponse, RpcStatus> {
    let mut total: i32 = 0;
    while let Some(req) = requests.message().await? {
        check_compressed(&req.expect_compressed)?;
        let len = req.payload.as_ref().map_or(0, |p| p.body.len());
        total = i32::try_from(len).ok().and_then(|len| total.checked_add(len)).ok_or_else(|| {
            let message = "the payloads add up to more than aggregated_payload_size (int32) holds";
            RpcStatus::with_message(RpcStatusCode::RESOURCE_EXHAUSTED, message.to_owned())
        })?;
    }
    Ok(StreamingInputCallResponse { aggregated_payload_size: total, ..Default::default() })
}

async fn streaming_output_call(
    req: StreamingOutputCallRequest,
    mut replies: Replies<StreamingOutputCallResponse>,
) -> Result<(), RpcStatus> {
    send(&mut replies, plan(&req)?).await
}

/// FullDuplexCall answers each request as it arrives; HalfDuplexCall reads them all first.
#[derive(Clone, Copy)]
enum Mode {
    Full,
    Half,
}

async fn duplex(
    mut requests: Requests<StreamingOutputCallRequest>,
    mut replies: Replies<StreamingOutputCallResponse>,
    mode: Mode,
) -> Result<(), RpcStatus> {
    let mut buffered = Vec::new();
    while let Some(req) = requests.message().await? {
        match mode {
            Mode::Half => buffered.push(req),
            // Echo Status: a status asked for ends the call now; later requests are not read.
            Mode::Full => send(&mut replies, plan(&req)?).await?,
        }
    }
    for req in &buffered {
        send(&mut replies, plan(req)?).await?;
    }
    Ok(())
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
async fn send(replies: &mut Replies<StreamingOutputCallResponse>, plan: Vec<Planned>) -> Result<(), RpcStatus> {
    for step in plan {
        if !step.delay.is_zero() {
            futures_timer::Delay::new(step.delay).await;
        }
        let payload = payload(step.kind, step.len).expect("checked by plan()");
        let resp = StreamingOutputCallResponse { payload: MessageField::some(payload), ..Default::default() };
        replies.send_with(resp, WriteFlags::default().force_no_compress(!step.compressed)).await?;
    }
    Ok(())
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

/// The call's initial metadata, when there is any. Echo Metadata:
/// `x-grpc-test-echo-initial` goes back. `x-grpc-test-echo-trailing-bin` cannot go back at
/// all ([`TRAILING_METADATA_LIMIT`]): it is logged, so the limit shows where the missing
/// trailer would have come from. `compress`: the replies go gzip-compressed (C-core's per-call
/// key, which it takes out of the headers before they are sent).
fn echo_metadata(call: &mut Call<'_>, compress: bool) {
    let mut echoed = MetadataBuilder::new();
    let mut any = compress;
    if compress {
        Compression::Gzip.for_call(&mut echoed);
    }
    for (key, value) in call.request_headers().iter() {
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
        call.set_headers(echoed.build());
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
fn username(call: &Call<'_>) -> Option<String> {
    let auth = call.auth_context()?;
    if !auth.peer_is_authenticated() {
        return None;
    }
    let identity = auth.peer_identity().next()?;
    identity.value_str().ok().map(str::to_owned)
}

/// Without TLS no peer is ever authenticated.
#[cfg(not(tls))]
fn username(_: &Call<'_>) -> Option<String> {
    None
}
