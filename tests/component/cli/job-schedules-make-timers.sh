#!/bin/bash
# Issue 19: a job's schedule, verify-schedule and prune-schedule become its
# timers. `vmshadow job timers DIR UNITDIR` (what the shipped systemd
# generator runs into systemd's generator directory at daemon-reload)
# writes, per schedule, a drop-in setting OnCalendar= to the job's value
# and a timers.target.wants link enabling the timer; a job without
# schedules gets none; a configuration with errors none at all. The
# generated drop-ins are read by `systemd-analyze verify` together with the
# built units (SYSTEMD_UNIT_PATH): they pass, and a schedule systemd cannot
# parse fails it (so the drop-in is really what the timer gets). No
# systemd runs as PID 1 here: that the timers fire is not tested.
# Usage: job-schedules-make-timers.sh VMSHADOW UNITS-DIR (the built systemd/)
source "$(dirname "$0")/cli-lib.sh"
units=$(realpath "$2")
unset VMSHADOW_REPO
conf=$tmp/etc
mkdir -p "$conf/jobs.d"
cat > "$conf/vmshadow.conf" <<EOF2
[repository main]
path = $tmp/repo
[defaults]
repository = main
verify-schedule = Sun 05:00
EOF2
cat > "$conf/jobs.d/jobs.conf" <<EOF2
[job nightly]
vms = tag:nightly
keep-daily = 7
schedule = *-*-* 01:30
prune-schedule = Mon..Fri 12:00 Europe/Berlin
verify-deep = yes
[job by-hand]
vms = db1
verify-schedule = no
EOF2
"$vmshadow" config check --config "$conf" > /dev/null || fail "config check: $("$vmshadow" config check --config "$conf" 2>&1)"

# Listed: exactly the schedules the jobs have ([defaults] reaches nightly,
# by-hand turns it off).
"$vmshadow" job timers --json --config "$conf" > "$tmp/timers.json"
python3 - "$tmp/timers.json" <<'PY' || fail "job timers --json: $(cat "$tmp/timers.json")"
import json, sys
d = json.load(open(sys.argv[1]))
got = sorted((t["job"], t["timer"], t["on_calendar"]) for t in d["timers"])
assert got == [("nightly", "vmshadow-backup@nightly.timer", "*-*-* 01:30"),
               ("nightly", "vmshadow-prune@nightly.timer", "Mon..Fri 12:00 Europe/Berlin"),
               ("nightly", "vmshadow-verify@nightly.timer", "Sun 05:00")], got
assert d["exit_code"] == 0, d
PY

gen=$tmp/gen
mkdir "$gen"
"$vmshadow" job timers "$gen" "$units" --config "$conf" || fail "job timers DIR exited $?"
for t in backup verify prune; do
  f=$gen/vmshadow-$t@nightly.timer.d/50-vmshadow-schedule.conf
  [ -f "$f" ] || fail "no drop-in for $t: $(find "$gen")"
  [ "$(readlink "$gen/timers.target.wants/vmshadow-$t@nightly.timer")" = "$units/vmshadow-$t@.timer" ] \
    || fail "vmshadow-$t@nightly.timer is not enabled: $(ls -l "$gen/timers.target.wants")"
  [ "$(grep -c '^OnCalendar=' "$f")" = 2 ] && grep -qx 'OnCalendar=' "$f" || fail "$f does not reset OnCalendar: $(cat "$f")"
done
grep -qx 'OnCalendar=\*-\*-\* 01:30' "$gen/vmshadow-backup@nightly.timer.d/50-vmshadow-schedule.conf" || fail "backup schedule"
grep -qx 'OnCalendar=Sun 05:00' "$gen/vmshadow-verify@nightly.timer.d/50-vmshadow-schedule.conf" || fail "verify schedule"
grep -qx 'OnCalendar=Mon..Fri 12:00 Europe/Berlin' "$gen/vmshadow-prune@nightly.timer.d/50-vmshadow-schedule.conf" || fail "prune schedule"
[ -z "$(find "$gen" -name '*by-hand*')" ] || fail "by-hand got a timer: $(find "$gen")"

# The shipped generator runs exactly that into systemd's normal directory
# ($1 of three), reading the configuration of /etc/vmshadow (here
# $VMSHADOW_CONFIG_DIR) and linking to the installed templates.
sed "s|^exec [^ ]*/vmshadow |exec $vmshadow |" "$units/vmshadow-generator" > "$tmp/generator"
chmod 755 "$tmp/generator"
grep -q "^exec $vmshadow --quiet job timers \"\$1\" /" "$tmp/generator" || fail "the generator: $(cat "$tmp/generator")"
mkdir "$tmp/normal" "$tmp/early" "$tmp/late"
VMSHADOW_CONFIG_DIR=$conf "$tmp/generator" "$tmp/normal" "$tmp/early" "$tmp/late" || fail "the generator exited $?"
diff -r --no-dereference -x timers.target.wants "$gen" "$tmp/normal" || fail "the generator wrote other drop-ins"
[ "$(ls "$tmp/normal/timers.target.wants")" = "$(ls "$gen/timers.target.wants")" ] || fail "the generator enabled other timers"
[ -z "$(find "$tmp/early" "$tmp/late" -mindepth 1)" ] || fail "the generator wrote into early or late"
# A host with the package and no configuration: no timer, no complaint.
mkdir "$tmp/none" "$tmp/normal2"
rc=0; VMSHADOW_CONFIG_DIR=$tmp/none "$tmp/generator" "$tmp/normal2" "$tmp/early" "$tmp/late" > "$tmp/out" 2>&1 || rc=$?
[ $rc = 0 ] && [ ! -s "$tmp/out" ] && [ -z "$(ls -A "$tmp/normal2")" ] || fail "the generator without a configuration: $rc $(cat "$tmp/out")"
rc=0; VMSHADOW_CONFIG_DIR=$tmp/nonexistent "$tmp/generator" "$tmp/normal2" "$tmp/early" "$tmp/late" > "$tmp/out" 2>&1 || rc=$?
[ $rc = 0 ] && [ ! -s "$tmp/out" ] || fail "the generator without /etc/vmshadow: $rc $(cat "$tmp/out")"

