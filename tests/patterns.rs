//! The four call patterns against a live server: the tutorial's results and their edges.

mod common;

use std::time::Duration;

use common::{status_code, wait_until, TestServer};
use futures::executor::block_on;
use futures::{SinkExt as _, StreamExt as _, TryStreamExt as _};
use greeter::patterns::stock_price::PRICE_RANGE;
use greeter::proto::ChatMessage;
use grpcio::{CallOption, RpcStatusCode, WriteFlags};

const FAST: Duration = Duration::from_millis(5);

// --- Level 1: unary ---

#[test]
fn say_hello_greets_by_name() {
    let server = TestServer::with_interval(FAST);
    assert_eq!(server.client().say_hello("Go Client").unwrap(), "Hello Go Client");
}

#[test]
fn say_hello_keeps_unicode_and_empty_names_intact() {
    let server = TestServer::with_interval(FAST);
    let client = server.client();
    assert_eq!(client.say_hello("台積電 🦀 Zoë").unwrap(), "Hello 台積電 🦀 Zoë");
    assert_eq!(client.say_hello("").unwrap(), "Hello ");
}

#[test]
fn say_hello_accepts_a_one_mib_name() {
    let server = TestServer::with_interval(FAST);
    let name = "x".repeat(1 << 20);
    let reply = server.client().say_hello(&name).unwrap();
    assert_eq!(reply.len(), "Hello ".len() + (1 << 20));
    assert!(reply.starts_with("Hello xxx") && reply.ends_with("xxx"));
}

// --- Level 2: server streaming ---

#[test]
fn stock_price_sends_five_ticks_of_the_symbol_in_price_range() {
    let server = TestServer::with_metrics(FAST);
    let ticks = server.client().stock_prices("TSMC", |_| {}).unwrap();
    assert_eq!(ticks.len(), 5);
    for tick in &ticks {
        assert_eq!(tick.symbol, "TSMC");
        assert!(PRICE_RANGE.contains(&tick.price), "price {} out of [500, 600)", tick.price);
    }
    // Uniform random prices: five equal ones would mean the generator is stuck.
    assert!(ticks.iter().any(|t| t.price != ticks[0].price));
    wait_until("the ticker is done", || server.scrape().subscriptions_ended("OK") == 1.0);
}

#[test]
fn stock_price_tick_count_is_configurable() {
    let mut config = common::local();
    config.greeter.stock_ticks = 1000;
    config.greeter.stock_interval = Duration::ZERO;
    let server = TestServer::start(config);
    assert_eq!(server.client().stock_prices("AAPL", |_| {}).unwrap().len(), 1000);
}

#[test]
fn cancelling_a_stock_stream_stops_the_ticker_at_once() {
    // Ticks are a minute apart: if cancellation were only noticed at the next tick, the
    // ticker would still be running when `wait_until` gives up after 10 s.
    let mut config = common::with_metrics(common::local(), Duration::from_secs(60));
    config.greeter.stock_ticks = 100;
    let server = TestServer::start(config);

    let client = server.raw_client();
    let req = common::tsmc();
    let mut stream = client.get_stock_price_opt(&req, common::deadline()).unwrap();
    block_on(stream.next()).unwrap().unwrap();
    stream.cancel();
    drop(stream);

    wait_until("the ticker has stopped", || server.scrape().subscriptions_active() == 0.0);
    let m = server.scrape();
    assert_eq!(m.ticks_sent(), 1.0);
    assert_eq!(m.subscriptions_ended("Canceled"), 1.0);
    assert_eq!(m.subscriptions_ended("OK"), 0.0);
}

#[test]
fn cancelling_after_two_ticks_stops_the_ticker_before_a_third() {
    // The yardstick: a ticker that only noticed the cancel when its next tick was due would
    // stop an interval after it, not at once.
    let interval = Duration::from_secs(3);
    let mut config = common::with_metrics(common::local(), interval);
    config.greeter.stock_ticks = 100;
    let server = TestServer::start(config);

    let client = server.raw_client();
    let req = common::tsmc();
    let mut stream = client.get_stock_price_opt(&req, common::deadline()).unwrap();
    for _ in 0..2 {
        block_on(stream.next()).unwrap().unwrap();
    }
    stream.cancel();
    let cancelled = std::time::Instant::now();
    drop(stream);
    wait_until("the ticker has stopped", || server.scrape().subscriptions_active() == 0.0);
    assert!(cancelled.elapsed() < interval, "the ticker stopped {:?} after the cancel", cancelled.elapsed());
    let m = server.scrape();
    assert_eq!(m.subscriptions_ended("Canceled"), 1.0);
    assert_eq!(m.ticks_sent(), 2.0, "a stopped ticker's count is final: no third tick");
}

