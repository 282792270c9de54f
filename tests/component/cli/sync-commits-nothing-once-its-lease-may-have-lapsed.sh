#!/bin/bash
# Issue 14 with issue 12's rule 1: a sync publishes a backup in DST only
# while its session lease there is one nobody can have seen expired, as a
# backup's commit does (gc deletes packs no live session may reference, so
# a stalled sync's chunks may be gone). A sync into a local version 2
# repository, stopped (SIGSTOP) once its lease is there and before any
# backup is, for longer than it may trust the lease (6 s leases: 5 s), is
# let go on: it fails saying it commits nothing, no backup is visible in
# DST, and a new sync copies it whole (verify --deep).
source "$(dirname "$0")/cli-lib.sh"
export VMSHADOW_LEASE_SECONDS=6
src=$tmp/src dst=$tmp/dst
. "$(dirname "$0")/../../exec-writer-double.sh"
exec_writer_double "$VMSHADOW_WRITERS_DIR" "$tmp/app/data"
# Enough to copy that the sync is still copying when it is stopped.
head -c 64000000 /dev/urandom > "$tmp/app/data"
"$vmshadow" --repo "$src" backup > /dev/null || fail "backup"
nbackups () { "$vmshadow" --repo "$dst" list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["backups"]))'; }

sync_pid=
trap '[ -n "$sync_pid" ] && kill -9 "$sync_pid" 2>/dev/null; rm -rf "$tmp"' EXIT
VMSHADOW_REPO_PACK_SIZE=1048576 "$vmshadow" sync "$src" "$dst" > "$tmp/out" 2>&1 &
sync_pid=$!
for _ in $(seq 1000); do
  [ -n "$(ls "$dst/sessions" 2>/dev/null)" ] && break
  kill -0 "$sync_pid" 2>/dev/null || break
  sleep 0.005
done
kill -STOP "$sync_pid" 2>/dev/null || fail "the sync ended before it could be stopped: $(cat "$tmp/out")"
[ -n "$(ls "$dst/sessions" 2>/dev/null)" ] || fail "no session lease in DST"
[ -z "$(ls "$dst/backups" 2>/dev/null)" ] || fail "the sync had already published a backup when stopped (too fast for this test)"
sleep 7
kill -CONT "$sync_pid"
rc=0
wait "$sync_pid" || rc=$?
sync_pid=
[ $rc = 1 ] || fail "a sync stalled past its lease exited $rc: $(cat "$tmp/out")"
grep -q "commits nothing" "$tmp/out" || fail "it did not say why: $(cat "$tmp/out")"
[ "$(nbackups)" = 0 ] || fail "the stalled sync published a backup: $("$vmshadow" --repo "$dst" list)"
echo "ok - a sync stalled for 7 s on a 6 s lease commits nothing: $(grep -m1 -o 'the lease.*' "$tmp/out" | head -c 160)"

"$vmshadow" sync "$src" "$dst" > "$tmp/out" 2>&1 || fail "sync again: $(cat "$tmp/out")"
[ "$(nbackups)" = 1 ] || fail "the sync again did not copy the backup"
"$vmshadow" --repo "$dst" verify --deep > "$tmp/out" 2>&1 || fail "verify --deep of DST: $(cat "$tmp/out")"
echo "ok - a new sync copies it whole; verify --deep good"
