#!/bin/sh
# Runtime benchmark: container create+start latency through berth-shim beside `runc run -d` on
# the same bundle (interleaved, same machine, same run), the full Runtime::start_container
# path, exec latency (berth and runc), and berth-shim's resident memory with N containers
# running. Needs root, runc and busybox-static (Debian packages `runc` and `busybox-static`).
#
#   bench/runtime/run.sh                 # 50 runs, 20 containers for the RSS figure
#   BENCH_RUNS=20 BENCH_RSS_CONTAINERS=10 bench/runtime/run.sh
#
# Figures are printed; nothing is asserted about time.
set -eu
cd "$(dirname "$0")/../.."
: "${CARGO_TARGET_DIR:=$PWD/target}"
export CARGO_TARGET_DIR
export BENCH_RUNS="${BENCH_RUNS:-50}"
export BENCH_RSS_CONTAINERS="${BENCH_RSS_CONTAINERS:-20}"
command -v runc >/dev/null || { echo "runc is not installed (apt-get install runc)" >&2; exit 1; }
[ -x /bin/busybox ] || { echo "busybox-static is not installed" >&2; exit 1; }
cargo test --release -p berth-runtime --test bench_shim -- --ignored --nocapture --test-threads=1 2>&1 |
    grep -E '^(berth runtime benchmark|create\+start|exec|shim VmRSS|median ratio)'
