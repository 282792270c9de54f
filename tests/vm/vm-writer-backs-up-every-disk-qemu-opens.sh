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
#   - rbd diff incrementals (issue 11): the stopped backup took an RBD
#     snapshot vmshadow-<backup id> and read the image from it, in full
#     (no earlier snapshot: the report says so); 1 % of the image is then
#     changed from the host (librbd writes at known offsets, the VM
#     stopped) and the next stopped backup reads only what `rbd diff`
#     between the two snapshots names (bytes read per disk from the
#     report, plus the sampled check), says "rbd diff since
#     vmshadow-<first>" in the report and in `show`, stores exactly the
#     image at its snapshot, and keeps only its own snapshot — another
#     tool's snapshot is left alone; a failed backup removes the snapshot
#     it took.
#   - The next online backup after those stopped ones (64 KiB written into
#     the qcow2 disk by qemu-io meanwhile) reads that disk by its bitmap
#     since the last online backup's checkpoint, not in full (the stopped
#     backups' RBD snapshots are no checkpoint of the VM), and stores it
#     equal to its image.
#   - Bad: with the CHAP password changed on the target, the stopped VM's
#     backup fails naming the VM, the disk and the login refusal; nothing
#     is stored; a restore writing into the LUN is refused at its plan,
#     naming the disk and the login refusal, with nothing changed.
#   - Bad: the RBD disk moved into a pool of the test's own, backed up,
#     the pool deleted: the backup fails naming the VM, the disk and the
#     pool, nothing stored; restoring that backup with --write-devices is
#     refused at the plan naming the disk and the pool (the image cannot
#     be made again), nothing written.
#   - Bad: the loop disk given at an LV's path (/dev/VG/data, a link as
#     udev makes) of a VG of the test's own with 4 MiB free, backed up,
#     the link removed: restoring it is refused at the plan naming the
#     VM, the disk and the VG without room, nothing written (no LV can be
#     made here: no device-mapper).
#   - Restore to the same kind (issue 11, R15, R20): with every disk
#     wiped (qcow2 and raw files, loop device, iSCSI LUN and NBD export
#     zeroed, the RBD image deleted), restore --replace of the online backup
#     without --write-devices is refused naming each device disk and the
#     option, nothing changed; with it every disk is written back into its
#     own kind (the RBD image made again with the backed-up size) and
#     holds exactly what was backed up (hashes of loop, LUN, RBD and raw
#     file; the guest's pattern in the qcow2 and NBD disks), and the
#     restored VM's guest finds its pattern on every disk; restore --to
#     DIR turns every disk into a file there with the same bytes, the
#     domain XML rewritten to file disks (the LUN and hostdev untouched).
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

