#!/bin/bash
# bench/repo-scale.sh — gc and verify --sample on a synthetic format
# version 2 repository of NCHUNKS chunks (default 1 000 000), built fast
# without VMs by vms-bench-synth (issue 12): timings (wall) and peak memory
# (maximum resident set, /usr/bin/time) of each step, and the repository's
# objects.
#
#   bench/repo-scale.sh [BUILD-DIR [NCHUNKS]]      (default: build 1000000)
#
# The chunks are distinct 128 KiB chunks that compress to a few dozen
# bytes each (a counter and zeros), so 1 M chunks (128 GiB of unique data
# as the index counts it) fit in ~60 MB of packs: per-chunk costs (mark,
# index, table, the sample's reads) are those of a real repository of that
# many chunks, per-byte costs and the pack count are not — objects per GiB
# of incompressible data come from bench/repo-format.sh. With BENCH_RADOS=1
# the same runs on the lab's Ceph cluster (rados:vmshadow/<namespace>,
# removed at the end).
#
# Steps: build (two threads storing the chunks, then two backups:
# "synth-all" of every chunk, "synth-half" of the first half); gc --grace 0
# with nothing dead; prune --keep-last 1 (removes synth-all); gc --grace 0
# removing the second half (condemn and delete in one run: no other
# writer); verify --sample 1 and --sample 10.
set -euo pipefail
BUILD=$(realpath "${1:-build}")
N=${2:-1000000}
SYNTH=$BUILD/lib/repo/vms-bench-synth
VMS=$BUILD/cli/vmshadow
[ -x "$SYNTH" ] && [ -x "$VMS" ] || { echo "build first (ninja -C $BUILD)" >&2; exit 1; }
WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/vms-bench-scale-XXXXXX")
cleanup () {
  [ -z "${ns:-}" ] || rados -p "$VMSLAB_CEPH_POOL" -N "$ns" ls 2>/dev/null |
    while read -r o; do rados -p "$VMSLAB_CEPH_POOL" -N "$ns" rm "$o"; done
  rm -rf "$WORK"
}
trap cleanup EXIT
if [ "${BENCH_RADOS:-0}" = 1 ]; then
  . "$(dirname "$0")/../tests/ceph/ceph-lib.sh"
  ceph_lab_start
  ns=bench-scale-$$
  REPO=rados:$VMSLAB_CEPH_POOL/$ns
else
  REPO=$WORK/repo
fi
export VMSHADOW_REPO=$REPO
# 1 MiB packs (the minimum): a few hundred packs for 1 M of these chunks.
export VMSHADOW_REPO_PACK_SIZE=$((1024 * 1024))

objects () {
  if [ -n "${ns:-}" ]; then
    rados -p "$VMSLAB_CEPH_POOL" -N "$ns" ls | sed 's|/.*||' | sort | uniq -c | tr '\n' ' '
  else
    (cd "$REPO" && find . -type f | sed 's|^\./||; s|/.*||' | sort | uniq -c | tr '\n' ' ')
  fi
}
bytes () {
  if [ -n "${ns:-}" ]; then
    rados -p "$VMSLAB_CEPH_POOL" df -f json | python3 -c 'import json,sys; print([p for p in json.load(sys.stdin)["pools"] if p["name"]==sys.argv[1]][0]["size_bytes"])' "$VMSLAB_CEPH_POOL"
  else
    du -sb "$REPO" | cut -f1
  fi
}
# step NAME CMD...: wall seconds and peak RSS (MiB) of CMD.
step () {
  local name=$1
  shift
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$@" > "$WORK/out" 2>&1 ||
    { cat "$WORK/out"; exit 1; }
  read -r wall rss < "$WORK/time"
  printf '%-28s %8.1f s %8.1f MiB  %s\n' "$name" "$wall" "$(echo "$rss / 1024" | bc -l)" \
    "$(tr '\n' ' ' < "$WORK/out" | cut -c1-90)"
}

echo "repo-scale: $N chunks in $REPO ($(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg))"
step "build (vms-bench-synth)" "$SYNTH" "$REPO" "$N"
echo "  objects: $(objects)  bytes: $(bytes)"
step "gc --grace 0 (none dead)" "$VMS" gc --grace 0
step "prune --keep-last 1" "$VMS" prune --keep-last 1
step "gc --grace 0 (half dead)" "$VMS" gc --grace 0
echo "  objects: $(objects)  bytes: $(bytes)"
step "verify --sample 1" "$VMS" verify --sample 1
step "verify --sample 10" "$VMS" verify --sample 10
