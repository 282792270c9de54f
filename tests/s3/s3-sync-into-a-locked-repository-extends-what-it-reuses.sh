#!/bin/bash
# s3-sync-into-a-locked-repository-extends-what-it-reuses (issue 14, R29):
# a sync into an S3 repository with a retention (Object Lock on the lab's
# RADOS Gateway) makes the older objects a synced backup needs — the packs
# of earlier syncs whose chunks DST already had and so were not sent, their
# index segments, the config — retained until its own date before its
# manifest, as a backup does; packs it does not use keep theirs. Without
# that, an incremental's reused packs could be deleted (their own dates
# passed) while its manifest is still locked.
set -uo pipefail
vmshadow=$1
. "$(dirname "$0")/s3-lib.sh"
fail () { echo "FAIL: $*"; exit 1; }
tmp=$(mktemp -d /var/tmp/vmshadow-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
s3_lab_start
s3_bucket_locked locked vmshadow-sync-lock
export VMSHADOW_SCRATCH_DIR=$tmp/scratch VMSHADOW_WRITERS_DIR=$tmp/writers.d
unset VMSHADOW_REPO VMSHADOW_REPO_FORMAT VMSHADOW_REPO_PACK_SIZE
mkdir -p "$tmp/app" "$VMSHADOW_WRITERS_DIR"
. "$(dirname "$0")/../exec-writer-double.sh"
exec_writer_double "$VMSHADOW_WRITERS_DIR" "$tmp/app/data"
keys () {   # PREFIX: the bucket's keys under it (current versions), sorted
  s3_curl "$VMSLAB_S3_ENDPOINT/$locked?list-type=2&prefix=${1//\//%2F}" |
    python3 -c 'import sys, xml.etree.ElementTree as E
ns = "{http://s3.amazonaws.com/doc/2006-03-01/}"
for k in E.parse(sys.stdin).getroot().iter(ns + "Key"): print(k.text)' | sort
}
retain () {   # KEY: its retain-until date, Unix seconds
  s3_curl -I -D "$tmp/h" -o /dev/null "$VMSLAB_S3_ENDPOINT/$locked/$1"
  date -d "$(tr -d '\r' < "$tmp/h" | awk 'tolower($0) ~ /^x-amz-object-lock-retain-until-date: / { sub(/^[^:]*: /, ""); print; exit }')" +%s
}
local_repo=$tmp/local dst=s3://$locked/copy

head -c 3000000 /dev/urandom > "$tmp/app/data"
"$vmshadow" --repo "$local_repo" backup > "$tmp/out" 2>&1 || fail "backup 1: $(cat "$tmp/out")"
# 1 MiB packs: the 3 MB are three packs, the first holding the first
# chunk (a sync stores a file's chunks in order).
VMSHADOW_REPO_PACK_SIZE=1048576 "$vmshadow" --repo "$dst" init --retention-days 1 > /dev/null || fail "init of $dst"
"$vmshadow" sync "$local_repo" "$dst" > "$tmp/out" 2>&1 || fail "sync 1: $(cat "$tmp/out")"
old=$(keys copy/ | grep -E '^copy/(packs|index)/|^copy/config$')
[ "$(grep -c '^copy/packs/' <<<"$old")" -ge 3 ] || fail "not three packs: $old"
declare -A u1=()
for k in $old; do u1[$k]=$(retain "$k") || fail "$k has no retention"; done
sleep 2
# All but the first chunk changed: the second backup reuses one old pack.
head -c $((3000000 - 131072)) /dev/urandom | dd of="$tmp/app/data" bs=131072 seek=1 conv=notrunc status=none
"$vmshadow" --repo "$local_repo" backup > "$tmp/out" 2>&1 || fail "backup 2: $(cat "$tmp/out")"
VMSHADOW_DEBUG=1 "$vmshadow" sync "$local_repo" "$dst" > "$tmp/out" 2>&1 || fail "sync 2: $(cat "$tmp/out")"
new=$(comm -13 <(echo "$old") <(keys copy/ | grep -E '^copy/(packs|index)/'))
[ -n "$new" ] || fail "the second sync put no pack"
u2=$(retain "$(grep -m1 '^copy/packs/' <<<"$new")")
moved=() kept=()
for k in $old; do
  u=$(retain "$k")
  if [ "$u" = "$u2" ]; then moved+=("$k")
  elif [ "$u" = "${u1[$k]}" ] && [ "$u" -lt "$u2" ]; then kept+=("$k")
  else fail "$k retained until $u: neither its own ${u1[$k]} nor the second sync's $u2"
  fi
done
mp=$(printf '%s\n' "${moved[@]}" | grep -c '^copy/packs/' || true)
ms=$(printf '%s\n' "${moved[@]}" | grep -c '^copy/index/' || true)
kp=$(printf '%s\n' "${kept[@]}" | grep -c '^copy/packs/' || true)
[ "$mp" = 1 ] && [ "$ms" = 1 ] && [ "$kp" -ge 2 ] ||
  fail "moved ${moved[*]}, kept ${kept[*]}: not the one reused pack and its segment"
printf '%s\n' "${moved[@]}" | grep -qx copy/config || fail "the config's retention did not move: ${moved[*]}"
grep -q "retention of 3 older objects .* extended" "$tmp/out" || fail "the sync did not say so: $(cat "$tmp/out")"
"$vmshadow" --repo "$dst" verify --deep > "$tmp/out" 2>&1 || fail "verify --deep of $dst: $(cat "$tmp/out")"
p=$(printf '%s\n' "${moved[@]}" | grep '^copy/packs/')
echo "ok - the synced incremental's reused pack, its segment and the config moved from $(date -u -d @"${u1[$p]}" +%TZ) to its own $(date -u -d @"$u2" +%TZ); $kp unused packs kept theirs; verify --deep good"
