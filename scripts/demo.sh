#!/bin/sh
# berth in one command, on a fresh Debian 12 machine: installs what is missing, builds,
# starts an agent on a temporary data dir, imports the busybox image, applies the example
# StatefulSet (examples/statefulset-web.yaml), shows the pods, their claims, logs and an exec,
# then removes everything it made.
#
#   sudo scripts/demo.sh
set -eu
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || exec sudo -E "$0" "$@"
scripts/deps.sh
[ -x "$HOME/.cargo/bin/cargo" ] && PATH="$HOME/.cargo/bin:$PATH"

say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

echo "building berth (the first build takes a few minutes)..."
cargo build --workspace --bins -q
BERTH=$(pwd)/target/debug/berth
DEMO=$(mktemp -d /tmp/berth-demo.XXXXXX)
export BERTH_SOCKET="$DEMO/run/berth.sock"
AGENT_PID=

cleanup() {
    set +e
    if [ -n "$AGENT_PID" ] && kill -0 "$AGENT_PID" 2>/dev/null; then
        echo
        echo "cleaning up: deleting the StatefulSet (pods stop in reverse order) and its claims"
        "$BERTH" delete -f examples/statefulset-web.yaml --wait >/dev/null 2>&1
        "$BERTH" delete pvc --all >/dev/null 2>&1
        kill "$AGENT_PID"
        wait "$AGENT_PID" 2>/dev/null
    fi
    # Anything the agent could not stop (it was interrupted): shims, mounts, cgroups.
    pkill -f "berth-shim.*$DEMO" 2>/dev/null
    grep " $DEMO" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l 2>/dev/null
    for d in /sys/fs/cgroup/*/berth-demo /sys/fs/cgroup/unified/berth-demo; do
        [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
    rm -rf "$DEMO"
}
trap cleanup EXIT INT TERM

say "berth agent --data-dir $DEMO/data --run-dir $DEMO/run &"
"$BERTH" agent --data-dir "$DEMO/data" --run-dir "$DEMO/run" --node-name demo --cgroup-parent berth-demo \
    --dns-listen 127.0.0.1:0 >"$DEMO/agent.log" 2>&1 &
AGENT_PID=$!
for _ in $(seq 100); do "$BERTH" version >/dev/null 2>&1 && break; sleep 0.1; done
"$BERTH" version

say "scripts/build-busybox-image.sh $DEMO/image berth.local/busybox:1 && berth image import $DEMO/image"
scripts/build-busybox-image.sh "$DEMO/image" berth.local/busybox:1 >/dev/null
"$BERTH" image import "$DEMO/image"

say "berth apply -f examples/statefulset-web.yaml"
"$BERTH" apply -f examples/statefulset-web.yaml

say "berth rollout status sts/web"
"$BERTH" rollout status sts/web --timeout 120s

say "berth get pods -o wide"
"$BERTH" get pods -o wide
say "berth get pvc"
"$BERTH" get pvc

say "berth logs web-0"
"$BERTH" logs web-0 || true
say "berth exec web-1 -- cat /data/www/index.html /data/www/starts.txt"
"$BERTH" exec web-1 -- cat /data/www/index.html /data/www/starts.txt

say "berth delete pod web-1   # it comes back as web-1, with the same data"
"$BERTH" delete pod web-1
"$BERTH" wait --for=condition=Ready pod/web-1 --timeout 60s
"$BERTH" exec web-1 -- cat /data/www/starts.txt

say "berth describe sts web"
"$BERTH" describe sts web
