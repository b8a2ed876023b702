#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Benchmark (not a test): the idle footprint of poolagentd with the default intervals.
# Targets (issue 4): resident memory <= 8 MiB and CPU <= 0.1 % of one core over 10 minutes.
#
#   tests/bench/bench-agent-footprint.sh [BUILD_DIR]        (default: build)
#   DURATION=120 tests/bench/bench-agent-footprint.sh build  (shorter run, same figures)
#
# The agent runs in a private mount namespace (unshare -m) with a shipped-default configuration
# except for paths: its control socket and state directory live in a temporary directory, and
# /etc/passwd, /etc/group and /home are replaced (inside that namespace only) by three demo users
# with tmpfs homes, so it never touches this machine's users. The workspace mount point is a
# plain directory (no azfilesfs), so the workspace check reports "not mounted" every interval:
# the same work as a healthy check. The metadata service is azfiles-emu's (--imds), so the agent
# polls scheduled events every second as it does on a VM. It samples /proc/PID/status (VmRSS, VmHWM) and /proc/PID/stat
# (utime + stime) every SAMPLE seconds, prints the peak and the CPU share of one core over the
# whole run with the ratio to each target, and exits 1 above a target. At the end it splits VmRSS
# into anonymous and file pages and gives a lower bound on the pages the kernel mapped without
# the agent faulting on them (fault-around); bench-agent-floor.sh shows what the agent's
# libraries alone cost. It stops only the agent it started (by PID) and removes only its own
# temporary directory.
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-build}
case $build in /*) ;; *) build=$top/$build ;; esac
agent=$build/agent/poolagentd
poolctl=$build/agent/poolctl
emu=$build/tests/emulator/azfiles-emu
DURATION=${DURATION:-600}
SAMPLE=${SAMPLE:-5}
RSS_TARGET_KIB=$((8 * 1024))
CPU_TARGET_PERMILLE=1 # 0.1 %

for f in "$agent" "$poolctl" "$emu"; do
        [ -x "$f" ] || { echo "missing $f: build first (meson compile -C $build)" >&2; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { echo "needs root (private mount namespace)" >&2; exit 1; }

if [ "${_FOOTPRINT_IN_NS:-}" != 1 ]; then
        tmp=$(mktemp -d /tmp/bench-footprint.XXXXXX)
        trap 'rm -rf "$tmp"' EXIT
        _FOOTPRINT_IN_NS=1 TMPDIR_BENCH=$tmp unshare -m --propagation private "$0" "$build"
        exit $?
fi

tmp=$TMPDIR_BENCH
mkdir -p "$tmp/etc" "$tmp/state" "$tmp/workspace" "$tmp/home"
cp /etc/passwd "$tmp/etc/passwd"
cp /etc/group "$tmp/etc/group"
for i in 1 2 3; do
        echo "demo$i:x:$((4000 + i)):$((4000 + i))::/home/demo$i:/bin/sh" >>"$tmp/etc/passwd"
        echo "demo$i:x:$((4000 + i)):" >>"$tmp/etc/group"
done
mount -t tmpfs -o mode=0755 tmpfs /home
for i in 1 2 3; do
        install -d -o $((4000 + i)) -g $((4000 + i)) -m 0700 "/home/demo$i"
done
mount --bind "$tmp/etc/passwd" /etc/passwd
mount --bind "$tmp/etc/group" /etc/group

"$emu" --listen 127.0.0.1:0 --imds 127.0.0.1:0 --data "$tmp/emu" --account bench \
        --key "$(head -c 64 /dev/urandom | base64 -w0)" >"$tmp/emu.out" 2>"$tmp/emu.err" &
emu_pid=$!
trap 'kill "$emu_pid" 2>/dev/null; wait "$emu_pid" 2>/dev/null || true' EXIT
for ((i = 0; i < 100; i++)); do
        grep -qs ready "$tmp/emu.out" && break
        sleep 0.1 # polling interval of a bounded wait on the emulator's ready line
done
imds=$(sed -n 's/.*imds=\([^ ]*\).*/\1/p' "$tmp/emu.out")
[ -n "$imds" ] || { cat "$tmp/emu.err" >&2; exit 1; }

cat >"$tmp/poolagent.conf" <<EOF
# The shipped defaults (conf/poolagent.conf), with paths moved into $tmp and the emulator's
# metadata service.
[Agent]
ControlSocket=$tmp/control.sock
StateDirectory=$tmp/state
MetadataEndpoint=$imds
[Drain]
NoLoginFile=$tmp/nologin
[Workspace]
MountPoint=$tmp/workspace
[Users]
UIDRange=4001-4003
EOF

