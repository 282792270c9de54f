#!/bin/bash
# restore-brings-back-a-deleted-running-vm (issue 6; R14-R18): a running VM
# with a busy writer on its ext4 data disk (qcow2) and a known pattern on a
# raw disk is backed up online, then destroyed, undefined and its disk
# images deleted.  `vmshadow restore BACKUP` brings it back from the
# stored documents alone: defined again with the same UUID and name, stopped
# (an online backup comes back stopped), each disk in its original format,
# the ext4 clean on its own (e2fsck -fn).  Started, its pattern checks and
# its busy-writer records are whole.  Over the restored VM, now running
# (issue 20): `--dry-run --replace` prints every change (turn off,
# undefine, write over each disk, define) and changes nothing; a restore
# without --replace refuses, naming the VM and --replace, and changes
# nothing; with --replace (R15: turned off and undefined first) it succeeds.
. "$(dirname "$0")/lib.sh"
lab_init
. "$LAB_TESTS_DIR/vm-writer-lib.sh"
. "$LAB_TESTS_DIR/restore-lib.sh"
vmw_init

lab_vm_create --data-disk 64M --disk raw:16M --memory 160 --name rs
dom=$LAB_DOM
uuid=$(virsh domuuid "$dom")
lab_wait_agent "$dom"
lab_guest_run "$dom" 'vmslab-pattern write /dev/vdb 41 0 4194304' >/dev/null
lab_guest_run "$dom" 'vmslab-writer start /data/records' >/dev/null
vmw_wait_records "$dom" /data/records 20 >/dev/null
vmw_backup "$dom" || lab_fail "vmshadow backup $dom failed: $(vmw_backup_failure)"
bid=$VMW_BID
lab_guest_run "$dom" 'vmslab-writer stop' >/dev/null
lab_ok "backup $bid of running $dom"

qcow=${LAB_DISK_FILE[$dom/vda]} raw=${LAB_DISK_FILE[$dom/vdb]}
rst_forget "$dom"
[ ! -e "$qcow" ] && [ ! -e "$raw" ] || lab_fail "disks not deleted"
virsh -q dominfo "$dom" >/dev/null 2>&1 && lab_fail "$dom still defined"
lab_ok "$dom destroyed, undefined, disks deleted"

t0=$(date +%s.%N)
rst_restore "$bid" || lab_fail "vmshadow restore $bid failed: $(cat "$RST_ERR" "$RST_OUT" | tail -n 20)"
lab_ok "vmshadow restore $bid in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s"
lab_assert_eq "restore status of $dom" "$(rst_vm_field "$dom" status)" restored
lab_assert_eq "UUID of the restored VM" "$(virsh domuuid "$dom")" "$uuid"
lab_assert_eq "state after restore (online backup)" "$(virsh domstate "$dom")" "shut off"
lab_assert_eq "format of vda" "$(qemu-img info --output=json "$qcow" | jq -r .format)" qcow2
lab_assert_eq "format of vdb" "$(qemu-img info --output=json -f raw "$raw" | jq -r .format)" raw
lab_assert_eq "size of vdb" "$(stat -c %s "$raw")" $((16 * 1024 * 1024))
lab_assert_eq "virtual size of vda" "$(qemu-img info --output=json "$qcow" | jq -r '.["virtual-size"]')" $((64 * 1024 * 1024))
lab_ok "defined again with UUID $uuid, shut off, vda qcow2 64 MiB, vdb raw 16 MiB"

qemu-img convert -f qcow2 -O raw "$qcow" "$LAB_WORK/vda.img"
vmw_fsck_clean "$LAB_WORK/vda.img" "restored data disk"
rm -f "$LAB_WORK/vda.img"
lab_ok "restored data disk: e2fsck -fn clean, no journal replay"

virsh -q start "$dom" >/dev/null || lab_fail "restored $dom does not start"
lab_wait_agent "$dom"
lab_guest_run "$dom" 'vmslab-pattern check /dev/vdb 41 0 4194304' >/dev/null
check=$(lab_guest_run "$dom" 'vmslab-records-check /data/records') ||
    lab_fail "records after restore: $check"
lab_ok "restored $dom starts; pattern checks; records whole ($check)"

# Again, over the running restored VM (issue 20): planned, refused, replaced.
fingerprint() {   # the VM's UUID, state and start (its QEMU pid), each image's inode
    echo "$(virsh domuuid "$dom") $(virsh domstate "$dom") $(cat "/run/libvirt/qemu/$dom.pid" 2>/dev/null)"
    stat -c '%n %i' "$qcow" "$raw"
}
before=$(fingerprint)
rst_restore "$bid" --dry-run --replace || lab_fail "restore --dry-run failed: $(cat "$RST_ERR")"
lab_assert_eq "dry run: JSON dry_run" "$(jq -r .dry_run "$RST_OUT")" true
lab_assert_eq "dry run: status" "$(rst_vm_field "$dom" status)" planned
plan=$(jq -r '.vms[0].changes[] | "\(.action) \(.object)"' "$RST_OUT")
for want in "turn-off vm \"$dom\" ($uuid)" "undefine vm \"$dom\" ($uuid)" \
            "overwrite $qcow" "overwrite $raw" "define vm \"$dom\" ($uuid)"; do
    grep -qxF "$want" <<<"$plan" || lab_fail "dry run: the plan lacks '$want': $plan"
done
vmw_vmshadow restore --dry-run --replace "$bid" || lab_fail "text dry run failed: $(cat "$VMW_ERR")"
grep -q "dry run: nothing was changed" "$VMW_OUT" && grep -q "turn-off *vm \"$dom\"" "$VMW_OUT" ||
    lab_fail "text dry run: $(cat "$VMW_OUT")"
lab_assert_eq "after the dry runs: $dom, its process and images" "$(fingerprint)" "$before"
lab_ok "--dry-run --replace lists every change ($(wc -l <<<"$plan") changes) and changes nothing"

rc=0
rst_restore "$bid" || rc=$?
lab_assert_eq "restore over an existing VM without --replace: exit" "$rc" 1
grep -q "vm \"$dom\" ($uuid) exists on this host (running).*--replace.*--name NEW.*nothing was changed" "$RST_ERR" ||
    lab_fail "refusal message: $(cat "$RST_ERR")"
lab_assert_eq "after the refusal: $dom, its process and images" "$(fingerprint)" "$before"
lab_ok "without --replace: refused, nothing changed: $(head -c 160 "$RST_ERR")…"

rst_restore "$bid" --replace || lab_fail "restore --replace failed: $(cat "$RST_ERR" | tail -n 5)"
lab_assert_eq "state after the restore with --replace" "$(virsh domstate "$dom")" "shut off"
jq -r '.vms[0].changes[].action' "$RST_OUT" | grep -qx turn-off || lab_fail "the report does not say the VM was turned off"
lab_ok "with --replace: the running VM is turned off, restored, defined; the report says so"
