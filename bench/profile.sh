#!/bin/bash
# bench/profile.sh — where the CPU time of the data path goes (issue 15):
# CPU-seconds by stage and the top symbols, from `perf record`, for
#   full       full backup of the 4 GiB mixed disk of a stopped VM: the
#              qcow2 image exported read-only by qemu-nbd (as vmshadow
#              backup does for a stopped VM), into a fresh repository
#   incr       incremental after 1% of the disk changed in 64 KiB blocks
#              at uniformly random places (qemu-io, dirty bitmap b0)
#   extract-raw, extract-qcow2
#              the incremental's backup written out as raw and as qcow2
#              (the restore write path: every chunk read, verified, written)
# and, as the baseline, a cold `cat` of the qcow2 image file.
#
#   bench/profile.sh [BUILD-DIR]                   (default: build)
#
# The disk: 1 GiB random, the same GiB again, then 2 GiB unallocated
# (bench/datapath.sh's). The repository has format version 2 (packs), the
# default of `vmshadow init`; PROFILE_FORMAT=1 profiles version 1.
# Page cache dropped before each step (needs root). Each step runs as
#   perf record -F 999 -g -- /usr/bin/time DRIVER ...
# /usr/bin/time gives the CPU-seconds (user + system) of the driver and
# the processes it started and waited for (qemu-nbd, qemu-img); perf's
# samples split them into stages. Stages are decided per sample: the
# process (qemu-*), the leaf symbol (SHA-256, zstd, libnbd, memcpy) and,
# for kernel time, the system call or page fault on the kernel stack.
# CPU-seconds are the steadier figure on a shared machine: wall time also
# counts waiting for the CPUs others use.
#
# Work files (about 4 GiB + the repository) go to a fresh directory under
# $BENCH_DIR (default /work), removed at the end. PROFILE_KEEP=1 keeps it
# (the perf data files are in it).
set -euo pipefail
export LC_ALL=C

