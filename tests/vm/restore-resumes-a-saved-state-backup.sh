#!/bin/bash
# restore-resumes-a-saved-state-backup (issue 6; R8, R15, R18): a running
# VM backed up through a saved state (--method saved-state) is destroyed,
# undefined and its disk deleted; `vmshadow restore BACKUP` resumes it from
# the stored memory state — without --start, and without booting: a token
# kept only in guest RAM (tmpfs) before the backup is there afterwards, and
# the guest's boot id is the same.
. "$(dirname "$0")/lib.sh"
lab_init
. "$LAB_TESTS_DIR/vm-writer-lib.sh"
. "$LAB_TESTS_DIR/restore-lib.sh"
vmw_init

lab_vm_create --data-disk 32M --memory 192 --name rss
dom=$LAB_DOM
lab_wait_agent "$dom"
token=$(lab_guest_run "$dom" 'vmslab-marker set')
boot_id=$(lab_guest_run "$dom" 'cat /proc/sys/kernel/random/boot_id')
lab_guest_run "$dom" 'echo saved > /data/file; sync' >/dev/null
vmw_backup --method saved-state "$dom" || lab_fail "saved-state backup failed: $(vmw_backup_failure)"
bid=$VMW_BID
lab_assert_eq "method in the summary" "$(jq -r '.components[0].method' "$VMW_SUMMARY")" saved-state
lab_assert_eq "state after the backup" "$(virsh domstate "$dom")" running
lab_ok "saved-state backup $bid of running $dom (downtime $(jq -r '.components[0].downtime_ms' "$VMW_SUMMARY") ms)"

rst_forget "$dom"
virsh -q dominfo "$dom" >/dev/null 2>&1 && lab_fail "$dom still defined"
lab_ok "$dom destroyed, undefined, disk deleted"

rst_restore "$bid" || lab_fail "vmshadow restore $bid failed: $(cat "$RST_ERR" "$RST_OUT" | tail -n 20)"
lab_assert_eq "restore status" "$(rst_vm_field "$dom" status)" restored
lab_assert_eq "state after restore (resumed, no --start)" "$(virsh domstate "$dom")" running
lab_wait_agent "$dom"
lab_assert_eq "RAM-only marker after restore" "$(lab_guest_run "$dom" "vmslab-marker check $token")" "$token"
lab_assert_eq "boot id after restore (resumed, not booted)" \
    "$(lab_guest_run "$dom" 'cat /proc/sys/kernel/random/boot_id')" "$boot_id"
lab_assert_eq "data disk after restore" "$(lab_guest_run "$dom" 'cat /data/file')" saved
lab_ok "restored $dom resumed from its saved state: RAM marker $token and boot id kept"
