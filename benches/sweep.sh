#!/usr/bin/env bash
# Runs loadgen (session layer beside its honest raw baseline) and, when it is built, the peers'
# peerload (tower-sessions) at several concurrencies, writes every output to benches/results/,
# and redraws the charts of BENCHMARKS.md (benches/results/charts/<store>.svg).
#
#   bash benches/sweep.sh [STORES] [CONCURRENCIES]
#   STORES default "memory sqlite sled file redis"; CONCURRENCIES default "1 16 64 256"
#   OPS (default 60000), ROUNDS (default 3), SESSIONS (default 10000) from the environment.
#
# Redis runs on a private server on port 6390 (started here if it is not up, no persistence);
# peers are built with `cd benches/peers && cargo build --release` (their own target dir).
set -euo pipefail
cd "$(dirname "$0")/.."
stores=${1:-memory sqlite sled file redis}
concurrencies=${2:-1 16 64 256}
ops=${OPS:-60000}
rounds=${ROUNDS:-3}
sessions=${SESSIONS:-10000}
out=benches/results
mkdir -p "$out"
cargo build --release -q -p session-benches --bin loadgen --bin charts
loadgen=target/release/loadgen
peerload=${PEERLOAD:-benches/peers/target/release/peerload}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for store in $stores; do
  case $store in
    memory) spec=memory; peer=moka ;;
    sqlite) spec=sqlite:$tmp/s.db; peer=sqlite:$tmp/peer.db ;;
    sled) spec=sled:$tmp/sled; peer= ;;
    file) spec=file:$tmp/files; peer= ;;
    redis)
      redis-cli -p 6390 ping >/dev/null 2>&1 ||
        redis-server --port 6390 --bind 127.0.0.1 --save "" --appendonly no --daemonize yes >/dev/null
      spec=redis://127.0.0.1:6390; peer=redis://127.0.0.1:6390 ;;
    *) echo "sweep: unknown store $store" >&2; exit 2 ;;
  esac
  for c in $concurrencies; do
    rm -rf "$tmp"/*
    echo "# $(date -u +%FT%TZ) $store concurrency $c; uptime: $(uptime)" | tee "$out/$store-c$c.txt"
    "$loadgen" --store "$spec" --raw --phases read,write --concurrency "$c" --rounds "$rounds" \
      --ops "$ops" --sessions "$sessions" | tee -a "$out/$store-c$c.txt" | grep -E '^(result|ratio)'
    if [ -n "$peer" ] && [ -x "$peerload" ]; then
      rm -rf "$tmp"/*
      # a peer that hangs (seen once: tower-sessions' fred pool at concurrency 64, 0% CPU) loses
      # its point, not the sweep
      if ! timeout "${PEER_TIMEOUT:-300}" "$peerload" --store "$peer" --phases read,write \
        --concurrency "$c" --rounds "$rounds" --ops "$ops" --sessions "$sessions" \
        >"$tmp/peer.txt"; then
        echo "# sweep: peerload on $store at concurrency $c failed or timed out" | tee -a "$out/$store-c$c.txt" >&2
      fi
      sed "s/ store=[^ ]*/ store=$store/" "$tmp/peer.txt" | tee "$out/$store-c$c-peer.txt" | grep -E '^result' || true
    fi
  done
done
# only the sweep's own files (<store>-c<N>.txt, <store>-c<N>-peer.txt): results kept beside them
# under other names (A/B runs such as redis-c1-write-fred-ab-*.txt) are no sweep points
mapfile -t points < <(find "$out" -maxdepth 1 -type f -regextype posix-extended \
  -regex '.*/[a-z]+-c[0-9]+(-peer)?\.txt' | sort)
target/release/charts "$out/charts" "${points[@]}"
