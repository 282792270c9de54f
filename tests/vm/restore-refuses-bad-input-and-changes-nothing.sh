#!/bin/bash
# restore-refuses-bad-input-and-changes-nothing (issue 6): a running VM is
# backed up; then each bad input makes `vmshadow restore` exit 1 with one
# clear message and leaves the host as it was (domains, their states and
# UUIDs, the disk images): an unknown backup id, a VM not in the backup, a
# missing manifest, a damaged manifest, a target directory that cannot be
# written, --name with two VMs, a name taken by another VM (another UUID),
# a VM that exists restored without --replace, --existing without --to or
# --name, --name with --replace (issue 20).
. "$(dirname "$0")/lib.sh"
lab_init
. "$LAB_TESTS_DIR/vm-writer-lib.sh"
. "$LAB_TESTS_DIR/restore-lib.sh"
vmw_init
# Format 1, asked for (new repositories are format 2): it edits backups/ID/manifest.json.
export VMSHADOW_REPO_FORMAT=1

lab_vm_create --disk raw:8M --memory 128 --name rsin
dom=$LAB_DOM
img=${LAB_DISK_FILE[$dom/vda]}
lab_wait_agent "$dom"
lab_vm_create --disk raw:8M --memory 128 --name rsin2 --no-start
other=$LAB_DOM
vmw_backup "$dom" "$other" || lab_fail "backup failed: $(vmw_backup_failure)"
bid=$VMW_BID
before=$(rst_host_state "$dom" "$other" "$dom-x" -- "$img" "${LAB_DISK_FILE[$other/vda]}")

# refuses WHAT PATTERN ARG... — exit 1, stderr matches, host unchanged
refuses() {
    local what=$1 pat=$2 rc=0
    shift 2
    rst_restore "$@" || rc=$?
    [ $rc -eq 1 ] || lab_fail "$what: exit $rc, want 1 ($(cat "$RST_ERR"))"
    grep -E -- "$pat" "$RST_ERR" >/dev/null || lab_fail "$what: message '$(cat "$RST_ERR")' does not match /$pat/"
    lab_assert_eq "$what: host state" "$(rst_host_state "$dom" "$other" "$dom-x" -- "$img" "${LAB_DISK_FILE[$other/vda]}")" "$before"
    lab_ok "$what: $(head -n 1 "$RST_ERR")"
}

refuses "unknown backup id" "no-such-backup.*nothing was changed" no-such-backup
refuses "VM not in the backup" "has no VM \"vmslab-nope\".*holds: .*$dom" "$bid" --vm vmslab-nope
refuses "--name with two VMs" "--name gives one VM a new name" "$bid" --name x
refuses "--existing without --to or --name" "--existing decides .*--to DIR.*nothing was changed" "$bid" --existing rename
refuses "--name with --replace" "replaces nothing: leave out --replace" "$bid" --vm "$dom" --name "$dom-y" --replace
refuses "existing VMs without --replace" "vm \"$dom\" .* exists on this host \(running\).*--replace.*vm \"$other\" .* exists on this host \(not running\).*nothing was changed" "$bid"

cp -a "$VMW_REPO" "$LAB_WORK/repo2"
mv "$VMW_REPO/backups/$bid/manifest.json" "$LAB_WORK/manifest.json"
refuses "missing manifest" "cannot restore backup $bid.*nothing was changed" "$bid"
head -c 200 "$LAB_WORK/manifest.json" >"$VMW_REPO/backups/$bid/manifest.json"
refuses "damaged manifest" "cannot restore backup $bid.*nothing was changed" "$bid"
mv "$LAB_WORK/manifest.json" "$VMW_REPO/backups/$bid/manifest.json"

ro=$LAB_WORK/ro
mkdir -p "$ro"
mount -t tmpfs -o ro,size=1m tmpfs "$ro" || lab_fail "cannot mount a read-only tmpfs"
rc=0
( refuses "target directory not writable" "cannot restore to $ro.*not writable" "$bid" --vm "$dom" --to "$ro" ) || rc=$?
umount "$ro"
[ $rc -eq 0 ] || exit $rc

# A VM of another UUID has the name the backup's VM would take.
virsh -q dumpxml --inactive "$other" | sed -e "s|<name>$other</name>|<name>$dom-x</name>|" \
    -e '/<uuid>/d' >"$LAB_WORK/x.xml"
virsh -q define "$LAB_WORK/x.xml" >/dev/null || lab_fail "cannot define $dom-x"
lab__undo_push domain "$dom-x"
before=$(rst_host_state "$dom" "$other" "$dom-x" -- "$img" "${LAB_DISK_FILE[$other/vda]}")
refuses "name taken by another VM" "cannot be copied as \"$dom-x\": a VM of that name exists.*another --name" "$bid" --vm "$dom" --name "$dom-x"
lab_assert_eq "$dom still running" "$(virsh domstate "$dom")" running
