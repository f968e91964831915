#!/usr/bin/env bash
# Prepares the Go and Python side of the cross-language interop tests: a venv with the
# pinned grpcio, the Go protoc plugins, generated stubs and the Go binaries.
#
#   bash tests/interop/setup.sh [OUT_DIR]        (default: <repo>/target/interop)
#   WITH_JAEGER=1 bash tests/interop/setup.sh    also Jaeger, for the trace tests
#
# Idempotent: every step keeps a stamp of its inputs in OUT_DIR/stamps and is skipped
# while the stamp matches and its outputs exist. Progress goes to stderr.
set -euo pipefail

# Keep in step with tests/interop/go/go.mod (generated code must not be newer than the runtime).
PROTOC_GEN_GO_VERSION=v1.36.12     # google.golang.org/protobuf
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2  # google.golang.org/grpc/cmd/protoc-gen-go-grpc
GRPCURL_VERSION=v1.9.3             # github.com/fullstorydev/grpcurl, for the reflection tests
GRPC_GO_INTEROP_VERSION=v1.85.0    # google.golang.org/grpc/interop/{client,server}, the official cases
GRPC_HEALTH_PROBE_VERSION=v0.4.62  # github.com/grpc-ecosystem/grpc-health-probe, what platforms probe with
JAEGER_VERSION=v1.76.0             # github.com/jaegertracing/jaeger/cmd/jaeger, the trace tests' collector
TOXIPROXY_VERSION=v2.5.0           # github.com/Shopify/toxiproxy/v2/cmd/server, the fault tests' TCP proxy
# The xDS tests' control plane (go/cmd/xds-control-plane, on github.com/envoyproxy/go-control-plane
# v0.14.0) and grpc-go's xDS client (go/cmd/xds-client) are pinned in go/go.mod; go-control-plane
# at the version grpc-go (above) itself requires, so it moves no other module.

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUT=${1:-$REPO/target/interop}

