#!/bin/sh
# Runs every berth test: unit, integration (real containers, namespaces, sockets) and
# end-to-end (real agents driven through the CLI). Needs root on Debian 12.
#
#   sudo scripts/test.sh [cargo test arguments...]
set -eu
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || exec sudo -E "$0" "$@"
scripts/deps.sh
[ -x "$HOME/.cargo/bin/cargo" ] && PATH="$HOME/.cargo/bin:$PATH"
# The end-to-end tests run the berth and berth-shim binaries: build them first.
cargo build --workspace --bins
cargo test --workspace "$@"
