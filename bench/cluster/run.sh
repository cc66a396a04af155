#!/bin/sh
# Cluster benchmark on three simulated hosts (a network namespace each, veths to a bridge in a
# "LAN" namespace), real agents from the release build, real containers:
#
#   1. DNS propagation: a pod is created on h1 (nodeName); a watch on h1's API records the
#      moment its Ready condition turns True, and UDP queries (every millisecond) to the DNS
#      servers of h2 and h3 record when each first answers its A record. The figure is the
#      time from Ready (as h1 saw it) to the record answering on every other host.
#      Repeated BENCH_RUNS times (default 10); median, min, max.
#   2. Memory: BENCH_PODS pods (default 30, spread over the hosts by nodeName) Ready, then
#      each agent's VmRSS.
#
# Needs root. Nothing is asserted about time.
#
#   bench/cluster/run.sh
#   BENCH_RUNS=20 BENCH_PODS=60 bench/cluster/run.sh
set -eu
cd "$(dirname "$0")/../.."
: "${CARGO_TARGET_DIR:=$PWD/target}"
export CARGO_TARGET_DIR
RUNS=${BENCH_RUNS:-10}
PODS=${BENCH_PODS:-30}

[ -n "${BENCH_NO_BUILD:-}" ] || cargo build --release -q -p berth-agent -p berth-runtime --bins  # BENCH_NO_BUILD=1: use the binaries already built
BIN=$CARGO_TARGET_DIR/release
WORK=$(mktemp -d /tmp/berth-bench-cluster.XXXXXX)
IMAGE_DIR=${BENCH_IMAGE_DIR:-/tmp/berth-bench-busybox-oci}
P=bbc$$
LAN=$P-lan
PIDS=""

cleanup() {
    set +e # every step runs, whatever the one before it returned
    for pid in $PIDS; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in $PIDS; do wait "$pid" 2>/dev/null || true; done
    for i in 1 2 3; do
        for pid in $(cat /sys/fs/cgroup/*/$P-h$i/*/cgroup.procs /sys/fs/cgroup/$P-h$i/*/cgroup.procs \
            /sys/fs/cgroup/*/$P-h$i/*/*/cgroup.procs /sys/fs/cgroup/$P-h$i/*/*/cgroup.procs 2>/dev/null); do
            kill -KILL "$pid" 2>/dev/null || true
        done
        ip netns delete "$P-h$i" 2>/dev/null || true
    done
    ip netns delete "$LAN" 2>/dev/null || true
    grep " $WORK" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
    sleep 0.5
    for i in 1 2 3; do
        find /sys/fs/cgroup -depth -type d -path "*/$P-h$i*" -exec rmdir {} \; 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

scripts/build-busybox-image.sh "$IMAGE_DIR" berth.local/busybox:1 >/dev/null

ip netns add "$LAN"
ip -n "$LAN" link set lo up
ip -n "$LAN" link add br0 type bridge
ip -n "$LAN" link set br0 up
ip -n "$LAN" addr add 10.77.0.1/24 dev br0 # the probe queries the hosts from here
for i in 1 2 3; do
    ip netns add "$P-h$i"
    ip -n "$P-h$i" link set lo up
    ip link add name eth0 netns "$P-h$i" type veth peer name "lan-h$i" netns "$LAN"
    ip -n "$LAN" link set "lan-h$i" master br0
    ip -n "$LAN" link set "lan-h$i" up
    ip -n "$P-h$i" addr add "10.77.0.1$i/24" dev eth0
    ip -n "$P-h$i" link set eth0 up
    ip netns exec "$P-h$i" sysctl -qw net.ipv4.ip_forward=1
done

sock() { echo "$WORK/h$1/run/berth.sock"; }
berth() { h=$1; shift; BERTH_SOCKET=$(sock "$h") "$BIN/berth" "$@"; }
start() {
    i=$1; shift
    # nsenter, not `ip netns exec`: that remounts /sys, hiding the cgroup hierarchies.
    nsenter --net="/run/netns/$P-h$i" "$BIN/berth" agent --data-dir "$WORK/h$i/data" --run-dir "$WORK/h$i/run" \
        --node-name "h$i" --cgroup-parent "$P-h$i" --shim-path "$BIN/berth-shim" \
        --advertise-address "10.77.0.1$i" --dns-listen "10.77.0.1$i:53" "$@" >"$WORK/h$i.log" 2>&1 &
    PIDS="$PIDS $!"
    eval "PID_$i=$!"
    for _ in $(seq 300); do
        berth "$i" version >/dev/null 2>&1 && break
        sleep 0.1
    done
    if ! berth "$i" version >/dev/null 2>&1; then
        echo "the agent on h$i did not start; its log:" >&2
        tail -30 "$WORK/h$i.log" >&2
        exit 1
    fi
    berth "$i" image import "$IMAGE_DIR" >/dev/null
}
mkdir -p "$WORK/h1" "$WORK/h2" "$WORK/h3"
start 1
TOKEN=$(berth 1 token create 2>/dev/null)
start 2 --join 10.77.0.11:7443 --token "$TOKEN"
start 3 --join 10.77.0.11:7443 --token "$TOKEN"
for _ in $(seq 100); do
    [ "$(berth 1 members | grep -c -E 'leader|voter')" = 3 ] && break
    sleep 0.2
done
berth 1 members >&2

cat <<'YAML' | berth 1 apply -f - >/dev/null
apiVersion: v1
kind: Service
metadata:
  name: bench
spec:
  clusterIP: None
  selector: {app: bench}
  ports: [{name: x, port: 80}]
YAML

pod() { # name node
    cat <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: $1
  labels: {app: bench}
spec:
  nodeName: $2
  hostname: $1
  subdomain: bench
  terminationGracePeriodSeconds: 1
  containers:
    - name: main
      image: berth.local/busybox:1
      command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 60 & wait \$!; done"]
YAML
}

# The probe: runs in the LAN namespace (it reaches every host's DNS on the LAN; the API socket
# of h1 is a file, reachable from any network namespace).
cat >"$WORK/probe.py" <<'PY'
import json, socket, struct, sys, threading, time
sock_path, name, servers = sys.argv[1], sys.argv[2], sys.argv[3:]
fqdn = f"{name}.bench.default.svc.cluster.local"
def query(qid):
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in fqdn.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\x00" + struct.pack(">HH", 1, 1)
answered = {}
def poll(server):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.05)
    qid = 1
    while server not in answered:
        qid = (qid + 1) & 0xFFFF
        s.sendto(query(qid), (server, 53))
        try:
            data, _ = s.recvfrom(512)
            if struct.unpack(">H", data[6:8])[0] > 0 and (data[3] & 0x0F) == 0:
                answered[server] = time.monotonic()
                return
        except socket.timeout:
            pass
        time.sleep(0.001)
