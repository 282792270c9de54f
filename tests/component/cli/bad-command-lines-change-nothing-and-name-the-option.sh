#!/usr/bin/env bash
# bad-command-lines-change-nothing-and-name-the-option (issue 9, item 9):
# every argument is checked before anything changes, and a refusal is one
# line that names what is wrong:
#  - backup --writers-dir FILE creates no repository;
#  - backup --repo d/a/b/../../../file/x leaves no d/a/b behind;
#  - --repo '' and --to '' are errors naming the option (not the default
#    repository, not an internal function name);
#  - an unknown option is one line naming it, not the whole usage;
#  - an option that does not apply is named;
#  - extract onto an existing file advises nothing that does not exist;
#  - --grace has no hidden upper limit;
#  - a manifest "created" out of range is refused, one dated in the future
#    is kept by prune but does not push real backups out of --keep-last;
#  - a failing writer's newest stderr line reaches the message;
#  - bad --method/--fallback values are named; backup --dry-run makes no
#    repository (issue 20); --group with --each is refused (issue 17).
. "$(dirname "$0")/cli-lib.sh"
# Format 1, asked for (new repositories are format 2): it reads format 1's backups/ID/manifest.json.
export VMSHADOW_REPO_FORMAT=1
cd "$tmp"

# run EXPECTED-RC ARGS...: the command's stderr in $tmp/err.
run () {
  local want=$1 rc=0; shift
  "$vmshadow" "$@" > "$tmp/out" 2> "$tmp/err" || rc=$?
  [ $rc -eq "$want" ] || fail "vmshadow $*: exit $rc, not $want: $(cat "$tmp/err")"
}
one_line () {
  [ "$(wc -l < "$tmp/err")" -eq 1 ] || fail "$1: not one line: $(cat "$tmp/err")"
  grep -q -- "$2" "$tmp/err" || fail "$1: does not say '$2': $(cat "$tmp/err")"
}

app_writer
touch "$tmp/file"

# Nothing is made before every argument is known to be usable.
run 1 backup --repo "$tmp/r1" --writers-dir "$tmp/file"
[ ! -e "$tmp/r1" ] || fail "backup --writers-dir FILE created the repository"
run 1 backup --repo d/a/b/../../../file/x
[ ! -e "$tmp/d" ] || fail "backup --repo d/a/b/../../../file/x left $(find d) behind"
grep -q "nothing was changed" "$tmp/err" || fail "no word that nothing changed: $(cat "$tmp/err")"
run 1 backup --repo "$tmp/file/x"
grep -q "$tmp/file is not a directory" "$tmp/err" || fail "repo under a file: $(cat "$tmp/err")"

# The capture policy (issue 20): bad values are one line naming the option;
# backup --dry-run plans and makes nothing (no repository), in text and JSON.
run 2 backup --repo "$tmp/r2" --method pause
one_line "--method pause" "--method must be auto, online, crash-consistent or saved-state, not 'pause'"
run 2 backup --repo "$tmp/r2" --fallback online
one_line "--fallback online" "--fallback must be crash-consistent, saved-state or fail, not 'online'"
run 2 list --fallback fail
one_line "--fallback on list" "option --fallback does not apply"
# Issue 17: a group is one set; --each makes a set per VM.
run 2 backup --repo "$tmp/r2" --all --each --group
one_line "--each --group" "--group makes the VMs of one set one instant; --each makes one set per VM"
[ ! -e "$tmp/r2" ] || fail "backup --each --group made the repository"
run 2 list --group
one_line "list --group" "option --group does not apply"
run 2 backup --repo "$tmp/r2" --guest-processing sometimes
one_line "--guest-processing sometimes" "--guest-processing must be required, tried or off, not 'sometimes'"
run 2 guest install
one_line "guest install without a VM" "usage: vmshadow guest install VM"
run 0 backup --repo "$tmp/r2" --dry-run --method crash-consistent --fallback fail
[ ! -e "$tmp/r2" ] || fail "backup --dry-run created the repository"
grep -q "^Backup plan (dry run: nothing was changed)" "$tmp/out" || fail "dry run text: $(cat "$tmp/out")"
grep -q "^  config (writer app)" "$tmp/out" || fail "dry run names no exec writer component: $(cat "$tmp/out")"
run 0 backup --repo "$tmp/r2" --dry-run --json
[ ! -e "$tmp/r2" ] || fail "backup --dry-run --json created the repository"
python3 -c 'import json,sys; p = json.load(open(sys.argv[1]))
assert p["dry_run"] is True and p["errors"] == [], p
assert [c["writer"] for c in p["components"]] == ["app"], p' "$tmp/out" ||
  fail "dry run JSON: $(cat "$tmp/out")"

