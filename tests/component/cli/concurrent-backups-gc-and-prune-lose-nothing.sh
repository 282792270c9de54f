#!/usr/bin/env bash
# Issue 12 (docs/repository-format.md "Version 2", "Concurrency"): four
# vmshadow backup processes commit into one format version 2 repository at
# once (four exec writers, one file each, sharing part of their data so
# that they deduplicate against each other's packs), while a gc --grace 0
# and a prune --keep-last 2 run beside them, every start at a random
# moment; every fourth round also SIGKILLs a fifth backup mid-way. Before
# every round a sixth writer backs up fresh data of its own and a prune
# with the same policy removes its backup of two rounds before, so that
# from round 3 on each round's gc has a wholly dead pack to condemn and
# the next one's deletes it, beside the backups, whatever the timing
# (without it, garbage came only when changed chunks happened to kill a
# pack, and under load 20 rounds could pass without a gc deleting). After
# every round: every backup that said it committed is listed unless prune said
# it removed it, nothing else appeared (but the killed writer's), verify
# --deep passes for every backup (no chunk missing or wrong), and a file
# of this round extracts to the bytes it had. $VMSHADOW_STRESS_ROUNDS
# rounds (default 20). At the end, once the killed sessions' leases have
# lapsed, gc finishes every condemned list and leaves no session lease
# and no object of a backup without its manifest. Runs on the local
# directory, and on RADOS with VMSHADOW_TEST_BACKEND=rados (fewer rounds).
set -euo pipefail
vmshadow=$1
rounds=${VMSHADOW_STRESS_ROUNDS:-20}
tmp=$(mktemp -d /var/tmp/vmshadow-test.XXXXXX)
pids=()
cleanup () {
  local p
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
fail () { echo "FAIL: $*"; exit 1; }
export VMSHADOW_SCRATCH_DIR=$tmp/scratch VMSHADOW_REPO=$tmp/repo
unset VMSHADOW_REPO_FORMAT
# Small packs (the minimum, 1 MiB): many packs, so gc condemns, repacks
# and deletes many in every round.
export VMSHADOW_REPO_PACK_SIZE=$((1024 * 1024))
# A short lease, so that a killed backup's lease lapses within the test
# (renewed every 4 s; a session that cannot renew for 20 s commits nothing).
lease=24
export VMSHADOW_LEASE_SECONDS=$lease
. "$(dirname "$0")/repo-backend-lib.sh"
repo_backend_setup

chunk=$((128 * 1024))
nchunks=32                      # 4 MiB per file
head -c $((8 * chunk)) /dev/urandom > "$tmp/shared"
for w in 0 1 2 3 4 5; do
  mkdir -p "$tmp/w$w"
  head -c $((nchunks * chunk)) /dev/urandom > "$tmp/f$w"
  cat > "$tmp/w$w/app$w" <<W
#!/bin/sh
case "\$1" in
identify) cat <<JSON
{"format": "vmshadow-writer-metadata", "version": 1,
 "writer": {"name": "app$w", "id": "0d9f3c1e-2b4a-4c5d-8e6f-7a8b9c0d1e2$w"},
 "components": [{"name": "files", "files": [{"path": "$tmp/f$w", "kind": "plain"}]}]}
JSON
;;
esac
exit 0
W
  chmod 755 "$tmp/w$w/app$w"
done

"$vmshadow" init --format 2 > "$tmp/out" || fail "init: $(cat "$tmp/out")"

# A random delay of 0 to $1 tenths of a second.
rsleep () { sleep "$(printf '0.%d' $((RANDOM % ($1 + 1))))"; }
backup_ids () {
  "$vmshadow" list --json | python3 -c '
import json, sys
for b in json.load(sys.stdin)["backups"]:
    print(b["backup_id"])' | sort
}
# Field $1 (a string or a number) of the JSON object in file $2.
json_field () {
  sed -n 's/^  "'"$1"'": "\{0,1\}\([^",]*\)"\{0,1\},\{0,1\}$/\1/p' "$2" | head -1
}
# Of which writer (0-4) backup $1 is.
writer_of () {
  "$vmshadow" show "$1" --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(json.dumps(d))' | grep -o '"app[0-9]"' | head -1 | tr -dc 0-9
}

