//! The async client and the async shutdown on every kind of executor: one conformance suite
//! (`checks`), generated for tokio multi-thread, tokio current-thread, smol, and futures'
//! `ThreadPool` and `LocalPool` (`conformance_suite!`). A check that blocked its executor
//! would deadlock on the single-threaded ones; each check's calls have deadlines, so that
//! shows up as a failure, not a hang.
//!
//! Plus the concurrency proof: 20 subscriptions on one current-thread tokio runtime run side
//! by side, not one after another.

mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use common::TestServer;

/// Runs a check to completion on one kind of executor, as a spawned task where the executor
/// has a spawn (so `Send + 'static` is proven too).
mod executors {
    use super::*;

    pub fn tokio_multi_thread(check: impl Future<Output = ()> + Send + 'static) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        if let Err(e) = rt.block_on(async { tokio::spawn(check).await }) {
            std::panic::resume_unwind(e.into_panic());
        }
    }

    pub fn tokio_current_thread(check: impl Future<Output = ()> + Send + 'static) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        if let Err(e) = rt.block_on(async { tokio::spawn(check).await }) {
            std::panic::resume_unwind(e.into_panic());
        }
    }

    pub fn smol(check: impl Future<Output = ()> + Send + 'static) {
        let ex = ::smol::Executor::new();
        ::smol::block_on(ex.run(ex.spawn(check)));
    }

    pub fn futures_thread_pool(check: impl Future<Output = ()> + Send + 'static) {
        use futures::task::SpawnExt as _;
        let pool = futures::executor::ThreadPool::builder().pool_size(2).create().unwrap();
        // The handle re-raises a panic of the check.
        futures::executor::block_on(pool.spawn_with_handle(check).unwrap());
    }

    pub fn futures_local_pool(check: impl Future<Output = ()> + Send + 'static) {
        futures::executor::LocalPool::new().run_until(check);
    }
}

/// What every executor must get right. Each check starts its own server on a free port and
/// ends with the async graceful shutdown.
mod checks {
    use super::*;
    use futures::channel::mpsc;
    use futures::{stream, StreamExt as _, TryStreamExt as _};
    use futures_timer::Delay;
    use greeter::Greeter;
    use grpcio::RpcStatusCode;

    const FAST: Duration = Duration::from_millis(10);

    /// The async shutdown, with a deadline: a shutdown that hangs fails the check.
    async fn stop(server: TestServer) {
        let shutdown = std::pin::pin!(server.shutdown_async());
        match futures::future::select(shutdown, Delay::new(Duration::from_secs(60))).await {
            futures::future::Either::Left((outcome, _)) => assert!(!outcome.cancelled_calls, "{outcome:?}"),
            futures::future::Either::Right(_) => panic!("the async shutdown did not finish within 60 s"),
        }
    }

    pub async fn say_hello() {
        let server = TestServer::with_interval(FAST);
        let greeter = server.async_client();
        let (a, b) = futures::join!(greeter.say_hello("tokio"), greeter.say_hello("smol"));
        assert_eq!(a.unwrap(), "Hello tokio");
        assert_eq!(b.unwrap(), "Hello smol");
        stop(server).await;
    }

    pub async fn stock_prices() {
        let server = TestServer::with_interval(FAST);
        let ticks: Vec<_> = server.async_client().stock_prices("TSMC").unwrap().try_collect().await.unwrap();
        assert_eq!(ticks.len(), 5);
        for tick in &ticks {
            assert_eq!(tick.symbol, "TSMC");
            assert!((500.0..=600.0).contains(&tick.price), "{tick:?}");
        }
        stop(server).await;
    }

    /// The values trickle in (a timer between each) and the summary is still exact.
    pub async fn record_metrics_from_a_slow_stream() {
        let server = TestServer::with_interval(FAST);
        let values = stream::iter([25.5, 26.8, 27.1]).then(|v| async move {
            Delay::new(Duration::from_millis(20)).await;
            v
        });
        let summary = server.async_client().record_metrics(values).await.unwrap();
        assert_eq!(summary.count, 3);
        assert!((summary.average - 26.466_666).abs() < 1e-5, "{summary:?}");
        stop(server).await;
    }

    /// Full duplex: the second message is produced only after the first one's reply has
    /// been read. A client that sent only after collecting all messages would never get there.
    pub async fn chat_is_full_duplex() {
        let server = TestServer::with_interval(FAST);
        let (tx, messages) = mpsc::unbounded();
        let mut replies = server.async_client().chat("Rust", messages).unwrap();
        tx.unbounded_send("Hello".to_owned()).unwrap();
        let first = replies.next().await.expect("a reply to Hello").unwrap();
        assert_eq!((first.user.as_str(), first.message.as_str()), ("Server", "Server received: Hello"));
        tx.unbounded_send("Bye".to_owned()).unwrap();
        drop(tx); // the half-close
        let second = replies.next().await.expect("a reply to Bye").unwrap();
        assert_eq!(second.message, "Server received: Bye");
        assert!(replies.next().await.is_none(), "the chat ends after our half-close");
        stop(server).await;
    }

