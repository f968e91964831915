//! The client side of the interop cases: each case makes the calls upstream's description
//! lists and checks every assertion it lists, failing with the first that does not hold.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt as _, TryStreamExt as _};
use grpcio::{CallOption, Channel, ChannelBuilder, EnvBuilder, Environment, Metadata, MetadataBuilder, WriteFlags};
use protobuf::{EnumOrUnknown, MessageField};

use super::service::{ECHO_INITIAL_KEY, ECHO_TRAILING_KEY};
use super::{Case, InteropError};
use crate::compression::Compression;
use crate::proto::testing::{
    BoolValue, EchoStatus, Empty, Payload, PayloadType, ResponseParameters, SimpleRequest, StreamingInputCallRequest,
    StreamingOutputCallRequest, StreamingOutputCallResponse, TestServiceClient, UnimplementedServiceClient,
};
use crate::tls::ClientTls;

/// Why the FullDuplexCall half of `custom_metadata` cannot check its trailer.
pub const STREAM_TRAILERS_LIMIT: &str = "grpcio 0.13's streaming-call receivers expose no trailing metadata, \
     so the FullDuplexCall half cannot check x-grpc-test-echo-trailing-bin";

/// Why the server_compressed cases cannot check the compressed flag of a response.
pub const RESPONSE_COMPRESSION_LIMIT: &str = "grpcio 0.13 hands the client each message already inflated, \
     without its compressed flag, so server_compressed_* check the payloads only (tests/compression.rs reads the \
     flag on the wire)";

/// A deadline for every call of a case (upstream's clients set none; ours should not hang).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

const ECHO_INITIAL_VALUE: &str = "test_initial_metadata_value";
const ECHO_TRAILING_VALUE: &[u8] = &[0xab, 0xab, 0xab];
const STATUS_MESSAGE: &str = "test status message";
const SPECIAL_STATUS_MESSAGE: &str = "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n";

/// The soak cases' knobs, upstream's flags and defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SoakConfig {
    pub iterations: u32,
    /// Iterations allowed to fail (an error, or slower than `max_latency`).
    pub max_failures: u32,
    pub max_latency: Duration,
    /// The whole soak must finish within this.
    pub overall_timeout: Duration,
    /// Calls start at least this far apart.
    pub min_time_between_rpcs: Duration,
    pub request_size: usize,
    pub response_size: usize,
}

impl Default for SoakConfig {
    fn default() -> Self {
        SoakConfig {
            iterations: 10,
            max_failures: 0,
            max_latency: Duration::from_millis(1000),
            overall_timeout: Duration::from_secs(10),
            min_time_between_rpcs: Duration::ZERO,
            request_size: 271_828,
            response_size: 314_159,
        }
    }
}

/// A client of `grpc.testing.TestService` on one channel.
pub struct InteropClient {
    env: Arc<Environment>,
    target: String,
    tls: Option<ClientTls>,
    channel: Channel,
    soak: SoakConfig,
}

impl InteropClient {
    /// A channel to `host:port` (plaintext when `tls` is `None`); it connects on first use.
    pub fn connect(host: &str, port: u16, tls: Option<ClientTls>, soak: SoakConfig) -> Result<Self, InteropError> {
        let env = Arc::new(EnvBuilder::new().cq_count(1).name_prefix("interop-client").build());
        let target = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let channel = new_channel(&env, &target, tls.as_ref())?;
        Ok(InteropClient { env, target, tls, channel, soak })
    }

