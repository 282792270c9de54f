#!/bin/bash
# vm-writer-incremental-reads-only-changed-extents (issue 5; R10, incremental
# backups): a running VM with two qcow2 disks is backed up; the guest then
# writes a few 64 KiB blocks to each (raw, fsync'd) and it is backed up
# again.  The second backup is incremental from the first backup's
# checkpoint: per disk a dirty context, bytes read a small fraction of the
# disk (the ratio is printed), and its content equals the guest's disks
# (whole-disk sha256, the new blocks and the old data around them).  It is a
# full backup by reference: with the first backup pruned and its chunks
# collected, the second extracts alone and verifies.  Then the bitmap of
# vdb (only) is removed in QEMU (QMP block-dirty-bitmap-remove): the next
# backup reads vdb in full (full_reason:<vdb> set, no dirty context) while
# vda stays incremental with a small read, and both disks still equal the
# guest's.
. "$(dirname "$0")/lib.sh"
lab_init
. "$LAB_TESTS_DIR/vm-writer-lib.sh"
vmw_init
# Bytes read are counted exactly: no extra reads to check the bitmap
# (issue 21; incremental-with-wrong-changed-block-tracking-... tests those).
export VMSHADOW_CBT_SAMPLE=off

KiB=1024 MiB=$((1024 * 1024)) SIZE=$((64 * 1024 * 1024))
lab_vm_create --disk qcow2:64M --disk qcow2:64M --data-disk 16M --name incr
dom=$LAB_DOM
uuid=$(virsh domuuid "$dom")
vda=${LAB_DISK_FILE[$dom/vda]} vdb=${LAB_DISK_FILE[$dom/vdb]}
lab_wait_agent "$dom"
# Old data on both disks: 256 KiB at 1 MiB (new blocks land inside it) and
# 8 MiB at 32 MiB (never written again: a full read shows by reading it).
lab_guest_run "$dom" "for d in vda vdb; do vmslab-pattern write /dev/\$d seedA $((1 * MiB)) $((256 * KiB)) >/dev/null; vmslab-pattern write /dev/\$d seedA $((32 * MiB)) $((8 * MiB)) >/dev/null; done"
lab_ok "guest wrote seedA at 1 MiB+256 KiB and 32 MiB+8 MiB of vda and vdb"

# guest_sums — "vda-sha vdb-sha" of the guest's whole disks, as it reads them.
guest_sums() {
    lab_guest_run "$dom" 'sync; echo 3 >/proc/sys/vm/drop_caches; sha256sum /dev/vda /dev/vdb' | awk '{ printf "%s ", $1 }'
}

# check_backup BID WHAT — the backup's vda and vdb, extracted alone, equal
# the guest's disks now.
check_backup() {
    local bid=$1 what=$2 want got t
    want=$(guest_sums)
    got=
    for t in vda vdb; do
        local img=${LAB_DISK_FILE[$dom/$t]}
        rm -f "$LAB_WORK/$t.raw"
        vmw_extract "$bid" "$uuid" "$img" "$LAB_WORK/$t.raw" raw
        got+="$(sha256sum "$LAB_WORK/$t.raw" | cut -d' ' -f1) "
    done
    lab_assert_eq "sha256 of vda, vdb in $what vs the guest's disks" "$got" "$want"
}

# ratio READ — READ as a percentage of the disk size, one decimal.
ratio() { awk -v r="$1" -v s="$SIZE" 'BEGIN { printf "%.2f%%", 100 * r / s }'; }

vmw_backup "$dom" || lab_fail "first backup failed: $(vmw_backup_failure)"
b1=$VMW_BID
vmw_show "$b1"
lab_assert_eq "method" "$(vmw_attr "$uuid" method)" online
lab_assert_eq "type of the first backup" "$(vmw_attr "$uuid" backup_type)" full
cp1=$(vmw_attr "$uuid" checkpoint)
[[ $cp1 == vmshadow-* ]] || lab_fail "first backup recorded no vmshadow- checkpoint: '$cp1'"
lab_ok "first backup $b1: full, checkpoint $cp1, read vda $(vmw_file_field "$uuid" "$vda" bytes_read) bytes"

