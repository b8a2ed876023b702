#!/usr/bin/env bash
# Builds the Debian binary packages (poolagent, azfilesfs, azfiles-emu) with
# dpkg-buildpackage -b and checks them with lintian.
#
#   packaging/build-deb.sh [OUTDIR]     default OUTDIR: build-pkg/deb (under the source tree)
#
# dpkg-buildpackage needs debian/ at the source root, so the source tree (tracked files and
# untracked ones git does not ignore, as they are in the working tree; PKG_SOURCE=head takes the
# last commit instead) is copied into a temporary directory with packaging/debian as debian/,
# and built there. The .debs, .buildinfo and .changes land in OUTDIR; lintian's report in
# OUTDIR/lintian.txt. Exit status non-zero on a build failure or any lintian error or warning.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
out=${1:-$top/build-pkg/deb}
mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -f "$out"/*.deb "$out"/*.buildinfo "$out"/*.changes "$out/lintian.txt"

tmp=$(mktemp -d /tmp/poolagent-deb.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
src=$tmp/poolagent-0.1.0
mkdir "$src"
bash packaging/copy-tree.sh "$src"
rm -rf "$src/debian"
cp -r packaging/debian "$src/debian"

start=$SECONDS
(cd "$src" && dpkg-buildpackage -b -us -uc -j"$(nproc)") >"$out/build.log" 2>&1 || {
        tail -40 "$out/build.log"
        echo "build-deb: dpkg-buildpackage failed (log: $out/build.log)" >&2
        exit 1
}
mv "$tmp"/*.deb "$tmp"/*.buildinfo "$tmp"/*.changes "$out/"
echo "build-deb: built in $((SECONDS - start)) s:"
(cd "$out" && ls -1 ./*.deb)

# Errors and warnings fail; info, pedantic and experimental tags are shown, not counted.
lintian --fail-on error,warning --display-info "$out"/*.changes >"$out/lintian.txt" 2>&1 || lrc=$?
cat "$out/lintian.txt"
if [ "${lrc:-0}" -ne 0 ]; then
        echo "build-deb: lintian found errors or warnings" >&2
        exit 1
fi
echo "build-deb: lintian: no errors, no warnings"
