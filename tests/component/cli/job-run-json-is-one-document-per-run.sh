#!/bin/bash
# Issue 19: `vmshadow job run JOB --json` prints one JSON document, the
# job's result (the same one the notifiers get on stdin): the run (job,
# repository, times, duration, outcome, exit code), one row per VM and per
# host application with its state, backup id, type, size and time, totals,
# the backup's own report and the prune's exit code. Nothing else reaches
# stdout (backup's and prune's own output is not printed), also when the
# run fails before a backup (the job already running). job verify and job
# prune, what the verify@ and prune@ units run, on the job's repository;
# status gives the last verify and a VM's last boot check.
source "$(dirname "$0")/cli-lib.sh"
# Format 1, asked for (new repositories are format 2): it writes a boot-check note into format 1's backups/ID/.
export VMSHADOW_REPO_FORMAT=1
app_writer
export VMSHADOW_RUN_DIR=$tmp/run VMSHADOW_STATE_DIR=$tmp/state
unset VMSHADOW_REPO
conf=$tmp/etc
mkdir -p "$conf/notify.d"
cat > "$conf/vmshadow.conf" <<EOF2
[repository main]
path = $tmp/repo
[job apps]
repository = main
keep-last = 1
EOF2
printf '#!/bin/sh\ncat > "%s/note-$VMSHADOW_EXIT_CODE.json"\n' "$tmp" > "$conf/notify.d/record"
chmod 755 "$conf/notify.d/record"

for round in 1 2; do
  # Backup times have whole seconds, and prune orders two backups of one
  # second by id (random): round 2 must commit in a later second than
  # round 1 for keep-last = 1 to keep it (a known limit, docs/configuration.md).
  [ $round = 1 ] || sleep 1
  rc=0; "$vmshadow" job run apps --json --config "$conf" > "$tmp/out.json" 2> "$tmp/err" || rc=$?
  [ $rc = 0 ] || fail "round $round: job run --json exited $rc: $(cat "$tmp/err")"
  "$vmshadow" list --repo "$tmp/repo" --json > "$tmp/list.json"
  python3 - "$tmp/out.json" "$tmp/list.json" "$tmp/note-0.json" "$round" <<'PY' || fail "round $round: $(cat "$tmp/out.json")"
import json, sys
text = open(sys.argv[1]).read()
d = json.loads(text)                  # the whole of stdout is one document
assert text.count('"format": "vmshadow-job-result"') == 1, text
listed = json.load(open(sys.argv[2]))
note = json.load(open(sys.argv[3]))
assert d["format"] == "vmshadow-job-result" and d["version"] == 1, d
assert d["job"] == "apps" and d["repository"] == "main", d
assert d["outcome"] == "success" and d["exit_code"] == 0 and d["error"] is None, d
assert 0 <= d["duration_s"] == d["finished"] - d["started"], d
assert d["vms"] == [] and d["selected_vms"] == [], d
[row] = d["host_applications"]
assert row["writer"] == "app" and row["component"] == "config", row
assert row["state"] == "complete" and row["type"] == "full" and row["error"] is None, row
assert row["size"] == len("setting = 1\n") and row["elapsed_ms"] >= 0, row
assert row["backup_id"] == d["backup"]["backup_id"], row
# keep-last = 1: the prune ran and left only this run's backup.
assert d["prune"] == {"exit_code": 0}, d
ids = [b.get("id") or b.get("backup_id") for b in (listed if isinstance(listed, list) else listed["backups"])]
assert ids == [row["backup_id"]], (ids, row)
if sys.argv[4] == "1":
    assert d["bytes_stored"] > 0, d
# The notifiers got the same document.
for k in ("job", "outcome", "exit_code", "vms", "host_applications", "started"):
    assert note[k] == d[k], (k, note[k], d[k])
PY
done

# Refused (another run holds the job's lock): one document, the error in it.
holder=
trap '[ -z "$holder" ] || kill $holder 2> /dev/null || true; rm -rf "$tmp"' EXIT
# The holder is the sleep itself (it holds the lock's fd): killing it
# frees the lock.
bash -c 'exec 9> "$1"; flock 9; exec sleep 30' _ "$VMSHADOW_RUN_DIR/job-apps.lock" &
holder=$!
for i in $(seq 50); do
  ! flock -n "$VMSHADOW_RUN_DIR/job-apps.lock" true || { sleep 0.1; continue; }
  break
