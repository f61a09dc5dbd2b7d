#!/usr/bin/env bash
# One benchmark run of one server build on a fresh database: creates the database, starts one node of
# <server-bin> (loadtest/cluster.sh), runs <loadgen-bin> with the given arguments against it, stops the node,
# drops the database, and prints one line: the label, the rate and every latency summary. For before/after
# figures in one sitting, call it in alternation with the two builds:
#   for r in 1 2 3; do for b in before after; do
#     loadtest/ab.sh $PG $REDIS /tmp/gochat-$b target/release/gochat-loadgen "$r $b" direct --pairs 50 --rate 1000
#   done; done
# <postgres admin URL> <redis URL> <server-bin> <loadgen-bin> <label> <loadgen args...>
set -euo pipefail
cd "$(dirname "$0")/.."
admin=${1:?postgres admin URL}; redis=${2:?redis URL}; bin=$(realpath "${3:?server binary}")
lg=$(realpath "${4:?load generator binary}"); label=${5:?label}; shift 5
db=ab_$RANDOM$RANDOM
psql "$admin" -qc "CREATE DATABASE $db" >/dev/null
trap 'psql "$admin" -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true' EXIT
eval "$(GOCHAT_BIN=$bin loadtest/cluster.sh 1 "${admin%/*}/$db" "$redis" | tail -2)"
sleep 1
out=$("$lg" --url "$URLS" --pid "$PIDS" --json "$@" 2>/dev/null || true)
kill ${PIDS//,/ } 2>/dev/null || true
sleep 1
python3 - "$label" "$out" <<'PY'
import json, sys
label, out = sys.argv[1], sys.argv[2]
d = json.loads(out) if out.strip() else {}
rate = d.get("accepted_per_sec") or 0
lat = " | ".join(f"{k}: p50 {v['p50_ms']:.2f} p99 {v['p99_ms']:.2f}" for k, v in d.items()
                 if k.startswith("latency") and isinstance(v, dict) and "p50_ms" in v)
print(f"{label} | {rate:,.0f} msg/s | {lat or 'no report'} | errors {d.get('errors')}")
PY
