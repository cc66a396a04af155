#!/bin/sh
# Build berth's small test/demo image as an OCI image layout.
#
#   scripts/build-busybox-image.sh OUTDIR [NAME]
#
# OUTDIR becomes an OCI image layout (oci-layout, index.json, blobs/) holding one image whose
# org.opencontainers.image.ref.name is NAME (default: busybox:latest). It is built from
# Debian's busybox-static with umoci, in two layers:
#   1. /bin/busybox and its applet symlinks (/bin/sh, /usr/bin/wc -> /bin/busybox, ...)
#   2. a small /etc (passwd and group with a non-root user "app" 1000:1000, nsswitch.conf,
#      hosts), /home/app owned by app, /tmp (1777) and /www/index.html
# and its config runs `sh` with PATH set.
#
# Layers are made with GNU tar and `umoci raw add-layer` (not `umoci insert`: Debian's umoci
# 0.4.7 writes truncated layers with it). Timestamps, ownership and entry order are fixed, so
# the same busybox package always gives the same image digest.
#
# Idempotent and quick: if OUTDIR already holds this image for the installed busybox (a stamp
# file records it), nothing is done. Otherwise the layout is built in a temporary directory
# next to OUTDIR and renamed into place, so OUTDIR is either absent, the old image or complete.
# Installs busybox-static and umoci with apt-get when they are missing (needs root).
set -eu

usage() {
    echo "usage: $0 OUTDIR [NAME]" >&2
    exit 2
}

[ $# -ge 1 ] && [ $# -le 2 ] || usage
OUTDIR=$1
NAME=${2:-busybox:latest}
[ -n "$OUTDIR" ] || usage
case $NAME in
    "" | *[!A-Za-z0-9._:/@+-]*)
        echo "$0: invalid image name '$NAME'" >&2
        exit 2
        ;;
esac

# Bump when the image contents or layout change, so old outputs are rebuilt.
RECIPE=3
# 2000-01-01T00:00:00Z: a fixed time keeps the build reproducible.
EPOCH=946684800
CREATED=2000-01-01T00:00:00Z

need_packages=""
command -v umoci >/dev/null 2>&1 || need_packages="$need_packages umoci"
[ -x /bin/busybox ] && dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "ok installed" \
    || need_packages="$need_packages busybox-static"
if [ -n "$need_packages" ]; then
    echo "$0: installing$need_packages" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $need_packages >&2 || {
        DEBIAN_FRONTEND=noninteractive apt-get update >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $need_packages >&2
    }
fi

BUSYBOX_VERSION=$(dpkg-query -W -f='${Version}' busybox-static)
STAMP="recipe=$RECIPE busybox-static=$BUSYBOX_VERSION name=$NAME"
STAMP_FILE=.berth-busybox-image
if [ -f "$OUTDIR/$STAMP_FILE" ] && [ "$(cat "$OUTDIR/$STAMP_FILE")" = "$STAMP" ]; then
    exit 0
fi

PARENT=$(dirname -- "$OUTDIR")
mkdir -p -- "$PARENT"
# Concurrent runs for the same OUTDIR (parallel tests) build one at a time; a later one finds
# the finished image.
LOCK="$PARENT/.$(basename -- "$OUTDIR").lock"
exec 9>"$LOCK"
flock 9
if [ -f "$OUTDIR/$STAMP_FILE" ] && [ "$(cat "$OUTDIR/$STAMP_FILE")" = "$STAMP" ]; then
    exit 0
fi
WORK=$(mktemp -d "$PARENT/.build-busybox-image.XXXXXX")
trap 'rm -rf -- "$WORK"' EXIT INT TERM

LAYOUT="$WORK/layout"
ROOT1="$WORK/rootfs-busybox"
ROOT2="$WORK/rootfs-etc"

