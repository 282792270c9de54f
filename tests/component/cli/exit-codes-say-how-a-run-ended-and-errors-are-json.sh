#!/usr/bin/env bash
# exit-codes-say-how-a-run-ended-and-errors-are-json (issue 20): vmshadow's
# exit status tells apart success (0), failure with nothing stored (1), a
# bad command line (2), stored with warnings (3: a file left out, R13; a
# writer failing after the commit) — and under --json every error, also
# one before any backup starts (bad option, bad repository, no such backup,
# a held repository lock), is one JSON object on stdout with "exit_code",
# text on stderr otherwise, escaped either way (docs/security.md).
# backup --wait waits for a held repository lock and then succeeds.
. "$(dirname "$0")/cli-lib.sh"
# Format 1, asked for (new repositories are format 2): it holds format 1's repository lock file (format 2 has no backup-wide lock).
export VMSHADOW_REPO_FORMAT=1
cd "$tmp"

app_writer
# A second writer whose behaviour files in $tmp switch: "exclude" makes it
# name a file it leaves out (R13), "fail-complete" makes it fail at
# backup-complete, "veto" makes it veto the freeze.
echo data > "$tmp/app/other.dat"
cat > "$VMSHADOW_WRITERS_DIR/other" <<W
#!/bin/sh
case "\$1" in
identify)
  excl='[]'
  [ -e "$tmp/exclude" ] && excl='[{"path": "/dev/sdz", "reason": "back it up from inside"}]'
  cat <<JSON
{"format": "vmshadow-writer-metadata", "version": 1,
 "writer": {"name": "other", "id": "5b0cf0a2-64a1-4a8e-9c1e-0c6f3e8d4a21"},
 "components": [{"name": "data", "files": [{"path": "$tmp/app/other.dat", "kind": "plain"}],
                 "excluded": \$excl}]}
JSON
;;
freeze) [ -e "$tmp/veto" ] && { echo '{"failure":"retryable","message":"vetoed on purpose"}'; exit 1; } ;;
backup-complete) [ -e "$tmp/fail-complete" ] && { echo "log truncation failed on purpose" >&2; exit 1; } ;;
esac
exit 0
W
chmod 755 "$VMSHADOW_WRITERS_DIR/other"

