#!/usr/bin/env bash
# Prints the path of a cached Debian bookworm minbase root filesystem (a .tar.zst) for the
# end-to-end test, building it with debootstrap when the cache has none for this package list.
#
#   tests/e2e/build-rootfs.sh            build if needed, print the tarball's path
#
# The cache key is a digest of the suite, the package list and this script's format version, so
# a changed list builds a new tarball once; older tarballs are removed. Building takes 1-12 min
# (dpkg unpack and configure dominate), unpacking about 1-2 s.
#
# Environment: E2E_CACHE_DIR (default /var/cache/poolagent-e2e), E2E_MIRROR (default: the first
# bookworm URI in apt's sources, else http://deb.debian.org/debian).
set -euo pipefail

suite=bookworm
format=1
# What the test's VM image holds besides minbase: systemd as init with logind and the bus,
# cloud-init, FUSE, and the run-time libraries of the packages under test (so that dpkg -i of
# the built .debs finds every dependency without a network install).
packages=(
        systemd systemd-sysv dbus libpam-systemd cloud-init fuse3 ca-certificates
        # debootstrap does not resolve virtual packages: python3-cryptography (for cloud-init)
        # needs python3-cffi-backend-api-*, which this provides.
        python3-cffi-backend
        libsystemd0 libcurl4 libinih1 libfuse3-3 libjson-c5 libexpat1 libssl3 libmicrohttpd12
)

cache_dir=${E2E_CACHE_DIR:-/var/cache/poolagent-e2e}
key=$(printf '%s\n' "$suite" "$format" "${packages[@]}" | sha256sum | cut -c1-16)
tarball=$cache_dir/rootfs-$suite-$key.tar.zst
if [ -s "$tarball" ]; then
        echo "$tarball"
        exit 0
fi

mirror=${E2E_MIRROR:-}
if [ -z "$mirror" ]; then
        mirror=$(awk '/^URIs:/ {u=$2} /^Suites:/ && / bookworm( |$)/ && u ~ /debian\/?$/ {print u; exit}' \
                /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
        mirror=${mirror:-http://deb.debian.org/debian}
fi

mkdir -p "$cache_dir"
work=$(mktemp -d "$cache_dir/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
start=$SECONDS
echo "build-rootfs: debootstrap $suite from $mirror (1-4 min on a quiet machine, 12 at load 11)" >&2
include=$(
        IFS=,
        echo "${packages[*]}"
)
if ! debootstrap --variant=minbase --include="$include" "$suite" "$work/root" "$mirror" \
        >"$work/debootstrap.log" 2>&1; then
        tail -30 "$work/debootstrap.log" >&2
        [ -f "$work/root/debootstrap/debootstrap.log" ] && tail -30 "$work/root/debootstrap/debootstrap.log" >&2
        echo "build-rootfs: debootstrap failed" >&2
        exit 1
fi
# Images are generic: the host's name and apt caches do not belong in them.
echo e2e >"$work/root/etc/hostname"
rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"*
tar --zstd -C "$work/root" -cf "$work/rootfs.tar.zst" .
find "$cache_dir" -maxdepth 1 -name "rootfs-$suite-*.tar.zst" -delete
mv "$work/rootfs.tar.zst" "$tarball"
echo "build-rootfs: built $tarball in $((SECONDS - start)) s" >&2
echo "$tarball"
