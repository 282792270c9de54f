#!/bin/bash
# vm-writer-stopped-vm-started-during-the-copy-keeps-the-backup-invisible
# (issue 10; R12, R4): two shut-off VMs backed up in one set, read from
# their images in the order named. VM A is started once its images are
# read, while B's large disk is still being read. After the copy and
# before the commit (gather-status, VSS's GatherWriterStatus) the VM writer
# says A's copy cannot be trusted: no backup becomes visible, and the
# report names the writer, the phase, the kind and the reason.
. "$(dirname "$0")/lib.sh"
lab_init
. "$LAB_TESTS_DIR/vm-writer-lib.sh"
vmw_init

lab_vm_create --no-start
a=$LAB_DOM
lab_vm_create --no-start --disk raw:1536M
b=$LAB_DOM
big=${LAB_DISK_FILE[$b/vda]}
# Random data (holes and zeros would be skipped), so that reading it takes
# seconds: the window in which A is started.
head -c $((1536 * 1024 * 1024)) /dev/urandom | dd of="$big" bs=4M conv=notrunc status=none
lab_ok "shut-off VMs $a and $b (vda of $b: 1.5 GiB of random data)"

"$VMSHADOW" --repo "$VMW_REPO" backup --json "$a" "$b" >"$LAB_WORK/backup.out" 2>"$LAB_WORK/backup.err" &
pid=$!
reading_big() { pgrep -f "qemu-nbd.*$(basename "$big")" >/dev/null; }
for _ in $(seq 1200); do
    reading_big && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
done
reading_big || { wait "$pid" || true; lab_fail "the backup never read $big: $(tail -n 3 "$LAB_WORK/backup.err" | tr '\n' ' ')"; }
# Hold the backup (SIGSTOP) while A starts, so the start always falls
# inside the copy however fast this machine reads the disk.
kill -STOP "$pid"
virsh -q start "$a" >/dev/null || { kill -CONT "$pid"; wait "$pid" || true; lab_fail "cannot start $a"; }
kill -CONT "$pid"
reading_big || lab_fail "$big was read before $a was running: the test has no window (make the disk larger)"
lab_ok "$a started while $b's disk was being read"

rc=0
wait "$pid" || rc=$?
[ $rc -ne 0 ] || lab_fail "the backup succeeded although $a was started during the copy: $(head -c 400 "$LAB_WORK/backup.out")"
jq -e '.state == "failed" and .failure.culprit == "libvirt-vm" and
       .failure.phase == "gather-status" and .failure.kind == "inconsistent-snapshot"' \
    "$LAB_WORK/backup.out" >/dev/null ||
    lab_fail "the report does not name the VM writer at gather-status: $(jq -c '.failure // .' "$LAB_WORK/backup.out")"
msg=$(jq -r '.failure.message' "$LAB_WORK/backup.out")
grep -qF "vm \"$a\" was started while its images were read" <<<"$msg" ||
    lab_fail "the reason does not name $a: $msg"
lab_ok "backup failed (exit $rc) at gather-status: $msg"

lab_assert_eq "backups listed" "$(vmw_backup_count)" 0
lab_assert_eq "state of $a" "$(virsh domstate "$a")" "running"
lab_ok "nothing became visible; $a runs on"