# A few 64 KiB blocks: 4 on vda, 2 on vdb, the first of each inside the
# old 256 KiB, the others far apart where nothing was written before.
writes_a="$((1 * MiB + 64 * KiB)) $((9 * MiB)) $((20 * MiB)) $((63 * MiB))"
writes_b="$((1 * MiB + 128 * KiB)) $((50 * MiB))"
cmd=
for o in $writes_a; do cmd+="vmslab-pattern write /dev/vda seedB $o 65536 >/dev/null; "; done
for o in $writes_b; do cmd+="vmslab-pattern write /dev/vdb seedB $o 65536 >/dev/null; "; done
lab_guest_run "$dom" "$cmd"
lab_ok "guest wrote 64 KiB blocks of seedB at vda $writes_a, vdb $writes_b"

vmw_backup "$dom" || lab_fail "second backup failed: $(vmw_backup_failure)"
b2=$VMW_BID
vmw_show "$b2"
lab_assert_eq "type of the second backup" "$(vmw_attr "$uuid" backup_type)" incremental
lab_assert_eq "parent checkpoint" "$(vmw_attr "$uuid" parent_checkpoint)" "$cp1"
cp2=$(vmw_attr "$uuid" checkpoint)
for t in vda vdb; do
    img=${LAB_DISK_FILE[$dom/$t]}
    [ -n "$(vmw_attr "$uuid" "dirty_context:$img")" ] || lab_fail "$t has no dirty context in the incremental"
    [ -z "$(vmw_attr "$uuid" "full_reason:$img")" ] || lab_fail "$t was read in full: $(vmw_attr "$uuid" "full_reason:$img")"
done
ra=$(vmw_file_field "$uuid" "$vda" bytes_read) rb=$(vmw_file_field "$uuid" "$vdb" bytes_read)
# The bitmap granule is 64 KiB; the repository stores whole chunks, so a
# dirty chunk is read whole (its zero parts are not read): the block inside
# the old 256 KiB costs those 256 KiB, each other block 64 KiB.
[ "$ra" -ge $((4 * 64 * KiB)) ] && [ "$ra" -le $((256 * KiB + 3 * 64 * KiB)) ] ||
    lab_fail "incremental read $ra bytes of vda, want 256..448 KiB (4 blocks of 64 KiB written, one inside 256 KiB of data)"
[ "$rb" -ge $((2 * 64 * KiB)) ] && [ "$rb" -le $((256 * KiB + 64 * KiB)) ] ||
    lab_fail "incremental read $rb bytes of vdb, want 128..320 KiB (2 blocks of 64 KiB written, one inside 256 KiB of data)"
lab_ok "second backup $b2: incremental from $cp1; read vda $ra bytes ($(ratio "$ra") of 64 MiB), vdb $rb bytes ($(ratio "$rb"))"

# Full by reference: the first backup pruned and collected, the second alone.
vmw_vmshadow prune --keep-last 1 || lab_fail "prune failed: $(tail -n 3 "$VMW_ERR" | tr '\n' ' ')"
vmw_vmshadow gc --grace 0 || lab_fail "gc failed: $(tail -n 3 "$VMW_ERR" | tr '\n' ' ')"
lab_assert_eq "backups after prune" "$(vmw_backup_count)" 1
vmw_vmshadow verify --deep "$b2" || lab_fail "verify --deep $b2 failed: $(tr '\n' ' ' <"$VMW_OUT")"
check_backup "$b2" "the incremental (first backup pruned)"
for o in $writes_a; do
    sh "$LAB_DIR/guest/bin/vmslab-pattern" check "$LAB_WORK/vda.raw" seedB "$o" 65536 >/dev/null ||
        lab_fail "extracted vda lacks the new block at $o"
