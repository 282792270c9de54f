#!/bin/bash
# Issue 19: the shipped units (vmshadow-backup@.service and .timer, as
# meson configured them) pass `systemd-analyze verify` for an instance
# (a job name), the service runs `vmshadow job run JOB` and the timer
# starts that service. systemd-analyze verify reads the files offline: it
# needs no systemd running as PID 1 (the lab machine runs none). The
# ExecStart path is pointed at the built vmshadow (the installed one may
# not exist here); nothing else of the files is changed.
set -euo pipefail
vmshadow=$(realpath "$1") units=$2
fail () { echo "FAIL: $*"; exit 1; }
if ! command -v systemd-analyze > /dev/null; then
  echo "SKIP: no systemd-analyze on this machine (install systemd)"; exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for u in service timer; do
  sed "s|^ExecStart=[^ ]*/vmshadow |ExecStart=$vmshadow |" \
    "$units/vmshadow-backup@.$u" > "$tmp/vmshadow-backup@nightly.$u"
done
grep -qx "ExecStart=$vmshadow job run %i" "$tmp/vmshadow-backup@nightly.service" \
  || fail "the service does not run 'vmshadow job run %i': $(grep ExecStart "$units/vmshadow-backup@.service")"
grep -qx "ExecStart=/.*/vmshadow job run %i" "$units/vmshadow-backup@.service" \
  || fail "the installed service's ExecStart is not an absolute path"
grep -qx "OnCalendar=daily" "$tmp/vmshadow-backup@nightly.timer" || fail "no daily OnCalendar"
for h in PrivateTmp=yes ProtectSystem=full ProtectHome=yes NoNewPrivileges=yes; do
  grep -qx "$h" "$tmp/vmshadow-backup@nightly.service" || fail "the service lacks $h"
done
# Its own output, checked: any complaint about our files fails (messages
# about the machine's other units, when it has a systemd of its own
# running, are not ours).
out=$(cd "$tmp" && SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --man=no \
        "$tmp/vmshadow-backup@nightly.service" "$tmp/vmshadow-backup@nightly.timer" 2>&1) \
  || fail "systemd-analyze verify failed: $out"
if grep -i "vmshadow-backup" <<<"$out"; then
  fail "systemd-analyze verify complained: $out"
fi
# A unit that is wrong fails the same check: the check can fail.
sed 's/^Type=oneshot/Type=oneshotx/' "$tmp/vmshadow-backup@nightly.service" > "$tmp/bad@x.service"
if out=$(systemd-analyze verify --man=no "$tmp/bad@x.service" 2>&1) && ! grep -q "oneshotx" <<<"$out"; then
  fail "systemd-analyze verify accepted a bad unit: $out"
fi
echo "PASS: vmshadow-backup@.service and .timer verified for instance nightly"
