#!/bin/bash
# bench/files.sh — file-level restore (issue 16, R26): the time to get one
# file out of a backed-up 4 GiB disk with `vmshadow files get`, against
# raw limits measured in the same run.
#
#   flock /var/lock/vmshadow-vm-suite bench/files.sh [BUILD-DIR] [SIZE-GIB] [FILE-MIB]
#                                       (defaults: build, 4, 16)
#
# A stopped VM definition (vmslab-bench-fr-<pid>, never started) has one
# raw disk of SIZE GiB: an MBR partition with an ext4 holding 1 GiB of
# random data in 8 files and the FILE-MIB MiB random file to get back,
# made by guestfish (nothing is mounted on the host). It is backed up
# (offline, from its image) into a fresh repository. Then, page cache
# dropped before each:
#   files      `vmshadow files BACKUP VM get /sda1/want.bin`: exports of
#              the repository + the libguestfs appliance
#   guestfish  the same file with guestfish straight from the disk image
#              (the same appliance, no repository: the floor for any
#              sandboxed file restore here)
#   appliance  guestfish starting the appliance on an empty disk and
#              stopping it: the fixed part of both
#   extract    `vmshadow extract` of the whole disk (what getting the file
#              costs without file-level restore, before even mounting it)
#   raw read   reading the whole disk image sequentially (the I/O floor of
#              any whole-disk restore)
# Ratios: files / guestfish (what the repository's exports add) and
# files / extract (what file-level restore saves). The appliance runs
# under TCG where KVM is absent or hangs (LIBGUESTFS_BACKEND_SETTINGS,
# docs/file-restore.md); the run says which. Work files (about SIZE GiB
# sparse + 1 GiB of repository + SIZE GiB extracted) go to a fresh
# directory under $BENCH_DIR (default /var/tmp), removed at the end.
set -euo pipefail
export LC_ALL=C LIBVIRT_DEFAULT_URI=qemu:///system

