#!/bin/bash
# cluster-resource-restore-goes-through-the-cluster (issue 18, R22).
# A VirtualDomain resource's VM is backed up; its disk is then damaged
# (overwritten on the host).  `vmshadow restore --replace --to DIR` disables
# the resource (target-role Stopped) and cleans it before touching the VM,
# restores the disk into DIR, writes the restored XML (disk paths in DIR)
# into the agent's config file and enables the resource: the cluster runs
# the restored VM (its disk is the backed-up one, from DIR), with no
# failure and no recovery (fail-count 0, no failed operation), and the
# resource's meta attributes are exactly as before.  A copy restored with
# --name is no cluster resource (the CIB and the config file are untouched)
# and has no autostart.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cluster-lib.sh"
lab_init
. "$(dirname "$0")/vm-writer-lib.sh"
. "$(dirname "$0")/restore-lib.sh"
vmw_init
cl_init
MiB=$((1024 * 1024))

lab_vm_create --no-start --disk raw:8M --memory 128 --name clrst
vm=$LAB_DOM
vda=${LAB_DISK_FILE[$vm/vda]}
# (the guest never touches a disk without the data serial: the host may)
head -c $((2 * MiB)) /dev/urandom | dd of="$vda" bs=1M seek=1 conv=notrunc status=none
sum_a=$(sha256sum "$vda" | cut -d' ' -f1)
cl_resource_create "$vm"
uuid=$(virsh -q domuuid "$vm")
meta_before=$(cl_meta_xml "$vm")

vmw_backup --method crash-consistent "$vm" || lab_fail "backup failed: $(vmw_backup_failure)"
bid=$VMW_BID
head -c $MiB /dev/zero | dd of="$vda" bs=1M seek=1 conv=notrunc status=none
[ "$(sha256sum "$vda" | cut -d' ' -f1)" != "$sum_a" ] || lab_fail "the damage did not change $vda"
lab_ok "backup $bid of the running resource; then 1 MiB of its disk overwritten on the host"

dir=$LAB_WORK/restored
rst_restore "$bid" --replace --to "$dir" || lab_fail "restore failed: $(tail -n 3 "$RST_ERR" | tr '\n' ' ')"
notes=$(rst_vm_field "$vm" notes)
grep -q "cluster resource $vm disabled (target-role Stopped)" <<<"$notes" &&
    grep -q "cluster resource $vm enabled: running on node $CL_NODE" <<<"$notes" ||
    lab_fail "the restore's notes do not say the resource was disabled and enabled: $(tr '\n' ';' <<<"$notes")"
cl_wait_started "$vm"
lab_assert_eq "state" "$(virsh -q domstate "$vm")" running
new=$(virsh -q domblklist "$vm" | awk '$1 == "vda" { print $2 }')
[[ $new == "$dir/"* ]] || lab_fail "the running VM's vda is $new, not in $dir"
lab_assert_eq "sha256 of the restored disk the VM runs on" "$(sha256sum "$new" | cut -d' ' -f1)" "$sum_a"
grep -q "<source file='$new'" "$CL_CONFIG" || lab_fail "the agent's config $CL_CONFIG does not name $new"
grep -q "<uuid>$uuid</uuid>" "$CL_CONFIG" || lab_fail "the agent's config lost the VM's UUID"
essentials() {    # name, UUID and disk images of a domain XML
    grep -oE "<name>[^<]*</name>|<uuid>[^<]*</uuid>|<source file='[^']*'" | sort
}
running=$(virsh -q dumpxml --inactive "$vm" | essentials) config=$(essentials <"$CL_CONFIG")
lab_assert_eq "name, UUID and disks of the agent's config vs the running VM" "$config" "$running"
lab_ok "restore: resource disabled, disk restored to $new, config rewritten, resource enabled: the cluster runs the restored VM"

lab_assert_eq "fail-count after the restore" "$(cl_failcount "$vm")" 0
grep -q '_last_failure_' <<<"$(cibadmin --query --xpath "//lrm_resource[@id='$vm']" 2>/dev/null)" &&
    lab_fail "a failed operation is recorded: $(cl_history "$vm" | tr '\n' ';')"
lab_assert_eq "meta attributes after the restore" "$(cl_meta_xml "$vm")" "$meta_before"
lab_ok "no failure and no recovery: fail-count 0, no failed operation ($(cl_history "$vm" | tr '\n' ';')), meta attributes as before"

# ---- a copy under --name is no cluster resource
copy=${vm}-copy
lab__undo_push domain "$copy"
cfg_sum=$(sha256sum "$CL_CONFIG" | cut -d' ' -f1)
rst_restore "$bid" --name "$copy" || lab_fail "restore --name failed: $(tail -n 3 "$RST_ERR" | tr '\n' ' ')"
# (other cluster tests may add and remove their own resources meanwhile:
# only this VM's copy and this VM's resource are looked at)
rsc=$(cibadmin --query --scope resources)
grep -qF "$copy" <<<"$rsc" && lab_fail "the cluster's resources name the copy $copy: $(grep -F "$copy" <<<"$rsc")"
lab_assert_eq "meta attributes after restore --name" "$(cl_meta_xml "$vm")" "$meta_before"
lab_assert_eq "the agent's config after restore --name" "$(sha256sum "$CL_CONFIG" | cut -d' ' -f1)" "$cfg_sum"
grep -q "cluster resource" <<<"$(rst_vm_field "$copy" notes)" && lab_fail "the copy's notes talk of the cluster: $(rst_vm_field "$copy" notes)"
info=$(virsh -q dominfo "$copy")    # (not piped into grep -q: pipefail)
grep -Eq '^Autostart: +disable' <<<"$info" || lab_fail "the copy has autostart: $(grep Autostart <<<"$info")"
lab_assert_eq "fail-count after restore --name" "$(cl_failcount "$vm")" 0
lab_ok "restore --name $copy: no resource, config untouched, autostart off; the resource still runs: $(crm_resource --resource "$vm" --locate 2>&1)"
