#!/usr/bin/env bash
# show-reads-a-backup-without-components-and-verify-reports-it (issue 9,
# item 5): a manifest may say "components": false (the format allows it).
# show used to crash (SIGSEGV) on it while verify said "No problems
# found"; now show lists the backup's files (text and JSON) and verify
# reports that restore cannot use it.
. "$(dirname "$0")/cli-lib.sh"
# Format 1, asked for (new repositories are format 2): it edits a manifest in format 1's backups/ID/manifest.json.
export VMSHADOW_REPO_FORMAT=1

app_writer
"$vmshadow" backup > "$tmp/out" || fail "backup: $(cat "$tmp/out")"
id=$(ls "$VMSHADOW_REPO/backups")
manifest=$VMSHADOW_REPO/backups/$id/manifest.json
python3 - "$manifest" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
m["components"] = False
json.dump(m, open(sys.argv[1], "w"))
PY

rc=0; "$vmshadow" show "$id" > "$tmp/show" 2>&1 || rc=$?
[ $rc -eq 0 ] || fail "show exited $rc: $(cat "$tmp/show")"
grep -q "no backup components document" "$tmp/show" || fail "show does not say it: $(cat "$tmp/show")"
grep -q "$tmp/app/app.conf" "$tmp/show" || fail "show does not list the file: $(cat "$tmp/show")"

rc=0; "$vmshadow" show --json "$id" > "$tmp/json" 2>&1 || rc=$?
[ $rc -eq 0 ] || fail "show --json exited $rc: $(cat "$tmp/json")"
python3 - "$tmp/json" "$tmp/app/app.conf" <<'PY' || fail "show --json: $(cat "$tmp/json")"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["components_document"] is None, j
assert [f["path"] for f in j["files"]] == [sys.argv[2]], j
PY

rc=0; "$vmshadow" verify > "$tmp/verify" 2>&1 || rc=$?
[ $rc -eq 1 ] || fail "verify exited $rc: $(cat "$tmp/verify")"
grep -q "backup $id has no backup components document" "$tmp/verify" \
  || fail "verify does not report it: $(cat "$tmp/verify")"
echo "ok: show lists the files, verify reports the missing document"