BUILD=${1:-build}
DRV=$(realpath "$BUILD")/lib/datapath/vms-bench-copy
[ -x "$DRV" ] || { echo "no $DRV: build first (ninja -C $BUILD)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "needs root (perf, page cache)" >&2; exit 1; }
if ! command -v perf >/dev/null; then
  # Debian's perf; waits for the dpkg lock like scripts/install-deps.sh.
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
    linux-perf >/dev/null
fi
WORK=$(mktemp -d "${BENCH_DIR:-/work}/vms-prof-XXXXXX")
[ "${PROFILE_KEEP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT
export VMSHADOW_REPO_FORMAT=${PROFILE_FORMAT:-2}
GiB=$((1024 * 1024 * 1024))
echo "$(nproc) CPUs; driver $DRV; repository format $VMSHADOW_REPO_FORMAT;" \
  "load average $(cut -d' ' -f1-3 /proc/loadavg)"

drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }

# The per-sample stage of `perf script` output (header line, then the
# call chain, leaf first, one frame a line; a blank line ends a sample).
STAGES='
# A system call'"'"'s entry on the kernel stack (the syscall wrapper may be
# inlined: ksys_write, __do_sys_copy_file_range, ____sys_sendmsg).
BEGIN { SYSCALL = "^(__x64_sys_|__do_sys_|__se_sys_|ksys_|_*sys_)" }
function stage(   i, s) {
  if (comm ~ /^qemu/) {
    for (i = 1; i <= n; i++)
      if (fr[i] ~ SYSCALL || fr[i] ~ /asm_exc_page_fault/) {
        s = fr[i]; sub(SYSCALL, "", s); sub(/.*asm_exc_/, "", s)
        return "qemu: kernel " s
      }
    return dso[1] ~ /kernel/ ? "qemu: kernel other" : "qemu: user"
  }
  if (fr[1] ~ /sha256|SHA256/) return "hash (SHA-256)"
  if (dso[1] ~ /libcrypto/) return "hash (libcrypto)"
  if (dso[1] ~ /libzstd/) return "zstd"
  if (dso[1] ~ /libnbd/) return "libnbd (user)"
  if (dso[1] ~ /kernel/) {
    for (i = 1; i <= n; i++) {
      if (fr[i] ~ /asm_exc_page_fault/) return "kernel: page faults"
      if (fr[i] ~ SYSCALL) {
        s = fr[i]; sub(SYSCALL, "", s)
        return "kernel: " s
      }
    }
    return "kernel: other"
  }
  if (fr[1] ~ /mem(cpy|move|set|cmp)/) return "libc " fr[1]
  return "user: other"
}
/^\S/ { comm = $1; n = 0; next }
/^\s+[0-9a-f]+ / {
  n++; fr[n] = $2; dso[n] = $NF; next
}
/^$/ { if (n) { cnt[stage()]++; tot++ } n = 0 }
END { for (k in cnt) printf "%s\t%d\t%d\n", k, cnt[k], tot }
'

# prof NAME DATA-BYTES CMD...: profile CMD, print its figures.
declare -A WALL=() CPU=()
prof() {
  local name=$1 bytes=$2; shift 2
  drop
  perf record -q -F 999 -g -o "$WORK/$name.data" -- \
    /usr/bin/time -f '%e %U %S %M' -o "$WORK/$name.time" "$@" > "$WORK/$name.out" 2> "$WORK/$name.err" \
    || { cat "$WORK/$name.err" >&2; exit 1; }
  read -r wall user sys rss < "$WORK/$name.time"
  local cpu
  cpu=$(echo "$user + $sys" | bc -l)
  WALL[$name]=$wall CPU[$name]=$cpu
  echo
  printf '== %s: wall %.2f s, CPU %.2f s (user %.2f + sys %.2f), %.2f CPU-s per GiB of data, peak RSS %d MiB; load %s\n' \
    "$name" "$wall" "$cpu" "$user" "$sys" "$(echo "$cpu * $GiB / $bytes" | bc -l)" \
    $((rss / 1024)) "$(cut -d' ' -f1-3 /proc/loadavg)"
  { grep -E '^(bytes_read|bytes_stored|chunks_new|chunks_reused|chunks_zero)=' "$WORK/$name.out" || true; } \
    | tr '\n' ' ' | sed 's/^/   /; s/$/\n/'
  echo "   CPU by stage (share of samples x CPU-seconds):"
  perf script -i "$WORK/$name.data" -F comm,ip,sym,dso 2>/dev/null | awk "$STAGES" \
    | sort -t$'\t' -k2,2nr | awk -F'\t' -v cpu="$cpu" \
      '$2 * 100 / $3 >= 0.5 { printf "     %-28s %5.1f%%  %6.2f s\n", $1, $2 * 100 / $3, cpu * $2 / $3 }'
  echo "   top symbols:"
  perf report -i "$WORK/$name.data" --stdio --no-children -g none \
    --sort comm,dso,sym 2>/dev/null | grep -E '^ +[0-9.]+%' | awk 'NR <= 12' \
    | awk '{ printf "     %s\n", $0 }' | sed 's/  */ /g'
}

echo "making the 4 GiB disk (1 GiB random, the same again, 2 GiB unallocated)"
head -c $GiB /dev/urandom > "$WORK/rand"
IMG=$WORK/img.raw Q=$WORK/img.qcow2 REPO=$WORK/repo
cat "$WORK/rand" "$WORK/rand" > "$IMG"
truncate -s 4G "$IMG"
qemu-img convert -f raw -O qcow2 "$IMG" "$Q"
qemu-img bitmap --add --enable "$Q" b0
rm -f "$IMG"
SIZE=$((4 * GiB)) DATA=$((2 * GiB))

drop
t0=$(date +%s.%N)
/usr/bin/time -f '%e %U %S %M' -o "$WORK/cat.time" cat "$Q" > /dev/null
read -r CATW CATU CATS _ < "$WORK/cat.time"
printf '\n== cold cat of the qcow2 image: wall %.2f s, CPU %.2f s\n' "$CATW" "$(echo "$CATU + $CATS" | bc -l)"

prof full $DATA "$DRV" full "$REPO" "qcow2:$Q" "$WORK/0.idx"

NBLK=$((SIZE / 100 / 65536))
shuf -i 0-$((SIZE / 65536 - 1)) -n $NBLK --random-source="$WORK/rand" |
  awk '{printf "-c\nwrite -P 0xab %.0f 64k\n", $1 * 65536}' > "$WORK/writes"
mapfile -t ARGS < "$WORK/writes"
qemu-io -f qcow2 "${ARGS[@]}" "$Q" > /dev/null
rm -f "$WORK/rand"
prof incr $((NBLK * 65536)) "$DRV" incr "$REPO" "qcow2:$Q" b0 "$WORK/0.idx" "$WORK/1.idx"

prof extract-raw $DATA "$DRV" extract "$REPO" "$WORK/1.idx" raw "$WORK/out.raw"
qemu-img compare -q -f raw -F qcow2 "$WORK/out.raw" "$Q" || { echo "EXTRACT (raw) DIFFERS" >&2; exit 1; }
rm -f "$WORK/out.raw"
prof extract-qcow2 $DATA "$DRV" extract "$REPO" "$WORK/1.idx" qcow2 "$WORK/out.qcow2"
qemu-img compare -q -f qcow2 -F qcow2 "$WORK/out.qcow2" "$Q" || { echo "EXTRACT (qcow2) DIFFERS" >&2; exit 1; }
rm -f "$WORK/out.qcow2"

echo
echo "-- ratios to the cold cat of the qcow2 image ($CATW s), wall; load average now $(cut -d' ' -f1-3 /proc/loadavg)"
for s in full incr extract-raw extract-qcow2; do
  printf '   %-14s %6.2f  (CPU %.2f s)\n' "$s" "$(echo "${WALL[$s]} / $CATW" | bc -l)" "${CPU[$s]}"
done
