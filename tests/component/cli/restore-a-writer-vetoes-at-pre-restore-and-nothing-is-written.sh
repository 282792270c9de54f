#!/usr/bin/env bash
# R16 for every writer (issue 10): a writer that vetoes PreRestore stops
# the restore before any file is written — the files stay as they were, no
# temporary file is left, PostRestore never comes, the message names the
# writer and its reason and says nothing was written, and the exit status
# is 1. The writer is a test double (restore-writer-lib.sh).
set -euo pipefail
vmshadow=$1
tmp=$(mktemp -d /var/tmp/vmshadow-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail () { echo "FAIL: $*"; exit 1; }
export VMSHADOW_SCRATCH_DIR=$tmp/scratch VMSHADOW_REPO=$tmp/repo
export VMSHADOW_WRITERS_DIR=$tmp/writers.d
. "$(dirname "$0")/restore-writer-lib.sh"
make_writer
mkdir -p "$tmp/app/a" "$tmp/app/b"
echo "one = 1" > "$tmp/app/a/one.conf"
head -c 300000 /dev/urandom > "$tmp/app/b/one.data"
echo "two = 2" > "$tmp/app/a/two.conf"

"$vmshadow" backup --json > "$tmp/backup.json" || fail "backup: $(cat "$tmp/backup.json")"
id=$(jq -r .backup_id "$tmp/backup.json")

echo "changed after the backup" > "$tmp/app/a/one.conf"
rm "$tmp/app/b/one.data"
(cd "$tmp/app" && find . -printf '%p %s %T@\n' | sort) > "$tmp/before"
touch "$tmp/veto-pre-restore"
rm -f "$tmp/log"/*

rc=0
"$vmshadow" restore "$id" --component double > "$tmp/out" 2> "$tmp/err" || rc=$?
[ "$rc" = 1 ] || fail "exit status $rc, not 1 (stdout: $(cat "$tmp/out"); stderr: $(cat "$tmp/err"))"
grep -q 'writer "double" failed at pre-restore: .*the application is running; stop it first.*nothing was written' "$tmp/err" ||
    fail "the message does not name the writer, its reason and what was done: $(cat "$tmp/err")"
(cd "$tmp/app" && find . -printf '%p %s %T@\n' | sort) > "$tmp/after"
diff "$tmp/before" "$tmp/after" >/dev/null ||
    fail "a vetoed restore changed files: $(diff "$tmp/before" "$tmp/after")"
[ "$(cat "$tmp/app/a/one.conf")" = "changed after the backup" ] || fail "one.conf was written"
[ "$(events)" = "identify identify pre-restore " ] ||
    fail "the writer got '$(events)', not identify (the check), identify and pre-restore only"

# --json: the same refusal, no report: one JSON error on stdout, exit 1
# (issue 20).
rc=0
"$vmshadow" restore "$id" --json > "$tmp/out" 2> "$tmp/err" || rc=$?
[ "$rc" = 1 ] && jq -e '.exit_code == 1 and (.error | test("nothing was written"))' "$tmp/out" >/dev/null ||
    fail "--json: exit $rc, stdout: $(cat "$tmp/out"), stderr: $(cat "$tmp/err")"

# Without the veto the same restore puts everything back.
rm "$tmp/veto-pre-restore"
"$vmshadow" restore "$id" > "$tmp/out" 2>&1 || fail "restore: $(cat "$tmp/out")"
[ "$(cat "$tmp/app/a/one.conf")" = "one = 1" ] || fail "one.conf was not restored"
[ -s "$tmp/app/b/one.data" ] || fail "one.data was not restored"
echo "ok - a veto at pre-restore wrote nothing and said so; without it the files came back"
