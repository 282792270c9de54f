#!/bin/bash
# bench/full-restore.sh — issue 15's vmshadow row for a stopped VM: full
# backup, incremental, restore to qcow2 and to raw, peak memory and
# repository size, as ratios to the raw read and copy of the image file
# measured in the same run.
#
#   bench/full-restore.sh [BUILD-DIR]              (default: build)
#
# The disk is issue 15's: 4 GiB virtual, 1 GiB random, the same GiB again,
# 2 GiB unallocated, as a qcow2 file with a persistent dirty bitmap b0 (a
# stopped VM's disk). Everything goes through the data path as vmshadow
# runs it, driven by lib/datapath/vms-bench-copy (one process per step, so
# that /usr/bin/time sees its peak memory): the image exported read-only
# by qemu-nbd (a stopped VM's disk, vms_nbd_export_open), a repository of
# format version 2 (vmshadow init's default), the backup committed; the
# restore is vms_extract, what `vmshadow extract` and `vmshadow restore`
# write disks with (every chunk read and verified). No VM is started.
# Page cache dropped before each step (needs root):
#   cat        cold `cat` of the qcow2 file (the better of two): the
#              baseline of the backup (issue 15: the bytes that must be read)
#   cp         cold `cp` of the qcow2 file and sync: the baseline of a restore
#   full       full backup into a fresh repository     [target ≤ 3 × cat]
#   incr       incremental after 1% of the disk changed in 64 KiB blocks at
#              uniformly random places (qemu-io)      [target ≤ 0.5 s]
#   ext-qcow2  restore to a new qcow2 file             [target ≤ 2 × cp]
#   ext-raw    restore to a new raw file               [target ≤ 2 × cp]
#   full-64g   the same data with zeros to 64 GiB virtual, a full backup:
#              peak memory                             [target ≤ 64 MiB]
# And restic, the issue's comparison: with BENCH_RESTIC=1 it is installed
# from Debian's archive when missing (apt-get, waiting for the dpkg lock);
# without it, a missing restic only makes its lines say "skipped"; with
# BENCH_RESTIC=0 it is skipped even when installed. The image
# file backed up with `restic backup` before and after the 1% change
# (restic-full, restic-incr), the newest snapshot restored with `restic
# restore` and synced (restic-rest); vmshadow's restores must be faster.
# CPU is user + system time of the step and the processes it waited for
# (qemu-nbd, qemu-img): steadier than wall time on a busy machine.
#
# Work files (about 3 GiB + the repository) go to a fresh directory under
# $BENCH_DIR (default /work), removed at the end.
# BENCH_HOLD_REPORTING=1: where the kernel hands freed memory back to its
# hypervisor (free page reporting: this lab machine is a guest that does),
# hold that off while the bench runs and write the old setting back at
# the end: it starts ~2 s after each drop of the page cache, so it slowed
# the longer steps and not the cat (docs/performance.md, session 14).
set -euo pipefail
export LC_ALL=C

BUILD=${1:-build}
DRV=$(realpath "$BUILD")/lib/datapath/vms-bench-copy
[ -x "$DRV" ] || { echo "no $DRV: build first (ninja -C $BUILD)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "needs root (to drop the page cache)" >&2; exit 1; }
WORK=$(mktemp -d "${BENCH_DIR:-/work}/vms-bench-fr-XXXXXX")
REPORTING_ORDER=/sys/module/page_reporting/parameters/page_reporting_order
OLD_ORDER=
if [ -n "${BENCH_HOLD_REPORTING:-}" ] && [ -w "$REPORTING_ORDER" ]; then
  OLD_ORDER=$(cat "$REPORTING_ORDER")
fi
trap 'rm -rf "$WORK"; [ -z "$OLD_ORDER" ] || echo "$OLD_ORDER" > "$REPORTING_ORDER"' EXIT
if [ -n "$OLD_ORDER" ]; then
  echo 11 > "$REPORTING_ORDER"
  echo "page reporting held off (page_reporting_order 11, was $OLD_ORDER) while the bench runs"
fi
export VMSHADOW_REPO_FORMAT=2
GiB=$((1024 * 1024 * 1024))
case ${BENCH_RESTIC:-} in
  0) RESTIC= ;;
  1) RESTIC=$(command -v restic || true)
     if [ -z "$RESTIC" ]; then
       echo "installing restic (BENCH_RESTIC=1)"
       apt-get -o DPkg::Lock::Timeout=600 install -y -qq restic > "$WORK/apt.log" 2>&1 \
         || { cat "$WORK/apt.log" >&2; echo "could not install restic" >&2; exit 1; }
       RESTIC=$(command -v restic)
     fi ;;
  '') RESTIC=$(command -v restic || true) ;;
  *) echo "BENCH_RESTIC must be 0 or 1" >&2; exit 1 ;;
