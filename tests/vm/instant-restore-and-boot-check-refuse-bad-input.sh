#!/bin/bash
# instant-restore-and-boot-check-refuse-bad-input (issue 16; R25, R27):
# over an offline backup of a stopped VM (no guest boots here), `restore
# --instant` and `verify --boot` refuse, each with a message that names
# what is wrong, and change nothing on the host (domains, disk images,
# instant-recovery and VM writer state, no export left serving): a backup
# id that does not exist, a VM that is not in the backup, an instant
# restore over a VM that exists without --replace (the plan refuses; with
# --replace it is done: instant-restore-killed-is-resumed-or-rolled-back),
# a disk the VM does not have (`serve --vm VM --disk vdz`: no export starts),
# a backup whose disk index
# is missing from the repository, --resume/--rollback of nothing pending,
# and wrong command lines (exit 2).
. "$(dirname "$0")/lib.sh"
lab_init
. "$LAB_TESTS_DIR/vm-writer-lib.sh"
. "$LAB_TESTS_DIR/restore-lib.sh"
vmw_init
# Format 1, asked for (new repositories are format 2): it edits an index in backups/ID/indexes/.
export VMSHADOW_REPO_FORMAT=1
. "$LAB_TESTS_DIR/instant-lib.sh"
inst_init

lab_vm_create --disk raw:8M --memory 128 --name ib --no-start
dom=$LAB_DOM
img=${LAB_DISK_FILE[$dom/vda]}
head -c 1048576 /dev/urandom | dd of="$img" conv=notrunc status=none
vmw_backup "$dom" || lab_fail "backup failed: $(vmw_backup_failure)"
bid=$VMW_BID

state() { rst_host_state "$dom" -- "$img"; find "$VMSHADOW_VM_STATE_DIR" "$VMSHADOW_INSTANT_DIR" 2>/dev/null | sort; inst_leftovers; }

# refuse EXIT PATTERN ARG... — vmshadow ARG... exits EXIT, says PATTERN
# (stderr or its JSON error), and the host did not change.
refuse() {
    local want=$1 pat=$2 rc=0 before
    shift 2
    before=$(state)
    vmw_vmshadow "$@" || rc=$?
    lab_assert_eq "exit of vmshadow $*" "$rc" "$want"
    cat "$VMW_ERR" "$VMW_OUT" | grep -q -- "$pat" ||
        lab_fail "vmshadow $* did not say '$pat': $(cat "$VMW_ERR" "$VMW_OUT" | head -c 400)"
    lab_assert_eq "the host after vmshadow $*" "$(state)" "$before"
}

refuse 1 'no backup "nosuch".*nothing was changed' restore --instant nosuch
refuse 1 "backup $bid has no VM \"nosuchvm\"; it holds: .*$dom" restore --instant --vm nosuchvm "$bid"
refuse 1 'exists on this host.*nothing was changed' restore --instant "$bid"
refuse 1 'no backup "nosuch"' verify --boot nosuch
refuse 1 "VM \"nosuchvm\" is not in backup $bid; it holds: $dom" verify --boot --vm nosuchvm "$bid"
refuse 1 "has no disk \"vdz\" (its disks: vda)" serve --vm "$dom" --disk vdz "$bid"
refuse 1 'no backup "nosuch"' serve --vm "$dom" nosuch
refuse 1 'no instant restore is pending' restore --resume
refuse 1 "no instant restore of VM \"$dom\" is pending" restore --rollback "$dom"
refuse 2 '--resume or --rollback, not both' restore --resume --rollback
refuse 2 'takes no BACKUP' restore --resume "$bid" "$dom"
refuse 2 '--bandwidth applies to --instant' restore --bandwidth 5 "$bid"
refuse 2 '--probe and --boot-timeout apply to verify --boot' verify --probe true "$bid"
refuse 2 '--vm and --connect apply to verify --boot' verify --vm "$dom" "$bid"
lab_ok "unknown backup, VM not in the backup, VM that exists (no --replace), a disk the VM does not have (serve --disk), nothing pending, bad command lines: refused, nothing changed"

# The VM deleted, and the backup's disk missing from the repository: the
# instant restore is refused before anything runs.
rst_forget "$dom"
idx=$VMW_REPO/backups/$bid/indexes/$(jq -r '.files[] | select(.kind == "disk") | .index' "$VMW_REPO/backups/$bid/manifest.json")
[ -f "$idx" ] || lab_fail "no index file of the disk in backup $bid"
mv "$idx" "$LAB_WORK/index.aside"
refuse 1 "index of $img is damaged.*nothing was changed" restore --instant "$bid"
refuse 1 "index of $img is damaged" verify --boot "$bid"
mv "$LAB_WORK/index.aside" "$idx"
lab_ok "a backup whose disk index is missing: instant restore and boot check refused, nothing made"