: > "$tmp/expected"
killed_rounds=0
gc_removed=0
for round in $(seq 1 "$rounds"); do
  # New data: each file gets a changed run of chunks; every third round
  # the data all four share changes too (so its old chunks die).
  if [ $((round % 3)) = 0 ]; then
    head -c $((8 * chunk)) /dev/urandom > "$tmp/shared"
  fi
  for w in 0 1 2 3 4; do
    dd if="$tmp/shared" of="$tmp/f$w" bs=$chunk conv=notrunc status=none
    off=$((8 + RANDOM % (nchunks - 12)))
    head -c $((4 * chunk)) /dev/urandom |
      dd of="$tmp/f$w" bs=$chunk seek=$off conv=notrunc status=none
    cp "$tmp/f$w" "$tmp/f$w.round"
  done

  # The sixth writer's garbage (above): its backup of two rounds before
  # goes now, so the gc of this round condemns its pack.
  head -c $((4 * chunk)) /dev/urandom > "$tmp/f5"
  VMSHADOW_WRITERS_DIR=$tmp/w5 "$vmshadow" backup --json > "$tmp/b5.out" 2>&1 ||
    fail "round $round: the sixth writer's backup failed: $(cat "$tmp/b5.out")"
  id=$(json_field backup_id "$tmp/b5.out")
  [ -n "$id" ] || fail "round $round: backup 5 said no id: $(cat "$tmp/b5.out")"
  echo "$id" >> "$tmp/expected"
  "$vmshadow" prune --keep-last 2 > "$tmp/prune.out" 2>&1 ||
    fail "round $round: prune before the round failed: $(cat "$tmp/prune.out")"
  sed -n 's/^remove \([^ ]*\)$/\1/p' "$tmp/prune.out" > "$tmp/removed"
  grep -vxF -f "$tmp/removed" "$tmp/expected" > "$tmp/expected.new" || true
  mv "$tmp/expected.new" "$tmp/expected"

  pids=()
  for w in 0 1 2 3; do
    ( rsleep 4; VMSHADOW_WRITERS_DIR=$tmp/w$w exec "$vmshadow" backup --json \
        > "$tmp/b$w.out" 2> "$tmp/b$w.err" ) &
    pids+=($!)
  done
  ( rsleep 8; exec "$vmshadow" gc --grace 0 --json > "$tmp/gc.out" 2>&1 ) &
  gc_pid=$!
  ( rsleep 8; exec "$vmshadow" prune --keep-last 2 > "$tmp/prune.out" 2>&1 ) &
  prune_pid=$!
  pids+=("$gc_pid" "$prune_pid")
  kill_pid=
  if [ $((round % 4)) = 0 ]; then
    VMSHADOW_WRITERS_DIR=$tmp/w4 "$vmshadow" backup > /dev/null 2>&1 &
    kill_pid=$!
    pids+=("$kill_pid")
    killed_rounds=$((killed_rounds + 1))
  fi
  if [ -n "$kill_pid" ]; then
    rsleep 5
    kill -9 "$kill_pid" 2>/dev/null || true
  fi
  for w in 0 1 2 3; do
    wait "${pids[$w]}" || fail "round $round: backup $w failed: $(cat "$tmp/b$w.out" "$tmp/b$w.err")"
    id=$(json_field backup_id "$tmp/b$w.out")
    [ -n "$id" ] || fail "round $round: backup $w said no id: $(cat "$tmp/b$w.out")"
    echo "$id" >> "$tmp/expected"
  done
  wait "$gc_pid" || fail "round $round: gc failed: $(cat "$tmp/gc.out")"
  gc_removed=$((gc_removed + $(json_field chunks_removed "$tmp/gc.out")))
  wait "$prune_pid" || fail "round $round: prune failed: $(cat "$tmp/prune.out")"
  [ -z "$kill_pid" ] || wait "$kill_pid" 2>/dev/null || true
  pids=()

  # None lost: what committed is listed unless prune removed it.
  sed -n 's/^remove \([^ ]*\)$/\1/p' "$tmp/prune.out" > "$tmp/removed"
  sort -u "$tmp/expected" | grep -vxF -f "$tmp/removed" > "$tmp/expected.new" || true
  mv "$tmp/expected.new" "$tmp/expected"
  backup_ids > "$tmp/listed"
  missing=$(comm -23 "$tmp/expected" "$tmp/listed")
  [ -z "$missing" ] || fail "round $round: committed backups are gone: $missing"
  for extra in $(comm -13 "$tmp/expected" "$tmp/listed"); do
    # Only the killed writer's backup may have committed unannounced.
    [ "$(writer_of "$extra")" = 4 ] || fail "round $round: unexpected backup $extra"
    echo "$extra" >> "$tmp/expected"
  done
  sort -u -o "$tmp/expected" "$tmp/expected"
  # Every committed backup whole: each chunk there and hashing right.
  "$vmshadow" verify --deep > "$tmp/verify.out" 2>&1 ||
    fail "round $round: verify --deep: $(cat "$tmp/verify.out")"
  # And this round's data reads back as it was.
  w=$((RANDOM % 4))
  id=$(json_field backup_id "$tmp/b$w.out")
  if grep -qxF "$id" "$tmp/expected"; then
    rm -f "$tmp/x"
    "$vmshadow" extract "$id" files "$tmp/f$w" --to "$tmp/x" > /dev/null ||
      fail "round $round: extract of $id failed"
    cmp -s "$tmp/x" "$tmp/f$w.round" || fail "round $round: $id extracts other bytes"
  fi
  echo "ok - round $round: $(wc -l < "$tmp/listed") backups, gc $(tr -d '\n ' < "$tmp/gc.out" | cut -c1-80)"
