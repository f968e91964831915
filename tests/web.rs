//! The web page in a real browser: Debian's Chromium, headless, driven by puppeteer-core
//! (web/tests/driver.mjs), loading the page from the gRPC-Web gateway in front of our server,
//! all on loopback. `tests/web/setup.sh` installs Chromium and the page's npm packages and
//! builds the page first.
//!
//! The tests take turns (one browser at a time): the streaming test times ticks in the page,
//! and two browsers at once on a small machine would blur that.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use common::process::{status_within, KillOnDrop};
use greeter::{Authorization, GracefulShutdown, GreeterServer, ServerConfig};
use greeter_gateway::{Gateway, GatewayConfig, TlsFiles};
use serde_json::{json, Value};

/// Longer than any one step of the driver (each has 30 s inside the page).
const STEP_DEADLINE: Duration = Duration::from_secs(60);
const SETUP_DEADLINE: Duration = Duration::from_secs(30 * 60);

/// Chromium and the built page, set up once per test binary.
fn setup() -> &'static Path {
    static CHROMIUM: OnceLock<PathBuf> = OnceLock::new();
    CHROMIUM.get_or_init(|| {
        let mut setup = Command::new("bash");
        setup.arg(repo().join("tests/web/setup.sh"));
        let status = status_within(setup, "tests/web/setup.sh (needs bash, Node.js and npm)", SETUP_DEADLINE);
        assert!(
            status.success(),
            "tests/web/setup.sh failed (its message is above): the browser tests need Node.js >= 18 with npm, \
             the npm registry, and Debian's chromium (installed with apt-get as root)"
        );
        let which = Command::new("sh").args(["-c", "command -v chromium"]).output().unwrap();
        PathBuf::from(String::from_utf8(which.stdout).unwrap().trim())
    })
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One browser at a time, across this binary's tests.
fn turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The page in headless Chromium, through web/tests/driver.mjs.
struct Browser {
    stdin: ChildStdin,
    answers: Receiver<String>,
    driver: KillOnDrop,
}

impl Browser {
    fn launch() -> Self {
        let chromium = setup();
        let mut child = Command::new("node")
            .arg("tests/driver.mjs")
            .arg(chromium)
            .current_dir(repo().join("web"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("node runs (install Node.js >= 18)");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, answers) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Browser { stdin, answers, driver: KillOnDrop(child) }
    }

    /// Sends one command and returns its answer; fails the test if the step failed.
    fn step(&mut self, command: Value) -> Value {
        let answer = self.try_step(command.clone());
        assert_eq!(answer["ok"], true, "{command}: {answer:#}");
        answer
    }

    fn try_step(&mut self, command: Value) -> Value {
        writeln!(self.stdin, "{command}").expect("the driver reads its commands");
        let line = self
            .answers
            .recv_timeout(STEP_DEADLINE)
            .unwrap_or_else(|_| panic!("the browser driver did not answer {command} within {STEP_DEADLINE:?}"));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("the driver answered {line:?}: {e}"))
    }

    fn open(&mut self, url: &str) {
        self.step(json!({"cmd": "open", "url": url}));
    }

    fn hello(&mut self, name: &str) -> Value {
        self.step(json!({"cmd": "hello", "name": name}))
    }

    fn subscribe(&mut self, symbol: &str) -> Value {
        self.step(json!({"cmd": "subscribe", "symbol": symbol}))
    }
}

impl Drop for Browser {
    /// "quit" lets the driver close Chromium: killing node instead would leave Chromium
    /// running without it. The driver is killed only if it has not exited within 15 s.
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "{}", json!({"cmd": "quit"}));
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.driver.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Our server, ticks `interval` apart, with `tweak` applied.
fn server(interval: Duration, tweak: impl FnOnce(&mut ServerConfig)) -> GreeterServer {
    let mut config = ServerConfig { addr: "127.0.0.1:0".into(), ..Default::default() };
    config.greeter.stock_interval = interval;
    config.shutdown = GracefulShutdown { grace: Duration::from_millis(100), drain: Duration::ZERO };
    tweak(&mut config);
    config.start().expect("the server starts")
}

/// Gateways on a runtime of their own, stopped when dropped.
struct Gateways {
    runtime: tokio::runtime::Runtime,
}

impl Gateways {
    fn new() -> Self {
        Gateways {
            runtime: tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap(),
        }
    }

    /// A gateway serving the built page, in front of `server_port`.
    fn start(&self, server_port: u16, tweak: impl FnOnce(&mut GatewayConfig)) -> Gateway {
        setup(); // the page is built (web/dist) before a gateway serves it
        let mut config = GatewayConfig {
            listen: "127.0.0.1:0".into(),
            upstream: format!("127.0.0.1:{server_port}"),
            static_dir: Some(repo().join("web/dist")),
            ..Default::default()
        };
        tweak(&mut config);
        self.runtime.block_on(config.start()).expect("the gateway starts")
    }
}

