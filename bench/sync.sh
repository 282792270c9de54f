#!/bin/bash
# bench/sync.sh — `vmshadow sync` of a 4 GiB mixed disk's backups from a
# local version 2 repository to the lab's S3 (the RADOS Gateway on
# loopback: lab/ceph.sh rgw), issue 14's must-show:
#
#   1. the full backup's sync sends about its unique data only;
#   2. an incremental's (1 % of the disk changed) sends about its new data;
#   3. a sync killed (SIGKILL) at half its packs, between a pack and its
#      segment, leaves no backup visible, and rerun completes (adopting
#      that pack): the copy has the same chunks in as
#      many packs and index segments as a clean sync's, none indexed twice,
#      no pack that no segment names, and it verifies deep;
#   4. the copy synced back to a local repository (S3 -> local) reads
#      chunks with ranged GETs of up to 8 MiB, not one GET each.
#
#   sudo bench/sync.sh [BUILD-DIR [MiB]]        (default: build 4096)
#
# Exits 1 when one of these properties fails (each is checked, not only
# printed), 77 when the lab's gateway cannot run.
#
# The disk (as bench/vm-writer.sh's and bench/repo-format.sh's): a raw
# 4 GiB file holding 1 GiB random, the same GiB again, then 2 GiB never
# written (a hole), backed up by an exec writer as a disk (no VM needed);
# a smaller MiB keeps those quarters (for trying the script out).
# The change: 655 blocks of 64 KiB (1 % of 4 GiB) of random bytes at
# random 64 KiB-aligned places (random, not a pattern, so that what is sent
# cannot shrink by compression), then an incremental backup.
# Bytes sent are counted on the wire: every sync to S3 goes through
# tests/s3/fault-proxy.py passing everything, which logs each request's
# body length (FAULT_PROXY_LOG_BYTES). "Unique"/"new" data is what the
# local backup itself stored (its --json bytes_stored: every chunk it did
# not have, compressed); the changed bytes are printed next to it (a
# 64 KiB change costs its whole 128 KiB chunk). Objects are counted and
# index segments read straight from the gateway (the test user's keys).
# The killed sync's writer lock is removed before the rerun, as an
# administrator would (else the rerun waits for it to lapse after 60 s;
# s3-sync-sends-what-is-missing-and-resumes checks that it names it).
# Times are printed but not the point (the proxy is in the way, no cache
# is dropped). Work files (~4 GiB of disk, ~1 GiB of repository) under
# $BENCH_DIR (default /var/tmp). Run it under the lab lock
# (flock -o /var/lock/vmshadow-vm-suite).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}
MIB=${2:-4096}
VMS=$(realpath "$BUILD")/cli/vmshadow
[ -x "$VMS" ] || { echo "no $VMS: build first" >&2; exit 1; }
export VMSLAB_LAB_DIR=$ROOT/lab
. "$ROOT/tests/s3/s3-lib.sh"
WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/vms-bench-sync-XXXXXX")
proxy_pid="" sync_pid=""
cleanup () {
  [ -n "$sync_pid" ] && kill -9 "$sync_pid" 2>/dev/null
  [ -n "$proxy_pid" ] && kill "$proxy_pid" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
s3_lab_start                    # its trap runs ours too
s3_bucket bucket vmshadow-bench-sync
gateway=$VMSHADOW_S3_ENDPOINT
export VMSHADOW_SCRATCH_DIR=$WORK/scratch VMSHADOW_WRITERS_DIR=$WORK/writers.d TMPDIR=$WORK
# Where a sync records its packs (a rerun adopts one a kill left unindexed).
export VMSHADOW_STATE_DIR=$WORK/state
unset VMSHADOW_REPO VMSHADOW_REPO_FORMAT VMSHADOW_REPO_PACK_SIZE VMSHADOW_S3_PART_SIZE
mkdir -p "$VMSHADOW_WRITERS_DIR"
MiB=$((1 << 20)) CHUNK=131072
SIZE=$((MIB * MiB)) Q=$((MIB / 4 * MiB))
bad=0
check () {   # STATUS MESSAGE: a must-show property held when STATUS is 0
  if [ "$1" = 0 ]; then echo "ok   - $2"; else echo "FAIL - $2"; bad=1; fi
}
die () { echo "FAIL: $*" >&2; exit 1; }
now () { date +%s.%N; }
secs () { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
ratio () { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
json () { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
ids () { VMSHADOW_S3_ENDPOINT=$gateway "$VMS" --repo "$1" list --json | python3 -c 'import json,sys; print(" ".join(b["backup_id"] for b in json.load(sys.stdin)["backups"]))'; }

echo "$(nproc) CPUs; load average $(cut -d' ' -f1-3 /proc/loadavg); vmshadow $VMS"
echo "making the $MIB MiB mixed disk ($((MIB / 4)) MiB random, the same again, $((MIB / 2)) MiB hole)"
disk=$WORK/disk.raw
head -c $Q /dev/urandom > "$WORK/rand"
dd if="$WORK/rand" of="$disk" bs=1M status=none
dd if="$WORK/rand" of="$disk" bs=1M seek=$((MIB / 4)) conv=notrunc status=none
truncate -s $SIZE "$disk"
rm -f "$WORK/rand"
cat > "$VMSHADOW_WRITERS_DIR/disk" <<W
#!/bin/sh
[ "\$1" = identify ] || exit 0
cat <<JSON
{"format": "vmshadow-writer-metadata", "version": 1,
 "writer": {"name": "bench-sync", "id": "5b1e7c2a-9d3f-4e8b-a6c1-2f0d9e8b7a61"},
 "components": [{"name": "disk", "files": [{"path": "$disk", "kind": "disk", "format": "raw"}]}]}
JSON
W
chmod 755 "$VMSHADOW_WRITERS_DIR/disk"

# The pass-through proxy, logging "METHOD PATH ok BYTES" per request.
FAULT_PROXY_LOG_BYTES=1 python3 "$ROOT/tests/s3/fault-proxy.py" "${gateway##*:}" ok "$WORK/port" "$WORK/wire.log" &
proxy_pid=$!
for _ in $(seq 50); do [ -s "$WORK/port" ] && break; sleep 0.1; done
[ -s "$WORK/port" ] || die "the proxy did not start"
: > "$WORK/wire.log"
proxied=http://127.0.0.1:$(cat "$WORK/port")
mark () { wc -l < "$WORK/wire.log"; }
sent_since () { tail -n +$(($1 + 1)) "$WORK/wire.log" | awk '{ s += $4 } END { printf "%d\n", s }'; }
requests_since () { tail -n +$(($1 + 1)) "$WORK/wire.log" | wc -l; }
# sync_to PREFIX OUT: one timed sync of the local repository, via the proxy.
sync_to () {
  local t0
  t0=$(now)
  VMSHADOW_S3_ENDPOINT=$proxied "$VMS" sync --json "$local" "s3://$bucket/$1" > "$2" 2>&1 ||
    die "sync to $1: $(cat "$2")"
  T=$(secs "$t0" "$(now)")
}
# objects PREFIX: "KEY SIZE" of every object under it, from the gateway.
objects () {
  s3_curl "$gateway/$bucket?list-type=2&max-keys=1000&prefix=$1%2F" | python3 -c '
import re, sys
x = sys.stdin.read()
if "<IsTruncated>false</IsTruncated>" not in x:
    sys.exit("listing truncated or failed: " + x[:300])
for c in re.findall(r"<Contents>(.*?)</Contents>", x, re.S):
    print(re.search(r"<Key>(.*?)</Key>", c).group(1), re.search(r"<Size>(\d+)</Size>", c).group(1))'
}
# census PREFIX: sets PACKS PACK_BYTES SEGS ENTRIES DISTINCT ORPHANS UNINDEXED
# OTHER: its packs and index segments (each read and parsed: 16-byte header
# "VMSIDX2S", u32 version, u32 count; 64-byte entries, chunk id then pack
# id; docs/repository-format.md), entries in all and distinct chunk ids,
# packs no segment names, segment entries naming no pack there.
census () {
  local p=$1 k
  objects "$p" > "$WORK/objects.$p" || die "cannot list $p"
  rm -rf "$WORK/seg.$p"; mkdir "$WORK/seg.$p"
  for k in $(awk '$1 ~ /\/index\// { print $1 }' "$WORK/objects.$p"); do
    s3_curl -f -o "$WORK/seg.$p/${k##*/}" "$gateway/$bucket/$k" || die "cannot read $k"
  done
  read -r PACKS PACK_BYTES SEGS ENTRIES DISTINCT ORPHANS UNINDEXED OTHER < <(python3 - "$WORK/objects.$p" "$WORK/seg.$p" "$p" <<'PY'
import os, struct, sys
objs = [l.split() for l in open(sys.argv[1])]
pre = sys.argv[3] + "/"
packs = {k[len(pre) + 9:]: int(s) for k, s in objs if k.startswith(pre + "packs/")}
other = sum(1 for k, s in objs if not k.startswith((pre + "packs/", pre + "index/")))
entries, ids, named = 0, set(), set()
segs = os.listdir(sys.argv[2])
for f in segs:
    b = open(os.path.join(sys.argv[2], f), "rb").read()
    assert b[:8] == b"VMSIDX2S", f
    n = struct.unpack_from("<I", b, 12)[0]
    assert len(b) == 16 + 64 * n + 32, f
    for i in range(n):
        e = b[16 + 64 * i: 16 + 64 * (i + 1)]
        ids.add(e[:32])
        named.add(e[32:48].hex())
    entries += n
orphans = sum(1 for k in packs if k.split("/")[-1] not in named)
unindexed = len(named - {k.split("/")[-1] for k in packs})
print(len(packs), sum(packs.values()), len(segs), entries, len(ids), orphans, unindexed, other)
PY
)
  [ -n "$OTHER" ] || die "cannot count the objects of $p"
}

# ---- 1. the full backup and its sync
local=$WORK/local
"$VMS" --repo "$local" init > /dev/null || die "init"
t0=$(now)
"$VMS" --repo "$local" backup --json > "$WORK/b1.json" 2>"$WORK/b1.err" || die "full backup: $(tail -n 5 "$WORK/b1.err")"
echo "full backup of the $MIB MiB disk into the local repository: $(secs "$t0" "$(now)") s, stored $(json "$WORK/b1.json" bytes_stored) B"
U1=$(json "$WORK/b1.json" bytes_stored)
m=$(mark)
sync_to clean "$WORK/s1.json"
W1=$(sent_since "$m") R1=$(requests_since "$m") S1=$(json "$WORK/s1.json" bytes_stored)
echo "sync 1 (full): $T s, $R1 requests, $W1 B sent; sync stored $S1 B; the backup's unique data $U1 B"
[ "$S1" = "$U1" ]
check $? "the full backup's sync stored exactly its unique data ($S1 = $U1 B)"
# Sent: the chunks, plus packs' and segments' 64 B per chunk, the file
# index (32 B per 128 KiB of the disk: 1 MiB) and the small objects.
[ "$W1" -ge "$U1" ] && [ "$W1" -le $((U1 + U1 / 50 + 8 * 1048576)) ]
check $? \
  "the full sync sent $(ratio "$W1" "$U1") x the unique data ($(ratio "$W1" $SIZE) x the disk, $(ratio "$W1" $((2 * Q))) x its allocated half)"

# ---- 2. 1 % changed, the incremental and its sync
nblk=$((SIZE / 100 / 65536))
python3 - "$disk" "$nblk" "$((SIZE / 65536))" <<'PY'
import os, random, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
for o in random.sample(range(int(sys.argv[3])), int(sys.argv[2])):
    os.pwrite(fd, os.urandom(65536), o * 65536)
os.fsync(fd)
os.close(fd)
PY
C=$((nblk * 65536))
t0=$(now)
"$VMS" --repo "$local" backup --json > "$WORK/b2.json" 2>"$WORK/b2.err" || die "incremental backup: $(tail -n 5 "$WORK/b2.err")"
U2=$(json "$WORK/b2.json" bytes_stored)
echo "incremental backup after $C B changed ($nblk x 64 KiB): $(secs "$t0" "$(now)") s, stored $U2 B"
m=$(mark)
sync_to clean "$WORK/s2.json"
W2=$(sent_since "$m") R2=$(requests_since "$m") S2=$(json "$WORK/s2.json" bytes_stored)
echo "sync 2 (incremental): $T s, $R2 requests, $W2 B sent; sync stored $S2 B; backups present $(json "$WORK/s2.json" backups_present), synced $(json "$WORK/s2.json" backups_synced)"
[ "$S2" = "$U2" ] && [ "$(json "$WORK/s2.json" backups_synced)" = 1 ]
check $? \
  "the incremental's sync stored exactly its new data ($S2 = $U2 B)"
[ "$W2" -ge "$U2" ] && [ "$W2" -le $((U2 + U2 / 50 + 8 * 1048576)) ]
check $? \
  "the incremental sync sent $W2 B: $(ratio "$W2" "$U2") x its new data, $(ratio "$W2" "$C") x the changed bytes, $(ratio "$W2" "$W1") x the full sync"
census clean
echo "clean copy: $PACKS packs ($PACK_BYTES B), $SEGS segments, $ENTRIES entries ($DISTINCT distinct chunks), $OTHER other objects"
C_PACKS=$PACKS C_BYTES=$PACK_BYTES C_SEGS=$SEGS C_DISTINCT=$DISTINCT

# ---- 3. killed at half, rerun
# Straight to the gateway, not through the proxy (the proxy takes a whole
# request before it forwards it). The kill comes at the worst point: the
# test hook VMSHADOW_TEST_SYNC_KILL_AFTER_PACK makes the sync SIGKILL
# itself right after half the clean copy's packs are stored, the last of
# them before its segment is put (a random kill hits that gap rarely).
pack_bytes () { objects killed | awk '$1 ~ /\/packs\// { s += $2 } END { printf "%d\n", s }'; }
VMSHADOW_TEST_SYNC_KILL_AFTER_PACK=$((C_PACKS / 2)) VMSHADOW_S3_ENDPOINT=$gateway "$VMS" sync "$local" "s3://$bucket/killed" > "$WORK/s3.out" 2>&1
rc=$?
[ $rc = 137 ] || die "the sync with the kill hook exited $rc, not 137 (SIGKILL): $(cat "$WORK/s3.out")"
WK=$(pack_bytes)
echo "killed (SIGKILL) with $WK B of packs stored, of $C_BYTES in the clean copy ($(ratio "$WK" "$C_BYTES"))"
[ -z "$(ids "s3://$bucket/killed")" ]
check $? "after the kill no backup is visible in the copy"
census killed
echo "after the kill: $PACKS packs ($PACK_BYTES B), $SEGS segments, $DISTINCT chunks indexed, $ORPHANS packs no segment names"
[ "$ORPHANS" = 1 ]
check $? "the kill left one pack no segment names ($ORPHANS)"
s3_curl -f -X DELETE "$gateway/$bucket/killed/lock" || die "cannot remove the killed sync's lock"
m=$(mark)
sync_to killed "$WORK/s4.json"
W3=$(sent_since "$m") S3B=$(json "$WORK/s4.json" bytes_stored)
echo "rerun: $T s, $W3 B sent, stored $S3B B, backups synced $(json "$WORK/s4.json" backups_synced), packs adopted $(json "$WORK/s4.json" packs_adopted) ($(json "$WORK/s4.json" chunks_adopted) chunks); $(ratio "$W3" $((W1 + W2))) x the clean syncs' bytes"
[ "$(ids "s3://$bucket/killed")" = "$(ids "$local")" ]
check $? "the rerun completed: the copy lists the local repository's backups"
[ "$(json "$WORK/s4.json" packs_adopted)" = 1 ]
check $? "the rerun adopted that pack ($(json "$WORK/s4.json" packs_adopted)) rather than sending its chunks again"
census killed
echo "after the rerun: $PACKS packs ($PACK_BYTES B), $SEGS segments, $ENTRIES entries ($DISTINCT distinct chunks), $ORPHANS packs no segment names, $OTHER other objects"
[ "$ENTRIES" = "$DISTINCT" ] && [ "$DISTINCT" = "$C_DISTINCT" ]
check $? \
  "no chunk indexed twice: $ENTRIES entries, $DISTINCT distinct chunks, as the clean copy's $C_DISTINCT"
[ "$ORPHANS" = 0 ] && [ "$UNINDEXED" = 0 ]
check $? "every pack is named by a segment ($ORPHANS not), every segment's pack is there ($UNINDEXED not)"
# As many packs and segments as the clean copy's, and the same bytes
# but for framing and padding (less than one chunk): nothing stored twice.
d=$((PACK_BYTES - C_BYTES)); d=${d#-}
[ "$PACKS" = "$C_PACKS" ] && [ "$SEGS" = "$C_SEGS" ] && [ "$d" -lt $CHUNK ]
check $? \
  "as the clean copy: $PACKS packs of $PACK_BYTES B, $SEGS segments (clean: $C_PACKS of $C_BYTES B, $C_SEGS)"
t0=$(now)
VMSHADOW_S3_ENDPOINT=$gateway "$VMS" --repo "s3://$bucket/killed" verify --deep > "$WORK/v.out" 2>&1
check $? "verify --deep of the copy ($(secs "$t0" "$(now)") s): $(tail -n 1 "$WORK/v.out" | head -c 200)"

# ---- 4. S3 back to local (a recovery): chunks next to each other in a
# pack are read with one ranged GET (at most 8 MiB), not a GET each.
m=$(mark)
t0=$(now)
VMSHADOW_S3_ENDPOINT=$proxied "$VMS" sync --json "s3://$bucket/clean" "$WORK/back" > "$WORK/s5.json" 2>&1 ||
  die "sync S3 -> local: $(cat "$WORK/s5.json")"
T=$(secs "$t0" "$(now)")
R5=$(requests_since "$m") G5=$(tail -n +$((m + 1)) "$WORK/wire.log" | awk '$1 == "GET"' | wc -l)
B5=$(json "$WORK/s5.json" bytes_read) N5=$(json "$WORK/s5.json" chunks_sent) SR5=$(json "$WORK/s5.json" source_reads)
echo "sync S3 -> local: $T s, $R5 requests ($G5 GET), $N5 chunks ($B5 B) in $SR5 reads: $(awk -v r="$R5" -v b="$B5" 'BEGIN { printf "%.0f", r / (b / 1073741824) }') requests per GiB"
[ "$(ids "$WORK/back")" = "$(ids "$local")" ] && [ "$G5" -le $((B5 / 1048576 + 200)) ]
check $? "S3 -> local copied every backup with $G5 GETs for $N5 chunks (at most one per MiB read and 200 for the small objects)"

[ $bad = 0 ] && echo "every property held" || echo "SOME PROPERTY FAILED"
exit $bad
