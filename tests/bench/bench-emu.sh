#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Benchmark (not a test): shows that azfiles-emu is never the bottleneck. With curl on loopback it
#   1. uploads a 1 GiB file as 256 Put Range requests of 4 MiB, 8 in parallel (target >= 400 MiB/s)
#      from one 4 MiB file in /tmp (page cache: the client reads no disk),
#   2. downloads it as 256 ranged GETs of 4 MiB, 8 in parallel, into /dev/null (target >= 1 GiB/s),
# each RUNS times (default 3), and prints every figure, the median and its ratio to the target.
# Requests carry an account SAS made by tests/tools/azfiles-sas (common/sas.c).
#
#   tests/bench/bench-emu.sh [BUILD_DIR]        (default: build; must hold a compiled tree)
#   RUNS=5 SIZE_MIB=1024 tests/bench/bench-emu.sh build-conf
#
# It starts one emulator on a free loopback port with --data in its own temporary directory,
# stops only that process (by PID) and removes only that directory.
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-build}
case $build in /*) ;; *) build=$top/$build ;; esac
# shellcheck source-path=SCRIPTDIR source=lib-bench.sh
. "$top/tests/bench/lib-bench.sh"
RUNS=${RUNS:-3}
SIZE_MIB=${SIZE_MIB:-1024}
CHUNK_MIB=4
PARALLEL=$BENCH_PARALLEL
GET_TARGET=1024 # MiB/s
PUT_TARGET=400  # MiB/s

bench_need "$build/tests/emulator/azfiles-emu" "$build/tests/tools/azfiles-sas" curl
if [ $((SIZE_MIB % CHUNK_MIB)) -ne 0 ]; then
        echo "SIZE_MIB must be a multiple of $CHUNK_MIB" >&2
        exit 1
fi

tmp=$(mktemp -d /tmp/bench-emu.XXXXXX)
trap bench_cleanup EXIT INT TERM

bench_start_emu 120
share=bench
file_url="$emu_base/$share/big.bin"
size=$((SIZE_MIB * 1048576))
chunk=$((CHUNK_MIB * 1048576))
n_chunks=$((SIZE_MIB / CHUNK_MIB))

bench_expect 201 "$(bench_req PUT "$emu_base/$share?restype=share&$sas" -H 'Content-Length: 0')" "Create Share"
bench_create_file "$file_url" "$size"

# The upload source: one 4 MiB chunk of random bytes in /tmp, read from the page cache.
head -c "$chunk" /dev/urandom >"$tmp/chunk"

# curl config files: 8 clients (one curl process each, as the 2 CPUs are better used by 8
# processes than by one curl --parallel), client p doing ranges p, p+8, p+16, ... in sequence on
# one kept-alive connection.
bench_range_confs put "$file_url" "$n_chunks" "$chunk" "$tmp/chunk"
bench_range_confs get "$file_url" "$n_chunks" "$chunk" /dev/null

run_batch() { # put|get want-status: prints MiB/s; checks every answer and the byte count
        local t0 t1
        t0=$(bench_now)
        bench_run_ranges "$1" "$2" "$size"
        t1=$(bench_now)
        bench_mibs "$SIZE_MIB" "$t0" "$t1"
}

echo "azfiles-emu benchmark: $SIZE_MIB MiB file, $CHUNK_MIB MiB ranges, $PARALLEL curl clients," \
        "curl $(curl --version | awk 'NR == 1 { print $2 }') on loopback, $(nproc) CPUs, $RUNS runs"
puts=()
gets=()
for ((run = 1; run <= RUNS; run++)); do
        p=$(run_batch put 201)
        g=$(run_batch get 206)
        echo "run $run: Put Range $p MiB/s, ranged GET $g MiB/s"
        puts+=("$p")
        gets+=("$g")
done
pm=$(bench_median "${puts[@]}")
gm=$(bench_median "${gets[@]}")
echo "median Put Range upload: $pm MiB/s (target $PUT_TARGET MiB/s, ratio $(bench_ratio "$pm" "$PUT_TARGET"))"
echo "median ranged GET:       $gm MiB/s (target $GET_TARGET MiB/s, ratio $(bench_ratio "$gm" "$GET_TARGET"))"
ok=0
[ "$pm" -ge "$PUT_TARGET" ] || { echo "Put Range below target"; ok=1; }
[ "$gm" -ge "$GET_TARGET" ] || { echo "ranged GET below target"; ok=1; }
exit "$ok"
