#!/bin/bash
# Issue 14: a sync killed after it stored a pack and before it put the
# segment naming it leaves a pack nothing indexes; the rerun adopts it
# (reads it whole, checks every blob against its id, puts a segment) and
# does not send its chunks again. VMSHADOW_TEST_SYNC_KILL_AFTER_PACK=N is
# the test hook: the sync dies (SIGKILL, by itself) right after its Nth
# pack is stored. 1 MiB packs, 8 MB of random data: a clean copy has
# about 8 packs. The killed copy, rerun, must have exactly the clean
# copy's packs (count and bytes) and segments, one pack adopted, the
# record in the state directory gone, and verify --deep. Then the same
# with the unindexed pack damaged (a byte flipped): the rerun does not
# adopt it, sends its chunks again, and the copy verifies deep. And the
# source's chunks are read a pack's run at a time, not one read each.
source "$(dirname "$0")/cli-lib.sh"
export VMSHADOW_STATE_DIR=$tmp/state VMSHADOW_REPO_PACK_SIZE=1048576
src=$tmp/src
. "$(dirname "$0")/../../exec-writer-double.sh"
exec_writer_double "$VMSHADOW_WRITERS_DIR" "$tmp/app/data"
head -c 8000000 /dev/urandom > "$tmp/app/data"
VMSHADOW_REPO_FORMAT=2 "$vmshadow" --repo "$src" backup > /dev/null || fail "backup"
count () { find "$1/$2" -type f | wc -l; }
bytes () { find "$1/packs" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'; }
field () { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }
# Packs no segment names (the segments' entries name their packs at bytes 32..48).
unindexed () {
  python3 - "$1" <<'PY'
import os, sys
r = sys.argv[1]
named = set()
for s in os.listdir(r + "/index"):
    b = open(r + "/index/" + s, "rb").read()
    n = int.from_bytes(b[12:16], "little")
    for i in range(n):
        named.add(b[16 + 64 * i + 32:16 + 64 * i + 48].hex())
print(sum(1 for d in os.listdir(r + "/packs") for p in os.listdir(r + "/packs/" + d) if p not in named))
PY
}

"$vmshadow" sync --json "$src" "$tmp/clean" > "$tmp/c.json" || fail "clean sync: $(cat "$tmp/c.json")"
CP=$(count "$tmp/clean" packs) CS=$(count "$tmp/clean" index) CB=$(bytes "$tmp/clean")
[ "$CP" -ge 6 ] || fail "the clean copy has $CP packs: too few for this test"
# Chunks next to each other in a source pack are read together: about a
# read per source pack (1 MiB windows of ~8 chunks), not one per chunk.
SP=$(count "$src" packs) SENT=$(field "$tmp/c.json" chunks_sent) READS=$(field "$tmp/c.json" source_reads)
[ "$SENT" -ge 60 ] && [ "$READS" -le $((SP + 1)) ] ||
  fail "the clean sync read $SENT chunks in $READS reads from $SP source packs"
echo "ok - the clean sync read $SENT chunks with $READS reads ($SP source packs)"

killed () {   # DST: a sync killed right after its 3rd pack is stored
  rc=0
  VMSHADOW_TEST_SYNC_KILL_AFTER_PACK=3 "$vmshadow" sync "$src" "$1" > "$tmp/k.out" 2>&1 || rc=$?
  [ $rc = 137 ] || fail "the sync with the kill hook exited $rc, not 137 (SIGKILL): $(cat "$tmp/k.out")"
  [ "$(count "$1" packs)" = 3 ] && [ "$(count "$1" index)" = 2 ] ||
    fail "after the kill: $(count "$1" packs) packs, $(count "$1" index) segments, not 3 and 2"
  [ "$(unindexed "$1")" = 1 ] || fail "after the kill $(unindexed "$1") packs are unindexed, not 1"
  [ -z "$(ls "$1/backups" 2>/dev/null)" ] || fail "a backup is visible after the kill"
  ls "$VMSHADOW_STATE_DIR"/sync-packs-* > /dev/null || fail "no record of the sync's packs in the state directory"
}

killed "$tmp/dst"
"$vmshadow" sync --json "$src" "$tmp/dst" > "$tmp/r.json" || fail "rerun: $(cat "$tmp/r.json")"
P=$(count "$tmp/dst" packs) S=$(count "$tmp/dst" index) B=$(bytes "$tmp/dst")
[ "$(field "$tmp/r.json" packs_adopted)" = 1 ] || fail "the rerun adopted $(field "$tmp/r.json" packs_adopted) packs, not 1: $(cat "$tmp/r.json")"
[ "$P" = "$CP" ] && [ "$S" = "$CS" ] && [ "$B" = "$CB" ] ||
  fail "rerun copy: $P packs of $B B, $S segments; the clean copy: $CP of $CB B, $CS segments"
[ "$(unindexed "$tmp/dst")" = 0 ] || fail "an unindexed pack is left"
[ -z "$(ls "$VMSHADOW_STATE_DIR"/sync-packs-* 2>/dev/null)" ] || fail "the record stays after a sync that ended well"
"$vmshadow" --repo "$tmp/dst" verify --deep > "$tmp/v.out" || fail "verify --deep: $(cat "$tmp/v.out")"
echo "ok - killed between a pack and its segment, the rerun adopted the pack: $P packs, $S segments, $B B as the clean copy; verify --deep good"

killed "$tmp/dst2"
orphan=$(python3 - "$tmp/dst2" <<'PY'
import os, sys
r = sys.argv[1]
named = set()
for s in os.listdir(r + "/index"):
    b = open(r + "/index/" + s, "rb").read()
    for i in range(int.from_bytes(b[12:16], "little")):
        named.add(b[16 + 64 * i + 32:16 + 64 * i + 48].hex())
print([r + "/packs/" + d + "/" + p for d in os.listdir(r + "/packs") for p in os.listdir(r + "/packs/" + d) if p not in named][0])
PY
)
source "$(dirname "$0")/../../flip-byte.sh"
flip_byte "$orphan" 300000 || fail "cannot damage $orphan"
"$vmshadow" sync --json "$src" "$tmp/dst2" > "$tmp/r2.json" 2> "$tmp/r2.err" || fail "rerun after damage: $(cat "$tmp/r2.json" "$tmp/r2.err")"
[ "$(field "$tmp/r2.json" packs_adopted)" = 0 ] || fail "a damaged pack was adopted"
grep -q "is not adopted" "$tmp/r2.err" || fail "the damaged pack's refusal was not said: $(cat "$tmp/r2.err")"
[ "$(count "$tmp/dst2" packs)" = $((CP + 1)) ] || fail "after the damaged pack: $(count "$tmp/dst2" packs) packs, not $((CP + 1))"
"$vmshadow" --repo "$tmp/dst2" verify --deep > "$tmp/v.out" || fail "verify --deep after the damaged pack: $(cat "$tmp/v.out")"
echo "ok - a damaged unindexed pack is not adopted (said), its chunks are sent again, the copy verifies deep"

# A kill can cut the record's last line short: the next sync cuts that
# off, so the lines it appends stay whole and a rerun after a second kill
# still adopts that sync's unindexed pack.
killed "$tmp/dst3"
rec=$(ls "$VMSHADOW_STATE_DIR"/sync-packs-*)
printf '0123456789abcdef' >> "$rec"
rc=0
VMSHADOW_TEST_SYNC_KILL_AFTER_PACK=3 "$vmshadow" sync "$src" "$tmp/dst3" > "$tmp/k.out" 2>&1 || rc=$?
[ $rc = 137 ] || fail "the second sync with the kill hook exited $rc: $(cat "$tmp/k.out")"
[ "$(unindexed "$tmp/dst3")" = 1 ] || fail "after the second kill $(unindexed "$tmp/dst3") packs are unindexed, not 1"
"$vmshadow" sync --json "$src" "$tmp/dst3" > "$tmp/r3.json" || fail "rerun after a cut record: $(cat "$tmp/r3.json")"
P=$(count "$tmp/dst3" packs) S=$(count "$tmp/dst3" index) B=$(bytes "$tmp/dst3")
[ "$(field "$tmp/r3.json" packs_adopted)" = 1 ] || fail "after a cut record the rerun adopted $(field "$tmp/r3.json" packs_adopted) packs, not 1"
[ "$P" = "$CP" ] && [ "$S" = "$CS" ] && [ "$B" = "$CB" ] ||
  fail "copy after a cut record: $P packs of $B B, $S segments; the clean copy: $CP of $CB B, $CS segments"
"$vmshadow" --repo "$tmp/dst3" verify --deep > "$tmp/v.out" || fail "verify --deep after a cut record: $(cat "$tmp/v.out")"
echo "ok - a record cut short by a kill: the next sync's lines stay whole, and the rerun after its kill adopted its pack"