threads = [threading.Thread(target=poll, args=(s,), daemon=True) for s in servers]
for t in threads: t.start()
u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
u.connect(sock_path)
u.sendall(f"GET /api/v1/namespaces/default/pods?watch=true&fieldSelector=metadata.name%3D{name} HTTP/1.1\r\nHost: berth\r\n\r\n".encode())
buf, ready_at = b"", None
print("ready", flush=True)
while ready_at is None:
    chunk = u.recv(65536)
    if not chunk: break
    buf += chunk
    for line in buf.split(b"\n"):
        line = line.strip()
        if not line.startswith(b"{"): continue
        try: ev = json.loads(line)
        except ValueError: continue
        conds = ev.get("object", {}).get("status", {}).get("conditions", [])
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds):
            ready_at = time.monotonic(); break
for t in threads: t.join(10)
if ready_at is None or len(answered) < len(servers):
    print("missing", flush=True); sys.exit(1)
print("ms %.1f" % ((max(answered.values()) - ready_at) * 1000), flush=True)
PY

: >"$WORK/dns"
for run in $(seq "$RUNS"); do
    ip netns exec "$LAN" python3 -u "$WORK/probe.py" "$(sock 1)" "dns$run" 10.77.0.12 10.77.0.13 >"$WORK/probe.out" &
    probe=$!
    for _ in $(seq 50); do grep -q ready "$WORK/probe.out" && break; sleep 0.05; done
    pod "dns$run" h1 | berth 1 apply -f - >/dev/null
    wait "$probe" || { echo "run $run: the record never answered everywhere" >&2; continue; }
    ms=$(awk '/^ms/ {print $2}' "$WORK/probe.out")
    echo "$ms" >>"$WORK/dns"
    echo "run $run: Ready on h1 -> answered on h2 and h3: $ms ms" >&2
    berth 1 delete pod "dns$run" --wait=false >/dev/null 2>&1 || true
done

for n in $(seq "$PODS"); do
    pod "mem$n" "h$(( (n - 1) % 3 + 1 ))"
    echo "---"
done | berth 1 apply -f - >/dev/null
for _ in $(seq 600); do
    ready=$(berth 1 get pods -o json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(1 for p in d["items"] if p["metadata"]["name"].startswith("mem") and any(c["type"]=="Ready" and c["status"]=="True" for c in p["status"].get("conditions",[]))))')
    [ "$ready" = "$PODS" ] && break
    sleep 0.5
done
sleep 5

echo "berth cluster benchmark (3 hosts in network namespaces on one machine, release build)"
sort -n "$WORK/dns" | awk '{a[NR]=$1} END {if (NR==0) {print "DNS propagation: no successful run"; exit} m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "pod Ready on h1 -> its record answers on h2 and h3: median %.1f ms, min %.1f ms, max %.1f ms (%d runs)\n", m, a[1], a[NR], NR}'
echo "agent memory with $ready/$PODS bench pods Ready (about $((PODS / 3)) per host):"
for i in 1 2 3; do
    eval "pid=\$PID_$i"
    echo "  h$i: $(awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' /proc/$pid/status) RSS"
done
