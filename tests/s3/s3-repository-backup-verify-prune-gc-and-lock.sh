#!/bin/bash
# s3-repository-backup-verify-prune-gc-and-lock (issue 14): --repo
# s3://BUCKET/PREFIX on the lab's RADOS Gateway: bad specs, a missing
# bucket, wrong keys and another user's keys are named, and nothing is
# written then; a repository is created, backed up to (twice), verified
# deep, extracted byte for byte, pruned and garbage-collected, its objects
# all under its prefix; another prefix is another (absent) repository;
# the writer lock held by another client refuses a backup, naming the
# holder, while readers go on; encrypted repositories work there too.
set -uo pipefail
vmshadow=$1
. "$(dirname "$0")/s3-lib.sh"
fail () { echo "FAIL: $*"; exit 1; }
tmp=$(mktemp -d /var/tmp/vmshadow-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
s3_lab_start
s3_bucket bucket vmshadow-repo
export VMSHADOW_SCRATCH_DIR=$tmp/scratch VMSHADOW_WRITERS_DIR=$tmp/writers.d
unset VMSHADOW_REPO VMSHADOW_REPO_FORMAT VMSHADOW_REPO_PACK_SIZE
mkdir -p "$tmp/app" "$VMSHADOW_WRITERS_DIR"
head -c 3000000 /dev/urandom > "$tmp/app/data"
. "$(dirname "$0")/../exec-writer-double.sh"
exec_writer_double "$VMSHADOW_WRITERS_DIR" "$tmp/app/data"
# Every key in the bucket (at most 1000: enough here).
keys () {
  s3_curl "$VMSLAB_S3_ENDPOINT/$bucket?list-type=2" |
    python3 -c 'import sys, xml.etree.ElementTree as E
ns = "{http://s3.amazonaws.com/doc/2006-03-01/}"
for k in E.parse(sys.stdin).getroot().iter(ns + "Key"): print(k.text)' | sort
}
nbackups () { "$vmshadow" --repo "$1" list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["backups"]))'; }

expect_error () {   # PATTERN CMD... : fails, exit 1, says PATTERN
  local pat=$1 rc=0
  shift
  "$@" > "$tmp/out" 2> "$tmp/err" || rc=$?
  [ $rc = 1 ] || fail "'$*' exited $rc, not 1: $(cat "$tmp/out" "$tmp/err")"
  grep -q -- "$pat" "$tmp/err" || fail "'$*' said: $(cat "$tmp/err"), not '$pat'"
}
repo=s3://$bucket/repos/one
expect_error "the form is s3://BUCKET or s3://BUCKET/PREFIX" "$vmshadow" --repo s3:// init
expect_error "the form is s3://BUCKET or s3://BUCKET/PREFIX" "$vmshadow" --repo s3://No_Such init
expect_error "a prefix is components" "$vmshadow" --repo "s3://$bucket/a//b" init
expect_error "HTTP 404 NoSuchBucket (no such bucket: create it first)" \
  "$vmshadow" --repo "s3://$bucket-none/x" backup
expect_error "no repository at $repo" "$vmshadow" --repo "$repo" list
VMSHADOW_S3_SECRET_ACCESS_KEY=wrong expect_error "HTTP 403 SignatureDoesNotMatch" \
  "$vmshadow" --repo "$repo" init
# The other lab user may not touch this user's bucket.
VMSHADOW_S3_ACCESS_KEY_ID=$VMSLAB_S3_OTHER_ACCESS_KEY_ID \
VMSHADOW_S3_SECRET_ACCESS_KEY=$VMSLAB_S3_OTHER_SECRET_ACCESS_KEY \
  expect_error "HTTP 403 AccessDenied" "$vmshadow" --repo "$repo" backup
[ -z "$(keys)" ] || fail "a refused command wrote objects: $(keys)"
echo "ok - bad specs, a missing bucket, a missing repository, a wrong secret and another user's keys are named; nothing written"

