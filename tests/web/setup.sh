#!/usr/bin/env bash
# Prepares the browser tests (tests/web.rs): Debian's chromium, the page's npm packages as
# web/package-lock.json pins them (npm ci, into web/node_modules), and the page's build
# (web/dist).
#
#   bash tests/web/setup.sh
#
# Idempotent: npm ci and the build keep a stamp of their inputs in target/web/stamps and are
# skipped while it matches. Concurrent runs wait for each other. Progress goes to stderr.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
WEB=$REPO/web
STAMPS=$REPO/target/web/stamps

say() { echo "web-setup: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

command -v flock >/dev/null || die "'flock' not found on PATH; install util-linux (apt-get install util-linux)"

mkdir -p "$STAMPS"
exec 9>"$STAMPS/../setup.lock"
flock 9

# Debian packages: installed with apt-get (as root) when missing, one install at a time
# across the tests (the same lock as tests/common/tools.rs's installs).
apt_install() { # COMMAND PACKAGE...
  local cmd=$1; shift
  command -v "$cmd" >/dev/null && return 0
  say "installing $* with apt-get (once)"
  [ "$(id -u)" = 0 ] || die "'$cmd' is missing and installing it needs root: apt-get install $*"
  flock /tmp/greeter-tests-apt.lock sh -c "command -v $cmd >/dev/null || (apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive timeout 1200 apt-get install -y -qq --no-install-recommends $*)" >&2 ||
    die "apt-get install $* failed; install it by hand and run the tests again"
}

apt_install node nodejs npm
apt_install npm npm
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)' ||
  die "Node.js $(node --version) is too old; the page's tools need Node.js >= 18"
apt_install chromium chromium

stamp_of() { cat "$@" | sha256sum | cut -d' ' -f1; }
fresh() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }

deps=$(stamp_of "$WEB/package.json" "$WEB/package-lock.json"; node --version)
if ! fresh npm-ci "$deps" || [ ! -d "$WEB/node_modules" ]; then
  say "npm ci (the page's packages, pinned by web/package-lock.json)"
  (cd "$WEB" && timeout 600 npm ci --no-audit --no-fund --loglevel=error) >&2 || die "npm ci failed (the npm registry must be reachable)"
  echo "$deps" > "$STAMPS/npm-ci"
fi

inputs=$(cd "$WEB" && stamp_of build.mjs buf.gen.yaml tsconfig.json index.html style.css src/*.ts "$REPO/proto/greeter.proto"; echo "$deps")
if ! fresh build "$inputs" || [ ! -f "$WEB/dist/app.js" ]; then
  say "npm run build (web/dist)"
  (cd "$WEB" && timeout 300 npm run --silent build) >&2 || die "building the page failed (its output is above)"
  echo "$inputs" > "$STAMPS/build"
fi
say "ready: $(command -v chromium), web/dist"
