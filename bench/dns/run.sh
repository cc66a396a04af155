#!/usr/bin/env bash
# CPU cost per query of berth's DNS server beside Knot DNS, same zone content, same
# machine, same load tool. Run by hand (as root, needs knotd, dnsperf, dig, taskset):
#
#   bench/dns/run.sh                # 10 s per measurement
#   DURATION=30 bench/dns/run.sh
#
# Each server is pinned to CPU 1, dnsperf to CPU 0. CPU time is read from
# /proc/<pid>/stat (utime + stime) before and after each run and divided by the queries
# dnsperf saw answered. Both servers listen on 127.0.0.x only and are stopped at the end.
set -euo pipefail

cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
DURATION="${DURATION:-10}"
BERTH_ADDR=127.0.0.11
KNOT_ADDR=127.0.0.12
PORT=5300
SERVER_CPU=1
LOAD_CPU=0

cargo build --release -p berth-dns --examples >&2
BIN="$CARGO_TARGET_DIR/release/examples"
WORK="$(mktemp -d /tmp/berth-dns-bench.XXXXXX)"
PIDS=()
cleanup() {
    set +e # every step runs, whatever the one before it returned
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz="$(getconf CLK_TCK)"

wait_for() { # addr
    for _ in $(seq 1 100); do
        if dig "@$1" -p "$PORT" +time=1 +tries=1 dns-version.cluster.local TXT >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    echo "server on $1 did not come up" >&2
    return 1
}

measure() { # name pid addr queryfile -> prints "us_per_query qps"
    local before after out completed
    before="$(ticks "$2")"
    out="$(taskset -c "$LOAD_CPU" dnsperf -s "$3" -p "$PORT" -d "$4" -l "$DURATION" -e -c 8 -q 64 2>&1)"
    after="$(ticks "$2")"
    completed="$(awk '/Queries completed:/ {print $3}' <<<"$out")"
    awk -v t=$((after - before)) -v hz="$hz" -v n="$completed" -v d="$DURATION" \
        'BEGIN { printf "%.2f %.0f\n", t * 1e6 / hz / n, n / d }'
}

same_answers() { # queryfile: the first line's answer from both servers must match
    local name type
    read -r name type < "$1"
    local a b
    a="$(dig "@$BERTH_ADDR" -p "$PORT" +short "$name" "$type" | sort)"
    b="$(dig "@$KNOT_ADDR" -p "$PORT" +short "$name" "$type" | sort)"
    local sa sb
    sa="$(dig "@$BERTH_ADDR" -p "$PORT" "$name" "$type" | awk '/status:/ {print $6}')"
    sb="$(dig "@$KNOT_ADDR" -p "$PORT" "$name" "$type" | awk '/status:/ {print $6}')"
    if [[ "$a" != "$b" || "$sa" != "$sb" ]]; then
        echo "answers differ for $name $type: berth [$sa $a] knot [$sb $b]" >&2
        return 1
    fi
}

echo "| zone | query | berth us/query | knot us/query | ratio | berth qps | knot qps |"
echo "|---|---|---:|---:|---:|---:|---:|"
for pods in 3 10000; do
    dir="$WORK/$pods"
    mkdir -p "$dir/knot/run" "$dir/knot/db"
    taskset -c "$SERVER_CPU" "$BIN/bench_server" --listen "$BERTH_ADDR:$PORT" --pods "$pods" --zones "$dir" \
        2>"$dir/berth.log" &
    berth_pid=$!
    PIDS+=("$berth_pid")
    wait_for "$BERTH_ADDR"
    cat > "$dir/knot/knot.conf" <<CONF
server:
    rundir: "$dir/knot/run"
    listen: $KNOT_ADDR@$PORT
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "$dir/knot/db"
log:
  - target: stderr
    any: warning
template:
  - id: default
    storage: "$dir"
    journal-content: none
    zonefile-sync: -1
zone:
  - domain: cluster.local
    file: cluster.local.zone
  - domain: 244.10.in-addr.arpa
    file: 244.10.in-addr.arpa.zone
CONF
    taskset -c "$SERVER_CPU" knotd -c "$dir/knot/knot.conf" 2>"$dir/knot.log" &
    knot_pid=$!
    PIDS+=("$knot_pid")
    wait_for "$KNOT_ADDR"
    zone="$([[ $pods == 3 ]] && echo "3 pods" || echo "$pods pods")"
    for kind in a srv nx; do
        same_answers "$dir/$kind.txt"
        read -r berth_us berth_qps < <(measure berth "$berth_pid" "$BERTH_ADDR" "$dir/$kind.txt")
        read -r knot_us knot_qps < <(measure knot "$knot_pid" "$KNOT_ADDR" "$dir/$kind.txt")
        ratio="$(awk -v a="$berth_us" -v b="$knot_us" 'BEGIN { printf "%.2f", a / b }')"
        label="$(tr a-z A-Z <<<"$kind" | sed 's/NX/NXDOMAIN/')"
        echo "| $zone | $label | $berth_us | $knot_us | $ratio | $berth_qps | $knot_qps |"
    done
    kill "$berth_pid" "$knot_pid"
    wait "$berth_pid" "$knot_pid" 2>/dev/null || true
    PIDS=()
done