BUILD=$(realpath "${1:-build}")
SIZE=${2:-4}
FILE_MIB=${3:-16}
VMSHADOW=$BUILD/cli/vmshadow
SRC=$(cd "$(dirname "$0")/.." && pwd)
[ -x "$VMSHADOW" ] || { echo "no $VMSHADOW: build first (ninja -C $BUILD)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "needs root (libvirt, page cache)" >&2; exit 1; }
[ "$SIZE" -ge 2 ] || { echo "SIZE-GIB must be at least 2 (1 GiB of data)" >&2; exit 1; }
for p in guestfish virsh jq bc; do
  command -v $p >/dev/null || { echo "$p is not installed (scripts/install-deps.sh)" >&2; exit 1; }
done
export VMSHADOW_NBDKIT_PLUGIN=${VMSHADOW_NBDKIT_PLUGIN:-$BUILD/plugins/nbdkit/nbdkit-vmshadow-plugin.so}
[ -f "$VMSHADOW_NBDKIT_PLUGIN" ] || { echo "no $VMSHADOW_NBDKIT_PLUGIN" >&2; exit 1; }
"$SRC/scripts/guestfs-appliance.sh" -q
# The fixed appliance vmshadow uses (docs/file-restore.md), for guestfish too.
APPLIANCE=${VMSHADOW_APPLIANCE:-/var/cache/vmshadow/appliance}
export LIBGUESTFS_BACKEND=direct
# Nested KVM hangs guests on the lab's machines: TCG, as the VM tests.
if [ -z "${LIBGUESTFS_BACKEND_SETTINGS+x}" ]; then
  export LIBGUESTFS_BACKEND_SETTINGS=force_tcg
fi
WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/vmslab-bench-fr-XXXXXX")
chmod 755 "$WORK"
DOM=vmslab-bench-fr-$$
export VMSHADOW_VM_STATE_DIR=$WORK/state VMSHADOW_WRITERS_DIR=$WORK/writers.d
export TMPDIR=$WORK/tmp LIBGUESTFS_CACHEDIR=$WORK/guestfs-cache
mkdir -p "$WORK/state" "$WORK/writers.d" "$TMPDIR" "$LIBGUESTFS_CACHEDIR"
cleanup() {
  virsh -q undefine "$DOM" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
GiB=$((1024 * 1024 * 1024))
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc -l; }
echo "$(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); vmshadow $VMSHADOW; work dir $WORK"
echo "libguestfs backend $LIBGUESTFS_BACKEND${LIBGUESTFS_BACKEND_SETTINGS:+ ($LIBGUESTFS_BACKEND_SETTINGS)}"

echo "making the $SIZE GiB disk (ext4: 1 GiB random in 8 files, the $FILE_MIB MiB file to get)"
IMG=$WORK/disk.raw
truncate -s "${SIZE}G" "$IMG"
mkdir "$WORK/fill"
for i in 1 2 3 4 5 6 7 8; do head -c $((GiB / 8)) /dev/urandom > "$WORK/fill/f$i"; done
head -c $((FILE_MIB * 1048576)) /dev/urandom > "$WORK/want.bin"
LIBGUESTFS_PATH=$APPLIANCE guestfish --rw --format=raw -a "$IMG" > "$WORK/guestfish.log" 2>&1 <<EOF
run
part-disk /dev/sda mbr
mkfs ext4 /dev/sda1
mount /dev/sda1 /
copy-in $WORK/fill /
upload $WORK/want.bin /want.bin
umount-all
EOF
rm -rf "$WORK/fill"

cat > "$WORK/dom.xml" <<XML
<domain type='qemu'>
  <name>$DOM</name>
  <memory unit='MiB'>160</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <emulator>$(command -v qemu-system-x86_64)</emulator>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='$IMG'/><target dev='vda' bus='virtio'/></disk>
    <controller type='usb' model='none'/><memballoon model='none'/>
  </devices>
</domain>
XML
virsh -q define "$WORK/dom.xml" >/dev/null
UUID=$(virsh domuuid "$DOM")
"$VMSHADOW" --repo "$WORK/repo" backup --json "$DOM" > "$WORK/backup.json"
BID=$(jq -r .backup_id "$WORK/backup.json")
echo "backup $BID"

drop
t0=$(now)
mkdir "$WORK/got"
"$VMSHADOW" --repo "$WORK/repo" files "$BID" "$DOM" get --to "$WORK/got" /vda1/want.bin
t1=$(now)
cmp "$WORK/want.bin" "$WORK/got/want.bin" || { echo "files get brought other bytes" >&2; exit 1; }
FILES=$(secs "$t0" "$t1")

drop
t0=$(now)
LIBGUESTFS_PATH=$APPLIANCE guestfish --ro --format=raw -a "$IMG" -m /dev/sda1 download /want.bin "$WORK/raw-want.bin"
t1=$(now)
cmp "$WORK/want.bin" "$WORK/raw-want.bin" || { echo "guestfish brought other bytes" >&2; exit 1; }
GFISH=$(secs "$t0" "$t1")

drop
t0=$(now)
LIBGUESTFS_PATH=$APPLIANCE guestfish -a /dev/null run
t1=$(now)
APPL=$(secs "$t0" "$t1")

drop
t0=$(now)
"$VMSHADOW" --repo "$WORK/repo" extract "$BID" "$UUID" "$IMG" --to "$WORK/extracted.raw" > /dev/null
t1=$(now)
EXTRACT=$(secs "$t0" "$t1")
rm -f "$WORK/extracted.raw"

drop
t0=$(now)
dd if="$IMG" of=/dev/null bs=4M status=none
t1=$(now)
RAW=$(secs "$t0" "$t1")

printf '  files      %7.2f s  vmshadow files get of the %d MiB file from the %d GiB disk\n' "$FILES" "$FILE_MIB" "$SIZE"
printf '  guestfish  %7.2f s  the same file straight from the image (same appliance, no repository)\n' "$GFISH"
printf '  appliance  %7.2f s  the appliance started and stopped on an empty disk\n' "$APPL"
printf '  extract    %7.2f s  the whole disk out of the repository (vmshadow extract)\n' "$EXTRACT"
printf '  raw read   %7.2f s  the whole disk image read sequentially (%.0f MiB/s)\n' "$RAW" \
  "$(echo "$SIZE * 1024 / $RAW" | bc -l)"
printf '  ratios     files / guestfish = %.2f; files / extract = %.2f; files - appliance = %.2f s\n' \
  "$(echo "$FILES / $GFISH" | bc -l)" "$(echo "$FILES / $EXTRACT" | bc -l)" "$(echo "$FILES - $APPL" | bc -l)"
echo "load at the end $(cut -d' ' -f1-3 /proc/loadavg)"
