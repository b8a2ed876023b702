#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A stand-in for azfilesfs, to validate the fs test harness itself (not a test, not a driver):
# accepts azfilesfs's command line (SOURCE MOUNTPOINT -f -o credentials=...,cache_dir=DIR,...) and
# runs libfuse's example passthrough_ll over DIR/standin-data, with the mount type
# fuse.azfilesfs and user xattrs passed through (so user.azfilesfs.dirty_bytes reads "0" and the
# flush setxattr succeeds). Nothing reaches the share: a test's share compare must fail.
#
#   PASSTHROUGH_LL=/path/to/passthrough_ll AZFILESFS=tests/integration/fs-standin.sh test-fs-...
# Build passthrough_ll with:
#   gcc -O2 -o passthrough_ll /usr/share/doc/libfuse3-dev/examples/passthrough_ll.c \
#       $(pkg-config --cflags --libs fuse3)
set -euo pipefail
mnt=$2
opts=
while [ $# -gt 0 ]; do
        case $1 in -o) opts=$2; shift ;; esac
        shift
done
cache=$(tr ',' '\n' <<<"$opts" | sed -n 's/^cache_dir=//p')
[ -n "$cache" ] || { echo "fs-standin: no cache_dir" >&2; exit 1; }
mkdir -p "$cache/standin-data"
python3 -c 'import os, sys; os.setxattr(sys.argv[1], "user.azfilesfs.dirty_bytes", b"0")' \
        "$cache/standin-data"
exec "${PASSTHROUGH_LL:?set PASSTHROUGH_LL}" -f -o "source=$cache/standin-data,subtype=azfilesfs,xattr" "$mnt"
