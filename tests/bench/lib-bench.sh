# SPDX-License-Identifier: MIT
# shellcheck shell=bash disable=SC2034,SC2154,SC2028
# (SC2034, SC2154: variables shared with the scripts that source this; SC2028: curl config text)
# Sourced by the benchmark scripts in tests/bench (not run on its own): one azfiles-emu on a free
# loopback port, the raw curl baselines (N ranges of CHUNK bytes, 8 curl processes each on one
# kept-alive connection), azfilesfs mounts and their flush, and a cleanup that stops only what
# these functions started (by PID), unmounts only their mounts and removes only $tmp.
#
# The caller sets, before using them:
#   tmp        its own temporary directory (mktemp -d); logs and curl configs go there
#   build      the build directory (absolute)
# and calls `trap bench_cleanup EXIT INT TERM` once $tmp exists.

BENCH_ACCOUNT=devstoreaccount1
BENCH_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
BENCH_VERSION=2025-05-05
BENCH_PARALLEL=8

emu_pid=
fs_pid=
bench_pids=()
bench_mounts=()

bench_cleanup() {
        local m p
        for m in "${bench_mounts[@]}"; do
                if findmnt -n "$m" >/dev/null 2>&1; then
                        fusermount3 -u "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
                fi
        done
        for p in "${bench_pids[@]}"; do
                kill -TERM "$p" 2>/dev/null || true
                wait "$p" 2>/dev/null || true
        done
        if [ -n "$emu_pid" ]; then
                kill -TERM "$emu_pid" 2>/dev/null || true
                wait "$emu_pid" 2>/dev/null || true
        fi
        [ -z "${tmp:-}" ] || rm -rf "$tmp"
}

# Runs the calling script again in a private mount namespace (root only), so that its FUSE
# mounts are nobody else's; a no-op once inside.
bench_private_mount_ns() { # "$@" of the script
        [ -z "${BENCH_IN_MOUNT_NS:-}" ] || return 0
        [ "$(id -u)" -eq 0 ] || { echo "$(basename "$0"): needs root" >&2; exit 1; }
        exec unshare -m --propagation private env BENCH_IN_MOUNT_NS=1 "$0" "$@"
}

bench_need() { # file or command...: exits unless each is an executable file or a command
        local f
        for f in "$@"; do
                case $f in
                */*) [ -x "$f" ] || { echo "missing $f: build first (meson compile -C $build)" >&2; exit 1; } ;;
                *) command -v "$f" >/dev/null || { echo "$(basename "$0"): $f is needed" >&2; exit 1; } ;;
                esac
        done
}

# Starts the emulator with --data $tmp/data and the given extra options; waits (bounded, 10 s) for
# its ready line. Sets emu_pid, emu_base (the File service, path-style, with the account) and
# emu_imds (empty without --imds), and sas (an account SAS, rwdlc, valid that many minutes).
bench_start_emu() { # sas-minutes [azfiles-emu options...]
        local minutes=$1
        shift
        mkdir -p "$tmp/data"
        "$build/tests/emulator/azfiles-emu" --listen 127.0.0.1:0 --data "$tmp/data" \
                --account "$BENCH_ACCOUNT" --key "$BENCH_KEY" "$@" >"$tmp/ready" 2>"$tmp/emu.log" &
        emu_pid=$!
        for _ in $(seq 100); do
                grep -q 'azfiles-emu ready:' "$tmp/ready" 2>/dev/null && break
                kill -0 "$emu_pid" 2>/dev/null || { cat "$tmp/emu.log" >&2; exit 1; }
                sleep 0.1
        done
        grep -q 'azfiles-emu ready:' "$tmp/ready" || { echo "emulator not ready after 10 s" >&2; exit 1; }
        emu_base=$(sed -n 's/.*file=\([^ ]*\).*/\1/p' "$tmp/ready")
        emu_imds=$(sed -n 's/.*imds=\([^ ]*\).*/\1/p' "$tmp/ready")
        sas=$("$build/tests/tools/azfiles-sas" --account-sas --account "$BENCH_ACCOUNT" \
                --key "$BENCH_KEY" --permissions rwdlc --expiry-minutes "$minutes" \
                --version "$BENCH_VERSION")
}

bench_req() { # method url [curl args...]: prints the HTTP status
        local m=$1 u=$2
        shift 2
        curl -sS -o /dev/null -w '%{http_code}' -X "$m" -H "x-ms-version: $BENCH_VERSION" "$@" "$u"
}
bench_expect() { # want got what
        [ "$1" = "$2" ] || { echo "$3: HTTP $2, want $1" >&2; tail -5 "$tmp/emu.log" >&2; exit 1; }
}
bench_create_file() { # url-without-query size
        bench_expect 201 "$(bench_req PUT "$1?$sas" -H 'x-ms-type: file' \
                -H "x-ms-content-length: $2" -H 'Content-Length: 0')" "Create File"
}

