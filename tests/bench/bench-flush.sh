#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Benchmark (not a test): how fast azfilesfs flushes SIZE_MIB (1024) MiB of dirty data to
# azfiles-emu, as a ratio of raw Put Range throughput measured in the same run (issue 6: "flush
# throughput of 1 GiB of dirty data against the emulator as a ratio of raw Put Range throughput").
# RUNS (3) times, each with a fresh file on the share and a fresh mount and cache:
#   1. raw: Create File and SIZE_MIB/4 Put Ranges of 4 MiB from 8 curl processes, each on one
#      kept-alive connection, the body one 4 MiB file in the page cache (lib-bench.sh, as
#      bench-emu.sh and bench-fs.sh do);
#   2. mounts azfilesfs with writeback=async, async_delay=3600 (nothing uploads by itself),
#      max_dirty and cache_size above SIZE_MIB, the cache on the same disk as the emulator's data;
#      writes the file from SIZE_MIB of random bytes made beforehand (page cache), checks that
#      user.azfilesfs.dirty_bytes is the file's size, syncs the disks, and times
#      `setfattr -n user.azfilesfs.flush -v 600` (it returns when nothing is dirty); checks
#      dirty_bytes is 0 and the file on the share over REST (size, sha256 against the source).
# Prints every run (raw MiB/s, flush MiB/s, their ratio, the driver's HTTP requests during the
# flush) and the medians; exits non-zero when a check fails.
#
#   tests/bench/bench-flush.sh [BUILD_DIR]         (default: build; root and /dev/fuse)
#   RUNS=5 SIZE_MIB=1024 TMP_PARENT=/var/tmp tests/bench/bench-flush.sh build
#
# Runs itself in a private mount namespace; starts one emulator and its own mounts, stops only
# those (by PID), unmounts only its mounts and removes only its own temporary directory.
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib-bench.sh
. "$top/tests/bench/lib-bench.sh"
bench_private_mount_ns "$@"
build=${1:-build}
case $build in /*) ;; *) build=$top/$build ;; esac
RUNS=${RUNS:-3}
SIZE_MIB=${SIZE_MIB:-1024}
TMP_PARENT=${TMP_PARENT:-/var/tmp}
CHUNK_MIB=4
FLUSH_TIMEOUT=600
# Nothing uploads before the flush; the whole file fits dirty and in the cache.
FS_OPTS="writeback=async,async_delay=3600,max_dirty=$((SIZE_MIB * 2))M,cache_size=$((SIZE_MIB * 4))M"

bench_need "$build/tests/emulator/azfiles-emu" "$build/tests/tools/azfiles-sas" \
        "$build/fusefs/azfilesfs" curl sha256sum setfattr getfattr fusermount3 findmnt
[ -e /dev/fuse ] || { echo "bench-flush: no /dev/fuse" >&2; exit 1; }
if [ $((SIZE_MIB % CHUNK_MIB)) -ne 0 ]; then
        echo "SIZE_MIB must be a multiple of $CHUNK_MIB" >&2
        exit 1
fi

tmp=$(mktemp -d "$TMP_PARENT/bench-flush.XXXXXX")
trap bench_cleanup EXIT INT TERM

fail() { echo "bench-flush: $*" >&2; exit 1; }
bench_start_emu 240
share=bench
size=$((SIZE_MIB * 1048576))
chunk=$((CHUNK_MIB * 1048576))
n_chunks=$((SIZE_MIB / CHUNK_MIB))
bench_expect 201 "$(bench_req PUT "$emu_base/$share?restype=share&$sas" -H 'Content-Length: 0')" "Create Share"

# The sources: one 4 MiB chunk for the raw Put Ranges, SIZE_MIB of random bytes for azfilesfs;
# both just written, so in the page cache.
head -c "$chunk" /dev/urandom >"$tmp/chunk"
head -c "$size" /dev/urandom >"$tmp/src.bin"
src_sha=$(sha256sum "$tmp/src.bin" | cut -d' ' -f1)

requests_total() { # mountpoint: the driver's HTTP attempts so far
        getfattr --absolute-names --only-values -n user.azfilesfs.stats "$1" |
                sed -n 's/.*"requests_total": *\([0-9]*\).*/\1/p'
}
check_on_share() { # name: the file's size and sha256 over REST
        local url="$emu_base/$share/$1" len sha
        len=$(curl -sSfI -H "x-ms-version: $BENCH_VERSION" "$url?$sas" |
                tr -d '\r' | awk 'tolower($1) == "content-length:" { print $2 }')
        [ "$len" = "$size" ] || fail "$1 on the share: $len bytes, want $size"
        sha=$(curl -sSf -H "x-ms-version: $BENCH_VERSION" "$url?$sas" | sha256sum | cut -d' ' -f1)
        [ "$sha" = "$src_sha" ] || fail "$1 on the share: sha256 $sha, want $src_sha"
}
tck=$(getconf CLK_TCK)
cpu_of() { # pid: its user+system CPU seconds so far
        awk -v t="$tck" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat"
}
children_cpu() { # user+system CPU seconds of this shell's waited-for children so far, into $1
        times >"$tmp/times" # called outside $(...): a subshell has no children of its own
        printf -v "$1" '%s' "$(awk 'NR == 2 { for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); c += a[1] * 60 + a[2] } }
                END { printf "%.2f", c }' "$tmp/times")"
}
minus() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a - b }'; }
delete_on_share() { # name
        bench_expect 202 "$(bench_req DELETE "$emu_base/$share/$1?$sas")" "Delete File $1"
}