    /// 5 ticks 500 ms apart cannot fit in a 300 ms deadline.
    pub async fn deadline_exceeded() {
        let server = TestServer::with_interval(Duration::from_millis(500));
        let greeter = Greeter::new(&server.addr, Duration::from_millis(300));
        let result: Result<Vec<_>, _> = greeter.stock_prices("TSMC").unwrap().try_collect().await;
        let err = result.unwrap_err();
        assert_eq!(err.code(), Some(RpcStatusCode::DEADLINE_EXCEEDED), "{err}");
        stop(server).await;
    }

    /// Dropping a subscription after its first tick cancels it on the server.
    pub async fn cancel_by_drop() {
        let server = TestServer::with_metrics(Duration::from_millis(200));
        let mut ticks = server.async_client().stock_prices("TSMC").unwrap();
        ticks.next().await.expect("a first tick").unwrap();
        drop(ticks);
        let waited = Instant::now();
        while server.scrape().subscriptions_ended("Canceled") == 0.0 && waited.elapsed() < Duration::from_secs(10) {
            Delay::new(Duration::from_millis(10)).await;
        }
        let m = server.scrape();
        let ended = (m.subscriptions_ended("Canceled"), m.subscriptions_ended("OK"));
        assert_eq!(ended, (1.0, 0.0), "the server saw the cancel");
        stop(server).await;
    }

    /// A status from the handler arrives as `ClientError::Status` with its code and text.
    pub async fn server_error() {
        let server = TestServer::with_interval(FAST);
        let err = server.async_client().record_metrics(stream::iter([1.0, f64::NAN])).await.unwrap_err();
        assert_eq!(err.code(), Some(RpcStatusCode::INVALID_ARGUMENT));
        assert!(err.to_string().contains("metric #1"), "{err}");
        // The server serves on.
        assert_eq!(server.async_client().say_hello("after").await.unwrap(), "Hello after");
        stop(server).await;
    }

    /// The async shutdown waits for a subscription in flight, which ends OK.
    pub async fn shutdown_waits_for_calls_in_flight() {
        let mut config = common::local();
        config.greeter.stock_interval = Duration::from_millis(50);
        let server = TestServer::start(config);
        let mut ticks = server.async_client().stock_prices("TSMC").unwrap();
        ticks.next().await.expect("a first tick").unwrap();
        let (outcome, rest) = futures::join!(server.shutdown_async(), ticks.try_collect::<Vec<_>>());
        assert!(!outcome.cancelled_calls, "{outcome:?}");
        assert_eq!(rest.unwrap().len(), 4, "the other four ticks");
    }
}

macro_rules! conformance_suite {
    ($($executor:ident),* $(,)?) => {$(
        mod $executor {
            use super::{checks, executors::$executor as run};
            #[test] fn say_hello() { run(checks::say_hello()) }
            #[test] fn stock_prices() { run(checks::stock_prices()) }
            #[test] fn record_metrics_from_a_slow_stream() { run(checks::record_metrics_from_a_slow_stream()) }
            #[test] fn chat_is_full_duplex() { run(checks::chat_is_full_duplex()) }
            #[test] fn deadline_exceeded() { run(checks::deadline_exceeded()) }
            #[test] fn cancel_by_drop() { run(checks::cancel_by_drop()) }
            #[test] fn server_error() { run(checks::server_error()) }
            #[test] fn shutdown_waits_for_calls_in_flight() { run(checks::shutdown_waits_for_calls_in_flight()) }
        }
    )*};
}

conformance_suite!(tokio_multi_thread, tokio_current_thread, smol, futures_thread_pool, futures_local_pool);

/// The issue that started the async client: on one current-thread tokio runtime, 20 spawned
/// subscriptions at the tutorial's pace (5 ticks, 500 ms apart) overlap. Run one after
/// another they would take 20 × ~2 s; side by side, about one subscription's time.
#[test]
fn twenty_subscriptions_share_one_current_thread_runtime() {
    let server = TestServer::start(common::local());
    let greeter = server.async_client();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (one, twenty) = rt.block_on(async {
        let start = Instant::now();
        let ticks = futures::StreamExt::collect::<Vec<_>>(greeter.stock_prices("TSMC").unwrap()).await;
        assert_eq!(ticks.len(), 5);
        let one = start.elapsed();

        let start = Instant::now();
        let tasks: Vec<_> = (0..20)
            .map(|_| tokio::spawn(futures::TryStreamExt::try_collect::<Vec<_>>(greeter.stock_prices("TSMC").unwrap())))
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap().len(), 5);
        }
        (one, start.elapsed())
    });
    eprintln!("one subscription: {one:.2?}; twenty at once on one thread: {twenty:.2?}");
    // Sequential would be ≥ 40 s; the bound leaves room for a loaded machine.
    assert!(twenty < Duration::from_secs(5), "twenty subscriptions took {twenty:?} (one took {one:?})");
    server.shutdown();
}