#[test]
fn a_deadline_shorter_than_the_interval_is_deadline_exceeded() {
    let server = TestServer::with_metrics(Duration::from_secs(60));

    let client = server.raw_client();
    let req = common::tsmc();
    // Long enough for the first tick on a loaded machine, far shorter than the interval.
    let opt = CallOption::default().timeout(Duration::from_secs(3));
    let mut stream = client.get_stock_price_opt(&req, opt).unwrap();
    let first = block_on(stream.try_next()).unwrap();
    assert!(first.is_some(), "the first tick comes at once");
    let err = block_on(stream.try_next()).unwrap_err();
    assert_eq!(status_code(&err), RpcStatusCode::DEADLINE_EXCEEDED);
    wait_until("the server's ticker has stopped", || server.scrape().subscriptions_active() == 0.0);
    // Our deadline timer and the client's cancel at its deadline race; either names the end.
    let m = server.scrape();
    assert_eq!(m.subscriptions_ended("DeadlineExceeded") + m.subscriptions_ended("Canceled"), 1.0);
}

// --- Level 3: client streaming ---

#[test]
fn record_metrics_counts_and_averages() {
    let server = TestServer::with_interval(FAST);
    let summary = server.client().record_metrics(&[25.5, 26.8, 27.1]).unwrap();
    assert_eq!(summary.count, 3);
    assert!((summary.average - 26.466_666_666_666_67).abs() < 1e-12, "{}", summary.average);
}

#[test]
fn record_metrics_of_an_empty_stream_is_zero() {
    let server = TestServer::with_interval(FAST);
    let summary = server.client().record_metrics(&[]).unwrap();
    assert_eq!((summary.count, summary.average), (0, 0.0));
}

#[test]
fn record_metrics_sums_100_000_values_exactly() {
    let server = TestServer::with_interval(FAST);
    // 0.1 has no exact binary form: a naive running sum drifts, a compensated one does not.
    let values: Vec<f64> = (0..100_000).map(|i| if i % 2 == 0 { 0.1 } else { 1e6 + 0.3 }).collect();
    // 100 000 messages, one C-core write batch each, in a debug build: ~6 s on a quiet machine,
    // 20 s with the load average at 6 on 2 cores, and once over the common 30 s deadline in
    // the flake hunt (tls run 5). This test is about exact sums, not speed: 120 s.
    let client = greeter::blocking::Greeter::new(&server.addr, Duration::from_secs(120));
    let summary = client.record_metrics(&values).unwrap();
    assert_eq!(summary.count, 100_000);
    let exact = (0.1 + (1e6 + 0.3)) / 2.0;
    assert!((summary.average - exact).abs() <= exact * 1e-15, "{} vs {exact}", summary.average);
}

#[test]
fn record_metrics_rejects_nan_naming_the_message() {
    let server = TestServer::with_interval(FAST);
    let err = server.client().record_metrics(&[1.0, 2.0, f64::NAN, 4.0]).unwrap_err();
    assert_eq!(err.code(), Some(RpcStatusCode::INVALID_ARGUMENT));
    let text = err.to_string();
    assert!(text.contains("metric #2") && text.contains("NaN"), "{text}");
}

#[test]
fn record_metrics_rejects_infinities() {
    let server = TestServer::with_interval(FAST);
    for bad in [f64::INFINITY, f64::NEG_INFINITY] {
        let err = server.client().record_metrics(&[bad]).unwrap_err();
        assert_eq!(err.code(), Some(RpcStatusCode::INVALID_ARGUMENT));
        assert!(err.to_string().contains("metric #0"), "{err}");
    }
    // The server goes on serving.
    assert_eq!(server.client().record_metrics(&[1.0]).unwrap().count, 1);
}

// --- Level 4: bidirectional streaming ---

