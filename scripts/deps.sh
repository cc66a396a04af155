#!/bin/sh
# Installs what building and testing berth needs on Debian 12 (idempotent, quick when done):
# build: a Rust toolchain, gcc, pkg-config, libseccomp-dev; tests: busybox-static and umoci
# (the test image), skopeo (image formats), docker-registry and apache2-utils (registry tests),
# nftables and iproute2 (networking), bind9-dnsutils (DNS tests), zstd, socat (relays in
# end-to-end tests), kubectl (cluster tests).
set -eu
[ "$(id -u)" = 0 ] || { echo "$0: run as root (sudo $0)" >&2; exit 1; }
PKGS="ca-certificates curl gcc pkg-config libseccomp-dev busybox-static umoci skopeo docker-registry apache2-utils nftables iproute2 bind9-dnsutils zstd rsync socat"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "installing:$missing"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
# The cluster tests drive a stock kubectl: keep the one the machine has, else Debian's.
if ! command -v kubectl >/dev/null 2>&1; then
    echo "installing: kubernetes-client (kubectl)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client >/dev/null
fi
# Debian's docker-registry package starts a service on all interfaces; berth's tests run their
# own registry on 127.0.0.1, so keep the packaged one stopped where systemd runs.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi
if ! command -v cargo >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
    echo "installing the Rust toolchain with rustup"
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal >/dev/null
fi
