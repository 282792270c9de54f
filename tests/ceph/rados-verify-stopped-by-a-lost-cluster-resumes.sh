#!/bin/bash
# rados-verify-stopped-by-a-lost-cluster-resumes (issue 12): a verify
# --deep of a rados: repository whose cluster goes out of reach part-way
# (the lab's one OSD stopped with SIGSTOP once the verify's record says 3
# packs are done; VMSHADOW_RADOS_OP_TIMEOUT=3) stops with exit status 5,
# saying the repository could not be read, and counts nothing damaged;
# its record stays, and with the OSD back 'verify --deep --resume' checks
# only the packs not checked yet and finds nothing wrong. A backup
# started while the OSD is stopped fails within seconds, commits nothing,
# and the next one succeeds. The OSD is continued (SIGCONT) whatever
# happens, so the lab's cluster stays healthy for the tests after this.
set -uo pipefail
vmshadow=$1
. "$(dirname "$0")/ceph-lib.sh"
fail () { echo "FAIL: $*"; exit 1; }
[ "$(id -u)" = 0 ] || { echo "SKIP: the lab's Ceph cluster needs root" >&2; exit 77; }
tmp=$(mktemp -d /var/tmp/vmshadow-test.XXXXXX)
osd=
cont_osd () { [ -n "$osd" ] && kill -CONT "$osd" 2>/dev/null; }
ceph_lab_start
# The OSD first: emptying the namespace needs it.
trap 'cont_osd; ceph_lab_empty_namespaces; rm -rf "$tmp"' EXIT
ceph_lab_namespace ns lost-cluster
osd=$(cat "$(dirname "$VMSLAB_CEPH_CONF")/run/osd.0.pid" 2>/dev/null)
[[ $osd =~ ^[0-9]+$ ]] && tr '\0' ' ' < "/proc/$osd/cmdline" 2>/dev/null | grep -q ceph-osd ||
  fail "no running ceph-osd in the lab's pid file ($osd)"
export VMSHADOW_SCRATCH_DIR=$tmp/scratch VMSHADOW_WRITERS_DIR=$tmp/writers.d
export VMSHADOW_STATE_DIR=$tmp/state VMSHADOW_VERIFY_SAVE_MS=0
export VMSHADOW_REPO=rados:$VMSLAB_CEPH_POOL/$ns
unset VMSHADOW_REPO_FORMAT
# Packs of 1 MiB: a dozen of them.
export VMSHADOW_REPO_PACK_SIZE=$((1024 * 1024))
mkdir -p "$tmp/app" "$VMSHADOW_WRITERS_DIR"
head -c 12000000 /dev/urandom > "$tmp/app/data"
. "$(dirname "$0")/../exec-writer-double.sh"
. "$(dirname "$0")/../verify-stopped.sh"
exec_writer_double "$VMSHADOW_WRITERS_DIR" "$tmp/app/data"
nbackups () { "$vmshadow" list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["backups"]))'; }
"$vmshadow" init > "$tmp/out" 2>&1 || fail "init: $(cat "$tmp/out")"
"$vmshadow" backup > "$tmp/out" 2>&1 || fail "backup: $(cat "$tmp/out")"

# The verify stops itself (SIGSTOP) once its record says 3 packs are
# done; the OSD is stopped, then the verify continued.
VMSHADOW_TEST_VERIFY_STOP_AFTER_PACKS=3 VMSHADOW_RADOS_OP_TIMEOUT=3 \
  "$vmshadow" verify --deep > "$tmp/v.out" 2> "$tmp/v.err" &
vpid=$!
stopped=
for _ in $(seq 1 1200); do
  if [[ $(cat "/proc/$vpid/stat" 2>/dev/null) =~ ^[0-9]+\ \(.*\)\ T ]]; then
    kill -STOP "$osd" && stopped=$SECONDS
    kill -CONT "$vpid"
    break
  fi
  kill -0 "$vpid" 2>/dev/null || break
  sleep 0.1
done
[ -n "$stopped" ] || fail "the verify did not stop after 3 packs: $(cat "$tmp/v.out" "$tmp/v.err")"
# Continue the OSD once the verify ended, or after 30 s whatever it does.
while kill -0 "$vpid" 2>/dev/null && (( SECONDS - stopped < 30 )); do sleep 0.2; done
waited=$((SECONDS - stopped))
cont_osd
rc=0
wait "$vpid" || rc=$?
verify_stopped_unreachable "$VMSHADOW_REPO" "$rc"
echo "ok - the OSD stopped after $done_before packs: verify exit 5 after ${waited} s, no damage claimed: $(head -c 300 "$tmp/v.err")"

verify_resumed "$VMSHADOW_REPO"
echo "ok - the resume checked the other $resumed_packs packs and found nothing"

# A backup while the OSD is stopped: fails in seconds, commits nothing.
head -c 4000000 /dev/urandom > "$tmp/app/data"
kill -STOP "$osd"
rc=0
VMSHADOW_RADOS_OP_TIMEOUT=3 timeout 60 "$vmshadow" backup > "$tmp/out" 2> "$tmp/err" || rc=$?
cont_osd
[ $rc = 124 ] && fail "a backup without its cluster still waited after 60 s"
[ $rc != 0 ] || fail "a backup without its cluster succeeded: $(cat "$tmp/out")"
grep -qi "timed out" "$tmp/err" "$tmp/out" || fail "the backup's failure does not say it timed out: $(cat "$tmp/err" "$tmp/out")"
echo "ok - a backup without its cluster failed (exit $rc): $(head -c 200 "$tmp/err")"
[ "$(nbackups)" = 1 ] || fail "the failed backup was committed or the first lost"
"$vmshadow" backup > "$tmp/out" 2>&1 || fail "backup with the OSD back: $(cat "$tmp/out")"
[ "$(nbackups)" = 2 ] || fail "the second backup is not listed"
"$vmshadow" verify --deep > "$tmp/out" 2>&1 || fail "verify --deep at the end: $(cat "$tmp/out")"
echo "ok - nothing committed or lost; with the OSD back the next backup and verify --deep succeed"
