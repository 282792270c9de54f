#!/bin/bash
# s3-sync-sends-what-is-missing-and-resumes (issue 14): vmshadow sync from
# a local repository to an s3:// one on the lab's RADOS Gateway sends a
# first backup whole and then only an incremental's new data; a sync killed
# half-way leaves no partial backup visible (and its writer lock, which the
# next sync names until it is removed), and the rerun sends only what was
# still missing, nothing duplicated; the S3 copy verifies deep; synced back
# to a new local repository (recovery), every backup extracts byte for byte.
set -uo pipefail
vmshadow=$1
. "$(dirname "$0")/s3-lib.sh"
fail () { echo "FAIL: $*"; exit 1; }
tmp=$(mktemp -d /var/tmp/vmshadow-test.XXXXXX)
sync_pid=
trap '[ -n "$sync_pid" ] && kill -9 "$sync_pid" 2>/dev/null; rm -rf "$tmp"' EXIT
s3_lab_start
s3_bucket bucket vmshadow-sync
export VMSHADOW_SCRATCH_DIR=$tmp/scratch VMSHADOW_WRITERS_DIR=$tmp/writers.d
unset VMSHADOW_REPO VMSHADOW_REPO_FORMAT VMSHADOW_REPO_PACK_SIZE
mkdir -p "$tmp/app" "$VMSHADOW_WRITERS_DIR"
. "$(dirname "$0")/../exec-writer-double.sh"
exec_writer_double "$VMSHADOW_WRITERS_DIR" "$tmp/app/data"
local_repo=$tmp/local
s3=s3://$bucket/offsite
field () { python3 -c "import json,sys; print(json.load(open('$1'))['$2'])"; }
ids () { "$vmshadow" --repo "$1" list --json | python3 -c 'import json,sys; print(" ".join(b["backup_id"] for b in json.load(sys.stdin)["backups"]))'; }
backup () { "$vmshadow" --repo "$local_repo" backup > "$tmp/out" || fail "backup: $(cat "$tmp/out")"; cp "$tmp/app/data" "$tmp/data.$1"; }

head -c 8000000 /dev/urandom > "$tmp/app/data"
backup 1
# Small packs in the copy (1 MiB), so that a killed sync has flushed some.
VMSHADOW_REPO_PACK_SIZE=1048576 "$vmshadow" sync --json "$local_repo" "$s3" > "$tmp/s1.json" ||
  fail "first sync: $(cat "$tmp/s1.json")"
[ "$(field "$tmp/s1.json" backups_synced)" = 1 ] || fail "first sync: $(cat "$tmp/s1.json")"
[ "$(field "$tmp/s1.json" bytes_stored)" = 8000000 ] || fail "first sync stored: $(cat "$tmp/s1.json")"
echo "ok - the first sync sent the backup whole: $(field "$tmp/s1.json" bytes_stored) bytes"

head -c 1000000 /dev/urandom | dd of="$tmp/app/data" bs=1M seek=3 conv=notrunc status=none
backup 2
"$vmshadow" sync --json "$local_repo" "$s3" > "$tmp/s2.json" || fail "second sync: $(cat "$tmp/s2.json")"
sent=$(field "$tmp/s2.json" bytes_stored)
[ "$(field "$tmp/s2.json" backups_synced)" = 1 ] && [ "$(field "$tmp/s2.json" backups_present)" = 1 ] ||
  fail "second sync: $(cat "$tmp/s2.json")"
# 1 MB changed: at most the 128 KiB chunks it touches (9 of them).
[ "$sent" -ge 1000000 ] && [ "$sent" -le $((9 * 131072)) ] || fail "the incremental sync stored $sent bytes"
echo "ok - the incremental's sync sent only its new data: $sent bytes for 1000000 changed"

# Killed half-way: 24 MB of new data, killed once 4 packs of it are there.
head -c 24000000 /dev/urandom > "$tmp/app/data"
backup 3
packs () { s3_curl "$VMSLAB_S3_ENDPOINT/$bucket?list-type=2&prefix=offsite%2Fpacks%2F" | grep -o '<Key>' | wc -l; }
before=$(packs)
"$vmshadow" sync "$local_repo" "$s3" > "$tmp/s3.out" 2>&1 &
sync_pid=$!
for _ in $(seq 1 600); do
  [ "$(packs)" -ge $((before + 4)) ] && break
  kill -0 "$sync_pid" 2>/dev/null || break
  sleep 0.1
done
kill -9 "$sync_pid" 2>/dev/null || fail "the sync ended before it could be killed: $(cat "$tmp/s3.out")"
wait "$sync_pid" 2>/dev/null
sync_pid=
[ "$(ids "$s3")" = "$(ids "$local_repo" | cut -d' ' -f1-2)" ] || fail "after the kill the copy lists: $(ids "$s3")"
rc=0
"$vmshadow" sync "$local_repo" "$s3" > "$tmp/out" 2>&1 || rc=$?
[ $rc = 1 ] && grep -q "is locked by vmshadow pid $! " "$tmp/out" ||
  fail "a sync after the kill did not meet the killed one's lock (exit $rc): $(cat "$tmp/out")"
s3_curl -X DELETE "$VMSLAB_S3_ENDPOINT/$bucket/offsite/lock" || fail "cannot remove the dead sync's lock"
"$vmshadow" sync --json "$local_repo" "$s3" > "$tmp/s4.json" || fail "sync after the kill: $(cat "$tmp/s4.json")"
resent=$(field "$tmp/s4.json" bytes_stored)
[ "$resent" -lt 24000000 ] || fail "the rerun sent everything again ($resent bytes)"
[ "$(ids "$s3")" = "$(ids "$local_repo")" ] || fail "the copy lists $(ids "$s3"), the source $(ids "$local_repo")"
"$vmshadow" --repo "$s3" verify --deep > "$tmp/out" || fail "verify --deep of the copy: $(cat "$tmp/out")"
echo "ok - killed after 4 packs: no partial backup visible, the killed sync's lock named; the rerun sent $resent of 24000000 bytes; the copy verifies deep"

# Recovery: S3 back to a new local repository.
"$vmshadow" sync "$s3" "$tmp/back" > "$tmp/out" || fail "sync back: $(cat "$tmp/out")"
"$vmshadow" --repo "$tmp/back" verify --deep > "$tmp/out" || fail "verify --deep of the recovered copy: $(cat "$tmp/out")"
n=1
for id in $(ids "$tmp/back"); do
  "$vmshadow" --repo "$tmp/back" extract "$id" data "$tmp/app/data" --to "$tmp/x.$n" > /dev/null || fail "extract $id"
  cmp -s "$tmp/x.$n" "$tmp/data.$n" || fail "backup $n ($id) extracts differently"
  [ "$("$vmshadow" --repo "$tmp/back" list --json | python3 -c "import json,sys; print([b['time'] for b in json.load(sys.stdin)['backups'] if b['backup_id']=='$id'][0])")" = \
    "$("$vmshadow" --repo "$local_repo" list --json | python3 -c "import json,sys; print([b['time'] for b in json.load(sys.stdin)['backups'] if b['backup_id']=='$id'][0])")" ] ||
    fail "backup $id has another time in the copy"
  n=$((n + 1))
done
[ $n = 4 ] || fail "the recovered repository has $((n - 1)) backups"
echo "ok - synced back to a new local repository: 3 backups, same ids and times, verify --deep, every one extracts byte for byte"
