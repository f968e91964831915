//! The Rust client for the tutorial's four calls: async, on any executor.
//!
//! grpcio's completion-queue thread (one for all the clients of a program, started with the
//! first and ended with the last; see [`GreeterBuilder::environment`]) does the I/O and wakes
//! whichever task awaits a result; nothing here blocks, so the futures and streams
//! below run on tokio, smol, `futures::executor` or anything else that polls futures. Each one
//! owns its call: it is `Send + 'static` (spawnable) whenever its inputs are, and dropping it
//! before it finishes cancels the call on the server at once.
//!
//! [`blocking::Greeter`] is the same client for code that is not async.
//!
//! ```no_run
//! use futures::TryStreamExt as _;
//! use greeter::Greeter;
//! use std::time::Duration;
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> Result<(), greeter::ClientError> {
//!     let greeter = Greeter::new("localhost:50051", Duration::from_secs(10)); // cheap to clone
//!     println!("{}", greeter.say_hello("tokio").await?);
//!
//!     // Five subscriptions side by side on one thread: ~2.5 s in all, not 5 × 2.5 s.
//!     let tasks: Vec<_> = (0..5)
//!         .map(|_| greeter.stock_prices("TSMC").map(|ticks| tokio::spawn(ticks.try_collect::<Vec<_>>())))
//!         .collect::<Result<_, _>>()?;
//!     for task in tasks {
//!         println!("{} ticks", task.await.expect("task")?.len());
//!     }
//!     Ok(())
//! }
//! ```
//!
//! and on smol:
//!
//! ```no_run
//! # use greeter::Greeter;
//! # use std::time::Duration;
//! smol::block_on(async {
//!     let greeter = Greeter::new("localhost:50051", Duration::from_secs(10));
//!     let hello = smol::spawn(greeter.say_hello("smol"));
//!     let metrics = greeter.record_metrics(futures::stream::iter([25.5, 26.8, 27.1]));
//!     println!("{} / {:?}", hello.await?, metrics.await?);
//!     Ok::<_, greeter::ClientError>(())
//! })
//! # .unwrap();
//! ```

mod balancing;
pub mod blocking;
mod env;
mod keepalive;
mod token;
mod trace;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt as _, SinkExt as _, Stream, StreamExt as _, TryStreamExt as _};
use grpcio::{CallOption, Channel, ChannelBuilder, ClientDuplexReceiver, Environment, WriteFlags};
use opentelemetry_sdk::trace::SdkTracer;

use crate::compression::Compression;
use crate::error::ClientError;
use crate::proto::{ChatMessage, GreeterClient, HelloRequest, Metric, MetricSummary, StockReply, StockRequest};
use crate::tls::ClientTls;
use token::{Fixed, Tokens};
use trace::{CallSpan, Headers};

pub use balancing::LoadBalancing;
pub use keepalive::Keepalive;
pub use token::{Token, TokenFile, TokenSource};

/// A client of one Greeter server (or of the replicas its target names). Cheap to clone:
/// clones share the channel (one HTTP/2 connection per server).
#[derive(Clone)]
pub struct Greeter {
    client: GreeterClient,
    /// The same channel `client` holds: the generated client does not hand it out, and
    /// [`Greeter::channel`] (connectivity, readiness) needs it.
    channel: Channel,
    target: Arc<str>,
    timeout: Duration,
    /// Where this client's spans go; `None`: to the global tracer provider.
    tracer: Option<SdkTracer>,
    /// The bearer tokens sent with every call, if any.
    tokens: Option<Tokens>,
}

/// A client with more than the defaults: a load-balancing policy, TLS, a tracer, compression,
/// a completion queue of the program's own.
#[derive(Clone)]
pub struct GreeterBuilder {
    target: String,
    timeout: Duration,
    environment: Option<Arc<Environment>>,
    tokens: Option<Tokens>,
    lb: LoadBalancing,
    retry_unavailable: bool,
    tls: Option<ClientTls>,
    tracer: Option<SdkTracer>,
    min_resolution_interval: Option<Duration>,
    compression: Compression,
    keepalive: Keepalive,
}

impl GreeterBuilder {
    /// How calls are spread over the addresses `target` names (see [`LoadBalancing`]).
    pub fn load_balancing(mut self, lb: LoadBalancing) -> Self {
        self.lb = lb;
        self
    }

    /// Under [`LoadBalancing::RoundRobin`], whether SayHello (which has no side effects) is
    /// retried on UNAVAILABLE, up to 5 attempts in all (the default: yes). C-core's
    /// transparent retry of a call the server never saw happens either way.
    pub fn retry_unavailable(mut self, retry: bool) -> Self {
        self.retry_unavailable = retry;
        self
    }

