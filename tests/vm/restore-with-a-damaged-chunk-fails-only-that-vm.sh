#!/bin/bash
# restore-with-a-damaged-chunk-fails-only-that-vm (issue 6; R6, R17): two
# stopped VMs are backed up together; one chunk of the first VM's disk is
# then damaged in the repository.  `vmshadow restore --start` exits
# non-zero; the report says the first VM FAILED, names the file that
# failed, and that VM is not defined; nothing is left at its disk path; the
# second VM is restored, defined and running.
. "$(dirname "$0")/lib.sh"
lab_init
. "$LAB_TESTS_DIR/vm-writer-lib.sh"
. "$LAB_TESTS_DIR/restore-lib.sh"
. "$LAB_TESTS_DIR/../flip-byte.sh"
vmw_init

lab_vm_create --disk raw:8M --memory 128 --name rsbad --no-start
a=$LAB_DOM
lab_vm_create --disk raw:8M --memory 128 --name rsgood --no-start
b=$LAB_DOM
img=${LAB_DISK_FILE[$a/vda]}
head -c 4194304 /dev/urandom | dd of="$img" conv=notrunc status=none
vmw_backup "$a" "$b" || lab_fail "backup failed: $(vmw_backup_failure)"
bid=$VMW_BID
# The first chunk of the image: as many bytes as the repository's chunk size.
cs=$(jq -r .chunk_size "$VMW_REPO/config")
[[ $cs =~ ^[0-9]+$ ]] || lab_fail "no chunk size in $VMW_REPO/config"
d=$(head -c "$cs" "$img" | sha256sum | cut -c1-64)
chunk=$VMW_REPO/chunks/${d:0:2}/$d
[ -f "$chunk" ] || lab_fail "chunk $d of $img not in the repository"
flip_byte "$chunk" 1000
rst_forget "$a"
lab_ok "backup $bid of $a and $b; chunk ${d:0:12}… of $img damaged"

rc=0
rst_restore "$bid" --replace --start || rc=$?
[ $rc -ne 0 ] || lab_fail "restore with a damaged chunk exited 0"
lab_assert_eq "status of $a" "$(rst_vm_field "$a" status)" failed
lab_assert_eq "status of $b" "$(rst_vm_field "$b" status)" restored
jq -e --arg n "$a" --arg p "$img" '.vms[] | select(.name == $n) | .files[] | select(.path == $p and .status == "failed")' "$RST_OUT" >/dev/null ||
    lab_fail "the report does not name $img as failed: $(jq -c . "$RST_OUT")"
virsh -q dominfo "$a" >/dev/null 2>&1 && lab_fail "$a is defined although a file failed (R17)"
[ ! -e "$img" ] || lab_fail "something was left at $img"
lab_ok "$a: FAILED, $img named, not defined, nothing left at its path (exit $rc)"
lab_assert_eq "state of $b" "$(virsh domstate "$b")" running
lab_ok "$b restored and running"
