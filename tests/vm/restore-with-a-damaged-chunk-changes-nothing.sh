#!/bin/bash
# restore-with-a-damaged-chunk-changes-nothing (issue 20; issue 6, R15):
# two VMs are backed up together, then one of them is started and one
# chunk of the other's disk is damaged in the repository.  `vmshadow
# restore --replace --start` verifies every chunk of the VMs it restores
# (read and re-hashed) before it turns anything off: it exits 1 naming the
# chunk, the file and "nothing was changed"; the running VM still runs (the
# same QEMU process), both VMs keep their UUIDs and their disk images are
# the same files with the same content.  Restoring only the undamaged VM
# works.
. "$(dirname "$0")/lib.sh"
lab_init
. "$LAB_TESTS_DIR/vm-writer-lib.sh"
. "$LAB_TESTS_DIR/restore-lib.sh"
. "$LAB_TESTS_DIR/../flip-byte.sh"
vmw_init
# Format 1, asked for (new repositories are format 2): it damages a chunk's own file.
export VMSHADOW_REPO_FORMAT=1

lab_vm_create --disk raw:8M --memory 128 --name rsbad --no-start
a=$LAB_DOM
lab_vm_create --disk raw:8M --memory 128 --name rsgood --no-start
b=$LAB_DOM
img=${LAB_DISK_FILE[$a/vda]} imgb=${LAB_DISK_FILE[$b/vda]}
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
virsh -q start "$b" >/dev/null || lab_fail "cannot start $b"
lab_ok "backup $bid of $a and $b; $b started; chunk ${d:0:12}… of $img damaged"

fingerprint() {   # UUIDs, states, b's QEMU process, each image's inode and content
    for x in "$a" "$b"; do
        echo "$x $(virsh domuuid "$x") $(virsh domstate "$x")"
    done
    echo "qemu of $b: $(cat "/run/libvirt/qemu/$b.pid" 2>/dev/null)"
    stat -c '%n %i' "$img" "$imgb"
    md5sum "$img"
}
before=$(fingerprint)
rc=0
rst_restore "$bid" --replace --start || rc=$?
lab_assert_eq "exit status" "$rc" 1
grep -q "chunk $d of $img (at offset 0) is damaged.*nothing was changed" "$RST_ERR" ||
    lab_fail "the message does not name the chunk, the file and that nothing changed: $(cat "$RST_ERR")"
lab_assert_eq "host after the refused restore" "$(fingerprint)" "$before"
lab_assert_eq "state of $b" "$(virsh domstate "$b")" running
lab_ok "damaged chunk: refused before anything was turned off; $b still runs (same process), images unchanged: $(head -c 200 "$RST_ERR")"

rst_restore "$bid" --vm "$a" --replace --dry-run && lab_fail "a dry run over a damaged chunk succeeded"
rst_restore "$bid" --vm "$b" --replace ||
    lab_fail "restoring only $b failed: $(tail -n 5 "$RST_ERR")"
lab_assert_eq "status of $b" "$(rst_vm_field "$b" status)" restored
lab_ok "restoring only the undamaged $b works"