/// The ticks' rows, and the milliseconds between consecutive rows appearing in the page.
fn ticks(answer: &Value) -> (Vec<String>, Vec<f64>) {
    let ticks = answer["ticks"].as_array().unwrap();
    let texts = ticks.iter().map(|t| t["text"].as_str().unwrap().to_owned()).collect();
    let at: Vec<f64> = ticks.iter().map(|t| t["at"].as_f64().unwrap()).collect();
    (texts, at.windows(2).map(|w| w[1] - w[0]).collect())
}

/// Five TSMC ticks, each row appearing at least 400 ms after the one before (they leave
/// the server 500 ms apart): streamed to the page, not buffered.
fn assert_five_streamed_ticks(answer: &Value) {
    assert_eq!(answer["state"], "ok", "{answer:#}");
    assert_eq!(answer["status"], "done: 5 ticks");
    let (rows, gaps) = ticks(answer);
    assert_eq!(rows.len(), 5, "{rows:?}");
    for row in &rows {
        let price: f64 = row.split(' ').nth(1).unwrap().parse().unwrap();
        assert!(row.starts_with("TSMC ") && (500.0..=600.0).contains(&price), "{row}");
    }
    assert!(gaps.iter().all(|&gap| gap >= 400.0), "ticks appeared {gaps:?} ms apart");
    assert_eq!(answer["points"], 5, "one point on the chart per tick");
}

#[test]
fn the_page_says_hello_and_draws_five_ticks_as_they_arrive() {
    let _turn = turn();
    let server = server(Duration::from_millis(500), |_| {});
    let gateways = Gateways::new();
    let gateway = gateways.start(server.port(), |_| {});
    let mut browser = Browser::launch();
    browser.open(&format!("{}/", gateway.url()));

    let hello = browser.hello("世界 & <b>you</b>");
    assert_eq!(hello["result"], "Hello 世界 & <b>you</b>", "shown as text, not markup");
    let hello = browser.hello("Ferris");
    assert_eq!(
        (&hello["state"], &hello["result"], &hello["error"]),
        (&json!("ok"), &json!("Hello Ferris"), &json!(""))
    );

    assert_five_streamed_ticks(&browser.subscribe("TSMC"));
    let screenshot = std::env::var_os("GREETER_WEB_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/web/page.png"));
    browser.step(json!({"cmd": "screenshot", "path": screenshot}));
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 10_000, "{} is too small for a page", screenshot.display());
}

#[test]
fn the_page_in_text_mode() {
    let _turn = turn();
    let server = server(Duration::from_millis(500), |_| {});
    let gateways = Gateways::new();
    let gateway = gateways.start(server.port(), |c| c.metrics_addr = Some("127.0.0.1:0".into()));
    let mut browser = Browser::launch();
    browser.open(&format!("{}/?format=text", gateway.url()));
    assert_eq!(browser.hello("base64")["result"], "Hello base64");
    assert_five_streamed_ticks(&browser.subscribe("TSMC"));

    // The gateway saw both calls as text (application/grpc-web-text), and nothing else.
    let metrics = scrape(gateway.metrics_addr().unwrap());
    assert!(metrics.contains("greeter_gateway_calls_started_total{format=\"text\"} 2\n"), "{metrics}");
    assert!(!metrics.contains("greeter_gateway_calls_started_total{format=\"binary\"}"), "{metrics}");
}

#[test]
fn the_page_tells_what_went_wrong_in_words() {
    let _turn = turn();
    let server = server(Duration::from_millis(500), |_| {});
    let full = self::server(Duration::from_millis(500), |c| c.greeter.max_subscriptions = 0);
    let gateways = Gateways::new();
    let gateway = gateways.start(server.port(), |_| {});
    let to_full = gateways.start(full.port(), |_| {});
    let mut browser = Browser::launch();

    // A deadline: two ticks (0 and 500 ms), then the server's DEADLINE_EXCEEDED at 750 ms.
    browser.open(&format!("{}/?deadline=0.75", gateway.url()));
    let answer = browser.subscribe("TSMC");
    assert_eq!((&answer["state"], &answer["status"]), (&json!("error"), &json!("ended after 2 ticks")), "{answer:#}");
    let error = answer["error"].as_str().unwrap();
    assert!(error.starts_with("No answer within the deadline of 0.75 s (DEADLINE_EXCEEDED"), "{error}");

    // A limit of the server's.
    browser.open(&format!("{}/", to_full.url()));
    let answer = browser.subscribe("TSMC");
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.starts_with("The server or the gateway is at one of its limits; try again later (RESOURCE_EXHAUSTED: too many stock subscriptions"),
        "{error}"
    );

    // A call the server's authorization policy denies (SayHello only, for everyone).
    let policy = tempfile::NamedTempFile::new().unwrap();
    let rules = json!({
        "name": "web",
        "allow_rules": [{"name": "say_hello_only", "request": {"paths": ["/greeter.Greeter/SayHello"]}}],
    });
    std::fs::write(policy.path(), rules.to_string()).unwrap();
    let guarded = self::server(Duration::from_millis(500), |c| {
        c.authorization = Some(Authorization { policy: Some(policy.path().to_owned()), ..Default::default() })
    });
    let to_guarded = gateways.start(guarded.port(), |_| {});
    browser.open(&format!("{}/", to_guarded.url()));
    assert_eq!(browser.hello("allowed")["result"], "Hello allowed");
    let answer = browser.subscribe("TSMC");
    assert_eq!(
        answer["error"],
        "You are not allowed to make this call (PERMISSION_DENIED: authz: unauthorized RPC request rejected)."
    );

    // The server stops: the gateway answers, the page says the server is down.
    browser.open(&format!("{}/", gateway.url()));
    assert_eq!(browser.hello("before")["result"], "Hello before");
    server.shutdown();
    let answer = browser.hello("after");
    assert_eq!(answer["state"], "error");
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.starts_with("The Greeter server is down or unreachable; the gateway could not reach it (UNAVAILABLE: "),
        "{error}"
    );

    // The gateway stops too: the page cannot reach anything.
    gateways.runtime.block_on(gateway.shutdown());
    let answer = browser.hello("gone");
    let error = answer["error"].as_str().unwrap();
    assert!(error.starts_with("Cannot reach the gateway at http://127.0.0.1:"), "{error}");
}

