#!/bin/bash
# instant-restore-killed-is-resumed-or-rolled-back (issue 16; R25): one
# offline backup of a VM (qcow2 and raw disks of random data), restored
# instantly twice, each time with vmshadow SIGKILLed in the middle of the
# move (libvirt's copy job running):
#  - the VM keeps running from the backup (its exports still serve, its
#    guest agent answers, the guest writes); `vmshadow restore --resume VM`
#    finishes the move: the VM runs from its final images, nothing of the
#    instant restore is left, and turned off its images are the backup plus
#    the guest's writes, byte for byte;
#  - with an old file at the VM's first disk path (a leftover of the
#    deleted VM), `vmshadow restore --rollback VM` removes the VM, its
#    overlays, exports and partly moved disks, and puts the old file back:
#    the host is as it was before the instant restore (domains, files at
#    the disk paths, the VM writer's state directory).
. "$(dirname "$0")/lib.sh"
lab_init
. "$LAB_TESTS_DIR/vm-writer-lib.sh"
. "$LAB_TESTS_DIR/restore-lib.sh"
vmw_init
. "$LAB_TESTS_DIR/instant-lib.sh"
inst_init

# vda 256 MiB (sparse): copied at 1 MiB/s (holes count), it outlasts a
# TCG boot on a loaded machine, until the test lets it go.
lab_vm_create --disk qcow2:256M --disk raw:16M --memory 160 --name ik --no-start
dom=$LAB_DOM
vda=${LAB_DISK_FILE[$dom/vda]} vdb=${LAB_DISK_FILE[$dom/vdb]}
inst_fill_disks "$dom"
vmw_backup "$dom" || lab_fail "backup of stopped $dom failed: $(vmw_backup_failure)"
bid=$VMW_BID
rst_forget "$dom"
cp "$LAB_WORK/$dom-vda.expected" "$LAB_WORK/vda.backup"
cp "$LAB_WORK/$dom-vdb.expected" "$LAB_WORK/vdb.backup"
lab_ok "offline backup $bid of $dom; VM and images deleted"

# kill_during_move — SIGKILL the restore while libvirt's copy job of vda
# runs.
kill_during_move() {
    inst_wait_copy "$dom" vda
    kill -KILL "$INST_PID"
    wait "$INST_PID" 2>/dev/null || true
}

# ---- killed, then resumed
inst_start "$bid" --bandwidth 1
lab__undo_push domain "$dom"
inst_wait_running "$dom"
kill_during_move
sleep 1
lab_assert_eq "state of $dom after vmshadow was killed" "$(virsh -q domstate "$dom" | head -n 1)" running
[ -n "$(inst_leftovers | grep '^nbdkit')" ] || lab_fail "the exports stopped with vmshadow"
lab_wait_agent "$dom"
inst_guest_write "$dom" vda 10 41
inst_guest_write "$dom" vdb 9 42
lab_ok "vmshadow killed during the move: $dom runs on, its exports serve, the guest wrote to vda and vdb"

vmw_vmshadow restore --resume "$dom" ||
    lab_fail "restore --resume exited $?: $(cat "$VMW_ERR" | tail -n 5)"
grep -q "VM \"$dom\": runs from its final disks" "$VMW_OUT" || lab_fail "resume said: $(cat "$VMW_OUT")"
inst_assert_final "$dom"
inst_guest_check "$dom" vda 10 41
virsh -q destroy "$dom" >/dev/null
inst_assert_images "$dom"
lab_ok "restore --resume finished the move: nothing of the backup left; images = backup + the guest's writes"

# ---- killed, then rolled back
rst_forget "$dom"
head -c 1048576 /dev/urandom >"$vda"
old=$(md5sum <"$vda")
before=$(rst_host_state "$dom" -- "$vda" "$vdb"; find "$VMSHADOW_VM_STATE_DIR" | sort)
inst_start "$bid" --bandwidth 1
inst_wait_running "$dom"
kill_during_move
vmw_vmshadow restore --rollback "$dom" ||
    lab_fail "restore --rollback exited $?: $(cat "$VMW_ERR" | tail -n 5)"
grep -q "VM \"$dom\": rolled back" "$VMW_OUT" || lab_fail "rollback said: $(cat "$VMW_OUT")"
after=$(rst_host_state "$dom" -- "$vda" "$vdb"; find "$VMSHADOW_VM_STATE_DIR" | sort)
lab_assert_eq "the host after the rollback" "$after" "$before"
lab_assert_eq "the old file at $vda" "$(md5sum <"$vda")" "$old"
left=$(inst_leftovers)
[ -z "$left" ] || lab_fail "left behind after the rollback: $left"
rc=0
vmw_vmshadow restore --rollback "$dom" || rc=$?
lab_assert_eq "a second rollback: exit" "$rc" 1
grep -q "no instant restore of VM \"$dom\" is pending" "$VMW_ERR" || lab_fail "second rollback said: $(cat "$VMW_ERR")"
lab_ok "restore --rollback: $dom gone, the old file back at $vda, no overlay, export or state left; nothing more to roll back"
