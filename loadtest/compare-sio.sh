#!/usr/bin/env bash
# Side by side, in one run, on the same Postgres and Redis: the Socket.IO peer (../shared/peers/sio: a node with
# @socket.io/redis-adapter and Postgres persistence) and one GoChat node in cluster mode, both driven by the same
# 1:1 closed-loop workload at each sender count in SENDERS (default "16 32 64"), the two systems taking turns
# row by row (this VM's speed drifts, so each row's ratio compares runs made seconds apart); prints every row,
# each row's ratio, and the ratio of each system's best row (its throughput once saturated).
#   loadtest/compare-sio.sh postgres://postgres@127.0.0.1:5432/postgres redis://127.0.0.1:6379/ [seconds]
# GOCHAT_BIN=<path> measures that server binary (e.g. an earlier commit's release build) with this tree's load
# generator.
# Workloads: the peer's own throughput.js (S HTTP senders, 50 receivers, no auth, no acks) against
# gochat-loadgen direct (S authenticated senders to S friends, each message acked by its receiver), once with the
# senders on WebSockets and once on HTTP (`POST /api/messages/send`, like the peer's senders).
set -euo pipefail
cd "$(dirname "$0")/.."
admin=${1:?postgres admin URL}; redis=${2:?redis URL}; secs=${3:-10}
senders=${SENDERS:-16 32 64}
peer_src=${SIO_PEER_DIR:-../shared/peers/sio}
work=$(mktemp -d "${TMPDIR:-/tmp}/gochat-compare.XXXXXX")
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT

# Fresh databases for both, every run.
base=${admin%/*}
for db in sio_peer gochat_compare; do
  psql "$admin" -qc "DROP DATABASE IF EXISTS $db" && psql "$admin" -qc "CREATE DATABASE $db"
done

cp -r "$peer_src" "$work/sio"
(cd "$work/sio" && npm install --no-audit --no-fund --silent)
PORT=3001 PGURL="$base/sio_peer" REDIS_URL="$redis" node "$work/sio/server.js" >"$work/sio.log" 2>&1 &
pids+=($!); sio_pid=$!

cargo build --release -q -p gochat -p gochat-loadgen
eval "$(loadtest/cluster.sh 1 "$base/gochat_compare" "$redis" | tail -2)"
pids+=(${PIDS//,/ })
sleep 2

for s in $senders; do
  (cd "$work/sio" && node throughput.js 50 "$s" "$secs" http://127.0.0.1:3001) >"$work/sio-$s.json"
  grep VmRSS /proc/$sio_pid/status | awk '{print $2}' >"$work/sio-$s.rss"
  target/release/gochat-loadgen --json --url "$URLS" --pid "$PIDS" direct --pairs "$s" --inflight 1 \
    --seconds "$secs" >"$work/gochat-$s.json"
  target/release/gochat-loadgen --json --url "$URLS" --pid "$PIDS" direct --pairs "$s" --inflight 1 --http \
    --seconds "$secs" >"$work/gochat-http-$s.json"
done

python3 - "$work" $senders <<'PY'
import json, sys
work, counts = sys.argv[1], sys.argv[2:]
best_sio = 0
best = {"ws": 0, "http": 0}
print(f"{'senders':>7} | {'socket.io msg/s':>15} {'p50':>6} {'p99':>6} {'RSS MiB':>7} | {'path':>4} "
      f"{'gochat msg/s':>12} {'p50':>6} {'p99':>6} {'RSS MiB':>7} | ratio msg/s, p99")
for s in counts:
    sio = json.load(open(f"{work}/sio-{s}.json"))
    rss = int(open(f"{work}/sio-{s}.rss").read()) / 1024
    sio_rate = sio["send_per_s"]
    best_sio = max(best_sio, sio_rate)
    for path, name in (("ws", f"gochat-{s}"), ("http", f"gochat-http-{s}")):
        go = json.load(open(f"{work}/{name}.json"))
        lat, go_rate = go["latency"], go["delivered_per_sec"]
        best[path] = max(best[path], go_rate)
        errors = "" if not (go["errors"] or sio["errors"]) else f"  errors: gochat {go['errors']}, socket.io {sio['errors']}"
        print(f"{s:>7} | {sio_rate:>15,} {float(sio['p50_ms']):>6.1f} {float(sio['p99_ms']):>6.1f} {rss:>7.0f} | {path:>4} "
              f"{round(go_rate):>12,} {lat['p50_ms']:>6.1f} {lat['p99_ms']:>6.1f} {go['server_rss_kib']['peak'] / 1024:>7.0f} | "
              f"{go_rate / max(1, sio_rate):.2f}x, {lat['p99_ms'] / max(0.001, float(sio['p99_ms'])):.2f}x{errors}")
print(f"best of each (saturated): socket.io {best_sio:,} msg/s, gochat websocket {round(best['ws']):,} msg/s "
      f"({best['ws'] / max(1, best_sio):.2f}x), gochat http {round(best['http']):,} msg/s "
      f"({best['http'] / max(1, best_sio):.2f}x; {best['http'] / max(1, best['ws']):.2f} of websocket)")
PY