#[test]
fn chat_answers_each_message_as_the_server() {
    let server = TestServer::with_interval(FAST);
    let messages = ["Hello".to_owned(), "Bye".to_owned()];
    let replies = server.client().chat("Go", &messages, |_| {}).unwrap();
    let got: Vec<(&str, &str)> = replies.iter().map(|r| (r.user.as_str(), r.message.as_str())).collect();
    assert_eq!(got, [("Server", "Server received: Hello"), ("Server", "Server received: Bye")]);
}

#[test]
fn chat_in_lock_step_answers_1000_messages_in_order() {
    let server = TestServer::with_interval(FAST);
    let client = server.raw_client();
    let (mut sink, mut replies) = client.chat_opt(common::deadline()).unwrap();
    block_on(async {
        for i in 0..1000 {
            let msg = ChatMessage { user: "Rust".into(), message: format!("message {i}"), ..Default::default() };
            sink.send((msg, WriteFlags::default())).await.unwrap();
            // Waiting for each reply before sending the next: a server that buffered replies
            // until the client half-closed would hang here.
            let reply = replies.try_next().await.unwrap().expect("a reply per message");
            assert_eq!(reply.user, "Server");
            assert_eq!(reply.message, format!("Server received: message {i}"));
        }
        // grpcio may report the half-close as racing the server's status; the status itself
        // is what must be OK.
        let _ = sink.close().await;
        assert!(replies.try_next().await.unwrap().is_none(), "the stream ends OK after half-close");
    });
}

/// Fifty messages sent without waiting, and then the client says nothing: every reply
/// arrives, in order, while it stays silent (the bug this catches: a reply held back until the
/// client speaks again, which a batching server can do); then one more message round-trips.
#[test]
fn a_pipelined_chat_that_goes_quiet_gets_every_reply() {
    let server = TestServer::with_interval(FAST);
    let client = server.raw_client();
    // Generous: the replies take milliseconds; only a held reply takes this long.
    let (mut sink, mut replies) = client.chat_opt(CallOption::default().timeout(Duration::from_secs(60))).unwrap();
    let message = |text: String| {
        (ChatMessage { user: "quiet".into(), message: text, ..Default::default() }, WriteFlags::default())
    };
    block_on(async {
        for i in 0..50 {
            sink.feed(message(format!("m{i}"))).await.unwrap();
        }
        sink.flush().await.unwrap(); // the 50 are out; no half-close
        for i in 0..50 {
            let reply = replies.try_next().await.unwrap().unwrap_or_else(|| panic!("no reply {i}"));
            assert_eq!(reply.message, format!("Server received: m{i}"));
        }
        sink.send(message("one more".into())).await.unwrap();
        assert_eq!(replies.try_next().await.unwrap().unwrap().message, "Server received: one more");
        let _ = sink.close().await;
        assert!(replies.try_next().await.unwrap().is_none(), "the chat ends OK");
    });
}

/// Twenty chats at once, each pipelining 1,000 messages: every reply comes, in its own
/// chat's order, with its own text.
#[test]
fn twenty_concurrent_pipelined_chats_get_every_reply_in_order() {
    let server = TestServer::with_interval(FAST);
    let chats: Vec<_> = (0..20)
        .map(|c| {
            let client = server.raw_client();
            std::thread::spawn(move || {
                let (mut sink, replies) = client.chat_opt(common::deadline()).unwrap();
                let sending = std::thread::spawn(move || {
                    block_on(async {
                        for i in 0..1000 {
                            let msg = ChatMessage {
                                user: format!("c{c}"),
                                message: format!("{c}.{i}"),
                                ..Default::default()
                            };
                            sink.feed((msg, WriteFlags::default())).await.unwrap();
                        }
                        // The status, on the receiving side, is what must be OK.
                        let _ = sink.close().await;
                    })
                });
                let got: Vec<ChatMessage> = block_on(replies.try_collect()).unwrap();
                sending.join().unwrap();
                let texts: Vec<String> = got.into_iter().map(|r| r.message).collect();
                let want: Vec<String> = (0..1000).map(|i| format!("Server received: {c}.{i}")).collect();
                assert!(
                    texts == want,
                    "chat {c}: {} replies, first differing at {:?}",
                    texts.len(),
                    texts.iter().zip(&want).position(|(a, b)| a != b)
                );
            })
        })
        .collect();
    for chat in chats {
        chat.join().unwrap();
    }
}

