#!/bin/sh
# StatefulSet benchmark, black box through the CLI against a real agent and real containers:
#
#   1. create: a 10-replica OrderedReady StatefulSet whose exec readiness probe passes at
#      once, from `berth apply` until status.readyReplicas is 10;
#   2. rolling update: `berth rollout restart` of it until `berth rollout status` reports
#      the rollout complete (10 pods replaced one at a time, highest ordinal first);
#   3. delete: `berth delete sts` (pods stop in reverse order, each gone before the next)
#      until the last pod is gone.
#
# Each is run BENCH_RUNS times (default 5); the median, minimum and maximum are printed.
# Starts its own agent on temporary directories with its own socket and cgroup parent (needs
# root), builds and imports the busybox test image. Nothing is asserted about time.
#
#   bench/statefulset/run.sh
#   BENCH_RUNS=9 BENCH_REPLICAS=20 bench/statefulset/run.sh
set -eu
cd "$(dirname "$0")/../.."
: "${CARGO_TARGET_DIR:=$PWD/target}"
export CARGO_TARGET_DIR
RUNS=${BENCH_RUNS:-5}
REPLICAS=${BENCH_REPLICAS:-10}

[ -n "${BENCH_NO_BUILD:-}" ] || cargo build --release -q -p berth-agent -p berth-runtime --bins  # BENCH_NO_BUILD=1: use the binaries already built
BIN=$CARGO_TARGET_DIR/release
WORK=$(mktemp -d /tmp/berth-bench-sts.XXXXXX)
SOCK=$WORK/run/berth.sock
IMAGE_DIR=${BENCH_IMAGE_DIR:-/tmp/berth-bench-busybox-oci}
export BERTH_SOCKET=$SOCK
AGENT=""

cleanup() {
    set +e # every step runs, whatever the one before it returned
    if [ -n "$AGENT" ]; then
        "$BIN/berth" delete sts bench --ignore-not-found >/dev/null 2>&1 || true
        kill -TERM "$AGENT" 2>/dev/null || true
        wait "$AGENT" 2>/dev/null || true
    fi
    # Containers outlive the agent by design: stop what is left of this run's pods.
    for pid in $(cat /sys/fs/cgroup/*/berth-bench-$$/*/cgroup.procs /sys/fs/cgroup/berth-bench-$$/*/cgroup.procs 2>/dev/null); do
        kill -KILL "$pid" 2>/dev/null || true
    done
    grep " $WORK" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
    rm -rf "$WORK"
    ip netns delete "${NETNS:-none}" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

now_ms() { date +%s%3N; }

scripts/build-busybox-image.sh "$IMAGE_DIR" berth.local/busybox:1 >/dev/null
# The agent in a network namespace of its own (bridge, nft table, DNS stay there); nsenter
# rather than `ip netns exec`, which remounts /sys and hides the cgroup hierarchies.
NETNS=berth-bench-sts-$$
ip netns add "$NETNS"
ip -n "$NETNS" link set lo up
nsenter --net=/run/netns/"$NETNS" "$BIN/berth" agent --data-dir "$WORK/data" --run-dir "$WORK/run" --socket "$SOCK" --node-name bench \
    --cgroup-parent "berth-bench-$$" --shim-path "$BIN/berth-shim" >"$WORK/agent.log" 2>&1 &
AGENT=$!
for _ in $(seq 100); do
    "$BIN/berth" version >/dev/null 2>&1 && break
    sleep 0.1
done
"$BIN/berth" image import "$IMAGE_DIR" >/dev/null

cat >"$WORK/sts.yaml" <<YAML
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: bench
spec:
  replicas: $REPLICAS
  podManagementPolicy: OrderedReady
  serviceName: bench
  selector:
    matchLabels: {app: bench}
  template:
    metadata:
      labels: {app: bench}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
        - name: main
          image: berth.local/busybox:1
          command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 60 & wait \$!; done"]
          readinessProbe:
            exec:
              command: ["true"]
            periodSeconds: 1
YAML

median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "median %d ms, min %d ms, max %d ms (%d runs)", m, a[1], a[NR], NR}'; }

: >"$WORK/create"; : >"$WORK/update"; : >"$WORK/delete"
for run in $(seq "$RUNS"); do
    t0=$(now_ms)
    "$BIN/berth" apply -f "$WORK/sts.yaml" >/dev/null
    "$BIN/berth" wait --for="jsonpath={.status.readyReplicas}=$REPLICAS" sts/bench --timeout=120s >/dev/null
    t1=$(now_ms)
    echo $((t1 - t0)) >>"$WORK/create"

    t0=$(now_ms)
    "$BIN/berth" rollout restart sts/bench >/dev/null
    "$BIN/berth" rollout status sts/bench --timeout=300s >/dev/null
    t1=$(now_ms)
    echo $((t1 - t0)) >>"$WORK/update"

    t0=$(now_ms)
    "$BIN/berth" delete sts bench >/dev/null
    "$BIN/berth" wait --for=delete "pod/bench-0" --timeout=120s >/dev/null
    "$BIN/berth" wait --for=delete sts/bench --timeout=120s >/dev/null
    t1=$(now_ms)
    echo $((t1 - t0)) >>"$WORK/delete"
    echo "run $run: create $(tail -1 "$WORK/create") ms, rolling update $(tail -1 "$WORK/update") ms, delete $(tail -1 "$WORK/delete") ms" >&2
done

echo "berth StatefulSet benchmark ($REPLICAS replicas, OrderedReady, exec readiness probe that passes at once)"
echo "apply -> $REPLICAS Ready:        $(median <"$WORK/create")"
echo "rolling update (restart): $(median <"$WORK/update")"
echo "delete (ordered stop):    $(median <"$WORK/delete")"