esac
echo "$(nproc) CPUs; driver $DRV; load average $(cut -d' ' -f1-3 /proc/loadavg)"

drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
declare -A T=() CPU=() RSS=()
# run NAME CMD...: wall and CPU seconds and peak RSS (KiB) of CMD.
run() {
  local name=$1; shift
  drop
  local t0 t1 u s
  t0=$(date +%s.%N)
  /usr/bin/time -f '%U %S %M' -o "$WORK/$name.time" "$@" > "$WORK/$name.out"
  t1=$(date +%s.%N)
  read -r u s RSS[$name] < "$WORK/$name.time"
  T[$name]=$(echo "$t1 - $t0" | bc -l)
  CPU[$name]=$(echo "$u + $s" | bc -l)
  printf '  %-10s %7.2f s wall %7.2f s CPU  peak %6d KiB  %s\n' "$name" "${T[$name]}" \
    "${CPU[$name]}" "${RSS[$name]}" \
    "$(grep -E '^(bytes_read|bytes_stored)=' "$WORK/$name.out" | tr '\n' ' ' || true)"
}
best() {  # best NAME CMD...: run twice, keep the faster
  local name=$1 first
  run "$@"
  first=${T[$name]}
  run "$@"
  if [ "$(echo "$first < ${T[$name]}" | bc -l)" = 1 ]; then T[$name]=$first; fi
}
stat_of() { sed -n "s/^$2=//p" "$WORK/$1.out"; }
ratio() { echo "scale=2; $1 / $2" | bc -l; }

echo "making the disk: 1 GiB random, the same again, 2 GiB unallocated (qcow2)"
head -c $GiB /dev/urandom > "$WORK/rand"
Q=$WORK/disk.qcow2 REPO=$WORK/repo
cat "$WORK/rand" "$WORK/rand" > "$WORK/raw"
truncate -s 4G "$WORK/raw"
qemu-img convert -f raw -O qcow2 "$WORK/raw" "$Q"
qemu-img bitmap --add --enable "$Q" b0
rm -f "$WORK/raw"

best cat cat "$Q"
best cp sh -c "cp '$Q' '$WORK/copy.qcow2' && sync"
rm -f "$WORK/copy.qcow2"

run full "$DRV" full "$REPO" "qcow2:$Q" "$WORK/0.idx"
FULL_BYTES=$(du -sb "$REPO" | cut -f1)
if [ -n "$RESTIC" ]; then
  # Its repository and cache in $WORK, so that nothing outlives the run.
  export RESTIC_PASSWORD=vms-bench RESTIC_REPOSITORY=$WORK/restic RESTIC_CACHE_DIR=$WORK/restic-cache
  "$RESTIC" init -q
  run restic-full "$RESTIC" backup -q "$Q"
fi

SIZE=$((4 * GiB))
NBLK=$((SIZE / 100 / 65536))
shuf -i 0-$((SIZE / 65536 - 1)) -n $NBLK --random-source="$WORK/rand" |
  awk '{printf "-c\nwrite -P 0xab %.0f 64k\n", $1 * 65536}' > "$WORK/writes"
