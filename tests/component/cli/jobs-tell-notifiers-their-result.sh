#!/bin/bash
# Issue 19: after every `vmshadow job run` (a success, a backup that fails,
# a run refused because the job is running) each executable of notify.d gets
# the job's result as JSON on stdin, with VMSHADOW_JOB / _OUTCOME /
# _EXIT_CODE; a notifier that fails or outlives the [notify] timeout is
# named in a warning (and killed) and never changes the job's exit status;
# files that are not executable, hidden or backups are skipped, and one
# anyone may write to is refused. The shipped example mails the result
# through sendmail (a test double here) and does nothing without one.
# Usage: jobs-tell-notifiers-their-result.sh VMSHADOW EXAMPLE-MAIL SENDMAIL-DOUBLE
source "$(dirname "$0")/cli-lib.sh"
example=$(realpath "$2") sendmail_double=$(realpath "$3")
app_writer
# A second writer that vetoes the backup (at prepare-backup) while
# $tmp/veto exists: the job's failure.
cat > "$VMSHADOW_WRITERS_DIR/veto" <<W
#!/bin/sh
case "\$1" in
identify) cat <<JSON
{"format": "vmshadow-writer-metadata", "version": 1,
 "writer": {"name": "veto", "id": "5b0e2d7c-1f3a-4e6b-9c8d-0a1b2c3d4e5f"}, "components": []}
JSON
;;
prepare-backup) [ ! -e "$tmp/veto" ] || { echo "not tonight" >&2; exit 1; } ;;
esac
exit 0
W
chmod 755 "$VMSHADOW_WRITERS_DIR/veto"
export VMSHADOW_RUN_DIR=$tmp/run
unset VMSHADOW_REPO
conf=$tmp/etc notes=$tmp/notes
mkdir -p "$conf/notify.d" "$notes"
cat > "$conf/vmshadow.conf" <<EOF2
[repository main]
path = $tmp/repo
[notify]
timeout = 2s
[job nightly]
repository = main
EOF2
# The notifiers: one records what it got, one fails, one hangs.
cat > "$conf/notify.d/10-record" <<EOF2
#!/bin/sh
n=\$(ls "$notes" | grep -c "json\$")
cat > "$notes/\$n.json"
echo "\$VMSHADOW_JOB \$VMSHADOW_OUTCOME \$VMSHADOW_EXIT_CODE" > "$notes/\$n.env"
EOF2
printf '#!/bin/sh\necho "mail server down" >&2\nexit 5\n' > "$conf/notify.d/20-fails"
printf '#!/bin/sh\nsleep 60\n' > "$conf/notify.d/30-hangs"
# Never run: not executable, hidden, an editor's backup, writable by anyone.
for f in 40-not-executable .50-hidden 60-backup~ 70-anyone-writes; do
  printf '#!/bin/sh\ntouch "%s/ran-%s"\n' "$tmp" "$f" > "$conf/notify.d/$f"
done
chmod 755 "$conf/notify.d/"{10-record,20-fails,30-hangs,.50-hidden,60-backup~}
chmod 757 "$conf/notify.d/70-anyone-writes"
chmod 644 "$conf/notify.d/40-not-executable"

"$vmshadow" config check --config "$conf" >/dev/null || fail "config check: $("$vmshadow" config check --config "$conf" 2>&1)"

# A bad [notify] is named with its line, like any other key.
mkdir -p "$tmp/bad"
printf '[notify]\ntimeout = forever\ndir = relative\ncolour = red\n' > "$tmp/bad/vmshadow.conf"
rc=0; "$vmshadow" config check --config "$tmp/bad" 2> "$tmp/err" || rc=$?
[ $rc = 2 ] || fail "config check of a bad [notify] exited $rc"
for want in "vmshadow.conf:2: timeout must be a duration" "vmshadow.conf:3: dir must be absolute" \
            "vmshadow.conf:4: unknown key 'colour'"; do
  grep -qF "$want" "$tmp/err" || fail "config check did not say '$want': $(cat "$tmp/err")"
done

check () {   # N EXIT OUTCOME PYTHON-ASSERTIONS (d: the result)
  [ -e "$notes/$1.json" ] || fail "notification $1 was not received ($(ls "$notes"))"
  [ "$(cat "$notes/$1.env")" = "nightly $3 $2" ] \
    || fail "notification $1's environment: $(cat "$notes/$1.env")"
  python3 - "$notes/$1.json" "$2" "$3" <<PY || fail "notification $1: $(cat "$notes/$1.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["format"] == "vmshadow-job-result" and d["version"] == 1, d
assert d["job"] == "nightly" and d["repository"] == "main", d
assert d["exit_code"] == int(sys.argv[2]) and d["outcome"] == sys.argv[3], d
assert d["started"] <= d["finished"], d
$4
PY
}