/// `Greeter` is shared across tasks and threads by cloning (`Send + Sync`); the spawns above
/// prove its futures and streams are `Send + 'static`. This fails to compile otherwise.
#[test]
fn the_async_client_is_clone_send_and_sync() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<greeter::Greeter>();
    shareable::<greeter::blocking::Greeter>();
}

/// When a task beside the calls beat, on a current-thread runtime: `tokio::time::interval`
/// in `Delay` mode, so beats the executor missed are not made up at once afterwards.
struct Heartbeat {
    beats: std::sync::Arc<std::sync::Mutex<Vec<Instant>>>,
}

impl Heartbeat {
    /// Spawns the beating task (every 5 ms) on the current runtime.
    fn start() -> Self {
        let beats = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let beating = beats.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(5));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                beating.lock().unwrap().push(Instant::now());
            }
        });
        Heartbeat { beats }
    }

    /// Awaits `call`, which must take at least 300 ms, and asserts that the executor's other
    /// task beat all along: no gap between two beats (or between the call's start or end and
    /// the nearest beat) as long as half the call. A call that blocked the executor for most
    /// of its time would leave one gap as long as itself.
    async fn beats_through<T>(&self, what: &str, call: impl std::future::Future<Output = T>) -> T {
        let start = Instant::now();
        let result = call.await;
        let end = Instant::now();
        let took = end - start;
        assert!(took >= Duration::from_millis(300), "{what} took only {took:?}: too short to tell");
        let mut times: Vec<Instant> =
            self.beats.lock().unwrap().iter().copied().filter(|&t| t > start && t < end).collect();
        times.insert(0, start);
        times.push(end);
        let gap = times.windows(2).map(|w| w[1] - w[0]).max().unwrap();
        assert!(gap < took / 2, "{what} ({took:?}): the executor's other task did not beat for {gap:?}");
        result
    }
}

/// The executor is never blocked: on one current-thread tokio runtime, a heartbeat task keeps
/// beating while the client's calls of every pattern and the async shutdown are awaited on the
/// same thread. grpcio's own thread completes the calls, so a call that blocked the executor
/// would still finish; only a task beside it shows the block, as a gap in its beats.
#[test]
fn a_current_thread_runtime_keeps_its_other_tasks_running_during_calls_and_the_shutdown() {
    use futures::{stream, StreamExt as _, TryStreamExt as _};
    use futures_timer::Delay;

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let heartbeat = Heartbeat::start();
        // SayHello answered 400 ms late: a greeter.Greeter of the test's own, whose SayHello
        // waits, replaces the built-in one.
        let slow_hello = greeter::Service::new(greeter::proto::file_descriptor(), "greeter.Greeter").unary(
            "SayHello",
            |_, request: greeter::proto::HelloRequest| async move {
                Delay::new(Duration::from_millis(400)).await;
                Ok(greeter::proto::HelloReply { message: format!("Hello {}", request.name), ..Default::default() })
            },
        );
        let slow = TestServer::start(greeter::ServerConfig { services: vec![slow_hello], ..common::local() });
        let hello = heartbeat.beats_through("SayHello (answered after 400 ms)", slow.async_client().say_hello("beat"));
        assert_eq!(hello.await.unwrap(), "Hello beat");

        let server = TestServer::with_interval(Duration::from_millis(100));
        let greeter = server.async_client();
        let slowly = |values: Vec<f64>| {
            stream::iter(values).then(|v| async move {
                Delay::new(Duration::from_millis(150)).await;
                v
            })
        };

        let ticks = heartbeat
            .beats_through(
                "GetStockPrice (5 ticks 100 ms apart)",
                greeter.stock_prices("TSMC").unwrap().try_collect::<Vec<_>>(),
            )
            .await;
        assert_eq!(ticks.unwrap().len(), 5);

        let summary = heartbeat
            .beats_through("RecordMetrics (3 values 150 ms apart)", greeter.record_metrics(slowly(vec![1.0, 2.0, 3.0])))
            .await;
        assert_eq!(summary.unwrap().count, 3);

        let words = slowly(vec![1.0, 2.0, 3.0]).map(|v| v.to_string());
        let replies = heartbeat
            .beats_through(
                "Chat (3 messages 150 ms apart)",
                greeter.chat("beat", words).unwrap().try_collect::<Vec<_>>(),
            )
            .await;
        assert_eq!(replies.unwrap().len(), 3);

        let mut ticks = greeter.stock_prices("TSMC").unwrap();
        ticks.next().await.unwrap().unwrap();
        let shutdown = async { futures::join!(server.shutdown_async(), ticks.try_collect::<Vec<_>>()) };
        let (outcome, rest) =
            heartbeat.beats_through("the async shutdown, waiting for a subscription's 4 ticks", shutdown).await;
        assert!(!outcome.cancelled_calls, "{outcome:?}");
        assert_eq!(rest.unwrap().len(), 4);
    });
}
