"""What every part of bench/run shares: paths, the servers and scenarios it compares, logging,
and running commands with a deadline. Imports nothing else of the harness (see README.md for
the order the files import each other in)."""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(REPO, "bench")
TARGET = os.path.join(REPO, "target")
TB = os.path.join(TARGET, "bench")
PROTO = os.path.join(REPO, "proto", "greeter.proto")
SERVER_CPU, CLIENT_CPU = "0", "1"
TICKS = 1000  # messages per streaming call, every streaming scenario
ALL_SERVERS = ["rust", "go", "cpp", "tonic", "python"]
# Not in a default run (its first build compiles C-core and grpc++, ~20 min here): the C++
# peer on the C-core our server runs, for comparisons of like with like.
EXTRA_SERVERS = ["cpp156"]
LABELS = {"rust": "rust (ours, grpcio)", "go": "grpc-go", "cpp": "C++ (C-core)", "tonic": "tonic", "python": "Python grpcio",
          "cpp156": "C++ (C-core 1.56.2)"}

# name: (method, data, msgs per call, concurrency, connections, extra ghz flags); `check`: the
# per-call counts that must equal msgs (see measure.check_counts)
SCENARIOS = {
    "unary": dict(title="unary SayHello, closed loop (max rps)", method="SayHello",
                  data={"name": "bench"}, msgs=1, c=50, conns=4),
    "unary_rate": dict(title="unary SayHello, open loop at a fixed rate", method="SayHello",
                       data={"name": "bench"}, msgs=1, c=50, conns=4, rate=True),
    "server_stream": dict(title=f"server streaming GetStockPrice, {TICKS} ticks/call", method="GetStockPrice",
                          data={"symbol": "BENCH"}, msgs=TICKS, c=8, conns=2, check=("received",)),
    "client_stream": dict(title=f"client streaming RecordMetrics, {TICKS} values/call", method="RecordMetrics",
                          data=[{"value": 500.0 + (i % 100)} for i in range(TICKS)], msgs=TICKS, c=8, conns=2,
                          check=("sent", "counted")),
    "bidi": dict(title=f"bidi Chat, {TICKS} messages/call", method="Chat",
                 data=[{"user": "bench", "message": f"hello {i}"} for i in range(TICKS)], msgs=TICKS, c=8, conns=2,
                 check=("sent", "received")),
}
STREAMING = ["server_stream", "client_stream", "bidi"]

# Deadlines of the commands that build and query things (the programs that talk to a server
# under test have their own, in measure.py): long enough for a slow, loaded machine, finite so
# that a stuck step ends the run instead of hanging it.
SETUP_TIMEOUT_S = 30 * 60  # installs, venvs, builds that do not compile C-core
CORE_BUILD_TIMEOUT_S = 2 * 60 * 60  # builds that compile C-core (~20 min on 2 idle cores)
QUERY_TIMEOUT_S = 5 * 60  # version and metadata queries (cargo metadata may read the registry)
PLOT_TIMEOUT_S = 10 * 60


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def die(msg):
    log(f"bench: ERROR: {msg}")
    sys.exit(2)


def run(cmd, timeout=SETUP_TIMEOUT_S, **kw):
    """Runs a set-up step; raises CalledProcessError, or TimeoutExpired after killing it."""
    log("bench: $ " + " ".join(cmd))
    subprocess.run(cmd, check=True, timeout=timeout, **kw)


def out_of(cmd, timeout=QUERY_TIMEOUT_S, **kw):
    """A command's stdout, stripped; None when it cannot run, fails or overruns `timeout`."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=timeout, **kw).stdout.strip()
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return None
