#!/bin/bash
# s3-object-lock-keeps-backups-through-prune-and-gc (issue 14, R29): on
# the lab's RADOS Gateway, with the bucket owner's credentials (which may
# delete): a retention is refused on a bucket without Object Lock (nothing
# written); on one with it, every object of a backup carries GOVERNANCE
# and a retain-until date one day ahead by the store's clock; prune keeps
# the locked backup its policy would remove and says until when; a direct
# DELETE of that backup's manifest version is refused by the gateway (the
# lock is the store's, not only the client's); the manifest hidden behind
# a delete marker (what a host with s3:DeleteObject can do), gc keeps the
# locked garbage and says so; the marker removed, the backup is whole
# (verify --deep, extract byte for byte). An append-only repository
# refuses prune and gc without --admin and prunes with it. A backup that
# reuses an older pack extends that pack's (its segment's, the config's)
# retention to its own date; packs it does not use keep theirs. A pack
# put as a multipart upload carries the same lock (the gateway ignores
# the lock headers of the initiate: the client sets it after the
# complete); when that fails the backup fails and leaves no unlocked pack.
set -uo pipefail
vmshadow=$1
. "$(dirname "$0")/s3-lib.sh"
fail () { echo "FAIL: $*"; exit 1; }
tmp=$(mktemp -d /var/tmp/vmshadow-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
s3_lab_start
s3_bucket plain vmshadow-nolock
s3_bucket_locked locked vmshadow-lock
export VMSHADOW_SCRATCH_DIR=$tmp/scratch VMSHADOW_WRITERS_DIR=$tmp/writers.d
unset VMSHADOW_REPO VMSHADOW_REPO_FORMAT VMSHADOW_REPO_PACK_SIZE
mkdir -p "$tmp/app" "$VMSHADOW_WRITERS_DIR"
head -c 3000000 /dev/urandom > "$tmp/app/data"
cp "$tmp/app/data" "$tmp/data.1"
. "$(dirname "$0")/../exec-writer-double.sh"
exec_writer_double "$VMSHADOW_WRITERS_DIR" "$tmp/app/data"
keys () {   # BUCKET [PREFIX]: its keys (current versions), sorted
  s3_curl "$VMSLAB_S3_ENDPOINT/$1?list-type=2&prefix=${2//\//%2F}" |
    python3 -c 'import sys, xml.etree.ElementTree as E
ns = "{http://s3.amazonaws.com/doc/2006-03-01/}"
for k in E.parse(sys.stdin).getroot().iter(ns + "Key"): print(k.text)' | sort
}
ids () { "$vmshadow" --repo "$1" list --json | python3 -c 'import json,sys; print(" ".join(b["backup_id"] for b in json.load(sys.stdin)["backups"]))'; }
header () {   # NAME FILE: the value of header NAME in curl's -D FILE
  tr -d '\r' < "$2" | awk -v h="$(tr A-Z a-z <<<"$1")" 'tolower($0) ~ "^" h ": " { sub(/^[^:]*: /, ""); print; exit }'
}

# 1. No Object Lock on the bucket: refused, nothing written.
rc=0
"$vmshadow" --repo "s3://$plain/r" init --retention-days 1 > "$tmp/out" 2> "$tmp/err" || rc=$?
[ $rc = 1 ] || fail "init --retention-days on a bucket without Object Lock exited $rc: $(cat "$tmp/out" "$tmp/err")"
grep -q "has no Object Lock" "$tmp/err" || fail "it said: $(cat "$tmp/err")"
[ -z "$(keys "$plain" r/)" ] || fail "a refused init wrote: $(keys "$plain" r/)"
echo "ok - a retention on a bucket without Object Lock is refused, nothing written"

# 2. With it: every object of a backup is locked (GOVERNANCE, ~1 day).
repo=s3://$locked/r
"$vmshadow" --repo "$repo" init --retention-days 1 > "$tmp/out" || fail "init: $(cat "$tmp/out")"
grep -q "retained 1 days" "$tmp/out" || fail "init said: $(cat "$tmp/out")"
"$vmshadow" --repo "$repo" backup > "$tmp/out" || fail "backup 1: $(cat "$tmp/out")"
id1=$(ids "$repo")
[ -n "$id1" ] || fail "no backup listed"
now=$(date +%s)
n=0
for k in $(keys "$locked" r/ | grep -E '^r/(packs|index|backups)/'); do
  s3_curl -I -D "$tmp/h" -o /dev/null "$VMSLAB_S3_ENDPOINT/$locked/$k"
  [ "$(header x-amz-object-lock-mode "$tmp/h")" = GOVERNANCE ] || fail "$k: no GOVERNANCE lock: $(cat "$tmp/h")"
  until=$(date -d "$(header x-amz-object-lock-retain-until-date "$tmp/h")" +%s) || fail "$k: no retain-until date"
  d=$((until - now - 86400))
  [ ${d#-} -lt 600 ] || fail "$k retained until $(header x-amz-object-lock-retain-until-date "$tmp/h"), not a day from now"
  n=$((n + 1))
done
[ $n -ge 4 ] || fail "only $n backup objects: $(keys "$locked" r/)"
for k in $(keys "$locked" r/ | grep -E '^r/(sessions|clock|gc)/|^r/lock$' || true); do
  fail "left behind: $k"
done
echo "ok - $n objects of the backup carry Object Lock GOVERNANCE until a day from now"

# 3. A second backup of other data; prune --keep-last 1 keeps the locked
# first one and says until when.
head -c 3000000 /dev/urandom > "$tmp/app/data"
sleep 1
"$vmshadow" --repo "$repo" backup > "$tmp/out" || fail "backup 2: $(cat "$tmp/out")"
"$vmshadow" --repo "$repo" prune --keep-last 1 > "$tmp/out" 2>&1 || fail "prune: $(cat "$tmp/out")"
grep -q "^keep $id1 (locked until 20[0-9-]*T[0-9:]*Z: Object Lock GOVERNANCE" "$tmp/out" ||
  fail "prune said: $(cat "$tmp/out")"
grep -q "^Removed 0 backups" "$tmp/out" || fail "prune said: $(cat "$tmp/out")"
[ "$(ids "$repo" | wc -w)" = 2 ] || fail "not two backups after prune: $(ids "$repo")"
echo "ok - prune --keep-last 1 keeps the locked backup: $(grep "^keep $id1" "$tmp/out")"

# 4. The lock is the gateway's: deleting the manifest's version is refused.
m=r/backups/$id1/manifest
s3_curl -I -D "$tmp/h" -o /dev/null "$VMSLAB_S3_ENDPOINT/$locked/$m"
ver=$(header x-amz-version-id "$tmp/h")
[ -n "$ver" ] || fail "the manifest has no version id: $(cat "$tmp/h")"
code=$(s3_curl -o "$tmp/body" -w '%{http_code}' -X DELETE "$VMSLAB_S3_ENDPOINT/$locked/$m?versionId=$ver")
[ "$code" = 403 ] || fail "a DELETE of the locked manifest version answered $code: $(cat "$tmp/body")"
grep -q AccessDenied "$tmp/body" || fail "the refusal said: $(cat "$tmp/body")"
echo "ok - the gateway refuses to delete the locked manifest's version (HTTP 403 AccessDenied)"

# 5. Hidden behind a delete marker (a plain DELETE, what any holder of
# s3:DeleteObject can do), the backup's objects are garbage to gc, which
# keeps them all while locked and says so.
s3_curl -D "$tmp/h" -o /dev/null -X DELETE "$VMSLAB_S3_ENDPOINT/$locked/$m"
marker=$(header x-amz-version-id "$tmp/h")
[ -n "$marker" ] || fail "no delete marker made: $(cat "$tmp/h")"
[ "$(ids "$repo")" != "$id1" ] && [ "$(ids "$repo" | wc -w)" = 1 ] || fail "backups: $(ids "$repo")"
before=$(keys "$locked" r/ | grep -E '^r/(packs|backups)/' | grep -v "^$m$")
[ "$(wc -l <<<"$before")" -ge 3 ] || fail "objects before gc: $before"
"$vmshadow" --repo "$repo" gc --grace 0 > "$tmp/gc.txt" 2>&1 || fail "gc: $(cat "$tmp/gc.txt")"
grep -q "^Kept [1-9][0-9]* unused objects* (.*) under Object Lock, retained until 20[0-9-]*T[0-9:]*Z" "$tmp/gc.txt" ||
  fail "gc said: $(cat "$tmp/gc.txt")"
"$vmshadow" --repo "$repo" gc --grace 0 --json > "$tmp/out" || fail "gc --json: $(cat "$tmp/out")"
python3 -c 'import json,sys; k=json.load(open(sys.argv[1]))["kept_locked"]; assert k["objects"] >= 2 and k["bytes"] > 2000000 and k["until"], k' "$tmp/out" ||
  fail "gc --json: $(cat "$tmp/out")"
after=$(keys "$locked" r/ | grep -E '^r/(packs|backups)/')
[ "$before" = "$after" ] || fail "gc deleted locked objects: $(diff <(echo "$before") <(echo "$after"))"
echo "ok - gc keeps the locked garbage and says so: $(grep "^Kept" "$tmp/gc.txt"); --json: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["kept_locked"])' "$tmp/out")"

# 6. The marker removed: the backup is back, whole.
code=$(s3_curl -o /dev/null -w '%{http_code}' -X DELETE "$VMSLAB_S3_ENDPOINT/$locked/$m?versionId=$marker")
[ "$code" = 204 ] || fail "removing the delete marker answered $code"
[ "$(ids "$repo" | wc -w)" = 2 ] || fail "backups after the marker went: $(ids "$repo")"
"$vmshadow" --repo "$repo" verify --deep > "$tmp/out" || fail "verify --deep: $(cat "$tmp/out")"
"$vmshadow" --repo "$repo" extract "$id1" data "$tmp/app/data" --to "$tmp/data.out" > /dev/null || fail "extract $id1"
cmp -s "$tmp/data.out" "$tmp/data.1" || fail "backup $id1 extracts other data"
echo "ok - the locked backup survived prune and gc: verify --deep passes, it extracts byte for byte"

# 7. Append-only (no retention, a bucket without Object Lock): backups
# go in; prune and gc refuse without --admin; with it, prune removes.
ao=s3://$plain/ao
"$vmshadow" --repo "$ao" init --append-only > /dev/null || fail "init --append-only"
"$vmshadow" --repo "$ao" backup > /dev/null || fail "append-only backup 1"
sleep 1
"$vmshadow" --repo "$ao" backup > /dev/null || fail "append-only backup 2"
for c in "prune --keep-last 1" "gc --grace 0"; do
  rc=0; "$vmshadow" --repo "$ao" $c > "$tmp/out" 2> "$tmp/err" || rc=$?
  [ $rc = 1 ] && grep -q "is append-only" "$tmp/err" || fail "$c exited $rc: $(cat "$tmp/out" "$tmp/err")"
done
[ "$(ids "$ao" | wc -w)" = 2 ] || fail "append-only: $(ids "$ao")"
"$vmshadow" --repo "$ao" prune --keep-last 1 --admin > "$tmp/out" || fail "prune --admin: $(cat "$tmp/out")"
[ "$(ids "$ao" | wc -w)" = 1 ] || fail "prune --admin left: $(ids "$ao")"
"$vmshadow" --repo "$ao" gc --grace 0 --admin > "$tmp/out" || fail "gc --admin: $(cat "$tmp/out")"
"$vmshadow" --repo "$ao" verify --deep > "$tmp/out" || fail "verify --deep: $(cat "$tmp/out")"
echo "ok - an append-only repository refuses prune and gc without --admin; the admin prunes and collects"

# 8. Lock extension (issue 14, R29): a backup that reuses an older pack's
# chunks makes that pack (and its index segment, and the config) retained
# until its own date, before its manifest; packs it does not use keep
# theirs. 1 MiB packs: 3 MB of data is three packs; the second backup
# keeps only the first 128 KiB chunk (one pack holds it: chunks are
# stored from several threads, so which pack holds which chunk is not
# their order in the file).
retain () {   # KEY: its retain-until date, Unix seconds
  s3_curl -I -D "$tmp/h" -o /dev/null "$VMSLAB_S3_ENDPOINT/$locked/$1"
  date -d "$(header x-amz-object-lock-retain-until-date "$tmp/h")" +%s
}
ext=s3://$locked/ext
VMSHADOW_REPO_PACK_SIZE=1048576 "$vmshadow" --repo "$ext" init --retention-days 1 > /dev/null ||
  fail "init of $ext"
head -c 3000000 /dev/urandom > "$tmp/app/data"
"$vmshadow" --repo "$ext" backup > "$tmp/out" 2>&1 || fail "extension backup 1: $(cat "$tmp/out")"
old=$(keys "$locked" ext/ | grep -E '^ext/(packs|index)/|^ext/config$')
[ "$(grep -c '^ext/packs/' <<<"$old")" -ge 3 ] || fail "not three packs: $old"
declare -A u1=()
for k in $old; do u1[$k]=$(retain "$k") || fail "$k has no retention"; done
sleep 2
head -c $((3000000 - 131072)) /dev/urandom | dd of="$tmp/app/data" bs=131072 seek=1 conv=notrunc status=none
VMSHADOW_DEBUG=1 "$vmshadow" --repo "$ext" backup > "$tmp/out" 2>&1 || fail "extension backup 2: $(cat "$tmp/out")"
new=$(comm -13 <(echo "$old") <(keys "$locked" ext/ | grep -E '^ext/(packs|index)/'))
[ -n "$new" ] || fail "the second backup put no pack"
u2=$(retain "$(grep -m1 '^ext/packs/' <<<"$new")")
moved=() kept=()
for k in $old; do
  u=$(retain "$k")
  if [ "$u" = "$u2" ]; then moved+=("$k")
  elif [ "$u" = "${u1[$k]}" ] && [ "$u" -lt "$u2" ]; then kept+=("$k")
  else fail "$k retained until $u: neither its own ${u1[$k]} nor the new backup's $u2"
  fi
done
mp=$(printf '%s\n' "${moved[@]}" | grep -c '^ext/packs/' || true)
ms=$(printf '%s\n' "${moved[@]}" | grep -c '^ext/index/' || true)
kp=$(printf '%s\n' "${kept[@]}" | grep -c '^ext/packs/' || true)
[ "$mp" = 1 ] && [ "$ms" = 1 ] && [ "$kp" -ge 2 ] ||
  fail "moved ${moved[*]}, kept ${kept[*]}: not the one reused pack and its segment"
printf '%s\n' "${moved[@]}" | grep -qx ext/config || fail "the config's retention did not move: ${moved[*]}"
grep -q "retention of 3 older objects .* extended" "$tmp/out" || fail "the backup did not say so: $(cat "$tmp/out")"
"$vmshadow" --repo "$ext" verify --deep > "$tmp/out" || fail "verify --deep of $ext: $(cat "$tmp/out")"
p=$(printf '%s\n' "${moved[@]}" | grep '^ext/packs/')
echo "ok - the reused pack, its segment and the config moved from $(date -u -d @"${u1[$p]}" +%TZ) to the new backup's $(date -u -d @"$u2" +%TZ); $kp unused packs kept theirs"

# 9. Multipart uploads (issue 14): a pack put in parts (5 MiB) is locked
# as one put whole is, by the gateway's own HEAD; a multipart object's
# ETag ends in -<parts>, which shows the parts were used.
mpr=s3://$locked/mp
export VMSHADOW_S3_PART_SIZE=5242880
"$vmshadow" --repo "$mpr" init --retention-days 1 > /dev/null || fail "init of $mpr"
head -c 12000000 /dev/urandom > "$tmp/app/data"
"$vmshadow" --repo "$mpr" backup > "$tmp/out" 2>&1 || fail "multipart backup: $(cat "$tmp/out")"
unset VMSHADOW_S3_PART_SIZE
now=$(date +%s)
parts=0
for k in $(keys "$locked" mp/ | grep '^mp/packs/'); do
  s3_curl -I -D "$tmp/h" -o /dev/null "$VMSLAB_S3_ENDPOINT/$locked/$k"
  [[ "$(header etag "$tmp/h")" =~ -[0-9]+\"?$ ]] && parts=$((parts + 1))
  [ "$(header x-amz-object-lock-mode "$tmp/h")" = GOVERNANCE ] || fail "$k: no GOVERNANCE lock: $(cat "$tmp/h")"
  until=$(date -d "$(header x-amz-object-lock-retain-until-date "$tmp/h")" +%s) || fail "$k: no retain-until date"
  d=$((until - now - 86400))
  [ ${d#-} -lt 600 ] || fail "$k retained until $(header x-amz-object-lock-retain-until-date "$tmp/h"), not a day from now"
done
[ $parts -ge 1 ] || fail "no pack was a multipart upload: $(keys "$locked" mp/)"
"$vmshadow" --repo "$mpr" verify --deep > "$tmp/out" || fail "verify --deep of $mpr: $(cat "$tmp/out")"
echo "ok - $parts multipart-uploaded pack(s) carry Object Lock GOVERNANCE until a day from now"

# 10. When the lock cannot be set on a multipart pack (every
# PutObjectRetention answered 503 by the fault proxy), the backup fails,
# and the unlocked pack is not left behind.
packs_before=$(keys "$locked" mp/ | grep '^mp/packs/')
n_before=$(ids "$mpr" | wc -w)
FAULT_PROXY_FAIL_MATCH="retention=" python3 "$(dirname "$0")/fault-proxy.py" "${VMSLAB_S3_ENDPOINT##*:}" ok "$tmp/port" "$tmp/proxy.log" &
proxy_pid=$!
trap 'kill $proxy_pid 2>/dev/null; s3_lab_cleanup; rm -rf "$tmp"' EXIT
for _ in $(seq 1 50); do [ -s "$tmp/port" ] && break; sleep 0.1; done
[ -s "$tmp/port" ] || fail "the fault proxy did not start"
head -c 12000000 /dev/urandom > "$tmp/app/data"
rc=0
VMSHADOW_S3_PART_SIZE=5242880 VMSHADOW_S3_RETRIES=2 \
  VMSHADOW_S3_ENDPOINT=http://127.0.0.1:$(cat "$tmp/port") \
  timeout 120 "$vmshadow" --repo "$mpr" backup > "$tmp/out" 2>&1 || rc=$?
kill $proxy_pid; wait $proxy_pid 2>/dev/null
[ $rc != 0 ] && [ $rc != 124 ] || fail "a backup whose packs cannot be locked exited $rc: $(cat "$tmp/out")"
grep -q "^PUT /$locked/mp/packs/.*retention=.* 503$" "$tmp/proxy.log" || fail "no pack's retention was tried: $(cat "$tmp/proxy.log")"
grep -q "^POST /$locked/mp/packs/.*?uploadId=.* ok$" "$tmp/proxy.log" || fail "no multipart upload completed: $(cat "$tmp/proxy.log")"
[ "$(keys "$locked" mp/ | grep '^mp/packs/')" = "$packs_before" ] ||
  fail "an unlocked pack was left: $(diff <(echo "$packs_before") <(keys "$locked" mp/ | grep '^mp/packs/'))"
[ "$(ids "$mpr" | wc -w)" = "$n_before" ] || fail "the failed backup is visible: $(ids "$mpr")"
"$vmshadow" --repo "$mpr" verify --deep > "$tmp/out2" || fail "verify --deep after the failed backup: $(cat "$tmp/out2")"
echo "ok - a multipart pack whose lock cannot be set fails the backup and is not left: $(grep -m1 -o 'no backup was made.*' "$tmp/out" | head -c 200)"
