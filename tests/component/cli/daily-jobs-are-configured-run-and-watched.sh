#!/bin/bash
# Issue 19: a configuration with a repository and two jobs is checked
# (good, then broken files: every error with FILE:LINE, exit 2), both jobs
# run through `vmshadow job run` (the job recorded in the manifest, prune
# after), a second run of a job while one holds its lock fails at once, and
# `status --json` / `--prometheus` say the right ages, methods and health
# (ok, then critical when max-age is lowered below the backups' age).
# Exec writers only: no VM is needed.
source "$(dirname "$0")/cli-lib.sh"
app_writer
export VMSHADOW_RUN_DIR=$tmp/run VMSHADOW_STATE_DIR=$tmp/state
unset VMSHADOW_REPO
conf=$tmp/etc
mkdir -p "$conf/jobs.d"
cat > "$conf/vmshadow.conf" <<EOF2
# the host's repositories
[repository main]
path = $tmp/repo

[defaults]
repository = main
max-age = 26h
EOF2
cat > "$conf/jobs.d/10-apps.conf" <<'EOF2'
[job apps]
exec-writers = yes
keep-last = 2
EOF2
cat > "$conf/jobs.d/20-nightly.conf" <<'EOF2'
[job nightly]
; exec writers only here (the lab's VMs are the vm suite's)
exec-writers = yes
method = auto
max-age = 2d
EOF2
# Not a .conf: never read.
echo "this is not ini" > "$conf/jobs.d/README"

out=$("$vmshadow" config check --config "$conf") || fail "config check on a good configuration: $out"
grep -q "is good: 1 repository, 2 jobs" <<<"$out" || fail "config check said: $out"
# The environment variable works as well as --config.
VMSHADOW_CONFIG_DIR=$conf "$vmshadow" config check --json > "$tmp/check.json" \
  || fail "config check --json"
python3 - "$tmp/check.json" <<'PY' || fail "config check --json: $(cat "$tmp/check.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["ok"] is True and d["errors"] == [] and d["exit_code"] == 0, d
assert [j["name"] for j in d["jobs"]] == ["apps", "nightly"], d
assert d["jobs"][0]["repository"] == "main" and d["jobs"][1]["max_age_s"] == 172800, d
PY

# Broken: every problem named with its file and line, exit 2.
bad=$tmp/bad
mkdir -p "$bad/jobs.d"
cat > "$bad/vmshadow.conf" <<EOF2
[repository main]
path = $tmp/repo
colour = blue
[repository main]
path = /elsewhere
EOF2
cat > "$bad/jobs.d/a.conf" <<'EOF2'
[job a]
repository = nowhere
keep-last = many

[job b]
repository = main
each = perhaps
max-age = soon
this line has no equals sign
[job a]
repository = main
[jobs c]
vms = x
[job d]
repository = main
each = yes
[job e]
repository = main
vms = x
each = yes
group = yes
[job f]
repository = main
vms = x
group = maybe
guest-processing = sometimes
EOF2
rc=0; "$vmshadow" config check --config "$bad" 2> "$tmp/err" || rc=$?
[ $rc = 2 ] || fail "config check of a broken configuration exited $rc, not 2"
err=$(cat "$tmp/err")
for want in "$bad/vmshadow.conf:3: unknown key 'colour'" \
            "$bad/vmshadow.conf:4: repository 'main' is already defined at $bad/vmshadow.conf:1" \
            "$bad/jobs.d/a.conf:3: keep-last must be a whole number, not 'many'" \
            "$bad/jobs.d/a.conf:7: each must be yes or no, not 'perhaps'" \
            "$bad/jobs.d/a.conf:8: max-age must be a duration" \
            "$bad/jobs.d/a.conf:9: not '[section]'" \
            "$bad/jobs.d/a.conf:10: job 'a' is already defined at $bad/jobs.d/a.conf:1" \
            "$bad/jobs.d/a.conf:12: unknown section [jobs c]" \
            "$bad/jobs.d/a.conf:14: job 'd': each = yes needs vms" \
            "$bad/jobs.d/a.conf:17: job 'e': group = yes and each = yes exclude each other" \
            "$bad/jobs.d/a.conf:25: group must be yes or no, not 'maybe'" \
            "$bad/jobs.d/a.conf:26: guest-processing must be required, tried or off, not 'sometimes'" \
            "$bad/jobs.d/a.conf:1: job 'a': repository 'nowhere' is not defined"; do
  grep -qF -- "$want" <<<"$err" || fail "config check did not say '$want': $err"
