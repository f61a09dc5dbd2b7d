#!/usr/bin/env bash
# The one command that runs every test: provisions throwaway Postgres and Redis on free loopback ports
# (installing the Debian packages when they are missing and we are root), runs the whole suite on both
# backends (SQLite + in-process, Postgres + Redis), and tears everything down. Extra arguments go to the
# test runner, e.g. `scripts/test.sh accounts` to filter.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m[test.sh]\033[0m %s\n' "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }

apt_updated=""
install_pkg() { # install_pkg <debian package>...
  [ "$(id -u)" = 0 ] || die "missing $* and not root: install it (apt-get install $*) and rerun"
  command -v apt-get >/dev/null || die "missing $* and no apt-get to install it with"
  if [ -z "$apt_updated" ]; then log "apt-get update"; apt-get update -qq; apt_updated=1; fi
  log "installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # wait_http <url>: until it answers 2xx, at most 10 s
  python3 - "$1" <<'PY'
import sys, time, urllib.request
for _ in range(100):
    try:
        urllib.request.urlopen(sys.argv[1], timeout=1)
        sys.exit(0)
    except Exception:
        time.sleep(0.1)
sys.exit(1)
PY
}

run_rust() {
  if cargo nextest --version >/dev/null 2>&1; then
    log "running the suite with cargo nextest (every backend test runs on sqlite:: and postgres::)"
    cargo nextest run --workspace --no-fail-fast "$@"
  else
    log "running the suite with cargo test (cargo-nextest not installed)"
    cargo test --workspace --no-fail-fast "$@"
  fi
}

# The web client in headless Chromium, against a fresh embedded node.
run_browser() {
  command -v chromium >/dev/null || install_pkg chromium
  command -v node >/dev/null || install_pkg nodejs npm
  local dir port node_pid status
  dir=$(mktemp -d "${TMPDIR:-/tmp}/gochat-e2e.XXXXXX")
  port=$(free_port)
  (cd tests/browser && npm ci --no-audit --no-fund --silent)
  cargo build -q --bin gochat
  GOCHAT_LISTEN="127.0.0.1:$port" GOCHAT_DATA_DIR="$dir" GOCHAT_LOG=warn target/debug/gochat >"$dir/log" 2>&1 &
  node_pid=$!
  wait_http "http://127.0.0.1:$port/readyz" || { cat "$dir/log"; die "the node for the browser tests did not start"; }
  log "running the browser tests (headless Chromium) against 127.0.0.1:$port"
  status=0
  (cd tests/browser && GOCHAT_E2E_URL="http://127.0.0.1:$port" GOCHAT_E2E_PID="$node_pid" CHROMIUM="$(command -v chromium)" node --test --test-concurrency=1) || status=$?
  kill "$node_pid" 2>/dev/null
  rm -rf "$dir"
  return $status
}

# Schemathesis over the OpenAPI document against a fresh node: on the embedded default, and (when the suite has
# Postgres, Redis and S3) on a cluster-mode node. Every check, positive and negative data, the stateful phase;
# bounded by SCHEMATHESIS_SECONDS per node (default 150). Rate limits are raised so that every operation's logic
# is reached instead of its 429.
run_schemathesis() {
  local mode=$1 dir port node_pid status=0 db
  dir=$(mktemp -d "${TMPDIR:-/tmp}/gochat-st.XXXXXX")
  port=$(free_port)
  local env=(GOCHAT_LISTEN="127.0.0.1:$port" GOCHAT_DATA_DIR="$dir" GOCHAT_LOG=warn
    GOCHAT_AUTH_RATE_PER_IP=1000000 GOCHAT_AUTH_RATE_PER_USERNAME=1000000 GOCHAT_UPLOAD_RATE_PER_MIN=1000000
    GOCHAT_SEND_RATE=10000000 GOCHAT_WS_FRAME_RATE=10000000 GOCHAT_INVITE_RATE_PER_MIN=10000000)
  if [ "$mode" = postgres ]; then
    db="gochat_st_$RANDOM$RANDOM"
    (cd / && as_pg psql -h 127.0.0.1 -p "$PGPORT" -U postgres -qc "CREATE DATABASE $db" >/dev/null)
    env+=(GOCHAT_DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/$db" GOCHAT_REDIS_URL="$GOCHAT_TEST_REDIS_URL"
      GOCHAT_REDIS_PREFIX="st$RANDOM:" GOCHAT_JWT_SECRET=schemathesis-secret-schemathesis-secret-0123
      GOCHAT_S3_ENDPOINT="$GOCHAT_TEST_S3_ENDPOINT" GOCHAT_S3_BUCKET="gochat-st-$RANDOM"
      GOCHAT_S3_ACCESS_KEY="$GOCHAT_TEST_S3_ACCESS_KEY" GOCHAT_S3_SECRET_KEY="$GOCHAT_TEST_S3_SECRET_KEY")
  fi
  cargo build -q --bin gochat
  env "${env[@]}" target/debug/gochat >"$dir/log" 2>&1 &
  node_pid=$!
  wait_http "http://127.0.0.1:$port/readyz" || { cat "$dir/log"; die "the node for schemathesis ($mode) did not start"; }
  log "running schemathesis against a $mode node on 127.0.0.1:$port (${SCHEMATHESIS_SECONDS:-150} s)"
  scripts/schemathesis.sh "http://127.0.0.1:$port" "${SCHEMATHESIS_SECONDS:-150}" || status=$?
  kill "$node_pid" 2>/dev/null
  wait "$node_pid" 2>/dev/null || true
  if grep -qE 'ERROR|panicked' "$dir/log"; then
    log "the $mode node logged a server error or panic:"; grep -E 'ERROR|panicked' "$dir/log" | head -20; status=1
  fi
  rm -rf "$dir"
  [ $status -eq 0 ] && log "schemathesis ($mode): no failures" || log "schemathesis ($mode): FAILED"
  return $status
}

