#!/bin/bash
# restore-to-a-directory-never-overwrites-or-deletes-disks (issue 20; R19,
# R20): a stopped VM with an ext4 data disk is backed up; a file is put in
# the target directory DIR under the disk's file name.  With --to DIR
# --replace, nothing is ever overwritten or deleted (md5 of every file):
#  - --existing refuse (the default): the restore refuses naming the file
#    and --existing; the VM and every file are as they were;
#  - --existing rename: the file in DIR is kept aside (PATH.vmshadow-STAMP,
#    same content), the disk is restored at DIR/NAME, and the VM's own disk
#    at its original path is still there, unchanged (no link replaces it);
#  - --existing keep: the file at DIR/NAME (the disk restored just before)
#    stays as it is; the disk is restored beside it (NAME.restored-STAMP.EXT)
#    and the domain XML points there; the VM starts and reads its data.
. "$(dirname "$0")/lib.sh"
lab_init
. "$LAB_TESTS_DIR/vm-writer-lib.sh"
. "$LAB_TESTS_DIR/restore-lib.sh"
vmw_init

lab_vm_create --data-disk 32M --memory 160 --name rsx --no-start
dom=$LAB_DOM
img=${LAB_DISK_FILE[$dom/vda]}
base=$(basename "$img")
vmw_backup "$dom" || lab_fail "backup failed: $(vmw_backup_failure)"
bid=$VMW_BID
dir=$LAB_WORK/elsewhere
mkdir -p "$dir"
echo "someone else's disk" >"$dir/$base"
sum_img=$(md5sum <"$img") sum_other=$(md5sum <"$dir/$base")
lab_ok "backup $bid of stopped $dom; a foreign file at $dir/$base"

before=$(rst_host_state "$dom" -- "$img" "$dir/$base"; md5sum "$img" "$dir/$base")
rc=0
rst_restore "$bid" --to "$dir" --replace || rc=$?
lab_assert_eq "--existing refuse (default): exit" "$rc" 1
grep -q "$dir/$base exists already; --to never writes over a file.*--existing rename.*--existing keep.*nothing was changed" "$RST_ERR" ||
    lab_fail "message: $(cat "$RST_ERR")"
lab_assert_eq "after the refusal" "$(rst_host_state "$dom" -- "$img" "$dir/$base"; md5sum "$img" "$dir/$base")" "$before"
lab_ok "refused, nothing changed: $(head -c 200 "$RST_ERR")…"

rst_restore "$bid" --to "$dir" --replace --existing rename ||
    lab_fail "--existing rename failed: $(tail -n 20 "$RST_ERR" "$RST_OUT")"
aside=$(ls "$dir/$base".vmshadow-* 2>/dev/null)
[ -n "$aside" ] && [ "$(wc -l <<<"$aside")" = 1 ] || lab_fail "no file kept aside in $dir: $(ls "$dir")"
lab_assert_eq "the file kept aside" "$(md5sum <"$aside")" "$sum_other"
lab_assert_eq "the VM's disk at its original path" "$(md5sum <"$img")" "$sum_img"
[ -f "$img" ] && [ ! -L "$img" ] || lab_fail "$img was replaced"
lab_assert_eq "disk in the XML" "$(virsh -q domblklist "$dom" | awk '$1 == "vda" { print $2 }')" "$dir/$base"
jq -r '.vms[0].notes[]' "$RST_OUT" | grep -qF "no link at $img" ||
    lab_fail "the report does not say $img was left: $(jq -c .vms[0].notes "$RST_OUT")"
sum_restored=$(md5sum <"$dir/$base")
lab_ok "--existing rename: kept aside as $aside (same content), restored at $dir/$base, $img unchanged"

rst_restore "$bid" --to "$dir" --replace --existing keep ||
    lab_fail "--existing keep failed: $(tail -n 20 "$RST_ERR" "$RST_OUT")"
lab_assert_eq "the file left at $dir/$base" "$(md5sum <"$dir/$base")" "$sum_restored"
lab_assert_eq "the file kept aside before" "$(md5sum <"$aside")" "$sum_other"
lab_assert_eq "the VM's disk at its original path" "$(md5sum <"$img")" "$sum_img"
new=$(virsh -q domblklist "$dom" | awk '$1 == "vda" { print $2 }')
[[ $new == "$dir/${base%.qcow2}.restored-"*.qcow2 ]] || lab_fail "disk in the XML: $new"
jq -r '.vms[0].changes[] | select(.action == "keep") | .object' "$RST_OUT" | grep -qxF "$dir/$base" ||
    lab_fail "the plan does not say $dir/$base is kept: $(jq -c .vms[0].changes "$RST_OUT")"
virsh -q start "$dom" >/dev/null || lab_fail "cannot start $dom"
lab_wait_agent "$dom"
lab_guest_run "$dom" "grep -q ' /data ' /proc/mounts" >/dev/null || lab_fail "/data not mounted"
lab_ok "--existing keep: $dir/$base left as it was, restored beside it at $new; the VM runs from it"
