#!/bin/bash
# Issue 19: a job's vms globs and exclude are matched against the VMs the
# libvirt host lists (here libvirt's own test driver, test:///default, whose
# one VM is "test"): a glob that matches nothing is a warning and the exec
# writers are still backed up; a job that selects no VM and has no exec
# writers fails, backs up nothing and says so to its notifiers; a host
# that cannot be listed fails the job the same way. config check --json
# shows exclude.
source "$(dirname "$0")/cli-lib.sh"
app_writer
export VMSHADOW_RUN_DIR=$tmp/run
unset VMSHADOW_REPO
conf=$tmp/etc
mkdir -p "$conf/notify.d"
cat > "$conf/vmshadow.conf" <<EOF2
[repository main]
path = $tmp/repo
[job apps-and-nomatch]
repository = main
vms = nomatch-*
[job all-but-test]
repository = main
vms = all
exclude = te?t
exec-writers = no
EOF2
printf '#!/bin/sh\ncat > "%s/note-$VMSHADOW_JOB.json"\n' "$tmp" > "$conf/notify.d/record"
chmod 755 "$conf/notify.d/record"
"$vmshadow" config check --json --config "$conf" > "$tmp/check.json" || fail "config check: $(cat "$tmp/check.json")"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); j={x["name"]: x for x in d["jobs"]}
assert j["all-but-test"]["exclude"] == ["te?t"] and j["all-but-test"]["all_vms"], d
assert j["apps-and-nomatch"]["vms"] == ["nomatch-*"], d' "$tmp/check.json" || fail "config check --json: $(cat "$tmp/check.json")"

# A glob that matches none of the host's VMs: said; the exec writers are
# backed up all the same.
rc=0; "$vmshadow" job run apps-and-nomatch -c test:///default --config "$conf" > "$tmp/out" 2> "$tmp/err" || rc=$?
[ $rc = 0 ] || fail "job apps-and-nomatch exited $rc: $(cat "$tmp/err")"
grep -q "job 'apps-and-nomatch': no VM of the host matches 'nomatch-\*'" "$tmp/err" || fail "no warning: $(cat "$tmp/err")"
[ "$(ls "$tmp/repo/backups" | wc -l)" = 1 ] || fail "the exec writers were not backed up"

# All but the host's only VM, and no exec writers: nothing to back up.
rc=0; "$vmshadow" job run all-but-test -c test:///default --config "$conf" > "$tmp/out" 2> "$tmp/err" || rc=$?
[ $rc = 1 ] || fail "job all-but-test exited $rc: $(cat "$tmp/err")"
grep -q "no VM of the host is selected" "$tmp/err" || fail "job all-but-test said: $(cat "$tmp/err")"
[ "$(ls "$tmp/repo/backups" | wc -l)" = 1 ] || fail "job all-but-test stored something"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["exit_code"] == 1 and "no VM" in d["error"], d' \
  "$tmp/note-all-but-test.json" || fail "notification: $(cat "$tmp/note-all-but-test.json")"

# A host that cannot be listed: the job fails naming it, nothing stored.
rc=0; "$vmshadow" job run all-but-test -c test:///nonexistent/path.xml --config "$conf" > "$tmp/out" 2> "$tmp/err" || rc=$?
[ $rc = 1 ] || fail "job on an unreachable host exited $rc"
grep -q "cannot connect to libvirt" "$tmp/err" || fail "unreachable host: $(cat "$tmp/err")"
echo "globs and exclude are matched against the host's VMs"
