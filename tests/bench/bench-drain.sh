#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Benchmark (not a test): time from a scheduled event appearing in the metadata service to the
# agent's approval of it, with no jobs and a clean cache, at the default poll interval (1 s).
# Target (issue 6): <= 2 s.
#
#   tests/bench/bench-drain.sh [BUILD_DIR]        (default: build)
#   RUNS=11 tests/bench/bench-drain.sh build
#
# Starts azfiles-emu (--imds on a free loopback port) and poolagentd with the shipped defaults
# except for paths (control socket, state, nologin file and the workspace mount point, a plain
# directory: 0 dirty bytes) and NotifyUsers=no, ShutdownInhibitor=no. Then RUNS times: injects
# a Terminate event for this VM through the emulator's admin API, taking the time just before
# the request, and waits (bounded, 15 s) until the emulator has recorded the approval; the
# latency is the emulator's FirstApprovedMs minus that time (one clock: same host). Each run's
# event has its own EventId, so each is a full drain (not-healthy, nologin, flush, report,
# approve). Prints every run, the median and the ratio to the target; exits 1 above the target.
# Stops only the processes it started (by PID) and removes only its own temporary directory.
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-build}
case $build in /*) ;; *) build=$top/$build ;; esac
# shellcheck source-path=SCRIPTDIR source=lib-bench.sh
. "$top/tests/bench/lib-bench.sh"
agent=$build/agent/poolagentd
RUNS=${RUNS:-7}
TARGET_MS=2000

bench_need "$agent" "$build/tests/emulator/azfiles-emu" "$build/tests/tools/azfiles-sas" curl

tmp=$(mktemp -d /tmp/bench-drain.XXXXXX)
trap bench_cleanup EXIT INT TERM

mkdir -p "$tmp/mnt" "$tmp/state"
bench_start_emu 60 --imds 127.0.0.1:0
imds=$emu_imds
[ -n "$imds" ] || { echo "emulator did not start" >&2; exit 1; }

cat >"$tmp/poolagent.conf" <<CONF
# The shipped defaults, with paths moved into $tmp.
[Agent]
ControlSocket=$tmp/control.sock
StateDirectory=$tmp/state
MetadataEndpoint=$imds
[Workspace]
MountPoint=$tmp/mnt
[Users]
UIDRange=3999999000-3999999001
[Health]
ListenAddress=127.0.0.1:0
[Drain]
NoLoginFile=$tmp/nologin
NotifyUsers=no
ShutdownInhibitor=no
CONF
"$agent" --config "$tmp/poolagent.conf" --config-dir "$tmp/none" 2>"$tmp/agent.log" &
agent_pid=$!
bench_pids+=("$agent_pid")

now_ms() { date +%s%3N; }
approved_ms() { # EventId -> FirstApprovedMs or empty
        curl -sf "$imds/__emu/scheduledevents/approvals" |
                python3 -c 'import json,sys
for a in json.load(sys.stdin)["Approvals"]:
    if a["EventId"] == sys.argv[1]: print(a["FirstApprovedMs"])' "$1"
}

# The agent must know the VM name first: a warm-up event, not counted.
curl -sf -X POST -H 'Content-Type: application/json' \
        -d '{"type":"Freeze","id":"bench-warmup","not_before":600}' \
        "$imds/__emu/scheduledevents" >/dev/null
for _ in $(seq 300); do
        [ -n "$(approved_ms bench-warmup)" ] && break
        sleep 0.05
done
[ -n "$(approved_ms bench-warmup)" ] || { echo "agent never approved" >&2; cat "$tmp/agent.log" >&2; exit 1; }

echo "drain benchmark: event appears -> approved, default PollInterval=1s, no jobs, clean cache, $(nproc) CPUs, $RUNS runs"
results=()
for i in $(seq "$RUNS"); do
        id="bench-$i-$$"
        t0=$(now_ms)
        curl -sf -X POST -H 'Content-Type: application/json' \
                -d "{\"type\":\"Terminate\",\"id\":\"$id\",\"not_before\":600}" \
                "$imds/__emu/scheduledevents" >/dev/null
        a=
        for _ in $(seq 300); do
                a=$(approved_ms "$id")
                [ -n "$a" ] && break
                sleep 0.05
        done
        [ -n "$a" ] || { echo "run $i: not approved within 15 s" >&2; cat "$tmp/agent.log" >&2; exit 1; }
        ms=$((a - t0))
        results+=("$ms")
        echo "run $i: ${ms} ms"
done
median=$(printf '%s\n' "${results[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "median: ${median} ms (target <= ${TARGET_MS} ms, ratio $(awk -v m="$median" -v t="$TARGET_MS" 'BEGIN{printf "%.2f", m/t}'))"
[ "$median" -le "$TARGET_MS" ]
