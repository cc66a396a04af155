#!/usr/bin/env bash
# Registry pull timings: a 3-layer image of about 50 MB (incompressible data plus text, gzip
# layers made by umoci) pushed to Debian's docker-registry on 127.0.0.1, then, alternating in
# the same run, five rounds each of
#   - berth's puller: manifest, config, layers (3 at a time) streamed to disk with digest
#     checks, unpacked (diffID checked), fsynced, committed into a fresh image store;
#   - `skopeo copy docker://... oci:...`: the same download and digest checks into an OCI
#     layout, without unpacking and without flushing; it is timed again with one syncfs of
#     its destination after the copy (the durability berth's commit gives).
# Prints median and minimum wall time. Run by hand, as root (needs docker-registry, skopeo,
# umoci, htpasswd):
#
#   bench/registry/run.sh           # scratch data on /var/tmp (the real disk)
#   bench/registry/run.sh tmpfs     # scratch data on a private tmpfs
#   bench/registry/run.sh ext4      # scratch data on ext4 with a journal (as Debian installs
#                                   # it), in a 3 GB image file under /var/tmp, loop-mounted
#
# The figures come from the ignored test runtime/tests/registry_bench.rs, built in release
# mode. Scratch data and the registry are removed afterwards.
set -euo pipefail

cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release -p berth-runtime --test registry_bench >&2

if [ "${1:-}" = tmpfs ]; then
    BERTH_BENCH_DIR="$(mktemp -d /tmp/berth-registry-bench.XXXXXX)"
    export BERTH_BENCH_DIR
    mount -t tmpfs -o size=2g,mode=0700 berth-registry-bench "$BERTH_BENCH_DIR"
    trap 'umount "$BERTH_BENCH_DIR"; rmdir "$BERTH_BENCH_DIR"' EXIT
elif [ "${1:-}" = ext4 ]; then
    BERTH_BENCH_DIR="$(mktemp -d /tmp/berth-registry-bench.XXXXXX)"
    IMAGE_FILE="$(mktemp /var/tmp/berth-registry-bench.XXXXXX.ext4)"
    export BERTH_BENCH_DIR IMAGE_FILE
    truncate -s 3G "$IMAGE_FILE"
    mkfs.ext4 -q -F "$IMAGE_FILE"
    mount -o loop "$IMAGE_FILE" "$BERTH_BENCH_DIR"
    trap 'umount "$BERTH_BENCH_DIR"; rmdir "$BERTH_BENCH_DIR"; rm -f "$IMAGE_FILE"' EXIT
fi
cargo test --release -p berth-runtime --test registry_bench -- --ignored --nocapture --test-threads 1 \
    2>&1 | grep -v -E '^(running|test result|$)'