done
rc=0; "$vmshadow" config check --json --config "$bad" > "$tmp/bad.json" || rc=$?
[ $rc = 2 ] || fail "config check --json of a broken configuration exited $rc"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert not d["ok"] and len(d["errors"]) >= 10 and d["exit_code"] == 2, d' \
  "$tmp/bad.json" || fail "config check --json: $(cat "$tmp/bad.json")"
# A broken configuration runs no job, and nothing is made.
rc=0; "$vmshadow" job run a --config "$bad" 2>/dev/null || rc=$?
[ $rc = 2 ] || fail "job run on a broken configuration exited $rc"
[ ! -e "$tmp/repo" ] || fail "job run on a broken configuration made the repository"
# No such job.
rc=0; "$vmshadow" job run nosuch --config "$conf" 2>/dev/null || rc=$?
[ $rc = 2 ] || fail "job run of an unknown job exited $rc"
# Before any run: never backed up, critical.
rc=0; "$vmshadow" status --json --config "$conf" > "$tmp/s0.json" || rc=$?
[ $rc = 2 ] || fail "status before any backup exited $rc, not 2 (never)"
grep -q '"health":"never"' <(python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1])), separators=(",", ":")))' "$tmp/s0.json") \
  || fail "status before any backup: $(cat "$tmp/s0.json")"

# Both jobs run; apps runs three times and keeps its last 2.
for j in apps apps nightly apps; do
  "$vmshadow" job run "$j" --config "$conf" > "$tmp/run.out" 2>&1 \
    || fail "job run $j: $(cat "$tmp/run.out")"
  sleep 1
done
grep -q "Removed 1 backup" "$tmp/run.out" || fail "apps did not prune: $(cat "$tmp/run.out")"
"$vmshadow" list --json --repo "$tmp/repo" > "$tmp/list.json"
# apps kept its last 2, and nightly's backup (older than both, not apps')
# was left alone; list says which job made each.
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert [b["job"] for b in d["backups"]] == ["apps", "nightly", "apps"], d' \
  "$tmp/list.json" || fail "after prune: $(cat "$tmp/list.json")"
# list --json says what each backup holds: the app's component, full.
python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))
for b in d["backups"]:
    assert {(c["writer"], c["component"], c["type"]) for c in b["components"]} >= {("app", "config", "full")}, b' \
  "$tmp/list.json" || fail "list --json components: $(cat "$tmp/list.json")"
"$vmshadow" list --repo "$tmp/repo" > "$tmp/list.txt"
[ "$(awk 'NR > 1 {print $NF}' "$tmp/list.txt" | tr '\n' ' ')" = "apps nightly apps " ] \
  || fail "list does not show the jobs: $(cat "$tmp/list.txt")"
awk 'NR > 1 {print $(NF-2)}' "$tmp/list.txt" | grep -qv '\(^\|,\)config/full\(,\|$\)' \
  && fail "list's HOLDS column does not show the app's component in every backup: $(cat "$tmp/list.txt")"
# A backup by hand belongs to no job.
"$vmshadow" backup --repo "$tmp/repo" > /dev/null || fail "backup by hand"
[ "$("$vmshadow" list --repo "$tmp/repo" | tail -1 | awk '{print $NF}')" = "-" ] \
  || fail "list gave a backup by hand a job: $("$vmshadow" list --repo "$tmp/repo")"
"$vmshadow" list --json --repo "$tmp/repo" > "$tmp/list.json"

# Two runs of one job never overlap: while the lock is held, a run fails
# at once, saying so, and stores nothing.
exec 9> "$VMSHADOW_RUN_DIR/job-nightly.lock"
flock -n 9 || fail "could not take the job lock in the test"
rc=0; timeout 30 "$vmshadow" job run nightly --config "$conf" 2> "$tmp/err" || rc=$?
[ $rc = 1 ] || fail "a second run of a job exited $rc, not 1"
grep -q "job 'nightly' is already running" "$tmp/err" || fail "second run said: $(cat "$tmp/err")"
exec 9>&-
"$vmshadow" list --json --repo "$tmp/repo" > "$tmp/list2.json"
cmp -s "$tmp/list.json" "$tmp/list2.json" || fail "a refused run changed the repository"

