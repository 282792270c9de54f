#!/bin/bash
# bench/devices.sh — full backup of a host block device and of an RBD image
# (issue 11), each as a ratio to a raw read of the same device measured in
# the same run.
#
#   sudo bench/devices.sh [BUILD-DIR [SIZE-GiB]]        (default: build 4)
#
# Both devices hold the mixed workload of bench/datapath.sh: 1 GiB random,
# the same GiB again, zeros up to SIZE GiB. Each is read the way a stopped
# VM's disk of that kind is (the requester's read-only qemu-nbd: QEMU's
# host_device driver for the block device, its rbd driver for the image),
# by the data path driver (lib/datapath/vms-bench-copy) into a fresh
# repository:
#   block  a loop device over a file (what an LV is to QEMU; the lab's
#          kernel has no device-mapper); raw read: dd of the device, 4 MiB
#          blocks
#   rbd    an RBD image in the lab's Ceph (lab/ceph.sh; `rbd import`
#          leaves the zeros unallocated); raw read: `rbd export` to
#          /dev/null (librbd's own sequential read)
# Page cache dropped before each step; each step twice, the faster kept
# (this host's cache varies). Needs root and, for rbd, the lab's Ceph (run
# it under the lab lock: flock /var/lock/vmshadow-vm-suite …). The work
# files (1 GiB + SIZE GiB sparse) go under $BENCH_DIR (default /var/tmp).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(realpath "${1:-$ROOT/build}")
S=${2:-4}
DRV=$BUILD/lib/datapath/vms-bench-copy
[ -x "$DRV" ] || { echo "no $DRV: build first (ninja -C $BUILD)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "needs root (loop device, page cache)" >&2; exit 1; }
WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/vms-bench-dev-XXXXXX")
LOOP= IMG=
cleanup() {
  [ -n "$LOOP" ] && losetup -d "$LOOP"
  [ -n "$IMG" ] && timeout 120 rbd rm --no-progress "$IMG" >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT
GiB=$((1024 * 1024 * 1024))
echo "$(nproc) CPUs; load average $(cut -d' ' -f1-3 /proc/loadavg); driver $DRV"

drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
declare -A T=()
# run NAME CMD... — wall time of CMD (page cache dropped first), twice,
# the faster kept in T[NAME]; CMD's stdout in $WORK/NAME.out.
run() {
  local name=$1 i t0 t1 t; shift
  for i in 1 2; do
    drop
    t0=$(date +%s.%N)
    "$@" > "$WORK/$name.out"
    t1=$(date +%s.%N)
    t=$(echo "$t1 - $t0" | bc -l)
    if [ -z "${T[$name]:-}" ] || [ "$(echo "$t < ${T[$name]}" | bc -l)" = 1 ]; then
      T[$name]=$t
    fi
  done
  printf '  %-10s %7.2f s  %s\n' "$name" "${T[$name]}" \
    "$(grep -E '^(bytes_read|bytes_stored)=' "$WORK/$name.out" | tr '\n' ' ')"
}
ratio() { echo "scale=3; $1 / $2" | bc -l; }
fresh_repo() { rm -rf "$WORK/repo"; "$DRV" full "$WORK/repo" "$@" "$WORK/0.idx"; }

echo "== $S GiB device: 1 GiB random, the same again, zeros to $S GiB"
head -c $GiB /dev/urandom > "$WORK/rand"
dd if="$WORK/rand" of="$WORK/dev.raw" bs=4M conv=notrunc status=none
dd if="$WORK/rand" of="$WORK/dev.raw" bs=4M seek=256 conv=notrunc status=none
truncate -s ${S}G "$WORK/dev.raw"
rm -f "$WORK/rand"

# ---- block device
LOOP=$(losetup --find --show "$WORK/dev.raw")
echo "-- block device $LOOP"
run block-raw dd if="$LOOP" of=/dev/null bs=4M status=none
run block-full fresh_repo "raw:$LOOP"
losetup -d "$LOOP"
LOOP=

# ---- RBD image
echo "-- RBD image"
if out=$("$ROOT/lab/ceph.sh" start -q 2>&1); then
  eval "$("$ROOT/lab/ceph.sh" env)"
  IMG=$VMSLAB_CEPH_RBD_POOL/vms-bench-dev-$$
  timeout 600 rbd import --no-progress "$WORK/dev.raw" "$IMG" >/dev/null
  GRAPH="json:{\"driver\":\"raw\",\"read-only\":true,\"file\":{\"driver\":\"rbd\",\"pool\":\"$VMSLAB_CEPH_RBD_POOL\",\"image\":\"vms-bench-dev-$$\",\"conf\":\"$CEPH_CONF\"}}"
  rbd_raw() { timeout 600 rbd export --no-progress "$IMG" - > /dev/null; }
  run rbd-raw rbd_raw
  run rbd-full fresh_repo "$GRAPH"
else
  echo "  skipped: the lab's Ceph does not run here: $out"
fi

echo "-- ratios (issue 11; load average now $(cut -d' ' -f1-3 /proc/loadavg))"
echo "  block device: full backup / raw read   $(ratio "${T[block-full]}" "${T[block-raw]}")"
[ -n "${T[rbd-full]:-}" ] &&
  echo "  RBD image:    full backup / raw read   $(ratio "${T[rbd-full]}" "${T[rbd-raw]}")"
exit 0