say() { echo "interop-setup: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

command -v go >/dev/null ||
  die "'go' not found on PATH; install Go >= 1.26 (https://go.dev/dl/; an older go >= 1.21 fetches 1.26 itself via GOTOOLCHAIN=auto)"
command -v python3 >/dev/null ||
  die "'python3' not found on PATH; install Python >= 3.9 with venv (apt-get install python3 python3-venv)"
python3 -c 'import venv, ensurepip' 2>/dev/null ||
  die "python3 cannot create virtual environments; install python3-venv (apt-get install python3-venv)"

mkdir -p "$OUT/bin" "$OUT/stamps"
OUT=$(cd "$OUT" && pwd)
STAMPS=$OUT/stamps
BIN=$OUT/bin
PY=$OUT/venv/bin/python
export GOWORK=off # never let a user's go.work pull these modules into something else

# Parallel test binaries may all call us at once: one runs, the others wait, then skip.
command -v flock >/dev/null ||
  die "'flock' not found on PATH; install util-linux (apt-get install util-linux): parallel tests share this set-up"
exec 9>"$OUT/.setup.lock"
flock 9

step=start
TMP=$(mktemp -d)
trap 'rc=$?; rm -rf "$TMP"; [[ $rc == 0 ]] || say "FAILED (exit $rc) during: $step; see the output above"' EXIT

# fresh NAME KEY OUTPUT...: the stamp NAME holds KEY and every OUTPUT exists.
fresh() {
  local name=$1 key=$2 f
  shift 2
  [[ -f $STAMPS/$name && $(<"$STAMPS/$name") == "$key" ]] || return 1
  for f; do [[ -e $f ]] || return 1; done
}
stamp() { echo "$2" >"$STAMPS/$1"; }
# digest: sha256 of stdin.
digest() { sha256sum | cut -c1-64; }
# install_if_changed SRC DEST: leave DEST (and its mtime) alone when already identical.
install_if_changed() { cmp -s "$1" "$2" || { mkdir -p "$(dirname "$2")" && cp "$1" "$2"; }; }

# --- 1. Python venv ------------------------------------------------------------------
step="python venv"
REQ=$HERE/python/requirements.txt
key=$({ python3 -VV; cat "$REQ"; } | digest)
if fresh venv "$key" "$PY"; then
  say "venv up to date"
else
  say "creating $OUT/venv and installing python/requirements.txt"
  rm -rf "$OUT/venv" "$STAMPS/venv"
  python3 -m venv "$OUT/venv"
  "$PY" -m pip install --quiet --disable-pip-version-check -r "$REQ"
  stamp venv "$key"
fi

# --- 2. Go protoc plugins ------------------------------------------------------------
step="go install protoc plugins"
plugins_key="$(go env GOVERSION) $PROTOC_GEN_GO_VERSION $PROTOC_GEN_GO_GRPC_VERSION"
if fresh plugins "$plugins_key" "$BIN/protoc-gen-go" "$BIN/protoc-gen-go-grpc"; then
  say "protoc plugins up to date"
else
  say "installing protoc-gen-go@$PROTOC_GEN_GO_VERSION, protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION"
  GOBIN=$BIN go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION"
  GOBIN=$BIN go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION"
  stamp plugins "$plugins_key"
fi

# --- 2b. grpcurl ---------------------------------------------------------------------
step="go install grpcurl"
grpcurl_key="$(go env GOVERSION) $GRPCURL_VERSION"
if fresh grpcurl "$grpcurl_key" "$BIN/grpcurl"; then
  say "grpcurl up to date"
else
  say "installing grpcurl@$GRPCURL_VERSION"
  GOBIN=$BIN go install "github.com/fullstorydev/grpcurl/cmd/grpcurl@$GRPCURL_VERSION"
  stamp grpcurl "$grpcurl_key"
fi

# --- 2b'. grpc_health_probe ---------------------------------------------------------
step="go install grpc-health-probe"
probe_key="$(go env GOVERSION) $GRPC_HEALTH_PROBE_VERSION"
if fresh probe "$probe_key" "$BIN/grpc-health-probe"; then
  say "grpc-health-probe up to date"
else
  say "installing grpc-health-probe@$GRPC_HEALTH_PROBE_VERSION"
  GOBIN=$BIN go install "github.com/grpc-ecosystem/grpc-health-probe@$GRPC_HEALTH_PROBE_VERSION"
  stamp probe "$probe_key"
fi

# --- 2b'''. Toxiproxy -------------------------------------------------------------
# Shopify's fault-injecting TCP proxy (latency, bandwidth, resets, black holes), driven by the
# fault tests over its HTTP API. `go install` names it `server`; it is kept as toxiproxy-server.
step="go install toxiproxy"
toxiproxy_key="$(go env GOVERSION) $TOXIPROXY_VERSION"
if fresh toxiproxy "$toxiproxy_key" "$BIN/toxiproxy-server"; then
  say "toxiproxy-server up to date"
else
  say "installing toxiproxy-server@$TOXIPROXY_VERSION"
  GOBIN=$TMP/toxiproxy go install "github.com/Shopify/toxiproxy/v2/cmd/server@$TOXIPROXY_VERSION"
  install_if_changed "$TMP/toxiproxy/server" "$BIN/toxiproxy-server"
  stamp toxiproxy "$toxiproxy_key"
fi

# --- 2b''. Jaeger (the trace tests' collector and query API), with WITH_JAEGER=1 --------
# A large build (the OpenTelemetry Collector inside): minutes the first time, then stamped;
# only the trace tests ask for it.
# Jaeger's go.mod has a replace directive, which `go install module@version` refuses; so the
# module is downloaded and built as the main module, in its own (read-only) directory.
step="go build jaeger"
jaeger_key="$(go env GOVERSION) $JAEGER_VERSION"
if [[ ${WITH_JAEGER:-0} != 1 ]] || fresh jaeger "$jaeger_key" "$BIN/jaeger"; then
  [[ ${WITH_JAEGER:-0} != 1 ]] || say "jaeger up to date"
else
  say "building jaeger $JAEGER_VERSION (a large build: a few minutes, once)"
  jaeger_dir=$(go mod download -json "github.com/jaegertracing/jaeger@$JAEGER_VERSION" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
  (cd "$jaeger_dir" && GOFLAGS=-mod=mod go build -buildvcs=false -o "$BIN/jaeger" ./cmd/jaeger)
  stamp jaeger "$jaeger_key"
fi

# --- 2c. grpc-go's official interop client and server -------------------------------
# `go install` names them `client` and `server`; they are kept as grpc-go-interop-*, next to
# the grpc-go module's test certificates (testdata/: ca.pem, server1.pem, server1.key).
step="go install grpc-go interop client and server"
grpcgo_key="$(go env GOVERSION) $GRPC_GO_INTEROP_VERSION"
GRPCGO_TESTDATA=$OUT/grpc-go-testdata
if fresh grpcgo "$grpcgo_key" "$BIN/grpc-go-interop-client" "$BIN/grpc-go-interop-server" \
  "$GRPCGO_TESTDATA/ca.pem" "$GRPCGO_TESTDATA/server1.pem" "$GRPCGO_TESTDATA/server1.key"; then
  say "grpc-go interop client and server up to date"
else
  say "installing google.golang.org/grpc/interop/{client,server}@$GRPC_GO_INTEROP_VERSION"
  GOBIN=$TMP/grpcgo go install "google.golang.org/grpc/interop/client@$GRPC_GO_INTEROP_VERSION" \
    "google.golang.org/grpc/interop/server@$GRPC_GO_INTEROP_VERSION"
  install_if_changed "$TMP/grpcgo/client" "$BIN/grpc-go-interop-client"
  install_if_changed "$TMP/grpcgo/server" "$BIN/grpc-go-interop-server"
  grpcgo_dir=$(go mod download -json "google.golang.org/grpc@$GRPC_GO_INTEROP_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [[ -d $grpcgo_dir/testdata ]] || die "no testdata/ in the grpc-go module (looked in '$grpcgo_dir')"
  for f in ca.pem server1.pem server1.key; do install_if_changed "$grpcgo_dir/testdata/$f" "$GRPCGO_TESTDATA/$f"; done
  stamp grpcgo "$grpcgo_key"
fi

# --- 3. Generated stubs --------------------------------------------------------------
# protoc is grpcio-tools' bundled one, so the venv pins its version too.
step="generate stubs"
PROTO=$REPO/proto/greeter.proto
GO_GEN=$HERE/go/proto
TUT_GEN=$HERE/tutorial/proto
key=$({ cat "$PROTO" "$REQ"; echo "$plugins_key"; } | digest)
if fresh stubs "$key" "$OUT/python_gen/greeter_pb2.py" "$OUT/python_gen/greeter_pb2_grpc.py" \
  "$GO_GEN/greeter.pb.go" "$GO_GEN/greeter_grpc.pb.go" "$TUT_GEN/greeter.proto" \
  "$TUT_GEN/greeter.pb.go" "$TUT_GEN/greeter_grpc.pb.go" "$TUT_GEN/greeter_pb2.py" "$TUT_GEN/greeter_pb2_grpc.py"; then
  say "stubs up to date"
else
  say "generating Python and Go stubs from proto/greeter.proto"
  protoc() { (cd "$REPO" && "$PY" -m grpc_tools.protoc -I=proto "$@" proto/greeter.proto); }
  # go_package is "./proto"; the M option names the real import path of each module.
  protoc_go() {
    mkdir -p "$1"
    protoc --plugin=protoc-gen-go="$BIN/protoc-gen-go" --plugin=protoc-gen-go-grpc="$BIN/protoc-gen-go-grpc" \
      --go_out="$1" --go_opt=paths=source_relative,Mgreeter.proto="$2" \
      --go-grpc_out="$1" --go-grpc_opt=paths=source_relative,Mgreeter.proto="$2"
  }
  mkdir -p "$TMP/py"
  protoc --python_out="$TMP/py" --grpc_python_out="$TMP/py"
  protoc_go "$TMP/go" greeter-interop/proto
  protoc_go "$TMP/tut" grpc-demo/proto
  # Generate in TMP first so a failed run never leaves half-written sources behind.
  for f in greeter_pb2.py greeter_pb2_grpc.py; do
    install_if_changed "$TMP/py/$f" "$OUT/python_gen/$f"
    install_if_changed "$TMP/py/$f" "$TUT_GEN/$f"
  done
  for f in greeter.pb.go greeter_grpc.pb.go; do
    install_if_changed "$TMP/go/$f" "$GO_GEN/$f"
    install_if_changed "$TMP/tut/$f" "$TUT_GEN/$f"
  done
  install_if_changed "$PROTO" "$TUT_GEN/greeter.proto"
  stamp stubs "$key"
fi

# --- 4. Go binaries ------------------------------------------------------------------
step="go build"
key=$({ go env GOVERSION; cd "$HERE" &&
  find go tutorial -name '*.go' -o -name go.mod -o -name go.sum | LC_ALL=C sort | xargs sha256sum; } | digest)
if fresh gobuild "$key" "$BIN/interop-client" "$BIN/interop-server" "$BIN/vectors-go" "$BIN/lb-client" \
  "$BIN/otel-client" "$BIN/otel-server" "$BIN/scale-driver" "$BIN/compress-check" "$BIN/otlp-sink" \
  "$BIN/authz-server" "$BIN/xds-control-plane" "$BIN/xds-client" "$BIN/tutorial-client"; then
  say "Go binaries up to date"
else
  say "building interop-client, interop-server, vectors-go, lb-client, otel-client, otel-server, scale-driver, compress-check, otlp-sink, authz-server, xds-control-plane, xds-client, tutorial-client into $BIN"
  (cd "$HERE/go" && go build -buildvcs=false -o "$BIN/" ./cmd/...)
  (cd "$HERE/tutorial" && go build -buildvcs=false -o "$BIN/tutorial-client" ./client)
  stamp gobuild "$key"
fi

say "ready: $OUT"
