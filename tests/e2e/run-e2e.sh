#!/usr/bin/env bash
# End-to-end test: the built .debs in a real Debian system booted with systemd-nspawn, configured
# by Debian's real cloud-init from conf/cloud-init.yaml (a NoCloud seed; only the share's URL and
# the credential are changed), with azfiles-emu on the host's loopback as the storage account.
# Follows ../shared/e2e/RECIPE.md (flags, namespace guard, gotchas).
#
#   tests/e2e/run-e2e.sh
#
# Environment:
#   E2E_DEBS=DIR       use the .debs in DIR (default: build them with packaging/build-deb.sh
#                      into build-pkg/e2e-debs)
#   E2E_CACHE_DIR=DIR  where the base root filesystem is cached (default /var/cache/poolagent-e2e)
#   E2E_KEEP=1         keep the run directory (journal, logs) after the run
#   E2E_AGENT_DROPIN=F install F as a drop-in for poolagent.service (experiments, e.g. taking a
#                      capability away to see what breaks; not used by CI)
#
# What it does, in the order of the README's "Install" section:
#   image     a bookworm minbase root filesystem with systemd and cloud-init (cached), overlaid
#             per run; the poolagent and azfilesfs .debs installed into it with dpkg -i, as an
#             image build does
#   seed      conf/cloud-init.yaml as NoCloud user-data, share URL and credential changed
#   boot      systemd-nspawn -b; then asserts, each with a deadline (no sleeps as synchronisation):
#             cloud-init done without errors; poolagent.service active (READY=1 received);
#             the workspace mounted; alice's ~/notebooks/remote, a notebook written through it as
#             alice and its bytes on the emulator's share; /health healthy, unhealthy with the
#             scratch disk filled past its threshold, healthy again; jobs (poolctl submit as
#             alice: runs as alice in poolagent-jobs.slice, finishes with 0, its log; a cancelled
#             job; with Slots=1 a second job waits; GPU jobs get disjoint CUDA_VISIBLE_DEVICES;
#             the agent restarted while a job runs: still
#             tracked, finishes once); the watchdog restarts a
#             SIGSTOPped agent (the mount survives); drain and jobs (a Terminate event with a job
#             that ends before the deadline: approved right after it ended, report finished=1; a
#             job that outlives NotBefore minus FlushBudget: stopped at that deadline, approved
#             before NotBefore, a queued job written to alice's requeued-jobs folder on the
#             share as hers); a Terminate event injected into the
#             emulator's metadata service is approved only after every drain step, with the
#             notebook written just before it on the share, /health 503, logins blocked and the
#             shutdown delay lock held; systemctl poweroff with a job running ends the container,
#             nspawn exits 0, and the shutdown drain stopped the job before its flush (the job's
#             SIGTERM handler's marker is on the share).
#             systemd-analyze security is printed, not asserted.
# Everything it starts is stopped on any exit (trap): the container, the emulator (by PID), the
# overlay mount, the cgroups, the run directory.
set -euo pipefail
cd "$(dirname "$0")/../.."
top=$PWD