done

# The killed sessions' leases lapse; then gc finishes every condemned
# list, and no leftover of a killed backup stays.
[ "$killed_rounds" = 0 ] || sleep $((lease + 1))
"$vmshadow" gc --grace 0 > "$tmp/gc.out" 2>&1 || fail "final gc: $(cat "$tmp/gc.out")"
"$vmshadow" gc --grace 0 > "$tmp/gc.out" 2>&1 || fail "final gc: $(cat "$tmp/gc.out")"
[ "$(repo_count gc/)" = 0 ] || fail "condemned lists left: $(repo_objects gc/)"
[ "$(repo_count sessions/)" = 0 ] || fail "session leases left: $(repo_objects sessions/)"
for o in $(repo_objects backups/); do
  d=${o%/*}
  [ "$(repo_count "$d/manifest")" = 1 ] || fail "object $o of a backup without a manifest is left"
done
"$vmshadow" verify --deep > "$tmp/verify.out" 2>&1 || fail "final verify --deep: $(cat "$tmp/verify.out")"
backup_ids > "$tmp/listed"
cmp -s "$tmp/listed" "$tmp/expected" || fail "final list differs: $(diff "$tmp/expected" "$tmp/listed")"
# gc did delete beside the backups (a gc that never deletes would pass
# everything above): the sixth writer's first backup, dead from round 3
# on, is gone by round 4's gc at the latest.
[ "$rounds" -lt 4 ] || [ "$gc_removed" -gt 0 ] ||
  fail "the gcs beside the backups removed no chunk in $rounds rounds"
echo "ok - gc beside the backups removed $gc_removed chunks; at the end $(repo_count packs/) packs of $(repo_bytes packs/) bytes for $(wc -l < "$tmp/listed") backups"
echo "ok - $rounds rounds ($killed_rounds with a killed backup): every committed backup verifies deep, none lost"
exit 0