    /// Runs one case; `Ok` when every check of its description held.
    pub async fn run(&self, case: Case) -> Result<(), InteropError> {
        let client = TestServiceClient::new(self.channel.clone());
        let c = Checks { case, client: &client };
        match case {
            Case::EmptyUnary => c.empty_unary().await,
            Case::LargeUnary => c.large_unary().await,
            Case::ClientStreaming => c.client_streaming().await,
            Case::ServerStreaming => c.server_streaming().await,
            Case::PingPong => c.ping_pong().await,
            Case::EmptyStream => c.empty_stream().await,
            Case::TimeoutOnSleepingServer => c.timeout_on_sleeping_server().await,
            Case::CancelAfterBegin => c.cancel_after_begin().await,
            Case::CancelAfterFirstResponse => c.cancel_after_first_response().await,
            Case::StatusCodeAndMessage => c.status_code_and_message().await,
            Case::SpecialStatusMessage => c.special_status_message().await,
            Case::CustomMetadata => c.custom_metadata().await,
            Case::UnimplementedMethod => c.unimplemented_method().await,
            Case::UnimplementedService => {
                let client = UnimplementedServiceClient::new(self.channel.clone());
                let reply = client.unimplemented_call_async_opt(&Empty::new(), opt()).map_err(c.rpc("start"))?.await;
                c.expect_status(reply, "UnimplementedService/UnimplementedCall", grpcio::RpcStatusCode::UNIMPLEMENTED)
            }
            Case::ClientCompressedUnary => c.client_compressed_unary().await,
            Case::ClientCompressedStreaming => c.client_compressed_streaming().await,
            Case::ServerCompressedUnary => c.server_compressed_unary().await,
            Case::ServerCompressedStreaming => c.server_compressed_streaming().await,
            Case::RpcSoak => self.soak(case, false).await,
            Case::ChannelSoak => self.soak(case, true).await,
        }
    }

    /// Large unary calls one after the other: on this channel (`rpc_soak`), or each on a
    /// channel of its own, dropped after the call (`channel_soak`).
    async fn soak(&self, case: Case, fresh_channels: bool) -> Result<(), InteropError> {
        let soak = &self.soak;
        let started = Instant::now();
        let (mut failures, mut done, mut worst) = (0, 0, Duration::ZERO);
        while done < soak.iterations {
            let elapsed = started.elapsed();
            if elapsed >= soak.overall_timeout {
                break;
            }
            let earliest_next = Instant::now() + soak.min_time_between_rpcs;
            let channel = if fresh_channels {
                new_channel(&self.env, &self.target, self.tls.as_ref())?
            } else {
                self.channel.clone()
            };
            let client = TestServiceClient::new(channel);
            let c = Checks { case, client: &client };
            let call_started = Instant::now();
            let outcome = c.unary_of_size(soak.request_size, soak.response_size, soak.overall_timeout - elapsed).await;
            let latency = call_started.elapsed();
            worst = worst.max(latency);
            match outcome {
                Err(e) => {
                    failures += 1;
                    log::warn!("{case} iteration {done}: {e}");
                }
                Ok(()) if latency > soak.max_latency => {
                    failures += 1;
                    log::warn!("{case} iteration {done}: took {latency:?}, over {:?}", soak.max_latency);
                }
                Ok(()) => {}
            }
            done += 1;
            let pause = earliest_next.saturating_duration_since(Instant::now());
            if !pause.is_zero() {
                futures_timer::Delay::new(pause).await;
            }
        }
        log::info!("{case}: {done} of {} iterations, {failures} failed, slowest {worst:?}", soak.iterations);
        if done < soak.iterations {
            return Err(c_check(
                case,
                format!("only {done} of {} iterations ran within {:?}", soak.iterations, soak.overall_timeout),
            ));
        }
        if failures > soak.max_failures {
            return Err(c_check(
                case,
                format!("{failures} of {done} iterations failed; at most {} may", soak.max_failures),
            ));
        }
        Ok(())
    }
}

/// A channel as upstream's clients make one: TLS as `tls` says (a test CA or the system's
/// roots, a name to expect instead of the host dialled), no message size limit.
fn new_channel(env: &Arc<Environment>, target: &str, tls: Option<&ClientTls>) -> Result<Channel, InteropError> {
    let builder = ChannelBuilder::new(env.clone()).max_receive_message_len(-1).max_send_message_len(-1);
    // No compression by default; the compression cases choose it per call.
    let builder = Compression::None.client_args(builder, 0);
    Ok(match tls {
        None => builder.connect(target),
        Some(tls) => tls.apply(builder)?.connect(target),
    })
}

fn opt() -> CallOption {
    CallOption::default().timeout(CALL_TIMEOUT)
}

