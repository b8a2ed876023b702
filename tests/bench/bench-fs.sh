#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Benchmark (not a test) of azfilesfs against azfiles-emu on this machine. Every figure is
# printed with its ratio to a baseline measured in the same run (issue 3's targets in brackets):
#   1. cold sequential read of a SIZE_MIB (1024) MiB file  vs  raw curl ranged GETs (8 parallel,
#      4 MiB) into files on the disk that holds the cache            [>= 0.8]
#   2. sequential write of the same size through close()  vs  raw curl Put Ranges (8 parallel,
#      4 MiB), Create File included                                    [>= 0.8]
#   3. warm (cached) re-read  vs  libfuse's example passthrough_ll (cache=always) over local disk,
#      each read once before                                          [>= 0.8]
#   4. tar x of FILES (10,000) small files with writeback=async  vs  tar x on passthrough_ll
#      [<= 2x the time], then a flush and every file checked on the share over REST; in the
#      default mode the requests per small file from the emulator's counters [<= 2], split into
#      those for files (Create File, Put Range, ...) and those for directories (Create
#      Directory, Set Directory Metadata/Properties, List, Get Directory Properties)
#   5. ls -l of a FILES-entry directory on a fresh mount: List requests [<= FILES/5000 + 2] and
#      all other requests [0 per file]
#   6. requests of an idle mount per minute over IDLE_SECONDS (120)   [<= 1]
#   7. peak RSS (VmHWM) of azfilesfs during the copies                 [<= 64 MiB]
# Figures 1-3 are measured in ROUNDS (6) rounds and figure 4 in TAR_ROUNDS (2), each one timing
# the baseline and azfilesfs one right after the other, the baseline first in odd rounds and
# azfilesfs first in even ones; each timed step starts with nothing left to write back (sync).
# The figure is the geometric mean of the rounds' ratios, printed with every round's own. This
# machine's speed drifts by half within minutes (other tenants, the disk's writeback), and a
# ratio of two steps taken next to each other drifts far less than one of steps taken minutes
# apart; the order within a round matters too (see the rounds below).
# Without BUILD_DIR/fusefs/azfilesfs the baselines still run and the driver's figures read
# "n/a (azfilesfs not built)".
#
#   tests/bench/bench-fs.sh BUILD_DIR
#   SIZE_MIB=256 FILES=2000 IDLE_SECONDS=30 tests/bench/bench-fs.sh build
#   TMP_PARENT=/mnt tests/bench/bench-fs.sh build   (where cache, data and baselines live)
#   TMP_PARENT=/var/tmp IDLE_SECONDS=60 tests/bench/on-fresh-ext4.sh tests/bench/bench-fs.sh build
#     (the figures in BENCHMARKS.md: on a new ext4 with a journal, as a pool VM's /mnt is)
#   FS_OPTIONS=transfer_threads=1 ...: options added to every azfilesfs mount (experiments)
#   SETTLE_MEMORY=1 ...: before each timed step, an untimed read of a new sparse file takes up the
#     free memory but 512 MiB (settle_memory below; both sides of every ratio get it)
#
# Needs root and /dev/fuse, curl, tar, gcc and libfuse3-dev (passthrough_ll is compiled from
# /usr/share/doc/libfuse3-dev/examples at run time). It runs itself in a private mount namespace,
# starts one emulator and its own mounts, stops only those (by PID) and removes only its own
# temporary directory (lib-bench.sh).
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib-bench.sh
. "$top/tests/bench/lib-bench.sh"
bench_private_mount_ns "$@"
build=${1:?usage: bench-fs.sh BUILD_DIR}
case $build in /*) ;; *) build=$top/$build ;; esac
fs=$build/fusefs/azfilesfs
SIZE_MIB=${SIZE_MIB:-1024}
SETTLE_MEMORY=${SETTLE_MEMORY:-0}
FILES=${FILES:-10000}
IDLE_SECONDS=${IDLE_SECONDS:-120}
ROUNDS=${ROUNDS:-6}
TAR_ROUNDS=${TAR_ROUNDS:-2}
TMP_PARENT=${TMP_PARENT:-/tmp}
CHUNK_MIB=4
examples=/usr/share/doc/libfuse3-dev/examples

bench_need "$build/tests/emulator/azfiles-emu" "$build/tests/tools/azfiles-sas" \
        curl tar gcc pkg-config python3 fusermount3 setfattr
[ -e /dev/fuse ] || { echo "bench-fs: no /dev/fuse" >&2; exit 1; }
have_fs=0
[ -x "$fs" ] && have_fs=1

tmp=$(mktemp -d "$TMP_PARENT/bench-fs.XXXXXX")
trap bench_cleanup EXIT INT TERM

now() { bench_now; }
mibs() { bench_mibs "$@"; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
# The whole machine's CPU time so far in clock ticks (/proc/stat): "busy idle", busy being
# user, nice, system, irq and softirq, idle being idle and iowait. cpu_since BUSY0 IDLE0 prints
# what the step since used: "busy/idle".
cpu_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $5 + $6 }' /proc/stat; }
cpu_since() {
        local b i
        read -r b i < <(cpu_ticks)
        echo "$((b - $1))/$((i - $2))"
}
ratio() { bench_ratio "$@"; }
# SETTLE_MEMORY=1: on this VM the host takes back memory the guest leaves free for a few seconds
# (free page reporting), and the guest's next use of such a page costs about 1.7 s per GiB: 2 GiB
# of page cache took 3.4 s to fill from memory freed 10 s before and 0.8 s by reclaiming clean
# page cache (BENCHMARKS.md). So a step's time depended on what the steps before it had freed,
# and when. With this set, each timed step starts after a read of a new sparse file (no disk
# blocks: page cache only) has taken up all free memory but 512 MiB, so that the step gets its
# pages by reclaiming clean page cache, as on a VM whose memory is all in use. The files stay
# until the end (the oldest are reclaimed first).
settle_n=0
settle_memory() {
        local free_kib
        [ "$SETTLE_MEMORY" = 1 ] || return 0
        free_kib=$(awk '/^MemFree:/ { print $2 }' /proc/meminfo)
        [ "$free_kib" -gt $(((512 + 64) * 1024)) ] || return 0
        settle_n=$((settle_n + 1))
        truncate -s $(((free_kib - 512 * 1024) * 1024)) "$tmp/settle.$settle_n"
        cat "$tmp/settle.$settle_n" >/dev/null
}
na="n/a (azfilesfs not built)"

# ---- emulator, share, SAS ------------------------------------------------------------------------
mkdir "$tmp/disk"
bench_start_emu 240 --imds 127.0.0.1:0
base=$emu_base
imds=$emu_imds
version=$BENCH_VERSION
share=bench
size=$((SIZE_MIB * 1048576))
chunk=$((CHUNK_MIB * 1048576))
n_chunks=$((SIZE_MIB / CHUNK_MIB))

counters() { curl -sS "$imds/__emu/counters${1:-}"; }
count_of() { # json op: requests of one operation ("" = all)
        python3 -c 'import json, sys
d = json.load(sys.stdin)
op = sys.argv[1]
print(d["requests"] if not op else d["counters"].get(op, {}).get("requests", 0))' "$1"
}

bench_expect 201 "$(bench_req PUT "$base/$share?restype=share&$sas" -H 'Content-Length: 0')" "Create Share"

# ---- mounts (lib-bench.sh) ---------------------------------------------------------------------------
mount_fs() { # mountpoint cache_dir [extra options]; FS_OPTIONS= go to every mount
        local extra=${FS_OPTIONS:-}
        [ -z "${3:-}" ] || extra=${extra:+$extra,}$3
        bench_mount_fs "$share" "$1" "$2" "$extra"
}
unmount_fs() { bench_unmount_fs "$@"; }      # mountpoint pid
flush_fs() { bench_flush_fs "$@"; }          # mountpoint seconds
peak_rss=0
note_rss() { # pid: remembers the highest VmHWM in KiB
        local v
        v=$(awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0)
        [ "${v:-0}" -gt "$peak_rss" ] && peak_rss=$v
        return 0
}

# passthrough_ll from libfuse's examples, over a directory on the same disk, with cache=always (it
# keeps the page cache across opens, as azfilesfs does for unchanged files: the fair warm baseline).
# shellcheck disable=SC2046 # pkg-config prints several words
gcc -O2 -o "$tmp/passthrough_ll" "$examples/passthrough_ll.c" $(pkg-config --cflags --libs fuse3)
pt_pid=
mount_pt() { # mountpoint source
        mkdir -p "$1" "$2"
        "$tmp/passthrough_ll" -f -o "source=$2,cache=always" "$1" >>"$tmp/passthrough.log" 2>&1 &
        pt_pid=$!
        bench_pids+=("$pt_pid")
        bench_mounts+=("$1")
        for _ in $(seq 200); do
                findmnt -n "$1" >/dev/null && return 0
                sleep 0.1
        done
        echo "passthrough_ll did not mount" >&2
        exit 1
}

echo "azfilesfs benchmark: $SIZE_MIB MiB file, $FILES small files, $(nproc) CPUs," \
        "curl $(curl --version | awk 'NR == 1 { print $2 }'), temporary files under $TMP_PARENT," \
        "$([ "$SETTLE_MEMORY" = 1 ] && echo "memory settled before each timed step" ||
                echo "free memory as found")${FS_OPTIONS:+, azfilesfs -o $FS_OPTIONS}"

head -c "$chunk" /dev/urandom >"$tmp/chunk"
for ((i = 0; i < n_chunks; i++)); do cat "$tmp/chunk"; done >"$tmp/disk/src.bin"
# ---- 4. the trees for tar x ------------------------------------------------------------------------
mkdir -p "$tmp/tree"
python3 - "$tmp/tree" "$FILES" <<'EOF'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(7)
for i in range(n):
    d = os.path.join(root, "src", "dir%03d" % (i % 100))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "file %05d.txt" % i), "wb") as f:
        f.write(rnd.randbytes(rnd.randrange(0, 4096)))
flat = os.path.join(root, "flat")
os.makedirs(flat, exist_ok=True)
for i in range(n):
    with open(os.path.join(flat, "entry-%05d" % i), "wb") as f:
        f.write(b"x" * (i % 100))
EOF
tar -C "$tmp/tree" -cf "$tmp/tree.tar" src
tar -C "$tmp/tree" -cf "$tmp/flat.tar" flat

# ---- the driver ------------------------------------------------------------------------------------
tar_ok=$na tar_flush=$na split=$na lists=$na others=$na
idle=$na rss=$na
verify_share() { # local-dir share-dir: every file's bytes on the share over REST
        python3 - "$base" "$share" "$sas" "$version" "$1" "$2" <<'EOF'
import os, sys, urllib.parse, urllib.request, xml.etree.ElementTree as ET
base, share, sas, ver, local, rel = sys.argv[1:]
def get(url, hdrs={}):
    r = urllib.request.Request(url, headers={"x-ms-version": ver, **hdrs})
    with urllib.request.urlopen(r) as a:
        return a.read()
def listdir(rel):
    names, marker = {}, ""
    while True:
        q = "restype=directory&comp=list&maxresults=5000" + ("&marker=" + urllib.parse.quote(marker) if marker else "")
        x = ET.fromstring(get("%s/%s/%s?%s&%s" % (base, share, urllib.parse.quote(rel), q, sas)))
        for e in x.iter():
            if e.tag in ("File", "Directory"):
                names[e.find("Name").text] = e.tag
        marker = (x.findtext("NextMarker") or "")
        if not marker:
            return names
bad = 0
def walk(local, rel):
    global bad
    on_share = listdir(rel)
    here = sorted(os.listdir(local))
    if sorted(on_share) != here:
        print("differs in %s: %d on the share, %d local" % (rel, len(on_share), len(here)))
        bad += 1
        return
    for n in here:
        p = os.path.join(local, n)
        r = rel + "/" + n
        if os.path.isdir(p):
            walk(p, r)
        else:
            want = open(p, "rb").read()
            got = get("%s/%s/%s?%s" % (base, share, urllib.parse.quote(r), sas)) if want else b""
            if got != want:
                print("bytes differ: " + r)
                bad += 1
walk(local, rel)
sys.exit(1 if bad else 0)
EOF
}
# 4. tar x on passthrough_ll and in writeback=async mode, TAR_ROUNDS rounds as for figures 1-3
# below (passthrough_ll first in odd rounds), then a flush; in the last round the flat tree of
# figure 5 is extracted too and every file checked on the share. Before the rounds of figures
# 1-3: after their 30 GiB written and removed, every tar x was slower, azfilesfs's (three new
# files per small file: its cache file and record, the emulator's copy) more than
# passthrough_ll's (one) (BENCHMARKS.md).
timed_tar() { # directory: makes it, syncs, prints the seconds of a tar x of the tree into it
        local a b
        mkdir "$1"
        sync
        settle_memory
        a=$(now)
        tar -C "$1" -xf "$tmp/tree.tar"
        b=$(now)
        secs "$a" "$b"
}
pt_tar_step() {
        mount_pt "$tmp/pt" "$tmp/disk"
        pt_tar=$(timed_tar "$tmp/pt/untar.$round")
        unmount_fs "$tmp/pt" "$pt_pid"
}
fs_tar_step() {
        mount_fs "$tmp/m3" "$tmp/disk/cache3.$round" writeback=async
        fs_tar=$(timed_tar "$tmp/m3/async.$round")
        if [ "$round" = "$TAR_ROUNDS" ]; then
                mkdir "$tmp/m3/listing"
                tar -C "$tmp/m3/listing" -xf "$tmp/flat.tar"
        fi
        t0=$(now)
        flush_fs "$tmp/m3" 600
        t1=$(now)
        tar_flush="flush of what was left $(secs "$t0" "$t1") s"
        note_rss "$fs_pid"
        if [ "$round" = "$TAR_ROUNDS" ]; then
                if verify_share "$tmp/tree/src" "async.$round/src"; then
                        tar_ok="every file on the share"
                else
                        tar_ok="FILES MISSING OR WRONG"
                fi
        fi
        unmount_fs "$tmp/m3" "$fs_pid"
}
in_order() { # baseline-step azfilesfs-step: both, the baseline first in odd rounds
        if [ "$have_fs" = 0 ]; then
                "$1"
        elif [ $((round % 2)) = 1 ]; then
                "$1"
                "$2"
        else
                "$2"
                "$1"
        fi
}
tars=() r_tar=()
for ((round = 1; round <= TAR_ROUNDS; round++)); do
        fs_tar=-
        in_order pt_tar_step fs_tar_step
        [ "$have_fs" = 0 ] || r_tar+=("$(ratio "$fs_tar" "$pt_tar")")
        tars+=("$fs_tar/$pt_tar")
done

# ---- 1, 2, 3: ROUNDS rounds of baseline and azfilesfs, one right after the other -------------------
# On this VM the order of two steps moves the figure by up to twice either way: whichever of the
# pair runs first writes up to twice as fast as the one after it (BENCHMARKS.md; the first
# fills pages just freed, and the host takes back pages left unused). So the baseline goes first
# in odd rounds and azfilesfs in even ones, and the figure is the geometric mean of the rounds'
# ratios, in which an order effect of a factor and its inverse cancel. Every timed step starts
# from a disk with nothing left to write back (sync), and first removes what the same step left
# in the round before.
delete_file() { bench_expect 202 "$(bench_req DELETE "$base/$share/$1?$sas")" "Delete File $1"; }
raw_put_step() {
        [ "$round" = 1 ] || delete_file "raw.$((round - 1)).bin"
        bench_range_confs put "$file_url" "$n_chunks" "$chunk" "$tmp/chunk"
        sync
        settle_memory
        read -r c0 c1 < <(cpu_ticks)
        t0=$(now)
        bench_create_file "$file_url" "$size"
        bench_run_ranges put 201 "$size"
        t1=$(now)
        cpu_raw_put+=("$(cpu_since "$c0" "$c1")")
        raw_put=$(mibs "$SIZE_MIB" "$t0" "$t1")
}
fs_put_step() { # in the default mode: through close()
        rm -rf "$tmp/disk/cache1"
        [ "$round" = 1 ] || delete_file "big.$((round - 1)).bin"
        mount_fs "$tmp/m1" "$tmp/disk/cache1"
        sync
        settle_memory
        read -r c0 c1 < <(cpu_ticks)
        t0=$(now)
        dd if="$tmp/disk/src.bin" of="$tmp/m1/big.$round.bin" bs=4M status=none
        t1=$(now)
        cpu_fs_put+=("$(cpu_since "$c0" "$c1")")
        fs_put=$(mibs "$SIZE_MIB" "$t0" "$t1")
        note_rss "$fs_pid"
        unmount_fs "$tmp/m1" "$fs_pid"
}
raw_get_step() { # ranged GETs into files on the cache's disk
        rm -rf "$tmp/disk/dl"
        mkdir "$tmp/disk/dl" # a directory: one file per range (bench_range_confs)
        bench_range_confs get "$file_url" "$n_chunks" "$chunk" "$tmp/disk/dl"
        sync
        settle_memory
        read -r c0 c1 < <(cpu_ticks)
        t0=$(now)
        bench_run_ranges get 206 "$size"
        t1=$(now)
        cpu_raw_get+=("$(cpu_since "$c0" "$c1")")
        raw_get=$(mibs "$SIZE_MIB" "$t0" "$t1")
}
fs_get_step() { # a cold read on a fresh mount with an empty cache, then a warm re-read
        rm -rf "$tmp/disk/cache2"
        mount_fs "$tmp/m2" "$tmp/disk/cache2"
        sync
        settle_memory
        read -r c0 c1 < <(cpu_ticks)
        t0=$(now)
        cat "$tmp/m2/big.$round.bin" >/dev/null
        t1=$(now)
        cpu_fs_get+=("$(cpu_since "$c0" "$c1")")
        fs_get=$(mibs "$SIZE_MIB" "$t0" "$t1")
        t0=$(now)
        cat "$tmp/m2/big.$round.bin" >/dev/null
        t1=$(now)
        fs_warm=$(mibs "$SIZE_MIB" "$t0" "$t1")
        note_rss "$fs_pid"
        cmp -s "$tmp/m2/big.$round.bin" "$tmp/disk/src.bin" ||
                { echo "big.$round.bin differs" >&2; exit 1; }
        unmount_fs "$tmp/m2" "$fs_pid"
}
pt_get_step() { # a warm re-read through passthrough_ll, on a mount of its own
        mount_pt "$tmp/pt" "$tmp/disk"
        cat "$tmp/pt/src.bin" >/dev/null
        settle_memory
        t0=$(now)
        cat "$tmp/pt/src.bin" >/dev/null
        t1=$(now)
        pt_read=$(mibs "$SIZE_MIB" "$t0" "$t1")
        unmount_fs "$tmp/pt" "$pt_pid"
}
gets=() puts=() warms=() r_get=() r_put=() r_warm=()
cpu_raw_get=() cpu_fs_get=() cpu_raw_put=() cpu_fs_put=() c0=0 c1=0
for ((round = 1; round <= ROUNDS; round++)); do
        fs_put=- fs_get=- fs_warm=-
        file_url="$base/$share/raw.$round.bin"
        # passthrough_ll is not left mounted through the round: an idle passthrough_ll mount
        # slowed azfilesfs's cold read (BENCHMARKS.md), not raw curl's.
        pt_get_step
        in_order raw_put_step fs_put_step
        in_order raw_get_step fs_get_step
        if [ "$have_fs" = 1 ]; then
                r_get+=("$(ratio "$fs_get" "$raw_get")") r_put+=("$(ratio "$fs_put" "$raw_put")")
                r_warm+=("$(ratio "$fs_warm" "$pt_read")")
        fi
        gets+=("$fs_get/$raw_get") puts+=("$fs_put/$raw_put") warms+=("$fs_warm/$pt_read")
done
rm -rf "$tmp/disk/dl" "$tmp/disk/cache1" "$tmp/disk/cache2"

if [ "$have_fs" = 1 ]; then
        # 4b. default mode: requests per small file.
        mount_fs "$tmp/m4" "$tmp/disk/cache4"
        mkdir "$tmp/m4/default"
        counters '?reset=1' >/dev/null
        tar -C "$tmp/m4/default" -xf "$tmp/tree.tar"
        # Split by what a request is for: files (Create File, Put Range, any other file
        # operation) and directories (their Create Directory, Set Metadata/Properties, List,
        # Get Directory Properties), from the emulator's per-operation counters.
        dirs=$((FILES < 100 ? FILES + 1 : 101)) # src and src/dirNNN
        split=$(counters | python3 -c 'import json, sys
c = {k: v["requests"] for k, v in json.load(sys.stdin)["counters"].items() if k != "Admin"}
files, dirs = int(sys.argv[1]), int(sys.argv[2])
per_dir = ("CreateDirectory", "SetDirectoryMetadata", "SetDirectoryProperties",
           "ListDirectoriesAndFiles", "GetDirectoryProperties")
f = {k: n for k, n in c.items() if k not in per_dir and n}
d = {k: c.get(k, 0) for k in per_dir if c.get(k, 0)}
show = lambda m: ", ".join("%s %d" % kv for kv in sorted(m.items()))
print("%.2f per file (%s) + %.2f per directory over %d directories (%s); all requests / files = %.2f"
      % (sum(f.values()) / files, show(f), sum(d.values()) / dirs, dirs, show(d),
         sum(c.values()) / files))' "$FILES" "$dirs")
        unmount_fs "$tmp/m4" "$fs_pid"
        # 5. ls -l of a FILES-entry directory on a fresh mount.
        mount_fs "$tmp/m5" "$tmp/disk/cache5"
        counters '?reset=1' >/dev/null
        ls -l "$tmp/m5/listing/flat" >/dev/null
        c=$(counters)
        lists=$(count_of ListDirectoriesAndFiles <<<"$c")
        others=$(($(count_of "" <<<"$c") - lists))
        # 6. idle.
        counters '?reset=1' >/dev/null
        sleep "$IDLE_SECONDS"
        idle_n=$(counters | count_of "")
        idle=$(awk -v n="$idle_n" -v s="$IDLE_SECONDS" 'BEGIN { printf "%.2f", n * 60 / s }')
        note_rss "$fs_pid"
        unmount_fs "$tmp/m5" "$fs_pid"
        rss=$((peak_rss / 1024))
fi

r() { [ "$have_fs" = 1 ] && ratio "$1" "$2" || echo "n/a"; }
gmean() { # ratios...: their geometric mean
        [ "$have_fs" = 1 ] || { echo "n/a"; return; }
        printf '%s\n' "$@" | awk '{ s += log($1) } END { printf "%.2f", exp(s / NR) }'
}
each() { # fs/base...: " fs/base ratio," for each round
        local x
        for x in "$@"; do printf ' %s %s,' "$x" "$(r "${x%/*}" "${x#*/}")"; done | sed 's/,$//'
}
cpu_line() { # raw-busy/idle... -- fs-busy/idle...: the whole machine's CPU in the timed steps
        [ "$have_fs" = 1 ] || { echo "n/a"; return; }
        printf '%s\n' "$@" | awk -v hz="$(getconf CLK_TCK)" -v gib="$(awk -v m="$SIZE_MIB" 'BEGIN { print m / 1024 }')" '
                BEGIN { side = 0 }
                $0 == "--" { side = 1; next }
                { split($0, v, "/"); busy[side] += v[1]; idle[side] += v[2]; n[side]++ }
                END {
                        for (k = 0; k < 2; k++) {
                                s[k] = busy[k] / hz / n[k] / gib
                                p[k] = 100 * idle[k] / (busy[k] + idle[k])
                        }
                        # wall x CPUs = busy + idle, so azfilesfs/raw = (raw busy + raw idle) /
                        # (azfilesfs busy + azfilesfs idle) <= (raw busy + idle) / azfilesfs busy
                        printf "baseline %.2f s busy per GiB (%.0f %% idle), azfilesfs %.2f s (%.0f %% idle): with its CPU per byte as measured the ratio cannot pass %.2f", s[0], p[0], s[1], p[1], (busy[0] + idle[0]) / busy[1]
                }'
}
rounds="geometric mean of $ROUNDS rounds (baseline first in odd ones, azfilesfs in even ones)"
echo "1. cold sequential read:  ratio $(gmean "${r_get[@]}") (target >= 0.8), $rounds;" \
        "azfilesfs / raw curl GETs to disk, MiB/s:$(each "${gets[@]}")"