echo "azfilesfs flush benchmark: $SIZE_MIB MiB of dirty data, $CHUNK_MIB MiB Put Ranges, raw: $BENCH_PARALLEL curl" \
        "clients (curl $(curl --version | awk 'NR == 1 { print $2 }')), $(nproc) CPUs, temporary files under" \
        "$TMP_PARENT ($(findmnt -n -o SOURCE,FSTYPE --target "$TMP_PARENT" | tr -s ' ')), $RUNS runs"
echo "mount options: $FS_OPTS"
raws=()
c0='' c1=''
flushes=()
ratios=()
for ((run = 1; run <= RUNS; run++)); do
        # 1. raw Put Ranges into a fresh file.
        raw_url="$emu_base/$share/raw-$run.bin"
        bench_range_confs put "$raw_url" "$n_chunks" "$chunk" "$tmp/chunk"
        sync
        children_cpu c0
        e0=$(cpu_of "$emu_pid")
        t0=$(bench_now)
        bench_create_file "$raw_url" "$size"
        bench_run_ranges put 201 "$size"
        t1=$(bench_now)
        children_cpu c1
        raw_cpu="curl $(minus "$c1" "$c0") s + emulator $(minus "$(cpu_of "$emu_pid")" "$e0") s"
        raw=$(bench_mibs "$SIZE_MIB" "$t0" "$t1")
        delete_on_share "raw-$run.bin"

        # 2. the same amount dirty in azfilesfs, then the flush.
        mnt=$tmp/mnt.$run
        bench_mount_fs "$share" "$mnt" "$tmp/cache.$run" "$FS_OPTS"
        t0=$(bench_now)
        dd if="$tmp/src.bin" of="$mnt/flush-$run.bin" bs=4M status=none
        t1=$(bench_now)
        write=$(bench_mibs "$SIZE_MIB" "$t0" "$t1")
        dirty=$(bench_dirty_bytes "$mnt")
        [ "$dirty" = "$size" ] || fail "run $run: dirty_bytes $dirty after the write, want $size"
        sync
        r0=$(requests_total "$mnt")
        c0=$(cpu_of "$fs_pid")
        e0=$(cpu_of "$emu_pid")
        t0=$(bench_now)
        bench_flush_fs "$mnt" "$FLUSH_TIMEOUT" || fail "run $run: the flush failed"
        t1=$(bench_now)
        flush_cpu="azfilesfs $(minus "$(cpu_of "$fs_pid")" "$c0") s + emulator $(minus "$(cpu_of "$emu_pid")" "$e0") s"
        r1=$(requests_total "$mnt")
        dirty=$(bench_dirty_bytes "$mnt")
        [ "$dirty" = 0 ] || fail "run $run: dirty_bytes $dirty after the flush, want 0"
        flush=$(bench_mibs "$SIZE_MIB" "$t0" "$t1")
        flush_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
        check_on_share "flush-$run.bin"
        bench_unmount_fs "$mnt" "$fs_pid"
        rm -rf "$tmp/cache.$run"
        delete_on_share "flush-$run.bin"

        ratio=$(bench_ratio "$flush" "$raw")
        echo "run $run: raw Put Range $raw MiB/s, flush $flush MiB/s ($flush_s s, $((r1 - r0)) requests)," \
                "ratio $ratio; write into the cache $write MiB/s; on the share: size and sha256 match"
        echo "       CPU: raw $raw_cpu; flush $flush_cpu"
        raws+=("$raw")
        flushes+=("$flush")
        ratios+=("$ratio")
done
echo "median raw Put Range: $(bench_median "${raws[@]}") MiB/s"
echo "median flush:         $(bench_median "${flushes[@]}") MiB/s"
echo "median ratio flush/raw (per run): $(bench_median "${ratios[@]}")"
