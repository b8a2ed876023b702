#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Benchmark (not a test): the resident memory (VmRSS) that poolagentd's libraries cost a process
# before it does any work of its own, as the distribution ships them. It builds
# footprint-floor.c (which does nothing but print its own VmRSS and page faults) once per set of
# libraries, linked with -Wl,--no-as-needed so that each is loaded, and runs each three times,
# keeping the lowest VmRSS:
#
#   libc only; + libsystemd, json-c, inih (the agent before HTTP); + libmicrohttpd (the health
#   endpoint); + libcurl, loaded; + curl_global_init(), as the agent calls it (its library floor);
#   and the same two with Debian's GnuTLS flavour of libcurl (libcurl3-gnutls), when installed.
#
#   tests/bench/bench-agent-floor.sh
#
# "mapped without a fault" is a lower bound on the resident pages the process never faulted on:
# VmRSS minus one page per fault (minflt + majflt). The kernel maps them by fault-around: up to
# 64 KiB of page-cache pages around each file page a process faults on. Needs cc and
# pkg-config; writes only in its own temporary directory, which it removes.
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
src=$top/tests/bench/footprint-floor.c
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-floor.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
libdir=$(pkg-config --variable=libdir libcurl)
gnutls_curl=$libdir/libcurl-gnutls.so.4

# build NAME CFLAGS LIBS...
build() {
        local name=$1 cflags=$2
        shift 2
        # shellcheck disable=SC2086 # pkg-config output is a list of flags
        cc -O2 $cflags -o "$tmp/$name" "$src" -Wl,--no-as-needed "$@"
}
# run LABEL NAME [ARG]: the run of three with the lowest VmRSS
run() {
        local label=$1 name=$2 arg=${3:-} out best="" i
        for ((i = 0; i < 3; i++)); do
                out=$("$tmp/$name" ${arg:+"$arg"})
                if [ -z "$best" ] || awk -v a="$out" -v b="$best" 'BEGIN {
                        split(a, x); split(b, y); exit !(x[2] + 0 < y[2] + 0) }'; then
                        best=$out
                fi
        done
        printf "%-44s %s\n" "$label" "$best"
}

read -ra base <<<"$(pkg-config --libs libsystemd json-c inih)"
read -ra mhd <<<"$(pkg-config --libs libmicrohttpd)"
read -ra curl <<<"$(pkg-config --libs libcurl)"
curl_cflags="-DWITH_CURL $(pkg-config --cflags libcurl)"
build libc ""
build base "" "${base[@]}"
build mhd "" "${base[@]}" "${mhd[@]}"
build curl "$curl_cflags" "${base[@]}" "${mhd[@]}" "${curl[@]}"

echo "VmRSS of a process that only loads poolagentd's libraries ($(uname -r), $(pkg-config --modversion libcurl) libcurl):"
run "libc only" libc
run "+ libsystemd, json-c, inih" base
run "+ libmicrohttpd" mhd
run "+ libcurl ($(basename "$(readlink -f "$libdir/libcurl.so")")), loaded" curl
run "+ curl_global_init() (the agent's floor)" curl init
if [ -e "$gnutls_curl" ]; then
        build gnutls "$curl_cflags" "${base[@]}" "${mhd[@]}" "$gnutls_curl"
        run "same with libcurl-gnutls, loaded" gnutls
        run "same with libcurl-gnutls, curl_global_init()" gnutls init
else
        echo "(no $gnutls_curl: the GnuTLS flavour of libcurl is not installed)"
fi
