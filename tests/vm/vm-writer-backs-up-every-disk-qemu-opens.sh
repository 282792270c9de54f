#!/bin/bash
# vm-writer-backs-up-every-disk-qemu-opens (issue 11; R13 read for KVM, R7,
# R8): one VM with a qcow2 file, a raw file, a host block device (a loop
# device: what an LV is to QEMU), an iSCSI LUN (the lab's tgt, reached by
# QEMU's libiscsi with CHAP, the password a libvirt secret) and an NBD disk
# (qemu-nbd on a Unix socket) and an RBD image (the lab's one-node Ceph,
# QEMU's rbd driver with a cephx key kept as a libvirt ceph secret), plus
# an iSCSI LUN given as device='lun'
# (SCSI pass-through) and one as a SCSI <hostdev>.
#   - Running: every disk QEMU opens is backed up through the pull backup
#     job; the LUN and the hostdev, and nothing else, are named as excluded
#     with the reason; each stored disk holds what the guest wrote (the lab
#     pattern, checked on the extracted image).
#   - Stopped: the same VM is backed up without being started: the files
#     and the block device through read-only qemu-nbd exports of their own,
#     the iSCSI LUN by qemu-nbd speaking iSCSI with the secret, the NBD disk
#     by qemu-nbd speaking NBD, the RBD image by qemu-nbd speaking RBD with
#     the cephx key; each equals the device behind it (content hashes of
#     the files and of `rbd export`); the secret files are gone afterwards.
#   - Restore: writing block and network disks back is not done yet: the
#     restore is refused naming both, and nothing changes.
#   - Bad: with the CHAP password changed on the target, the stopped VM's
#     backup fails naming the VM, the disk and the login refusal; nothing
#     is stored.
. "$(dirname "$0")/lib.sh"
lab_init
. "$LAB_TESTS_DIR/vm-writer-lib.sh"
vmw_init

lab_vm_create --disk qcow2:16M --disk raw:16M --disk block:16M --disk iscsi-lun:16M \
    --disk nbd:16M --disk rbd:16M --disk lun:16M --disk hostdev:16M --name disks
dom=$LAB_DOM
uuid=$(virsh domuuid "$dom")
iqn=${LAB_DISK_IQN[$dom/vdd]}
loopdev=${LAB_DISK_DEV[$dom/vdc]}
rbdimg=${LAB_DISK_RBD[$dom/vdf]}
disks=(vda vdb vdc vdd vde vdf)
MiB=$((1024 * 1024))
pattern=$LAB_DIR/guest/bin/vmslab-pattern
lab_wait_agent "$dom"
for t in "${disks[@]}"; do
    lab_guest_run "$dom" "vmslab-pattern write /dev/$t seed-$t $MiB $((2 * MiB))" >/dev/null ||
        lab_fail "the guest could not write /dev/$t"
done
lab_ok "VM $dom runs with qcow2, raw, loop $loopdev, iSCSI $iqn/1 (CHAP), NBD, RBD $rbdimg (cephx), a LUN and a hostdev; the guest wrote a pattern to vda..vdf"

