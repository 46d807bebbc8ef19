#!/usr/bin/env bash
# Runs the membership end-to-end tests N times (default 5) and prints the figures they
# measure: the longest write stall of a rolling replacement, of growing 3->5 and shrinking
# 5->3, and of a leadership transfer, with the transfer's p99 latencies.
# Usage: scripts/membership_figures.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-5}
cargo test -q --release -p raft-driver-tokio --test membership --no-run >/dev/null 2>&1
for i in $(seq 1 "$n"); do
    cargo test -q --release -p raft-driver-tokio --test membership -- --nocapture --test-threads 1 2>&1 \
        | grep -oE '(rolling replacement|grow 3->5|leadership transfer).*' \
        | sed "s/^/run $i: /"
done
