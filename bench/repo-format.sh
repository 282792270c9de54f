#!/bin/bash
# bench/repo-format.sh — repository format version 1 (a file per chunk)
# against version 2 (packs) at several pack sizes: backup and restore
# throughput as ratios against the raw read (cat) and the raw copy (cp)
# of the same image measured in the same run, and objects and bytes per
# GiB of unique data (issue 12).
#
#   bench/repo-format.sh [BUILD-DIR [PACK-SIZES-MiB...]]   (default: build 30 16 64)
#
# With BENCH_RADOS=1 two last rows do the same into a version 2
# repository (packs of the first size given, the default 30 MiB
# first: issue 12's ratio is against that local row) on the lab's one-node Ceph cluster (lab/ceph.sh,
# started here; rados:vmshadow/<random namespace> each, emptied at the
# end): "rados" as vmshadow runs by default (lazy puts in flight,
# read-ahead: storage-rados.c), and "rados-sync" with
# VMSHADOW_RADOS_WRITE_AHEAD=0 VMSHADOW_RADOS_READ_AHEAD=0 (one
# synchronous write per pack, one read per chunk: as before issue 12's
# speed-up), so that both are measured in the same run.
# The page cache is dropped as for the others, but not the OSD's own
# BlueStore cache; client, monitor and OSD share this machine's CPUs.
# Before each step the OSD is let finish what earlier steps left it
# (under 5 % of a CPU for a second; idle, it spends 1-2 %), so that a
# row is not charged with the one before's work (rados after rados-sync
# was); the seconds waited are printed with the CPU seconds.
#
# The image is the 4 GiB mixed disk of bench/datapath.sh: 1 GiB random,
# the same GiB again, then zeros to 4 GiB, as qcow2, exported read-only by
# qemu-nbd. For version 1 and for version 2 at each pack size, page cache
# dropped before each step (needs root):
#   full     full backup into a fresh repository, committed
#            (vms-bench-copy full: the data path and a commit, as a backup)
#   restore  extract of that backup to a raw file (every chunk verified),
#            checked with qemu-img compare
# The references: cat of the raw image to /dev/null (the better of two;
# before session 12 its output went to a work file, so "raw read" also
# wrote 4 GiB into the page cache: 2.2-7.0 s) and cp of it
# to a new file followed by sync.
#
# Work files (about 8 GiB + the repositories) go to a fresh directory
# under $BENCH_DIR (default /work), removed at the end.
#
# BENCH_ROUNDS=N (default 1) repeats the rows N times on the same image,
# the order of the configurations reversed every other round (v1 v2-30,
# then v2-30 v1, ...), and ends with the median of each column per
# configuration: a single round always ran v1 first, so any effect of
# the order (the previous row's repository still being written back,
# its blocks or inodes freed) fell on the rows after it
# (issue 12, session 12). Before every timed step: sync (every dirty
# page of the previous step written back), then the page cache dropped;
# the dirty and writeback KiB left at the step's start are printed with
# each row. Every repository is kept until the end (removed with the
# work directory; about 1 GiB per row and round): ext4 without a journal
# (this machine's /) skips, when it allocates an inode, every inode
# freed in the last minute (six when its inode table block is dirty:
# recently_deleted()), so a v1 row made right after the rm -rf of the
# previous v1 repository paid for it (session 12: 8192 files of 128 KiB
# made right after 16 384 were deleted took 1.10 s of system time,
# 0.59 s with none deleted; perf of a v1 backup: ~1.1 CPU-s in
# find_inode_bit and recently_deleted) — the bench's own order effect.
set -euo pipefail

