#!/usr/bin/env bash
# incremental-with-wrong-changed-block-tracking-is-read-in-full (issue 21):
# after a full backup the VM is shut down and 4 KiB of its qcow2 disk are
# changed in the image file itself, outside QEMU — the dirty bitmap never
# hears of it, exactly what a CBT bug or an image copied back behind
# libvirt's back looks like. The next incremental samples the chunks the
# bitmap calls unchanged (all of them here: --sample 100), finds
# the difference, reads the disk in full in the same run, says so naming
# the disk, and stores a disk equal to what the guest reads.
. "$(dirname "$0")/lib.sh"
lab_init
. "$LAB_TESTS_DIR/vm-writer-lib.sh"
vmw_init

MiB=$((1024 * 1024))
lab_vm_create --disk qcow2:64M --name cbt
dom=$LAB_DOM
uuid=$(virsh domuuid "$dom")
vda=${LAB_DISK_FILE[$dom/vda]}
lab_wait_agent "$dom"
lab_guest_run "$dom" "vmslab-pattern write /dev/vda seedA $((32 * MiB)) $((8 * MiB)) >/dev/null; sync"
vmw_backup "$dom" || lab_fail "first backup failed: $(vmw_backup_failure)"
b1=$VMW_BID
lab_assert_eq "type of the first backup" "$(vmw_show "$b1"; vmw_attr "$uuid" backup_type)" full

# A clean shutdown: QEMU writes the persistent bitmap back to the image.
virsh -q shutdown "$dom" --mode agent >/dev/null || lab_fail "virsh shutdown $dom failed"
for _ in $(seq 120); do [ "$(virsh -q domstate "$dom")" = "shut off" ] && break; sleep 1; done
lab_assert_eq "state after shutdown" "$(virsh -q domstate "$dom")" "shut off"

# 4 KiB at guest offset 36 MiB, written at its place in the qcow2 file.
off=$(qemu-img map -f qcow2 --output=json "$vda" | python3 -c '
import json, sys
want = int(sys.argv[1])
for e in json.load(sys.stdin):
    if e["data"] and e["start"] <= want < e["start"] + e["length"]:
        print(e["offset"] + want - e["start"]); break' $((36 * MiB)))
[ -n "$off" ] || lab_fail "guest offset 36 MiB of $vda is not allocated"
head -c 4096 /dev/urandom | dd of="$vda" bs=4096 seek=$((off / 4096)) conv=notrunc status=none
lab_ok "4 KiB of vda changed at host offset $off of $vda, behind QEMU's back"

virsh -q start "$dom" >/dev/null || lab_fail "virsh start $dom failed"
lab_wait_agent "$dom"
rc=0
vmw_backup --sample 100 "$dom" || rc=$?
lab_assert_eq "exit status (stored, with warnings)" "$rc" 3
b2=$VMW_BID summary=$VMW_SUMMARY
[ -n "$b2" ] || lab_fail "second backup stored nothing: $(vmw_backup_failure)"
lab_assert_eq "outcome" "$(jq -r .outcome "$summary")" warnings
got=$(jq -r --arg p "$vda" '.components[].cbt_wrong[] | select(.path == $p) | "\(.differed) of \(.sampled)"' "$summary")
[ -n "$got" ] || lab_fail "the report does not name $vda: $(jq -c '.components[] | {component, cbt_wrong}' "$summary")"
vmw_show "$b2"
lab_assert_eq "type of the second backup" "$(vmw_attr "$uuid" backup_type)" incremental
read_bytes=$(vmw_file_field "$uuid" "$vda" bytes_read)
[ "$read_bytes" -ge $((8 * MiB)) ] || lab_fail "vda read $read_bytes bytes: not in full"
vmw_vmshadow show "$b2" || lab_fail "show $b2 failed"
grep -q "Changed-block tracking was wrong for $vda" "$VMW_OUT" ||
    lab_fail "show does not say it: $(cat "$VMW_OUT")"
lab_ok "detected ($got sampled chunks differed), read in full ($read_bytes bytes), exit 3, named in the report and by show"

# What was stored is what the guest reads.
want=$(lab_guest_run "$dom" 'sync; echo 3 >/proc/sys/vm/drop_caches; sha256sum /dev/vda' | cut -d' ' -f1)
vmw_extract "$b2" "$uuid" "$vda" "$LAB_WORK/vda.raw" raw
lab_assert_eq "sha256 of vda in $b2 vs the guest's" "$(sha256sum "$LAB_WORK/vda.raw" | cut -d' ' -f1)" "$want"
