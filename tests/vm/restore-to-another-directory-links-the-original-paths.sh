#!/bin/bash
# restore-to-another-directory-links-the-original-paths (issue 6; R19, R20):
# a stopped VM with an ext4 data disk (qcow2) and a raw disk is backed up,
# undefined, its data disk deleted and, at the raw disk's path, a file that
# is not the VM's put instead.  `vmshadow restore --to DIR --start` writes
# both disks under DIR; the domain XML points at DIR (R20); the original
# data disk path is a symbolic link to the restored file (R19); the foreign
# file at the other path is left as it was, and the report says so; the VM
# starts and reads its data.
. "$(dirname "$0")/lib.sh"
lab_init
. "$LAB_TESTS_DIR/vm-writer-lib.sh"
. "$LAB_TESTS_DIR/restore-lib.sh"
vmw_init

lab_vm_create --data-disk 64M --disk raw:8M --memory 160 --name rsto --no-start
dom=$LAB_DOM
qcow=${LAB_DISK_FILE[$dom/vda]} raw=${LAB_DISK_FILE[$dom/vdb]}
sh "$LAB_DIR/guest/bin/vmslab-pattern" write "$raw" 7 0 1048576 >/dev/null
vmw_backup "$dom" || lab_fail "backup failed: $(vmw_backup_failure)"
bid=$VMW_BID
rst_forget "$dom"
echo "not the VM's file" >"$raw"
lab_ok "backup $bid; $dom undefined, data disk deleted, a foreign file at $raw"

dir=$LAB_WORK/elsewhere
rst_restore "$bid" --to "$dir" --start ||
    lab_fail "restore --to failed: $(tail -n 20 "$RST_ERR" "$RST_OUT")"
lab_assert_eq "status" "$(rst_vm_field "$dom" status)" restored
lab_assert_eq "state" "$(virsh domstate "$dom")" running


got=$(virsh -q domblklist "$dom" | awk '{ print $2 }' | sort | tr '\n' ' ')
want="$dir/$(basename "$qcow") $dir/$(basename "$raw") "
want=$(echo $want | tr ' ' '\n' | sort | tr '\n' ' ')
lab_assert_eq "disk paths in the domain XML" "$got" "$want"
lab_ok "XML disk paths point into $dir (R20)"

[ -L "$qcow" ] || lab_fail "no symbolic link at $qcow"
lab_assert_eq "link at $qcow" "$(readlink "$qcow")" "$dir/$(basename "$qcow")"
[ ! -L "$raw" ] || lab_fail "the foreign file at $raw was replaced by a link"
lab_assert_eq "foreign file" "$(cat "$raw")" "not the VM's file"
jq -r '.vms[0].notes[]' "$RST_OUT" | grep -F "no link at $raw" >/dev/null ||
    lab_fail "the report does not say $raw was left alone: $(jq -c .vms[0].notes "$RST_OUT")"
lab_ok "link at $qcow -> $dir; foreign file at $raw left as it was, and the report says so (R19)"

lab_wait_agent "$dom"
lab_guest_run "$dom" 'vmslab-pattern check /dev/vdb 7 0 1048576' >/dev/null
lab_guest_run "$dom" "grep -q ' /data ' /proc/mounts" >/dev/null
lab_ok "restored VM runs from $dir: pattern on vdb checks, /data mounted"