"$vmshadow" --repo "$repo" init > "$tmp/out" || fail "init: $(cat "$tmp/out")"
"$vmshadow" --repo "$repo" backup > "$tmp/out" || fail "backup: $(cat "$tmp/out")"
head -c 1000000 /dev/urandom | dd of="$tmp/app/data" bs=1M seek=1 conv=notrunc status=none
"$vmshadow" --repo "$repo" backup --json > "$tmp/out" || fail "second backup: $(cat "$tmp/out")"
# The second backup's own id (prune --keep-last 1 below must keep it, also
# when both backups were committed within one second: created_nsec).
id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["backup_id"])' < "$tmp/out")
[ "$(nbackups "$repo")" = 2 ] || fail "not two backups"
"$vmshadow" --repo "$repo" verify --deep > "$tmp/out" || fail "verify --deep: $(cat "$tmp/out")"
"$vmshadow" --repo "$repo" extract "$id" data "$tmp/app/data" --to "$tmp/data.out" > /dev/null || fail "extract"
cmp -s "$tmp/data.out" "$tmp/app/data" || fail "extracted data differs"
keys | grep -qx "repos/one/config" || fail "no config object: $(keys)"
keys | grep -q "^repos/one/backups/.*/manifest$" || fail "no manifest object: $(keys)"
keys | grep -q "^repos/one/packs/" || fail "no packs: $(keys)"
outside=$(keys | grep -v "^repos/one/" || true)
[ -z "$outside" ] || fail "objects outside the prefix: $outside"
keys | grep -q "^repos/one/lock$" && fail "the writer lock was left behind"
keys | grep -q "^repos/one/clock/" && fail "a clock object was left behind"
echo "ok - init, two backups, verify --deep and extract on $repo; every object under repos/one/, no lock or clock left"

expect_error "no repository at s3://$bucket/repos/two" "$vmshadow" --repo "s3://$bucket/repos/two" list
echo "ok - another prefix is another (absent) repository"

# The writer lock, held by another client (its object fresh): a backup is
# refused naming it; readers go on; gone, backups go on.
printf 'vmshadow pid 4242 on otherhost\n' > "$tmp/lock"
s3_put "$tmp/lock" "$VMSLAB_S3_ENDPOINT/$bucket/repos/one/lock" || fail "cannot put a lock object"
expect_error "is locked by vmshadow pid 4242 on otherhost" "$vmshadow" --repo "$repo" backup
[ "$(nbackups "$repo")" = 2 ] || fail "a backup was committed under another client's lock"
"$vmshadow" --repo "$repo" verify > "$tmp/out" || fail "a reader needs no lock: $(cat "$tmp/out")"
s3_curl -X DELETE "$VMSLAB_S3_ENDPOINT/$bucket/repos/one/lock" || fail "cannot delete the lock object"
echo "ok - a backup under another client's lock is refused with its name; readers go on"

"$vmshadow" --repo "$repo" prune --keep-last 1 > "$tmp/out" || fail "prune: $(cat "$tmp/out")"
[ "$(nbackups "$repo")" = 1 ] || fail "prune --keep-last 1 left $(nbackups "$repo") backups"
packs_before=$(keys | grep -c "^repos/one/packs/")
"$vmshadow" --repo "$repo" gc --grace 0 > "$tmp/out" || fail "gc: $(cat "$tmp/out")"
"$vmshadow" --repo "$repo" verify --deep > "$tmp/out" || fail "verify --deep after gc: $(cat "$tmp/out")"
"$vmshadow" --repo "$repo" extract "$id" data "$tmp/app/data" --to "$tmp/data2.out" > /dev/null 2> "$tmp/err" ||
  fail "extract after gc: $(cat "$tmp/err"; "$vmshadow" --repo "$repo" list)"
cmp -s "$tmp/data2.out" "$tmp/app/data" || fail "extracted data differs after gc"
echo "ok - prune kept one backup, gc ran ($packs_before packs before, $(keys | grep -c "^repos/one/packs/") after), verify --deep and extract still good"

# Encrypted (issue 13) on S3: sealed objects, the same commands.
export VMSHADOW_KEY_DIR=$tmp/keys VMSHADOW_PASSPHRASE=s3-test-passphrase
erepo=s3://$bucket/repos/sealed
"$vmshadow" --repo "$erepo" init --encrypt > "$tmp/out" 2>&1 || fail "init --encrypt: $(cat "$tmp/out")"
"$vmshadow" --repo "$erepo" backup > "$tmp/out" || fail "encrypted backup: $(cat "$tmp/out")"
"$vmshadow" --repo "$erepo" verify --deep > "$tmp/out" || fail "encrypted verify --deep: $(cat "$tmp/out")"
eid=$("$vmshadow" --repo "$erepo" list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["backups"][0]["backup_id"])')
"$vmshadow" --repo "$erepo" extract "$eid" data "$tmp/app/data" --to "$tmp/data3.out" > /dev/null || fail "encrypted extract"
cmp -s "$tmp/data3.out" "$tmp/app/data" || fail "encrypted extract differs"
s3_curl "$VMSLAB_S3_ENDPOINT/$bucket/repos/sealed/config" | grep -q '"encryption"' || fail "the config does not say encrypted"
echo "ok - an encrypted repository on S3 backs up, verifies deep and extracts"