done
rc=0; "$vmshadow" job run apps --json --config "$conf" > "$tmp/out.json" 2> "$tmp/err" || rc=$?
kill $holder; wait $holder 2> /dev/null || true; holder=
[ $rc = 1 ] || fail "a run while the job runs exited $rc: $(cat "$tmp/out.json" "$tmp/err")"
python3 - "$tmp/out.json" <<'PY' || fail "refused run: $(cat "$tmp/out.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["outcome"] == "failure" and d["exit_code"] == 1, d
assert "already running" in d["error"] and d["backup"] is None, d
assert d["vms"] == [] and d["host_applications"] == [] and d["prune"] is None, d
PY

# job verify JOB: verify of the job's repository (what vmshadow-verify@JOB
# runs); two verifies of one job never overlap.
out=$("$vmshadow" job verify apps --config "$conf") || fail "job verify exited $?: $out"
grep -q "No problems found" <<<"$out" || fail "job verify: $out"
"$vmshadow" job verify apps --json --config "$conf" > "$tmp/verify.json" || fail "job verify --json exited $?"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["problems"] == [] and d["deep"] is False, d' \
  "$tmp/verify.json" || fail "job verify --json: $(cat "$tmp/verify.json")"
bash -c 'exec 9> "$1"; flock 9; exec sleep 30' _ "$VMSHADOW_RUN_DIR/verify-apps.lock" &
holder=$!
for i in $(seq 50); do
  ! flock -n "$VMSHADOW_RUN_DIR/verify-apps.lock" true || { sleep 0.1; continue; }
  break
done
rc=0; "$vmshadow" job verify apps --config "$conf" > "$tmp/out" 2>&1 || rc=$?
kill $holder; wait $holder 2> /dev/null || true; holder=
[ $rc = 1 ] && grep -q "job 'apps': its verify is already running" "$tmp/out" || fail "a second verify: $rc $(cat "$tmp/out")"

# job prune JOB: the job's keep-* rules on its own backups (what
# vmshadow-prune@JOB runs); a backup made by hand is not the job's.
sed -i 's/^keep-last = 1$/keep-last = 5/' "$conf/vmshadow.conf"
"$vmshadow" job run apps --config "$conf" > /dev/null 2>&1 || fail "third run"
"$vmshadow" --quiet backup --repo "$tmp/repo" || fail "a backup by hand"
[ "$(ls "$tmp/repo/backups" | wc -l)" = 3 ] || fail "not 3 backups: $(ls "$tmp/repo/backups")"
sed -i 's/^keep-last = 5$/keep-last = 1/' "$conf/vmshadow.conf"
"$vmshadow" job prune apps --config "$conf" > "$tmp/out" 2>&1 || fail "job prune exited $?: $(cat "$tmp/out")"
[ "$(ls "$tmp/repo/backups" | wc -l)" = 2 ] || fail "job prune left: $(ls "$tmp/repo/backups")"
"$vmshadow" list --repo "$tmp/repo" --json | python3 -c 'import json,sys
d = json.load(sys.stdin); b = d if isinstance(d, list) else d["backups"]
assert sorted(str(x.get("job")) for x in b) == ["None", "apps"], b' || fail "job prune removed the wrong backup"
printf '[job nokeep]\nrepository = main\n' > "$conf/jobs.conf"
mkdir -p "$conf/jobs.d" && mv "$conf/jobs.conf" "$conf/jobs.d/nokeep.conf"
rc=0; "$vmshadow" job prune nokeep --config "$conf" > "$tmp/out" 2>&1 || rc=$?
[ $rc = 2 ] && grep -q "job 'nokeep' has no keep-\* rules" "$tmp/out" || fail "prune without keep: $rc $(cat "$tmp/out")"

