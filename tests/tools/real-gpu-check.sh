#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The GPU check against a real NVIDIA GPU (not part of the test suite: CI has no GPU). Starts
# poolagentd with the real libnvidia-ml.so.1, waits for its first GPU reading, prints what
# `poolctl health` and `poolctl --json status` report and the poolagent_gpu_* lines of /metrics,
# and compares the agent's view of every GPU with nvidia-smi's (UUID, PCI bus id, name, memory,
# temperature, ECC, driver version). Exits 0 when every comparison holds and the agent found
# ExpectedGPUs= GPUs, 1 otherwise.
#
#   tests/tools/real-gpu-check.sh BUILD_DIR [EXPECTED_GPUS]
#
# BUILD_DIR holds agent/poolagentd and agent/poolctl, and may hold lib/ with the shared libraries
# they need (a bundle copied to a machine that lacks them): only the agent and poolctl get it as
# LD_LIBRARY_PATH. EXPECTED_GPUS defaults to the count nvidia-smi lists. Needs nvidia-smi and python3. Runs the agent as a plain process (no systemd,
# no metadata service, no workspace) in its own temporary directory, on health port
# 127.0.0.1:$PORT (default 18470), and stops it (by PID) at the end.
set -euo pipefail

build=${1:?usage: real-gpu-check.sh BUILD_DIR [EXPECTED_GPUS]}
agent=$build/agent/poolagentd
ctl=$build/agent/poolctl
port=${PORT:-18470}
for p in "$agent" "$ctl"; do
        [ -x "$p" ] || { echo "real-gpu-check: $p: not built" >&2; exit 1; }
done
command -v nvidia-smi >/dev/null || { echo "real-gpu-check: no nvidia-smi" >&2; exit 1; }

smi_fields=index,uuid,pci.bus_id,name,memory.total,memory.used,temperature.gpu,driver_version,ecc.errors.uncorrected.volatile.total,clocks_throttle_reasons.active
expected=${2:-$(nvidia-smi --query-gpu=index --format=csv,noheader | wc -l)}

# Our programs run with BUILD_DIR/lib where there is one, through env, which execs them (a
# background run's $! is the program's PID).
libpath=${LD_LIBRARY_PATH:-}
[ -d "$build/lib" ] && libpath="$build/lib${libpath:+:$libpath}"
ours=(env LD_LIBRARY_PATH="$libpath")

tmp=$(mktemp -d /tmp/real-gpu-check.XXXXXX)
pid=
cleanup() {
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
                kill -TERM "$pid"
                wait "$pid" || echo "real-gpu-check: poolagentd exited with status $?" >&2
        fi
        rm -rf "$tmp"
}
trap cleanup EXIT

cat >"$tmp/poolagent.conf" <<EOF
[Agent]
ControlSocket=$tmp/control.sock
StateDirectory=$tmp/state
MetadataEndpoint=
[Workspace]
MountPoint=$tmp/ws
CacheDirectory=$tmp/cache
[Users]
UIDRange=4000000000-4000000001
[Health]
ListenAddress=127.0.0.1:$port
ExpectedGPUs=$expected
GPUCheckInterval=2s
GPUTimeout=10s
RootPath=
TmpPath=
ScratchPath=
UnhealthyAfter=1
HealthyAfter=1
EOF

echo "== nvidia-smi"
nvidia-smi --query-gpu="$smi_fields" --format=csv | tee "$tmp/smi.csv"

unset NOTIFY_SOCKET
"${ours[@]}" "$agent" --config "$tmp/poolagent.conf" --config-dir "" 2>"$tmp/agent.log" &
pid=$!

# The first reading: gpu.count is set (or the library failed: gpu_nvml says why). Bounded.
status=
for _ in $(seq 1 150); do
        if status=$("${ours[@]}" "$ctl" --socket "$tmp/control.sock" --json status 2>/dev/null) &&
                python3 -c 'import json,sys; g=json.load(sys.stdin)["result"]["gpu"]; sys.exit(0 if g.get("count") is not None or g.get("state") == "unhealthy" else 1)' \
                        <<<"$status" 2>/dev/null; then
                break
        fi
        kill -0 "$pid" 2>/dev/null || { cat "$tmp/agent.log" >&2; exit 1; }
        sleep 0.2 # polling a process we do not control; bounded by the loop
done
echo "== poolctl health"
"${ours[@]}" "$ctl" --socket "$tmp/control.sock" health || true
echo "== poolctl --json status (gpu)"
python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["result"]["gpu"], indent=1))' <<<"$status" |
        tee "$tmp/gpu.json"
echo "== /metrics (poolagent_gpu_*)"
python3 - "$port" <<'EOF' | tee "$tmp/metrics.txt"
import sys, urllib.request
body = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=10).read().decode()
print("\n".join(l for l in body.splitlines() if "gpu" in l and not l.startswith("#")))
EOF
echo "== agent log"
cat "$tmp/agent.log"

echo "== comparison with nvidia-smi"
python3 - "$tmp/smi.csv" "$tmp/gpu.json" "$expected" <<'EOF'
import csv, json, sys

# The header reads "memory.used [MiB]": keys without the unit.
smi = [{k.split(" [")[0]: v for k, v in row.items()}
       for row in csv.DictReader(open(sys.argv[1]), skipinitialspace=True)]
gpu = json.load(open(sys.argv[2]))
expected = int(sys.argv[3])
failed = []

