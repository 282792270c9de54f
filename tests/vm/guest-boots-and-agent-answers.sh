#!/bin/bash
# guest-boots-and-agent-answers: a lab VM (TCG) with an ext4 data disk and a
# NIC on a test bridge boots the Debian kernel; its qemu-guest-agent answers
# guest-ping and guest-info, runs commands (guest-exec) with their output and
# exit status, sees the NIC libvirt gave it, and the data disk is mounted on
# /data, where the known data pattern written in the guest has the checksum
# the host computes for it.
. "$(dirname "$0")/lib.sh"
lab_init

lab_vm_create --data-disk 64M --nic bridge
dom=$LAB_DOM
lab_wait_agent "$dom"

ver=$(lab_agent "$dom" '{"execute":"guest-info"}' | jq -r .version)
[ -n "$ver" ] && [ "$ver" != null ] || lab_fail "guest-info gave no version"
lab_ok "agent answers guest-ping and guest-info (qemu-ga $ver)"

krel=$(lab_guest_run "$dom" 'uname -r')
lab_assert_eq "guest kernel" "$krel" "$VMSLAB_GUEST_KERNEL_RELEASE"
rc=0; out=$(lab_guest_exec "$dom" 'echo out; echo err >&2; exit 3' 2>/dev/null) || rc=$?
lab_assert_eq "guest-exec stdout" "$out" out
lab_assert_eq "guest-exec exit status" "$rc" 3
lab_ok "guest-exec runs commands: kernel $krel, stdout and exit status come back"

mnt=$(lab_guest_run "$dom" 'grep " /data " /proc/mounts')
[[ $mnt == "/dev/vda /data ext4 "* ]] || lab_fail "data disk not mounted as ext4 on /data: '$mnt'"
lab_ok "data disk (serial vmslab-data) mounted: $mnt"

mac=$(virsh -q domiflist "$dom" | awk '{ print $5 }')
gmacs=$(lab_agent "$dom" '{"execute":"guest-network-get-interfaces"}' | jq -r '.[]["hardware-address"]')
grep -qix "$mac" <<<"$gmacs" || lab_fail "guest has no NIC with MAC $mac (it has: $gmacs)"
lab_ok "guest sees its NIC $mac on bridge $LAB_BRIDGE"

sum=$(lab_guest_run "$dom" 'vmslab-pattern write /data/pattern.bin seed1 0 1048576')
want=$(sh "$LAB_DIR/guest/bin/vmslab-pattern" sum seed1 0 1048576)
lab_assert_eq "sha256 of the pattern written in the guest" "$sum" "$want"
lab_guest_run "$dom" 'echo 3 > /proc/sys/vm/drop_caches; vmslab-pattern check /data/pattern.bin seed1 0 1048576' >/dev/null
lab_ok "data pattern on /data has the host's checksum $want"
