#!/bin/bash
# bench/encryption.sh — an encrypted version 2 repository (issue 13, R28)
# against a plain one: full backup and restore of the 4 GiB mixed disk,
# each as a ratio against the raw read (cat) and the raw copy (cp) of the
# same image measured in the same run, and encrypted against plain.
# Target: encrypted at most 10 % slower.
#
#   bench/encryption.sh [BUILD-DIR [ROUNDS]]     (default: build 2)
#
# The image is bench/datapath.sh's mixed disk: 1 GiB random, the same GiB
# again, then zeros to 4 GiB, as qcow2 exported read-only by qemu-nbd.
# Each round runs plain then encrypted (32 MiB packs both), page cache
# dropped before each step (needs root):
#   full     full backup into a fresh repository, committed
#            (vms-bench-copy full: the data path and a commit, as a backup)
#   restore  extract of that backup to a raw file, checked with qemu-img
#            compare: every chunk proven before it is written — plain:
#            re-hashed (SHA-256); encrypted: authenticated by AES-256-GCM
#            for its chunk id and repository (its keyed id is re-derived
#            only by verify --deep: docs/encryption.md "Why a restore does
#            not re-derive chunk ids")
# The better of the rounds counts for each. The encrypted repository is
# made by `vmshadow init --encrypt` with the production scrypt cost
# (N = 2^17): each step's time includes unlocking the key, a fixed cost
# per process (vms-bench-copy prints how long opening the repository
# took); the "-open" columns are the times without it (the data path).
# The unlock measured is the one a restore takes: vmshadow has one way to
# open a key file, scrypt of a passphrase (typed, on --passphrase-fd, or
# VMSHADOW_PASSPHRASE from a timer's root-only EnvironmentFile, as here);
# there is no passphrase-less host key, so no restore skips it.
#
# Work files (about 8 GiB + the repositories) go to a fresh directory
# under $BENCH_DIR (default /work), removed at the end.
set -euo pipefail

