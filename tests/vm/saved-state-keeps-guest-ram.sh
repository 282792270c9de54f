#!/bin/bash
# saved-state-keeps-guest-ram: a marker kept only in guest RAM (tmpfs)
# survives saving the VM's state to a file (virsh save) and restoring it
# (virsh restore): same marker, same boot id, agent answers again.  A cold
# boot loses it, and the marker check says so: the checker can tell a
# resumed guest from a rebooted one.
. "$(dirname "$0")/lib.sh"
lab_init

lab_vm_create --data-disk 32M
dom=$LAB_DOM
lab_wait_agent "$dom"

token=$(lab_guest_run "$dom" 'vmslab-marker set')
boot=$(lab_guest_run "$dom" 'cat /proc/sys/kernel/random/boot_id')
lab_ok "marker $token set in guest RAM (boot $boot)"

state=$LAB_WORK/$dom.state
virsh -q save "$dom" "$state" >/dev/null || lab_fail "virsh save $dom failed"
lab_assert_eq "state after save" "$(virsh -q domstate "$dom")" "shut off"
virsh -q restore "$state" >/dev/null || lab_fail "virsh restore $state failed"
lab_wait_agent "$dom" 30
lab_assert_eq "marker after restore" "$(lab_guest_run "$dom" "vmslab-marker check $token")" "$token"
lab_assert_eq "boot id after restore" "$(lab_guest_run "$dom" 'cat /proc/sys/kernel/random/boot_id')" "$boot"
lab_ok "after save ($(du -h "$state" | cut -f1) state file) and restore the marker and boot id are the same"

virsh -q destroy "$dom" >/dev/null
virsh -q start "$dom" >/dev/null || lab_fail "virsh start $dom failed"
lab_wait_agent "$dom"
if out=$(lab_guest_exec "$dom" "vmslab-marker check $token" 2>&1); then
    lab_fail "marker survived a cold boot: $out"
fi
grep -q 'guest RAM was not kept' <<<"$out" || lab_fail "marker check failed oddly: $out"
lab_ok "after a cold boot the marker check fails: $out"
