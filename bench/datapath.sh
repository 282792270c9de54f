#!/bin/bash
# bench/datapath.sh — data path throughput and memory, as ratios against
# the raw read of the same image measured in the same run (issue 4).
#
#   bench/datapath.sh [BUILD-DIR [SIZES-GiB...]]      (default: build 4 16)
#
# For each size S (GiB) it builds an image: 1 GiB random, the same GiB
# again, then zeros up to S GiB (a hole in the raw file, unallocated in the
# qcow2 — so 16 means the same data with more zeros). The qcow2 copy, with
# an enabled persistent dirty bitmap b0, is what is backed up, exported
# read-only by qemu-nbd (vms_nbd_export_open). Measured, page cache
# dropped before each step (needs root):
#   raw      cat of the raw image (also shown: cat of the qcow2 file)
#   full     full backup into a fresh repository
#   incr     incremental after 1% of the disk changed in 64 KiB blocks at
#            uniformly random places, written through qemu-io (bitmap)
#   incr-loc the same amount changed again, in 64 KiB blocks filling whole
#            chunks, 1% of them (writes with locality, as filesystems do)
#   extract  the last backup to a raw file (checked with qemu-img compare)
# Peak memory is /usr/bin/time -v's maximum resident set size of the
# driver (qemu-nbd is a separate process, not counted). The repository's
# size is given both as the bytes of its files (du -b) and as what it
# allocates on disk (du -B1: small files round up to blocks).
#
# The work files (about 2 GiB + 2 × S GiB sparse) go to a fresh directory
# under $BENCH_DIR (default /work), removed at the end.
set -euo pipefail

