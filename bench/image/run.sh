#!/usr/bin/env bash
# Image import timings: the busybox image from scripts/build-busybox-image.sh and a generated
# ~50 MB image (OCI layout, oci-archive, docker-archive), each imported into a fresh store
# (blob copy + digest check + unpack + fsync/syncfs), plus unpack_layer alone and GNU tar on
# the same layers for comparison. Run by hand, as root (needs umoci, skopeo, tar):
#
#   bench/image/run.sh
#
# The figures are printed by the ignored test runtime/tests/image_bench.rs, built in release
# mode. Scratch data goes to a temporary directory under /var/tmp and is removed afterwards.
set -euo pipefail

cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/targets/runtime-images}"
cargo test --release -p berth-runtime --test image_bench -- --ignored --nocapture --test-threads 1 \
    2>&1 | grep -v -E '^(running|test result|$)'