# 1. Success.
start=$(date +%s)
rc=0; "$vmshadow" job run nightly --config "$conf" > "$tmp/out" 2> "$tmp/err" || rc=$?
took=$(( $(date +%s) - start ))
[ $rc = 0 ] || fail "a good job with failing notifiers exited $rc: $(cat "$tmp/err")"
[ "$took" -lt 20 ] || fail "the hanging notifier was not stopped at the timeout ($took s)"
bid=$("$vmshadow" list --json --repo "$tmp/repo" | python3 -c 'import json,sys; print(json.load(sys.stdin)["backups"][-1]["backup_id"])')
check 0 0 success "
assert d['error'] is None and d['prune'] is None, d
assert d['backup']['outcome'] == 'success' and d['backup']['backup_id'] == '$bid', d"
err=$(cat "$tmp/err")
grep -q "notifier $conf/notify.d/20-fails exited with status 5: mail server down" <<<"$err" \
  || fail "the failing notifier was not named: $err"
grep -q "notifier $conf/notify.d/30-hangs timed out" <<<"$err" \
  || fail "the hanging notifier was not named: $err"
grep -q "70-anyone-writes not run: anyone may write to it" <<<"$err" \
  || fail "the notifier anyone may write was not refused: $err"
ls "$tmp"/ran-* 2>/dev/null && fail "a notifier that should be skipped ran"

# 2. The backup fails (a writer vetoes): exit 1, and the notifiers hear it.
touch "$tmp/veto"
rc=0; "$vmshadow" job run nightly --config "$conf" > "$tmp/out" 2> "$tmp/err" || rc=$?
[ $rc = 1 ] || fail "a vetoed job exited $rc, not 1: $(cat "$tmp/err")"
check 1 1 failure "
assert d['backup']['outcome'] == 'failure', d
assert 'not tonight' in json.dumps(d['backup']), d"
rm "$tmp/veto"

# 3. A run refused because the job is running is a failure too.
exec 9> "$VMSHADOW_RUN_DIR/job-nightly.lock"
flock -n 9 || fail "could not take the job lock in the test"
rc=0; "$vmshadow" job run nightly --config "$conf" > /dev/null 2>&1 || rc=$?
exec 9>&-
[ $rc = 1 ] || fail "a second run exited $rc"
check 2 1 failure "
assert d['backup'] is None and 'already running' in d['error'], d"

# 4. A notifier is told, never asked: with only failing ones the job's
# result stays the backup's.
rm "$conf/notify.d/10-record"
rc=0; "$vmshadow" job run nightly --config "$conf" > /dev/null 2>&1 || rc=$?
[ $rc = 0 ] || fail "failing notifiers changed the exit status to $rc"

# 5. The shipped example mails the result through sendmail: a test double
# on the PATH records the message.
rm "$conf/notify.d/"*
sed -i 's/^timeout = 2s/timeout = 30s/' "$conf/vmshadow.conf"
ln -s "$example" "$conf/notify.d/mail"
mkdir -p "$tmp/bin"
ln -s "$sendmail_double" "$tmp/bin/sendmail"
export SENDMAIL_DOUBLE_OUT=$tmp/mail
# By default only problems are mailed.
PATH=$tmp/bin:$PATH "$vmshadow" job run nightly --config "$conf" > /dev/null 2>&1 \
  || fail "job run with the mail example"
[ ! -e "$tmp/mail" ] || fail "the example mailed a success by default"
touch "$tmp/veto"
rc=0; PATH=$tmp/bin:$PATH VMSHADOW_MAIL_TO=backup-admin@example.org \
  "$vmshadow" job run nightly --config "$conf" > /dev/null 2> "$tmp/err" || rc=$?
rm "$tmp/veto"
[ $rc = 1 ] || fail "the vetoed run exited $rc"
[ -e "$tmp/mail" ] || fail "the example sent no mail for a failure: $(cat "$tmp/err")"
grep -qx -- "-t -oi" "$tmp/mail.args" || fail "sendmail was called with $(cat "$tmp/mail.args")"
grep -qx "To: backup-admin@example.org" "$tmp/mail" || fail "mail: $(cat "$tmp/mail")"
grep -q "^Subject: vmshadow job nightly on .*: failure (exit 1)$" "$tmp/mail" || fail "mail: $(cat "$tmp/mail")"
sed '1,/^The result (JSON):$/d' "$tmp/mail" | python3 -c '
import json, sys
d = json.loads(sys.stdin.read())
assert d["job"] == "nightly" and d["exit_code"] == 1, d' || fail "the mail does not hold the result: $(cat "$tmp/mail")"
# Always, when asked.
rm "$tmp/mail"
PATH=$tmp/bin:$PATH VMSHADOW_MAIL_ON=always "$vmshadow" job run nightly \
  --config "$conf" > /dev/null 2>&1 || fail "job run"
grep -q "^Subject: vmshadow job nightly on .*: success (exit 0)$" "$tmp/mail" \
  || fail "VMSHADOW_MAIL_ON=always mailed no success"
# No sendmail on the host: nothing is sent, the job is not affected.
rm "$tmp/mail"
if ! command -v sendmail >/dev/null && [ ! -x /usr/sbin/sendmail ] && [ ! -x /usr/lib/sendmail ]; then
  touch "$tmp/veto"
  rc=0; "$vmshadow" job run nightly --config "$conf" > /dev/null 2> "$tmp/err" || rc=$?
  rm "$tmp/veto"
  [ $rc = 1 ] || fail "exit $rc without sendmail"
  [ ! -e "$tmp/mail" ] || fail "a mail without sendmail?"
fi
echo "notifiers got success and failure results; failures and time-outs were named and changed nothing"
