#!/bin/bash
# restore-name-makes-a-copy-beside-the-running-original (issue 20): a
# running VM with a bridged interface and an ext4 data disk is backed up
# online; then the original's data changes.  `vmshadow restore --vm VM
# --name COPY --start` (no --replace: nothing is replaced) makes a copy:
#  - the original is untouched: same UUID, the same QEMU process still
#    running, the same boot and its uptime going on, its disk image byte for
#    byte the same (md5, taken with the original's filesystems frozen so that
#    only vmshadow could change it), its MAC unchanged;
#  - the copy has a new UUID, a new MAC, its own disk file (COPY-vda.qcow2)
#    and serial log, boots, its agent answers, and it holds the backed-up
#    data, not what the original wrote after the backup.
# A second copy under the same name is refused (the name exists).
. "$(dirname "$0")/lib.sh"
lab_init
. "$LAB_TESTS_DIR/vm-writer-lib.sh"
. "$LAB_TESTS_DIR/restore-lib.sh"
vmw_init

lab_vm_create --data-disk 32M --nic bridge --memory 160 --name rsc
dom=$LAB_DOM
img=${LAB_DISK_FILE[$dom/vda]}
uuid=$(virsh domuuid "$dom")
mac=$(virsh -q domiflist "$dom" | awk '{ print $5 }')
lab_wait_agent "$dom"
lab_guest_run "$dom" 'echo backed-up > /data/file; sync' >/dev/null
vmw_backup "$dom" || lab_fail "backup failed: $(vmw_backup_failure)"
bid=$VMW_BID
lab_guest_run "$dom" 'echo after-the-backup > /data/file; sync' >/dev/null
boot_id=$(lab_guest_run "$dom" 'cat /proc/sys/kernel/random/boot_id')
up0=$(lab_guest_run "$dom" 'cut -d" " -f1 /proc/uptime')
pid=$(cat "/run/libvirt/qemu/$dom.pid")
lab_ok "online backup $bid of running $dom ($uuid, MAC $mac); its data changed since"

copy=$dom-copy
lab__undo_push domain "$copy"
rst_restore "$bid" --vm "$dom" --name "$copy" --dry-run || lab_fail "dry run of the copy failed: $(cat "$RST_ERR")"
jq -r '.vms[0].changes[] | select(.action == "rewrite") | .detail' "$RST_OUT" | grep -q "new MAC address (was $mac)" ||
    lab_fail "the dry run does not name the copy's new MAC: $(jq -c .vms[0].changes "$RST_OUT")"
virsh -q dominfo "$copy" >/dev/null 2>&1 && lab_fail "the dry run defined $copy"
[ ! -e "$(dirname "$img")/$copy-vda.qcow2" ] || lab_fail "the dry run wrote the copy's disk"
lab_ok "dry run of the copy: $(jq '.vms[0].changes | length' "$RST_OUT") changes (new UUID, MAC, files), nothing made"
virsh -q domfsfreeze "$dom" >/dev/null || lab_fail "cannot freeze $dom"
sum0=$(md5sum <"$img")
rc=0
rst_restore "$bid" --vm "$dom" --name "$copy" --start || rc=$?
sum1=$(md5sum <"$img")
virsh -q domfsthaw "$dom" >/dev/null || lab_fail "cannot thaw $dom"
[ $rc -eq 0 ] || lab_fail "restore --name failed ($rc): $(tail -n 20 "$RST_ERR" "$RST_OUT")"
lab_assert_eq "status of the copy" "$(rst_vm_field "$copy" status)" restored
jq -r '.vms[0].changes[].action' "$RST_OUT" | grep -qx untouched ||
    lab_fail "the report does not say the original is untouched: $(jq -c .vms[0].changes "$RST_OUT")"
if jq -r '.vms[0].changes[].action' "$RST_OUT" | grep -qxE 'turn-off|undefine|overwrite'; then
    lab_fail "the plan of a copy turns off or overwrites something: $(jq -c .vms[0].changes "$RST_OUT")"
fi

# The original.
lab_assert_eq "original: UUID" "$(virsh domuuid "$dom")" "$uuid"
lab_assert_eq "original: state" "$(virsh domstate "$dom")" running
lab_assert_eq "original: QEMU process" "$(cat "/run/libvirt/qemu/$dom.pid")" "$pid"
lab_assert_eq "original: disk image (md5)" "$sum1" "$sum0"
lab_assert_eq "original: disk path" "$(virsh -q domblklist "$dom" | awk '$1 == "vda" { print $2 }')" "$img"
lab_assert_eq "original: MAC" "$(virsh -q domiflist "$dom" | awk '{ print $5 }')" "$mac"
lab_assert_eq "original: boot id" "$(lab_guest_run "$dom" 'cat /proc/sys/kernel/random/boot_id')" "$boot_id"
up1=$(lab_guest_run "$dom" 'cut -d" " -f1 /proc/uptime')
awk -v a="$up0" -v b="$up1" 'BEGIN { exit !(b > a) }' || lab_fail "original: uptime went from $up0 to $up1"
lab_assert_eq "original: its data" "$(lab_guest_run "$dom" 'cat /data/file')" after-the-backup
lab_ok "original untouched: UUID, process $pid, boot, uptime $up0 -> $up1 s, image md5 ${sum0:0:12}, MAC, data"

# The copy.
cuuid=$(virsh domuuid "$copy")
cmac=$(virsh -q domiflist "$copy" | awk '{ print $5 }')
cimg=$(virsh -q domblklist "$copy" | awk '$1 == "vda" { print $2 }')
[ -n "$cuuid" ] && [ "$cuuid" != "$uuid" ] || lab_fail "copy UUID '$cuuid' (original $uuid)"
[ -n "$cmac" ] && [ "$cmac" != "$mac" ] || lab_fail "copy MAC '$cmac' (original $mac)"
lab_assert_eq "copy: disk file" "$cimg" "$(dirname "$img")/$copy-vda.qcow2"
jq -r '.vms[0].changes[] | select(.action == "rewrite") | .detail' "$RST_OUT" | grep -q "interface $cmac: new MAC address (was $mac)" ||
    lab_fail "the plan's MAC is not the copy's $cmac: $(jq -c .vms[0].changes "$RST_OUT")"
virsh -q dumpxml "$copy" | grep -F "$dom.console" | grep -vqF "$copy.console" &&
    lab_fail "the copy writes the original's serial log"
lab_assert_eq "copy: state" "$(virsh domstate "$copy")" running
lab_wait_agent "$copy"
lab_assert_eq "copy: its data (the backup's)" "$(lab_guest_run "$copy" 'cat /data/file')" backed-up
lab_ok "copy $copy: UUID $cuuid, MAC $cmac, disk $cimg; boots, agent answers, holds the backed-up data"

rc=0
rst_restore "$bid" --vm "$dom" --name "$copy" || rc=$?
lab_assert_eq "a second copy under the same name: exit" "$rc" 1
grep -q "a VM of that name exists.*another --name.*nothing was changed" "$RST_ERR" ||
    lab_fail "message: $(cat "$RST_ERR")"
lab_assert_eq "the first copy still runs" "$(virsh domstate "$copy")" running
lab_ok "a copy under a name that exists is refused: $(head -c 160 "$RST_ERR")"
