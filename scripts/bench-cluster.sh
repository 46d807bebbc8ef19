#!/usr/bin/env bash
# Starts a 3-node raftkv cluster on loopback (fsync on, data in a temporary directory), runs
# `raftkv bench` at several client counts and stops the cluster.
#
#   scripts/bench-cluster.sh [DURATION_SECS] [CLIENT_COUNTS...]
#   scripts/bench-cluster.sh 10 1 16 64 256
#   BENCH_ARGS="--reads 0.5" scripts/bench-cluster.sh 5 1024   # extra `raftkv bench` flags
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
shift || true
counts=("${@:-1 16 64 256}")
[ $# -eq 0 ] && counts=(1 16 64 256)

cargo build --release -q -p raft-driver-tokio
bin=$PWD/target/release/raftkv
work=$(mktemp -d -t raftkv-bench-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$bin" certs --out "$work/certs" --nodes 1,2,3 --clients client >/dev/null
base=$((20000 + RANDOM % 20000))
for id in 1 2 3; do
  cat >"$work/node-$id.toml" <<TOML
node_id = $id
cluster_id = 77
data_dir = "$work/node-$id"
listen = "127.0.0.1:$((base + id))"

[tls]
ca = "$work/certs/ca.pem"
cert = "$work/certs/node-$id.pem"
key = "$work/certs/node-$id.key"

[[peers]]
id = 1
addr = "127.0.0.1:$((base + 1))"
[[peers]]
id = 2
addr = "127.0.0.1:$((base + 2))"
[[peers]]
id = 3
addr = "127.0.0.1:$((base + 3))"
TOML
  RUST_LOG=warn "$bin" serve --threads "${NODE_THREADS:-1}" --config "$work/node-$id.toml" 2>"$work/node-$id.log" &
  pids+=($!)
done
export RAFTKV_NODES="127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2)),127.0.0.1:$((base + 3))"
export RAFTKV_CLUSTER_ID=77 RAFTKV_CERTS="$work/certs"
sleep 2
for c in "${counts[@]}"; do
  echo "=== $c clients, ${duration}s, 100-byte values ${BENCH_ARGS:-(writes only)}"
  "$bin" bench --clients "$c" --duration "$duration" --value-size 100 --quiet --json ${BENCH_ARGS:-}
done
"$bin" status || true
