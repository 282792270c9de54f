#!/bin/bash
# Issue 14 (R29), what holds without an object store: a retention is
# refused where no Object Lock can keep it (a local directory), never
# faked, nothing created; a config that asks for one is obeyed or refused
# (a writer refuses a local repository whose config names a retention);
# an append-only repository backs up but refuses prune and gc without
# --admin, naming why, and prunes and collects with it. The S3 side (real
# Object Lock on the lab's gateway) is tests/s3/s3-object-lock-keeps-
# backups-through-prune-and-gc.sh.
source "$(dirname "$0")/cli-lib.sh"
app_writer

expect_fail () {   # PATTERN CMD...: exit 1 and PATTERN on stderr
  local pat=$1 rc=0
  shift
  "$@" > "$tmp/out" 2> "$tmp/err" || rc=$?
  [ $rc = 1 ] || fail "'$*' exited $rc, not 1: $(cat "$tmp/out" "$tmp/err")"
  grep -q -- "$pat" "$tmp/err" || fail "'$*' said: $(cat "$tmp/err"), not '$pat'"
}

expect_fail "only S3 Object Lock keeps one" "$vmshadow" --repo "$tmp/locked" init --retention-days 7
[ ! -e "$tmp/locked/config" ] || fail "a refused init wrote a config"
rc=0; "$vmshadow" --repo "$tmp/x" init --retention-mode compliance 2> "$tmp/err" || rc=$?
[ $rc = 2 ] || fail "--retention-mode alone exited $rc, not 2"
rc=0; "$vmshadow" --repo "$tmp/x" init --retention-days 0 2> "$tmp/err" || rc=$?
[ $rc = 2 ] || fail "--retention-days 0 exited $rc, not 2"
echo "ok - a retention on a local directory is refused, not faked; bad values are usage errors"

# A config that names a retention (as an S3 repository's does): readers
# read it, writers refuse it here.
"$vmshadow" --repo "$tmp/edited" init > /dev/null
"$vmshadow" --repo "$tmp/edited" backup > /dev/null
python3 - "$tmp/edited/config" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["retention"] = {"mode": "governance", "days": 3}
open(sys.argv[1], "w").write(json.dumps(c))
PY
"$vmshadow" --repo "$tmp/edited" list > /dev/null || fail "list of a repository with a retention in its config"
expect_fail "which only S3 Object Lock keeps: not written to" "$vmshadow" --repo "$tmp/edited" backup
python3 - "$tmp/edited/config" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["retention"] = {"mode": "forever", "days": 3}
open(sys.argv[1], "w").write(json.dumps(c))
PY
expect_fail "a \"retention\" this vmshadow does not know" "$vmshadow" --repo "$tmp/edited" list
echo "ok - a config's retention is obeyed or refused, never ignored"

"$vmshadow" init --append-only --json > "$tmp/out" || fail "init --append-only: $(cat "$tmp/out")"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["append_only"] is True and d["retention_days"] == 0, d' "$tmp/out" ||
  fail "init --append-only --json: $(cat "$tmp/out")"
grep -q '"append_only": true' "$VMSHADOW_REPO/config" || fail "config: $(cat "$VMSHADOW_REPO/config")"
"$vmshadow" backup > /dev/null || fail "backup into an append-only repository"
echo "setting = 2" > "$tmp/app/app.conf"
sleep 1
"$vmshadow" backup > /dev/null || fail "second backup into an append-only repository"
expect_fail "is append-only" "$vmshadow" prune --keep-last 1
expect_fail "is append-only" "$vmshadow" gc --grace 0
n=$("$vmshadow" list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["backups"]))')
[ "$n" = 2 ] || fail "$n backups after refused prune and gc, not 2"
"$vmshadow" prune --keep-last 1 --dry-run > "$tmp/out" || fail "prune --dry-run: $(cat "$tmp/out")"
"$vmshadow" prune --keep-last 1 --admin > "$tmp/out" || fail "prune --admin: $(cat "$tmp/out")"
grep -q "^remove " "$tmp/out" || fail "prune --admin removed nothing: $(cat "$tmp/out")"
"$vmshadow" gc --grace 0 --admin > "$tmp/out" || fail "gc --admin: $(cat "$tmp/out")"
"$vmshadow" verify --deep > "$tmp/out" || fail "verify --deep: $(cat "$tmp/out")"
echo "ok - an append-only repository backs up, refuses prune and gc without --admin, and is pruned and collected with it"
