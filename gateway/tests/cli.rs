//! The `greeter-gateway` program as a user runs it: its flags, its log, SIGTERM; and TLS,
//! where browsers speak HTTP/2.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use greeter::proto::{HelloReply, HelloRequest};
use greeter_gateway::{GatewayConfig, TlsFiles};
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use protobuf::Message as _;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

fn gateway_program() -> Command {
    Command::new(env!("CARGO_BIN_EXE_greeter-gateway"))
}

/// A gateway process, killed if the test fails; its log lines as they come.
struct Program {
    child: Child,
    log: std::sync::mpsc::Receiver<String>,
}

impl Program {
    fn start(args: &[&str]) -> Self {
        let mut child = gateway_program().args(args).stderr(Stdio::piped()).spawn().expect("the gateway starts");
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (tx, log) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Program { child, log }
    }

    /// The first log line containing `text`, within 30 s.
    fn wait_for(&mut self, text: &str) -> String {
        let start = Instant::now();
        loop {
            let left = Duration::from_secs(30).saturating_sub(start.elapsed());
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    panic!("the gateway did not log {text:?} within 30 s")
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("the gateway exited ({:?}) before it logged {text:?}", self.child.try_wait())
                }
            }
        }
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_program_serves_logs_its_address_and_stops_on_sigterm() {
    let server = greeter_server(Duration::from_millis(50));
    let upstream = format!("127.0.0.1:{}", server.port());
    let mut program = Program::start(&["--listen", "127.0.0.1:0", "--upstream", &upstream, "--grace", "5s"]);
    let line = program.wait_for("gRPC-Web gateway serving http://");
    let url = line.split("serving ").nth(1).unwrap().split(',').next().unwrap().to_owned();

    let request = Request::post(format!("{url}/greeter.Greeter/SayHello"))
        .header("content-type", "application/grpc-web+proto")
        .body(Full::new(Bytes::from(frame(&HelloRequest { name: "process".into(), ..Default::default() }))))
        .unwrap();
    let reply = raw(request).await;
    let (messages, trailers) = frames(&reply.body);
    assert_eq!(HelloReply::parse_from_bytes(&messages[0]).unwrap().message, "Hello process");
    assert_eq!(trailer(&trailers, "grpc-status"), Some("0"));

    unsafe { libc::kill(program.child.id() as i32, libc::SIGTERM) };
    program.wait_for("SIGTERM: shutting down gracefully");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = program.child.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the gateway did not exit within 30 s of SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status:?}");
}

#[test]
fn bad_flags_are_refused_in_words() {
    for (args, words) in [
        (
            &["--upstream", "https://localhost:50051"][..],
            "the gateway reaches the gRPC server in plaintext (http://) only",
        ),
        (
            &["--allow-origin", "example.com"][..],
            "\"example.com\" is not an origin (scheme://host[:port], or * for any)",
        ),
        (&["--static-dir", "/nonexistent/dist"][..], "not a directory (build the page first: npm --prefix web ci"),
        (
            &["--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem"][..],
            "cannot read the certificate chain /nonexistent/cert.pem",
        ),
    ] {
        let out = gateway_program().args(["--listen", "127.0.0.1:0"]).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(words), "{args:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn over_tls_browsers_get_http2() {
    let server = greeter_server(Duration::from_millis(50));
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let dir = std::env::temp_dir().join(format!("greeter-gateway-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let gateway = gateway(server.port(), |c: &mut GatewayConfig| {
        c.tls = Some(TlsFiles { cert: cert_path.clone(), key: key_path.clone() });
    })
    .await;
    assert!(gateway.url().starts_with("https://127.0.0.1:"));

    let mut roots = RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    #[allow(deprecated)] // ring, as the gateway uses
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut tls = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(gateway.local_addr()).await.unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("the TLS handshake");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "ALPN chose HTTP/2");

    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let request = Request::post("https://localhost/greeter.Greeter/SayHello")
        .version(Version::HTTP_2)
        .header("content-type", "application/grpc-web+proto")
        .body(Full::new(Bytes::from(frame(&HelloRequest { name: "h2".into(), ..Default::default() }))))
        .unwrap();
    let reply = sender.send_request(request).await.unwrap();
    assert_eq!((reply.status(), reply.version()), (StatusCode::OK, Version::HTTP_2));
    let body = reply.into_body().collect().await.unwrap().to_bytes();
    let (messages, trailers) = frames(&body);
    assert_eq!(HelloReply::parse_from_bytes(&messages[0]).unwrap().message, "Hello h2");
    assert_eq!(trailer(&trailers, "grpc-status"), Some("0"));
    std::fs::remove_dir_all(dir).unwrap();
}