# The new web client (webapp/, served at /app/; issue 20): its API types are current with openapi/openapi.json, it
# type-checks, its unit tests (the message store) pass, and the committed build (embedded by the node, so that a
# machine with only Rust serves it) is exactly what building it again gives.
run_webapp() {
  command -v node >/dev/null || install_pkg nodejs npm
  log "checking the web client (webapp/): generated API types, tsc, vitest, the committed build"
  (cd webapp && npm ci --no-audit --no-fund --silent && npm run -s check:api && npm run -s typecheck \
    && npm test --silent && npm run -s build >/dev/null) || return 1
  if [ -n "$(git status --porcelain -- webapp/dist)" ]; then
    git status --porcelain -- webapp/dist >&2
    log "webapp/dist differs from its sources: run \`npm run build\` in webapp/ and commit webapp/dist"; return 1
  fi
}

# The short fault-injection run: three debug nodes behind nginx, a node killed with SIGKILL and Postgres restarted
# under traffic; fails on any lost, reordered or skipped acknowledged message (loadtest/chaos.sh, which
# provisions its own Postgres, Redis and nginx).
run_chaos() {
  cargo build -q -p gochat -p gochat-loadgen --bin gochat --bin gochat-loadgen
  log "running the short chaos suite (loadtest/chaos.sh --short)"
  GOCHAT_BIN="$PWD/target/debug/gochat" LOADGEN_BIN="$PWD/target/debug/gochat-loadgen" loadtest/chaos.sh --short
}

