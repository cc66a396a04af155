#!/bin/sh
# Node loss benchmark: how long from a node's last heartbeat until the node lifecycle
# controller declares it lost (Ready=Unknown and the node.kubernetes.io/unreachable taint).
#
# On one host, the lost node is a Node object that no agent renews (it never posts status),
# so its silence starts when it is created: the figure is the time from `berth apply` of the
# Node until `berth get node` shows the taint, i.e. the grace period plus the controller's
# detection delay (its tick is grace/20, at most 0.5 s, plus the commit). Expected: a little over
# the grace period (10 s by default; BENCH_GRACE sets the agent's --node-monitor-grace-period,
# e.g. 2s, the smallest it accepts). Each run creates and forgets its own node.
#
# Starts its own agent on temporary directories with its own socket and cgroup parent (needs
# root). Nothing is asserted about time.
#
#   bench/node/run.sh
#   BENCH_RUNS=5 BENCH_PROFILE=debug bench/node/run.sh      # use debug binaries
#   BENCH_GRACE=2s bench/node/run.sh                        # the shortest grace period
set -eu
cd "$(dirname "$0")/../.."
: "${CARGO_TARGET_DIR:=$PWD/target}"
export CARGO_TARGET_DIR
RUNS=${BENCH_RUNS:-3}
PROFILE=${BENCH_PROFILE:-release}
GRACE=${BENCH_GRACE:-10s}

if [ "$PROFILE" = release ]; then
    cargo build --release -q -p berth-agent -p berth-runtime --bins
else
    cargo build -q -p berth-agent -p berth-runtime --bins
fi
BIN=$CARGO_TARGET_DIR/$PROFILE
WORK=$(mktemp -d /tmp/berth-bench-node.XXXXXX)
SOCK=$WORK/run/berth.sock
export BERTH_SOCKET=$SOCK
AGENT=""

cleanup() {
    set +e # every step runs, whatever the one before it returned
    if [ -n "$AGENT" ]; then
        kill -TERM "$AGENT" 2>/dev/null || true
        wait "$AGENT" 2>/dev/null || true
    fi
    grep " $WORK" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

now_ms() { date +%s%3N; }

"$BIN/berth" agent --data-dir "$WORK/data" --run-dir "$WORK/run" --socket "$SOCK" --node-name bench \
    --cgroup-parent "berth-bench-$$" --shim-path "$BIN/berth-shim" --node-monitor-grace-period "$GRACE" \
    >"$WORK/agent.log" 2>&1 &
AGENT=$!
for _ in $(seq 100); do
    "$BIN/berth" version >/dev/null 2>&1 && break
    sleep 0.1
done

results=""
for run in $(seq "$RUNS"); do
    node="lost-$run"
    start=$(now_ms)
    printf 'apiVersion: v1\nkind: Node\nmetadata:\n  name: %s\n' "$node" | "$BIN/berth" apply -f - >/dev/null
    while :; do
        case $("$BIN/berth" get node "$node" -o json) in
            *'"node.kubernetes.io/unreachable"'*) break ;;
        esac
        sleep 0.05
    done
    end=$(now_ms)
    ms=$((end - start))
    echo "run $run: node declared lost after $ms ms"
    results="$results $ms"
    "$BIN/berth" node forget "$node" >/dev/null
done
echo "$results" | tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {printf "declare a lost node NotReady (grace '"$GRACE"'): median %d ms, min %d ms, max %d ms (%d runs)\n", a[int((NR+1)/2)], a[1], a[NR], NR}'