done
sh "$LAB_DIR/guest/bin/vmslab-pattern" check "$LAB_WORK/vda.raw" seedA $((1 * MiB)) $((64 * KiB)) >/dev/null &&
    sh "$LAB_DIR/guest/bin/vmslab-pattern" check "$LAB_WORK/vda.raw" seedA $((1 * MiB + 128 * KiB)) $((128 * KiB)) >/dev/null &&
    sh "$LAB_DIR/guest/bin/vmslab-pattern" check "$LAB_WORK/vda.raw" seedA $((32 * MiB)) $((8 * MiB)) >/dev/null ||
    lab_fail "extracted vda lost the old data around the new block"
lab_ok "incremental extracts alone (first backup pruned, chunks collected, verify --deep): equals the guest's disks"

# Remove vdb's bitmap of the latest checkpoint in QEMU (vda's stays).
node=$(virsh qemu-monitor-command "$dom" '{"execute":"query-named-block-nodes","arguments":{"flat":true}}' |
    jq -r --arg f "$vdb" --arg b "$cp2" '[.return[] | select(.file == $f and ([.["dirty-bitmaps"][]?.name] | index($b)))
        | .["node-name"]] | first // empty')
[ -n "$node" ] || lab_fail "no block node of $vdb holds bitmap $cp2"
virsh qemu-monitor-command "$dom" "{\"execute\":\"block-dirty-bitmap-remove\",\"arguments\":{\"node\":\"$node\",\"name\":\"$cp2\"}}" >/dev/null ||
    lab_fail "block-dirty-bitmap-remove $node $cp2 failed"
lab_ok "bitmap $cp2 of vdb (node $node) removed in QEMU"

cmd=
for o in $((16 * MiB)) $((48 * MiB)); do
    cmd+="vmslab-pattern write /dev/vda seedC $o 65536 >/dev/null; vmslab-pattern write /dev/vdb seedC $o 65536 >/dev/null; "
done
lab_guest_run "$dom" "$cmd"

vmw_backup "$dom" || lab_fail "third backup failed: $(vmw_backup_failure)"
b3=$VMW_BID
vmw_show "$b3"
lab_assert_eq "type of the third backup" "$(vmw_attr "$uuid" backup_type)" incremental
fr=$(vmw_attr "$uuid" "full_reason:$vdb")
[ -n "$fr" ] || lab_fail "vdb has no full_reason although its bitmap is gone"
[ -z "$(vmw_attr "$uuid" "dirty_context:$vdb")" ] || lab_fail "vdb still has a dirty context"
[ -n "$(vmw_attr "$uuid" "dirty_context:$vda")" ] || lab_fail "vda lost its dirty context: $(vmw_attr "$uuid" "full_reason:$vda")"
[ -z "$(vmw_attr "$uuid" "full_reason:$vda")" ] || lab_fail "vda was read in full: $(vmw_attr "$uuid" "full_reason:$vda")"
ra=$(vmw_file_field "$uuid" "$vda" bytes_read) rb=$(vmw_file_field "$uuid" "$vdb" bytes_read)
[ "$ra" -le $((4 * 64 * KiB)) ] || lab_fail "vda read $ra bytes, want at most 256 KiB (2 blocks written)"
# vdb in full: at least all its data (8 MiB + 256 KiB of seedA, 3 blocks
# outside them since).
[ "$rb" -ge $((8 * MiB + 256 * KiB + 3 * 64 * KiB)) ] || lab_fail "vdb read only $rb bytes, not in full"
lab_ok "third backup $b3: vdb in full ($rb bytes, $(ratio "$rb"); reason: $fr), vda incremental ($ra bytes, $(ratio "$ra"))"
check_backup "$b3" "the third backup"
lab_ok "third backup equals the guest's disks"