# The generated drop-ins with the built units, as systemd would load them.
if command -v systemd-analyze > /dev/null; then
  mkdir "$tmp/units"
  for f in "$units"/vmshadow-*@.service "$units"/vmshadow-*@.timer; do
    sed "s|^ExecStart=[^ ]*/vmshadow |ExecStart=$vmshadow |" "$f" > "$tmp/units/$(basename "$f")"
  done
  verify () {   # GEN-DIR UNIT...: systemd-analyze verify's own output
    local dir=$1; shift
    (cd "$tmp" && SYSTEMD_UNIT_PATH=$dir:$tmp/units: SYSTEMD_LOG_LEVEL=notice \
       systemd-analyze verify --man=no "$@" 2>&1)
  }
  out=$(verify "$gen" vmshadow-{backup,verify,prune}@nightly.{timer,service}) \
    || fail "systemd-analyze verify failed: $out"
  if grep -i "vmshadow" <<<"$out"; then fail "systemd-analyze verify complained: $out"; fi
  # A schedule systemd cannot parse (our characters, not a calendar): the
  # drop-in is read, and the timer refused.
  sed -i 's/^schedule = .*/schedule = Mon..Fry 01:30/' "$conf/jobs.d/jobs.conf"
  mkdir "$tmp/gen2"
  "$vmshadow" job timers "$tmp/gen2" "$units" --config "$conf" || fail "job timers gen2"
  if out=$(verify "$tmp/gen2" vmshadow-backup@nightly.timer); then
    fail "systemd-analyze verify accepted OnCalendar=Mon..Fry 01:30: $out"
  fi
  grep -q "Mon..Fry" <<<"$out" || fail "the refusal does not name the schedule: $out"
else
  echo "systemd-analyze is missing: the generated units are not verified (install systemd)"
fi

# What must never reach a unit file: a '%' specifier, a quote; the line
# of the bad value is named, and no timer is made from a broken file.
printf '[job odd]\nvms = a\nschedule = daily%%n\n' > "$conf/jobs.d/odd.conf"
rc=0; "$vmshadow" config check --config "$conf" > "$tmp/out" 2>&1 || rc=$?
[ $rc = 2 ] && grep -q "jobs.d/odd.conf:3: schedule must be a systemd calendar expression" "$tmp/out" \
  || fail "a schedule with %: $rc $(cat "$tmp/out")"
mkdir "$tmp/gen3"
rc=0; "$vmshadow" job timers "$tmp/gen3" "$units" --config "$conf" > "$tmp/out" 2>&1 || rc=$?
[ $rc = 2 ] && [ -z "$(ls -A "$tmp/gen3")" ] || fail "timers from a broken configuration: $rc $(ls -A "$tmp/gen3") $(cat "$tmp/out")"
rm "$conf/jobs.d/odd.conf"
# A job name a unit instance cannot hold as it is: no timer, said.
printf '[job caf\xc3\xa9]\nvms = a\nschedule = daily\n' > "$conf/jobs.d/name.conf"
mkdir "$tmp/gen4"
rc=0; "$vmshadow" job timers "$tmp/gen4" "$units" --config "$conf" > "$tmp/out" 2>&1 || rc=$?
[ $rc = 1 ] && grep -q "its name cannot be a systemd unit's instance" "$tmp/out" || fail "odd job name: $rc $(cat "$tmp/out")"
[ -z "$(find "$tmp/gen4" -name '*caf*')" ] || fail "a timer for an odd name: $(find "$tmp/gen4")"
[ -e "$tmp/gen4/vmshadow-backup@nightly.timer.d" ] || fail "the good job lost its timer"
# prune-schedule without keep-* rules prunes nothing: an error.
printf '[job noprune]\nvms = a\nprune-schedule = daily\n' > "$conf/jobs.d/name.conf"
rc=0; "$vmshadow" config check --config "$conf" > "$tmp/out" 2>&1 || rc=$?
[ $rc = 2 ] && grep -q "job 'noprune': prune-schedule without keep-\* rules" "$tmp/out" || fail "prune-schedule without keep: $(cat "$tmp/out")"
echo "PASS: the jobs' schedules make their timers"
