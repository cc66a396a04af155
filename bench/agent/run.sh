#!/bin/sh
# Agent benchmark (run by hand, as root): apply -> Ready latency of a one-container pod with an
# exec readiness probe that passes at once (median of 20), and the agent's RSS idle and with 50
# running pods. Release build; a temporary agent on its own directories.
#
#   sudo bench/agent/run.sh [ROUNDS] [PODS]
set -eu
cd "$(dirname "$0")/../.."
ROUNDS=${1:-20}
PODS=${2:-50}
: "${CARGO_TARGET_DIR:=$PWD/target}"
export CARGO_TARGET_DIR
[ -n "${BENCH_NO_BUILD:-}" ] || cargo build --release -q --workspace --bins --examples  # BENCH_NO_BUILD=1: use the binaries already built
BIN=$CARGO_TARGET_DIR/release
DIR=$(mktemp -d /tmp/berth-bench.XXXXXX)
# The agent runs in a network namespace of its own (its bridge, nft table and DNS stay there);
# nsenter rather than `ip netns exec`, which remounts /sys and hides the cgroup hierarchies.
NETNS=berth-bench-$$
ip netns add "$NETNS"
ip -n "$NETNS" link set lo up
scripts/build-busybox-image.sh "$DIR/image" berth.local/busybox:1 >/dev/null
# BENCH_HEAPTRACK=FILE runs the agent under heaptrack, writing FILE(.zst); the RSS lines then
# measure heaptrack's wrapper, not the agent.
nsenter --net=/run/netns/"$NETNS" ${BENCH_HEAPTRACK:+heaptrack -o "$BENCH_HEAPTRACK"} "$BIN/berth" agent --data-dir "$DIR/data" --run-dir "$DIR/run" --node-name bench \
    --cgroup-parent berth-bench >"$DIR/agent.log" 2>&1 &
AGENT=$!
cleanup() {
    set +e # every step runs, whatever the one before it returned
    kill "$AGENT" 2>/dev/null; wait "$AGENT" 2>/dev/null
    # The bench's containers ignore SIGTERM (a shim waits for its container): kill them and
    # their shims outright, or they outlive the benchmark.
    for procs in $(find /sys/fs/cgroup -path "*/berth-bench/*" -name cgroup.procs 2>/dev/null); do
        xargs -r kill -KILL <"$procs" 2>/dev/null
    done
    pkill -KILL -f "berth-shim.*$DIR" 2>/dev/null
    sleep 0.5
    grep " $DIR" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l 2>/dev/null
    for d in /sys/fs/cgroup/*/berth-bench; do [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null; done
    rm -rf "$DIR"
    ip netns delete "$NETNS" 2>/dev/null
}
trap cleanup EXIT
export BERTH_SOCKET="$DIR/run/berth.sock"
for _ in $(seq 100); do $BIN/berth version >/dev/null 2>&1 && break; sleep 0.1; done
$BIN/berth image import "$DIR/image" >/dev/null
$BIN/examples/bench_ready "$BERTH_SOCKET" "$AGENT" berth.local/busybox:1 "$ROUNDS" "$PODS"