# check_stored BACKUP — every disk of the backup holds the guest's pattern.
check_stored() {
    local t p img
    for t in "${disks[@]}"; do
        p=$(vmw_component "$uuid" | jq -r --arg t "$t" '.attributes | to_entries[]
            | select((.key | startswith("disk_target:")) and .value == $t) | .key[12:]')
        [ -n "$p" ] || lab_fail "backup $1 has no disk for $t"
        img=$LAB_WORK/$1-$t.raw
        vmw_extract "$1" "$uuid" "$p" "$img" raw
        sh "$pattern" check "$img" "seed-$t" $MiB $((2 * MiB)) >/dev/null ||
            lab_fail "disk $t ($p) in backup $1 does not hold what the guest wrote"
    done
}

rc=0
vmw_backup "$dom" || rc=$?
[ $rc -eq 3 ] || lab_fail "vmshadow backup of running $dom exited $rc, not 3 (stored, the LUN and hostdev left out): $(vmw_backup_failure)"
bid=$VMW_BID
vmw_show "$bid"
lab_assert_eq "method" "$(vmw_attr "$uuid" method)" online
lab_assert_eq "disks stored" "$(vmw_component "$uuid" | jq '[.files[] | select(.kind == "disk")] | length')" 6
excl=$(vmw_component "$uuid" | jq -r '.excluded[] | "\(.path)\t\(.reason)"')
lab_assert_eq "excluded count" "$(grep -c . <<<"$excl")" 2
grep -F "iscsi://127.0.0.1:3261/${LAB_DISK_IQN[$dom/vdg]}/1"$'\t' <<<"$excl" | grep -q 'pass-through SCSI LUN' ||
    lab_fail "the device='lun' disk is not excluded as a pass-through LUN: $excl"
grep -F "${LAB_DISK_IQN[$dom/vdh]}/1"$'\t' <<<"$excl" | grep -q 'pass-through SCSI host device' ||
    lab_fail "the hostdev is not excluded as a pass-through SCSI host device: $excl"
! grep -qv 'backed up from inside the guest' <<<"$excl" ||
    lab_fail "an exclusion reason does not say to back it up inside the guest: $excl"
lab_ok "online backup $bid: 6 disks stored; excluded only the LUN and the hostdev, each with its reason"
check_stored "$bid"
lab_ok "every stored disk of the online backup holds the guest's pattern"

# ---- the same VM stopped: read from its volumes, never started
virsh -q destroy "$dom" >/dev/null || lab_fail "virsh destroy $dom failed"
# backing_sum TARGET — the hash of what is behind a disk: its file, or
# the RBD image as `rbd export` reads it
backing_sum() {
    if [ -n "${LAB_DISK_RBD[$dom/$1]:-}" ]; then
        timeout 120 rbd export --no-progress "${LAB_DISK_RBD[$dom/$1]}" - | sha256sum
    else
        sha256sum <"${LAB_DISK_FILE[$dom/$1]}"
    fi
}
for t in "${disks[@]}"; do
    sums+=("$(backing_sum "$t")")
done
rc=0
vmw_backup "$dom" || rc=$?
[ $rc -eq 3 ] || lab_fail "vmshadow backup of stopped $dom exited $rc, not 3: $(vmw_backup_failure)"
bid2=$VMW_BID
lab_assert_eq "state after" "$(virsh domstate "$dom")" "shut off"
vmw_show "$bid2"
lab_assert_eq "method (stopped)" "$(vmw_attr "$uuid" method)" offline
lab_assert_eq "disks stored (stopped)" "$(vmw_component "$uuid" | jq '[.files[] | select(.kind == "disk")] | length')" 6
check_stored "$bid2"
i=0
for t in "${disks[@]}"; do
    lab_assert_eq "backing store of $t unchanged" "$(backing_sum "$t")" "${sums[i]}"
    i=$((i + 1))
done
ls "$LAB_WORK/state/$uuid"/secret-* >/dev/null 2>&1 && lab_fail "a secret file was left in the state dir"
lab_ok "stopped backup $bid2: never started, every disk (iSCSI with its CHAP secret, RBD with its cephx key, NBD, loop) read by its protocol; no secret file left"

# ---- restore: block and network disks are not written back yet; refused
# by name before anything changes (issue 11)
. "$LAB_TESTS_DIR/restore-lib.sh"
before=$(rst_host_state "$dom" -- "$loopdev" "${LAB_DISK_FILE[$dom/vda]}")
rc=0
rst_restore "$bid2" --replace || rc=$?
[ $rc -ne 0 ] || lab_fail "the restore of a VM with a block and a network disk was not refused"
grep -q "disk vdc is the host block device $loopdev" "$RST_ERR" &&
    grep -q "disk vdd is the network disk iscsi://127.0.0.1:3261/$iqn/1" "$RST_ERR" ||
    lab_fail "the refusal does not name the block and the network disk: $(tr '\n' ' ' <"$RST_ERR")"
lab_assert_eq "host after the refused restore" "$(rst_host_state "$dom" -- "$loopdev" "${LAB_DISK_FILE[$dom/vda]}")" "$before"
lab_ok "restore refused (exit $rc), naming the loop device and the iSCSI disk; nothing changed"

# ---- bad: the target refuses the login
tgtadm -C 17 --lld iscsi --op delete --mode account --user "vmslab$$" >/dev/null ||
    lab_fail "cannot delete the CHAP account"
tgtadm -C 17 --lld iscsi --op new --mode account --user "vmslab$$" --password wrongpassword1 >/dev/null &&
    tid=$(tgtadm -C 17 --lld iscsi --op show --mode target | awk -v q="$iqn" '$1 == "Target" && $3 == q { sub(":", "", $2); print $2 }') &&
    tgtadm -C 17 --lld iscsi --op bind --mode account --tid "$tid" --user "vmslab$$" >/dev/null ||
    lab_fail "cannot change the CHAP password"
n0=$(vmw_backup_count)
rc=0
vmw_backup "$dom" || rc=$?
[ $rc -ne 0 ] && [ $rc -ne 3 ] || lab_fail "a backup whose iSCSI login is refused exited $rc"
msg=$(vmw_backup_failure)
grep -q "iscsi://127.0.0.1:3261/$iqn/1" <<<"$msg" && grep -qi 'log in\|login\|Authentication' <<<"$msg" ||
    lab_fail "the failure does not name the disk and the refused login: $msg"
lab_assert_eq "backups after the refused login" "$(vmw_backup_count)" "$n0"
lab_assert_eq "state after the refused login" "$(virsh domstate "$dom")" "shut off"
lab_ok "refused iSCSI login: exit $rc, names the disk and why, nothing stored ($msg)"
