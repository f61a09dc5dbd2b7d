#!/usr/bin/env bash
# Fault injection behind a load balancer: throwaway Postgres and Redis on free loopback ports, N GoChat nodes,
# nginx in front with deploy/nginx.conf's upstream rules, and for each fault one run of the load generator's
# `chaos` scenario (1:1 and group traffic from clients that reconnect, resume, dedup and retry) with the fault
# injected 5 s in. Prints a table per scenario and fails when any acknowledged message was lost, reordered or
# left a seq gap.
#
#   loadtest/chaos.sh                   every fault, 30 s of traffic each (about 10 minutes with the build)
#   loadtest/chaos.sh kill9 sigstop     only these
#   loadtest/chaos.sh --short           two faults, 20 s each (what scripts/test.sh runs)
#
# Environment: NODES (3), SECONDS_PER_RUN (30), RATE (50 msg/s), USERS (40), GOCHAT_BIN and LOADGEN_BIN (default:
# release builds of this tree), CHAOS_OUT (a file for the Markdown table), CHAOS_KEEP=1 keeps the work directory.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m[chaos]\033[0m %s\n' "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }

ALL=(kill9 sigterm sigstop redis-restart redis-flushall redis-down redis-frozen postgres-restart)
nodes=${NODES:-3}; seconds=${SECONDS_PER_RUN:-30}; rate=${RATE:-50}; users=${USERS:-40}
scenarios=()
for a in "$@"; do
  case "$a" in
    --short) scenarios=(kill9 postgres-restart); seconds=${SECONDS_PER_RUN:-20} ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) [[ " ${ALL[*]} " == *" $a "* ]] || die "unknown scenario $a (known: ${ALL[*]})"; scenarios+=("$a") ;;
  esac
