#!/bin/bash
# rados-full-pool-fails-clearly-and-loses-nothing (issue 12, the full-pool
# fault): a pool over its quota makes a backup fail with a message naming
# the cause within about a minute (no wait for ever: librados pauses
# writes to a full pool by default; vmshadow puts with FULL_TRY and sets
# an OSD op timeout), commits nothing and leaves the committed backup
# whole; with the quota lifted, the next backup and verify --deep succeed.
# Uses a pool of its own (the quota is per pool), deleted at the end.
set -uo pipefail
vmshadow=$1
. "$(dirname "$0")/ceph-lib.sh"
fail () { echo "FAIL: $*"; exit 1; }
[ "$(id -u)" = 0 ] || { echo "SKIP: the lab's Ceph cluster needs root" >&2; exit 77; }
tmp=$(mktemp -d /var/tmp/vmshadow-test.XXXXXX)
pool=vmshadow-full-$$
trap 'ceph osd pool delete $pool $pool --yes-i-really-really-mean-it >/dev/null 2>&1; rm -rf "$tmp"' EXIT
ceph_lab_start
ceph osd pool create "$pool" 8 8 >/dev/null 2>&1 || fail "cannot create pool $pool"
ceph osd pool application enable "$pool" vmshadow >/dev/null 2>&1
export VMSHADOW_SCRATCH_DIR=$tmp/scratch VMSHADOW_WRITERS_DIR=$tmp/writers.d
export VMSHADOW_REPO=rados:$pool/full
unset VMSHADOW_REPO_FORMAT VMSHADOW_REPO_PACK_SIZE
mkdir -p "$tmp/app" "$VMSHADOW_WRITERS_DIR"
head -c 3000000 /dev/urandom > "$tmp/app/data"
. "$(dirname "$0")/../exec-writer-double.sh"
exec_writer_double "$VMSHADOW_WRITERS_DIR" "$tmp/app/data"
nbackups () { "$vmshadow" list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["backups"]))'; }
pool_full () { ceph osd pool ls detail | grep "'$pool'" | grep -q full_quota; }

"$vmshadow" backup > "$tmp/out" || fail "first backup: $(cat "$tmp/out")"
[ "$(nbackups)" = 1 ] || fail "no first backup"

# Over quota: another client fills the pool; the monitor flags it full.
ceph osd pool set-quota "$pool" max_bytes 4000000 >/dev/null
head -c 6000000 /dev/urandom > "$tmp/fill"
rados -p "$pool" put fill "$tmp/fill" || fail "cannot fill the pool"
for _ in $(seq 1 60); do pool_full && break; sleep 1; done
pool_full || fail "the monitor never flagged pool $pool full"
head -c 3000000 /dev/urandom > "$tmp/app/data"
rc=0
timeout 180 "$vmshadow" backup > "$tmp/out" 2> "$tmp/err" || rc=$?
[ $rc = 124 ] && fail "backup into a full pool still waited after 180 s"
[ $rc != 0 ] || fail "backup into a full pool succeeded: $(cat "$tmp/out")"
grep -q "pool full\|quota exceeded\|Disk quota\|No space" "$tmp/err" "$tmp/out" ||
  fail "the message does not name the cause: $(cat "$tmp/err" "$tmp/out")"
echo "ok - a backup into a full pool failed (exit $rc): $(head -c 200 "$tmp/err")"

ceph osd pool set-quota "$pool" max_bytes 0 >/dev/null
for _ in $(seq 1 60); do pool_full || break; sleep 1; done
pool_full && fail "pool $pool still flagged full after the quota was lifted"
[ "$(nbackups)" = 1 ] || fail "the failed backup was committed or the first lost"
"$vmshadow" verify --deep > "$tmp/out" || fail "verify after the failure: $(cat "$tmp/out")"
"$vmshadow" backup > "$tmp/out" || fail "backup after the quota was lifted: $(cat "$tmp/out")"
[ "$(nbackups)" = 2 ] || fail "the second backup is not listed"
"$vmshadow" verify --deep > "$tmp/out" || fail "verify --deep at the end: $(cat "$tmp/out")"
echo "ok - nothing was committed or lost; with the quota lifted the next backup and verify --deep succeed"
