//! Message compression on the wire: what a server with `compression: Gzip` sends, read by a
//! raw HTTP/2 client (`tests/hostile/compression_wire.py`, which prints each reply message's
//! compressed flag and the call's `grpc-encoding`); our client's requests as grpc-go's server
//! sees them on the wire (its `--wire-log`: our server cannot tell a compressed request from
//! a plain one), and read whole by our server. gRPC's four compression interop cases, in
//! every direction, are in tests/official_interop.rs.

mod common;

use std::time::Duration;

use common::tools::tools;
use common::TestServer;
use greeter::{blocking, Compression, Greeter, ServerConfig};
use serde_json::Value;

/// The reply to a 4,000-byte name, as compression_wire.py reads it off the wire, from a
/// server compressing as `compression` says, for a client accepting `accept`.
fn reply_on_the_wire(compression: Compression, min_len: usize, accept: &str) -> Value {
    let server = TestServer::start(ServerConfig { compression, compression_min_len: min_len, ..common::local() });
    let mut cmd = tools().python("tests/hostile/compression_wire.py");
    cmd.args(["--addr", &server.addr, "--accept", accept]);
    let out = common::tools::run_ok(cmd, "compression_wire.py");
    let line = String::from_utf8_lossy(&out.stdout);
    let reply: Value = serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!((reply["grpc_status"].as_i64(), reply["reply_ok"].as_bool()), (Some(0), Some(true)), "{reply}");
    reply
}

#[test]
fn a_gzip_server_compresses_the_reply_of_a_client_that_accepts_gzip() {
    let reply = reply_on_the_wire(Compression::Gzip, 1024, "identity,gzip");
    assert_eq!(reply["grpc_encoding"], "gzip", "{reply}");
    assert_eq!(reply["message_flags"], serde_json::json!([1]), "one message, flagged compressed: {reply}");
    // "Hello " and 4,000 a's, with its framing, inflate from far fewer bytes.
    assert!(reply["body_bytes"].as_u64().unwrap() < 200, "{reply}");
}

#[test]
fn a_client_that_does_not_accept_gzip_gets_identity_replies() {
    let reply = reply_on_the_wire(Compression::Gzip, 1024, "identity");
    assert_eq!(reply["grpc_encoding"], Value::Null, "no grpc-encoding: {reply}");
    assert_eq!(reply["message_flags"], serde_json::json!([0]), "{reply}");
    assert_eq!(reply["body_bytes"].as_u64(), Some(5 + 3 + 4006), "the whole reply, as it is: {reply}");
}

#[test]
fn a_client_that_accepts_deflate_only_gets_deflate_from_a_gzip_server() {
    let reply = reply_on_the_wire(Compression::Gzip, 1024, "identity,deflate");
    assert_eq!(reply["grpc_encoding"], "deflate", "{reply}");
    assert_eq!(reply["message_flags"], serde_json::json!([1]), "{reply}");
}

/// Under `compression_min_len` the call says gzip, but the message goes as it is and says so
/// in its own flag.
#[test]
fn a_reply_shorter_than_the_minimum_goes_uncompressed() {
    let reply = reply_on_the_wire(Compression::Gzip, 10_000, "identity,gzip");
    assert_eq!(reply["grpc_encoding"], "gzip", "{reply}");
    assert_eq!(reply["message_flags"], serde_json::json!([0]), "{reply}");
}

#[test]
fn without_compression_no_reply_is_compressed() {
    let reply = reply_on_the_wire(Compression::None, 1024, "identity,gzip");
    assert_eq!(reply["grpc_encoding"], Value::Null, "{reply}");
    assert_eq!(reply["message_flags"], serde_json::json!([0]), "{reply}");
    assert_eq!(reply["grpc_accept_encoding"], "identity, deflate, gzip", "what C-core says it accepts: {reply}");
}

/// Our client compressing with gzip, as grpc-go's server sees each request message on the
/// wire: a message of 1 KiB or more goes compressed, a smaller one plain (the minimum size),
/// in every pattern; without the setting, none is compressed. (grpc-go has no deflate codec:
/// deflate's requests are checked against our server below.)
#[test]
fn grpc_go_sees_our_clients_requests_compressed_from_1_kib() {
    use common::tools::PeerServer;
    for compression in [Compression::Gzip, Compression::None] {
        let dir = tempfile::tempdir().unwrap();
        let wire_log = dir.path().join("wire.log");
        let mut cmd = tools().go_bin("interop-server");
        cmd.args(["--port", "0", "--interval", "1ms", "--wire-log"]).arg(&wire_log);
        let go = PeerServer::start(cmd, "grpc-go interop-server");
        let greeter = Greeter::builder(&go.addr(), Duration::from_secs(30)).compression(compression).build().unwrap();
        let client = blocking::Greeter::from(greeter);
        let name = "n".repeat(5_000);
        assert_eq!(client.say_hello(&name).unwrap(), format!("Hello {name}"));
        assert_eq!(client.say_hello("small").unwrap(), "Hello small");
        client.chat("c", &["m".repeat(2_000), "Bye".to_owned()], |_| {}).unwrap();
        assert_eq!(client.record_metrics(&[1.0, 2.0]).unwrap().count, 2);
        let seen: Vec<String> = std::fs::read_to_string(&wire_log).unwrap().lines().map(str::to_owned).collect();
        let big = if compression == Compression::Gzip { "compressed" } else { "plain" };
        assert_eq!(
            seen,
            [
                format!("/greeter.Greeter/SayHello {big} 5003"),
                "/greeter.Greeter/SayHello plain 7".to_owned(),
                format!("/greeter.Greeter/Chat {big} 2006"),
                "/greeter.Greeter/Chat plain 8".to_owned(),
                "/greeter.Greeter/RecordMetrics plain 9".to_owned(),
                "/greeter.Greeter/RecordMetrics plain 9".to_owned(),
            ],
            "{compression:?}"
        );
    }
}

/// Our client compressing its requests, our server (not compressing) inflating them: every
/// pattern's content arrives whole.
#[test]
fn our_client_compresses_its_requests_and_our_server_reads_them() {
    let server = TestServer::start(common::local());
    for compression in [Compression::Gzip, Compression::Deflate] {
        let greeter = Greeter::builder(&server.addr, Duration::from_secs(30)).compression(compression).build().unwrap();
        let client = blocking::Greeter::from(greeter);
        let name = "n".repeat(50_000);
        assert_eq!(client.say_hello(&name).unwrap(), format!("Hello {name}"), "{compression:?}");
        let long = "m".repeat(2_000);
        let replies = client.chat("c", &[long.clone(), "Bye".to_owned()], |_| {}).unwrap();
        let replies: Vec<&str> = replies.iter().map(|r| r.message.as_str()).collect();
        assert_eq!(replies, [format!("Server received: {long}").as_str(), "Server received: Bye"], "{compression:?}");
        let summary = client.record_metrics(&[1.0, 2.0, 3.0]).unwrap();
        assert_eq!((summary.count, summary.average), (3, 2.0), "{compression:?}");
    }
}
