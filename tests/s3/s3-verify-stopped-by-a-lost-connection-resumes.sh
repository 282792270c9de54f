#!/bin/bash
# s3-verify-stopped-by-a-lost-connection-resumes (issue 12): a verify
# --deep of an s3:// repository whose endpoint goes away part-way (the
# fault proxy in front of the lab's gateway, every request delayed 1 s,
# killed once the verify's record says 3 packs are done) stops with exit
# status 5, saying the repository could not be read, instead of calling
# every chunk after it damaged (exit 1, as before issue 12's fix); its
# record stays, and 'verify --deep --resume' straight to the gateway
# checks only the packs not checked yet and finds nothing wrong.
set -uo pipefail
vmshadow=$1
. "$(dirname "$0")/s3-lib.sh"
fail () { echo "FAIL: $*"; exit 1; }
tmp=$(mktemp -d /var/tmp/vmshadow-test.XXXXXX)
proxy_pid=
stop_proxy () { [ -n "$proxy_pid" ] && kill -9 "$proxy_pid" 2>/dev/null && wait "$proxy_pid" 2>/dev/null; proxy_pid=; }
trap 'stop_proxy; rm -rf "$tmp"' EXIT
s3_lab_start
s3_bucket bucket vmshadow-verify-resume
export VMSHADOW_SCRATCH_DIR=$tmp/scratch VMSHADOW_WRITERS_DIR=$tmp/writers.d
export VMSHADOW_STATE_DIR=$tmp/state VMSHADOW_VERIFY_SAVE_MS=0
unset VMSHADOW_REPO VMSHADOW_REPO_FORMAT
export VMSHADOW_REPO_PACK_SIZE=$((1024 * 1024))
mkdir -p "$tmp/app" "$VMSHADOW_WRITERS_DIR"
head -c 10000000 /dev/urandom > "$tmp/app/data"
. "$(dirname "$0")/../exec-writer-double.sh"
exec_writer_double "$VMSHADOW_WRITERS_DIR" "$tmp/app/data"
gateway=$VMSHADOW_S3_ENDPOINT
repo=s3://$bucket/r
"$vmshadow" --repo "$repo" init > "$tmp/out" 2>&1 || fail "init: $(cat "$tmp/out")"
"$vmshadow" --repo "$repo" backup > "$tmp/out" 2>&1 || fail "backup: $(cat "$tmp/out")"
python3 "$(dirname "$0")/fault-proxy.py" "${gateway##*:}" slow1 "$tmp/port" "$tmp/proxy.log" &
proxy_pid=$!
for _ in $(seq 1 50); do [ -s "$tmp/port" ] && break; sleep 0.1; done
[ -s "$tmp/port" ] || fail "the fault proxy did not start"
VMSHADOW_S3_ENDPOINT=http://127.0.0.1:$(cat "$tmp/port") VMSHADOW_S3_RETRIES=2 \
  "$vmshadow" --repo "$repo" verify --deep > "$tmp/v.out" 2> "$tmp/v.err" &
vpid=$!
done_before=
for _ in $(seq 1 1200); do
  f=$(ls "$tmp"/state/verify/*.json 2>/dev/null | head -1)
  if [ -n "$f" ] && [[ $(cat "$f" 2>/dev/null) =~ \"packs_done\":([0-9]+) ]] && (( BASH_REMATCH[1] >= 3 )); then
    stop_proxy
    break
  fi
  kill -0 "$vpid" 2>/dev/null || break
  sleep 0.1
done
rc=0
wait "$vpid" || rc=$?
[ -z "$proxy_pid" ] || fail "the verify ended before the endpoint went: $(cat "$tmp/v.out" "$tmp/v.err")"
[ "$rc" = 5 ] || fail "verify without its endpoint: exit $rc: $(cat "$tmp/v.out" "$tmp/v.err")"
grep -q "verify stopped: repository $repo could not be read (.*); nothing was counted damaged for it, and 'verify --resume' with the same options continues where it stopped" "$tmp/v.err" ||
  fail "the stop does not say why: $(cat "$tmp/v.out" "$tmp/v.err")"
! grep -qi "corrupt\|missing\|unreadable\|problem" "$tmp/v.out" || fail "a lost connection was reported as damage: $(cat "$tmp/v.out")"
f=$(ls "$tmp"/state/verify/*.json 2>/dev/null | head -1)
[ -n "$f" ] || fail "the stopped verify left no record"
done_before=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["packs_done"])' "$f")
"$vmshadow" --repo "$repo" verify --deep --resume --json > "$tmp/r.json" 2> "$tmp/r.err" ||
  fail "resume: $(cat "$tmp/r.json" "$tmp/r.err")"
python3 - "$tmp/r.json" "$done_before" <<'P' || fail "resume: $(cat "$tmp/r.json")"
import json, sys
o = json.load(open(sys.argv[1]))
before = int(sys.argv[2])
assert o["resumed"] is True and o["problems"] == [], o
assert o["packs_checked_before"] == before >= 3, o
assert o["packs_checked"] == o["packs"] - before > 0, o
P
[ -z "$(ls -A "$tmp/state/verify")" ] || fail "the resumed verify left $(ls -A "$tmp/state/verify")"
echo "ok - the endpoint gone after $done_before packs: verify stopped naming it, no damage claimed; the resume checked the other $(python3 -c 'import json,sys; o=json.load(open(sys.argv[1])); print(o["packs_checked"], "of", o["packs"])' "$tmp/r.json") packs"
