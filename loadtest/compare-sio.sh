#!/usr/bin/env bash
# Side by side, in one run, on the same Postgres and Redis: the Socket.IO peer (../shared/peers/sio: a node with
# @socket.io/redis-adapter and Postgres persistence) and one GoChat node in cluster mode, both driven by a 1:1
# closed-loop workload of 16 senders; prints both results and the ratio.
#   loadtest/compare-sio.sh postgres://postgres@127.0.0.1:5432/postgres redis://127.0.0.1:6379/ [seconds]
# Workloads: the peer's own throughput.js (16 HTTP senders, 50 receivers, no auth, no acks) against
# gochat-loadgen direct (16 authenticated WebSocket senders to 16 friends, each message acked by its receiver).
set -euo pipefail
cd "$(dirname "$0")/.."
admin=${1:?postgres admin URL}; redis=${2:?redis URL}; secs=${3:-10}
peer_src=${SIO_PEER_DIR:-../shared/peers/sio}
work=$(mktemp -d "${TMPDIR:-/tmp}/gochat-compare.XXXXXX")
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT

base=${admin%/*}
psql "$admin" -qc "CREATE DATABASE sio_peer" 2>/dev/null || true
psql "$admin" -qc "CREATE DATABASE gochat_compare" 2>/dev/null || true

cp -r "$peer_src" "$work/sio"
(cd "$work/sio" && npm install --no-audit --no-fund --silent)
PORT=3001 PGURL="$base/sio_peer" REDIS_URL="$redis" node "$work/sio/server.js" >"$work/sio.log" 2>&1 &
pids+=($!); sio_pid=$!
sleep 2
sio=$(cd "$work/sio" && node throughput.js 50 16 "$secs" http://127.0.0.1:3001)
sio_rss=$(grep VmRSS /proc/$sio_pid/status | awk '{print $2}')
kill "$sio_pid"

cargo build --release -q -p gochat -p gochat-loadgen
eval "$(loadtest/cluster.sh 1 "$base/gochat_compare" "$redis" | tail -2)"
pids+=(${PIDS//,/ })
gochat=$(target/release/gochat-loadgen --json --url "$URLS" --pid "$PIDS" direct --pairs 16 --inflight 1 --seconds "$secs")

python3 - "$sio" "$gochat" "$sio_rss" <<'PY'
import json, sys
sio, go, sio_rss = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
print("socket.io peer:", json.dumps(sio), f"rss {sio_rss} KiB")
lat = go["latency"]
print("gochat:        ", json.dumps({"msgs_per_s": round(go["delivered_per_sec"]), "p50_ms": lat["p50_ms"],
      "p99_ms": lat["p99_ms"], "errors": go["errors"], "rss_kib": go["server_rss_kib"]}))
print(f"ratio (gochat / socket.io): throughput {go['delivered_per_sec'] / max(1, sio['send_per_s']):.2f}x, "
      f"p99 {lat['p99_ms'] / max(0.001, float(sio['p99_ms'])):.2f}x")
PY
