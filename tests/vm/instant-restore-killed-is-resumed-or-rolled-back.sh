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
#    the disk paths, the VM writer's state directory);
#  - over the VM itself, running (--replace, R15), killed during the move:
#    `--rollback` defines the replaced VM again exactly as it was (its
#    inactive XML), on its own images, byte for byte, and starts it again.
# The repository is encrypted (R28, issue 13): restore --instant gets the
# passphrase on a file descriptor and hands the unlocked key to each export
# on an inherited pipe; the key (read back from the paper key) is in no
# environment or command line of the exports, which keep serving after
# vmshadow was killed, nor in the instant-recovery directory's files.
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
vmw_encrypted_repo "$VMW_REPO"
VMSHADOW_PASSPHRASE=$VMW_PASSPHRASE vmw_backup "$dom" || lab_fail "backup of stopped $dom failed: $(vmw_backup_failure)"
bid=$VMW_BID
rst_forget "$dom"
cp "$LAB_WORK/$dom-vda.expected" "$LAB_WORK/vda.backup"
cp "$LAB_WORK/$dom-vdb.expected" "$LAB_WORK/vdb.backup"
lab_ok "offline backup $bid of $dom into an encrypted repository; VM and images deleted"
# restore --instant with the passphrase on descriptor 3 only.
printf '%s\n' "$VMW_PASSPHRASE" >"$LAB_WORK/passphrase"
chmod 600 "$LAB_WORK/passphrase"

# kill_during_move — SIGKILL the restore while libvirt's copy job of vda
# runs.
kill_during_move() {
    inst_wait_copy "$dom" vda
    kill -KILL "$INST_PID"
    wait "$INST_PID" 2>/dev/null || true
}

# ---- killed, then resumed
inst_start "$bid" --bandwidth 1 --passphrase-fd 3 3<"$LAB_WORK/passphrase"
lab__undo_push domain "$dom"
inst_wait_running "$dom"
kill_during_move
sleep 1
lab_assert_eq "state of $dom after vmshadow was killed" "$(virsh -q domstate "$dom" | head -n 1)" running
servers=$(inst_leftovers | sed -n 's/^nbdkit \([0-9]*\):.*/\1/p' | tr '\n' ' ')
[ -n "$servers" ] || lab_fail "the exports stopped with vmshadow"
[[ " $(tr '\0' ' ' <"/proc/${servers%% *}/cmdline") " == *" keyfd=3 "* ]] ||
    lab_fail "the export was not given its key on a descriptor"
vmw_assert_key_hidden "the exports of the encrypted repository" $servers
if grep -rqi "$VMW_KEY_SECRET" "$VMSHADOW_INSTANT_DIR" "$INST_OUT" "$INST_ERR"; then
    lab_fail "the key was written to a file of the instant restore"
fi
lab_wait_agent "$dom"
inst_guest_write "$dom" vda 10 41
inst_guest_write "$dom" vdb 9 42
lab_ok "vmshadow killed during the move: $dom runs on, its exports (keyfd=3; the key in no environment, command line or file) serve, the guest wrote to vda and vdb"

vmw_vmshadow restore --resume "$dom" ||
    lab_fail "restore --resume exited $?: $(cat "$VMW_ERR" | tail -n 5)"
grep -q "VM \"$dom\": runs from its final disks" "$VMW_OUT" || lab_fail "resume said: $(cat "$VMW_OUT")"
inst_assert_final "$dom"
inst_guest_check "$dom" vda 10 41
virsh -q destroy "$dom" >/dev/null
inst_assert_images "$dom"
lab_ok "restore --resume finished the move: nothing of the backup left; images = backup + the guest's writes"

# ---- over the running VM (--replace, R15), killed, then rolled back: the
# replaced VM is defined again as it was, on its own images (kept aside
# when the move began), and runs again
virsh -q start "$dom" >/dev/null || lab_fail "$dom does not start"
uuid=$(virsh domuuid "$dom")
xml_before=$(virsh dumpxml --inactive --security-info "$dom")
sums=$(md5sum "$vda" "$vdb")
before=$(rst_host_state "$dom" -- "$vda" "$vdb"; find "$VMSHADOW_VM_STATE_DIR" | sort)
inst_start "$bid" --replace --bandwidth 1 --passphrase-fd 3 3<"$LAB_WORK/passphrase"
for _ in $(seq 600); do
    grep -q "protocol='nbd'" <<<"$(virsh dumpxml "$dom" 2>/dev/null)" && break
    kill -0 "$INST_PID" 2>/dev/null || lab_fail "restore --instant --replace ended before $dom ran from the backup: $(tail -n 5 "$INST_ERR")"
    sleep 0.1
done
inst_wait_running "$dom"
kill_during_move
[ -f "$VMSHADOW_INSTANT_DIR/$uuid/replaced.xml" ] || lab_fail "no replaced.xml kept for the rollback"
ls "$vda".vmshadow-instant-* >/dev/null 2>&1 || lab_fail "the replaced VM's image $vda was not kept aside when the move began"
vmw_vmshadow restore --rollback "$dom" ||
    lab_fail "restore --rollback after --replace exited $?: $(tail -n 5 "$VMW_ERR")"
lab_assert_eq "the replaced VM's definition after the rollback" "$(virsh dumpxml --inactive --security-info "$dom")" "$xml_before"
lab_assert_eq "the replaced VM's images after the rollback" "$(md5sum "$vda" "$vdb")" "$sums"
after=$(rst_host_state "$dom" -- "$vda" "$vdb"; find "$VMSHADOW_VM_STATE_DIR" | sort)
lab_assert_eq "the host after rolling back --replace" "$after" "$before"
left=$(inst_leftovers)
[ -z "$left" ] || lab_fail "left behind after rolling back --replace: $left"
lab_ok "restore --instant --replace over running $dom, killed during the move, rolled back: $dom defined as before, running, on its own images (byte for byte); nothing left"

# ---- killed, then rolled back
rst_forget "$dom"
head -c 1048576 /dev/urandom >"$vda"
old=$(md5sum <"$vda")
before=$(rst_host_state "$dom" -- "$vda" "$vdb"; find "$VMSHADOW_VM_STATE_DIR" | sort)
inst_start "$bid" --bandwidth 1 --passphrase-fd 3 3<"$LAB_WORK/passphrase"
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