BUILD=${1:-build}
shift || true
SIZES=${*:-4 16}
DRV=$(realpath "$BUILD")/lib/datapath/vms-bench-copy
[ -x "$DRV" ] || { echo "no $DRV: build first (ninja -C $BUILD)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "needs root (to drop the page cache)" >&2; exit 1; }
WORK=$(mktemp -d "${BENCH_DIR:-/work}/vms-bench-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
GiB=$((1024 * 1024 * 1024))
CHUNK=$("$DRV" chunk-size)
echo "chunk size $CHUNK bytes; $(nproc) CPUs; driver $DRV"

drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
# run NAME CMD...: time CMD (wall, seconds) and its peak RSS (KiB).
run() {
  local name=$1; shift
  drop
  local t0 t1
  t0=$(date +%s.%N)
  /usr/bin/time -v -o "$WORK/$name.time" "$@" > "$WORK/$name.out"
  t1=$(date +%s.%N)
  T[$name]=$(echo "$t1 - $t0" | bc -l)
  RSS[$name]=$(awk -F': ' '/Maximum resident/ {print $2}' "$WORK/$name.time")
  printf '  %-9s %7.2f s  peak %6d KiB  %s\n' "$name" "${T[$name]}" "${RSS[$name]}" \
    "$(grep -E '^(bytes_read|bytes_stored|chunks_new)=' "$WORK/$name.out" | tr '\n' ' ')"
}
stat_of() { sed -n "s/^$2=//p" "$WORK/$1.out"; }
ratio() { echo "scale=4; $1 / $2" | bc -l; }

echo "making 1 GiB of random data"
head -c $GiB /dev/urandom > "$WORK/rand"

for S in $SIZES; do
  declare -A T=() RSS=()
  IMG=$WORK/img.raw Q=$WORK/img.qcow2 REPO=$WORK/repo
  rm -rf "$IMG" "$Q" "$REPO" "$WORK"/*.idx "$WORK/out.raw"
  echo "== $S GiB image: 1 GiB random, the same again, zeros to $S GiB"
  dd if="$WORK/rand" of="$IMG" bs=4M conv=notrunc status=none
  dd if="$WORK/rand" of="$IMG" bs=4M seek=256 conv=notrunc status=none
  truncate -s ${S}G "$IMG"
  qemu-img convert -f raw -O qcow2 "$IMG" "$Q"
  qemu-img bitmap --add --enable "$Q" b0
  SIZE=$((S * GiB))

  # The raw read is the better of two (the host's own cache makes single
  # reads of this VM's disk vary).
  run raw cat "$IMG"
  RAW1=${T[raw]}
  run raw cat "$IMG"
  if [ "$(echo "$RAW1 < ${T[raw]}" | bc -l)" = 1 ]; then T[raw]=$RAW1; fi
  run rawq2 cat "$Q"
  run full "$DRV" full "$REPO" "qcow2:$Q" "$WORK/0.idx"
  REPO_BYTES=$(du -sb "$REPO" | cut -f1)
  REPO_ALLOC=$(du -s -B1 "$REPO" | cut -f1)
  REPO_FILES=$(find "$REPO/chunks" -type f | wc -l)

  # 1% of the disk in 64 KiB blocks at uniformly random places. (Offsets
  # are printed with %.0f: mawk's %d stops at 2^31 - 1, which once sent
  # every write beyond 2 GiB to that one offset.)
  NBLK=$((SIZE / 100 / 65536))
  shuf -i 0-$((SIZE / 65536 - 1)) -n $NBLK --random-source="$WORK/rand" |
    awk '{printf "-c\nwrite -P 0xab %.0f 64k\n", $1 * 65536}' > "$WORK/writes"
  mapfile -t ARGS < "$WORK/writes"
  qemu-io -f qcow2 "${ARGS[@]}" "$Q" > "$WORK/qemu-io.out"
  [ "$(grep -c '^wrote 65536/65536 bytes' "$WORK/qemu-io.out")" = "$NBLK" ] \
    || { echo "qemu-io did not write the $NBLK blocks" >&2; exit 1; }
  echo "  wrote $NBLK blocks of 64 KiB at $(sort -u "$WORK/writes" | grep -c '^write') places"
  run incr "$DRV" incr "$REPO" "qcow2:$Q" b0 "$WORK/0.idx" "$WORK/1.idx"
  # The same incremental without sampling the bitmap (issue 21): what the
  # check costs. Each twice, the faster kept (this host's cache varies).
  VMSHADOW_CBT_SAMPLE=off run incr-nocbt "$DRV" incr "$REPO" "qcow2:$Q" b0 "$WORK/0.idx" "$WORK/1n.idx"
  T1=${T[incr-nocbt]}
  VMSHADOW_CBT_SAMPLE=off run incr-nocbt "$DRV" incr "$REPO" "qcow2:$Q" b0 "$WORK/0.idx" "$WORK/1n.idx"
  if [ "$(echo "$T1 < ${T[incr-nocbt]}" | bc -l)" = 1 ]; then T[incr-nocbt]=$T1; fi
  T1=${T[incr]}
  run incr "$DRV" incr "$REPO" "qcow2:$Q" b0 "$WORK/0.idx" "$WORK/1.idx"
  if [ "$(echo "$T1 < ${T[incr]}" | bc -l)" = 1 ]; then T[incr]=$T1; fi

  # The same amount again, filling whole chunks (1% of them).
  qemu-img bitmap --clear "$Q" b0
  PER=$(( (CHUNK + 65535) / 65536 ))
  NCH=$((NBLK / PER))
  shuf -i 0-$((SIZE / CHUNK - 1)) -n $NCH --random-source=<(tail -c 65536 "$WORK/rand") |
    awk -v per=$PER -v cs=$CHUNK \
      '{for (i = 0; i < per; i++) printf "-c\nwrite -P 0xcd %.0f 64k\n", $1 * cs + i * 65536}' \
    > "$WORK/writes"
  mapfile -t ARGS < "$WORK/writes"
  qemu-io -f qcow2 "${ARGS[@]}" "$Q" > /dev/null
  run incr-loc "$DRV" incr "$REPO" "qcow2:$Q" b0 "$WORK/1.idx" "$WORK/2.idx"

  run extract "$DRV" extract "$REPO" "$WORK/2.idx" raw "$WORK/out.raw"
  qemu-img compare -q -f raw -F qcow2 "$WORK/out.raw" "$Q" \
    || { echo "EXTRACT DIFFERS" >&2; exit 1; }

  echo "-- ratios for $S GiB (targets in brackets); load average now: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "  full / raw read            $(ratio "${T[full]}" "${T[raw]}")  [<= 2]   (raw read of the qcow2 file: ${T[rawq2]} s)"
  echo "  repo size / unique data    $(ratio "$REPO_BYTES" $GiB)  [<= 1.02]  (allocated on disk: $(ratio "$REPO_ALLOC" $GiB); $REPO_FILES chunk files)"
  echo "  incr / full time           $(ratio "${T[incr]}" "${T[full]}")  [< 0.10]  (uniform 64 KiB writes)"
  echo "  incr bytes read / disk     $(ratio "$(stat_of incr bytes_read)" $SIZE)  [< 0.03]"
  echo "  incr with / without CBT sampling $(ratio "${T[incr]}" "${T[incr-nocbt]}")  [<= 1.05]  ($(stat_of incr cbt_sampled) chunks sampled)"
  echo "    the same in bytes read         $(ratio "$(stat_of incr bytes_read)" "$(stat_of incr-nocbt bytes_read)")  (steadier than time on a busy host)"
  echo "  incr-loc / full time       $(ratio "${T[incr-loc]}" "${T[full]}")  [< 0.10]  (writes with locality)"
  echo "  incr-loc bytes read / disk $(ratio "$(stat_of incr-loc bytes_read)" $SIZE)  [< 0.03]"
  echo "  extract / raw read         $(ratio "${T[extract]}" "${T[raw]}")  [<= 2]"
  echo "  peak memory KiB            full ${RSS[full]}, incr ${RSS[incr]}, extract ${RSS[extract]}  [< 65536]"
  rm -f "$WORK/out.raw"
done
