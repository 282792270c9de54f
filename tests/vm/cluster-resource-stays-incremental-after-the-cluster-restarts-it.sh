#!/bin/bash
# cluster-resource-stays-incremental-after-the-cluster-restarts-it
# (issue 18, R22).  A VirtualDomain resource with two qcow2 disks is backed
# up (full, checkpoint cp1); the cluster stops it (the transient domain and
# libvirt's checkpoint metadata are gone) and starts it again from its
# config; meanwhile the bitmap of vdb is removed from its image (a disk
# whose bitmap is gone).  The guest writes 2 blocks of 64 KiB to vda and one
# to vdb.  The next backup redefines cp1 from the repository's catalogue
# (libvirt had forgotten it): it is incremental, vda reads only its changed
# extents, vdb alone is read in full with the reason, and the extracted vda
# equals the guest's disk.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cluster-lib.sh"
lab_init
. "$(dirname "$0")/vm-writer-lib.sh"
vmw_init
cl_init
export VMSHADOW_CBT_SAMPLE=off
KiB=1024 MiB=$((1024 * 1024))

lab_vm_create --no-start --disk qcow2:32M --disk qcow2:32M --memory 128 --name clinc
vm=$LAB_DOM
vda=${LAB_DISK_FILE[$vm/vda]} vdb=${LAB_DISK_FILE[$vm/vdb]}
cl_resource_create "$vm"
uuid=$(virsh -q domuuid "$vm")
lab_wait_agent "$vm"
lab_guest_run "$vm" "vmslab-pattern write /dev/vda seedA $((1 * MiB)) $((256 * KiB)) >/dev/null"

vmw_backup "$vm" || lab_fail "first backup failed: $(vmw_backup_failure)"
vmw_show "$VMW_BID"
lab_assert_eq "type of the first backup" "$(vmw_attr "$uuid" backup_type)" full
cp1=$(vmw_attr "$uuid" checkpoint)
[[ $cp1 == vmshadow-* ]] || lab_fail "no vmshadow checkpoint recorded: '$cp1'"
lab_ok "first backup: full, method $(vmw_attr "$uuid" method), checkpoint $cp1"

crm_resource --resource "$vm" --meta --set-parameter target-role --parameter-value Stopped >/dev/null
cl_wait_stopped "$vm"
virsh -q domstate "$vm" >/dev/null 2>&1 && lab_fail "$vm is still defined after the cluster stopped it"
qemu-img bitmap --remove "$vdb" "$cp1" || lab_fail "cannot remove bitmap $cp1 from $vdb"
crm_resource --resource "$vm" --meta --delete-parameter target-role >/dev/null
cl_wait_started "$vm"
lab_assert_eq "libvirt's checkpoints of $vm after the cluster restarted it" "$(vmw_checkpoints "$vm")" ""
lab_ok "the cluster stopped $vm (domain gone) and started it again from its config: libvirt knows no checkpoint; vdb's bitmap removed meanwhile"

lab_wait_agent "$vm"
lab_guest_run "$vm" "vmslab-pattern write /dev/vda seedB $((9 * MiB)) 65536 >/dev/null; vmslab-pattern write /dev/vda seedB $((20 * MiB)) 65536 >/dev/null; vmslab-pattern write /dev/vdb seedB $((5 * MiB)) 65536 >/dev/null; sync"

vmw_backup "$vm" || lab_fail "second backup failed: $(vmw_backup_failure)"
b2=$VMW_BID
vmw_show "$b2"
[ "$(vmw_attr "$uuid" backup_type)" = incremental ] ||
    lab_fail "the backup after the restart is $(vmw_attr "$uuid" backup_type): $(vmw_attr "$uuid" incremental_reason)"
lab_assert_eq "parent checkpoint" "$(vmw_attr "$uuid" parent_checkpoint)" "$cp1"
[ -n "$(vmw_attr "$uuid" parent_redefined)" ] || lab_fail "parent_redefined is not set"
[ -z "$(vmw_attr "$uuid" "full_reason:$vda")" ] || lab_fail "vda was read in full: $(vmw_attr "$uuid" "full_reason:$vda")"
why_b=$(vmw_attr "$uuid" "full_reason:$vdb")
[ -n "$why_b" ] || lab_fail "vdb (bitmap removed) has no full_reason"
ra=$(vmw_file_field "$uuid" "$vda" bytes_read)
[ "$ra" -ge $((2 * 64 * KiB)) ] && [ "$ra" -le $((2 * 128 * KiB)) ] ||
    lab_fail "the incremental read $ra bytes of vda, want 128..256 KiB (2 blocks of 64 KiB written)"
lab_ok "backup after the restart: incremental from $cp1 (redefined: $(vmw_attr "$uuid" parent_redefined)); vda read $ra bytes of 32 MiB; vdb in full: $why_b"

rm -f "$LAB_WORK/vda.raw"
vmw_extract "$b2" "$uuid" "$vda" "$LAB_WORK/vda.raw" raw
want=$(lab_guest_run "$vm" 'sync; echo 3 >/proc/sys/vm/drop_caches; sha256sum /dev/vda' | cut -d' ' -f1)
lab_assert_eq "sha256 of vda in the incremental vs the guest's disk" "$(sha256sum "$LAB_WORK/vda.raw" | cut -d' ' -f1)" "$want"
lab_ok "the incremental's vda equals the guest's disk"
