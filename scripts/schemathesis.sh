#!/usr/bin/env bash
# Property-based API test of a running GoChat node with Schemathesis.
#
#   scripts/schemathesis.sh <base-url> [max-seconds]      e.g. scripts/schemathesis.sh http://127.0.0.1:8080 150
#
# Installs a pinned Schemathesis into ~/.cache/gochat-tools/schemathesis-venv when missing, registers fresh users
# on the node (the first, authenticated one; a friend of it; a stranger; one with a pending request to the first),
# checks the token works, then runs `st run` against <base-url>/api/openapi.json with every check, positive and
# negative data, and all phases (examples, coverage, fuzzing, stateful; the stateful phase follows the links
# Schemathesis infers from the document: Location headers and dependency analysis, both on by default). Nothing
# is excluded (one check of the three upload operations is widened, see the config below). The whole script is bounded by max-seconds (default 150) once Schemathesis is installed. It exits
# 0 only when the run found no failure and no error. Plain bash + python3; runs as root on Debian (installs
# python3-venv when `python3 -m venv` cannot work).
#
# Environment: SCHEMATHESIS_REPORT_DIR=<dir> also writes JUnit and NDJSON reports there;
# SCHEMATHESIS_WORKERS (default 1); SCHEMATHESIS_SEED for a reproducible run.
set -euo pipefail

ST_VERSION=4.32.5
TOOLS="${HOME:-/root}/.cache/gochat-tools"
VENV="$TOOLS/schemathesis-venv"

die() { echo "schemathesis.sh: $*" >&2; exit 2; }

