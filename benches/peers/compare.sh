#!/usr/bin/env bash
# Our session layer (loadgen, mode=session) against the tower-sessions peer (peerload) on the same
# store, alternating the two binaries REPEATS times so that load changes on a shared machine hit
# both alike, then the median ops/s and p99 of each side per phase and the ratio session / peer.
#
#   compare.sh redis://127.0.0.1:6391     our Redis driver vs tower-sessions-redis-store (fred)
#   compare.sh memory                     our memory driver vs tower-sessions-moka-store
#   compare.sh sqlite                     our SQLite driver vs tower-sessions-sqlx-store (temp dirs)
#
# Environment: REPEATS (3), OPS (60000), SESSIONS (10000), CONCURRENCY (16), WORKERS (2),
# PHASES (create,read,write), LOADGEN (/work/main/target/release/loadgen),
# PEERLOAD (/work/target-peers/release/peerload), EXTRA_LOADGEN / EXTRA_PEERLOAD (more flags).
# Every raw line is kept in $OUT (default: a file in /tmp, named at the end).
set -euo pipefail

STORE="${1:?usage: compare.sh redis://HOST:PORT | memory | sqlite}"
REPEATS="${REPEATS:-3}"
OPS="${OPS:-60000}"
SESSIONS="${SESSIONS:-10000}"
CONCURRENCY="${CONCURRENCY:-16}"
WORKERS="${WORKERS:-2}"
PHASES="${PHASES:-create,read,write}"
LOADGEN="${LOADGEN:-/work/main/target/release/loadgen}"
PEERLOAD="${PEERLOAD:-${CARGO_TARGET_DIR:-/work/target-peers}/release/peerload}"
OUT="${OUT:-$(mktemp /tmp/compare-XXXXXX.txt)}"

case "$STORE" in
  memory | moka) ours=memory; peer=moka ;;
  sqlite) ours=sqlite; peer=sqlite ;;
  redis://*) ours="$STORE"; peer="$STORE" ;;
  *) echo "compare.sh: unknown store $STORE" >&2; exit 2 ;;
esac
for b in "$LOADGEN" "$PEERLOAD"; do
  [[ -x "$b" ]] || { echo "compare.sh: $b is not built" >&2; exit 2; }
done

common=(--sessions "$SESSIONS" --ops "$OPS" --concurrency "$CONCURRENCY" --workers "$WORKERS"
  --phases "$PHASES" --rounds 1)
: >"$OUT"
for rep in $(seq "$REPEATS"); do
  echo "# repeat $rep $(date -u +%H:%M:%S) loadavg $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT"
  # shellcheck disable=SC2086
  "$LOADGEN" --store "$ours" "${common[@]}" ${EXTRA_LOADGEN:-} >>"$OUT"
  # shellcheck disable=SC2086
  "$PEERLOAD" --store "$peer" "${common[@]}" ${EXTRA_PEERLOAD:-} >>"$OUT"
done

awk '
  $1 == "result" {
    for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
    key = f["mode"] SUBSEP f["phase"]
    n[key]++; ops[key, n[key]] = f["ops_per_sec"]; p99[key, n[key]] = f["p99_us"]
    phases[f["phase"]] = 1; if (f["mode"] != "tower-sessions") label = f["store"]
  }
  function median(arr, key, cnt,   i, j, t, v) {
    for (i = 1; i <= cnt; i++) v[i] = arr[key, i] + 0
    for (i = 1; i <= cnt; i++) for (j = i + 1; j <= cnt; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
    return (cnt % 2) ? v[(cnt + 1) / 2] : (v[cnt / 2] + v[cnt / 2 + 1]) / 2
  }
  END {
    split("create read write", order, " ")
    for (k = 1; k <= 3; k++) {
      p = order[k]; if (!(p in phases)) continue
      s = "session" SUBSEP p; t = "tower-sessions" SUBSEP p
      so = median(ops, s, n[s]); to = median(ops, t, n[t])
      printf "compare store=%s phase=%s repeats=%d session_ops_per_sec=%.0f peer_ops_per_sec=%.0f session_over_peer=%.2f session_p99_us=%.1f peer_p99_us=%.1f\n",
        label, p, n[s], so, to, (to > 0 ? so / to : 0), median(p99, s, n[s]), median(p99, t, n[t])
    }
  }' "$OUT"
echo "# raw lines: $OUT"