def check(what, ok, detail):
    print(("ok    " if ok else "FAIL  ") + what + ": " + detail)
    if not ok:
        failed.append(what)

check("count", gpu.get("count") == len(smi) == expected,
      f"agent {gpu.get('count')}, nvidia-smi {len(smi)}, expected {expected}")
check("driver", gpu.get("driver_version") == smi[0]["driver_version"],
      f"agent {gpu.get('driver_version')}, nvidia-smi {smi[0]['driver_version']}")
checks = gpu.get("checks", [])
for row in smi:
    i = int(row["index"])
    mine = [c for c in checks if c.get("gpu") == i]
    def value(name):
        for c in mine:
            if c["name"] == name:
                return c
        return None
    uuids = {c["uuid"] for c in mine if c.get("uuid")}
    check(f"gpu {i} uuid", uuids == {row["uuid"]}, f"agent {sorted(uuids)}, nvidia-smi {row['uuid']}")
    buses = {c["pci_bus_id"] for c in mine if c.get("pci_bus_id")}
    check(f"gpu {i} pci bus id", {b.lower() for b in buses} == {row["pci.bus_id"].lower()},
          f"agent {sorted(buses)}, nvidia-smi {row['pci.bus_id']}")
    t = value("gpu_temperature_celsius")
    check(f"gpu {i} temperature", t is not None and abs(t["value"] - float(row["temperature.gpu"])) <= 5,
          f"agent {t and t['value']} C (warning at {t and t['threshold_warning']}, unhealthy at "
          f"{t and t['threshold_unhealthy']}), nvidia-smi {row['temperature.gpu']} C")
    m = value("gpu_memory_used_bytes")
    smi_used = float(row["memory.used"].split()[0]) * 2**20
    check(f"gpu {i} memory used", m is not None and abs(m["value"] - smi_used) <= 64 * 2**20,
          f"agent {m and m['value']} B ({m and m['message']}), nvidia-smi {row['memory.used']} of "
          f"{row['memory.total']}")
    e = value("gpu_ecc_uncorrected_volatile")
    smi_ecc = row["ecc.errors.uncorrected.volatile.total"]
    if smi_ecc.strip().isdigit():
        check(f"gpu {i} ecc uncorrected volatile", e is not None and e["value"] == float(smi_ecc),
              f"agent {e and e['value']}, nvidia-smi {smi_ecc}")
    else:
        check(f"gpu {i} ecc uncorrected volatile", e is None,
              f"agent {e and e['value']}, nvidia-smi {smi_ecc} (not supported: no check)")
    lost = value("gpu_lost")
    check(f"gpu {i} name", lost is not None and row["name"] in lost["message"],
          f"agent '{lost and lost['message']}', nvidia-smi {row['name']}")
    check(f"gpu {i} memory total", m is not None and f"of {row['memory.total']}" in m["message"],
          f"agent '{m and m['message']}', nvidia-smi {row['memory.total']}")
    # What nvidia-smi does not print in its query fields, from NVIDIA's own Python binding of
    # the same library, where the machine has it (pip: nvidia-ml-py).
    try:
        import pynvml
    except ImportError:
        print(f"      gpu {i}: no pynvml here, thresholds and row remapping not compared")
    else:
        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(i)
        slow = pynvml.nvmlDeviceGetTemperatureThreshold(h, pynvml.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN)
        shut = pynvml.nvmlDeviceGetTemperatureThreshold(h, pynvml.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN)
        check(f"gpu {i} temperature thresholds",
              t is not None and (t["threshold_warning"], t["threshold_unhealthy"]) == (slow, shut),
              f"agent {t and t['threshold_warning']}/{t and t['threshold_unhealthy']}, pynvml "
              f"slowdown {slow}, shutdown {shut}")
        try:
            corr, unc, pending, failure = pynvml.nvmlDeviceGetRemappedRows(h)
        except pynvml.NVMLError as e:
            print(f"      gpu {i}: pynvml row remapping: {e}")
        else:
            rf, rp = value("gpu_row_remap_failure"), value("gpu_row_remap_pending")
            check(f"gpu {i} row remapping",
                  rf is not None and rp is not None and rf["value"] == failure and
                  rp["value"] == pending and f"{unc} rows remapped for uncorrectable, {corr} for "
                  "correctable" in rf["message"],
                  f"agent '{rf and rf['message']}', pending {rp and rp['value']}; pynvml "
                  f"correctable {corr}, uncorrectable {unc}, pending {pending}, failure {failure}")
        try:
            m2 = pynvml.nvmlDeviceGetMemoryInfo(h, version=pynvml.nvmlMemory_v2)
        except (TypeError, AttributeError, pynvml.NVMLError) as e:
            print(f"      gpu {i}: pynvml memory v2: {e}")
        else:
            check(f"gpu {i} memory reserved by the driver",
                  m is not None and f"({m2.reserved >> 20} MiB reserved by the driver)" in m["message"],
                  f"agent '{m and m['message']}', pynvml v2 reserved {m2.reserved >> 20} MiB, "
                  f"used {m2.used >> 20} MiB")
        pynvml.nvmlShutdown()
    for c in mine:
        print(f"      gpu {i} {c['name']} = {c['value']} {c['unit']}: {c['verdict']} ({c['message']})")
print("agent verdict:", gpu.get("state"), "-", gpu.get("summary"))
sys.exit(1 if failed else 0)
EOF