run_suite() {
  local status=0
  run_rust "$@" || status=$?
  # A filtered run (arguments given) is a developer narrowing down; the browser test and schemathesis run with
  # the whole suite.
  if [ $# -eq 0 ]; then
    run_browser || status=$?
    scripts/check-chart.sh || status=$?
    python3 scripts/check-k6.py || status=$?
    run_webapp || status=$?
    run_chaos || status=$?
    run_schemathesis sqlite || status=$?
    if [ -n "${PGPORT:-}" ]; then run_schemathesis postgres || status=$?; fi
  fi
  return $status
}

# A developer who keeps Postgres, Redis and an S3 server running can point the suite at them instead.
if [ -n "${GOCHAT_TEST_POSTGRES_URL:-}" ] && [ -n "${GOCHAT_TEST_REDIS_URL:-}" ] && [ -n "${GOCHAT_TEST_S3_ENDPOINT:-}" ]; then
  log "using the given GOCHAT_TEST_POSTGRES_URL, GOCHAT_TEST_REDIS_URL and GOCHAT_TEST_S3_*"
  run_suite "$@"
  exit $?
fi

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
[ -n "$(pg_bin)" ] && [ -x "$(pg_bin)/initdb" ] || install_pkg postgresql
PGBIN=$(pg_bin); [ -x "$PGBIN/initdb" ] || die "no Postgres server binaries under /usr/lib/postgresql/*/bin"
command -v redis-server >/dev/null || install_pkg redis-server
command -v redis-server >/dev/null || die "redis-server not found"

# The S3 server: s3s-fs, a real S3 protocol server with SigV4 (MinIO itself is in no registry we can reach).
# Installed once with cargo into a cache that outlives the checkout.
S3S_VERSION=0.14.1
S3S_ROOT="${GOCHAT_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gochat-tools}/s3s-fs-$S3S_VERSION"
S3S="$S3S_ROOT/bin/s3s-fs"
if [ ! -x "$S3S" ]; then
  log "installing s3s-fs $S3S_VERSION into $S3S_ROOT (once; takes a few minutes)"
  cargo install "s3s-fs@$S3S_VERSION" --features binary --locked --root "$S3S_ROOT" --quiet \
    || die "could not install s3s-fs"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/gochat-test.XXXXXX")
chmod 755 "$WORK"
PGPORT=$(free_port); REDISPORT=$(free_port)

as_pg() { # initdb refuses root: run the server as the postgres user when we are root
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

cleanup() {
  set +e
  [ -f "$WORK/pg/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -m immediate stop >/dev/null 2>&1
  [ -f "$WORK/redis.pid" ] && kill "$(cat "$WORK/redis.pid")" 2>/dev/null
  [ -f "$WORK/redis-tls.pid" ] && kill "$(cat "$WORK/redis-tls.pid")" 2>/dev/null
  [ -n "${S3S_PID:-}" ] && kill "$S3S_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# A throwaway CA and a server certificate for the name `localhost` only (not 127.0.0.1): the TLS tests connect by
# name with verification, and by address to see a mismatched certificate refused.
command -v openssl >/dev/null || install_pkg openssl
mkdir -p "$WORK/tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=gochat test CA" \
  -keyout "$WORK/tls/ca.key" -out "$WORK/tls/ca.pem" >/dev/null 2>&1 || die "openssl: CA"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
  -keyout "$WORK/tls/server.key" -out "$WORK/tls/server.csr" >/dev/null 2>&1 || die "openssl: key"
printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$WORK/tls/ext"
openssl x509 -req -in "$WORK/tls/server.csr" -CA "$WORK/tls/ca.pem" -CAkey "$WORK/tls/ca.key" -CAcreateserial \
  -days 2 -extfile "$WORK/tls/ext" -out "$WORK/tls/server.pem" >/dev/null 2>&1 || die "openssl: certificate"
chmod 755 "$WORK/tls"; chmod 644 "$WORK/tls/"*.pem; chmod 600 "$WORK/tls/server.key"
[ "$(id -u)" = 0 ] && chown postgres "$WORK/tls/server.key"

log "starting Postgres ($PGBIN) on 127.0.0.1:$PGPORT (TLS offered, not required)"
mkdir -p "$WORK/pg"
[ "$(id -u)" = 0 ] && chown postgres "$WORK/pg"
as_pg "$PGBIN/initdb" -D "$WORK/pg" -U postgres -A trust --no-sync >"$WORK/initdb.log" 2>&1 \
  || { cat "$WORK/initdb.log"; die "initdb failed"; }
as_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg/server.log" -w -t 60 \
  -o "-p $PGPORT -k $WORK/pg -c listen_addresses=127.0.0.1 -c max_connections=500 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c ssl=on -c ssl_cert_file=$WORK/tls/server.pem -c ssl_key_file=$WORK/tls/server.key" \
  start >/dev/null || { cat "$WORK/pg/server.log"; die "Postgres did not start"; }

log "starting Redis on 127.0.0.1:$REDISPORT"
redis-server --port "$REDISPORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
  --pidfile "$WORK/redis.pid" --logfile "$WORK/redis.log" --dir "$WORK" >/dev/null
for _ in $(seq 50); do redis-cli -p "$REDISPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$REDISPORT" ping >/dev/null || die "Redis did not start"
REDISTLSPORT=$(free_port)
log "starting Redis over TLS on 127.0.0.1:$REDISTLSPORT"
# (Redis reads its key as root or as itself; the key is the postgres user's, so give Redis a copy.)
cp "$WORK/tls/server.key" "$WORK/tls/redis.key"; chmod 600 "$WORK/tls/redis.key"
redis-server --port 0 --tls-port "$REDISTLSPORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
  --tls-cert-file "$WORK/tls/server.pem" --tls-key-file "$WORK/tls/redis.key" --tls-ca-cert-file "$WORK/tls/ca.pem" \
  --tls-auth-clients no --pidfile "$WORK/redis-tls.pid" --logfile "$WORK/redis-tls.log" --dir "$WORK" >/dev/null \
  || die "redis-server cannot serve TLS"
S3PORT=$(free_port)
log "starting s3s-fs on 127.0.0.1:$S3PORT"
mkdir -p "$WORK/s3"
"$S3S" --host 127.0.0.1 --port "$S3PORT" --access-key gochat-test --secret-key gochat-test-secret "$WORK/s3" \
  >"$WORK/s3s.log" 2>&1 &
S3S_PID=$!
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$S3PORT") 2>/dev/null && break
  sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$S3PORT") 2>/dev/null || { cat "$WORK/s3s.log"; die "s3s-fs did not start"; }

export GOCHAT_TEST_S3_ENDPOINT="http://127.0.0.1:$S3PORT"
export GOCHAT_TEST_S3_ACCESS_KEY=gochat-test
export GOCHAT_TEST_S3_SECRET_KEY=gochat-test-secret
export GOCHAT_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$PGPORT/postgres"
export GOCHAT_TEST_REDIS_URL="redis://127.0.0.1:$REDISPORT/"
export GOCHAT_TEST_TLS_CA="$WORK/tls/ca.pem"
export GOCHAT_TEST_REDIS_TLS_PORT="$REDISTLSPORT"

run_suite "$@"