# Status: per job its component, ok, ages from the backups' times.
rc=0; "$vmshadow" status --json --config "$conf" --prometheus "$tmp/vmshadow.prom" \
  > "$tmp/s1.json" || rc=$?
[ $rc = 0 ] || fail "status after the runs exited $rc: $(cat "$tmp/s1.json")"
python3 - "$tmp/s1.json" "$tmp/list.json" "$tmp/repo" <<'PY' || fail "status --json: $(cat "$tmp/s1.json")"
import json, sys, time
d = json.load(open(sys.argv[1]))
backups = json.load(open(sys.argv[2]))["backups"]
assert d["health"] == "ok" and d["exit_code"] == 0, d
by_job = {c["job"]: c for c in d["components"]}
assert set(by_job) == {"apps", "nightly"}, d
for job, c in by_job.items():
    assert c["writer"] == "app" and c["component"] == "config", c
    assert c["health"] == "ok" and c["repository"] == "main", c
    assert c["type"] == "full" and c["size"] == len("setting = 1\n"), c
    # The method the writer recorded: exec writers record none (VMs do).
    assert "method" in c and c["method"] is None, c
    b = [x for x in backups if x["backup_id"] == c["last_backup_id"]]
    assert b and b[0]["time"] == c["time"], (c, backups)
    assert 0 <= c["age_s"] <= time.time() - c["time"] + 1, c
# apps ran last: its backup is the newest; nightly's is older.
assert by_job["apps"]["time"] > by_job["nightly"]["time"], d
assert by_job["apps"]["max_age_s"] == 26 * 3600 and by_job["nightly"]["max_age_s"] == 172800, d
PY
prom=$tmp/vmshadow.prom
grep -q '^vmshadow_status{job="apps",writer="app",component="config",caption="[^"]*"} 0$' "$prom" \
  || fail "prometheus file: $(cat "$prom")"
grep -q '^vmshadow_last_backup_age_seconds{job="nightly",.*} [0-9]\+$' "$prom" || fail "no age in $(cat "$prom")"
grep -q '^vmshadow_max_age_seconds{job="nightly",.*} 172800$' "$prom" || fail "no max-age in $(cat "$prom")"
ls "$tmp" | grep -q 'vmshadow.prom.tmp' && fail "a temporary file was left beside the textfile"

# Lower nightly's max-age below its backup's age: critical, exit 2; 80 %
# of max-age (warning) is shown with a max-age just above the age.
sleep 2
sed -i 's/^max-age = 2d$/max-age = 1s/' "$conf/jobs.d/20-nightly.conf"
rc=0; "$vmshadow" status --json --config "$conf" --prometheus "$prom" > "$tmp/s2.json" || rc=$?
[ $rc = 2 ] || fail "status with a too old backup exited $rc, not 2"
python3 - "$tmp/s2.json" <<'PY' || fail "status --json: $(cat "$tmp/s2.json")"
import json, sys
d = json.load(open(sys.argv[1]))
by_job = {c["job"]: c for c in d["components"]}
assert by_job["nightly"]["health"] == "critical" and by_job["apps"]["health"] == "ok", d
assert d["health"] == "critical" and d["exit_code"] == 2, d
PY
grep -q '^vmshadow_status{job="nightly",.*} 2$' "$prom" || fail "prometheus after: $(cat "$prom")"
# Warning: older than 80 % of max-age, not older than it. With the backup
# at least 13 s old and max-age 3 s above its age, status (if it starts
# within those 3 s) sees age * 5 > max-age * 4.
t=$(python3 -c 'import json,sys; print([c["time"] for c in json.load(open(sys.argv[1]))["components"] if c["job"]=="nightly"][0])' "$tmp/s2.json")
age=$(( $(date +%s) - t ))
[ $age -ge 13 ] || sleep $(( 13 - age ))
age=$(( $(date +%s) - t ))
sed -i "s/^max-age = 1s$/max-age = $((age + 3))s/" "$conf/jobs.d/20-nightly.conf"
rc=0; "$vmshadow" status --config "$conf" > "$tmp/s3.txt" || rc=$?
[ $rc = 1 ] || fail "status with a backup past 80 % of max-age exited $rc, not 1: $(cat "$tmp/s3.txt")"
grep -q "^nightly .* warning " "$tmp/s3.txt" || fail "status text: $(cat "$tmp/s3.txt")"
grep -q "^apps .* ok " "$tmp/s3.txt" || fail "status text: $(cat "$tmp/s3.txt")"
echo "PASS"
