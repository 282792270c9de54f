#!/bin/bash
# pull-backup-exports-what-the-guest-wrote: with the guest frozen, a
# pull-mode libvirt backup job (virsh backup-begin, NBD on a Unix socket,
# qcow2 scratch files, a first checkpoint) starts; the guest is thawed.
# Read with libnbd (tests/vm/nbd-probe), the exports hold exactly what the
# guest wrote: the known pattern at the offsets written on the raw disk, with
# the guest's checksums, zeros elsewhere, base:allocation telling the two
# apart; and on the ext4 disk, a clean file system whose file has the
# guest's checksum.  Writes the guest makes after the job started do not
# show: the export is a point-in-time view.
. "$(dirname "$0")/lib.sh"
lab_init
lab_require_probe

# vda: ext4 data disk (mounted on /data); vdb: qcow2 the guest uses raw.
lab_vm_create --data-disk 64M --disk qcow2:32M
dom=$LAB_DOM
lab_wait_agent "$dom"

# Known pattern at known places of vdb, and a file on /data.
ranges="0:65536 1048576:262144 20971520:4096"
declare -A gsum=()
for r in $ranges; do
    off=${r%:*} len=${r#*:}
    gsum[$r]=$(lab_guest_run "$dom" "vmslab-pattern write /dev/vdb seedA $off $len")
done
fsum=$(lab_guest_run "$dom" 'vmslab-pattern write /data/file.bin seedF 0 524288')
lab_ok "guest wrote pattern seedA at $ranges of vdb and /data/file.bin"

sock=$LAB_WORK/backup.sock
lab_assert_eq "freeze" "$(lab_agent "$dom" '{"execute":"guest-fsfreeze-freeze"}')" 1
lab_backup_begin "$dom" "$sock" "vda vdb" cp1
lab_assert_eq "thaw" "$(lab_agent "$dom" '{"execute":"guest-fsfreeze-thaw"}')" 1
[ -S "$sock" ] || lab_fail "backup job has no NBD socket at $sock"
lab_ok "pull-mode backup job started with checkpoint cp1 while the guest was frozen"

# The guest overwrites the first range now; the export must not show it.
lab_guest_run "$dom" 'vmslab-pattern write /dev/vdb seedB 0 65536' >/dev/null

size=$("$LAB_PROBE" "$sock" vdb size)
lab_assert_eq "vdb export size" "$size" $((32 * 1024 * 1024))
for r in $ranges; do
    off=${r%:*} len=${r#*:}
    "$LAB_PROBE" "$sock" vdb pattern seedA "$off" "$len" ||
        lab_fail "vdb export at $off+$len does not hold what the guest wrote before the job"
    got=$("$LAB_PROBE" "$sock" vdb read "$off" "$len" | sha256sum | cut -d' ' -f1)
    lab_assert_eq "sha256 of vdb $off+$len over NBD" "$got" "${gsum[$r]}"
done
lab_ok "vdb export holds pattern seedA with the guest's checksums (incl. 0+65536, overwritten since)"
"$LAB_PROBE" "$sock" vdb zero 4194304 8388608 || lab_fail "vdb export is not zero where the guest never wrote"
lab_ok "vdb export reads zeros where the guest never wrote"

"$LAB_PROBE" "$sock" vdb extents base:allocation >"$LAB_WORK/alloc"
# bit 1 = zero: written ranges must be data, [4M, 12M) must read as zero
awk -v ranges="$ranges" '
    BEGIN { n = split(ranges, r, " ") }
    { s[NR] = $1; l[NR] = $2; f[NR] = $3 }
    function flags_at(o,   i) { for (i = 1; i <= NR; i++) if (o >= s[i] && o < s[i] + l[i]) return f[i]; return -1 }
    END {
        for (i = 1; i <= n; i++) { split(r[i], p, ":"); if (int(flags_at(p[1]) / 2) % 2) { print "written range " r[i] " reported as zero"; exit 1 } }
        for (o = 4194304; o < 12582912; o += 65536) if (!(int(flags_at(o) / 2) % 2)) { print "unwritten offset " o " reported as data"; exit 1 }
    }' "$LAB_WORK/alloc" || lab_fail "base:allocation of the vdb export is wrong: $(tr '\n' ';' <"$LAB_WORK/alloc")"
lab_ok "base:allocation marks the written ranges as data and unwritten space as zero"

lab_assert_eq "guest sees its new write" \
    "$(lab_guest_run "$dom" 'vmslab-pattern check /dev/vdb seedB 0 65536')" \
    "$(sh "$LAB_DIR/guest/bin/vmslab-pattern" sum seedB 0 65536)"

# vda: copy the export out and look at the file system in it.
vsize=$("$LAB_PROBE" "$sock" vda size)
"$LAB_PROBE" "$sock" vda read 0 "$vsize" >"$LAB_WORK/vda.img"
e2fsck -fn "$LAB_WORK/vda.img" >"$LAB_WORK/fsck.out" 2>&1 ||
    lab_fail "ext4 in the vda export is not clean: $(tail -n 3 "$LAB_WORK/fsck.out" | tr '\n' ' ')"
got=$(debugfs -R 'cat /file.bin' "$LAB_WORK/vda.img" 2>/dev/null | sha256sum | cut -d' ' -f1)
lab_assert_eq "sha256 of /data/file.bin in the vda export" "$got" "$fsum"
lab_ok "vda export: clean ext4 (e2fsck -fn) whose file.bin has the guest's checksum"

lab_backup_end "$dom"
virsh -q checkpoint-list "$dom" --name | grep -x >/dev/null cp1 || lab_fail "checkpoint cp1 missing after the job"
lab_ok "job ended; checkpoint cp1 stays"