# status: the job's last verify (the one above passed) and a component's
# last boot check, read from the note verify --boot keeps beside a backup
# (written here by hand, as it records it, since this test has no VM: the
# component's name stands for the VM's UUID).
id=$("$vmshadow" list --repo "$tmp/repo" --json | python3 -c 'import json,sys
d = json.load(sys.stdin); b = d if isinstance(d, list) else d["backups"]
print([x.get("id") or x.get("backup_id") for x in b if x.get("job") == "apps"][0])')
printf '{"format": "vmshadow-boot-check", "version": 1, "checked": %d, "ok": false, "vms": [{"uuid": "config", "name": "app", "ok": false, "error": "no agent"}]}' \
  "$(date +%s)" > "$tmp/repo/backups/$id/note-boot-check.json"
rm -f "$conf/jobs.d/nokeep.conf"
"$vmshadow" status --config "$conf" --json --prometheus "$tmp/prom" > "$tmp/status.json" || true
python3 - "$tmp/status.json" "$id" <<'PY' || fail "status: $(cat "$tmp/status.json")"
import json, sys
[c] = [c for c in json.load(open(sys.argv[1]))["components"] if c["job"] == "apps"]
assert c["last_verify"]["ok"] is True and c["last_verify"]["deep"] is False, c
b = c["last_boot_check"]
assert b["ok"] is False and b["backup_id"] == sys.argv[2] and b["time"] > 0, c
PY
grep -q '^vmshadow_last_boot_check_ok{job="apps",writer="app",component="config",.*} 0$' "$tmp/prom" &&
  grep -q '^vmshadow_last_verify_ok{job="apps",.*} 1$' "$tmp/prom" || fail "prometheus: $(cat "$tmp/prom")"
# An append-only repository (issue 14, R29): its backups are pruned by
# its admin (prune --admin), never by a job (which has no --admin). A job
# with keep-* rules backs up, says its prune was skipped by that policy
# and why, and succeeds; job prune (the prune@ timer) does the same; the
# backups are all kept; the admin's prune still prunes.
"$vmshadow" --repo "$tmp/ao" init --append-only > /dev/null || fail "init --append-only"
aoconf=$tmp/etc-ao
mkdir -p "$aoconf"
printf '[repository ao]\npath = %s\n[job apps]\nrepository = ao\nkeep-last = 1\n' "$tmp/ao" > "$aoconf/vmshadow.conf"
for round in 1 2; do
  [ $round = 1 ] || sleep 1
  rc=0; "$vmshadow" job run apps --json --config "$aoconf" > "$tmp/out.json" 2> "$tmp/err" || rc=$?
  [ $rc = 0 ] || fail "append-only round $round: job run exited $rc: $(cat "$tmp/out.json" "$tmp/err")"
  python3 - "$tmp/out.json" <<'PY' || fail "append-only round $round: $(cat "$tmp/out.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["outcome"] == "success" and d["exit_code"] == 0 and d["error"] is None, d
p = d["prune"]
assert p["exit_code"] is None and "is append-only" in p["skipped"] and "prune --admin" in p["skipped"], p
PY
  [ ! -s "$tmp/err" ] || fail "append-only round $round said on stderr: $(cat "$tmp/err")"
done
out=$("$vmshadow" job run apps --config "$aoconf" 2>&1) || fail "append-only text run exited $?: $out"
grep -q "^Job apps: prune skipped: repository .* is append-only" <<<"$out" || fail "append-only text run: $out"
out=$("$vmshadow" job prune apps --config "$aoconf" 2>&1) || fail "job prune of an append-only repository exited $?: $out"
grep -q "^Job apps: prune skipped: repository .* is append-only" <<<"$out" || fail "job prune: $out"
n=$("$vmshadow" list --repo "$tmp/ao" --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["backups"]))')
[ "$n" = 3 ] || fail "the append-only repository holds $n backups, not the 3 the jobs made"
"$vmshadow" --repo "$tmp/ao" prune --keep-last 1 --admin > /dev/null || fail "prune --admin"
n=$("$vmshadow" list --repo "$tmp/ao" --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["backups"]))')
[ "$n" = 1 ] || fail "prune --admin left $n backups"
echo "ok - an append-only repository's job prune is skipped by policy, the run succeeds, the admin prunes"

echo "PASS: job run --json prints the job's result, one document; job verify and prune"
