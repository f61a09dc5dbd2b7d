#!/usr/bin/env bash
# Starts N GoChat nodes (release build) on 127.0.0.1:18100.. against the given Postgres and Redis, prints their
# URLs and pids, and keeps them until killed. For benchmarks: `loadtest/cluster.sh 2 postgres://… redis://…`.
# Stop them with `pkill -f 'gochat serve'`. GOCHAT_BIN=<path> runs that binary instead of building this tree's (to
# measure an earlier commit's build against this one).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1}; db=${2:?postgres URL}; redis=${3:?redis URL}
bin=${GOCHAT_BIN:-target/release/gochat}
[ -n "${GOCHAT_BIN:-}" ] || cargo build --release -q -p gochat
prefix="bench$(date +%s):"
urls=(); pids=()
for i in $(seq 0 $((n - 1))); do
  port=$((18100 + i))
  dir=$(mktemp -d)
  GOCHAT_LISTEN=127.0.0.1:$port GOCHAT_DATA_DIR=$dir GOCHAT_DATABASE_URL=$db GOCHAT_REDIS_URL=$redis \
  GOCHAT_REDIS_PREFIX=$prefix GOCHAT_JWT_SECRET=benchmark-secret-benchmark-secret-0123 \
  GOCHAT_AUTH_RATE_PER_IP=1000000 GOCHAT_AUTH_RATE_PER_USERNAME=1000000 GOCHAT_LOG=warn \
  GOCHAT_SEND_RATE=10000000 GOCHAT_WS_FRAME_RATE=10000000 \
    nohup "$bin" serve >"$dir/log" 2>&1 &
  pids+=($!); urls+=("http://127.0.0.1:$port")
done
for u in "${urls[@]}"; do
  # (a node that fails to start says why in its log, under its data dir)
  for _ in $(seq 100); do curl -sf "$u/readyz" >/dev/null && break; sleep 0.1; done
done
echo "URLS=$(IFS=,; echo "${urls[*]}")"
echo "PIDS=$(IFS=,; echo "${pids[*]}")"
