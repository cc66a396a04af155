#!/bin/sh
# Pod network benchmark: setup and teardown of a pod's network, median of 50 (goal: setup under
# 10 ms). Two levels:
#   - runtime: HostNetwork::attach/detach (veth into the pod namespace, address, default route,
#     gratuitous ARP; then with one hostPort, which adds an nft transaction), followed by the
#     same work one operation at a time (netlink requests, entering the pod's namespace, the
#     ARP, an nft transaction through libnftables and, for comparison, through the nft binary,
#     the teardown's link deletion);
#   - agent: NodeNetwork::attach/detach, which adds the address record in the state (a raft
#     commit, fsync'd) before the kernel work and its release after.
# Every node and pod lives in a network namespace of its own; nothing outside them is touched.
# Needs root, iproute2 and nftables.
#
#   bench/network/run.sh               # 50 pods
#   BENCH_RUNS=200 bench/network/run.sh
#   # while iterating: a faster release build (say which profile a figure used)
#   CARGO_PROFILE_RELEASE_LTO=thin CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 bench/network/run.sh
#
# Figures are printed; nothing is asserted about time.
set -eu
cd "$(dirname "$0")/../.."
: "${CARGO_TARGET_DIR:=$PWD/target}"
export CARGO_TARGET_DIR
export BENCH_RUNS="${BENCH_RUNS:-50}"
command -v nft >/dev/null || { echo "nft is not installed (apt-get install nftables)" >&2; exit 1; }
cargo test --release -p berth-runtime --test network_bench -- --ignored --nocapture --test-threads=1 2>&1 |
    grep -E '^(berth network|node network|pod |  )'
cargo test --release -p berth-agent --lib network::tests::bench -- --ignored --nocapture --test-threads=1 2>&1 |
    grep -E '^(berth agent network benchmark|agent )'