#[test]
fn chat_with_no_messages_ends_ok() {
    let server = TestServer::with_interval(FAST);
    assert!(server.client().chat("Rust", &[], |_| {}).unwrap().is_empty());
}

/// A client that pipelines Chat messages gets its replies in far fewer writes than replies:
/// the driver holds a reply for one completion-queue turn while the client is ahead (`Flusher`
/// in `src/call/drive.rs`), so it leaves with the ones after it. On loopback each write is one
/// TCP segment, so the kernel's count of the server socket's data segments (`ss`) counts them.
/// Five chats of 1,000 messages take 55–100 on a quiet machine; written at once, 190–4,000
/// (some replies still meet a write in flight and leave together), and none of 55 such rounds
/// came under 125. Whether a held reply meets its successor is scheduling: with both cores busy
/// about half the rounds of a batching server exceed 125 too, so the test takes the best of up
/// to ten rounds, each on a connection of its own.
#[test]
fn a_pipelined_chat_gets_its_replies_in_far_fewer_writes_than_replies() {
    const MESSAGES: usize = 1000;
    const CHATS: usize = 5;
    const REPLIES: usize = CHATS * MESSAGES;
    let server = TestServer::with_interval(FAST);
    let mut rounds = Vec::new();
    for _ in 0..10 {
        let segments = chats_ahead_of_the_server(&server, CHATS, MESSAGES);
        eprintln!("{REPLIES} replies in {segments} data segments");
        rounds.push(segments);
        if segments < REPLIES / 40 {
            return;
        }
    }
    panic!("{REPLIES} replies took {rounds:?} TCP data segments in ten rounds: the replies were not batched");
}

/// The server's data segments on a new connection of `chats` Chats, each pipelining `messages`.
fn chats_ahead_of_the_server(server: &TestServer, chats: usize, messages: usize) -> usize {
    let earlier: Vec<String> = server_connections(server).into_iter().map(|(peer, _)| peer).collect();
    let client = server.raw_client();
    for chat in 0..chats {
        let (mut sink, replies) = client.chat_opt(common::deadline()).unwrap();
        let replies = block_on(async {
            // Buffered, they reach the server in a few large reads, as a client that pipelines
            // sends them (one write at a time, as grpcio writes, they would trickle in).
            for i in 0..messages {
                let message = ChatMessage { user: "ahead".into(), message: format!("m{i}"), ..Default::default() };
                sink.feed((message, WriteFlags::default().buffer_hint(i + 1 < messages))).await.unwrap();
            }
            sink.close().await.unwrap();
            replies.try_collect::<Vec<_>>().await.unwrap()
        });
        assert_eq!(replies.len(), messages, "chat {chat}: every message answered");
    }
    // Measured while `client` holds its channel, so its connection is open.
    let new: Vec<_> = server_connections(server).into_iter().filter(|(peer, _)| !earlier.contains(peer)).collect();
    assert_eq!(new.len(), 1, "one new connection to the server: {new:?}");
    new[0].1
}

/// The server's established connections, as `ss` lists them: each peer's address and the
/// data segments the server sent it.
fn server_connections(server: &TestServer) -> Vec<(String, usize)> {
    let port = server.addr.rsplit_once(':').unwrap().1;
    let mut ss = std::process::Command::new("ss");
    ss.args(["-tinH", "state", "established", "sport", "=", &format!(":{port}")]);
    let out = common::process::output_within(ss, "ss", Duration::from_secs(10));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // A socket is a line of addresses (`0 0 127.0.0.1:50051 127.0.0.1:41230`), then an
    // indented line of its counters.
    let mut connections = Vec::new();
    let mut peer = None;
    for line in text.lines() {
        if !line.starts_with(char::is_whitespace) {
            peer = line.split_whitespace().nth(3).map(str::to_owned);
        } else if let Some(peer) = peer.take() {
            let segments = line.split_whitespace().find_map(|f| f.strip_prefix("data_segs_out:")?.parse().ok());
            connections.push((peer, segments.unwrap_or_else(|| panic!("no data_segs_out in ss's line {line:?}"))));
        }
    }
    connections
}
