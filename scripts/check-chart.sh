#!/usr/bin/env bash
# Checks the Helm chart and the static deployment files without helm: values.yaml against values.schema.json
# (check-jsonschema, pinned, installed into ~/.cache/gochat-tools/chart-venv when missing), then
# scripts/check-chart.py (template paths, YAML, the dashboard's and alerts' metrics).
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=0.39.0
VENV="${HOME:-/root}/.cache/gochat-tools/chart-venv-$VERSION"
if [ ! -x "$VENV/bin/check-jsonschema" ]; then
  python3 -m venv "$VENV" 2>/dev/null || { apt-get install -y -qq python3-venv >/dev/null && python3 -m venv "$VENV"; }
  "$VENV/bin/pip" install -q "check-jsonschema==$VERSION" pyyaml
fi
"$VENV/bin/check-jsonschema" --schemafile helm/gochat/values.schema.json helm/gochat/values.yaml
"$VENV/bin/python" scripts/check-chart.py
echo "chart: values match the schema; templates use only values that exist; static files parse"
# deploy/nginx.conf, as local-cluster.sh runs it, through `nginx -t` when nginx is installed.
if command -v nginx >/dev/null; then
  work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
  sed -e 's/server node\([0-9]\):8080/server 127.0.0.1:808\1/' -e 's/listen 80;/listen 127.0.0.1:18080;/' \
    deploy/nginx.conf >"$work/site.conf"
  printf 'pid %s/nginx.pid;\nerror_log %s/err;\nevents {}\nhttp { access_log off; include %s/site.conf; }\n' \
    "$work" "$work" "$work" >"$work/nginx.conf"
  nginx -t -q -c "$work/nginx.conf" -g 'daemon off;'
  echo "deploy/nginx.conf: nginx -t passes"
fi