mapfile -t ARGS < "$WORK/writes"
qemu-io -f qcow2 "${ARGS[@]}" "$Q" > /dev/null
run incr "$DRV" incr "$REPO" "qcow2:$Q" b0 "$WORK/0.idx" "$WORK/1.idx"
INC_BYTES=$(( $(du -sb "$REPO" | cut -f1) - FULL_BYTES ))
[ -z "$RESTIC" ] || run restic-incr "$RESTIC" backup -q "$Q"

run ext-qcow2 "$DRV" extract "$REPO" "$WORK/1.idx" qcow2 "$WORK/out.qcow2"
qemu-img compare -q -f qcow2 -F qcow2 "$WORK/out.qcow2" "$Q" \
  || { echo "RESTORE TO QCOW2 DIFFERS" >&2; exit 1; }
rm -f "$WORK/out.qcow2"
run ext-raw "$DRV" extract "$REPO" "$WORK/1.idx" raw "$WORK/out.raw"
qemu-img compare -q -f raw -F qcow2 "$WORK/out.raw" "$Q" \
  || { echo "RESTORE TO RAW DIFFERS" >&2; exit 1; }
rm -f "$WORK/out.raw"
if [ -n "$RESTIC" ]; then
  run restic-rest sh -c "'$RESTIC' restore -q latest --target '$WORK/restic-out' && sync"
  cmp "$WORK/restic-out$Q" "$Q" || { echo "RESTIC'S RESTORE DIFFERS" >&2; exit 1; }
  rm -rf "$WORK/restic-out" "$WORK/restic" "$WORK/restic-cache"
fi

# 64 GiB virtual: the same data, more unallocated space.
qemu-img bitmap --remove "$Q" b0
qemu-img resize -q "$Q" 64G
rm -rf "$REPO"
run full-64g "$DRV" full "$REPO" "qcow2:$Q" "$WORK/64.idx"
rm -f "$WORK/rand"

echo "-- ratios (targets of issue 15 in brackets); load average now $(cut -d' ' -f1-3 /proc/loadavg)"
echo "  full / cat of the image     $(ratio "${T[full]}" "${T[cat]}")  [<= 3]  (cat ${T[cat]} s)"
printf '  incremental                 %.2f s  [<= 0.5 s]  (read %s bytes of %s changed)\n' \
  "${T[incr]}" "$(stat_of incr bytes_read)" $((NBLK * 65536))
echo "  restore qcow2 / cp          $(ratio "${T[ext-qcow2]}" "${T[cp]}")  [<= 2]  (cp + sync ${T[cp]} s)"
echo "  restore raw / cp            $(ratio "${T[ext-raw]}" "${T[cp]}")  [<= 2]"
if [ -n "$RESTIC" ]; then
  echo "  restic ($("$RESTIC" version | cut -d' ' -f2)): full ${T[restic-full]} s, incremental ${T[restic-incr]} s, restore ${T[restic-rest]} s = $(ratio "${T[restic-rest]}" "${T[cp]}") x cp, CPU ${CPU[restic-rest]} s"
  echo "  vmshadow restore / restic's  qcow2 $(ratio "${T[ext-qcow2]}" "${T[restic-rest]}"), raw $(ratio "${T[ext-raw]}" "${T[restic-rest]}")  [< 1]"
else
  echo "  restic                      skipped: $([ "${BENCH_RESTIC:-}" = 0 ] && echo BENCH_RESTIC=0 || echo 'not installed (BENCH_RESTIC=1 installs it)')"
fi
echo "  CPU-s: full ${CPU[full]}, incr ${CPU[incr]}, restore qcow2 ${CPU[ext-qcow2]}, raw ${CPU[ext-raw]}"
echo "  peak memory MiB             full $((RSS[full] / 1024)), incr $((RSS[incr] / 1024)), restore $((RSS[ext-qcow2] / 1024)) / $((RSS[ext-raw] / 1024)), full at 64 GiB virtual $((RSS[full-64g] / 1024))  [<= 64]"
echo "  repository / unique data    $(ratio "$FULL_BYTES" $GiB)  [<= 1.02]"
echo "  incremental growth / changed $(ratio "$INC_BYTES" $((NBLK * 65536)))  [<= 1.05]"
