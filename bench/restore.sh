#!/bin/bash
# bench/restore.sh — restore throughput against the raw write rate measured
# in the same run, and the time from the command to a running VM (issue 6).
#
#   bench/restore.sh [BUILD-DIR]                      (default: build)
#
# A stopped lab VM (vmslab-bench-rs-<pid>, TCG, the lab's kernel) has one
# 4 GiB qcow2 disk: 1 GiB random, the same GiB again, then 2 GiB of zeros
# (unallocated). It is backed up (offline) into a fresh repository. Then,
# page cache dropped before each step (needs root):
#   raw-write   dd of the 2 GiB of data (the random GiB twice) to a new file
#               in the same directory, conv=fsync: the disk's write rate
#   restore     VM undefined and its image deleted; `vmshadow restore`
#               (off, undefined, image recreated as qcow2, defined)
#   to-running  the same again with --start: command to VM running
# Restore throughput is given per data byte (2 GiB) and per virtual byte
# (4 GiB), and as a ratio to raw-write (target: restore ≥ raw-write / 2).
# Work files (about 7 GiB) go to a fresh directory under $BENCH_DIR
# (default /var/tmp, reachable for QEMU), removed at the end.
set -euo pipefail
export LC_ALL=C LIBVIRT_DEFAULT_URI=qemu:///system

BUILD=$(realpath "${1:-build}")
VMSHADOW=$BUILD/cli/vmshadow
SRC=$(cd "$(dirname "$0")/.." && pwd)
[ -x "$VMSHADOW" ] || { echo "no $VMSHADOW: build first (ninja -C $BUILD)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "needs root (libvirt, page cache)" >&2; exit 1; }
"$SRC/lab/setup.sh" --quiet
. /var/cache/vmshadow-lab/lab.env
WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/vmslab-bench-rs-XXXXXX")
chmod 755 "$WORK"
DOM=vmslab-bench-rs-$$
cleanup() {
  virsh -q destroy "$DOM" >/dev/null 2>&1 || true
  virsh -q undefine "$DOM" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
GiB=$((1024 * 1024 * 1024))
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc -l; }
export VMSHADOW_VM_STATE_DIR=$WORK/state VMSHADOW_WRITERS_DIR=$WORK/writers.d
mkdir -p "$WORK/state" "$WORK/writers.d"
echo "$(nproc) CPUs; vmshadow $VMSHADOW; work dir $WORK"

echo "making the 4 GiB disk (1 GiB random, the same again, zeros)"
head -c $GiB /dev/urandom > "$WORK/rand"
IMG=$WORK/disk.qcow2
cat "$WORK/rand" "$WORK/rand" > "$WORK/data.raw"
truncate -s 4G "$WORK/data.raw"
qemu-img convert -q -f raw -O qcow2 "$WORK/data.raw" "$IMG"
rm -f "$WORK/data.raw"
qemu-img info "$IMG" | grep -E 'virtual size|disk size'

cat > "$WORK/dom.xml" <<XML
<domain type='qemu'>
  <name>$DOM</name>
  <memory unit='MiB'>160</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>$VMSLAB_KERNEL</kernel>
    <initrd>$VMSLAB_INITRD</initrd><cmdline>${VMSLAB_CMDLINE:-console=ttyS0 loglevel=4 panic=0}</cmdline></os>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <emulator>$(command -v qemu-system-x86_64)</emulator>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='$IMG'/><target dev='vda' bus='virtio'/></disk>
    <controller type='usb' model='none'/><memballoon model='none'/>
  </devices>
</domain>
XML
virsh -q define "$WORK/dom.xml" >/dev/null
"$VMSHADOW" --repo "$WORK/repo" backup --json "$DOM" > "$WORK/backup.json"
BID=$(jq -r .backup_id "$WORK/backup.json")
echo "backup $BID: $(jq -r '.bytes_stored' "$WORK/backup.json") bytes stored"

# raw write rate: the same 2 GiB of data, to a new file in the same directory
drop
t0=$(now)
cat "$WORK/rand" "$WORK/rand" | dd of="$WORK/rawwrite" bs=4M iflag=fullblock conv=fsync status=none
t1=$(now)
RAW=$(secs "$t0" "$t1")
rm -f "$WORK/rawwrite"

forget() { virsh -q destroy "$DOM" >/dev/null 2>&1 || true
           virsh -q undefine "$DOM" >/dev/null; rm -f "$IMG"; }
forget
drop
t0=$(now)
"$VMSHADOW" --repo "$WORK/repo" restore "$BID" > "$WORK/restore.out"
t1=$(now)
REST=$(secs "$t0" "$t1")
[ "$(virsh -q domstate "$DOM")" = "shut off" ] || { echo "restore did not define $DOM" >&2; exit 1; }

forget
drop
t0=$(now)
"$VMSHADOW" --repo "$WORK/repo" restore --start "$BID" > "$WORK/restore2.out"
while [ "$(virsh -q domstate "$DOM" 2>/dev/null)" != running ]; do sleep 0.05; done
t1=$(now)
RUN=$(secs "$t0" "$t1")

data=$((2 * GiB)); virt=$((4 * GiB))
printf '  raw-write   %6.2f s  %7.1f MiB/s (2 GiB of data, dd conv=fsync)\n' "$RAW" "$(echo "$data / $RAW / 1048576" | bc -l)"
printf '  restore     %6.2f s  %7.1f MiB/s of data, %7.1f MiB/s of virtual size\n' "$REST" \
  "$(echo "$data / $REST / 1048576" | bc -l)" "$(echo "$virt / $REST / 1048576" | bc -l)"
printf '  ratio       restore time / raw-write time = %.2f (target ≤ 2)\n' "$(echo "$REST / $RAW" | bc -l)"
printf '  to-running  %6.2f s  from `vmshadow restore --start` to the VM running\n' "$RUN"