#[test]
fn over_tls_the_page_calls_over_http2() {
    let _turn = turn();
    let server = server(Duration::from_millis(500), |_| {});
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let files = TlsFiles { cert: dir.path().join("cert.pem"), key: dir.path().join("key.pem") };
    std::fs::write(&files.cert, cert.cert.pem()).unwrap();
    std::fs::write(&files.key, cert.key_pair.serialize_pem()).unwrap();
    let gateways = Gateways::new();
    let gateway = gateways.start(server.port(), |c| c.tls = Some(files));
    assert!(gateway.url().starts_with("https://"));
    let mut browser = Browser::launch();
    browser.open(&format!("{}/", gateway.url()));
    assert_eq!(browser.hello("h2")["result"], "Hello h2");
    assert_five_streamed_ticks(&browser.subscribe("TSMC"));
    let protocols = browser.step(json!({"cmd": "protocols"}));
    assert_eq!(protocols["protocols"], json!(["h2", "h2"]), "{protocols:#}");
}

#[test]
fn cors_lets_the_configured_origin_call_and_refuses_others() {
    let _turn = turn();
    let server = server(Duration::from_millis(500), |_| {});
    let gateways = Gateways::new();
    // The page comes from one origin and calls gateways on others (another port is another
    // origin).
    let page = gateways.start(server.port(), |_| {});
    let open = gateways.start(server.port(), |c| c.allowed_origins = vec![page.url()]);
    let closed = gateways.start(server.port(), |c| c.allowed_origins = vec!["http://elsewhere.example".into()]);
    let mut browser = Browser::launch();

    browser.open(&format!("{}/?endpoint={}", page.url(), open.url()));
    let answer = browser.hello("across origins");
    assert_eq!((&answer["state"], &answer["result"]), (&json!("ok"), &json!("Hello across origins")), "{answer:#}");
    // A status from across origins is readable too (grpc-status, grpc-message exposed).
    browser.open(&format!("{}/?endpoint={}&deadline=0.75", page.url(), open.url()));
    let answer = browser.subscribe("TSMC");
    assert!(answer["error"].as_str().unwrap().contains("DEADLINE_EXCEEDED"), "{answer:#}");

    browser.open(&format!("{}/?endpoint={}", page.url(), closed.url()));
    let answer = browser.hello("refused");
    assert_eq!(answer["state"], "error");
    assert_eq!(
        answer["error"],
        format!(
            "Cannot reach the gateway at {}: it is down, or it does not allow calls from this page's origin (CORS).",
            closed.url()
        )
    );
}

#[test]
fn the_page_says_what_a_browser_cannot_call() {
    let _turn = turn();
    let server = server(Duration::from_millis(500), |_| {});
    let gateways = Gateways::new();
    let gateway = gateways.start(server.port(), |_| {});
    let mut browser = Browser::launch();
    browser.open(&format!("{}/", gateway.url()));
    let page = browser.step(json!({"cmd": "page"}));
    assert_eq!(
        page["methods"],
        json!([
            "SayHello unary yes, above",
            "GetStockPrice server streaming yes, above",
            "RecordMetrics client streaming no: needs request streaming",
            "Chat bidirectional streaming no: needs request streaming",
        ])
    );
    let notes = page["notes"].as_str().unwrap();
    assert!(notes.contains("cargo run --release --example record_metrics"), "{notes}");
}

/// `/metrics` of a gateway, over a plain TCP socket.
fn scrape(addr: std::net::SocketAddr) -> String {
    use std::io::Read;
    let mut socket = std::net::TcpStream::connect(addr).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(socket, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut reply = String::new();
    socket.read_to_string(&mut reply).unwrap();
    reply
}
