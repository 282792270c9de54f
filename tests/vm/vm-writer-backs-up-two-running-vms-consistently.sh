#!/bin/bash
# vm-writer-backs-up-two-running-vms-consistently (issue 5; R8-R11): two
# running VMs with guest agents, each with the busy writer appending
# fsync'd records to its ext4 data disk, are backed up in one set with
# `vmshadow backup A B`.  Both go online, the backup is one backup, and the
# data disk of each, extracted from the repository, is an ext4 that is clean
# on its own (e2fsck -fn, no journal recovery pending: R11) whose records
# file holds records 1..N, none torn, every record the guest had written
# before the backup started, and byte for byte a prefix of what the guest
# kept writing.  Both freeze windows are recorded (> 0 ms) in the backup
# components document and in the summary.
. "$(dirname "$0")/lib.sh"
lab_init
. "$LAB_TESTS_DIR/vm-writer-lib.sh"
vmw_init

lab_vm_create --data-disk 64M --memory 160 --name a
a=$LAB_DOM
lab_vm_create --data-disk 64M --memory 160 --name b
b=$LAB_DOM
lab_wait_agent "$a"
lab_wait_agent "$b"

declare -A before=()
for d in "$a" "$b"; do
    lab_guest_run "$d" 'vmslab-writer start /data/records' >/dev/null
done
for d in "$a" "$b"; do
    n=$(vmw_wait_records "$d" /data/records 20)
    before[$d]=$n
done
lab_ok "busy writers running: $a ${before[$a]}+ records, $b ${before[$b]}+ records"

vmw_backup "$a" "$b" || lab_fail "vmshadow backup $a $b failed: $(vmw_backup_failure)"
bid=$VMW_BID
lab_ok "vmshadow backup $a $b: backup $bid in $(jq -r .elapsed_ms "$VMW_SUMMARY") ms"

# The guests keep writing a little after the backup, then stop.
sleep 1
declare -A total=()
for d in "$a" "$b"; do
    total[$d]=$(lab_guest_run "$d" 'vmslab-writer stop')
    lab_guest_run "$d" 'cat /data/records' >"$LAB_WORK/$d.guest-records"
done

lab_assert_eq "backups in the repository" "$(vmw_backup_count)" 1
vmw_show "$bid"
for d in "$a" "$b"; do
    uuid=$(virsh domuuid "$d")
    lab_assert_eq "method of $d" "$(vmw_attr "$uuid" method)" online
    lab_assert_eq "caption of $d" "$(vmw_caption "$uuid")" "Online\\$d"
    fw=$(vmw_attr "$uuid" freeze_window_ms)
    [[ $fw =~ ^[0-9]+$ ]] && [ "$fw" -gt 0 ] ||
        lab_fail "freeze_window_ms of $d in the components document is '$fw', want > 0"
    sfw=$(jq -r --arg u "$uuid" '.components[] | select(.component == $u) | .freeze_window_ms' "$VMW_SUMMARY")
    lab_assert_eq "freeze_window_ms of $d in the summary" "$sfw" "$fw"
    lab_ok "$d: online, freeze window $fw ms recorded in the components document and the summary"

    img=${LAB_DISK_FILE[$d/vda]}
    vmw_extract "$bid" "$uuid" "$img" "$LAB_WORK/$d.img" raw
    vmw_fsck_clean "$LAB_WORK/$d.img" "$d data disk"
    lab_ok "$d: extracted data disk is a clean ext4 without journal replay (R11)"

    debugfs -R 'cat /records' "$LAB_WORK/$d.img" >"$LAB_WORK/$d.records" 2>/dev/null
    check=$(sh "$LAB_DIR/guest/bin/vmslab-records-check" "$LAB_WORK/$d.records") ||
        lab_fail "$d: records in the backup are not whole: $check"
    n=$(($(stat -c %s "$LAB_WORK/$d.records") / 64))
    [ "$n" -ge "${before[$d]}" ] ||
        lab_fail "$d: backup holds $n records, but the guest had written ${before[$d]} before the backup started"
    [ "$n" -le "${total[$d]}" ] ||
        lab_fail "$d: backup holds $n records, more than the ${total[$d]} the guest wrote"
    cmp -s -n "$(stat -c %s "$LAB_WORK/$d.records")" "$LAB_WORK/$d.records" "$LAB_WORK/$d.guest-records" ||
        lab_fail "$d: records in the backup differ from the guest's own first $n records"
    lab_ok "$d: records 1..$n whole, none torn, a prefix of the guest's ${total[$d]} ($check)"
done
