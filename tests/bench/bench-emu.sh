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
emu=$build/tests/emulator/azfiles-emu
sas_tool=$build/tests/tools/azfiles-sas
RUNS=${RUNS:-3}
SIZE_MIB=${SIZE_MIB:-1024}
CHUNK_MIB=4
PARALLEL=8
GET_TARGET=1024 # MiB/s
PUT_TARGET=400  # MiB/s
account=devstoreaccount1
key='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
version=2025-05-05

for f in "$emu" "$sas_tool"; do
        [ -x "$f" ] || { echo "missing $f: build first (meson compile -C $build)" >&2; exit 1; }
done
command -v curl >/dev/null || { echo "curl is needed" >&2; exit 1; }
if [ $((SIZE_MIB % CHUNK_MIB)) -ne 0 ]; then
        echo "SIZE_MIB must be a multiple of $CHUNK_MIB" >&2
        exit 1
fi

tmp=$(mktemp -d /tmp/bench-emu.XXXXXX)
emu_pid=
cleanup() {
        if [ -n "$emu_pid" ]; then
                kill -TERM "$emu_pid" 2>/dev/null || true
                wait "$emu_pid" 2>/dev/null || true
        fi
        rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

mkdir "$tmp/data"
"$emu" --listen 127.0.0.1:0 --data "$tmp/data" --account "$account" --key "$key" \
        >"$tmp/ready" 2>"$tmp/emu.log" &
emu_pid=$!
# Wait (bounded, 10 s) for the ready line, or for the emulator to die.
for _ in $(seq 100); do
        grep -q 'azfiles-emu ready:' "$tmp/ready" 2>/dev/null && break
        kill -0 "$emu_pid" 2>/dev/null || { cat "$tmp/emu.log" >&2; exit 1; }
        sleep 0.1
done
grep -q 'azfiles-emu ready:' "$tmp/ready" || { echo "emulator not ready after 10 s" >&2; exit 1; }
base=$(sed -n 's/.*file=\([^ ]*\).*/\1/p' "$tmp/ready")
sas=$("$sas_tool" --account-sas --account "$account" --key "$key" --permissions rwdlc \
        --expiry-minutes 120 --version "$version")
share=bench
file_url="$base/$share/big.bin"
size=$((SIZE_MIB * 1048576))
chunk=$((CHUNK_MIB * 1048576))
n_chunks=$((SIZE_MIB / CHUNK_MIB))

req() { # method url-with-query [curl args...]: prints the status
        local m=$1 u=$2
        shift 2
        curl -sS -o /dev/null -w '%{http_code}' -X "$m" -H "x-ms-version: $version" "$@" "$u"
}
expect() { # want got what
        [ "$1" = "$2" ] || { echo "$3: HTTP $2, want $1" >&2; tail -5 "$tmp/emu.log" >&2; exit 1; }
}

expect 201 "$(req PUT "$base/$share?restype=share&$sas" -H 'Content-Length: 0')" "Create Share"
expect 201 "$(req PUT "$file_url?$sas" -H 'x-ms-type: file' -H "x-ms-content-length: $size" \
        -H 'Content-Length: 0')" "Create File"

# The upload source: one 4 MiB chunk of random bytes in /tmp, read from the page cache.
head -c "$chunk" /dev/urandom >"$tmp/chunk"

# curl config files: 8 clients (one curl process each, as the 2 CPUs are better used by 8
# processes than by one curl --parallel), client p doing ranges p, p+8, p+16, ... in sequence on
# one kept-alive connection; --next separates the transfers.
for ((p = 0; p < PARALLEL; p++)); do
        for ((i = p; i < n_chunks; i += PARALLEL)); do
                s=$((i * chunk))
                e=$((s + chunk - 1))
                [ "$i" -gt "$p" ] && echo 'next'
                echo "url = \"$file_url?comp=range&$sas\""
                echo "upload-file = \"$tmp/chunk\""
                echo 'header = "x-ms-write: update"'
                echo "header = \"x-ms-range: bytes=$s-$e\""
                echo "header = \"x-ms-version: $version\""
                echo 'header = "Expect:"'
                echo 'output = "/dev/null"'
                echo 'write-out = "%{http_code} %{size_upload}\n"'
        done >"$tmp/put.$p.conf"
        for ((i = p; i < n_chunks; i += PARALLEL)); do
                s=$((i * chunk))
                e=$((s + chunk - 1))
                [ "$i" -gt "$p" ] && echo 'next'
                echo "url = \"$file_url?$sas\""
                echo "header = \"x-ms-range: bytes=$s-$e\""
                echo "header = \"x-ms-version: $version\""
                echo 'output = "/dev/null"'
                echo 'write-out = "%{http_code} %{size_download}\n"'
        done >"$tmp/get.$p.conf"
done

now() { date +%s.%N; }
run_batch() { # put|get want-status: prints MiB/s; checks every answer and the byte count
        local kind=$1 want=$2 t0 t1 bad p bytes pids=()
        t0=$(now)
        for ((p = 0; p < PARALLEL; p++)); do
                curl -sS -K "$tmp/$kind.$p.conf" >"$tmp/out.$p" &
                pids+=($!)
        done
        wait "${pids[@]}"
        t1=$(now)
        cat "$tmp"/out.* >"$tmp/out"
        bad=$(awk -v w="$want" '$1 != w' "$tmp/out" | head -3)
        [ -z "$bad" ] || { echo "unexpected answers: $bad" >&2; exit 1; }
        [ "$(wc -l <"$tmp/out")" -eq "$n_chunks" ] || { echo "missing answers" >&2; exit 1; }
        bytes=$(awk '{ s += $2 } END { print s }' "$tmp/out")
        [ "$bytes" -eq "$size" ] || { echo "$kind moved $bytes bytes, want $size" >&2; exit 1; }
        awk -v a="$t0" -v b="$t1" -v m="$SIZE_MIB" 'BEGIN { printf "%.0f", m / (b - a) }'
}
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
ratio() { awk -v x="$1" -v t="$2" 'BEGIN { printf "%.2f", x / t }'; }

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
pm=$(median "${puts[@]}")
gm=$(median "${gets[@]}")
echo "median Put Range upload: $pm MiB/s (target $PUT_TARGET MiB/s, ratio $(ratio "$pm" "$PUT_TARGET"))"
echo "median ranged GET:       $gm MiB/s (target $GET_TARGET MiB/s, ratio $(ratio "$gm" "$GET_TARGET"))"
ok=0
[ "$pm" -ge "$PUT_TARGET" ] || { echo "Put Range below target"; ok=1; }
[ "$gm" -ge "$GET_TARGET" ] || { echo "ranged GET below target"; ok=1; }
exit "$ok"
