#!/usr/bin/env bash
# Image import timings: the busybox image from scripts/build-busybox-image.sh and a generated
# ~50 MB image (OCI layout, oci-archive, docker-archive), each imported into a fresh store
# (blob copy + digest check + unpack + fsync/syncfs), plus unpack_layer alone and GNU tar on
# the same layers for comparison. Run by hand, as root (needs umoci, skopeo, tar):
#
#   bench/image/run.sh           # scratch data on /var/tmp (the real disk)
#   bench/image/run.sh tmpfs     # scratch data on a private tmpfs: CPU cost without the disk
#
# Wall and CPU time (this thread's, or tar's and gzip's) are printed as median and minimum
# of several runs; on a busy machine the minimum is the better estimate. The figures come from
# the ignored test runtime/tests/image_bench.rs, built in release mode. Scratch data is
# removed afterwards.
set -euo pipefail

cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release -p berth-runtime --test image_bench >&2

if [ "${1:-}" = tmpfs ]; then
    BERTH_BENCH_DIR="$(mktemp -d /tmp/berth-image-bench.XXXXXX)"
    export BERTH_BENCH_DIR
    mount -t tmpfs -o size=4g,mode=0700 berth-image-bench "$BERTH_BENCH_DIR"
    trap 'umount "$BERTH_BENCH_DIR"; rmdir "$BERTH_BENCH_DIR"' EXIT
fi
cargo test --release -p berth-runtime --test image_bench -- --ignored --nocapture --test-threads 1 \
    2>&1 | grep -v -E '^(running|test result|$)'
