#!/bin/bash
# instant-restore-runs-the-vm-at-once-and-moves-its-disks (issue 16; R25,
# R15-R21): a VM with a qcow2 and a raw disk full of random data is backed
# up, then destroyed, undefined and its images deleted.  `vmshadow restore
# --instant` (the mover held to 1 MiB/s so the move takes a while) defines
# and starts it from the backup: its guest agent answers while the command
# still runs (the times from the command's start are logged; the move
# begins after the agent answered, as the report's agent_ms says), and the guest
# writes 1 MiB into each disk meanwhile (vda's copy runs at 1 MiB/s until
# then, vdb's has not begun; then the test lets them go at full speed).  When the command ends: the VM runs
# from its final images at their original paths (qcow2 and raw, as backed
# up), its live and persistent definitions name no overlay or NBD socket,
# no nbdkit serves and the instant-recovery directory is empty; turned off,
# each image is byte for byte what the backup held with the guest's writes
# on top; started again it runs and its guest reads its writes back.
. "$(dirname "$0")/lib.sh"
lab_init
. "$LAB_TESTS_DIR/vm-writer-lib.sh"
. "$LAB_TESTS_DIR/restore-lib.sh"
vmw_init
. "$LAB_TESTS_DIR/instant-lib.sh"
inst_init

# vda 256 MiB (sparse): copied at 1 MiB/s (holes count), it outlasts a
# TCG boot on a loaded machine, until the test lets it go.
lab_vm_create --disk qcow2:256M --disk raw:16M --memory 160 --name ir --no-start
dom=$LAB_DOM
uuid=$(virsh domuuid "$dom")
inst_fill_disks "$dom"
vmw_backup "$dom" || lab_fail "backup of stopped $dom failed: $(vmw_backup_failure)"
bid=$VMW_BID
rst_forget "$dom"
lab_ok "offline backup $bid of $dom (vda qcow2, vdb raw: 6 MiB random each); VM and images deleted"

t0=$(date +%s.%N)
inst_start "$bid" --bandwidth 1
lab__undo_push domain "$dom"
inst_wait_running "$dom"
run_s=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
# vda is written with its mirror running, vdb before its copy began.
inst_wait_copy "$dom" vda
lab_wait_agent "$dom"
agent_s=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
inst_guest_write "$dom" vda 3 31
inst_guest_write "$dom" vdb 9 32
kill -0 "$INST_PID" 2>/dev/null || lab_fail "the restore ended before the guest's writes: they were not made during the move"
inst_release_move "$dom" vda
inst_wait_copy "$dom" vdb
inst_release_move "$dom" vdb
lab_ok "restore --instant: $dom ran $run_s s and its agent answered $agent_s s after the command started; the guest wrote 1 MiB to vda (being copied) and vdb (not yet) during the move"

rc=0
wait "$INST_PID" || rc=$?
[ $rc -eq 0 ] || lab_fail "restore --instant exited $rc: $(tail -n 5 "$INST_ERR") $(head -c 600 "$INST_OUT")"
lab_assert_eq "report: moved" "$(jq -r .instant.moved "$INST_OUT")" true
# The guest booted alone: the move began once its agent answered.
jq -e '.instant.agent_ms > .instant.running_ms' "$INST_OUT" >/dev/null ||
    lab_fail "report: no agent time after the VM ran (the move did not wait for the guest agent): $(jq -c .instant "$INST_OUT")"
lab_assert_eq "report: status of $dom" "$(jq -r '.vms[0].status' "$INST_OUT")" restored
lab_assert_eq "UUID" "$(virsh domuuid "$dom")" "$uuid"
lab_assert_eq "state" "$(virsh domstate "$dom")" running
inst_assert_final "$dom"
lab_ok "restore --instant ended (ran after $(jq -r .instant.running_ms "$INST_OUT") ms, agent after $(jq -r .instant.agent_ms "$INST_OUT") ms, then moved in $(jq -r .instant.move_ms "$INST_OUT") ms): $dom runs from its own images, nothing of the backup is used"

virsh -q destroy "$dom" >/dev/null
inst_assert_images "$dom"
lab_ok "turned off: vda (qcow2) and vdb (raw) are the backup plus the guest's writes, byte for byte"

virsh -q start "$dom" >/dev/null || lab_fail "$dom does not start again"
lab_wait_agent "$dom"
inst_guest_check "$dom" vda 3 31
inst_guest_check "$dom" vdb 9 32
lab_ok "started again from its final images: the guest reads its writes back"