# ---- issue 11: the stopped VM's RBD disk, by RBD snapshots and rbd diff
rbdpath=$(vmw_component "$uuid" | jq -r '.attributes | to_entries[]
    | select((.key | startswith("disk_target:")) and .value == "vdf") | .key[12:]')
# rbd_snaps — the image's snapshots, sorted, one line
rbd_snaps() {
    timeout 60 rbd snap ls --format json "$rbdimg" | jq -r '[.[].name] | sort | join(" ")'
}
# read_of SUMMARY — how the RBD disk was read, from a backup's --json report
read_of() {
    jq -c --arg p "$rbdpath" '[.components[]?.reads[]? | select(.path == $p)] | first // empty' "$1"
}
lab_assert_eq "RBD snapshots after the first stopped backup" "$(rbd_snaps)" "vmshadow-$bid2"
lab_assert_eq "the RBD disk's checkpoint" "$(vmw_attr "$uuid" "checkpoint:$rbdpath")" "vmshadow-$bid2"
r2=$(read_of "$VMW_SUMMARY")
lab_assert_eq "how the first stopped backup read the RBD disk" "$(jq -r .how <<<"$r2")" "full read"
grep -q 'no earlier vmshadow snapshot' <<<"$(jq -r .why <<<"$r2")" ||
    lab_fail "the report does not say why the RBD disk was read in full: $r2"
timeout 60 rbd snap create "$rbdimg@keepme" || lab_fail "cannot make another tool's snapshot"
# 1 % of the 16 MiB image (6 writes, 168 KiB, random bytes) written from the
# host through librbd (Debian's python3-rbd, which ceph-common depends on:
# /usr/bin/python3, whatever python3 the PATH finds first) while the
# VM is stopped, all in the image's second 4 MiB object
/usr/bin/python3 - "$rbdimg" <<'PY' || lab_fail "cannot write into $rbdimg from the host"
import os, sys, rados, rbd
pool, name = sys.argv[1].split('/')
M, K = 1 << 20, 1 << 10
with rados.Rados(conffile=os.environ['CEPH_CONF']) as c, c.open_ioctx(pool) as io, rbd.Image(io, name) as img:
    for off, n in ((4 * M, 32 * K), (4 * M + 300 * K, 32 * K), (5 * M, 32 * K),
                   (5 * M + 516 * K, 32 * K), (6 * M + 100 * K, 32 * K), (7 * M + 512 * K, 8 * K)):
        img.write(os.urandom(n), off)
PY
# what rbd diff names since the first snapshot (the image now is what the
# next backup's snapshot holds: the VM is stopped; the backup removes the
# older snapshot): whole objects when the image has fast-diff (as vmshadow
# asks librbd), else the exact extents
whole=
timeout 60 rbd info --format json "$rbdimg" | jq -e '.features | index("fast-diff")' >/dev/null && whole=--whole-object
diffjson=$(timeout 60 rbd diff $whole --from-snap "vmshadow-$bid2" --format json "$rbdimg") ||
    lab_fail "rbd diff since vmshadow-$bid2 failed"
named=$(jq '[.[].length] | add // 0' <<<"$diffjson")
nextents=$(jq length <<<"$diffjson")
rc=0
vmw_backup "$dom" || rc=$?
[ $rc -eq 3 ] || lab_fail "the incremental backup of stopped $dom exited $rc, not 3: $(vmw_backup_failure)"
bid3=$VMW_BID
r3=$(read_of "$VMW_SUMMARY")
grep -q "^rbd diff since vmshadow-$bid2 (" <<<"$(jq -r .how <<<"$r3")" ||
    lab_fail "the RBD disk was not read by an rbd diff since vmshadow-$bid2: $r3"
read3=$(jq .bytes_read <<<"$r3")
sampled=$(jq .sampled <<<"$r3")
chunk=$((128 * 1024))        # VMS_CHUNK_SIZE: a chunk with a changed byte is read whole
[ "$named" -gt 0 ] && [ "$read3" -ge "$named" ] &&
    [ "$read3" -le $((named + 2 * chunk * nextents + chunk * sampled)) ] &&
    [ "$read3" -lt $((8 * MiB)) ] ||
    lab_fail "the incremental read $read3 bytes of the RBD disk; rbd diff $whole names $named bytes in $nextents extents (sampled $sampled chunks)"
vmw_show "$bid3"
vmw_vmshadow show "$bid3" || lab_fail "vmshadow show $bid3 failed"
grep -q "read by rbd diff since vmshadow-$bid2" "$VMW_OUT" ||
    lab_fail "vmshadow show $bid3 does not say how the RBD disk was read: $(grep -A1 rbd "$VMW_OUT" | head -n 4 | tr '\n' ' ')"
vmw_extract "$bid3" "$uuid" "$rbdpath" "$LAB_WORK/$bid3-vdf.raw" raw
lab_assert_eq "RBD disk of the incremental" "$(sha256sum <"$LAB_WORK/$bid3-vdf.raw")" \
    "$(timeout 120 rbd export --no-progress "$rbdimg@vmshadow-$bid3" - | sha256sum)"
lab_assert_eq "RBD disk of the incremental = the image now" "$(sha256sum <"$LAB_WORK/$bid3-vdf.raw")" "$(backing_sum vdf)"
lab_assert_eq "RBD snapshots after the incremental" "$(rbd_snaps)" "keepme vmshadow-$bid3"
lab_ok "stopped incremental $bid3: the RBD disk read by rbd diff since vmshadow-$bid2 ($read3 bytes read, rbd diff $whole names $named, $sampled chunks sampled), stored equal to the image; only its own snapshot kept, another tool's left alone"

# ---- issue 11: after the stopped backups, the next online backup reads
# the qcow2 disk by its bitmap since the last online backup's checkpoint
# (the stopped backups' RBD snapshots are no checkpoint libvirt knows).
# 64 KiB are written into vda's image while the VM is stopped, through
# QEMU (qemu-io), which keeps its persistent bitmaps.
vdapath=$(vmw_component "$uuid" | jq -r '.attributes | to_entries[]
    | select((.key | startswith("disk_target:")) and .value == "vda") | .key[12:]')
qemu-io -f qcow2 -c "write -P 0x5a $((8 * MiB)) 64k" "${LAB_DISK_FILE[$dom/vda]}" >/dev/null ||
    lab_fail "qemu-io could not write into vda's image"
virsh -q start "$dom" >/dev/null || lab_fail "virsh start $dom failed"
rc=0
vmw_backup --method crash-consistent "$dom" || rc=$?
virsh -q destroy "$dom" >/dev/null || lab_fail "virsh destroy $dom failed"
[ $rc -eq 3 ] || lab_fail "the online backup after the stopped ones exited $rc, not 3: $(vmw_backup_failure)"
bid4=$VMW_BID
r4=$(jq -c --arg p "$vdapath" '[.components[]?.reads[]? | select(.path == $p)] | first // empty' "$VMW_SUMMARY")
lab_assert_eq "how the online backup after the stopped ones read vda" "$(jq -r .how <<<"$r4")" \
    "dirty bitmap since vmshadow-$bid"
read4=$(jq .bytes_read <<<"$r4")
sampled4=$(jq .sampled <<<"$r4")
[ "$read4" -ge $((64 * 1024)) ] && [ "$read4" -le $((2 * chunk + chunk * sampled4)) ] ||
    lab_fail "the online incremental read $read4 bytes of vda, where 64 KiB changed (sampled $sampled4 chunks): $r4"
lab_assert_eq "how the running VM's RBD disk was read" "$(read_of "$VMW_SUMMARY" | jq -r .how)" "full read"
vmw_extract "$bid4" "$uuid" "$vdapath" "$LAB_WORK/$bid4-vda.raw" raw
qemu-img convert -U -f qcow2 -O raw "${LAB_DISK_FILE[$dom/vda]}" "$LAB_WORK/now-vda.raw" ||
    lab_fail "cannot read vda's image"
lab_assert_eq "vda of the online incremental = its image" "$(sha256sum <"$LAB_WORK/$bid4-vda.raw")" \
    "$(sha256sum <"$LAB_WORK/now-vda.raw")"
lab_ok "online backup $bid4 after the stopped ones: vda read by its bitmap since vmshadow-$bid ($read4 bytes, $sampled4 chunks sampled), stored equal to its image; the running VM's RBD disk read in full"

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
lab_assert_eq "RBD snapshots after the failed backup" "$(rbd_snaps)" "keepme vmshadow-$bid3"
lab_ok "refused iSCSI login: exit $rc, names the disk and why, nothing stored, the RBD snapshot it took removed ($msg)"

# ---- restore into a LUN whose target refuses the login: refused at the
# plan, before anything changes (issue 11)
. "$LAB_TESTS_DIR/restore-lib.sh"
lunfile=${LAB_DISK_FILE[$dom/vdd]}
# What a refused restore must leave as it was: the host's view of the VM
# and its files, and the bytes of the loop, iSCSI and NBD disks.
host_now() { rst_host_state "$dom" -- "${LAB_DISK_FILE[$dom/vda]}" "${LAB_DISK_FILE[$dom/vdb]}" "$lunfile"; }
devices_now() { local t; for t in vdb vdc vdd; do backing_sum $t; done; }
remember_host() { before=$(host_now); sums_before=$(devices_now); }
assert_nothing_changed() {   # WHY
    lab_assert_eq "host after the refused restore ($1)" "$(host_now)" "$before"
    lab_assert_eq "devices after the refused restore ($1)" "$(devices_now)" "$sums_before"
}
before=$(host_now)
rc=0
rst_restore "$bid2" --replace --write-devices || rc=$?
[ $rc -ne 0 ] || lab_fail "a restore into an iSCSI LUN that refuses the login was not refused"
grep -q "disk vdd, the network disk iscsi://127.0.0.1:3261/$iqn/1" "$RST_ERR" &&
    grep -qi 'log in\|login\|Authentication' "$RST_ERR" ||
    lab_fail "the refusal does not name the LUN and the refused login: $(tr '\n' ' ' <"$RST_ERR")"
lab_assert_eq "host after the refused restore" "$(host_now)" "$before"
lab_ok "restore into the LUN with its login refused: refused (exit $rc) naming vdd and the login, nothing changed"

# the right password again (libvirt's secret holds it)
pass=$(virsh secret-get-value "${LAB_DISK_SECRET[$dom/vdd]}" | base64 -d)
tgtadm -C 17 --lld iscsi --op delete --mode account --user "vmslab$$" >/dev/null &&
    tgtadm -C 17 --lld iscsi --op new --mode account --user "vmslab$$" --password "$pass" >/dev/null &&
    tgtadm -C 17 --lld iscsi --op bind --mode account --tid "$tid" --user "vmslab$$" >/dev/null ||
    lab_fail "cannot put the CHAP password back"

# ---- restore to the same kind (issue 11): wipe every disk, restore the
# online backup
dd if=/dev/zero of="$loopdev" bs=1M count=16 conv=fsync status=none || lab_fail "cannot zero $loopdev"
dd if=/dev/zero of="$lunfile" bs=1M count=16 conv=notrunc,fsync status=none || lab_fail "cannot zero $lunfile"
dd if=/dev/zero of="${LAB_DISK_FILE[$dom/vdb]}" bs=1M count=16 conv=notrunc,fsync status=none ||
    lab_fail "cannot zero vdb's image"
qemu-io -f qcow2 -c "write -z 0 16M" "${LAB_DISK_FILE[$dom/vda]}" >/dev/null || lab_fail "cannot zero vda's image"
# (the NBD disk's is the domain's only Unix socket host)
nbdsock=$(virsh -q dumpxml --inactive "$dom" | sed -n "s/.*<host transport='unix' socket='\([^']*\)'.*/\1/p")
[ -S "$nbdsock" ] || lab_fail "the NBD disk's socket is not in the domain XML: '$nbdsock'"
qemu-io -f raw -c "write -z 0 16M" "nbd+unix:///vmslab?socket=$nbdsock" >/dev/null ||
    lab_fail "cannot zero the NBD export at $nbdsock"
timeout 60 rbd snap purge --no-progress "$rbdimg" >/dev/null 2>&1 &&
    timeout 60 rbd rm --no-progress "$rbdimg" >/dev/null 2>&1 || lab_fail "cannot delete $rbdimg"
zero=$(head -c $((16 * MiB)) /dev/zero | sha256sum)
for t in vdb vdc vdd; do
    lab_assert_eq "$t wiped" "$(backing_sum $t)" "$zero"
done
rc=0
rst_restore "$bid" --replace || rc=$?
[ $rc -ne 0 ] || lab_fail "a restore into block and network disks without --write-devices was not refused"
for t in vdc:"the host block device $loopdev" vdd:"the network disk iscsi://127.0.0.1:3261/$iqn/1" \
         vde:"the network disk nbd+unix://" vdf:"the network disk rbd://127.0.0.1:6789/$rbdimg"; do
    grep -qF "disk ${t%%:*} is ${t#*:}" "$RST_ERR" ||
        lab_fail "the refusal does not name disk ${t%%:*} (${t#*:}): $(tr '\n' ' ' <"$RST_ERR")"
done
grep -q -- '--write-devices' "$RST_ERR" || lab_fail "the refusal does not name --write-devices"
lab_assert_eq "loop device after the refusal" "$(backing_sum vdc)" "$zero"
timeout 60 rbd info "$rbdimg" >/dev/null 2>&1 && lab_fail "the refused restore made the RBD image"
lab_ok "restore without --write-devices refused (exit $rc), naming the loop, iSCSI, NBD and RBD disks; nothing written"

rc=0
rst_restore "$bid" --replace --write-devices || rc=$?
[ $rc -eq 0 ] || lab_fail "restore --replace --write-devices exited $rc: $(tail -n 5 "$RST_ERR" | tr '\n' ' ')"
lab_assert_eq "domain after restore" "$(virsh -q domuuid "$dom")" "$uuid"
lab_assert_eq "RBD image size" "$(timeout 60 rbd info --format json "$rbdimg" | jq .size)" $((16 * MiB))
for i in 1 2 3 5; do        # vdb (raw file), vdc (loop), vdd (LUN), vdf (RBD)
    lab_assert_eq "${disks[i]} after restore" "$(backing_sum "${disks[i]}")" "${sums[i]}"
done
for t in vda vde; do        # qcow2 files (vde behind the lab's qemu-nbd)
    qemu-img convert -U -f qcow2 -O raw "${LAB_DISK_FILE[$dom/$t]}" "$LAB_WORK/after-$t.raw" ||
        lab_fail "cannot read ${LAB_DISK_FILE[$dom/$t]}"
    sh "$pattern" check "$LAB_WORK/after-$t.raw" "seed-$t" $MiB $((2 * MiB)) >/dev/null ||
        lab_fail "disk $t after restore does not hold what the guest wrote"
done
# (no `cmd | grep -q` under pipefail: grep's early exit fails the pipe)
grep -q "<source protocol='rbd' name='$rbdimg'" <<<"$(virsh -q dumpxml --inactive "$dom")" ||
    lab_fail "the restored domain's RBD disk is no longer the RBD image"
lab_ok "restore --write-devices of the online backup: every disk wiped before; raw file, loop device, iSCSI LUN and the RBD image (made again, 16 MiB) hold exactly what was backed up, the qcow2 and NBD disks the guest's pattern"
# the guest checks what it wrote, on every disk, in the restored VM
virsh -q start "$dom" >/dev/null || lab_fail "the restored $dom does not start"
lab_wait_agent "$dom"
for t in "${disks[@]}"; do
    lab_guest_run "$dom" "vmslab-pattern check /dev/$t seed-$t $MiB $((2 * MiB))" >/dev/null ||
        lab_fail "the guest does not find what it wrote on /dev/$t after the restore"
done
virsh -q destroy "$dom" >/dev/null || lab_fail "virsh destroy $dom failed"
lab_ok "the restored VM runs, and its guest finds what it wrote on every disk (vda..vdf)"

# ---- bad: the RBD disk's pool is gone (issue 11). The disk is moved to
# an image in a pool of this test's own, backed up stopped, the pool
# deleted: the next backup fails naming the VM, the disk and the pool,
# storing nothing; a restore of the backup into it is refused at its plan
# (the image cannot be made again), before any disk is written.
gpool=vmslab-gone-$$
gone_pool_rm() { timeout 120 ceph osd pool rm "$gpool" "$gpool" --yes-i-really-really-mean-it >/dev/null 2>&1; }
timeout 120 ceph osd pool create "$gpool" 8 >/dev/null 2>&1 &&
    timeout 60 rbd pool init "$gpool" && timeout 60 rbd create --size 16M "$gpool/img" ||
    { gone_pool_rm; lab_fail "cannot make the pool $gpool with an image"; }
virsh -q dumpxml --inactive "$dom" >"$LAB_WORK/orig.xml"
sed "s|<source protocol='rbd' name='$rbdimg'|<source protocol='rbd' name='$gpool/img'|" \
    "$LAB_WORK/orig.xml" >"$LAB_WORK/gone.xml"
virsh -q define "$LAB_WORK/gone.xml" >/dev/null || { gone_pool_rm; lab_fail "cannot redefine $dom"; }
rc=0
vmw_backup "$dom" || rc=$?
bidg=$VMW_BID
gone_pool_rm || lab_fail "cannot delete the pool $gpool"
[ $rc -eq 3 ] || lab_fail "the stopped backup with vdf in $gpool exited $rc, not 3: $(vmw_backup_failure)"
n0=$(vmw_backup_count)
rc=0
vmw_backup "$dom" || rc=$?
[ $rc -ne 0 ] && [ $rc -ne 3 ] || lab_fail "a backup whose RBD pool is gone exited $rc"
msg=$(vmw_backup_failure)
grep -qF "$dom" <<<"$msg" && grep -qF "$gpool/img" <<<"$msg" && grep -qi "pool" <<<"$msg" ||
    lab_fail "the failure does not name the VM, the disk and its pool: $msg"
lab_assert_eq "backups after the gone pool" "$(vmw_backup_count)" "$n0"
lab_ok "backup with the RBD pool gone: exit $rc, names the VM, the disk and the pool, nothing stored ($msg)"
remember_host
rc=0
rst_restore "$bidg" --replace --write-devices || rc=$?
[ $rc -ne 0 ] || lab_fail "a restore into an RBD image whose pool is gone was not refused"
grep -q "disk vdf, the network disk rbd://127.0.0.1:6789/$gpool/img" "$RST_ERR" &&
    grep -q "cannot open the Ceph pool \"$gpool\"" "$RST_ERR" ||
    lab_fail "the refusal does not name the RBD disk and its gone pool: $(tr '\n' ' ' <"$RST_ERR")"
assert_nothing_changed "gone pool"
lab_ok "restore into the RBD disk of a gone pool: refused at its plan (exit $rc) naming vdf and the pool; no disk written"
virsh -q define "$LAB_WORK/orig.xml" >/dev/null || lab_fail "cannot define $dom again"

# ---- bad: a volume group with no room (issue 11). The lab's kernel has
# no device-mapper, so no LV can be active here: vdc (the loop device) is
# given at an LV's path, /dev/VG/data (a link to the loop device, as udev
# makes one to dm-N), of a VG of this test's own on an 8 MiB loop device,
# and backed up stopped; the link removed (the LV is gone), a restore of
# that backup is refused at its plan, naming the VM, the disk and the VG
# without room for 16 MiB (the LV-recreation plan on lvs/vgs), with
# nothing written.
export LVM_SUPPRESS_FD_WARNINGS=1
lvvg=vmslabvg$$
truncate -s 8M "$LAB_WORK/pv.img"
pvdev=$(losetup --find --show "$LAB_WORK/pv.img") || lab_fail "losetup of the PV's file failed"
lab__undo_push loop "$pvdev"
vgcreate -q "$lvvg" "$pvdev" >/dev/null || lab_fail "vgcreate $lvvg on $pvdev failed"
mkdir "/dev/$lvvg" && ln -s "$loopdev" "/dev/$lvvg/data" || lab_fail "cannot make /dev/$lvvg/data"
sed "s|<source dev='$loopdev'/>|<source dev='/dev/$lvvg/data'/>|" "$LAB_WORK/orig.xml" >"$LAB_WORK/lv.xml"
grep -q "/dev/$lvvg/data" "$LAB_WORK/lv.xml" || { rm -rf "/dev/$lvvg"; lab_fail "vdc's source is not in the XML"; }
virsh -q define "$LAB_WORK/lv.xml" >/dev/null || { rm -rf "/dev/$lvvg"; lab_fail "cannot redefine $dom"; }
rc=0
vmw_backup "$dom" || rc=$?
bidl=$VMW_BID
rm -rf "/dev/$lvvg"
[ $rc -eq 3 ] || lab_fail "the stopped backup with vdc at /dev/$lvvg/data exited $rc, not 3: $(vmw_backup_failure)"
remember_host
rc=0
rst_restore "$bidl" --replace --write-devices || rc=$?
[ $rc -ne 0 ] || lab_fail "a restore into an LV that is gone, in a VG with no room, was not refused"
grep -qF "vm \"$dom\": disk vdc, the host block device /dev/$lvvg/data" "$RST_ERR" &&
    grep -qF "volume group $lvvg has no room for it: 4194304 bytes free, 16777216 needed" "$RST_ERR" ||
    lab_fail "the refusal does not name the VM, the LV's disk and the VG without room: $(tr '\n' ' ' <"$RST_ERR")"
assert_nothing_changed "no room"
lab_ok "restore into an LV that is gone, its VG without room: refused at its plan (exit $rc) naming $dom, vdc and the VG's free bytes; nothing written"

# ---- the VG given room (a second PV of 32 MiB): the plan would make the
# LV again with lvcreate, which needs the kernel's device-mapper; this
# lab's kernel has none, so the restore must refuse at its plan saying so,
# rather than fail at lvcreate after other disks were written.
truncate -s 32M "$LAB_WORK/pv2.img"
pv2dev=$(losetup --find --show "$LAB_WORK/pv2.img") || lab_fail "losetup of the second PV's file failed"
lab__undo_push loop "$pv2dev"
vgextend -q "$lvvg" "$pv2dev" >/dev/null || lab_fail "vgextend $lvvg with $pv2dev failed"
if dmsetup version >/dev/null 2>&1; then
    lab_ok "SKIP the gone LV's re-creation: this kernel has device-mapper, and this test does not make a real LV"
else
    rc=0
    rst_restore "$bidl" --replace --write-devices || rc=$?
    [ $rc -ne 0 ] || lab_fail "a restore into a gone LV on a host without device-mapper was not refused"
    grep -qF "vm \"$dom\": disk vdc, the host block device /dev/$lvvg/data: its logical volume is gone; volume group $lvvg has room to make it again, but the kernel's device-mapper does not answer" "$RST_ERR" ||
        lab_fail "the refusal does not name the VM, the LV's disk and the missing device-mapper: $(tr '\n' ' ' <"$RST_ERR")"
    assert_nothing_changed "no device-mapper"
    lab_ok "restore into an LV that is gone, its VG with room: the plan would lvcreate it, and refuses (exit $rc) as this kernel has no device-mapper; nothing written"
fi
vgremove -q -f "$lvvg" >/dev/null && pvremove -q "$pvdev" "$pv2dev" >/dev/null || lab_fail "cannot remove the VG $lvvg"
virsh -q define "$LAB_WORK/orig.xml" >/dev/null || lab_fail "cannot define $dom again"

mkdir -p "$LAB_WORK/to"
rc=0
rst_restore "$bid2" --replace --to "$LAB_WORK/to" || rc=$?
[ $rc -eq 0 ] || lab_fail "restore --replace --to exited $rc: $(tail -n 5 "$RST_ERR" | tr '\n' ' ')"
xml=$(virsh -q dumpxml --inactive "$dom")
i=0
for t in "${disks[@]}"; do
    f=$(virsh -q domblklist "$dom" --details | awk -v t="$t" '$3 == t { print $1 " " $4 }')
    case $t in
        vda|vdb) want="file $LAB_WORK/to/$(basename "${LAB_DISK_FILE[$dom/$t]}")" ;;
        *) want="file $LAB_WORK/to/$dom-$t.raw" ;;  # devices and network disks
    esac
    lab_assert_eq "disk $t after restore --to" "$f" "$want"
    img=${want#file }
    case $t in
        vda|vde)    # the guest's pattern (vda a qcow2; vde the NBD export's data, raw)
            fmt=qcow2
            [ "$t" = vde ] && fmt=raw
            qemu-img convert -f "$fmt" -O raw "$img" "$LAB_WORK/to-$t.raw" || lab_fail "cannot read $img as $fmt"
            sh "$pattern" check "$LAB_WORK/to-$t.raw" "seed-$t" $MiB $((2 * MiB)) >/dev/null ||
                lab_fail "disk $t as a file does not hold what the guest wrote" ;;
        *)
            lab_assert_eq "disk $t as a file" "$(sha256sum <"$img")" "${sums[i]}" ;;
    esac
    i=$((i + 1))
done
grep -q "<source protocol='iscsi' name='${LAB_DISK_IQN[$dom/vdg]}/1'" <<<"$xml" ||
    lab_fail "the excluded LUN is no longer in the domain XML"
# nothing made at a URI taken as a relative path (links, directories)
for d in "$PWD" "$LAB_WORK" "$VMSHADOW_VM_STATE_DIR"; do
    [ -e "$d/iscsi:" ] || [ -e "$d/rbd:" ] || [ -e "$d/nbd+unix:" ] &&
        lab_fail "a restore made something at a URI taken as a path under $d"
done
lab_ok "restore --to: every disk (files, loop, iSCSI, NBD, RBD) is a file in $LAB_WORK/to with the backed-up bytes; the XML names those files"
