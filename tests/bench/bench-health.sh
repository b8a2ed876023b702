#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Benchmark (not a test) of the health endpoint and the health cycle of poolagentd.
# Targets (issue 5): /health sustains >= 5,000 requests/s with wrk on loopback; the agent's CPU per
# health cycle is measured and printed.
#
#   tests/bench/bench-health.sh [BUILD_DIR]            (default: build)
#   SECONDS_WRK=20 CYCLES=120 tests/bench/bench-health.sh build
#
# It starts one poolagentd (as the calling user; root is not needed) with its control socket and
# state in a temporary directory, no workspace, no eligible users, the shipped disk checks of /,
# /tmp and /mnt (whatever exists here), [Health] CheckInterval=250ms and ListenAddress=
# 127.0.0.1:0. Then:
#   1. wrk -t2 -c50 against /health for SECONDS_WRK seconds (and /metrics, for comparison);
#      every answer must be 200 (a non-2xx count fails the run);
#   2. with no HTTP load, CYCLES health cycles: utime+stime of the agent from /proc/PID/stat
#      before and after, divided by the number of cycles (the agent does nothing else meanwhile
#      but its idle timers), in microseconds of CPU per cycle.
# Exits 1 when /health stays below the target. Stops only the agent it started (by PID) and
# removes only its own temporary directory.
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-build}
case $build in /*) ;; *) build=$top/$build ;; esac
agent=$build/agent/poolagentd
poolctl=$build/agent/poolctl
SECONDS_WRK=${SECONDS_WRK:-10}
CYCLES=${CYCLES:-80}
INTERVAL_MS=250
TARGET_RPS=5000

for f in "$agent" "$poolctl"; do
        [ -x "$f" ] || { echo "missing $f: build first (meson compile -C $build)" >&2; exit 1; }
done
command -v wrk >/dev/null || { echo "wrk is missing (Debian package wrk; .ci/install-deps)" >&2; exit 1; }

tmp=$(mktemp -d /tmp/bench-health.XXXXXX)
pid=
cleanup() {
        if [ -n "$pid" ]; then
                kill "$pid" 2>/dev/null || true
                wait "$pid" 2>/dev/null || true
        fi
        rm -rf "$tmp"
}
trap cleanup EXIT

cat >"$tmp/poolagent.conf" <<EOF
[Agent]
ControlSocket=$tmp/control.sock
StateDirectory=$tmp/state
LogLevel=warning
# No metadata service: never this machine's.
MetadataEndpoint=
[Workspace]
MountPoint=$tmp/workspace
CacheDirectory=$tmp/cache
[Users]
UIDRange=4000000000-4000000001
[Health]
ListenAddress=127.0.0.1:0
CheckInterval=${INTERVAL_MS}ms
TopConsumers=0
EOF
mkdir -p "$tmp/workspace"

"$agent" --config "$tmp/poolagent.conf" --config-dir "" 2>"$tmp/agent.log" &
pid=$!
# Wait (bounded) for the control socket to answer.
for _ in $(seq 1 200); do
        "$poolctl" -s "$tmp/control.sock" -t 1 version >/dev/null 2>&1 && break
        kill -0 "$pid" 2>/dev/null || { cat "$tmp/agent.log" >&2; exit 1; }
        sleep 0.05
done
addr=$("$poolctl" -s "$tmp/control.sock" --json health |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["result"]["http"])' || true)
[ -n "$addr" ] && [ "$addr" != None ] || { echo "no HTTP address" >&2; exit 1; }

ncpu=$(nproc)
echo "poolagentd health benchmark: wrk $(wrk --version 2>&1 | head -1 | awk '{print $2}'), $ncpu CPUs, http://$addr"

run_wrk() { # path -> prints requests/s, fails on non-2xx
        local out rps bad
        out=$(wrk -t2 -c50 -d"${SECONDS_WRK}s" --latency "http://$addr$1")
        rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
        bad=$(awk '/Non-2xx or 3xx responses:/ {print $5}' <<<"$out")
        if [ -n "$bad" ] && [ "$bad" != 0 ]; then
                echo "$1: $bad non-2xx answers" >&2
                echo "$out" >&2
                exit 1
        fi
        echo "$out" | awk -v p="$1" '/Latency  / {lat=$2} /99%/ {p99=$2} END {printf "%s: latency avg %s, p99 %s; ", p, lat, p99}'
        echo "$rps requests/s"
        last_rps=${rps%.*}
}

run_wrk /health
health_rps=$last_rps
run_wrk /metrics

# CPU per health cycle, no HTTP load.
ticks=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
t0=$(cpu_ticks)
s0=$(date +%s%N)
sleep "$(python3 -c "print($CYCLES * $INTERVAL_MS / 1000)")"
t1=$(cpu_ticks)
s1=$(date +%s%N)
cycles=$(python3 -c "print(round(($s1 - $s0) / 1e6 / $INTERVAL_MS))")
python3 - "$t0" "$t1" "$ticks" "$cycles" <<'EOF'
import sys
t0, t1, hz, n = (int(x) for x in sys.argv[1:])
cpu_us = (t1 - t0) / hz * 1e6
print("health cycle (3 disks, publish of /health, /metrics, /status): %d cycles, %.0f us CPU in all, %.0f us CPU per cycle (tick %d us: below that it reads 0)"
      % (n, cpu_us, cpu_us / max(n, 1), 1e6 / hz))
EOF
rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
echo "agent peak RSS: $rss KiB"
if [ "$health_rps" -lt "$TARGET_RPS" ]; then
        echo "/health: $health_rps requests/s, below the target of $TARGET_RPS" >&2
        exit 1
fi
echo "/health: $health_rps requests/s, target $TARGET_RPS: $(python3 -c "print('%.1fx' % ($health_rps / $TARGET_RPS))")"
