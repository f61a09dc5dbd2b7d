#!/usr/bin/env bash
# The docker-compose topology without Docker: throwaway Postgres, Redis and an S3 server (s3s-fs) on loopback,
# N GoChat nodes, and nginx in front on :8080 when it is installed. Ctrl-C stops everything.
#   deploy/local-cluster.sh [nodes]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-3}
work=$(mktemp -d "${TMPDIR:-/tmp}/gochat-cluster.XXXXXX"); chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$work/pg/postmaster.pid" ] && runuser -u postgres -- "$pgbin/pg_ctl" -D "$work/pg" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
mkdir "$work/pg"; chown postgres "$work/pg"
runuser -u postgres -- "$pgbin/initdb" -D "$work/pg" -U postgres -A trust >/dev/null
runuser -u postgres -- "$pgbin/pg_ctl" -D "$work/pg" -l "$work/pg/server.log" -w \
  -o "-p 15432 -k $work/pg -c listen_addresses=127.0.0.1" start >/dev/null
redis-server --port 16379 --bind 127.0.0.1 --save '' --daemonize no >"$work/redis.log" 2>&1 & pids+=($!)
s3s=$(ls ~/.cache/gochat-tools/s3s-fs-*/bin/s3s-fs 2>/dev/null | head -1)
[ -x "$s3s" ] || { echo "s3s-fs missing: run scripts/test.sh once (it installs it)"; exit 1; }
mkdir "$work/s3"; "$s3s" --host 127.0.0.1 --port 19000 --access-key gochat --secret-key gochat-s3-secret "$work/s3" \
  >"$work/s3.log" 2>&1 & pids+=($!)
cargo build --release -q -p gochat
# One VAPID key for every node (push notifications), made for this cluster.
vapid=$(target/release/gochat vapid-key | head -1)
sleep 1
upstreams=""
for i in $(seq 1 "$n"); do
  port=$((8080 + i))
  GOCHAT_LISTEN=127.0.0.1:$port GOCHAT_DATA_DIR="$work/node$i" \
  GOCHAT_DATABASE_URL=postgres://postgres@127.0.0.1:15432/postgres GOCHAT_REDIS_URL=redis://127.0.0.1:16379/ \
  GOCHAT_S3_ENDPOINT=http://127.0.0.1:19000 GOCHAT_S3_BUCKET=gochat GOCHAT_S3_ACCESS_KEY=gochat \
  GOCHAT_S3_SECRET_KEY=gochat-s3-secret GOCHAT_JWT_SECRET=local-cluster-secret-local-cluster-secret \
  GOCHAT_VAPID_PRIVATE_KEY="$vapid" \
    target/release/gochat serve >"$work/node$i.log" 2>&1 & pids+=($!)
  upstreams="$upstreams server 127.0.0.1:$port max_fails=3 fail_timeout=2s;"
done
for i in $(seq 1 "$n"); do
  port=$((8080 + i))
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.2; done
  echo "node $i: http://127.0.0.1:$port (log $work/node$i.log)"
done
if command -v nginx >/dev/null; then
  sed -e "s/server node1:8080[^;]*;/$upstreams/" -e '/server node[23]:8080/d' -e 's/listen 80;/listen 8080;/' \
    deploy/nginx.conf >"$work/nginx-site.conf"
  printf 'pid %s/nginx.pid;\nerror_log %s/nginx.err;\nworker_rlimit_nofile 8192;\nevents { worker_connections 4096; }\nhttp { access_log off; include %s/nginx-site.conf; }\n' \
    "$work" "$work" "$work" >"$work/nginx.conf"
  nginx -c "$work/nginx.conf" -g 'daemon off;' & pids+=($!)
  echo "load balancer: http://127.0.0.1:8080"
fi
wait