    /// Connect over TLS (needs the `tls` feature).
    pub fn tls(mut self, tls: ClientTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Send this client's spans to `tracer` (e.g. `ClientTracing::tracer()`, or a tracer of
    /// the program's own OpenTelemetry set-up) instead of the global tracer provider.
    pub fn tracer(mut self, tracer: SdkTracer) -> Self {
        self.tracer = Some(tracer);
        self
    }

    /// The least time between two resolutions of a `dns:` target's name (C-core's default:
    /// 30 s). A channel re-resolves only when a connection closes (a replica's GOAWAY, for
    /// instance its `max_connection_age`), at most this often; see docs/operations.md,
    /// "Replicas behind a DNS name".
    pub fn min_resolution_interval(mut self, interval: Duration) -> Self {
        self.min_resolution_interval = Some(interval);
        self
    }

    /// Compress every request message of 1 KiB or more (see [`Compression`]: the server must
    /// be able to inflate it, or it answers UNIMPLEMENTED). Replies come compressed when the
    /// server compresses them, whatever this says.
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Send `token` with every call (`authorization: Bearer …`), for servers that check
    /// tokens (docs/security.md). Over TLS: a token sent in plaintext is anyone's.
    pub fn bearer_token(self, token: impl Into<String>) -> Self {
        self.token_source(Fixed(Token::new(token)))
    }

    /// Send the tokens `source` gives, asking it again as each nears its expiry (e.g.
    /// [`TokenFile`] for a file the platform rotates).
    pub fn token_source(mut self, source: impl TokenSource + 'static) -> Self {
        self.tokens = Some(Tokens::new(Arc::new(source)));
        self
    }

    /// Run this client's I/O on `environment`'s completion queues instead of the one the
    /// program's clients share (for a program that wants several queues, or a queue of its
    /// own per client).
    pub fn environment(mut self, environment: Arc<Environment>) -> Self {
        self.environment = Some(environment);
        self
    }

    /// How a connection to a server that stopped answering is noticed (see [`Keepalive`]; the
    /// default gives up on it within 80 s of quiet).
    pub fn keepalive(mut self, keepalive: Keepalive) -> Self {
        self.keepalive = keepalive;
        self
    }

    /// The client. Nothing is dialled until the first call; an error means the settings
    /// cannot work (TLS asked of a build without it).
    pub fn build(self) -> Result<Greeter, ClientError> {
        let environment = self.environment.unwrap_or_else(env::shared);
        let builder = self.keepalive.apply(channel_builder(environment));
        let builder = self.compression.client_args(builder, crate::compression::DEFAULT_MIN_LEN);
        let mut builder = balancing::apply(builder, self.lb, self.retry_unavailable);
        if let Some(interval) = self.min_resolution_interval {
            let ms = i32::try_from(interval.as_millis()).unwrap_or(i32::MAX);
            builder = builder.raw_cfg_int(c"grpc.dns_min_time_between_resolutions_ms".into(), ms);
        }
        if let Some(tls) = &self.tls {
            builder = tls.apply(builder)?;
        }
        let mut greeter = Greeter::with_channel(builder, &self.target, self.timeout);
        greeter.tracer = self.tracer;
        greeter.tokens = self.tokens;
        Ok(greeter)
    }
}

impl std::fmt::Debug for GreeterBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GreeterBuilder")
            .field("target", &self.target)
            .field("timeout", &self.timeout)
            .field("load_balancing", &self.lb)
            .field("tls", &self.tls)
            .field("compression", &self.compression)
            .field("keepalive", &self.keepalive)
            .finish_non_exhaustive()
    }
}

impl Greeter {
    /// A client of `target`: `host:port`, or any gRPC target such as
    /// `ipv4:127.0.0.1:50081,127.0.0.1:50082` or `dns:///greeter.example:50051`. Nothing is
    /// dialled until the first call; every call must finish within `timeout`.
    ///
    /// `xds:///NAME` takes the servers from a service mesh's control plane (Istio, Traffic
    /// Director, any xDS server), which C-core finds in the bootstrap that `GRPC_XDS_BOOTSTRAP`
    /// (a file) or `GRPC_XDS_BOOTSTRAP_CONFIG` (its JSON) gives the process: set one before the
    /// first `xds:` channel, which reads it for the whole process. See docs/operations.md,
    /// "Behind a service mesh (xDS)".
    pub fn new(target: &str, timeout: Duration) -> Self {
        Self::with_channel(channel_builder(env::shared()), target, timeout)
    }

