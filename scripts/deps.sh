#!/bin/sh
# Installs what building and testing berth needs on Debian 12 (idempotent, quick when done):
# build: a Rust toolchain, gcc, pkg-config, libseccomp-dev; tests: busybox-static and umoci
# (the test image), skopeo (image formats), docker-registry and apache2-utils (registry tests),
# nftables and iproute2 (networking), bind9-dnsutils (DNS tests), zstd, socat (relays in
# end-to-end tests), Debian's kubectl (cluster tests).
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
# The cluster tests drive Debian's own kubectl (package kubernetes-client, 1.20): unpacked
# beside, not installed, so a newer kubectl the machine has stays as it is (the tests drive
# that one too when there is one).
KUBECTL_DEBIAN=/opt/berth-test/kubernetes-client
if [ ! -x "$KUBECTL_DEBIAN/usr/bin/kubectl" ]; then
    echo "unpacking: kubernetes-client (Debian's kubectl) into $KUBECTL_DEBIAN"
    tmp=$(mktemp -d)
    (cd "$tmp" && apt-get download kubernetes-client >/dev/null 2>&1) || {
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        (cd "$tmp" && apt-get download kubernetes-client >/dev/null)
    }
    mkdir -p "$KUBECTL_DEBIAN"
    dpkg-deb -x "$tmp"/kubernetes-client_*.deb "$KUBECTL_DEBIAN"
    rm -rf "$tmp"
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
