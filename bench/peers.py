"""Every peer and tool bench/run builds or installs itself, and how each peer server starts.

Each build keeps a stamp of its inputs in target/bench/stamps and is skipped while the stamp
matches and its outputs exist; every step runs with a deadline (common.run)."""
import hashlib
import json
import os
import shutil
import sys

from common import (BENCH, CORE_BUILD_TIMEOUT_S, PROTO, REPO, TARGET, TB, TICKS, die, log, out_of,
                    run)

GHZ_VERSION = "v0.121.0"  # github.com/bojand/ghz, pinned so that every run loads with the same client
GHZ = os.path.join(TB, "bin", "ghz")
INTEROP = os.path.join(TARGET, "interop")
INTEROP_PY = os.path.join(INTEROP, "venv", "bin", "python")  # pinned grpcio (tests/interop/setup.sh)
PYTHON_GEN = os.path.join(INTEROP, "python_gen")


def digest(*parts):
    h = hashlib.sha256()
    for p in parts:
        if os.path.isfile(p):
            with open(p, "rb") as f:
                h.update(f.read())
        else:
            h.update(p.encode())
    return h.hexdigest()


def fresh(name, key, *outputs):
    stamp = os.path.join(TB, "stamps", name)
    try:
        with open(stamp) as f:
            ok = f.read() == key
    except OSError:
        return False
    return ok and all(os.path.exists(o) for o in outputs)


def set_stamp(name, key):
    os.makedirs(os.path.join(TB, "stamps"), exist_ok=True)
    with open(os.path.join(TB, "stamps", name), "w") as f:
        f.write(key)


# --- setup: every peer built by the harness itself --------------------------------------

def setup_ghz():
    key = f"{GHZ_VERSION} {out_of(['go', 'env', 'GOVERSION'])}"
    if fresh("ghz", key, GHZ):
        return
    if not shutil.which("go"):
        die("'go' is needed to install ghz (and the grpc-go peer)")
    log(f"bench: installing ghz {GHZ_VERSION} into {os.path.dirname(GHZ)}")
    env = dict(os.environ, GOBIN=os.path.dirname(GHZ), GOWORK="off")
    run(["go", "install", f"github.com/bojand/ghz/cmd/ghz@{GHZ_VERSION}"], env=env)
    set_stamp("ghz", key)


def setup_rust(args):
    if args.rust_server:
        return
    if not args.no_build:
        run(["cargo", "build", "--release", "--example", "server"], cwd=REPO, timeout=CORE_BUILD_TIMEOUT_S)


def rust_binary(args):
    return args.rust_server or os.path.join(TARGET, "release", "examples", "server")


def setup_interop(args):
    if not args.no_build:
        run(["bash", os.path.join(REPO, "tests", "interop", "setup.sh")])
    elif not os.path.exists(INTEROP_PY):
        die(f"{INTEROP_PY} is missing (run tests/interop/setup.sh, or drop --no-build)")


def setup_tonic(args):
    if args.no_build:
        return
    env = dict(os.environ, CARGO_TARGET_DIR=os.path.join(TARGET, "bench-tonic"))
    run(["cargo", "build", "--release", "--manifest-path", os.path.join(BENCH, "peers", "tonic", "Cargo.toml")], env=env)


def install_cpp_toolchain():
    """Debian's gRPC C++ (1.51), protoc and its gRPC plugin, with apt-get when missing."""
    have = lambda: (shutil.which("protoc") and shutil.which("grpc_cpp_plugin") and shutil.which("pkg-config")
                    and out_of(["pkg-config", "--exists", "grpc++"]) is not None)
    if not have():
        if os.geteuid() != 0:
            die("the C++ peer needs Debian's libgrpc++-dev protobuf-compiler-grpc pkg-config (run as root to install)")
        log("bench: installing libgrpc++-dev protobuf-compiler-grpc pkg-config with apt-get")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run(["apt-get", "update", "-qq"], env=env)
        run(["apt-get", "install", "-y", "-qq", "libgrpc++-dev", "protobuf-compiler-grpc", "pkg-config", "g++"], env=env)


def generate_cpp(gen):
    """greeter.pb.{h,cc} and greeter.grpc.pb.{h,cc} into `gen`."""
    os.makedirs(gen, exist_ok=True)
    run(["protoc", f"-I{os.path.dirname(PROTO)}", f"--cpp_out={gen}", f"--grpc_out={gen}",
         f"--plugin=protoc-gen-grpc={shutil.which('grpc_cpp_plugin')}", PROTO])


