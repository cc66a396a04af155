#!/bin/sh
# Measures the cluster state: propose latency (median, p99) of a small object, throughput
# with 1/4/16/64 concurrent proposers, reopen time, and the resident memory of a process
# holding 50 pods. The code is agent/tests/state_bench.rs (ignored tests, release build).
#
# Usage: bench/state/run.sh [directory for the databases, default: the system temp dir]
# The databases must be on the disk you care about: fsync latency dominates.
set -eu
cd "$(dirname "$0")/../.."
if [ "$#" -gt 0 ]; then
    export BERTH_BENCH_DIR="$1"
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo test --release -p berth-agent --test state_bench -- \
    --ignored --nocapture --test-threads 1 \
    bench_propose_latency_and_throughput bench_rss_with_50_pods 2>&1 |
    grep -E "database directory|propose latency|throughput with|reopen with|resident memory|panicked|error"
