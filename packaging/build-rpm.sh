#!/usr/bin/env bash
# Builds the RPMs (poolagent, azfilesfs, azfiles-emu) from packaging/rpm/poolagent.spec with
# rpmbuild and checks spec and packages with rpmlint.
#
#   packaging/build-rpm.sh [OUTDIR]     default OUTDIR: build-pkg/rpm
#
# On Debian, rpmbuild's database knows no installed RPMs, so the BuildRequires (RPM names) cannot
# be checked: the build runs with --nodeps against Debian's -dev packages, and the macros of
# systemd-rpm-macros and meson's RPM macros are absent (the spec falls back to plain meson and
# leaves the systemd scriptlets out). rpmlint's report is written to OUTDIR/rpmlint.txt; rpmlint
# errors fail the script, warnings are listed (each is explained in the README).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-$PWD/build-pkg/rpm}
mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -f "$out"/*.rpm "$out/rpmlint.txt"
version=$(sed -n 's/^Version: *//p' packaging/rpm/poolagent.spec)

tmp=$(mktemp -d /tmp/poolagent-rpm.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/SOURCES" "$tmp/src/poolagent-$version"
bash packaging/copy-tree.sh "$tmp/src/poolagent-$version"
tar -C "$tmp/src" -czf "$tmp/SOURCES/poolagent-$version.tar.gz" "poolagent-$version"

start=$SECONDS
rpmbuild -bb --nodeps --define "_topdir $tmp" packaging/rpm/poolagent.spec >"$out/build.log" 2>&1 || {
        tail -40 "$out/build.log"
        echo "build-rpm: rpmbuild failed (log: $out/build.log)" >&2
        exit 1
}
find "$tmp/RPMS" -name '*.rpm' -exec mv {} "$out/" \;
echo "build-rpm: built in $((SECONDS - start)) s:"
(cd "$out" && ls -1 ./*.rpm)

rpmlint -r packaging/rpm/poolagent.rpmlintrc packaging/rpm/poolagent.spec "$out"/*.rpm >"$out/rpmlint.txt" 2>&1 || rc=$?
cat "$out/rpmlint.txt"
if [ "${rc:-0}" -ne 0 ]; then
        echo "build-rpm: rpmlint found errors" >&2
        exit 1
fi