/// `options` with the call's requests compressed as `compression` says.
fn compressed(options: CallOption, compression: Compression) -> CallOption {
    if compression == Compression::None {
        return options;
    }
    let mut headers = MetadataBuilder::new();
    compression.for_call(&mut headers);
    options.headers(headers.build())
}

fn c_check(case: Case, check: String) -> InteropError {
    InteropError::Check { case, check }
}

fn zeros(len: usize) -> MessageField<Payload> {
    let kind = EnumOrUnknown::new(PayloadType::COMPRESSABLE);
    MessageField::some(Payload { type_: kind, body: vec![0; len], ..Default::default() })
}

fn stream_request(response_sizes: &[i32], payload_len: Option<usize>) -> StreamingOutputCallRequest {
    StreamingOutputCallRequest {
        response_parameters: response_sizes
            .iter()
            .map(|&size| ResponseParameters { size, ..Default::default() })
            .collect(),
        payload: payload_len.map_or_else(MessageField::none, zeros),
        ..Default::default()
    }
}

fn echo_status(message: &str) -> MessageField<EchoStatus> {
    MessageField::some(EchoStatus { code: 2, message: message.to_owned(), ..Default::default() })
}

/// The values of `key` in `metadata`.
fn values<'m>(metadata: &'m Metadata, key: &str) -> Vec<&'m [u8]> {
    metadata.iter().filter(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v).collect()
}

/// The checks of one case, on one client.
struct Checks<'a> {
    case: Case,
    client: &'a TestServiceClient,
}