[ $# -ge 1 ] && [ $# -le 2 ] || { sed -n '4p' "$0" | sed 's/^# *//' >&2; exit 2; }
BASE="${1%/}"
MAX="${2:-150}"
[[ "$MAX" =~ ^[0-9]+$ ]] && [ "$MAX" -ge 30 ] || die "max-seconds must be a whole number >= 30 (got '$MAX')"
command -v python3 >/dev/null || die "python3 is required"

# --- install (pinned; not counted in the time budget: it happens once per machine) --------------------------
installed_version() { "$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null || true; }
if [ "$(installed_version)" != "$ST_VERSION" ]; then
  echo "== installing schemathesis $ST_VERSION into $VENV"
  mkdir -p "$TOOLS"
  if ! python3 -m venv --clear "$VENV" 2>/dev/null; then
    # Debian's python3 ships venv/ensurepip separately.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >/dev/null \
        || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >/dev/null; }
      python3 -m venv --clear "$VENV"
    else
      die "python3 -m venv failed (install python3-venv)"
    fi
  fi
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "schemathesis==$ST_VERSION"
  [ "$(installed_version)" = "$ST_VERSION" ] || die "installing schemathesis $ST_VERSION failed"
fi

START=$SECONDS
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# --- accounts ------------------------------------------------------------------------------------------------
# api METHOD PATH TOKEN JSON-BODY -> prints the reply body; exits non-zero (with the reply) unless 2xx.
api() {
  python3 - "$BASE" "$@" <<'PY'
import sys, urllib.request, urllib.error
base, method, path, token, body = sys.argv[1:6]
req = urllib.request.Request(base + path, method=method, data=body.encode() if body else None)
req.add_header("Content-Type", "application/json")
if token:
    req.add_header("Authorization", "Bearer " + token)
try:
    with urllib.request.urlopen(req, timeout=10) as r:
        sys.stdout.write(r.read().decode())
except urllib.error.HTTPError as e:
    sys.stderr.write(f"{method} {path} -> {e.code} {e.read().decode(errors='replace')}\n")
    sys.exit(1)
except OSError as e:
    sys.stderr.write(f"{method} {path} -> {e}\n")
    sys.exit(1)
PY
}
field() { python3 -c 'import json,sys; v=json.load(sys.stdin)
for k in sys.argv[1].split("."): v=v[k]
print(v)' "$1"; }
rand() { python3 -c 'import secrets,string; a=string.ascii_lowercase+string.digits; print("".join(secrets.choice(a) for _ in range(int(__import__("sys").argv[1]))))' "$1"; }

for _ in $(seq 1 30); do
  python3 -c 'import sys,urllib.request; urllib.request.urlopen(sys.argv[1]+"/healthz", timeout=2)' "$BASE" 2>/dev/null && break
  sleep 1
done
api GET /healthz "" "" >/dev/null || die "no GoChat node answers at $BASE"

PW="pw-$(rand 16)"
register() { # register <username> -> id
  api POST /api/user/register "" "{\"username\":\"$1\",\"password\":\"$PW\",\"nickname\":\"st $1\"}" | field id
}
login() { api POST /api/user/login "" "{\"username\":\"$1\",\"password\":\"$PW\"}" | field token; }
U1="$(rand 12)"; U2="$(rand 12)"; U3="$(rand 12)"; U4="$(rand 12)"
ID1="$(register "$U1")"; ID2="$(register "$U2")"; ID3="$(register "$U3")"; ID4="$(register "$U4")"
T1="$(login "$U1")"; T2="$(login "$U2")"; T4="$(login "$U4")"
# The first two become friends: a request to someone who already asked you accepts theirs.
api POST /api/friends/request "$T1" "{\"to_user_id\":$ID2}" >/dev/null
api POST /api/friends/request "$T2" "{\"to_user_id\":$ID1}" >/dev/null
api GET /api/friends "$T1" "" | python3 -c 'import json,sys; sys.exit(0 if any(f["id"]==int(sys.argv[1]) for f in json.load(sys.stdin)) else 1)' "$ID2" \
  || die "users $ID1 and $ID2 did not become friends"
# Test data beyond the two friends, so the friend and group operations get past "no such user/request":
# a stranger the first user can ask ($ID3), and a pending request to the first user ($ID4 asked) to accept or reject.
REQ="$(api POST /api/friends/request "$T4" "{\"to_user_id\":$ID1}" | field id)"
echo "== users: $U1 (id $ID1, authenticated), its friend $U2 (id $ID2), stranger $U3 (id $ID3), $U4 (id $ID4, pending request $REQ to $U1)"

# --- the run -------------------------------------------------------------------------------------------------
# Budget: what is left of max-seconds, less a reserve for shrinking the last failures and printing the report
# (Schemathesis stops starting new test cases at --max-time); a hard `timeout` at the full budget backs it up.
LEFT=$(( MAX - (SECONDS - START) ))
RESERVE=$(( MAX / 6 > 10 ? MAX / 6 : 10 ))
ST_TIME=$(( LEFT - RESERVE ))
[ "$ST_TIME" -ge 10 ] || die "max-seconds $MAX leaves no time for the run"

# The config file pins what a schemathesis.toml found by discovery could otherwise change, turns off the cache
# (it replays earlier runs' discoveries, which name users of another node), and offers the ids made above to the
# parameters that name users and friend requests, half the time (the other half is generated as usual).
cat >"$WORK/schemathesis.toml" <<TOML
[cache]
enabled = false

[dictionaries.users]
values = [$ID2, $ID3, $ID4]

[dictionaries.requests]
values = [$REQ]

[parameters]
"body.user_id" = { dictionary = "users", probability = 0.5 }
"body.user_ids[*]" = { dictionary = "users", probability = 0.5 }
"body.member_ids[*]" = { dictionary = "users", probability = 0.5 }
"path.friendId" = { dictionary = "users", probability = 0.5 }
"path.userId" = { dictionary = "users", probability = 0.5 }
"body.request_id" = { dictionary = "requests", probability = 0.5 }

# Friend requests name a user; sends are left to generate their recipient, since a user id put into a body that
# names a group would make it name two recipients, which the schema forbids.
[[operations]]
include-operation-id = "requestFriend"
parameters = { "body.to_user_id" = { dictionary = "users", probability = 0.5 } }

# What a JSON Schema cannot state about a multipart upload: its type is decided by its bytes, so a schema-valid
# body whose bytes are no accepted image or video is refused (415), as is an empty file or a second field (422;
# the document says so in words: Schemathesis drops fields it cannot encode as parts, so a schema limit on the
# number of fields produced false "accepted" findings); and a field whose generated name holds bytes a part header
# cannot carry makes the body itself malformed (400 invalid_multipart). Every other check, and this check's other
# statuses, stay as they are for these operations too (the media upload and the two avatar uploads, which take
# the same multipart body).
# What a JSON Schema cannot state about a push subscription (DESIGN.md §11): that the endpoint parses as a URL
# whose host is not inside a network, and that p256dh is a point on P-256. The schema states the rest (https://
# prefix, length, alphabet); a body it allows but these rules refuse is 422 invalid_push_endpoint or
# invalid_push_keys, which is what this check is told to accept. Every other check stays.
[[operations]]
include-operation-id = "subscribePush"
checks.positive_data_acceptance.expected-statuses = ["2xx", 400, 401, 404, 422, 429]

[[operations]]
include-operation-id = "uploadFile"
checks.positive_data_acceptance.expected-statuses = ["2xx", 400, 401, 403, 404, 409, 413, 415, 422, 429]

[[operations]]
include-operation-id = "setAvatar"
checks.positive_data_acceptance.expected-statuses = ["2xx", 400, 401, 403, 404, 409, 413, 415, 422, 429]

[[operations]]
include-operation-id = "setGroupAvatar"
checks.positive_data_acceptance.expected-statuses = ["2xx", 400, 401, 403, 404, 409, 413, 415, 422, 429]
TOML

ARGS=(
  run "$BASE/api/openapi.json"
  --url "$BASE"
  --checks all
  --mode all
  --phases examples,coverage,fuzzing,stateful
  --max-time "$ST_TIME"
  # One worker: with several, Schemathesis's threads now and then trip CPython's "AST constructor recursion depth
  # mismatch" (python/cpython#106905) inside Hypothesis, which ends an operation with a runtime error.
  --workers "${SCHEMATHESIS_WORKERS:-1}"
  --request-timeout 10
  --continue-on-failure
  -H "Authorization: Bearer $T1"
  --no-color
)
[ -n "${SCHEMATHESIS_SEED:-}" ] && ARGS+=(--seed "$SCHEMATHESIS_SEED")
if [ -n "${SCHEMATHESIS_REPORT_DIR:-}" ]; then
  mkdir -p "$SCHEMATHESIS_REPORT_DIR"
  ARGS+=(--report junit,ndjson --report-dir "$(cd "$SCHEMATHESIS_REPORT_DIR" && pwd)")
fi
echo "== st ${ARGS[*]//Bearer $T1/Bearer <token of $U1>}"
echo "== config:"; sed 's/^/   /' "$WORK/schemathesis.toml"

# Run from the scratch directory so nothing (cache, crash files) lands in the caller's tree.
rc=0
(cd "$WORK" && exec timeout -k 5 "$LEFT" "$VENV/bin/st" --config-file "$WORK/schemathesis.toml" "${ARGS[@]}") || rc=$?
echo "== schemathesis exited $rc after $(( SECONDS - START )) s (budget $MAX s)"
case "$rc" in
  0) exit 0 ;;
  124|137) echo "schemathesis.sh: the run overran the $MAX s budget and was killed" >&2; exit 3 ;;
  *) exit "$rc" ;;
esac