"$agent" --config "$tmp/poolagent.conf" --config-dir "" 2>"$tmp/agent.log" &
pid=$!
trap 'kill "$pid" "$emu_pid" 2>/dev/null; wait "$pid" "$emu_pid" 2>/dev/null || true' EXIT

# Ready when the control socket answers (bounded).
for ((i = 0; i < 200; i++)); do
        "$poolctl" --socket "$tmp/control.sock" status >/dev/null 2>&1 && break
        kill -0 "$pid" 2>/dev/null || { cat "$tmp/agent.log" >&2; exit 1; }
        sleep 0.05 # polling interval of a bounded wait on the real condition above
done
"$poolctl" --socket "$tmp/control.sock" status >/dev/null

hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat"; }
status_kib() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$pid/status"; }

t0=$(date +%s.%N)
c0=$(cpu_ticks)
peak_rss=0
samples=0
end=$((SECONDS + DURATION))
while [ $SECONDS -lt "$end" ]; do
        sleep "$SAMPLE" # the sampling period of the measurement, not a synchronisation
        kill -0 "$pid" 2>/dev/null || { echo "poolagentd exited" >&2; cat "$tmp/agent.log" >&2; exit 1; }
        rss=$(status_kib VmRSS)
        [ "$rss" -gt "$peak_rss" ] && peak_rss=$rss
        samples=$((samples + 1))
done
c1=$(cpu_ticks)
t1=$(date +%s.%N)
hwm=$(status_kib VmHWM)
# Of the resident pages, how many are the agent's own (private) and its proportional share.
pss=$(awk '$1 == "Pss:" { print $2 }' "/proc/$pid/smaps_rollup")
anon=$(status_kib RssAnon)
file=$(status_kib RssFile)
rss_end=$(status_kib VmRSS)
# minflt + majflt over the agent's life (all its threads): each fault maps at least the page it
# hit, so VmRSS minus one page per fault is a lower bound on what the kernel mapped in without a
# fault of the agent's (fault-around of page-cache pages next to the ones it touched).
faults=$(awk '{ sub(/^.*\) /, ""); print $8 + $10 }' "/proc/$pid/stat")
page_kib=$(($(getconf PAGESIZE) / 1024))
private=$(awk '$1 == "Private_Clean:" || $1 == "Private_Dirty:" { n += $2 } END { print n }' "/proc/$pid/smaps_rollup")
libs=$(awk '/^[0-9a-f]+-/ { name = $6 } /^Rss:/ { r[name] += $2 }
        END { for (n in r) if (n ~ /\.so/ && r[n] >= 512) printf "%s %.1f MiB; ", n, r[n] / 1024 }' \
        "/proc/$pid/smaps" | sed 's|/usr/lib/x86_64-linux-gnu/||g')
links=$("$poolctl" --socket "$tmp/control.sock" --json links | grep -o '"state": *"[a-z-]*"' | sort | uniq -c | tr -s ' ' | tr '\n' ';')

awk -v c0="$c0" -v c1="$c1" -v hz="$hz" -v t0="$t0" -v t1="$t1" -v rss="$peak_rss" -v hwm="$hwm" \
        -v n="$samples" -v rt="$RSS_TARGET_KIB" -v ct="$CPU_TARGET_PERMILLE" -v links="$links" \
        -v pss="$pss" -v priv="$private" -v libs="$libs" -v anon="$anon" -v file="$file" \
        -v rss_end="$rss_end" -v faults="$faults" -v page="$page_kib" 'BEGIN {
        wall = t1 - t0; cpu = (c1 - c0) / hz; pct = 100 * cpu / wall
        printf "poolagentd idle footprint: %.0f s, %d samples, default intervals, 3 demo users (%s)\n", wall, n, links
        printf "peak VmRSS %.2f MiB (VmHWM %.2f MiB), target 8 MiB: ratio %.2f\n", rss / 1024, hwm / 1024, rss / rt
        printf "  at the end: PSS %.2f MiB, private %.2f MiB; shared libraries >= 0.5 MiB resident: %s\n", pss / 1024, priv / 1024, libs
        nofault = rss_end - faults * page; if (nofault < 0) nofault = 0
        printf "  VmRSS %.2f MiB = RssAnon %.2f + RssFile %.2f MiB; %d page faults: mapped without a fault >= %.2f MiB\n", rss_end / 1024, anon / 1024, file / 1024, faults, nofault / 1024
        printf "CPU %.2f s of one core = %.4f %%, target 0.1 %%: ratio %.3f\n", cpu, pct, pct / (ct / 10)
        exit !(rss <= rt && pct <= ct / 10)
}'
