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
. "$(dirname "$0")/../verify-stopped.sh"
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
verify_stopped_unreachable "$repo" "$rc"
verify_resumed "$repo"
echo "ok - the endpoint gone after $done_before packs: verify stopped naming it, no damage claimed; the resume checked the other $resumed_packs packs"