# Layer 1: busybox and its applets. The applet list comes from the binary itself.
mkdir -p "$ROOT1/bin" "$ROOT1/sbin" "$ROOT1/usr/bin" "$ROOT1/usr/sbin"
cp /bin/busybox "$ROOT1/bin/busybox"
chmod 0755 "$ROOT1/bin/busybox"
/bin/busybox --list-full | while read -r applet; do
    case $applet in
        bin/busybox | linuxrc | "") continue ;;
    esac
    mkdir -p "$ROOT1/$(dirname "$applet")"
    ln -sf /bin/busybox "$ROOT1/$applet"
done

# Layer 2: users, name service, a writable /tmp and a page to serve.
mkdir -p "$ROOT2/etc" "$ROOT2/home/app" "$ROOT2/tmp" "$ROOT2/www" "$ROOT2/root"
cat >"$ROOT2/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$ROOT2/etc/group" <<'EOF'
root:x:0:
app:x:1000:
nogroup:x:65534:
EOF
cat >"$ROOT2/etc/nsswitch.conf" <<'EOF'
passwd: files
group: files
hosts: files dns
EOF
cat >"$ROOT2/etc/hosts" <<'EOF'
127.0.0.1 localhost
::1 localhost ip6-localhost ip6-loopback
EOF
cat >"$ROOT2/www/index.html" <<'EOF'
<!doctype html>
<html><head><title>berth</title></head><body><p>served by busybox in a berth pod</p></body></html>
EOF
chmod 0644 "$ROOT2/etc/passwd" "$ROOT2/etc/group" "$ROOT2/etc/nsswitch.conf" "$ROOT2/etc/hosts" \
    "$ROOT2/www/index.html"
chmod 0755 "$ROOT2/etc" "$ROOT2/www" "$ROOT2/home" "$ROOT2/home/app"
chmod 0700 "$ROOT2/root"
chmod 1777 "$ROOT2/tmp"
chown 1000:1000 "$ROOT2/home/app"

make_layer() {
    # Deterministic GNU tar: sorted names, fixed mtime, numeric owners; ownership is taken
    # from the staging tree (root unless chowned above).
    tar --numeric-owner --sort=name --mtime="@$EPOCH" --format=pax \
        --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
        -C "$1" -cf "$2" .
}
make_layer "$ROOT1" "$WORK/layer-busybox.tar"
make_layer "$ROOT2" "$WORK/layer-etc.tar"

quiet() {
    # umoci logs progress on stderr; keep it only when a step fails.
    if ! "$@" 2>"$WORK/umoci.log"; then
        cat "$WORK/umoci.log" >&2
        exit 1
    fi
}

# The OCI (Go) name of this host's architecture.
case $(dpkg --print-architecture) in
    armhf | armel) ARCH=arm ;;
    i386) ARCH=386 ;;
    ppc64el) ARCH=ppc64le ;;
    *) ARCH=$(dpkg --print-architecture) ;;
esac

IMAGE="$LAYOUT:$NAME"
quiet umoci init --layout "$LAYOUT"
quiet umoci new --image "$IMAGE"
quiet umoci raw add-layer --image "$IMAGE" --history.created "$CREATED" \
    --history.created_by "busybox-static $BUSYBOX_VERSION" "$WORK/layer-busybox.tar"
quiet umoci raw add-layer --image "$IMAGE" --history.created "$CREATED" \
    --history.created_by "etc, home, tmp, www" "$WORK/layer-etc.tar"
quiet umoci config --image "$IMAGE" --no-history --created "$CREATED" \
    --os linux --architecture "$ARCH" \
    --config.cmd sh \
    --config.env PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    --config.workingdir / \
    --config.label org.opencontainers.image.title=berth-busybox
# umoci keeps replaced manifests and configs; drop them so the layout holds one image.
quiet umoci gc --layout "$LAYOUT"
chmod -R a+rX "$LAYOUT"
printf '%s\n' "$STAMP" >"$LAYOUT/$STAMP_FILE"

# Swap the finished layout into place. A previous OUTDIR (older recipe) is moved aside first.
if [ -e "$OUTDIR" ]; then
    mv -T -- "$OUTDIR" "$WORK/old"
fi
mv -T -- "$LAYOUT" "$OUTDIR"
