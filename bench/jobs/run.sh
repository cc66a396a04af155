#!/bin/sh
# Jobs and CronJobs benchmark.
#
#   1. decision cost (release build, no containers): one controller pass over a Job of 10 to
#      10 000 pods, NonIndexed and Indexed, with and without decoding the stored pods (the
#      controller decodes on every pass); finding a CronJob's due time after short and very
#      long downtime (per-minute schedule down for a year, daily schedule in a time zone down
#      for ten years); one CronJob plan with ten finished Jobs.
#   2. end to end (real agent, real containers, black box through the CLI): from
#      `berth apply` of a Job of 20 completions, parallelism 5, pods that run `true`, until
#      `berth wait --for=condition=complete` returns; and a sequential Job of 5 completions
#      (parallelism 1), which measures one pod's turnaround: controller, scheduler, kubelet,
#      container start and exit, counting.
#
# Each end-to-end case is run BENCH_RUNS times (default 5); median, minimum and maximum are
# printed. Starts its own agent on temporary directories with its own socket and cgroup parent
# (needs root), builds and imports the busybox test image. Nothing is asserted about time.
#
#   bench/jobs/run.sh
#   BENCH_RUNS=9 bench/jobs/run.sh
set -eu
cd "$(dirname "$0")/../.."
: "${CARGO_TARGET_DIR:=$PWD/target}"
export CARGO_TARGET_DIR
RUNS=${BENCH_RUNS:-5}

echo "== decision cost (release build)"
cargo test --release -q -p berth-agent --lib -- --ignored --nocapture --test-threads 1 \
    controllers::job::tests::bench_plan_cost_for_large_jobs \
    controllers::cronjob::tests::bench_due_time_after_downtime 2>&1 |
    grep -E "^(job plan|cron due|cronjob plan)|panicked|error"

[ -n "${BENCH_NO_BUILD:-}" ] || cargo build --release -q -p berth-agent -p berth-runtime --bins  # BENCH_NO_BUILD=1: use the binaries already built
BIN=$CARGO_TARGET_DIR/release
WORK=$(mktemp -d /tmp/berth-bench-jobs.XXXXXX)
SOCK=$WORK/run/berth.sock
IMAGE_DIR=${BENCH_IMAGE_DIR:-/tmp/berth-bench-busybox-oci}
export BERTH_SOCKET=$SOCK
AGENT=""

cleanup() {
    set +e # every step runs, whatever the one before it returned
    if [ -n "$AGENT" ]; then
        kill -TERM "$AGENT" 2>/dev/null || true
        wait "$AGENT" 2>/dev/null || true
    fi
    # Containers outlive the agent by design: stop what is left of this run's pods.
    for pid in $(cat /sys/fs/cgroup/*/berth-bench-jobs-$$/*/cgroup.procs /sys/fs/cgroup/berth-bench-jobs-$$/*/cgroup.procs 2>/dev/null); do
        kill -KILL "$pid" 2>/dev/null || true
    done
    sleep 0.5
    for dir in /sys/fs/cgroup/*/berth-bench-jobs-$$ /sys/fs/cgroup/berth-bench-jobs-$$; do
        [ -d "$dir" ] && find "$dir" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
    grep " $WORK" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

now_ms() { date +%s%3N; }

scripts/build-busybox-image.sh "$IMAGE_DIR" berth.local/busybox:1 >/dev/null
"$BIN/berth" agent --data-dir "$WORK/data" --run-dir "$WORK/run" --socket "$SOCK" --node-name bench \
    --cgroup-parent "berth-bench-jobs-$$" --shim-path "$BIN/berth-shim" >"$WORK/agent.log" 2>&1 &
AGENT=$!
for _ in $(seq 100); do
    "$BIN/berth" version >/dev/null 2>&1 && break
    sleep 0.1
done
"$BIN/berth" image import "$IMAGE_DIR" >/dev/null

job_yaml() { # name completions parallelism
    cat <<YAML
apiVersion: batch/v1
kind: Job
metadata:
  name: $1
spec:
  completions: $2
  parallelism: $3
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: main
          image: berth.local/busybox:1
          command: ["true"]
YAML
}

median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "median %d ms, min %d ms, max %d ms (%d runs)", m, a[1], a[NR], NR}'; }

: >"$WORK/wide"; : >"$WORK/serial"
for run in $(seq "$RUNS"); do
    job_yaml wide 20 5 >"$WORK/wide.yaml"
    t0=$(now_ms)
    "$BIN/berth" apply -f "$WORK/wide.yaml" >/dev/null
    "$BIN/berth" wait --for=condition=complete job/wide --timeout=300s >/dev/null
    t1=$(now_ms)
    echo $((t1 - t0)) >>"$WORK/wide"
    "$BIN/berth" delete job wide >/dev/null

    job_yaml serial 5 1 >"$WORK/serial.yaml"
    t0=$(now_ms)
    "$BIN/berth" apply -f "$WORK/serial.yaml" >/dev/null
    "$BIN/berth" wait --for=condition=complete job/serial --timeout=300s >/dev/null
    t1=$(now_ms)
    echo $((t1 - t0)) >>"$WORK/serial"
    "$BIN/berth" delete job serial >/dev/null
    echo "run $run: 20 x 5 wide $(tail -1 "$WORK/wide") ms, 5 in series $(tail -1 "$WORK/serial") ms" >&2
done

echo "== end to end (release build, real containers)"
echo "Job 20 completions, parallelism 5, apply -> Complete: $(median <"$WORK/wide")"
echo "Job 5 completions, parallelism 1, apply -> Complete:  $(median <"$WORK/serial")"
