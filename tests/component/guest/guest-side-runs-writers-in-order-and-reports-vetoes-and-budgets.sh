#!/usr/bin/env bash
# guest-side-runs-writers-in-order-and-reports-vetoes-and-budgets (issue 17;
# R2, R3, R4): vmshadow-guest, the guest side, run on the host with its
# writers directory and state directory pointed at a temp dir:
#  - it is a static executable (it must run on any guest);
#  - identify runs every writer's identify in name order and passes each
#    metadata document on as a JSON string, hostile bytes escaped;
#  - prepare-backup stops at the first veto: the writer, the kind from its
#    reply ("failure") and its reason ("message") are reported, later
#    writers are "not-run";
#  - freeze (the fsfreeze hook) runs freeze in name order; a veto (exit 75:
#    retryable, reason from stderr) refuses the freeze (exit 1) and thaws
#    the writers already frozen; status shows it all;
#  - a writer still running after the freeze budget (set by prepare-backup)
#    is killed with its process group and is a "timeout" veto, within the
#    budget plus the grace second;
#  - thaw runs, in reverse order, every writer that froze, exactly once: the
#    thaw qemu-ga runs when the host thaws after a refused freeze
#    (writers/libvirt/vm-online.c always thaws) reaches nobody — the veto
#    already thawed those frozen, and the vetoing writer is owed none (it
#    got "freeze thaw thaw" before); a second thaw after a good one reaches
#    nobody either; a freeze whose record of who froze cannot be written is
#    refused and thaws the writer that froze;
#  - backup-complete and abort reach every writer.
set -euo pipefail
guest=$1
linkage=${2:-static}     # "dynamic" in a sanitizer build (guest/meson.build)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail () { echo "FAIL: $*" >&2; exit 1; }
export VMSHADOW_GUEST_WRITERS_DIR=$tmp/w VMSHADOW_GUEST_STATE_DIR=$tmp/s
mkdir "$tmp/w"
log=$tmp/events

if [ "$linkage" = static ]; then
  what=$(file "$guest" 2>/dev/null; ldd "$guest" 2>&1 || true)   # (not piped into grep -q: pipefail)
  grep -q 'statically linked\|not a dynamic executable' <<<"$what" ||
    fail "vmshadow-guest is not statically linked: $(head -n 3 <<<"$what")"
fi

writer () {   # NAME BODY: a writer that logs each event, then runs BODY
  cat > "$tmp/w/$1" <<EOF2
#!/bin/sh
echo "$1 \$1 \$VMSHADOW_BUDGET_MS" >> "$log"
$2
exit 0
EOF2
  chmod 755 "$tmp/w/$1"
}
writer 10-app 'case $1 in identify) printf "{\"format\":\"vmshadow-writer-metadata\",\"version\":1,\"writer\":{\"name\":\"app\\\\u001b[31m\",\"id\":\"a-1\"},\"components\":[{\"name\":\"db\",\"files\":[]}]}\n"; printf "\033[31mred\001\n" >&2;; esac'
writer 20-veto '[ "$1" = prepare-backup ] && [ -e '"$tmp"'/veto-prepare ] && { echo "{\"failure\":\"inconsistent-snapshot\",\"message\":\"replica \\\"r1\\\" lags\"}"; exit 1; }
[ "$1" = freeze ] && [ -e '"$tmp"'/veto-freeze ] && { echo "first line" >&2; echo "cannot quiesce: busy" >&2; exit 75; }'
writer 30-hang '[ "$1" = freeze ] && [ -e '"$tmp"'/hang ] && { sleep 30 & echo $! > '"$tmp"'/bgpid; sleep 30; }'
# Not writers: a dotfile, a dpkg leftover, a non-executable file.
touch "$tmp/w/.hidden" "$tmp/w/40-x.dpkg-old" "$tmp/w/50-plain"
chmod 755 "$tmp/w/.hidden" "$tmp/w/40-x.dpkg-old"

"$guest" identify > "$tmp/id.json"
python3 - "$tmp/id.json" <<'PY' || fail "identify: $(cat "$tmp/id.json")"
import json, sys
d = json.load(open(sys.argv[1]))
ws = d["writers"]
assert [w["writer"] for w in ws] == ["10-app", "20-veto", "30-hang"], ws
assert all(w["result"] == "ok" for w in ws), ws
m = json.loads(ws[0]["output"])
assert m["writer"]["id"] == "a-1" and m["components"][0]["name"] == "db", m
PY
grep -q $'\033' "$tmp/id.json" && fail "identify passed a raw escape byte on"

: > "$log"
touch "$tmp/veto-prepare"
"$guest" run prepare-backup --freeze-budget-ms 1500 > "$tmp/p.json"
python3 - "$tmp/p.json" <<'PY' || fail "prepare-backup veto: $(cat "$tmp/p.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["vetoed"] is True, d
r = {w["writer"]: w for w in d["writers"]}
assert r["10-app"]["result"] == "ok", r
v = r["20-veto"]
assert v["result"] == "veto" and v["failure"] == "inconsistent-snapshot", v
assert v["message"] == 'replica "r1" lags', v
assert r["30-hang"]["result"] == "not-run", r
PY
grep -q '^30-hang' "$log" && fail "a writer after the veto ran prepare-backup: $(cat "$log")"
rm "$tmp/veto-prepare"