BUILD=${1:-build}
ROUNDS=${2:-2}
DRV=$(realpath "$BUILD")/lib/datapath/vms-bench-copy
VMSHADOW=$(realpath "$BUILD")/cli/vmshadow
[ -x "$DRV" ] && [ -x "$VMSHADOW" ] || { echo "build first (ninja -C $BUILD)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "needs root (to drop the page cache)" >&2; exit 1; }
WORK=$(mktemp -d "${BENCH_DIR:-/work}/vms-bench-enc-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
GiB=$((1024 * 1024 * 1024))
export VMSHADOW_KEY_DIR=$WORK/keys VMSHADOW_PASSPHRASE=bench-passphrase-13
unset VMSHADOW_SCRYPT_LOG2N VMSHADOW_REPO_PACK_SIZE
echo "$(nproc) CPUs; driver $DRV; load average $(cut -d' ' -f1-3 /proc/loadavg)"
grep -qw aes /proc/cpuinfo && echo "CPU has AES-NI" || echo "CPU has no AES-NI"

drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
declare -A T=()
run() {
  local name=$1; shift
  drop
  local t0 t1
  t0=$(date +%s.%N)
  /usr/bin/time -f '%U %S' -o "$WORK/$name.cpu" "$@" > "$WORK/$name.out"
  t1=$(date +%s.%N)
  T[$name]=$(echo "$t1 - $t0" | bc -l)
  CPU[$name]=$(awk '{print $1 + $2}' "$WORK/$name.cpu")
  local o
  o=$(awk '/^repository opened in/ {print $4}' "$WORK/$name.out")
  T[$name-open]=$(echo "${T[$name]} - ${o:-0}" | bc -l)
  OPEN[$name]=${o:-0}
}
declare -A OPEN=() CPU=()
best() {   # NAME: keep the smaller of T[NAME] and T[NAME-best] (and of -open)
  if [ -z "${T[$1-best]:-}" ] || [ "$(echo "${T[$1]} < ${T[$1-best]}" | bc -l)" = 1 ]; then
    T[$1-best]=${T[$1]}
  fi
  if [ -z "${T[$1-open-best]:-}" ] || [ "$(echo "${T[$1-open]} < ${T[$1-open-best]}" | bc -l)" = 1 ]; then
    T[$1-open-best]=${T[$1-open]}
  fi
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

run raw cat "$IMG"; best raw
run raw cat "$IMG"; best raw
run cp sh -c "cp '$IMG' '$WORK/copy.raw' && sync"
rm -f "$WORK/copy.raw"
printf 'raw read (cat) %.2f s, raw copy (cp + sync) %.2f s\n' "${T[raw-best]}" "${T[cp]}"

"$VMSHADOW" init --encrypt --repo "$WORK/unlock" > /dev/null
run unlock "$VMSHADOW" list --repo "$WORK/unlock"
printf 'unlocking the key (scrypt N=2^17, r=8, p=1): %.2f s (vmshadow list, cache dropped)\n' "${T[unlock]}"
echo "  the passphrase path (here VMSHADOW_PASSPHRASE, as a timer's EnvironmentFile): the only"
echo "  way vmshadow opens a key file, paid once by every command; the encrypted times include it"
FP=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["encryption"]["key_fingerprint"])' "$WORK/unlock/config")

for round in $(seq "$ROUNDS"); do
  for cfg in plain encrypted; do
    REPO=$WORK/repo-$cfg
    rm -rf "$REPO"
    if [ $cfg = plain ]; then
      "$VMSHADOW" init --repo "$REPO" > /dev/null
    else
      "$VMSHADOW" init --repo "$REPO" --encrypt --key "$FP" > /dev/null
    fi
    run "full-$cfg" "$DRV" full "$REPO" "qcow2:$Q" "$WORK/$cfg.idx"; best "full-$cfg"
    run "restore-$cfg" "$DRV" extract "$REPO" "$WORK/$cfg.idx" raw "$WORK/out.raw"
    best "restore-$cfg"
    qemu-img compare -q -f raw -F qcow2 "$WORK/out.raw" "$Q" \
      || { echo "RESTORE DIFFERS ($cfg)" >&2; exit 1; }
    rm -f "$WORK/out.raw"
    printf 'round %d %-9s full %6.2f s (open %.2f, CPU %.2f s)  restore %6.2f s (open %.2f, CPU %.2f s)  repository %d bytes\n' \
      "$round" $cfg "${T[full-$cfg]}" "${OPEN[full-$cfg]}" "${CPU[full-$cfg]}" \
      "${T[restore-$cfg]}" "${OPEN[restore-$cfg]}" "${CPU[restore-$cfg]}" \
      "$(du -sb "$REPO" | cut -f1)"
    for step in full restore; do
      if [ -z "${CPU[$step-$cfg-best]:-}" ] ||
         [ "$(echo "${CPU[$step-$cfg]} < ${CPU[$step-$cfg-best]}" | bc -l)" = 1 ]; then
        CPU[$step-$cfg-best]=${CPU[$step-$cfg]}
      fi
    done
  done
done

printf '\n%-10s %8s %9s %11s %10s %9s %14s\n' repository full-s full/cat full-open-s \
  restore-s rest/cp restore-open-s
for cfg in plain encrypted; do
  printf '%-10s %8.2f %9s %11.2f %10.2f %9s %14.2f\n' $cfg "${T[full-$cfg-best]}" \
    "$(ratio "${T[full-$cfg-best]}" "${T[raw-best]}")" "${T[full-$cfg-open-best]}" \
    "${T[restore-$cfg-best]}" "$(ratio "${T[restore-$cfg-best]}" "${T[cp]}")" \
    "${T[restore-$cfg-open-best]}"
done
printf 'encrypted / plain: full %s, restore %s (target: at most 1.10)\n' \
  "$(ratio "${T[full-encrypted-best]}" "${T[full-plain-best]}")" \
  "$(ratio "${T[restore-encrypted-best]}" "${T[restore-plain-best]}")"
printf 'CPU time (user + system, least of the rounds; steadier than time on a\n'
printf 'loaded machine): full %.2f s / %.2f s = %s, restore %.2f s / %.2f s = %s\n' \
  "${CPU[full-encrypted-best]}" "${CPU[full-plain-best]}" \
  "$(ratio "${CPU[full-encrypted-best]}" "${CPU[full-plain-best]}")" \
  "${CPU[restore-encrypted-best]}" "${CPU[restore-plain-best]}" \
  "$(ratio "${CPU[restore-encrypted-best]}" "${CPU[restore-plain-best]}")"
printf 'without opening the repository (the key unlock): full %s, restore %s\n' \
  "$(ratio "${T[full-encrypted-open-best]}" "${T[full-plain-open-best]}")" \
  "$(ratio "${T[restore-encrypted-open-best]}" "${T[restore-plain-open-best]}")"
echo "(best of $ROUNDS rounds; load average now $(cut -d' ' -f1-3 /proc/loadavg))"