    /// For a client with TLS, a load-balancing policy, compression or a tracer.
    pub fn builder(target: &str, timeout: Duration) -> GreeterBuilder {
        GreeterBuilder {
            target: target.to_owned(),
            timeout,
            environment: None,
            tokens: None,
            lb: LoadBalancing::default(),
            retry_unavailable: true,
            tls: None,
            tracer: None,
            min_resolution_interval: None,
            compression: Compression::None,
            keepalive: Keepalive::default(),
        }
    }

    fn with_channel(builder: ChannelBuilder, target: &str, timeout: Duration) -> Self {
        let channel = builder.connect(target);
        Greeter {
            client: GreeterClient::new(channel.clone()),
            channel,
            target: target.into(),
            timeout,
            tracer: None,
            tokens: None,
        }
    }

    /// The connection, for other services the server offers on it (health, reflection).
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// The generated client, for calls this wrapper does not cover.
    pub fn raw(&self) -> &GreeterClient {
        &self.client
    }

    /// The target this client calls.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// How long each call may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A call's options: its timeout, its token, its span started and its trace context.
    fn options(&self, method: &'static str) -> Result<(CallSpan, CallOption), ClientError> {
        let mut headers = Headers::default();
        if let Some(tokens) = &self.tokens {
            let token_error = |reason| ClientError::Token { target: self.target.to_string(), reason };
            let header = tokens.header().map_err(token_error)?;
            headers.add("authorization", &header).map_err(|e| token_error(e.to_string()))?;
        }
        let span = CallSpan::start(self.tracer.as_ref(), method, &self.target, &mut headers);
        Ok((span, headers.apply(CallOption::default().timeout(self.timeout))))
    }

    /// Turns grpcio errors of `call` into `ClientError`s; owns what it needs, so that the
    /// futures and streams it goes into stay `'static`.
    fn error(&self, call: &'static str) -> impl Fn(grpcio::Error) -> ClientError + Clone + Send + Sync + 'static {
        let target = self.target.clone();
        let channel = self.channel.clone();
        move |e| ClientError::from_grpc(call, &target, e).on_channel(channel.check_connectivity_state(false))
    }

    /// Level 1: the server's greeting for `name`.
    ///
    /// The call starts when this is called; the returned future yields its answer.
    pub fn say_hello(&self, name: &str) -> impl Future<Output = Result<String, ClientError>> + Send + 'static {
        let err = self.error("SayHello");
        let req = HelloRequest { name: name.to_owned(), ..Default::default() };
        let started =
            self.options("SayHello").map(|(span, options)| (span, self.client.say_hello_async_opt(&req, options)));
        let channel = self.client.clone();
        async move {
            let _channel = channel;
            let (span, call) = started?;
            let reply = async { call.map_err(&err)?.await.map_err(&err) }.await;
            span.end(code_of(&reply));
            Ok(reply?.message)
        }
    }

    /// Level 2: subscribes to `symbol`; the stream yields each price as the server sends it
    /// and ends when the server closes the subscription.
    pub fn stock_prices(
        &self,
        symbol: &str,
    ) -> Result<impl Stream<Item = Result<StockReply, ClientError>> + Send + 'static, ClientError> {
        let err = self.error("GetStockPrice");
        let req = StockRequest { symbol: symbol.to_owned(), ..Default::default() };
        let (span, options) = self.options("GetStockPrice")?;
        let ticks = self.client.get_stock_price_opt(&req, options).map_err(&err)?;
        Ok(OnChannel::new(ticks.map_err(err), &self.client, span))
    }

    /// Level 3: streams `values` to the server as they come, and returns its count and
    /// average once `values` ends.
    pub fn record_metrics<S>(
        &self,
        values: S,
    ) -> impl Future<Output = Result<MetricSummary, ClientError>> + Send + use<S>
    where
        S: Stream<Item = f64> + Send,
    {
        let err = self.error("RecordMetrics");
        let started =
            self.options("RecordMetrics").map(|(span, options)| (span, self.client.record_metrics_opt(options)));
        let channel = self.client.clone();
        async move {
            let _channel = channel;
            let (span, call) = started?;
            let summary = async {
                let (mut sink, summary) = call.map_err(&err)?;
                // Values that are ready go out in one write; when `values` has to wait, what
                // is buffered is flushed (see `send_all_batched`).
                let values = values.map(|value| Metric { value, ..Default::default() });
                // A failed send means the server already answered (e.g. rejected a value):
                // its answer says why.
                if send_all_batched(&mut sink, values).await.is_ok() {
                    let _ = sink.close().await;
                }
                summary.await.map_err(&err)
            }
            .await;
            span.end(code_of(&summary));
            summary
        }
    }

    /// Level 4: a full-duplex chat as `user`. Each of `messages` is sent as soon as it is
    /// produced; the returned stream yields the server's replies meanwhile.
    ///
    /// The returned stream also drives the sending (so that `messages` is polled by the
    /// caller's own task and may use its runtime's timers or channels): keep polling it until
    /// it ends. It ends after the server has answered the last message.
    pub fn chat<S>(
        &self,
        user: &str,
        messages: S,
    ) -> Result<impl Stream<Item = Result<ChatMessage, ClientError>> + Send + 'static, ClientError>
    where
        S: Stream<Item = String> + Send + 'static,
    {
        let err = self.error("Chat");
        let (span, options) = self.options("Chat")?;
        let (mut sink, replies) = self.client.chat_opt(options).map_err(&err)?;
        let user = user.to_owned();
        let messages = messages.map(move |message| ChatMessage { user: user.clone(), message, ..Default::default() });
        let send = async move {
            // The receive side carries the call's status; a failed send next to it only
            // means the server finished first.
            if send_all_batched(&mut sink, messages).await.is_ok() {
                let _ = sink.close().await;
            }
        };
        let replies = ChatReplies { send: Some(send.boxed()), replies };
        Ok(OnChannel::new(replies.map_err(err), &self.client, span))
    }
}