def setup_cpp(args):
    binary = os.path.join(TB, "cpp", "greeter-cpp-server")
    if args.no_build:
        return
    install_cpp_toolchain()
    src = os.path.join(BENCH, "peers", "cpp", "server.cc")
    key = digest(src, PROTO, out_of(["pkg-config", "--modversion", "grpc++"]) or "", out_of(["g++", "--version"]) or "")
    if fresh("cpp", key, binary):
        return
    gen = os.path.join(TB, "cpp")
    generate_cpp(gen)
    flags = out_of(["pkg-config", "--cflags", "--libs", "grpc++", "protobuf"]).split()
    run(["g++", "-O2", "-std=c++17", f"-I{gen}", "-o", binary, src,
         os.path.join(gen, "greeter.pb.cc"), os.path.join(gen, "greeter.grpc.pb.cc")] + flags + ["-lpthread"])
    set_stamp("cpp", key)


def grpcio_sys_sources():
    """The gRPC source tree grpcio-sys bundles (C-core 1.56.2 and its C++ API), from cargo's registry."""
    meta = json.loads(out_of(["cargo", "metadata", "--format-version", "1"], cwd=REPO) or "{}")
    for pkg in meta.get("packages", []):
        if pkg["name"] == "grpcio-sys":
            return os.path.join(os.path.dirname(pkg["manifest_path"]), "grpc")
    die("bench: cargo metadata names no grpcio-sys package")


def setup_cpp156(args):
    """The same server.cc on grpc++ built from grpcio-sys's own sources: the engine ours runs.
    Release build (-O3), as grpcio-sys builds C-core; Debian's protoc plugin writes the stubs."""
    out = os.path.join(TB, "cpp156")
    binary = os.path.join(out, "greeter-cpp-server")
    if args.no_build:
        return
    install_cpp_toolchain()
    grpc = grpcio_sys_sources()
    peer = os.path.join(BENCH, "peers", "cpp")
    key = digest(os.path.join(peer, "server.cc"), os.path.join(peer, "CMakeLists.txt"), PROTO, grpc,
                 out_of(["g++", "--version"]) or "")
    if fresh("cpp156", key, binary):
        return
    log("bench: building the C++ peer on grpcio-sys's C-core 1.56.2 (first time ~20 min on 2 cores)")
    gen = os.path.join(out, "gen")
    generate_cpp(gen)
    build = os.path.join(out, "build")
    run(["cmake", "-S", peer, "-B", build, "-DCMAKE_BUILD_TYPE=Release", f"-DGRPC_SOURCE_DIR={grpc}",
         f"-DGEN_DIR={gen}", "-DCMAKE_POLICY_VERSION_MINIMUM=3.5"])
    run(["cmake", "--build", build, "--target", "greeter-cpp-server", "--parallel", str(os.cpu_count() or 1)],
        timeout=CORE_BUILD_TIMEOUT_S)
    shutil.copy(os.path.join(build, "greeter-cpp-server"), binary)
    set_stamp("cpp156", key)


def setup_plot_venv():
    req = os.path.join(BENCH, "requirements.txt")
    py = os.path.join(TB, "venv", "bin", "python")
    key = digest(req, sys.version)
    if fresh("venv", key, py):
        return py
    log("bench: creating target/bench/venv for the plot (bench/requirements.txt)")
    shutil.rmtree(os.path.join(TB, "venv"), ignore_errors=True)
    run([sys.executable, "-m", "venv", os.path.join(TB, "venv")])
    run([py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", req])
    set_stamp("venv", key)
    return py


# --- servers ------------------------------------------------------------------------------

def server_spec(name, port, args):
    """(argv, extra env, worker description) for one server, ticks=1000 and interval 0."""
    if name == "rust":
        return ([rust_binary(args), "--addr", f"127.0.0.1:{port}", "--completion-queues", "1",
                 "--stock-ticks", str(TICKS), "--stock-interval", "0s", "--no-reflection", "--grace", "1s"],
                {"RUST_LOG": "info"}, "--completion-queues 1 (one grpcio CQ thread runs I/O and handlers)")
    if name == "go":
        return ([os.path.join(INTEROP, "bin", "interop-server"), "--host", "127.0.0.1", "--port", str(port),
                 "--ticks", str(TICKS), "--interval", "0s"], {"GOMAXPROCS": "1"}, "GOMAXPROCS=1")
    if name == "python":
        return ([INTEROP_PY, os.path.join(REPO, "tests", "interop", "python", "interop_server.py"),
                 "--port", str(port), "--ticks", str(TICKS), "--interval", "0"],
                {"PYTHONPATH": PYTHON_GEN, "PYTHONUNBUFFERED": "1"},
                "ThreadPoolExecutor(max_workers=16) as the interop server has it (one GIL)")
    if name == "tonic":
        return ([os.path.join(TARGET, "bench-tonic", "release", "greeter-tonic-peer"), "--port", str(port),
                 "--ticks", str(TICKS), "--interval-ms", "0"], {}, "tokio current_thread runtime (one thread)")
    if name in ("cpp", "cpp156"):
        return ([os.path.join(TB, name, "greeter-cpp-server"), "--port", str(port),
                 "--ticks", str(TICKS), "--interval-ms", "0"], {}, "async API, one ServerCompletionQueue, one thread")
    raise ValueError(name)