# The script's own output, kept on fds 3 and 4: a failure inside a quiet poll (wait_for sends
# the condition's output to /dev/null) still reports, and so does the cleanup it triggers.
exec 3>&1 4>&2
t_start=$EPOCHREALTIME
t_step=$t_start
failed_step=
usec() { # $EPOCHREALTIME or a saved copy of it, in microseconds
        local t=${1:-$EPOCHREALTIME}
        echo $((${t%.*} * 1000000 + 10#${t#*.}))
}
elapsed() { # seconds since $1 (a saved $EPOCHREALTIME), one decimal
        local d=$(($(usec) - $(usec "$1")))
        printf '%d.%d' $((d / 1000000)) $((d % 1000000 / 100000))
}
log() { printf 'e2e [%6ss] %s\n' "$(elapsed "$t_start")" "$*"; }
fail() {
        printf 'e2e FAIL: %s\n' "$*" >&4
        exit 1
}
step() { # NAME: start a timed step
        [ -n "${step_name:-}" ] && log "  ${step_name}: $(elapsed "$t_step") s"
        step_name=$1
        failed_step=$1
        t_step=$EPOCHREALTIME
        log "--- $1"
}
pending() { log "pending: $*"; }

[ "$(id -u)" -eq 0 ] || fail "needs root (systemd-nspawn, overlay mounts)"
[ -c /dev/fuse ] || fail "needs /dev/fuse"
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || true
grep -qw overlay /proc/filesystems || fail "needs overlayfs"

work=$(mktemp -d /var/tmp/poolagent-e2e.XXXXXX)
root=$work/root
name=pa-e2e-$$
cg=poolagent-e2e-$$
nspawn_pid=
emu_pid=
leader=

# ---- cleanup --------------------------------------------------------------------------------

cleanup() {
        local rc=$? deadline
        trap - EXIT INT TERM
        set +e
        exec 1>&3 2>&4
        if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
                # SIGTERM to nspawn powers the container off (SIGRTMIN+3 to its init).
                kill -TERM "$nspawn_pid"
                deadline=$((SECONDS + 30))
                while kill -0 "$nspawn_pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
                # A container that does not power off: SIGKILL to its init ends its whole PID
                # namespace (only a process in a namespace other than ours: never the host's).
                if kill -0 "$nspawn_pid" 2>/dev/null && [ -n "$leader" ] &&
                        [ "$(readlink "/proc/$leader/ns/pid")" != "$(readlink /proc/self/ns/pid)" ]; then
                        echo "e2e: the container did not power off in 30 s; SIGKILL to its init $leader"
                        kill -KILL "$leader" 2>/dev/null
                        deadline=$((SECONDS + 10))
                        while kill -0 "$nspawn_pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
                fi
                kill -0 "$nspawn_pid" 2>/dev/null && kill -KILL "$nspawn_pid"
                wait "$nspawn_pid" 2>/dev/null
        fi
        # Whatever is left in this run's own cgroup was started by this run.
        local p left=
        # shellcheck disable=SC2044 # PIDs, one per line
        for p in $(find "/sys/fs/cgroup/systemd/$cg" -name cgroup.procs -exec cat {} + 2>/dev/null); do
                left="$left $p"
                kill -KILL "$p" 2>/dev/null
        done
        [ -n "$left" ] && echo "e2e: killed processes left in the run's cgroup:$left"
        if [ -n "$emu_pid" ] && kill -0 "$emu_pid" 2>/dev/null; then
                kill -TERM "$emu_pid"
                wait "$emu_pid" 2>/dev/null
        fi
        if [ $rc -ne 0 ] && [ -d "$root/var/log/journal" ]; then
                echo "--- container journal (last 80 lines)"
                journalctl -D "$root/var/log/journal" --no-pager -n 80 -o short-monotonic 2>/dev/null
                echo "--- boot log (last 30 lines)"
                tail -30 "$work/boot.log" 2>/dev/null
                echo "--- emulator log (last 10 lines)"
                tail -10 "$work/emu.err" 2>/dev/null
        fi
        if mountpoint -q "$root" 2>/dev/null; then
                umount "$root" 2>/dev/null || umount -l "$root"
        fi
        local cg_left=
        for h in unified systemd; do
                [ -d "/sys/fs/cgroup/$h/$cg" ] || continue
                deadline=$((SECONDS + 10))
                until find "/sys/fs/cgroup/$h/$cg" -depth -type d -exec rmdir {} \; 2>/dev/null; do
                        [ $SECONDS -lt $deadline ] || { cg_left="$cg_left /sys/fs/cgroup/$h/$cg"; break; }
                        sleep 0.2
                done
        done
        [ -n "$cg_left" ] && echo "e2e: cgroups not removable (processes left?):$cg_left" && rc=1
        if [ "${E2E_KEEP:-0}" = 1 ] || mountpoint -q "$root" 2>/dev/null || [ -n "$cg_left" ]; then
                echo "e2e: run directory kept: $work"
        else
                rm -rf "$work"
        fi
        if [ $rc -eq 0 ]; then
                log "PASS (e2e stage $(elapsed "$t_start") s)"
        else
                log "FAIL in step '${failed_step}' (e2e stage $(elapsed "$t_start") s)"
        fi
        exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- helpers ----------------------------------------------------------------------------------

# Runs "$@" inside the booted container. The guard (RECIPE gotcha 1): the leader must not share
# our mount or PID namespace, or nsenter would act on the host.
IN() {
        [ -n "$leader" ] || fail "IN before the container's init was found"
        [ "$(readlink "/proc/$leader/ns/mnt")" != "$(readlink /proc/self/ns/mnt)" ] ||
                fail "namespace guard: PID $leader shares the host's mount namespace"
        [ "$(readlink "/proc/$leader/ns/pid")" != "$(readlink /proc/self/ns/pid)" ] ||
                fail "namespace guard: PID $leader shares the host's PID namespace"
        timeout 120 nsenter -t "$leader" -m -u -i -n -p -C -r -w \
                env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin TERM=dumb LANG=C.UTF-8 "$@"
}

# wait_for SECONDS WHAT COMMAND...: polls COMMAND (quietly) until it succeeds or the deadline.
wait_for() {
        local limit=$1 what=$2 deadline
        shift 2
        deadline=$(($(date +%s) + limit))
        until "$@" >/dev/null 2>&1; do
                [ "$(date +%s)" -lt "$deadline" ] || fail "$what: not within ${limit} s"
                sleep 0.2
        done
}

# Moves this (sub)shell into a dedicated cgroup (both hierarchies of this hybrid host), so that
# nspawn's payload and supervisor cgroups are ours to remove, and execs "$@" there. Call it in a
# subshell: ( in_cgroup_exec CMD ) or ( in_cgroup_exec CMD ) & (then $! is CMD's PID).
in_cgroup_exec() {
        mkdir -p "/sys/fs/cgroup/unified/$cg" "/sys/fs/cgroup/systemd/$cg"
        echo "$BASHPID" >"/sys/fs/cgroup/unified/$cg/cgroup.procs"
        echo "$BASHPID" >"/sys/fs/cgroup/systemd/$cg/cgroup.procs"
        exec "$@"
}

unit_prop() { # UNIT PROPERTY
        IN systemctl show -P "$2" "$1"
}

# ---- steps ------------------------------------------------------------------------------------

step_packages() {
        step "packages"
        debs=${E2E_DEBS:-}
        if [ -z "$debs" ]; then
                debs=$top/build-pkg/e2e-debs
                bash packaging/build-deb.sh "$debs" >"$work/build-deb.log" 2>&1 ||
                        { tail -30 "$work/build-deb.log"; fail "packaging/build-deb.sh"; }
        fi
        debs=$(cd "$debs" && pwd)
        ls "$debs"/poolagent_*.deb "$debs"/azfilesfs_*.deb >/dev/null || fail "no .debs in $debs"
        # The emulator and the SAS helper for the host side.
        meson setup build-pkg/e2e-host -Dtests=disabled >/dev/null 2>&1 ||
                meson setup --reconfigure build-pkg/e2e-host -Dtests=disabled >/dev/null
        meson compile -C build-pkg/e2e-host azfiles-emu azfiles-sas >/dev/null
}

step_image() {
        step "image (cached rootfs, overlay, dpkg -i)"
        local tarball lower
        tarball=$(bash tests/e2e/build-rootfs.sh)
        # The tarball unpacked once next to it, read-only lower layer of every run's overlay.
        lower=${tarball%.tar.zst}.d
        if [ ! -f "$lower/.complete" ]; then
                rm -rf "$lower.tmp"
                mkdir -p "$lower.tmp"
                tar --zstd -C "$lower.tmp" -xf "$tarball"
                touch "$lower.tmp/.complete"
                rm -rf "$lower"
                mv "$lower.tmp" "$lower"
        fi
        mkdir -p "$work/upper" "$work/ovl" "$root"
        mount -t overlay overlay -o "lowerdir=$lower,upperdir=$work/upper,workdir=$work/ovl" "$root"
        # Never the host's root (RECIPE gotcha 1).
        [ "$(stat -c %d:%i "$root")" != "$(stat -c %d:%i /)" ] || fail "root is the host's /"
        if [ ! -x "$root/lib/systemd/systemd" ] || [ ! -x "$root/usr/bin/cloud-init" ]; then
                fail "bad base rootfs"
        fi
        echo "$name" >"$root/etc/hostname"
        # A locale the image has (minbase generates none; cloud-init's locale module would try to
        # set en_US.UTF-8, which it lacks, and fail).
        echo 'LANG=C.UTF-8' >"$root/etc/default/locale"
        # The container's own settings, not the pool's: the metadata service is the emulator's
        # (Azure's is 169.254.169.254). It shares the host's network (so
        # the endpoint takes a free loopback port, not 0.0.0.0:8470) and the host's disk for / and
        # /tmp (so those thresholds are small); its scratch disk is a 256 MiB tmpfs (nspawn
        # --tmpfs=/mnt) with thresholds the health step fills past; it has no GPU; checks every
        # second or two (disks, workspace) so that the hysteresis (2 bad, 3 good) takes seconds.
        health_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        mkdir -p "$root/etc/poolagent/poolagent.conf.d"
        cat >"$root/etc/poolagent/poolagent.conf.d/90-e2e-container.conf" <<-EOF
		# The e2e test container's own settings (tests/e2e/run-e2e.sh), not a pool's.
		[Agent]
		MetadataEndpoint=$emu_imds
		[Workspace]
		CheckInterval=2s
		[Health]
		ListenAddress=127.0.0.1:$health_port
		CheckInterval=1s
		RootMinFree=64M
		RootWarnFree=128M
		TmpMinFree=64M
		TmpWarnFree=128M
		ScratchMinFree=64M
		ScratchWarnFree=96M
		ExpectedGPUs=none
	EOF

        # As an image build does: the packages installed with dpkg -i, in a container that is not
        # booted (no systemd running: the postinst enables the unit, starts nothing).
        mkdir -p "$work/debs"
        cp "$debs"/poolagent_*.deb "$debs"/azfilesfs_*.deb "$work/debs/"
        (in_cgroup_exec systemd-nspawn -q -D "$root" --register=no --keep-unit --console=pipe \
                --bind-ro="$work/debs:/mnt/debs" \
                /bin/sh -c 'dpkg -i /mnt/debs/*.deb') >"$work/dpkg.log" 2>&1 </dev/null ||
                { cat "$work/dpkg.log"; fail "dpkg -i in the image"; }
        if [ -n "${E2E_AGENT_DROPIN:-}" ]; then
                # Experiments only (e.g. a capability taken away): a drop-in for poolagent.service.
                mkdir -p "$root/etc/systemd/system/poolagent.service.d"
                cp "$E2E_AGENT_DROPIN" "$root/etc/systemd/system/poolagent.service.d/90-e2e-experiment.conf"
                log "experiment: $(grep -v '^#' "$E2E_AGENT_DROPIN" | tr '\n' ' ')"
        fi
        grep -q 'Setting up poolagent' "$work/dpkg.log" || { cat "$work/dpkg.log"; fail "poolagent not set up"; }
        [ -L "$root/etc/systemd/system/multi-user.target.wants/poolagent.service" ] ||
                fail "dpkg -i did not enable poolagent.service"
}

step_emulator() {
        step "emulator on the host's loopback"
        key=$(head -c 64 /dev/urandom | base64 -w0)
        build-pkg/e2e-host/tests/emulator/azfiles-emu --listen 127.0.0.1:0 --imds 127.0.0.1:0 \
                --data "$work/emu" --account e2eaccount --key "$key" >"$work/emu.out" 2>"$work/emu.err" &
        emu_pid=$!
        wait_for 20 "azfiles-emu ready" grep -q ready "$work/emu.out"
        emu_url=$(sed -n 's/.*file=\([^ ]*\).*/\1/p' "$work/emu.out")
        emu_imds=$(sed -n 's/.*imds=\([^ ]*\).*/\1/p' "$work/emu.out")
        sas=$(build-pkg/e2e-host/tests/tools/azfiles-sas --account-sas --account e2eaccount --key "$key" \
                --permissions rwdlc --expiry-minutes 120 --protocol https,http)
        local code
        code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT "$emu_url/team?restype=share&$sas" \
                -H 'x-ms-version: 2025-05-05' -H 'Content-Length: 0')
        [ "$code" = 201 ] || fail "create share: HTTP $code"
        log "emulator: $emu_url (imds $emu_imds), share 'team'"
}

step_seed() {
        step "cloud-init seed (conf/cloud-init.yaml; URL and credential changed)"
        local seed=$root/var/lib/cloud/seed/nocloud
        mkdir -p "$seed" "$root/etc/cloud/cloud.cfg.d"
        python3 tests/e2e/adapt-cloud-init.py conf/cloud-init.yaml "$emu_url/team" "$sas" \
                ${mount_pending:+--no-source} >"$seed/user-data"
        printf 'instance-id: %s\nlocal-hostname: %s\n' "$name" "$name" >"$seed/meta-data"
        # The container's own settings, not the pool's: only the seed above, and no network
        # configuration (the container shares the host's network namespace).
        cat >"$root/etc/cloud/cloud.cfg.d/99-e2e.cfg" <<-'EOF'
		datasource_list: [NoCloud, None]
		network: {config: disabled}
	EOF
}

step_boot() {
        step "boot (systemd-nspawn -b)"
        (in_cgroup_exec systemd-nspawn -D "$root" -M "$name" -b --register=no --keep-unit \
                --console=read-only --bind=/dev/fuse --tmpfs=/mnt:mode=0755,size=256M) \
                >"$work/boot.log" 2>&1 </dev/null &
        nspawn_pid=$!
        # $! is the subshell until it has exec'd nspawn (RECIPE gotcha 1: a wrapper's children
        # are not the container's).
        local deadline=$((SECONDS + 30)) c
        until [ "$(cat "/proc/$nspawn_pid/comm" 2>/dev/null)" = systemd-nspawn ]; do
                kill -0 "$nspawn_pid" 2>/dev/null || fail "systemd-nspawn exited"
                [ $SECONDS -lt $deadline ] || fail "systemd-nspawn did not start within 30 s"
                sleep 0.05
        done
        # The container's init is the child of nspawn named systemd (the guard in IN() checks it).
        while [ -z "$leader" ]; do
                for c in $(ps --ppid "$nspawn_pid" -o pid= 2>/dev/null); do
                        [ "$(cat "/proc/$c/comm" 2>/dev/null)" = systemd ] && leader=$c
                done
                [ -n "$leader" ] && break
                kill -0 "$nspawn_pid" 2>/dev/null || fail "systemd-nspawn exited"
                if [ $SECONDS -ge $deadline ]; then
                        ps -e -o pid,ppid,comm | awk -v p="$nspawn_pid" '$1 == p || $2 == p' >&2
                        fail "no systemd in the container within 30 s"
                fi
                sleep 0.1
        done
        [ "$(readlink "/proc/$leader/ns/mnt")" != "$(readlink /proc/self/ns/mnt)" ] ||
                fail "namespace guard: container init $leader is in the host's mount namespace"
        wait_for 120 "system running" is_running
        log "system running (leader PID $leader)"
}
is_running() {
        local s
        s=$(IN systemctl is-system-running 2>/dev/null) || true
        [ "$s" = running ] && return 0
        if [ "$s" = degraded ]; then
                IN systemctl --failed --no-legend >&4 || true
                fail "system degraded"
        fi
        return 1
}

step_cloud_init() {
        step "cloud-init finished without errors"
        local out result
        out=$(IN timeout 150 cloud-init status --wait --long 2>&1) || { echo "$out"; fail "cloud-init status"; }
        printf '    %s\n' "${out//$'\n'/$'\n'    }"
        grep -q '^status: done' <<<"$out" || fail "cloud-init not done"
        result=$(IN cat /run/cloud-init/result.json)
        python3 -c 'import json,sys
r=json.loads(sys.argv[1])["v1"]
print("    datasource:", r["datasource"])
sys.exit(1 if r["errors"] else 0)' "$result" || fail "cloud-init reported errors: $result"
        IN id alice >/dev/null || fail "cloud-init did not create alice"
        IN test -f /etc/poolagent/poolagent.conf.d/50-pool.conf || fail "config not written"
        [ "$(IN stat -c '%a %U' /etc/poolagent/storage.cred)" = "600 root" ] || fail "credential not 0600 root"
}

step_agent_ready() {
        step "poolagent.service active (READY=1)"
        wait_for 60 "poolagent.service active" agent_active
        local status
        status=$(unit_prop poolagent.service StatusText)
        log "agent: MainPID $(unit_prop poolagent.service MainPID), status: $status"
        IN poolctl status >"$work/poolctl-status.txt" 2>&1 || { cat "$work/poolctl-status.txt"; fail "poolctl status"; }
        sed 's/^/    /' "$work/poolctl-status.txt"
}
agent_active() {
        [ "$(unit_prop poolagent.service ActiveState)" = active ] &&
                [ "$(unit_prop poolagent.service SubState)" = running ]
}

step_security() {
        step "systemd-analyze security poolagent.service (reported, not asserted)"
        IN systemd-analyze security --no-pager poolagent.service >"$work/security.txt" 2>&1 || true
        mkdir -p "$top/build-pkg"
        cp "$work/security.txt" "$top/build-pkg/e2e-security.txt"
        log "$(grep 'Overall exposure level' "$work/security.txt" || echo 'no security report')"
}

# ---- the workspace mount (azfilesfs) ----
step_workspace_mount() {
        step "workspace mounted (fuse.azfilesfs at /srv/workspace)"
        if [ -n "$mount_pending" ]; then
                pending "azfilesfs mount step ($mount_pending); /srv/workspace is a plain directory"
                IN mkdir -p /srv/workspace
                return 0
        fi
        wait_for 90 "workspace mounted" workspace_mounted
        log "mounted: $(IN findmnt -n -o SOURCE,FSTYPE /srv/workspace)"
}
workspace_mounted() {
        local m
        m=$(IN findmnt -n -o FSTYPE /srv/workspace) || return 1
        [ "$m" = fuse.azfilesfs ]
}

step_user_links() {
        step "user links (~alice/notebooks/remote) and a notebook written as alice"
        wait_for 90 "alice's link" IN test -L /home/alice/notebooks/remote
        local target content got
        target=$(IN readlink /home/alice/notebooks/remote)
        [ "$target" = /srv/workspace/Users/alice/notebooks ] || fail "link points at $target"
        content="{\"cells\": [], \"metadata\": {\"e2e\": \"$name\"}, \"nbformat\": 4}"
        # shellcheck disable=SC2016 # $1 is expanded by the shell in the container
        IN runuser -u alice -- sh -c 'printf "%s\n" "$1" >/home/alice/notebooks/remote/e2e.ipynb' sh "$content" ||
                fail "alice could not write a notebook through the link"
        [ "$(IN stat -c %U /srv/workspace/Users/alice/notebooks/e2e.ipynb)" = alice ] ||
                fail "the notebook is not alice's"
        if [ -z "$mount_pending" ]; then
                # close() returned: the bytes are on the share (azfilesfs's contract).
                got=$(curl -sf "$emu_url/team/Users/alice/notebooks/e2e.ipynb?$sas" -H 'x-ms-version: 2025-05-05') ||
                        fail "the notebook is not on the emulator's share"
                [ "$got" = "$content" ] || fail "the share holds other bytes: $got"
                log "the notebook's bytes are on the share"
        fi
}

# ---- health: /health over HTTP and poolctl health ----
step_health() {
        step "health: /health healthy; scratch disk filled past the threshold: unhealthy; and back"
        local url=http://127.0.0.1:$health_port/health
        wait_for 60 "/health 200 (healthy)" http_status_is 200 "$url"
        IN poolctl health >/dev/null || fail "poolctl health exits non-zero on a healthy VM"
        # 256 MiB scratch, ScratchMinFree=64M: 200 MiB leaves about 56 MiB free.
        IN fallocate -l 200M /mnt/e2e-fill || fail "fallocate on the scratch disk"
        wait_for 60 "/health 503 (unhealthy) with the scratch disk full" http_status_is 503 "$url"
        if IN poolctl health >"$work/health.txt" 2>&1; then
                cat "$work/health.txt"
                fail "poolctl health exits 0 on an unhealthy VM"
        fi
        log "unhealthy: $(head -3 "$work/health.txt" | tr '\n' ' ')"
        IN rm -f /mnt/e2e-fill
        wait_for 60 "/health 200 again after the scratch disk was freed" http_status_is 200 "$url"
        IN poolctl health >/dev/null || fail "poolctl health exits non-zero after recovery"
}
http_status_is() { # CODE URL
        [ "$(curl -s -o /dev/null -m 5 -w '%{http_code}' "$2")" = "$1" ]
}

# ---- drain: a Terminate scheduled event, the shutdown delay lock ----
step_drain() {
        step "drain: Terminate event approved only after the drain; notebook written just before it on the share"
        local content event_id approvals state got
        content="{\"cells\": [], \"metadata\": {\"written\": \"just before the Terminate event\"}, \"nbformat\": 4}"
        # shellcheck disable=SC2016 # $1 is expanded by the shell in the container
        IN runuser -u alice -- sh -c 'printf "%s\n" "$1" >/home/alice/notebooks/remote/before-terminate.ipynb' sh "$content" ||
                fail "alice could not write a notebook"
        event_id=e2e-terminate-$$
        curl -sf -X POST -H 'Content-Type: application/json' \
                -d "{\"type\":\"Terminate\",\"id\":\"$event_id\",\"not_before\":300,\"description\":\"e2e scale-in\"}" \
                "$emu_imds/__emu/scheduledevents" >/dev/null || fail "inject the Terminate event"
        wait_for 90 "approval of the Terminate event" event_approved "$event_id"
        approvals=$(curl -sf "$emu_imds/__emu/scheduledevents/approvals")
        # The agent records each step; approve is the last one. Wait for the record to say done.
        wait_for 30 "the drain recorded as done" drain_done
        state=$(IN cat /var/lib/poolagent/drain-state.json)
        python3 - "$state" "$approvals" "$event_id" <<-'PY' || fail "the drain's record does not show every step before the approval"
		import json, sys
		state, approvals, event_id = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
		d = state["drain"]
		assert d["event_id"] == event_id, d["event_id"]
		steps = [s for s in d["steps"]]
		approve = [s for s in steps if s["step"] == "approve"][0]
		before = [s for s in steps if s["step"] != "approve"]
		assert approve["result"] == "done", approve
		for s in before:
		    assert s["result"] in ("done", "skipped"), s
		    if s["result"] == "done":
		        assert s["end_usec"] <= approve["start_usec"], (s, approve)
		a = [a for a in approvals["Approvals"] if a["EventId"] == event_id][0]
		print("    steps: " + ", ".join("%s %s" % (s["step"], s["result"]) for s in steps))
		print("    approved: %s (status when approved: %s), %d bytes flushed" % (a["FirstApproved"], a["StatusWhenApproved"], d["bytes_flushed"]))
	PY
        got=$(curl -sf "$emu_url/team/Users/alice/notebooks/before-terminate.ipynb?$sas" -H 'x-ms-version: 2025-05-05') ||
                fail "the notebook written before the event is not on the share"
        [ "$got" = "$content" ] || fail "the share holds other bytes: $got"
        http_status_is 503 "http://127.0.0.1:$health_port/health" || fail "a drained VM still reports healthy"
        IN test -e /run/nologin || fail "a drained VM still allows logins (/run/nologin missing)"
        log "drained: approved after every step, notebook on the share, /health 503, logins blocked"
        # The shutdown delay lock that makes systemctl poweroff wait for the final flush.
        local inhibitors
        inhibitors=$(IN systemd-inhibit --list --no-pager)
        grep -q 'poolagentd.*shutdown.*delay' <<<"$inhibitors" ||
                { echo "$inhibitors"; fail "no shutdown delay lock held by poolagentd"; }
}
event_approved() { # EVENTID
        local a
        a=$(curl -sf "$emu_imds/__emu/scheduledevents/approvals") || return 1
        python3 -c 'import json,sys
sys.exit(0 if any(a["EventId"] == sys.argv[2] for a in json.loads(sys.argv[1])["Approvals"]) else 1)' "$a" "$1"
}
drain_done() {
        local state
        state=$(IN cat /var/lib/poolagent/drain-state.json) || return 1
        python3 -c 'import json,sys; sys.exit(0 if json.loads(sys.argv[1])["drain"]["done"] else 1)' "$state"
}

# ---- the job queue: poolctl submit/jobs/cancel/logs as alice, jobs as transient units ----
# Each step is self-contained: it submits its own jobs and leaves none running.
job_field() { # ID FIELD: the job's FIELD from poolctl --json jobs (as root, who sees all)
        IN poolctl --json jobs | python3 -c 'import json,sys
jobs = json.load(sys.stdin)["result"]["jobs"]
j = [j for j in jobs if j["id"] == int(sys.argv[1])]
print(j[0].get(sys.argv[2], "") if j else "")' "$1" "$2"
}
job_state_is() { # ID STATE
        [ "$(job_field "$1" state)" = "$2" ]
}
submit_as_alice() { # [--gpus K] COMMAND...: submits it as alice from her home; prints the job's ID
        local opts=()
        if [ "$1" = --gpus ]; then
                opts=(--gpus "$2")
                shift 2
        fi
        # shellcheck disable=SC2016 # "$@" is expanded by the shell in the container
        IN runuser -u alice -- sh -c 'cd && exec poolctl --json submit "$@"' sh "${opts[@]}" -- "$@" |
                python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["result"]["id"]) if r["ok"] else sys.exit(r["error"])'
}
job_log_matches() { # ID REGEX: the job's log has a line matching REGEX
        IN poolctl logs "$1" | grep -Eq "$2"
}
unit_gone() { # UNIT: collected by systemd after the runner read its end
        [ "$(unit_prop "$1" LoadState)" = not-found ]
}
agent_restart() { # restarts poolagent.service and waits for the new agent
        local old
        old=$(unit_prop poolagent.service MainPID)
        IN systemctl restart poolagent.service || fail "systemctl restart poolagent"
        wait_for 60 "poolagent.service active again" agent_restarted_by_hand "$old"
}
agent_restarted_by_hand() { # OLDPID
        local pid
        pid=$(unit_prop poolagent.service MainPID)
        [ "$pid" != "$1" ] && [ "$pid" != 0 ] && agent_active
}

step_jobs_run() {
        step "jobs: alice submits a job; it runs as alice in poolagent-jobs.slice, finishes with 0, logs"
        local id out unit
        # shellcheck disable=SC2016 # expanded by the job's shell
        id=$(submit_as_alice sh -c 'echo "user=$(id -un) job=$POOLAGENT_JOB_ID pwd=$PWD"; grep -m1 poolagent-jobs.slice /proc/self/cgroup; echo written >job-file.txt') ||
                fail "poolctl submit as alice"
        unit=poolagent-job-$id.service
        wait_for 60 "job $id finished" job_state_is "$id" finished
        [ "$(job_field "$id" exit_status)" = 0 ] || fail "job $id: exit status $(job_field "$id" exit_status)"
        out=$(IN runuser -u alice -- poolctl jobs) || fail "poolctl jobs as alice"
        grep -Eq "^ *$id +alice +finished +0 " <<<"$out" || { echo "$out"; fail "poolctl jobs does not show job $id finished with 0"; }
        out=$(IN runuser -u alice -- poolctl logs "$id") || fail "poolctl logs $id as alice"
        grep -q "^user=alice job=$id pwd=/home/alice$" <<<"$out" || { echo "$out"; fail "the job did not run as alice in her home"; }
        grep -q "/poolagent-jobs.slice/$unit" <<<"$out" || { echo "$out"; fail "the job did not run in poolagent-jobs.slice"; }
        [ "$(IN stat -c %U /home/alice/job-file.txt)" = alice ] || fail "the job's file is not alice's"
        # Another user neither sees nor reads it; the unit is collected once its end is read.
        out=$(IN setpriv --reuid=65534 --regid=65534 --clear-groups poolctl --json jobs) || fail "poolctl jobs as nobody"
        grep -q "\"id\":$id," <<<"${out//[[:space:]]/}" && fail "nobody sees alice's job"
        IN setpriv --reuid=65534 --regid=65534 --clear-groups poolctl logs "$id" >/dev/null 2>&1 &&
                fail "nobody reads alice's job's log"
        wait_for 30 "$unit collected" unit_gone "$unit"
        log "job $id: finished, exit 0, as alice in poolagent-jobs.slice; unit collected"
}

step_jobs_cancel() {
        step "jobs: a running job cancelled with poolctl cancel ends cancelled, its unit gone"
        local id unit
        id=$(submit_as_alice sleep 300) || fail "poolctl submit as alice"
        unit=poolagent-job-$id.service
        wait_for 60 "job $id running" job_state_is "$id" running
        [ "$(unit_prop "$unit" ActiveState)" = active ] || fail "$unit is not active"
        IN setpriv --reuid=65534 --regid=65534 --clear-groups poolctl cancel "$id" >/dev/null 2>&1 &&
                fail "nobody cancelled alice's job"
        IN runuser -u alice -- poolctl cancel "$id" >/dev/null || fail "poolctl cancel $id as alice"
        wait_for 60 "job $id cancelled" job_state_is "$id" cancelled
        wait_for 30 "$unit gone" unit_gone "$unit"
        log "job $id: cancelled, unit gone"
}

step_jobs_slots() {
        step "jobs: with [Jobs] Slots=1 a second job waits queued while the first runs"
        local a b
        IN sh -c 'printf "[Jobs]\nSlots=1\n" >/etc/poolagent/poolagent.conf.d/91-e2e-jobs.conf'
        agent_restart
        a=$(submit_as_alice sleep 300) || fail "submit the first job"
        b=$(submit_as_alice true) || fail "submit the second job"
        wait_for 60 "job $a running" job_state_is "$a" running
        # The second was submitted after the first and picked with it: it waits.
        job_state_is "$b" queued || fail "job $b is $(job_field "$b" state) while job $a runs on the only slot"
        IN poolctl status | grep -q 'Jobs: 1 running, 1 queued; 1 of 1 slots' || fail "status does not show 1 running, 1 queued"
        job_state_is "$b" queued || fail "job $b started while job $a runs on the only slot"
        IN runuser -u alice -- poolctl cancel "$a" >/dev/null || fail "cancel job $a"
        wait_for 60 "job $b finished once the slot was free" job_state_is "$b" finished
        job_state_is "$a" cancelled || fail "job $a is $(job_field "$a" state)"
        IN rm -f /etc/poolagent/poolagent.conf.d/91-e2e-jobs.conf
        agent_restart
        log "job $b waited for job $a's slot, then finished"
}

step_jobs_gpus() {
        step "jobs: with [Jobs] GPUs=2 GPU jobs get disjoint CUDA_VISIBLE_DEVICES, a third waits, others none"
        local a b c d got ab
        IN sh -c 'printf "[Jobs]\nGPUs=2\n" >/etc/poolagent/poolagent.conf.d/91-e2e-jobs.conf'
        IN rm -f /home/alice/gpu-go
        agent_restart
        # shellcheck disable=SC2016 # expanded by the job's shell
        a=$(submit_as_alice --gpus 1 sh -c 'echo "cuda=$CUDA_VISIBLE_DEVICES"; while [ ! -e gpu-go ]; do sleep 0.2; done') ||
                fail "submit GPU job a"
        # shellcheck disable=SC2016
        b=$(submit_as_alice --gpus 1 sh -c 'echo "cuda=$CUDA_VISIBLE_DEVICES"; while [ ! -e gpu-go ]; do sleep 0.2; done') ||
                fail "submit GPU job b"
        # shellcheck disable=SC2016
        c=$(submit_as_alice sh -c 'echo "cuda=[${CUDA_VISIBLE_DEVICES-unset}]"') || fail "submit job c"
        # shellcheck disable=SC2016
        d=$(submit_as_alice --gpus 1 sh -c 'echo "cuda=$CUDA_VISIBLE_DEVICES"') || fail "submit GPU job d"
        wait_for 60 "GPU job $a running" job_state_is "$a" running
        wait_for 60 "GPU job $b running" job_state_is "$b" running
        wait_for 60 "job $c finished" job_state_is "$c" finished
        job_state_is "$d" queued || fail "GPU job $d is $(job_field "$d" state) while both GPUs are held"
        wait_for 30 "GPU job $a's log" job_log_matches "$a" '^cuda='
        wait_for 30 "GPU job $b's log" job_log_matches "$b" '^cuda='
        ab="$(IN poolctl logs "$a")/$(IN poolctl logs "$b")"
        [ "$ab" = "cuda=0/cuda=1" ] || [ "$ab" = "cuda=1/cuda=0" ] || fail "GPU jobs' devices: $ab"
        got=$(IN poolctl logs "$c")
        [ "$got" = "cuda=[]" ] || fail "a job without GPUs sees $got"
        IN runuser -u alice -- touch /home/alice/gpu-go
        wait_for 60 "GPU job $d finished once a GPU was free" job_state_is "$d" finished
        { job_state_is "$a" finished && job_state_is "$b" finished; } || fail "GPU jobs $a, $b did not finish"
        grep -Eq '^cuda=[01]$' <<<"$(IN poolctl logs "$d")" || fail "GPU job $d: $(IN poolctl logs "$d")"
        IN rm -f /etc/poolagent/poolagent.conf.d/91-e2e-jobs.conf
        agent_restart
        log "GPU jobs $a and $b: $ab; job $c none; job $d waited for a free GPU"
}

step_jobs_restart() {
        step "jobs: the agent restarted while a job runs: the job keeps running, is tracked, finishes once"
        local id unit pid
        IN rm -f /home/alice/restart-count /home/alice/restart-go
        # shellcheck disable=SC2016 # expanded by the job's shell
        id=$(submit_as_alice sh -c 'echo started >>restart-count; while [ ! -e restart-go ]; do sleep 0.2; done; echo ended') ||
                fail "poolctl submit as alice"
        unit=poolagent-job-$id.service
        wait_for 60 "job $id running" job_state_is "$id" running
        pid=$(unit_prop "$unit" MainPID)
        agent_restart
        job_state_is "$id" running || fail "job $id is $(job_field "$id" state) after the agent's restart"
        [ "$(unit_prop "$unit" MainPID)" = "$pid" ] || fail "job $id's process changed across the restart"
        IN runuser -u alice -- touch /home/alice/restart-go
        wait_for 60 "job $id finished after the restart" job_state_is "$id" finished
        [ "$(IN cat /home/alice/restart-count)" = started ] || fail "job $id ran more than once: $(IN cat /home/alice/restart-count)"
        IN runuser -u alice -- poolctl logs "$id" | grep -q '^ended$' || fail "job $id's log lacks its end"
        IN journalctl -u poolagent.service -o cat --no-pager | grep -q "Job $id .*watching $unit again" ||
                fail "the restarted agent did not re-attach to $unit"
        wait_for 30 "$unit collected" unit_gone "$unit"
        log "job $id: kept running (PID $pid) across the restart, finished once"
}

# ---- the drain and jobs: a Terminate event with a job running, the deadline, the shutdown ----
drain_field() { # FIELD: the current drain's FIELD from the state file
        IN cat /var/lib/poolagent/drain-state.json | python3 -c 'import json,sys
print(json.load(sys.stdin)["drain"].get(sys.argv[1], ""))' "$1"
}
drain_at_step() { # EVENTID STEP: the drain of EVENTID is in STEP
        [ "$(drain_field event_id)" = "$1" ] && [ "$(drain_field step)" = "$2" ]
}
inject_terminate() { # EVENTID NOTBEFORE_SECONDS
        curl -sf -X POST -H 'Content-Type: application/json' \
                -d "{\"type\":\"Terminate\",\"id\":\"$1\",\"not_before\":$2,\"description\":\"e2e drain with jobs\"}" \
                "$emu_imds/__emu/scheduledevents" >/dev/null || fail "inject the Terminate event $1"
}
approval_field() { # EVENTID FIELD
        curl -sf "$emu_imds/__emu/scheduledevents/approvals" | python3 -c 'import json,sys
a = [a for a in json.load(sys.stdin)["Approvals"] if a["EventId"] == sys.argv[1]]
print(a[0].get(sys.argv[2], "") if a else "")' "$1" "$2"
}
drain_report_jobs() { # EVENTID: "finished stopped requeued" from the drain report on the share
        # shellcheck disable=SC2016 # $1 is expanded by the shell in the container
        IN sh -c 'cat /srv/workspace/.poolagent/drain-reports/*-"$1".json' sh "$1" | python3 -c 'import json,sys
j = json.load(sys.stdin)["jobs"]
print(j["finished"], j["stopped"], j["requeued"])'
}
drain_lift() { # poolctl drain --cancel: healthy again, the queue starts jobs again
        IN poolctl drain --cancel >/dev/null || fail "poolctl drain --cancel"
        wait_for 30 "/health 200 after the drain was cancelled" http_status_is 200 "http://127.0.0.1:$health_port/health"
}

step_drain_job_finishes() {
        step "drain: Terminate with a job running that ends before the deadline: approved right after it ended"
        local id ev ended approved counts
        IN rm -f /home/alice/drain-go
        # shellcheck disable=SC2016 # expanded by the job's shell
        id=$(submit_as_alice sh -c 'while [ ! -e drain-go ]; do sleep 0.2; done; echo done') ||
                fail "poolctl submit as alice"
        wait_for 60 "job $id running" job_state_is "$id" running
        ev=e2e-terminate-job-$$
        # NotBefore in 5 min: the job may run until NotBefore minus FlushBudget= (10 s).
        inject_terminate "$ev" 300
        wait_for 30 "the drain waiting for the job (wait-jobs)" drain_at_step "$ev" wait-jobs
        # While the job runs, nothing is approved and no new job is taken.
        event_approved "$ev" && fail "event $ev approved while job $id still runs"
        job_state_is "$id" running || fail "job $id is $(job_field "$id" state) during wait-jobs"
        submit_as_alice true >/dev/null 2>&1 && fail "a job was accepted while the VM drains"
        IN runuser -u alice -- touch /home/alice/drain-go
        wait_for 30 "job $id finished" job_state_is "$id" finished
        wait_for 30 "approval of $ev after the job ended" event_approved "$ev"
        ended=$(job_field "$id" ended_usec)
        approved=$(approval_field "$ev" FirstApprovedMs)
        [ "$approved" -ge $((ended / 1000)) ] || fail "approved at $approved ms, before job $id ended at $((ended / 1000)) ms"
        [ $((approved - ended / 1000)) -lt 10000 ] || fail "approved $((approved - ended / 1000)) ms after the job ended, not right after"
        wait_for 30 "the drain of $ev recorded as done" drain_done
        counts=$(drain_report_jobs "$ev") || fail "no drain report for $ev on the share"
        [ "$counts" = "1 0 0" ] || fail "drain report jobs (finished stopped requeued): $counts, want 1 0 0"
        log "job $id ended, event approved $((approved - ended / 1000)) ms later; report: finished=1"
        drain_lift
}

step_drain_job_deadline() {
        step "drain: a job that outlives the deadline is stopped at it, approved before NotBefore; a queued job is requeued to its owner's folder"
        local a b ev nb deadline ended file counts got
        IN sh -c 'printf "[Jobs]\nSlots=1\n" >/etc/poolagent/poolagent.conf.d/91-e2e-jobs.conf'
        agent_restart
        a=$(submit_as_alice sleep 600) || fail "submit the long job"
        wait_for 60 "job $a running" job_state_is "$a" running
        b=$(submit_as_alice sh -c 'echo never started') || fail "submit the waiting job"
        job_state_is "$b" queued || fail "job $b is $(job_field "$b" state), not queued behind job $a"
        ev=e2e-terminate-deadline-$$
        # NotBefore in 25 s: the job gets until NotBefore minus FlushBudget= (10 s).
        inject_terminate "$ev" 25
        wait_for 30 "the drain of $ev in wait-jobs" drain_at_step "$ev" wait-jobs
        nb=$(drain_field not_before_usec)
        deadline=$((nb - 10000000))
        wait_for 60 "job $a stopped" job_state_is "$a" stopped
        wait_for 60 "approval of $ev" event_approved "$ev"
        ended=$(job_field "$a" ended_usec)
        [ "$ended" -ge "$deadline" ] || fail "job $a ended $(((deadline - ended) / 1000)) ms before the deadline"
        [ "$(approval_field "$ev" StatusWhenApproved)" = Scheduled ] || fail "event $ev approved after NotBefore"
        [ "$(approval_field "$ev" FirstApprovedMs)" -lt $((nb / 1000)) ] || fail "event $ev approved after NotBefore"
        job_state_is "$b" requeued || fail "job $b is $(job_field "$b" state), not requeued"
        # The requeued job, as alice's, in her folder on the share.
        file=$(IN sh -c "ls /srv/workspace/Users/alice/.poolagent/requeued-jobs/ | grep -- '-$b.json\$'") ||
                fail "job $b not in alice's requeued-jobs folder"
        [ "$(IN stat -c '%U %a' "/srv/workspace/Users/alice/.poolagent/requeued-jobs/$file")" = "alice 600" ] ||
                fail "$file is not alice's with mode 600"
        got=$(curl -sf "$emu_url/team/Users/alice/.poolagent/requeued-jobs/$file?$sas" -H 'x-ms-version: 2025-05-05') ||
                fail "$file is not on the emulator's share"
        python3 -c 'import json,sys
j = json.loads(sys.argv[1])["job"]
assert j["id"] == int(sys.argv[2]) and j["user"] == "alice", j
assert j["argv"] == ["sh", "-c", "echo never started"], j["argv"]
assert j["cwd"] == "/home/alice", j["cwd"]' "$got" "$b" || fail "$file does not describe job $b: $got"
        wait_for 30 "the drain of $ev recorded as done" drain_done
        counts=$(drain_report_jobs "$ev") || fail "no drain report for $ev on the share"
        [ "$counts" = "0 1 1" ] || fail "drain report jobs (finished stopped requeued): $counts, want 0 1 1"
        log "job $a stopped $(((ended - deadline) / 1000)) ms after the deadline, approved before NotBefore; job $b in $file on the share"
        drain_lift
        IN rm -f /etc/poolagent/poolagent.conf.d/91-e2e-jobs.conf
        agent_restart
}

# systemctl poweroff with a job running: the shutdown drain stops it (its SIGTERM handler writes
# a marker into alice's notebooks on the share) before the flush; checked after the poweroff.
poweroff_job=
step_poweroff_job() {
        step "shutdown with a job running: a job with a SIGTERM handler runs when systemctl poweroff comes"
        drain_lift # the Terminate drain of step_drain keeps the VM drained
        # shellcheck disable=SC2016 # expanded by the job's shell
        poweroff_job=$(submit_as_alice sh -c 'trap "echo stopped-by-the-drain >notebooks/remote/poweroff-marker.txt; exit 0" TERM; while :; do sleep 0.2; done') ||
                fail "poolctl submit as alice"
        wait_for 60 "job $poweroff_job running" job_state_is "$poweroff_job" running
}
step_poweroff_job_check() {
        step "shutdown with a job running: the drain stopped the job before the flush, its marker is on the share"
        local got
        got=$(curl -sf "$emu_url/team/Users/alice/notebooks/poweroff-marker.txt?$sas" -H 'x-ms-version: 2025-05-05') ||
                fail "the job's marker is not on the share"
        [ "$got" = stopped-by-the-drain ] || fail "the marker holds: $got"
        python3 - "$root/var/lib/poolagent/drain-state.json" "$root/var/lib/poolagent/jobs.json" "$poweroff_job" <<-'PY' ||
		import json, sys
		d = json.load(open(sys.argv[1]))["drain"]
		jobs = json.load(open(sys.argv[2]))["jobs"]
		job = [j for j in jobs if j["id"] == int(sys.argv[3])][0]
		assert d["source"] == "shutdown" and d["done"], d
		steps = {s["step"]: s for s in d["steps"]}
		assert steps["wait-jobs"]["result"] == "done" and "1 stopped" in steps["wait-jobs"]["note"], steps["wait-jobs"]
		assert job["state"] == "stopped", job
		assert steps["flush"]["result"] == "done" and steps["flush"]["start_usec"] >= job["ended_usec"] > 0, (steps["flush"], job)
		print("    shutdown drain: wait-jobs %s; flush %s" % (steps["wait-jobs"]["note"], steps["flush"]["note"]))
	PY
                fail "the shutdown drain's record does not show the job stopped before the flush"
        log "job $poweroff_job stopped by the shutdown drain; its marker reached the share"
}

step_watchdog() {
        step "watchdog restarts a frozen agent (SIGSTOP)"
        local old restarts
        old=$(unit_prop poolagent.service MainPID)
        restarts=$(unit_prop poolagent.service NRestarts)
        IN systemctl kill -s SIGSTOP --kill-who=main poolagent.service
        wait_for 90 "restart after the watchdog" agent_restarted "$old" "$restarts"
        local j
        j=$(IN journalctl -u poolagent.service -o cat --no-pager)
        grep -q 'Watchdog timeout' <<<"$j" || fail "no watchdog timeout in the journal"
        log "restarted by the watchdog: MainPID $old -> $(unit_prop poolagent.service MainPID)"
        if [ -z "$mount_pending" ]; then
                # The FUSE daemon belongs to the mount unit, not to the agent: the kill left it alone.
                workspace_mounted || fail "the workspace mount did not survive the agent's restart"
                IN runuser -u alice -- cat /home/alice/notebooks/remote/e2e.ipynb >/dev/null ||
                        fail "the notebook is not readable after the agent's restart"
        fi
}
agent_restarted() { # OLDPID OLDRESTARTS
        local pid n
        pid=$(unit_prop poolagent.service MainPID)
        n=$(unit_prop poolagent.service NRestarts)
        [ "$n" -gt "$2" ] && [ "$pid" != "$1" ] && [ "$pid" != 0 ] && agent_active
}

step_poweroff() {
        step "systemctl poweroff: clean shutdown, nspawn exit 0"
        IN systemctl poweroff
        local deadline=$((SECONDS + 60)) rc=0
        while kill -0 "$nspawn_pid" 2>/dev/null; do
                [ $SECONDS -lt $deadline ] || fail "container still running 60 s after poweroff"
                sleep 0.2
        done
        wait "$nspawn_pid" || rc=$?
        nspawn_pid=
        leader=
        [ $rc -eq 0 ] || fail "systemd-nspawn exited $rc"
        # What the agent did on the way down (its own messages, RECIPE gotcha 11), for the log.
        local j
        j=$(journalctl -D "$root/var/log/journal" -b -u poolagent.service -o cat --no-pager 2>/dev/null) || true
        local flushed
        flushed=$(grep -E '^Final flush before stopping' <<<"$j" | tail -1) || true
        j=$(grep -E 'Shutdown drain|Drain \(.*(started|finished)|stopping' <<<"$j" | tail -4) || true
        [ -n "$j" ] && printf '    %s\n' "${j//$'\n'/$'\n'    }"
        # The stop path's own flush (a shutdown that bypassed logind would rely on it) must work.
        [[ $flushed == 'Final flush before stopping: 0 dirty bytes'* ]] ||
                fail "the agent's final flush on stop did not confirm 0 dirty bytes: ${flushed:-no such message}"
}

# The mount step runs when the azfilesfs package holds the driver; E2E_MOUNT=0 skips it.
mount_pending=
step_packages
if [ "${E2E_MOUNT:-1}" = 0 ]; then
        mount_pending="E2E_MOUNT=0"
fi
step_emulator
step_image
step_seed
step_boot
step_cloud_init
step_agent_ready
step_security
step_workspace_mount
step_user_links
step_health
step_jobs_run
step_jobs_cancel
step_jobs_slots
step_jobs_gpus
step_jobs_restart
step_watchdog
step_drain_job_finishes
step_drain_job_deadline
step_drain
step_poweroff_job
step_poweroff
step_poweroff_job_check
step "done"