/// A call's stream that also holds its channel and its span. grpcio destroys a channel
/// (failing its calls with "Channel Destroyed") and stops its completion-queue thread when the
/// last handle to it goes, so a stream that outlives the `Greeter` it came from must keep one.
/// The span ends with the stream: OK at its end, the status of its error, CANCELLED when the
/// stream is dropped before either.
struct OnChannel<S> {
    stream: S,
    span: Option<CallSpan>,
    _channel: GreeterClient,
}

impl<S> OnChannel<S> {
    fn new(stream: S, client: &GreeterClient, span: CallSpan) -> Self {
        OnChannel { stream, span: Some(span), _channel: client.clone() }
    }
}

impl<S, T> Stream for OnChannel<S>
where
    S: Stream<Item = Result<T, ClientError>> + Unpin,
{
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let next = self.stream.poll_next_unpin(cx);
        match &next {
            Poll::Ready(None) => self.span.take().map_or((), |span| span.end(Some(grpcio::RpcStatusCode::OK))),
            Poll::Ready(Some(Err(e))) => self.span.take().map_or((), |span| span.end(e.code())),
            _ => {}
        }
        next
    }
}

/// The status a call's result stands for, for its span.
fn code_of<T>(result: &Result<T, ClientError>) -> Option<grpcio::RpcStatusCode> {
    match result {
        Ok(_) => Some(grpcio::RpcStatusCode::OK),
        Err(e) => e.code(),
    }
}

/// Sends every item, letting C-core batch the ones that are ready together and flushing
/// whenever the producer has to wait (grpcio's `enhance_batch`), so a slow producer's
/// messages go out at once and a fast one's share writes.
async fn send_all_batched<T, S>(sink: &mut grpcio::StreamingCallSink<T>, items: S) -> Result<(), grpcio::Error>
where
    S: Stream<Item = T>,
{
    sink.enhance_batch(true);
    let mut items = std::pin::pin!(items.map(|item| Ok((item, WriteFlags::default()))));
    sink.send_all(&mut items).await
}

/// The reply stream of a chat, which also polls its sending half, so that both directions
/// progress in whichever task reads the replies.
struct ChatReplies {
    send: Option<BoxFuture<'static, ()>>,
    replies: ClientDuplexReceiver<ChatMessage>,
}

impl Stream for ChatReplies {
    type Item = Result<ChatMessage, grpcio::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(send) = &mut self.send {
            if send.as_mut().poll(cx).is_ready() {
                self.send = None;
            }
        }
        self.replies.poll_next_unpin(cx)
    }
}

/// Our own message limits are the server's business: the client accepts any size. Keepalive
/// pings are on (`Keepalive::default()`).
fn channel_builder(env: Arc<Environment>) -> ChannelBuilder {
    // Its own connection: C-core otherwise shares one TCP connection among all channels to
    // the same address with the same settings, so two `Greeter`s would silently be one.
    Keepalive::default()
        .apply(ChannelBuilder::new(env))
        .max_receive_message_len(-1)
        .max_send_message_len(-1)
        .raw_cfg_int(c"grpc.use_local_subchannel_pool".into(), 1)
}
