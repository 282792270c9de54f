#!/bin/bash
# guard-undoes-a-capture-when-vmshadow-is-killed (issue 5; R12, R8, R10):
# `vmshadow backup` of an online VM whose guest freeze hook sleeps 6 s and
# of an agent-less VM (saved state: --fallback saved-state) is killed with SIGKILL while the first
# guest is being frozen and the second VM is paused with its backup job
# running.  Within 10 s of the kill, the guard process alone has
#   - thawed the guest (guest-fsfreeze-status "thawed"),
#   - resumed the paused VM (running, not rebooted),
#   - left no backup job and no checkpoint of the session on either VM,
#   - removed the state file and the backup jobs' scratch files (made by
#     vmshadow before the freeze, so libvirt does not remove them);
# and a VM it was not told about (paused by the test) is still paused.
. "$(dirname "$0")/lib.sh"
lab_init
. "$(dirname "$0")/vm-writer-lib.sh"
vmw_init

lab_vm_create --data-disk 32M --memory 128 --name grdfrz
frz=$LAB_DOM
lab_vm_create --data-disk 32M --memory 128 --no-agent --name grdss
ss=$LAB_DOM
lab_vm_create --disk qcow2:16M --memory 128 --no-agent --name grdother
other=$LAB_DOM
lab_wait_agent "$frz"
cat >"$LAB_WORK/50-slow" <<'EOF'
#!/bin/sh
# a slow guest writer: the freeze takes 6 s; it tells the host (console)
if [ "$1" = freeze ]; then
    echo "vmslab-test: slow freeze begins" >/dev/ttyS0
    sleep 6
fi
exit 0
EOF
lab_guest_put "$frz" "$LAB_WORK/50-slow" /etc/qemu/fsfreeze-hook.d/50-slow 755
for i in $(seq 100); do
    grep -q 'sysinit done' "$LAB_WORK/$ss.console" 2>/dev/null && break
    sleep 0.2
done
virsh -q suspend "$other" >/dev/null || lab_fail "virsh suspend $other failed"

"$VMSHADOW" --repo "$VMW_REPO" backup --fallback saved-state "$frz" "$ss" >"$LAB_WORK/backup.out" 2>"$LAB_WORK/backup.err" &
pid=$!
# Kill once the other guest's freeze hook has begun to sleep and the
# saved-state VM is paused (its state being saved or its job begun).
t0=$(date +%s)
until grep -q 'slow freeze begins' "$LAB_WORK/$frz.console" &&
        [ "$(virsh -q domstate "$ss")" = paused ]; do
    kill -0 $pid 2>/dev/null || lab_fail "vmshadow ended before the capture: $(tail -n 5 "$LAB_WORK/backup.err" | tr '\n' ' ')"
    [ $(($(date +%s) - t0)) -lt 60 ] || { kill -9 $pid; lab_fail "no freeze of $frz and pause of $ss within 60 s"; }
    sleep 0.05
done
kill -9 $pid
tkill=$(date +%s.%N)
wait $pid 2>/dev/null || true
lab_ok "vmshadow killed (SIGKILL) with $ss paused and $frz inside its 6 s freeze"

elapsed() { awk -v a="$tkill" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
vmshadow_checkpoints() { virsh -q checkpoint-list "$1" --name 2>/dev/null | grep '^vmshadow-' || true; }
undone() {
    [ "$(virsh -q domstate "$ss")" = running ] || return 1
    local d
    for d in "$frz" "$ss"; do
        virsh -q domjobinfo "$d" | grep 'Job type: *None' >/dev/null || return 1
        ! virsh -q backup-dumpxml "$d" >/dev/null 2>&1 || return 1
        [ -z "$(vmshadow_checkpoints "$d")" ] || return 1
    done
    [ "$(lab_agent "$frz" '{"execute":"guest-fsfreeze-status"}' 2>/dev/null)" = '"thawed"' ] || return 1
}
until undone; do
    if awk -v e="$(elapsed)" 'BEGIN { exit !(e > 10) }'; then
        lab_log "guard messages: $(grep guard "$LAB_WORK/backup.err" | tr '\n' ' ')"
        lab_fail "not undone within 10 s of the kill: $ss $(virsh -q domstate "$ss"); freeze $(lab_agent "$frz" '{"execute":"guest-fsfreeze-status"}' 2>&1); jobs $(virsh -q domjobinfo "$frz" | sed -n 1p) / $(virsh -q domjobinfo "$ss" | sed -n 1p); checkpoints $(vmshadow_checkpoints "$frz") $(vmshadow_checkpoints "$ss")"
    fi
    sleep 0.2
done
lab_ok "within $(elapsed) s of the kill: $frz thawed, $ss running, no job, no vmshadow checkpoint"

left=$(find "$LAB_WORK/state" -name memory.state)
[ -z "$left" ] || lab_fail "state file left: $left"
# The scratch files go once the guard has seen the job end (the same pass).
for i in $(seq 50); do
    left=$(find "$LAB_WORK/state" -path '*/scratch-*')
    [ -z "$left" ] && break
    sleep 0.1
done
[ -z "$left" ] || lab_fail "scratch files left 5 s after the undo: $left"
lab_ok "no scratch files left"
lab_assert_eq "state of $other (not in the backup)" "$(virsh -q domstate "$other")" paused
lab_assert_eq "boots of $ss" "$(grep -c 'sysinit done' "$LAB_WORK/$ss.console")" 1
grep -q 'vmshadow went away' "$LAB_WORK/backup.err" ||
    lab_fail "the guard did not say what it undid: $(tail -n 5 "$LAB_WORK/backup.err" | tr '\n' ' ')"
how="while its state was being saved"
grep -q "$(virsh domuuid "$ss" | sed -n 1p): backup job ended" "$LAB_WORK/backup.err" && how="under its backup job"
lab_ok "state file removed, $other left paused, $ss (killed $how) not rebooted; guard said: $(grep 'vmshadow-guard' "$LAB_WORK/backup.err" | sed 's/^vmshadow-guard\[[0-9]*\]: //' | tr '\n' ';')"
lab_agent "$frz" '{"execute":"guest-ping"}' >/dev/null || lab_fail "agent of $frz does not answer"