echo "   CPU of the whole machine in the timed steps: $(cpu_line "${cpu_raw_get[@]}" -- "${cpu_fs_get[@]}")"
echo "2. sequential write:      ratio $(gmean "${r_put[@]}") (target >= 0.8), $rounds;" \
        "azfilesfs / raw curl Put Ranges, MiB/s:$(each "${puts[@]}")"
echo "   CPU of the whole machine in the timed steps: $(cpu_line "${cpu_raw_put[@]}" -- "${cpu_fs_put[@]}")"
echo "3. warm re-read:          ratio $(gmean "${r_warm[@]}") (target >= 0.8)," \
        "geometric mean of $ROUNDS rounds;" \
        "azfilesfs / passthrough_ll, MiB/s:$(each "${warms[@]}")"
echo "4. tar x $FILES files:     ratio $(gmean "${r_tar[@]}") (target <= 2)," \
        "geometric mean of $TAR_ROUNDS rounds (passthrough_ll first in odd ones);" \
        "azfilesfs writeback=async / passthrough_ll, s:$(each "${tars[@]}");" \
        "after the last round's flush: $tar_ok ($tar_flush)"
echo "   default mode, requests: $split (target <= 2 per file)"
echo "5. ls -l of $FILES entries: $lists List requests (target <= $((FILES / 5000 + 2))), $others other requests (target 0)"
echo "6. idle mount:            $idle requests per minute over $IDLE_SECONDS s (target <= 1)"
echo "7. peak RSS of azfilesfs: ${rss} MiB (target <= 64)"