# Writes the curl configs $tmp/KIND.P.conf, P = 0..7: client P does ranges P, P+8, P+16, ... of
# the file in sequence on one kept-alive connection (--next separates the transfers). put: Put
# Range of each range with SOURCE (a CHUNK-byte file) as the body; get: ranged GETs, each body into
# SOURCE (/dev/null, or a directory: one file part.I per range). Each answer is written out as
# "status bytes".
bench_range_confs() { # put|get file-url n-ranges chunk-bytes source
        local kind=$1 url=$2 n=$3 chunk=$4 src=$5 p i s
        for ((p = 0; p < BENCH_PARALLEL; p++)); do
                for ((i = p; i < n; i += BENCH_PARALLEL)); do
                        s=$((i * chunk))
                        [ "$i" -gt "$p" ] && echo 'next'
                        echo "header = \"x-ms-range: bytes=$s-$((s + chunk - 1))\""
                        echo "header = \"x-ms-version: $BENCH_VERSION\""
                        if [ "$kind" = put ]; then
                                echo "url = \"$url?comp=range&$sas\""
                                echo "upload-file = \"$src\""
                                echo 'header = "x-ms-write: update"'
                                echo 'header = "Expect:"'
                                echo 'output = "/dev/null"'
                                echo 'write-out = "%{http_code} %{size_upload}\n"'
                        else
                                echo "url = \"$url?$sas\""
                                if [ -d "$src" ]; then echo "output = \"$src/part.$i\""; else echo "output = \"$src\""; fi
                                echo 'write-out = "%{http_code} %{size_download}\n"'
                        fi
                done >"$tmp/$kind.$p.conf"
        done
}

# Runs the 8 clients of bench_range_confs KIND at once and waits for them; checks every answer's
# status and that the bytes moved add up to BYTES. Exits on a failed check.
bench_run_ranges() { # put|get want-status bytes
        local kind=$1 want=$2 bytes=$3 p got bad ps=()
        for ((p = 0; p < BENCH_PARALLEL; p++)); do
                curl -sS -K "$tmp/$kind.$p.conf" >"$tmp/out.$kind.$p" &
                ps+=($!)
        done
        wait "${ps[@]}"
        bad=$(cat "$tmp"/out."$kind".* | awk -v w="$want" '$1 != w' | head -3)
        [ -z "$bad" ] || { echo "$kind: unexpected answers: $bad" >&2; exit 1; }
        got=$(cat "$tmp"/out."$kind".* | awk '{ s += $2 } END { print s + 0 }')
        [ "$got" -eq "$bytes" ] || { echo "$kind moved $got bytes, want $bytes" >&2; exit 1; }
}

bench_now() { date +%s.%N; }
bench_mibs() { awk -v m="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.0f", m / (b - a) }'; } # MiB t0 t1
bench_median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
bench_ratio() { awk -v x="$1" -v y="$2" 'BEGIN { if (y == 0) print "inf"; else printf "%.2f", x / y }'; }

# ---- azfilesfs -------------------------------------------------------------------------------------
# Mounts $build/fusefs/azfilesfs for SHARE at MOUNTPOINT in the foreground (log: $tmp/azfilesfs.log)
# with the account key in $tmp/credentials; waits (bounded, 20 s) for the mount. Sets fs_pid.
bench_mount_fs() { # share mountpoint cache_dir [extra options]
        local share=$1 mnt=$2 cache=$3 extra=${4:-}
        if [ ! -e "$tmp/credentials" ]; then
                printf '[storage]\naccount_key = %s\n' "$BENCH_KEY" >"$tmp/credentials"
                chmod 0600 "$tmp/credentials"
        fi
        mkdir -p "$mnt" "$cache"
        "$build/fusefs/azfilesfs" "$emu_base/$share" "$mnt" -f \
                -o "credentials=$tmp/credentials,cache_dir=$cache${extra:+,$extra}" >>"$tmp/azfilesfs.log" 2>&1 &
        fs_pid=$!
        bench_pids+=("$fs_pid")
        bench_mounts+=("$mnt")
        for _ in $(seq 200); do
                findmnt -n -t fuse.azfilesfs "$mnt" >/dev/null && return 0
                kill -0 "$fs_pid" 2>/dev/null || { tail -20 "$tmp/azfilesfs.log" >&2; exit 1; }
                sleep 0.1
        done
        echo "azfilesfs did not mount in 20 s" >&2
        exit 1
}
# Unmounts and waits (bounded, 10 min) for the daemon; then forgets both, so that the cleanup
# never signals a PID that may belong to someone else by then.
bench_unmount_fs() { # mountpoint pid
        local i
        fusermount3 -u "$1"
        for _ in $(seq 6000); do
                if ! kill -0 "$2" 2>/dev/null; then
                        wait "$2" 2>/dev/null || true
                        for i in "${!bench_pids[@]}"; do
                                [ "${bench_pids[i]}" != "$2" ] || unset 'bench_pids[i]'
                        done
                        for i in "${!bench_mounts[@]}"; do
                                [ "${bench_mounts[i]}" != "$1" ] || unset 'bench_mounts[i]'
                        done
                        return 0
                fi
                sleep 0.1
        done
        echo "$2 did not exit after unmounting $1" >&2
        exit 1
}
bench_flush_fs() { # mountpoint seconds: returns when nothing is dirty (fails on ETIMEDOUT, EIO)
        setfattr -n user.azfilesfs.flush -v "$2" "$1"
}
bench_dirty_bytes() { # mountpoint
        getfattr --absolute-names --only-values -n user.azfilesfs.dirty_bytes "$1"
}