"$guest" run prepare-backup --freeze-budget-ms 1500 > "$tmp/p.json"
jq -e '.vetoed == false' "$tmp/p.json" >/dev/null || fail "prepare-backup: $(cat "$tmp/p.json")"
grep -q '^10-app prepare-backup 60000$' "$log" || fail "no budget in the environment: $(cat "$log")"

: > "$log"
touch "$tmp/veto-freeze"
rc=0; "$guest" freeze 2>/dev/null || rc=$?
[ $rc = 1 ] || fail "a vetoed freeze exited $rc, not 1"
[ "$(cut -d' ' -f1,2 "$log" | tr '\n' ' ')" = "10-app freeze 20-veto freeze 10-app thaw " ] ||
  fail "freeze veto order: $(cat "$log")"
"$guest" status > "$tmp/st.json"
python3 - "$tmp/st.json" <<'PY' || fail "status after a freeze veto: $(cat "$tmp/st.json")"
import json, sys
d = json.load(open(sys.argv[1]))
f = d["freeze"]
assert f["vetoed"] is True, f
v = [w for w in f["writers"] if w["result"] != "ok"]
assert len(v) == 1 and v[0]["writer"] == "20-veto" and v[0]["failure"] == "retryable", v
assert v[0]["message"] == "first line; cannot quiesce: busy", v
assert v[0]["status"] == 75, v
assert d["thaw"] is None, d
PY
# The host's thaw after the refused freeze: qemu-ga runs the thaw hook.
"$guest" thaw || fail "the thaw after a refused freeze failed"
[ "$(cut -d' ' -f1,2 "$log" | tr '\n' ' ')" = "10-app freeze 20-veto freeze 10-app thaw " ] ||
  fail "the thaw after a refused freeze thawed again (each writer that froze gets one thaw): $(cat "$log")"
"$guest" status | jq -e '.thaw == null and .freeze.vetoed == true' >/dev/null ||
  fail "status after the host's thaw of a refused freeze: $("$guest" status)"
rm "$tmp/veto-freeze"

: > "$log"
touch "$tmp/hang"
t0=$(date +%s%N)
rc=0; "$guest" freeze 2>/dev/null || rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
[ $rc = 1 ] || fail "a freeze past its budget exited $rc, not 1"
[ $ms -ge 1500 ] && [ $ms -lt 6000 ] || fail "the hanging writer was stopped after $ms ms (budget 1500)"
grep -q '^30-hang freeze 1500$' "$log" || fail "the freeze budget did not reach the writer: $(cat "$log")"
"$guest" status > "$tmp/st.json"
jq -e '.freeze.writers[] | select(.writer == "30-hang") | .result == "timeout" and .failure == "timeout"' \
  "$tmp/st.json" >/dev/null || fail "status after a hang: $(cat "$tmp/st.json")"
sleep 0.2
bg=$(cat "$tmp/bgpid")
# (killed but not yet reaped by whoever inherited it: a zombie, state Z;
# reaped: no /proc entry, which under pipefail must not end the test)
st=$(sed 's/.*) //' "/proc/$bg/stat" 2>/dev/null | cut -d' ' -f1) || st=
if [ -n "$st" ] && [ "$st" != Z ]; then kill "$bg"; fail "the hanging writer's child $bg was left running ($st)"; fi
rm "$tmp/hang"

: > "$log"
"$guest" freeze && "$guest" thaw || fail "a plain freeze/thaw failed"
[ "$(cut -d' ' -f1,2 "$log" | tr '\n' ' ')" = "10-app freeze 20-veto freeze 30-hang freeze 30-hang thaw 20-veto thaw 10-app thaw " ] ||
  fail "freeze/thaw order: $(cat "$log")"
"$guest" status | jq -e '.freeze.vetoed == false and (.thaw.writers | length) == 3' >/dev/null ||
  fail "status after freeze/thaw: $("$guest" status)"
: > "$log"
"$guest" thaw || fail "a second thaw failed"
[ -s "$log" ] && fail "a second thaw reached writers already thawed: $(cat "$log")"

# The record of who froze cannot be written (the state directory is under a
# plain file): the freeze is refused and the writer that froze is thawed.
touch "$tmp/plain"
: > "$log"
rc=0; VMSHADOW_GUEST_STATE_DIR=$tmp/plain/s "$guest" freeze 2>"$tmp/err" || rc=$?
[ $rc = 1 ] || fail "a freeze without its record exited $rc, not 1"
[ "$(cut -d' ' -f1,2 "$log" | tr '\n' ' ')" = "10-app freeze 10-app thaw " ] ||
  fail "a freeze without its record: $(cat "$log")"
grep -q 'record of it could not be written' "$tmp/err" || fail "no reason for the refused freeze: $(cat "$tmp/err")"

for ev in backup-complete abort; do
  : > "$log"
  "$guest" run $ev | jq -e '(.writers | length) == 3 and all(.writers[]; .result == "ok")' >/dev/null ||
    fail "$ev did not reach every writer"
  [ "$(wc -l < "$log")" = 3 ] || fail "$ev: $(cat "$log")"
done
rc=0; "$guest" run freeze 2>/dev/null || rc=$?
[ $rc = 2 ] || fail "run freeze (not a host event) exited $rc"
echo "ok: order, vetoes with kind and reason, budgets, one thaw per frozen writer, status, escaping"