BUILD=${1:-build}
shift || true
PACKS=${*:-30 16 64}
DRV=$(realpath "$BUILD")/lib/datapath/vms-bench-copy
[ -x "$DRV" ] || { echo "no $DRV: build first (ninja -C $BUILD)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "needs root (to drop the page cache)" >&2; exit 1; }
WORK=$(mktemp -d "${BENCH_DIR:-/work}/vms-bench-repo-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
ROUNDS=${BENCH_ROUNDS:-1}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "BENCH_ROUNDS: a count, not '$ROUNDS'" >&2; exit 2; }
CONFIGS="v1 $(for p in $PACKS; do echo "v2-$p"; done)"
if [ "${BENCH_RADOS:-0}" = 1 ]; then
  VMSLAB_LAB_DIR=$(cd "$(dirname "$0")/../lab" && pwd)
  export VMSLAB_LAB_DIR
  . "$(dirname "$0")/../tests/ceph/ceph-lib.sh"
  ceph_lab_start
  # A fresh namespace per round (a second backup into the same one
  # would store nothing).
  for r in $(seq 1 "$ROUNDS"); do
    ceph_lab_namespace "RADOS_NS_rados_$r" bench
    ceph_lab_namespace "RADOS_NS_rados_sync_$r" bench-sync
  done
  CONFIGS="$CONFIGS rados-sync rados"
fi
rados_objects() { rados -p "$VMSLAB_CEPH_POOL" -N "$1" ls | grep -v -e '^lock$' -e '^clock/'; }
GiB=$((1024 * 1024 * 1024))
echo "$(nproc) CPUs; driver $DRV; load average $(cut -d' ' -f1-3 /proc/loadavg)"

# Where the time goes: the CPU seconds of the command (user + system) and,
# with BENCH_RADOS=1, of the lab's OSD during it (/proc/PID/stat).
OSD_PID=
if [ "${BENCH_RADOS:-0}" = 1 ]; then
  OSD_PID=$(cat "$(dirname "$VMSLAB_CEPH_CONF")/run/osd.0.pid" 2>/dev/null || true)
  [[ $OSD_PID =~ ^[0-9]+$ ]] && [ -r "/proc/$OSD_PID/stat" ] || OSD_PID=
fi
osd_ticks() { if [ -n "$OSD_PID" ]; then awk '{print $14 + $15}' "/proc/$OSD_PID/stat"; else echo 0; fi; }
TICK=$(getconf CLK_TCK)
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
# Dirty + writeback KiB (/proc/meminfo) at a step's start: after drop's
# sync it should be near 0, else the step shares the disk with the last.
dirty_kib() { awk '/^(Dirty|Writeback):/ {s += $2} END {print s}' /proc/meminfo; }
# The OSD goes on working after a row's writes (BlueStore, RocksDB):
# before each step, wait (at most 60 s) until it spends under 5 % of a
# CPU, so that no row is charged with the one before's (its time and its
# OSD CPU seconds).
declare -A T=() RSS=() CPU=() USR=() SYS=() OSD=() WAIT=() DIRTY=()
osd_idle() {
  WAIT[$1]=0
  [ -n "$OSD_PID" ] || return 0
  local i a b
  for i in $(seq 1 60); do
    a=$(osd_ticks); sleep 1; b=$(osd_ticks)
    [ $(( (b - a) * 20 )) -lt "$TICK" ] && break
    WAIT[$1]=$i
  done
}
run() {
  local name=$1; shift
  drop
  osd_idle "$name"
  local t0 t1 o0 o1
  o0=$(osd_ticks)
  DIRTY[$name]=$(dirty_kib)
  t0=$(date +%s.%N)
  /usr/bin/time -v -o "$WORK/$name.time" "$@" > "$WORK/$name.out"
  t1=$(date +%s.%N)
  o1=$(osd_ticks)
  T[$name]=$(echo "$t1 - $t0" | bc -l)
  RSS[$name]=$(awk -F': ' '/Maximum resident/ {print $2}' "$WORK/$name.time")
  CPU[$name]=$(awk -F': ' '/User time|System time/ {s += $2} END {print s}' "$WORK/$name.time")
  USR[$name]=$(awk -F': ' '/User time/ {print $2}' "$WORK/$name.time")
  SYS[$name]=$(awk -F': ' '/System time/ {print $2}' "$WORK/$name.time")
  OSD[$name]=$(echo "scale=2; ($o1 - $o0) / $TICK" | bc -l)
}
ratio() { echo "scale=3; $1 / $2" | bc -l; }

echo "making the 4 GiB image (1 GiB random, the same again, zeros)"
IMG=$WORK/img.raw Q=$WORK/img.qcow2
head -c $GiB /dev/urandom > "$WORK/rand"
dd if="$WORK/rand" of="$IMG" bs=4M status=none
dd if="$WORK/rand" of="$IMG" bs=4M seek=256 conv=notrunc status=none
truncate -s 4G "$IMG"
rm -f "$WORK/rand"
qemu-img convert -f raw -O qcow2 "$IMG" "$Q"

run raw sh -c "cat '$IMG' > /dev/null"
RAW1=${T[raw]}
run raw sh -c "cat '$IMG' > /dev/null"
if [ "$(echo "$RAW1 < ${T[raw]}" | bc -l)" = 1 ]; then T[raw]=$RAW1; fi
run cp sh -c "cp '$IMG' '$WORK/copy.raw' && sync"
rm -f "$WORK/copy.raw"
printf 'raw read (cat) %.2f s, raw copy (cp + sync) %.2f s\n' "${T[raw]}" "${T[cp]}"

median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1}
  END {if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

printf '\n%-5s %-10s %8s %8s %8s %9s %9s %10s %10s %8s %8s %8s\n' round format full-s \
  full/cat restore-s rest/cp objects obj/GiB bytes/uniq peak-MiB dirty-KiB \
  rdirty-KiB
for r in $(seq 1 "$ROUNDS"); do
  ORDER=$CONFIGS
  if [ $((r % 2)) = 0 ]; then
    ORDER=$(printf '%s\n' $CONFIGS | tac | tr '\n' ' ')
  fi
  for cfg in $ORDER; do
    REPO=$WORK/repo-$cfg-$r
    k=$cfg-$r
    unset VMSHADOW_RADOS_WRITE_AHEAD VMSHADOW_RADOS_READ_AHEAD
    if [ "$cfg" = rados ] || [ "$cfg" = rados-sync ]; then
      NS_VAR=RADOS_NS_${cfg//-/_}_$r
      RADOS_NS=${!NS_VAR}
      REPO=rados:$VMSLAB_CEPH_POOL/$RADOS_NS
      export VMSHADOW_REPO_FORMAT=2 VMSHADOW_REPO_PACK_SIZE=$(( ${PACKS%% *} * 1024 * 1024 ))
      if [ "$cfg" = rados-sync ]; then
        export VMSHADOW_RADOS_WRITE_AHEAD=0 VMSHADOW_RADOS_READ_AHEAD=0
      fi                # rados: the defaults (storage-rados.c)
    elif [ "$cfg" = v1 ]; then
      export VMSHADOW_REPO_FORMAT=1
      unset VMSHADOW_REPO_PACK_SIZE
    else
      export VMSHADOW_REPO_FORMAT=2 VMSHADOW_REPO_PACK_SIZE=$(( ${cfg#v2-} * 1024 * 1024 ))
    fi
    run "full-$k" "$DRV" full "$REPO" "qcow2:$Q" "$WORK/$cfg.idx"
    if [ "$cfg" = rados ] || [ "$cfg" = rados-sync ]; then
      OBJECTS=$(rados_objects "$RADOS_NS" | wc -l)
      BYTES=0
      for o in $(rados_objects "$RADOS_NS"); do
        BYTES=$((BYTES + $(rados -p "$VMSLAB_CEPH_POOL" -N "$RADOS_NS" stat "$o" | sed 's/.*size //')))
      done
    else
      OBJECTS=$(find "$REPO" -type f ! -name lock ! -path "$REPO/tmp/*" | wc -l)
      BYTES=$(du -sb "$REPO" | cut -f1)
    fi
    run "restore-$k" "$DRV" extract "$REPO" "$WORK/$cfg.idx" raw "$WORK/out.raw"
    qemu-img compare -q -f raw -F qcow2 "$WORK/out.raw" "$Q" \
      || { echo "RESTORE DIFFERS ($cfg)" >&2; exit 1; }
    rm -f "$WORK/out.raw"
    printf '%-5s %-10s %8.2f %8s %9.2f %9s %9d %10d %10s %8d %8d %8d\n' "$r" "$cfg" \
      "${T[full-$k]}" "$(ratio "${T[full-$k]}" "${T[raw]}")" \
      "${T[restore-$k]}" "$(ratio "${T[restore-$k]}" "${T[cp]}")" \
      "$OBJECTS" "$OBJECTS" "$(ratio "$BYTES" $GiB)" \
      $(( ${RSS[full-$k]} / 1024 )) "${DIRTY[full-$k]}" "${DIRTY[restore-$k]}"
    # Local repositories are kept (see the header): removed at exit.
  done
done
printf '\nCPU seconds (user + system, and each) of the command, and of the OSD\n'
printf 'meanwhile; seconds waited before it for the OSD to be idle:\n'
printf '%-5s %-10s %9s %8s %8s %9s %9s %12s %11s %11s %12s %12s\n' round format \
  full-cpu full-usr full-sys full-osd full-wait restore-cpu restore-usr \
  restore-sys restore-osd restore-wait
for r in $(seq 1 "$ROUNDS"); do
  for cfg in $CONFIGS; do
    k=$cfg-$r
    printf '%-5s %-10s %9.2f %8.2f %8.2f %9.2f %9d %12.2f %11.2f %11.2f %12.2f %12d\n' \
      "$r" "$cfg" "${CPU[full-$k]}" "${USR[full-$k]}" "${SYS[full-$k]}" \
      "${OSD[full-$k]}" "${WAIT[full-$k]}" "${CPU[restore-$k]}" \
      "${USR[restore-$k]}" "${SYS[restore-$k]}" "${OSD[restore-$k]}" \
      "${WAIT[restore-$k]}"
  done
done
# The medians over the rounds (with one round: that round's figures).
declare -A MT=() MR=()
printf '\nmedians of %d round(s) (first configuration of odd rounds: %s):\n' \
  "$ROUNDS" "${CONFIGS%% *}"
printf '%-10s %8s %8s %9s %9s %9s %12s %10s %8s\n' format full-s full/cat restore-s \
  rest/cp full-cpu restore-cpu min-full max-full
for cfg in $CONFIGS; do
  f=() re=() fc=() rc=()
  for r in $(seq 1 "$ROUNDS"); do
    f+=("${T[full-$cfg-$r]}"); re+=("${T[restore-$cfg-$r]}")
    fc+=("${CPU[full-$cfg-$r]}"); rc+=("${CPU[restore-$cfg-$r]}")
  done
  MT[$cfg]=$(median "${f[@]}")
  MR[$cfg]=$(median "${re[@]}")
  printf '%-10s %8.2f %8s %9.2f %9s %9.2f %12.2f %10.2f %8.2f\n' "$cfg" "${MT[$cfg]}" \
    "$(ratio "${MT[$cfg]}" "${T[raw]}")" "${MR[$cfg]}" \
    "$(ratio "${MR[$cfg]}" "${T[cp]}")" "$(median "${fc[@]}")" \
    "$(median "${rc[@]}")" "$(printf '%s\n' "${f[@]}" | sort -g | head -1)" \
    "$(printf '%s\n' "${f[@]}" | sort -g | tail -1)"
done
# Issue 12's targets: local v2 no slower than v1; RADOS within 1.5x of
# local v2 (the first pack size). Ratios of the medians.
V2=v2-${PACKS%% *}
printf '%s / v1: full backup %s, restore %s\n' "$V2" \
  "$(ratio "${MT[$V2]}" "${MT[v1]}")" "$(ratio "${MR[$V2]}" "${MR[v1]}")"
for cfg in rados-sync rados; do
  [ -n "${MT[$cfg]:-}" ] || continue
  printf '%s / %s: full backup %s, restore %s\n' "$cfg" "$V2" \
    "$(ratio "${MT[$cfg]}" "${MT[$V2]}")" \
    "$(ratio "${MR[$cfg]}" "${MR[$V2]}")"
done
echo "(1 GiB of unique data: objects per GiB = objects; peak memory of the"
echo " full backup; load average now $(cut -d' ' -f1-3 /proc/loadavg))"