# Empty values are mistakes, named.
run 0 backup
id=$(ls "$VMSHADOW_REPO/backups")
run 2 --repo '' list
one_line "--repo ''" "--repo needs a value, not an empty string"
run 2 extract "$id" config "$tmp/app/app.conf" --to ''
one_line "--to ''" "--to needs a value"
! grep -q "vms_" "$tmp/err" || fail "an internal name in: $(cat "$tmp/err")"

# Unknown options, options without values, options that do not apply.
run 2 --frobnicate list
one_line "unknown option" "unknown option '--frobnicate'; see 'vmshadow --help'"
run 2 list -Z
one_line "unknown short option" "unknown option '-Z'"
run 2 list --repo
one_line "missing value" "missing value for option '--repo'"
run 2 prune --keep-last 1 --grace 5
one_line "option that does not apply" "option --grace does not apply"
run 2 list --deep
one_line "option that does not apply" "option --deep does not apply"

# extract onto an existing file: no advice to use an option that is not there.
run 1 extract "$id" config "$tmp/app/app.conf" --to "$tmp/file"
grep -q "remove it or choose another path" "$tmp/err" || fail "extract onto a file: $(cat "$tmp/err")"
! grep -qi "allow overwriting" "$tmp/err" || fail "advises a missing option: $(cat "$tmp/err")"

# --grace: any whole number of seconds.
run 0 gc --grace 31536000000
run 2 gc --grace -1
one_line "negative grace" "--grace needs a whole number"

# Times: 2^63-1 is refused, never printed as garbage; a backup dated in
# the future does not push the real newest out of --keep-last 1.
run 0 backup; run 0 backup
ids=($(ls "$VMSHADOW_REPO/backups"))
[ ${#ids[@]} -eq 3 ] || fail "expected 3 backups: ${ids[*]}"
set_created () {
  python3 - "$VMSHADOW_REPO/backups/$1/manifest.json" "$2" <<'PY'
import json, sys
m = json.load(open(sys.argv[1])); m["created"] = int(sys.argv[2])
json.dump(m, open(sys.argv[1], "w"))
PY
}
# Two backups made in the same second sort by their random suffix: date
# the two real ones apart, so "newest" does not depend on the suffix.
now=$(date +%s)
set_created "${ids[1]}" $(( now - 100 ))
set_created "${ids[2]}" $(( now - 50 ))
set_created "${ids[0]}" 9223372036854775807
run 1 list
grep -q "${ids[0]}.*created.*out of range" "$tmp/err" || fail "list of a huge time: $(cat "$tmp/err")"
! grep -q "${ids[0]}" "$tmp/out" || fail "list printed the backup with a huge time: $(cat "$tmp/out")"
set_created "${ids[0]}" $(( $(date +%s) + 10 * 365 * 86400 ))
run 0 list
grep -q "^${ids[0]} " "$tmp/out" || fail "a future time is not listed: $(cat "$tmp/out")"
run 0 prune --keep-last 1
grep -q "keep ${ids[0]} (dated in the future" "$tmp/out" || fail "prune: $(cat "$tmp/out")"
grep -q "keep ${ids[2]} (" "$tmp/out" || fail "prune removed the real newest: $(cat "$tmp/out")"
grep -q "remove ${ids[1]}" "$tmp/out" || fail "prune kept too much: $(cat "$tmp/out")"

# A failing writer: its newest stderr line is in the message, even when
# the lines before it are long.
cat > "$VMSHADOW_WRITERS_DIR/noisy" <<'W'
#!/bin/sh
[ "$1" = identify ] || exit 0
for i in 1 2 3 4 5 6; do
  printf 'noise %s %0300d\n' "$i" 0 >&2
done
echo "THE-REAL-REASON: disk full" >&2
exit 1
W
chmod 755 "$VMSHADOW_WRITERS_DIR/noisy"
run 1 writers
grep -q "THE-REAL-REASON: disk full" "$tmp/out" "$tmp/err" || fail "the newest stderr line is lost: $(cat "$tmp/out" "$tmp/err")"
echo "ok: bad command lines change nothing and name what is wrong"