impl Checks<'_> {
    fn check(&self, holds: bool, what: impl FnOnce() -> String) -> Result<(), InteropError> {
        if holds {
            Ok(())
        } else {
            Err(c_check(self.case, what()))
        }
    }

    /// Maps a grpcio error of `call` to the case's error.
    fn rpc(&self, call: &'static str) -> impl Fn(grpcio::Error) -> InteropError {
        let case = self.case;
        move |e| match e {
            grpcio::Error::RpcFailure(status) => {
                InteropError::Rpc { case, call, code: status.code(), message: status.message().to_owned() }
            }
            other => c_check(case, format!("{call}: {other}")),
        }
    }

    /// `outcome` must be a failure with status `code`.
    fn expect_status<T>(
        &self,
        outcome: grpcio::Result<T>,
        call: &str,
        code: grpcio::RpcStatusCode,
    ) -> Result<(), InteropError> {
        self.expect_status_message(outcome, call, code, None)
    }

    fn expect_status_message<T>(
        &self,
        outcome: grpcio::Result<T>,
        call: &str,
        code: grpcio::RpcStatusCode,
        message: Option<&str>,
    ) -> Result<(), InteropError> {
        match outcome {
            Err(grpcio::Error::RpcFailure(status))
                if status.code() == code && message.is_none_or(|m| status.message() == m) =>
            {
                Ok(())
            }
            Err(grpcio::Error::RpcFailure(status)) => Err(c_check(
                self.case,
                format!(
                    "{call} ended with {:?} {:?}, want {code:?}{}",
                    status.code(),
                    status.message(),
                    message.map(|m| format!(" {m:?}")).unwrap_or_default()
                ),
            )),
            Err(other) => Err(c_check(self.case, format!("{call} failed with {other}, want status {code:?}"))),
            Ok(_) => Err(c_check(self.case, format!("{call} succeeded, want status {code:?}"))),
        }
    }

    fn check_payload(&self, payload: &MessageField<Payload>, want: usize, what: &str) -> Result<(), InteropError> {
        let body = payload.as_ref().map_or(&[][..], |p| &p.body[..]);
        self.check(body.len() == want, || format!("{what}: payload body is {} bytes, want {want}", body.len()))?;
        self.check(body.iter().all(|&b| b == 0), || format!("{what}: payload body is not all zeros"))?;
        let kind = payload.as_ref().map(|p| p.type_.enum_value());
        self.check(matches!(kind, None | Some(Ok(PayloadType::COMPRESSABLE))), || {
            format!("{what}: payload type {kind:?}, want COMPRESSABLE")
        })
    }

    async fn empty_unary(&self) -> Result<(), InteropError> {
        let call = "EmptyCall";
        self.client
            .empty_call_async_opt(&Empty::new(), opt())
            .map_err(self.rpc(call))?
            .await
            .map_err(self.rpc(call))?;
        Ok(())
    }

    async fn large_unary(&self) -> Result<(), InteropError> {
        self.unary_of_size(271_828, 314_159, CALL_TIMEOUT).await
    }

    /// UnaryCall sending `request` zeros and asking for `response` zeros back.
    async fn unary_of_size(&self, request: usize, response: usize, timeout: Duration) -> Result<(), InteropError> {
        let call = "UnaryCall";
        let req = SimpleRequest {
            response_size: i32::try_from(response).unwrap_or(i32::MAX),
            payload: zeros(request),
            ..Default::default()
        };
        let opt = CallOption::default().timeout(timeout);
        let resp =
            self.client.unary_call_async_opt(&req, opt).map_err(self.rpc(call))?.await.map_err(self.rpc(call))?;
        self.check_payload(&resp.payload, response, "UnaryCall response")
    }

    async fn client_streaming(&self) -> Result<(), InteropError> {
        let call = "StreamingInputCall";
        let (mut sink, receiver) = self.client.streaming_input_call_opt(opt()).map_err(self.rpc(call))?;
        for len in [27_182, 8, 1_828, 45_904] {
            let req = StreamingInputCallRequest { payload: zeros(len), ..Default::default() };
            sink.send((req, WriteFlags::default())).await.map_err(self.rpc(call))?;
        }
        self.half_close(&mut sink, call).await?;
        let resp = receiver.await.map_err(self.rpc(call))?;
        self.check(resp.aggregated_payload_size == 74_922, || {
            format!("aggregated_payload_size is {}, want 74922", resp.aggregated_payload_size)
        })
    }

    async fn server_streaming(&self) -> Result<(), InteropError> {
        let call = "StreamingOutputCall";
        let sizes = [31_415, 9, 2_653, 58_979];
        let req = stream_request(&sizes, None);
        let mut responses = self.client.streaming_output_call_opt(&req, opt()).map_err(self.rpc(call))?;
        let mut got = 0;
        while let Some(resp) = responses.try_next().await.map_err(self.rpc(call))? {
            let want = sizes.get(got).copied().unwrap_or(0) as usize;
            self.check(got < sizes.len(), || format!("more than {} responses", sizes.len()))?;
            self.check_payload(&resp.payload, want, &format!("response {got}"))?;
            got += 1;
        }
        self.check(got == sizes.len(), || format!("{got} responses, want {}", sizes.len()))
    }

    async fn ping_pong(&self) -> Result<(), InteropError> {
        let call = "FullDuplexCall";
        let (mut sink, mut responses) = self.client.full_duplex_call_opt(opt()).map_err(self.rpc(call))?;
        for (i, (response, request)) in
            [(31_415, 27_182), (9, 8), (2_653, 1_828), (58_979, 45_904)].into_iter().enumerate()
        {
            let req = stream_request(&[response], Some(request));
            sink.send((req, WriteFlags::default())).await.map_err(self.rpc(call))?;
            let resp = self.next(&mut responses, call).await?;
            let resp =
                resp.ok_or_else(|| c_check(self.case, format!("the stream ended after {i} responses, want 4")))?;
            self.check_payload(&resp.payload, response as usize, &format!("response {i}"))?;
        }
        self.half_close(&mut sink, call).await?;
        let extra = self.next(&mut responses, call).await?;
        self.check(extra.is_none(), || "a fifth response, want exactly 4".to_owned())
    }

    async fn next(
        &self,
        responses: &mut grpcio::ClientDuplexReceiver<StreamingOutputCallResponse>,
        call: &'static str,
    ) -> Result<Option<StreamingOutputCallResponse>, InteropError> {
        responses.try_next().await.map_err(self.rpc(call))
    }

    /// Half-closes the requests. When the call's status arrives before the half-close is
    /// acknowledged (a fast server), grpcio reports the half-close as `RpcFinished`: that is
    /// no failure, and the status itself is read from the responses.
    async fn half_close<T>(
        &self,
        sink: &mut grpcio::StreamingCallSink<T>,
        call: &'static str,
    ) -> Result<(), InteropError> {
        match sink.close().await {
            Ok(()) | Err(grpcio::Error::RpcFinished(_)) => Ok(()),
            Err(e) => Err(self.rpc(call)(e)),
        }
    }

    /// `client_compressed_unary`: a probe that the server checks (an uncompressed request
    /// that says it is compressed must fail), then the compressed request, then a plain one.
    async fn client_compressed_unary(&self) -> Result<(), InteropError> {
        let call = "UnaryCall";
        let request = |expect| SimpleRequest {
            expect_compressed: MessageField::some(BoolValue { value: expect, ..Default::default() }),
            response_size: 314_159,
            payload: zeros(271_828),
            ..Default::default()
        };
        let probe = self.client.unary_call_async_opt(&request(true), opt()).map_err(self.rpc(call))?.await;
        self.expect_status(probe, "the uncompressed probe", grpcio::RpcStatusCode::INVALID_ARGUMENT)?;
        for (expect, compression) in [(true, Compression::Gzip), (false, Compression::None)] {
            let reply = self.client.unary_call_async_opt(&request(expect), compressed(opt(), compression));
            let reply = reply.map_err(self.rpc(call))?.await.map_err(self.rpc(call))?;
            self.check_payload(&reply.payload, 314_159, &format!("the {} request's response", compression.name()))?;
        }
        Ok(())
    }

    /// `client_compressed_streaming`: the probe, then one call of a compressed message and an
    /// uncompressed one (the call compresses; the second message opts out).
    async fn client_compressed_streaming(&self) -> Result<(), InteropError> {
        let call = "StreamingInputCall";
        let request = |len, expect| StreamingInputCallRequest {
            payload: zeros(len),
            expect_compressed: MessageField::some(BoolValue { value: expect, ..Default::default() }),
            ..Default::default()
        };
        let (mut sink, receiver) = self.client.streaming_input_call_opt(opt()).map_err(self.rpc(call))?;
        // The server may end the call at the first message, before the half-close.
        let _ = sink.send((request(27_182, true), WriteFlags::default())).await;
        let _ = self.half_close(&mut sink, call).await;
        self.expect_status(receiver.await, "the uncompressed probe", grpcio::RpcStatusCode::INVALID_ARGUMENT)?;

        let options = compressed(opt(), Compression::Gzip);
        let (mut sink, receiver) = self.client.streaming_input_call_opt(options).map_err(self.rpc(call))?;
        let plain = WriteFlags::default().force_no_compress(true);
        for (message, flags) in [(request(27_182, true), WriteFlags::default()), (request(45_904, false), plain)] {
            match sink.send((message, flags)).await {
                // The server ended the call early: its status is the receiver's to report.
                Ok(()) | Err(grpcio::Error::RpcFinished(_)) => {}
                Err(e) => return Err(self.rpc(call)(e)),
            }
        }
        let _ = self.half_close(&mut sink, call).await;
        let resp = receiver.await.map_err(self.rpc(call))?;
        self.check(resp.aggregated_payload_size == 73_086, || {
            format!("aggregated_payload_size is {}, want 73086", resp.aggregated_payload_size)
        })
    }

    /// `server_compressed_unary`: a reply asked compressed, then one asked plain. Whether it
    /// came compressed is not visible here ([`RESPONSE_COMPRESSION_LIMIT`]); the payloads are.
    async fn server_compressed_unary(&self) -> Result<(), InteropError> {
        let call = "UnaryCall";
        for compress in [true, false] {
            let req = SimpleRequest {
                response_compressed: MessageField::some(BoolValue { value: compress, ..Default::default() }),
                response_size: 314_159,
                payload: zeros(271_828),
                ..Default::default()
            };
            let reply = self.client.unary_call_async_opt(&req, opt()).map_err(self.rpc(call))?;
            let reply = reply.await.map_err(self.rpc(call))?;
            self.check_payload(&reply.payload, 314_159, &format!("the response asked compressed: {compress}"))?;
        }
        Ok(())
    }

    /// `server_compressed_streaming`: two responses, the first asked compressed, the second
    /// plain ([`RESPONSE_COMPRESSION_LIMIT`] as for the unary case).
    async fn server_compressed_streaming(&self) -> Result<(), InteropError> {
        let call = "StreamingOutputCall";
        let sizes = [(31_415, true), (92_653, false)];
        let req = StreamingOutputCallRequest {
            response_parameters: sizes
                .iter()
                .map(|&(size, compressed)| ResponseParameters {
                    size,
                    compressed: MessageField::some(BoolValue { value: compressed, ..Default::default() }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let mut responses = self.client.streaming_output_call_opt(&req, opt()).map_err(self.rpc(call))?;
        let mut got = 0;
        while let Some(resp) = responses.try_next().await.map_err(self.rpc(call))? {
            self.check(got < sizes.len(), || format!("more than {} responses", sizes.len()))?;
            self.check_payload(&resp.payload, sizes[got].0 as usize, &format!("response {got}"))?;
            got += 1;
        }
        self.check(got == sizes.len(), || format!("{got} responses, want {}", sizes.len()))
    }

    async fn empty_stream(&self) -> Result<(), InteropError> {
        let call = "FullDuplexCall";
        let (mut sink, mut responses) = self.client.full_duplex_call_opt(opt()).map_err(self.rpc(call))?;
        self.half_close(&mut sink, call).await?;
        let first = self.next(&mut responses, call).await?;
        self.check(first.is_none(), || "got a response, want none".to_owned())
    }

    async fn timeout_on_sleeping_server(&self) -> Result<(), InteropError> {
        let call = "FullDuplexCall";
        let opt = CallOption::default().timeout(Duration::from_millis(1));
        let (mut sink, mut responses) = self.client.full_duplex_call_opt(opt).map_err(self.rpc(call))?;
        // The deadline may pass before the request is out; then sending fails, as it may.
        let _ = sink.send((stream_request(&[], Some(27_182)), WriteFlags::default())).await;
        let outcome = responses.try_next().await;
        self.expect_status(outcome, call, grpcio::RpcStatusCode::DEADLINE_EXCEEDED)
    }

    async fn cancel_after_begin(&self) -> Result<(), InteropError> {
        let call = "StreamingInputCall";
        let (mut sink, receiver) = self.client.streaming_input_call_opt(opt()).map_err(self.rpc(call))?;
        sink.cancel();
        self.expect_status(receiver.await, call, grpcio::RpcStatusCode::CANCELLED)
    }

    async fn cancel_after_first_response(&self) -> Result<(), InteropError> {
        let call = "FullDuplexCall";
        let (mut sink, mut responses) = self.client.full_duplex_call_opt(opt()).map_err(self.rpc(call))?;
        sink.send((stream_request(&[31_415], Some(27_182)), WriteFlags::default())).await.map_err(self.rpc(call))?;
        let first = self.next(&mut responses, call).await?;
        let first = first.ok_or_else(|| c_check(self.case, "the stream ended before the first response".to_owned()))?;
        self.check_payload(&first.payload, 31_415, "response 0")?;
        responses.cancel();
        self.expect_status(responses.try_next().await, call, grpcio::RpcStatusCode::CANCELLED)
    }

    async fn status_code_and_message(&self) -> Result<(), InteropError> {
        let unknown = grpcio::RpcStatusCode::UNKNOWN;
        let req = SimpleRequest { response_status: echo_status(STATUS_MESSAGE), ..Default::default() };
        let outcome = self.client.unary_call_async_opt(&req, opt()).map_err(self.rpc("UnaryCall"))?.await;
        self.expect_status_message(outcome, "UnaryCall", unknown, Some(STATUS_MESSAGE))?;

        let call = "FullDuplexCall";
        let (mut sink, mut responses) = self.client.full_duplex_call_opt(opt()).map_err(self.rpc(call))?;
        let req = StreamingOutputCallRequest { response_status: echo_status(STATUS_MESSAGE), ..Default::default() };
        // The server ends the call as soon as it reads the request, so sending or half-closing
        // may find the call over already; the status it ended with is what counts.
        let _ = sink.send((req, WriteFlags::default())).await;
        let _ = sink.close().await;
        self.expect_status_message(responses.try_next().await, call, unknown, Some(STATUS_MESSAGE))
    }

    async fn special_status_message(&self) -> Result<(), InteropError> {
        let req = SimpleRequest { response_status: echo_status(SPECIAL_STATUS_MESSAGE), ..Default::default() };
        let outcome = self.client.unary_call_async_opt(&req, opt()).map_err(self.rpc("UnaryCall"))?.await;
        let unknown = grpcio::RpcStatusCode::UNKNOWN;
        self.expect_status_message(outcome, "UnaryCall", unknown, Some(SPECIAL_STATUS_MESSAGE))
    }

    async fn custom_metadata(&self) -> Result<(), InteropError> {
        let mut echo = MetadataBuilder::new();
        echo.add_str(ECHO_INITIAL_KEY, ECHO_INITIAL_VALUE).expect("a valid ASCII entry");
        echo.add_bytes(ECHO_TRAILING_KEY, ECHO_TRAILING_VALUE).expect("a valid binary entry");
        let echo = echo.build();

        let call = "UnaryCall";
        let req = SimpleRequest { response_size: 314_159, payload: zeros(271_828), ..Default::default() };
        let mut receiver =
            self.client.unary_call_async_opt(&req, opt().headers(echo.clone())).map_err(self.rpc(call))?;
        let initial = receiver.headers().await.map_err(self.rpc(call))?.clone();
        let resp = receiver.message().await.map_err(self.rpc(call))?;
        self.check_payload(&resp.payload, 314_159, "UnaryCall response")?;
        self.check_initial(&initial, call)?;
        let trailers = receiver.trailers().await.map_err(self.rpc(call))?;
        let trailing = values(trailers, ECHO_TRAILING_KEY);
        self.check(trailing == [ECHO_TRAILING_VALUE], || {
            format!("{call} trailing metadata {ECHO_TRAILING_KEY}: got {trailing:02x?}, want [[ab, ab, ab]]")
        })?;

        let call = "FullDuplexCall";
        let (mut sink, mut responses) =
            self.client.full_duplex_call_opt(opt().headers(echo)).map_err(self.rpc(call))?;
        let req = stream_request(&[314_159], Some(271_828));
        sink.send((req, WriteFlags::default())).await.map_err(self.rpc("FullDuplexCall send"))?;
        let initial = responses.headers().await.map_err(self.rpc("FullDuplexCall headers"))?.clone();
        let first = self.next(&mut responses, "FullDuplexCall receive").await?;
        let first = first.ok_or_else(|| c_check(self.case, format!("{call} ended without a response")))?;
        self.check_payload(&first.payload, 314_159, "FullDuplexCall response")?;
        self.half_close(&mut sink, "FullDuplexCall half-close").await?;
        let extra = self.next(&mut responses, "FullDuplexCall end").await?;
        self.check(extra.is_none(), || format!("{call}: a second response, want one"))?;
        self.check_initial(&initial, call)?;
        Err(InteropError::EngineLimit { case: self.case, limit: STREAM_TRAILERS_LIMIT })
    }

    fn check_initial(&self, initial: &Metadata, call: &str) -> Result<(), InteropError> {
        let got = values(initial, ECHO_INITIAL_KEY);
        self.check(got == [ECHO_INITIAL_VALUE.as_bytes()], || {
            let got: Vec<_> = got.iter().map(|v| String::from_utf8_lossy(v)).collect();
            format!("{call} initial metadata {ECHO_INITIAL_KEY}: got {got:?}, want [{ECHO_INITIAL_VALUE:?}]")
        })
    }

    async fn unimplemented_method(&self) -> Result<(), InteropError> {
        let call = "TestService/UnimplementedCall";
        let outcome = self.client.unimplemented_call_async_opt(&Empty::new(), opt()).map_err(self.rpc(call))?.await;
        self.expect_status(outcome, call, grpcio::RpcStatusCode::UNIMPLEMENTED)
    }
}