# run EXPECTED-RC ARGS...: stdout in $tmp/out, stderr in $tmp/err.
run () {
  local want=$1 rc=0; shift
  "$vmshadow" "$@" > "$tmp/out" 2> "$tmp/err" || rc=$?
  [ $rc -eq "$want" ] || fail "vmshadow $*: exit $rc, not $want: $(cat "$tmp/out" "$tmp/err")"
}
count () { ls "$VMSHADOW_REPO/backups" 2>/dev/null | wc -l; }
# json_error CODE: stdout is exactly one JSON object naming the error with
# that exit code, stderr is empty.
json_error () {
  python3 - "$tmp/out" "$1" <<'PY' || fail "not one JSON error with exit_code $1: $(cat "$tmp/out")"
import json, sys
v = json.load(open(sys.argv[1]))
assert isinstance(v, dict) and isinstance(v["error"], str) and v["error"], v
assert v["exit_code"] == int(sys.argv[2]), v
PY
  [ ! -s "$tmp/err" ] || fail "stderr is not empty under --json: $(cat "$tmp/err")"
}
field () { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$tmp/out" "$1"; }

# 0: success.
run 0 backup --json
[ "$(field outcome)" = success ] && [ "$(field exit_code)" = 0 ] || fail "success: $(cat "$tmp/out")"
[ "$(count)" -eq 1 ] || fail "no backup stored"

# 3: stored, but a file was left out (R13).
touch "$tmp/exclude"
run 3 backup --json
[ "$(field outcome)" = warnings ] && [ "$(field state)" = complete ] && [ "$(field exit_code)" = 3 ] ||
  fail "excluded: $(cat "$tmp/out")"
run 3 backup
grep -q "not backed up: /dev/sdz" "$tmp/out" || fail "text report does not name the left-out file: $(cat "$tmp/out")"
grep -q "warning: 1 disk was not backed up" "$tmp/err" || fail "no warning on stderr: $(cat "$tmp/err")"
rm "$tmp/exclude"
[ "$(count)" -eq 3 ] || fail "backups with warnings were not stored"

# 3: stored, but a writer failed after the commit (stored-with-errors).
touch "$tmp/fail-complete"
run 3 backup --json
[ "$(field state)" = stored-with-errors ] && [ "$(field outcome)" = warnings ] ||
  fail "backup-complete failure: $(cat "$tmp/out")"
rm "$tmp/fail-complete"
[ "$(count)" -eq 4 ] || fail "the stored-with-errors backup is not in the repository"

# 1: nothing stored.
touch "$tmp/veto"
run 1 backup --json
[ "$(field state)" = failed ] && [ "$(field outcome)" = failure ] && [ "$(field exit_code)" = 1 ] ||
  fail "veto: $(cat "$tmp/out")"
run 1 backup
grep -q "vetoed on purpose" "$tmp/err" || fail "text failure does not say why: $(cat "$tmp/err")"
rm "$tmp/veto"
[ "$(count)" -eq 4 ] || fail "a vetoed backup was stored"

# 2: bad command lines, as JSON wherever --json is on the line.
run 2 --json --frobnicate list;            json_error 2
run 2 list --frobnicate --json;            json_error 2
run 2 backup --json --all vm1;             json_error 2
run 2 --json prune;                        json_error 2
run 2 --json list --deep;                  json_error 2
run 2 --json gc --grace -1;                json_error 2
run 2 --json;                              json_error 2
run 2 --json frobnicate;                   json_error 2
run 2 --json restore;                      json_error 2
run 2 --json extract x;                    json_error 2
run 2 --json writers extra;                json_error 2
run 2 --json backup --each;                json_error 2
run 2 --frobnicate list
[ ! -s "$tmp/out" ] && grep -q "unknown option '--frobnicate'" "$tmp/err" || fail "text usage error: $(cat "$tmp/out" "$tmp/err")"

# 1: errors before anything starts, for every command that takes --json.
touch "$tmp/file"
for cmd in list "show x" verify "prune --keep-last 1" gc "extract x c f --to $tmp/x" "restore x"; do
  run 1 --json --repo "$tmp/file" $cmd
  json_error 1
  grep -q "$tmp/file" "$tmp/out" || fail "$cmd: the error does not name the repository: $(cat "$tmp/out")"
done
run 1 --json backup --repo "$tmp/file/x";   json_error 1
run 1 --json backup --writers-dir "$tmp/nowhere"; json_error 1
run 1 --json show 20990101T000000Z-000000;  json_error 1
run 1 --json writers --writers-dir "$tmp/nowhere"; json_error 1
run 1 show 20990101T000000Z-000000
[ ! -s "$tmp/out" ] && grep -q "^vmshadow show: " "$tmp/err" || fail "text error: $(cat "$tmp/out" "$tmp/err")"

# Control characters from the command line: JSON escapes them, text
# output shows them escaped; neither passes them through.
esc=$'\e[2J\e]0;owned\a'
run 1 --json show "x${esc}y"; json_error 1
! grep -q $'\e' "$tmp/out" || fail "an escape byte in the JSON output"
run 2 --json "--bad${esc}"; json_error 2
! grep -q $'\e' "$tmp/out" || fail "an escape byte in the JSON usage error"
run 1 show "x${esc}y"
! grep -q $'\e' "$tmp/err" || fail "an escape byte reached the terminal"
grep -qF 'x\x1b[2J' "$tmp/err" || fail "not shown escaped: $(cat "$tmp/err")"

# A repository lock held by another process: 1 at once, as JSON; with
# --wait, waited for (here up to 1 s: then 1, saying it waited) ...
exec 9>>"$VMSHADOW_REPO/lock"
flock 9
run 1 --json backup
json_error 1
grep -q "locked" "$tmp/out" || fail "the error does not say the repository is locked: $(cat "$tmp/out")"
t0=$(date +%s%N)
run 1 --json backup --wait-timeout 1
t1=$(date +%s%N)
grep -q "waited 1 s" "$tmp/out" || fail "--wait-timeout 1 does not say it waited: $(cat "$tmp/out")"
[ $(( (t1 - t0) / 1000000 )) -ge 1000 ] || fail "--wait-timeout 1 gave up after $(( (t1 - t0) / 1000000 )) ms"
# ... and, when the holder lets go, the backup goes on and succeeds.
( sleep 2; flock -u 9 ) &
exec 9>&-
before=$(count)
t0=$(date +%s%N)
run 0 --json backup --wait
t1=$(date +%s%N)
wait
[ "$(field outcome)" = success ] || fail "--wait backup: $(cat "$tmp/out")"
[ $(( (t1 - t0) / 1000000 )) -ge 1500 ] || fail "--wait did not wait for the lock ($(( (t1 - t0) / 1000000 )) ms)"
[ "$(count)" -eq $((before + 1)) ] || fail "the waiting backup was not stored"
echo "ok: exit codes 0/1/2/3 and JSON errors"
