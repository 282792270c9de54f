#!/bin/bash
# lab-makes-every-disk-kind-and-network: the lab's helpers make what later
# tests need.  A VM with a qcow2 file, a raw file, a host block device (loop
# device), a network disk (NBD, served by qemu-nbd on a Unix socket) and a
# NIC on a libvirt network without <ip> starts; the guest sees four disks of
# the right size and data written to each reads back after dropping caches
# (and, for the raw file and the loop device, is in the host's file).  A VM
# with an unreachable iSCSI network disk and no agent channel can be defined
# (not started); a started VM without agent channel fails agent calls with
# "not configured".
. "$(dirname "$0")/lib.sh"
lab_init

MiB=$((1024 * 1024))
lab_vm_create --disk qcow2:16M --disk raw:16M --disk block:16M --disk nbd:16M --nic network
dom=$LAB_DOM
lab_wait_agent "$dom"

types=$(virsh -q domblklist "$dom" --details | awk '{ print $1 ":" $3 }' | tr '\n' ' ')
lab_assert_eq "disk types (type:target)" "$types" "file:vda file:vdb block:vdc network:vdd "
for t in vda vdb vdc vdd; do
    sectors=$(lab_guest_run "$dom" "cat /sys/block/$t/size")
    lab_assert_eq "size of $t in the guest (sectors)" "$sectors" $((16 * MiB / 512))
    lab_guest_run "$dom" "vmslab-pattern write /dev/$t seed-$t $MiB $MiB" >/dev/null
done
lab_guest_run "$dom" "echo 3 > /proc/sys/vm/drop_caches; for t in vda vdb vdc vdd; do vmslab-pattern check /dev/\$t seed-\$t $MiB $MiB >/dev/null || exit 1; done"
lab_ok "guest sees qcow2, raw, block and nbd disks of 16 MiB; data reads back"

sh "$LAB_DIR/guest/bin/vmslab-pattern" check "${LAB_DISK_FILE[$dom/vdb]}" seed-vdb $MiB $MiB >/dev/null ||
    lab_fail "raw file on the host lacks what the guest wrote"
sh "$LAB_DIR/guest/bin/vmslab-pattern" check "${LAB_DISK_DEV[$dom/vdc]}" seed-vdc $MiB $MiB >/dev/null ||
    lab_fail "loop device ${LAB_DISK_DEV[$dom/vdc]} lacks what the guest wrote"
lab_ok "raw file and loop device ${LAB_DISK_DEV[$dom/vdc]} hold the guest's data on the host"

net=$(virsh -q domiflist "$dom" | awk '{ print $2 ":" $3 }')
lab_assert_eq "NIC (type:source)" "$net" "network:$LAB_NETWORK"
virsh -q net-dumpxml "$LAB_NETWORK" | grep >/dev/null '<ip' && lab_fail "lab network $LAB_NETWORK has an <ip>"
lab_ok "NIC on libvirt network $LAB_NETWORK (no <ip>: no dnsmasq, no iptables)"

lab_vm_create --name defined-only --disk qcow2:16M --disk iscsi --no-agent --no-start
state=$(virsh -q domstate "$LAB_DOM")
lab_assert_eq "state of the defined-only VM" "$state" "shut off"
virsh -q domblklist "$LAB_DOM" --details | grep >/dev/null '^ *network *disk *vdb' ||
    lab_fail "defined-only VM does not list its iSCSI network disk"
lab_ok "VM with an unreachable iSCSI disk and no agent channel defined, not started"

lab_vm_create --name no-agent --no-agent
if out=$(lab_agent "$LAB_DOM" '{"execute":"guest-ping"}' 2>&1); then
    lab_fail "agent call on a VM without agent channel succeeded: $out"
fi
grep -q 'not configured' <<<"$out" || lab_fail "agent call without channel failed oddly: $out"
lab_ok "VM without agent channel runs; agent calls fail with 'not configured'"
