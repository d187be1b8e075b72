#!/usr/bin/env bash
# HTTP end to end (issue 14 item 5): wrk on GET /read and GET /write of an app with a session,
# printing requests/s and p99 (from wrk --latency) per page and round.
#
#   http.sh moka                       start peerhttp on the moka store, measure, stop it
#   http.sh redis://127.0.0.1:6391     the same on the Redis store (a Redis you run)
#   URL=http://127.0.0.1:3000 http.sh  measure a server already running (any app with the same
#                                      routes: /seed sets the session cookie, /read, /write)
#
# Environment: PORT (3100), DURATION (5s), CONNECTIONS (16), THREADS (2), ROUNDS (1),
# SESSIONS (1: one session shared by every connection, sent with -H; N > 1: N sessions seeded,
# each request picks one at random through a wrk Lua script), PAGES ("read write"),
# WORKERS (tokio workers of peerhttp, 2), PEERHTTP (the binary, default
# $CARGO_TARGET_DIR/release/peerhttp with CARGO_TARGET_DIR=/work/target-peers).
#
# Output, one line per page and round:
#   http store=<s> page=<p> round=<r> connections=<c> sessions=<n> requests_per_sec=<x> p50=<t> p99=<t> p99_us=<t> errors=<n>
set -euo pipefail

STORE="${1:-}"
PORT="${PORT:-3100}"
DURATION="${DURATION:-5s}"
CONNECTIONS="${CONNECTIONS:-16}"
THREADS="${THREADS:-2}"
ROUNDS="${ROUNDS:-1}"
SESSIONS="${SESSIONS:-1}"
PAGES="${PAGES:-read write}"
WORKERS="${WORKERS:-2}"
PEERHTTP="${PEERHTTP:-${CARGO_TARGET_DIR:-/work/target-peers}/release/peerhttp}"

command -v wrk >/dev/null || { echo "http.sh: wrk is missing (apt-get install -y wrk)" >&2; exit 2; }
command -v curl >/dev/null || { echo "http.sh: curl is missing" >&2; exit 2; }

work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

if [[ -z "${URL:-}" ]]; then
  [[ -n "$STORE" ]] || { sed -n '2,20p' "$0" >&2; exit 2; }
  [[ -x "$PEERHTTP" ]] || { echo "http.sh: $PEERHTTP not built (cargo build --release)" >&2; exit 2; }
  URL="http://127.0.0.1:$PORT"
  "$PEERHTTP" --store "$STORE" --port "$PORT" --workers "$WORKERS" >"$work/server.log" 2>&1 &
  server_pid=$!
  label="${STORE%%://*}"
  for _ in $(seq 100); do
    curl -sf "$URL/hello" >/dev/null 2>&1 && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
    sleep 0.1
  done
  curl -sf "$URL/hello" >/dev/null || { echo "http.sh: server did not answer" >&2; exit 1; }
else
  label="${STORE:-external}"
fi

# seed: one GET /seed per session, keeping the cookie it sets (name=value)
: >"$work/cookies"
for _ in $(seq "$SESSIONS"); do
  cookie="$(curl -sf -D - -o /dev/null "$URL/seed" | tr -d '\r' |
    sed -n 's/^[Ss]et-[Cc]ookie: *\([^;]*\).*/\1/p' | head -n1)"
  [[ -n "$cookie" ]] || { echo "http.sh: /seed set no cookie" >&2; exit 1; }
  echo "$cookie" >>"$work/cookies"
done
first="$(head -n1 "$work/cookies")"
check="$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $first" "$URL/read")"
[[ "$check" == 200 ]] || { echo "http.sh: /read with the seeded cookie answered $check" >&2; exit 1; }

wrk_args=(-t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency)
if [[ "$SESSIONS" -gt 1 ]]; then
  {
    echo "local cookies = {"
    sed 's/.*/  "&",/' "$work/cookies"
    echo "}"
    echo 'request = function()'
    echo '  return wrk.format(nil, nil, { ["Cookie"] = cookies[math.random(#cookies)] })'
    echo 'end'
  } >"$work/pick.lua"
  wrk_args+=(-s "$work/pick.lua")
else
  wrk_args+=(-H "Cookie: $first")
fi

# a wrk latency ("1.23ms", "850.00us", "1.02s") in microseconds
to_us() {
  awk -v t="$1" 'BEGIN {
    v = t + 0; u = t; sub(/^[0-9.]+/, "", u)
    if (u == "us") f = 1; else if (u == "ms") f = 1000; else if (u == "s") f = 1000000; else if (u == "m") f = 60000000; else f = 1
    printf "%.0f", v * f }'
}

for round in $(seq "$ROUNDS"); do
  for page in $PAGES; do
    out="$(wrk "${wrk_args[@]}" "$URL/$page")"
    echo "$out" >"$work/wrk-$page-$round.txt"
    rps="$(echo "$out" | awk '/^Requests\/sec:/ {print $2}')"
    p50="$(echo "$out" | awk '$1 == "50%" {print $2}')"
    p99="$(echo "$out" | awk '$1 == "99%" {print $2}')"
    errors="$(echo "$out" | awk '/Non-2xx or 3xx responses:/ {n += $NF} /Socket errors:/ {n += 1} END {print n + 0}')"
    echo "http store=$label page=$page round=$round connections=$CONNECTIONS sessions=$SESSIONS requests_per_sec=$rps p50=$p50 p99=$p99 p99_us=$(to_us "$p99") errors=$errors"
    if [[ "$errors" != 0 ]]; then
      echo "$out" >&2
    fi
  done
done
