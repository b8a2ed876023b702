#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs a benchmark with TMP_PARENT on a new, empty ext4 file system: a sparse image of
# FRESH_SIZE (16G) under TMP_PARENT (/var/tmp), so on the same disk, on a loop device with direct
# I/O (no second page cache under the file system), made, mounted, and removed afterwards.
#
#   tests/bench/on-fresh-ext4.sh tests/bench/bench-fs.sh build
#
# Why: on a file system that has seen many runs, creating a file costs more and varies from run
# to run (ext4 searches past the inodes deleted recently: recently_deleted() in perf), and a
# tar x of 10,000 files on passthrough_ll took anything from 3.2 s to 7.7 s on the same machine
# within an hour. Both sides of every ratio still run on the one file system, in the same run.
# Needs root, mkfs.ext4 and a free loop device; touches nothing but its own image and mount.
set -euo pipefail

[ $# -ge 1 ] || { echo "usage: on-fresh-ext4.sh COMMAND [ARGS...]" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "on-fresh-ext4: needs root (mount)" >&2; exit 1; }
command -v mkfs.ext4 >/dev/null || { echo "on-fresh-ext4: needs mkfs.ext4 (e2fsprogs)" >&2; exit 1; }
parent=${TMP_PARENT:-/var/tmp}
work=$(mktemp -d "$parent/fresh-ext4.XXXXXX")
mounted=0
dev=
cleanup() {
        if [ "$mounted" = 1 ]; then
                umount "$work/fs" || umount -l "$work/fs"
        fi
        if [ -n "$dev" ]; then
                losetup -d "$dev"
        fi
        rm -f "$work/image"
        rmdir "$work/fs" "$work" 2>/dev/null || true
}
trap cleanup EXIT INT TERM
truncate -s "${FRESH_SIZE:-16G}" "$work/image"
mkfs.ext4 -q -F "$work/image"
mkdir "$work/fs"
dev=$(losetup --direct-io=on --find --show "$work/image")
mount "$dev" "$work/fs"
mounted=1
TMP_PARENT=$work/fs "$@"
