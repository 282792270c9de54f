#!/bin/bash
# incremental-backup-bitmap-shows-exactly-changed-ranges: after a full
# pull-mode backup that created checkpoint cp1, the guest writes (dd
# conv=fsync, raw disk) at known offsets chosen against the bitmap's
# granularity (64 KiB: QEMU's default, the qcow2 cluster size): 4 KiB inside
# one granule, 128 KiB straddling three, 64 KiB filling one exactly, 4 KiB at
# the very end of one.  A second job, incremental from cp1 with checkpoint
# cp2, exports qemu:dirty-bitmap:backup-vda, and its block status read with
# libnbd is exactly those granules — no fewer, no more — and the export holds
# the new data there.
. "$(dirname "$0")/lib.sh"
lab_init
lab_require_probe

lab_vm_create --disk qcow2:64M
dom=$LAB_DOM
lab_wait_agent "$dom"

KiB=1024 MiB=$((1024 * 1024))
lab_guest_run "$dom" "vmslab-pattern write /dev/vda seedA 0 $((2 * MiB)); vmslab-pattern write /dev/vda seedA $((9 * MiB)) $((2 * MiB))" >/dev/null
sock1=$LAB_WORK/full.sock
lab_backup_begin "$dom" "$sock1" vda cp1
"$LAB_PROBE" "$sock1" vda pattern seedA 0 $((2 * MiB)) || lab_fail "full backup export lacks the first data"
lab_backup_end "$dom"
lab_ok "full backup with checkpoint cp1 taken"

gran=$(virsh qemu-monitor-command "$dom" '{"execute":"query-named-block-nodes","arguments":{"flat":true}}' |
    jq -r '[.return[] | .["dirty-bitmaps"][]? | select(.name == "cp1") | .granularity] | first // empty')
lab_assert_eq "granularity of bitmap cp1" "$gran" 65536
G=$gran

# offset:length of each write after cp1
writes="$((1 * MiB + 8 * KiB)):$((4 * KiB)) $((5 * MiB + 32 * KiB)):$((128 * KiB)) $((10 * MiB)):$((64 * KiB)) $((63 * MiB + 60 * KiB)):$((4 * KiB))"
for w in $writes; do
    lab_guest_run "$dom" "vmslab-pattern write /dev/vda seedB ${w%:*} ${w#*:}" >/dev/null
done
lab_ok "guest wrote seedB at $writes (offset:length)"

# Expected dirty extents: each write rounded out to granules, merged.
expected=$(for w in $writes; do
        off=${w%:*} len=${w#*:}
        s=$((off / G * G)) e=$(((off + len + G - 1) / G * G))
        echo "$s $((e - s))"
    done | sort -n | awk '
        NR > 1 && $1 == s + l { l += $2; next }
        NR > 1 { print s, l }
        { s = $1; l = $2 }
        END { if (NR) print s, l }')

sock2=$LAB_WORK/incr.sock
lab_backup_begin "$dom" "$sock2" vda cp2 cp1
got=$("$LAB_PROBE" "$sock2" vda dirty qemu:dirty-bitmap:backup-vda) ||
    lab_fail "no block status from qemu:dirty-bitmap:backup-vda"
if [ "$got" != "$expected" ]; then
    echo "# dirty extents reported:" >&2; sed 's/^/#   /' <<<"$got" >&2
    echo "# dirty extents expected:" >&2; sed 's/^/#   /' <<<"$expected" >&2
    lab_fail "dirty bitmap does not show exactly the ranges the guest changed"
fi
lab_ok "dirty bitmap shows exactly the changed granules: $(tr '\n' ';' <<<"$expected")"

for w in $writes; do
    "$LAB_PROBE" "$sock2" vda pattern seedB "${w%:*}" "${w#*:}" ||
        lab_fail "incremental export lacks the guest's new data at $w"
done
# The rest of a dirty granule keeps its old content.
"$LAB_PROBE" "$sock2" vda pattern seedA $((1 * MiB)) $((8 * KiB)) ||
    lab_fail "incremental export changed bytes the guest did not write"
lab_ok "incremental export holds the new data there, old data around it"
lab_backup_end "$dom"

lab_assert_eq "checkpoints" "$(virsh -q checkpoint-list "$dom" --name | sort | tr '\n' ' ')" "cp1 cp2 "
lab_assert_eq "parent of cp2" "$(virsh -q checkpoint-parent "$dom" cp2)" cp1
lab_ok "checkpoint chain cp1 <- cp2"