done
[ ${#scenarios[@]} -gt 0 ] || scenarios=("${ALL[@]}")

install_pkg() {
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || die "missing $1: install it (apt-get install $1)"
  log "installing $1"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
command -v redis-server >/dev/null || install_pkg redis-server
command -v curl >/dev/null || install_pkg curl
command -v nginx >/dev/null || install_pkg nginx-light || install_pkg nginx
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "${PGBIN:-}/initdb" ] || { install_pkg postgresql; PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1); }

if [ -z "${GOCHAT_BIN:-}" ] || [ -z "${LOADGEN_BIN:-}" ]; then
  log "building the node and the load generator (release)"
  cargo build --release -q -p gochat -p gochat-loadgen
fi
export GOCHAT_BIN=${GOCHAT_BIN:-$PWD/target/release/gochat}
LOADGEN_BIN=${LOADGEN_BIN:-$PWD/target/release/gochat-loadgen}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export WORK; WORK=$(mktemp -d "${TMPDIR:-/tmp}/gochat-chaos.XXXXXX"); chmod 755 "$WORK"
export PGBIN PGPORT REDISPORT LBPORT NODES=$nodes
PGPORT=$(free_port); REDISPORT=$(free_port); LBPORT=$(free_port)
for i in $(seq 1 "$nodes"); do export "NODEPORT$i=$(free_port)"; done

as_pg() { runuser -u postgres -- "$@"; }
[ "$(id -u)" = 0 ] || as_pg() { "$@"; }
export -f as_pg

cleanup() {
  for f in "$WORK"/*.pid; do [ -f "$f" ] && { kill -CONT "$(cat "$f")" 2>/dev/null; kill -9 "$(cat "$f")" 2>/dev/null; }; done
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null
  as_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -m immediate stop >/dev/null 2>&1 || true
  if [ -n "${CHAOS_KEEP:-}" ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT INT TERM

# --- the engines and the nodes; each function is exported so that the fault commands (run by the load
# --- generator through `bash -c`) can call them.
start_redis() {
  # No persistence: a restart comes back empty, the hardest case for the hot inbox.
  # (In a subshell, so that the shell does not track it as a job and report its death.)
  (setsid redis-server --port "$REDISPORT" --bind 127.0.0.1 --save '' --appendonly no >>"$WORK/redis.log" 2>&1 &
    echo $! >"$WORK/redis.pid")
  for _ in $(seq 100); do redis-cli -p "$REDISPORT" ping >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "redis did not start" >&2; return 1
}
stop_redis() { redis-cli -p "$REDISPORT" shutdown nosave >/dev/null 2>&1 || true; rm -f "$WORK/redis.pid"; }
wait_ready() { # wait_ready <port>: /readyz 200 within 30 s
  for _ in $(seq 300); do curl -sf -o /dev/null "http://127.0.0.1:$1/readyz" && return 0; sleep 0.1; done
  echo "node on $1 not ready" >&2; return 1
}
start_node() { # start_node <i>
  local i=$1 port_var="NODEPORT$1"
  GOCHAT_LISTEN="127.0.0.1:${!port_var}" GOCHAT_DATA_DIR="$WORK/node$i" \
  GOCHAT_DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/postgres" GOCHAT_REDIS_URL="redis://127.0.0.1:$REDISPORT/" \
  GOCHAT_JWT_SECRET=chaos-secret-chaos-secret-chaos-secret GOCHAT_LOG=warn \
  GOCHAT_AUTH_RATE_PER_IP=1000000 GOCHAT_AUTH_RATE_PER_USERNAME=1000000 \
    bash -c 'setsid "$GOCHAT_BIN" serve >>"$WORK/node$1.log" 2>&1 & echo $! >"$WORK/node$1.pid"' _ "$i"
  wait_ready "${!port_var}"
}
node_pid() { cat "$WORK/node$1.pid"; }
# Running and not a zombie (a setsid'd node's parent is gone, and PID 1 in a container may not reap it).
alive() { [ -e "/proc/$1" ] && ! grep -qE '^[0-9]+ \(.*\) Z' "/proc/$1/stat" 2>/dev/null; }
stopped() { grep -qE '^[0-9]+ \(.*\) T' "/proc/$1/stat"; }
redis_gone() { # within 2 s
  for _ in $(seq 20); do redis-cli -p "$REDISPORT" ping >/dev/null 2>&1 || return 0; sleep 0.1; done; return 1
}
# Faults. Each returns once the fault is over (a killed node restarted, a stopped one continued), and fails (run
# with `bash -e`) when the fault did not take effect: the report then says so, and the run fails.
fault_kill9() {
  local pid; pid=$(node_pid 1); kill -9 "$pid"
  for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
  ! alive "$pid"
  sleep 2; start_node 1
}
fault_sigterm() {
  local pid; pid=$(node_pid 2); kill -TERM "$pid"
  for _ in $(seq 300); do alive "$pid" || break; sleep 0.1; done
  ! alive "$pid"
  start_node 2
}
sockets_of() { curl -s "http://127.0.0.1:$1/metrics" | awk '/^gochat_ws_connections /{print $2}'; }
fault_sigstop() {
  local pid; pid=$(node_pid 3)
  echo "node 3 holds $(sockets_of "$NODEPORT3") sockets when it is frozen" >&2
  kill -STOP "$pid"; sleep 0.2; stopped "$pid"; sleep 9.8; kill -CONT "$pid"
}
fault_redis_restart() { stop_redis; redis_gone; start_redis; }
fault_redis_flushall() { [ "$(redis-cli -p "$REDISPORT" flushall)" = OK ]; }
fault_redis_down() { stop_redis; redis_gone; sleep 10; start_redis; }
# Unreachable the other way: connections stay open and nothing answers (a partition that drops packets).
fault_redis_frozen() {
  local pid; pid=$(cat "$WORK/redis.pid")
  kill -STOP "$pid"; sleep 0.2; stopped "$pid"; sleep 9.8; kill -CONT "$pid"
}
fault_postgres_restart() { as_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -m fast -w restart >/dev/null; }
export -f start_redis stop_redis wait_ready start_node node_pid alive sockets_of stopped redis_gone fault_kill9 fault_sigterm fault_sigstop \
  fault_redis_restart fault_redis_flushall fault_redis_down fault_redis_frozen fault_postgres_restart

mkdir "$WORK/pg"; [ "$(id -u)" = 0 ] && chown postgres "$WORK/pg"
as_pg "$PGBIN/initdb" -D "$WORK/pg" -U postgres -A trust >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg/server.log" -w \
  -o "-p $PGPORT -k $WORK/pg -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
start_redis
upstreams=""
for i in $(seq 1 "$nodes"); do
  start_node "$i"
  port_var="NODEPORT$i"; upstreams="$upstreams server 127.0.0.1:${!port_var} max_fails=3 fail_timeout=2s;"
done
sed -e "s/server node1:8080[^;]*;/$upstreams/" -e '/server node[23]:8080/d' -e "s/listen 80;/listen 127.0.0.1:$LBPORT;/" \
  deploy/nginx.conf >"$WORK/nginx-site.conf"
printf 'pid %s/nginx.pid;\nerror_log %s/nginx.err;\nworker_rlimit_nofile 8192;\nevents { worker_connections 4096; }\nhttp { access_log off; include %s/nginx-site.conf; }\n' \
  "$WORK" "$WORK" "$WORK" >"$WORK/nginx.conf"
nginx -c "$WORK/nginx.conf"
for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$LBPORT/readyz" && break; sleep 0.1; done
log "$nodes nodes behind nginx on 127.0.0.1:$LBPORT; Postgres :$PGPORT, Redis :$REDISPORT; work dir $WORK"

status=0
for s in "${scenarios[@]}"; do
  # Redis and every node up and ready before the next fault.
  redis-cli -p "$REDISPORT" ping >/dev/null 2>&1 || start_redis
  for i in $(seq 1 "$nodes"); do
    port_var="NODEPORT$i"
    alive "$(node_pid "$i")" || start_node "$i"
    wait_ready "${!port_var}"
  done
  log "scenario $s: ${seconds} s of traffic at $rate msg/s from $users users, the fault at 5 s"
  errors_before=$(cat "$WORK"/node*.log | grep -cE 'ERROR|panicked' || true)
  # Bounded: the traffic, the 60 s settle bound and set-up; a run that outlives it has hung.
  if ! timeout $((seconds + 180)) "$LOADGEN_BIN" --url "http://127.0.0.1:$LBPORT" --json chaos --users "$users" --rate "$rate" \
      --seconds "$seconds" --fault-at 5 --fault "fault_${s//-/_}" >"$WORK/$s.json" 2>"$WORK/$s.err"; then
    log "the load generator failed in $s:"; cat "$WORK/$s.err" >&2; status=1; continue
  fi
  errors_after=$(cat "$WORK"/node*.log | grep -cE 'ERROR|panicked' || true)
  python3 - "$s" "$WORK/$s.json" "$((errors_after - errors_before))" >>"$WORK/rows" <<'PY'
import json, sys
s, r, logged = sys.argv[1], json.load(open(sys.argv[2])), int(sys.argv[3])
errs = ", ".join(f"{k} ×{v}" for k, v in sorted(r["errors"].items())) or "none"
print("|".join(["", s, str(r["acknowledged"]), str(r["lost"]), str(r["unacknowledged"]),
      str(r["duplicates_before_dedup"]), str(r["out_of_order"]), str(r["seq_gaps"]), str(r["disconnects"]),
      f'{r["back_after_s"]:.1f}', f'{r["slowest_send_ms"]:.0f}', f'{r["slowest_delivery_ms"]:.0f}', str(r["http_5xx"]), str(logged),
      errs, "ok" if r["ok"] else ("**FAILED** (the fault did not take effect)" if r["fault"] and not r["fault"]["succeeded"]
      else "**FAILED**"), ""]))
PY
  tail -n 1 "$WORK/rows" >&2
  python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["ok"] else 1)' "$WORK/$s.json" || status=1
done

{
  echo "Fault injection, $(date -u +%Y-%m-%d), $nodes nodes behind nginx, $users users, $rate msg/s for $seconds s" \
    "(\`loadtest/chaos.sh\`):"
  echo
  echo "| fault | acknowledged | lost | unacked | duplicates before dedup | out of order | seq gaps | disconnects | all back after (s) | slowest send (ms) | slowest delivery (ms) | HTTP 5xx | node errors logged | client-side errors | result |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"
  cat "$WORK/rows" 2>/dev/null
} | tee "${CHAOS_OUT:-/dev/null}"
[ $status -eq 0 ] && log "no acknowledged message lost, reordered or skipped" || log "FAILED"
exit $status
