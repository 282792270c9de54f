#!/usr/bin/env bash
# R6/R17 for every writer (issue 10): when a file of a component cannot be
# written, the component's file restore status is "failed" (some files
# written) and the writer gets exactly that at PostRestore; the other
# components go on ("all"); the report says which file and why; the exit
# status is 4 (partial; 1 when the only component asked for failed). Targets are never reached through a symbolic link. A writer's
# restore target (restore_target:PATH, set at backup time) and --to decide
# where files go. The writer is a test double (restore-writer-lib.sh).
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
cp "$tmp/app/b/one.data" "$tmp/one.data.orig"
echo "two = 2" > "$tmp/app/a/two.conf"
"$vmshadow" backup --json > "$tmp/backup.json" || fail "backup: $(cat "$tmp/backup.json")"
id=$(jq -r .backup_id "$tmp/backup.json")
status_at_post_restore () {  # component
    jq -r --arg c "$1" '.components[] | select(.name == $c) | .restore_status' \
        "$tmp"/log/*-post-restore.json
}

# 1. A directory is in the way of one.data: "one" is failed, "two" all.
echo "changed" > "$tmp/app/a/one.conf"
echo "changed" > "$tmp/app/a/two.conf"
rm "$tmp/app/b/one.data"
mkdir "$tmp/app/b/one.data"
rm -f "$tmp/log"/*
rc=0
"$vmshadow" restore "$id" --json > "$tmp/r1.json" 2> "$tmp/err" || rc=$?
# One component restored, one not: exit 4, partial (issue 20).
[ "$rc" = 4 ] || fail "exit status $rc, not 4: $(cat "$tmp/r1.json" "$tmp/err")"
[ "$(events)" = "identify identify pre-restore post-restore " ] ||
    fail "the writer got '$(events)'"
[ "$(status_at_post_restore one)" = failed ] ||
    fail "post-restore got status '$(status_at_post_restore one)' for one, not failed"
[ "$(status_at_post_restore two)" = all ] ||
    fail "post-restore got status '$(status_at_post_restore two)' for two, not all"
jq -e --arg d "$tmp/app/b/one.data" '
    .outcome == "partial" and .exit_code == 4 and
    (.components[] | select(.component == "one") |
       .status == "failed" and .restore_status == "failed" and
       .files[0].status == "written" and
       .files[1].path == $d and .files[1].status == "failed" and
       (.files[1].error | length > 0) and (.error | contains($d))) and
    (.components[] | select(.component == "two") |
       .status == "restored" and .restore_status == "all")' "$tmp/r1.json" >/dev/null ||
    fail "the report does not say what happened: $(cat "$tmp/r1.json")"
[ "$(cat "$tmp/app/a/one.conf")" = "one = 1" ] || fail "one.conf, written first, is not back"
[ "$(cat "$tmp/app/a/two.conf")" = "two = 2" ] || fail "two.conf is not back"
[ -d "$tmp/app/b/one.data" ] && [ -z "$(ls -A "$tmp/app/b/one.data")" ] ||
    fail "the directory in the way was changed"
[ -z "$(ls -A "$tmp/app/b" | grep -v '^one.data$' || true)" ] ||
    fail "leftovers in $tmp/app/b: $(ls -A "$tmp/app/b")"
rmdir "$tmp/app/b/one.data"

# The text report says the same.
rm -f "$tmp/log"/*
mkdir "$tmp/app/b/one.data"
rc=0
"$vmshadow" restore "$id" --component double:one > "$tmp/r1.txt" 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "text: exit status $rc"
grep -q 'component "one" of writer double .*: FAILED, file restore status failed' "$tmp/r1.txt" &&
grep -q "file $tmp/app/b/one.data: FAILED: " "$tmp/r1.txt" ||
    fail "the text report does not say it: $(cat "$tmp/r1.txt")"
jq -e '.components | length == 1 and .[0].name == "one"' \
    "$tmp"/log/*-post-restore.json >/dev/null ||
    fail "post-restore did not get only the component asked for: $(cat "$tmp"/log/*-post-restore.json)"
rmdir "$tmp/app/b/one.data"

# 2. A symbolic link on the way is not followed: the file is not written
# where the link points, and the component is failed.
mv "$tmp/app/b" "$tmp/elsewhere"
ln -s "$tmp/elsewhere" "$tmp/app/b"
rm -f "$tmp/elsewhere/one.data"
rc=0
"$vmshadow" restore "$id" --component double:one --json > "$tmp/r2.json" 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "through a link: exit status $rc"
[ ! -e "$tmp/elsewhere/one.data" ] || fail "a file was written through a symbolic link"
jq -e '.components[0].files[1].status == "failed" and
       (.components[0].files[1].error | test("symbolic link"))' "$tmp/r2.json" >/dev/null ||
    fail "the report does not name the link: $(cat "$tmp/r2.json")"
rm "$tmp/app/b"
mv "$tmp/elsewhere" "$tmp/app/b"

# 3. A restore target the writer set at backup time.
mkdir -p "$tmp/alt"
echo "\"restore_target:$tmp/app/b/one.data\": \"$tmp/alt/one.data\"" > "$tmp/one-attrs"
head -c 300000 /dev/urandom > "$tmp/app/b/one.data"
cp "$tmp/app/b/one.data" "$tmp/one.data.2"
"$vmshadow" backup --json > "$tmp/backup2.json" || fail "backup 2: $(cat "$tmp/backup2.json")"
id2=$(jq -r .backup_id "$tmp/backup2.json")
echo "changed" > "$tmp/app/b/one.data"
rm -f "$tmp/log"/*
"$vmshadow" restore "$id2" --component double:one --json > "$tmp/r3.json" ||
    fail "restore to the writer's target: $(cat "$tmp/r3.json")"
cmp -s "$tmp/alt/one.data" "$tmp/one.data.2" || fail "the file is not at its restore target"
[ "$(cat "$tmp/app/b/one.data")" = changed ] || fail "the original path was written"
jq -e --arg t "$tmp/alt/one.data" '.components[0].files[1].target == $t' "$tmp/r3.json" >/dev/null ||
    fail "the report names another target: $(cat "$tmp/r3.json")"
jq -e --arg k "restore_target:$tmp/app/b/one.data" --arg t "$tmp/alt/one.data" \
    '.components[0].attributes[$k] == $t' "$tmp"/log/*-post-restore.json >/dev/null ||
    fail "post-restore does not see the restore target"

# 4. --to: every file under DIR, at its path (or restore target).
echo "changed" > "$tmp/app/a/one.conf"
rm -f "$tmp/log"/*
"$vmshadow" restore "$id2" --to "$tmp/to" --json > "$tmp/r4.json" ||
    fail "restore --to: $(cat "$tmp/r4.json")"
[ "$(cat "$tmp/to$tmp/app/a/one.conf")" = "one = 1" ] &&
[ "$(cat "$tmp/to$tmp/app/a/two.conf")" = "two = 2" ] &&
cmp -s "$tmp/to$tmp/alt/one.data" "$tmp/one.data.2" ||
    fail "--to did not put the files under $tmp/to: $(cd "$tmp/to" && find . -type f)"
[ "$(cat "$tmp/app/a/one.conf")" = "changed" ] || fail "--to wrote the original path"
jq -e --arg k "restore_target:$tmp/app/a/one.conf" --arg t "$tmp/to$tmp/app/a/one.conf" \
    '.components[] | select(.name == "one") | .attributes[$k] == $t' \
    "$tmp"/log/*-pre-restore.json >/dev/null ||
    fail "pre-restore was not told where --to puts the files"
# 5. --dry-run: the plan (one write per file), nothing written, no
# pre-restore sent.
echo "changed" > "$tmp/app/a/one.conf"
rm -f "$tmp/log"/*
"$vmshadow" restore "$id2" --component double:one --dry-run --json > "$tmp/r5.json" ||
    fail "dry run: $(cat "$tmp/r5.json")"
jq -e --arg t "$tmp/app/a/one.conf" --arg a "$tmp/alt/one.data" '
    .dry_run == true and .state == "planned" and
    .components[0].status == "planned" and
    ([.components[0].changes[] | select(.action == "write") | .object] == [$t, $a])'     "$tmp/r5.json" >/dev/null || fail "the plan is not as expected: $(cat "$tmp/r5.json")"
[ "$(cat "$tmp/app/a/one.conf")" = "changed" ] || fail "a dry run wrote one.conf"
case "$(events)" in *pre-restore*|*post-restore*) fail "a dry run sent '$(events)'" ;; esac
echo "ok - failed reaches post-restore, links are not followed, restore targets and --to are honoured"
