#!/bin/bash
# Issue 19: the shipped units (vmshadow-backup@, vmshadow-verify@ and
# vmshadow-prune@ .service and .timer, as meson configured them) pass
# `systemd-analyze verify` for an instance (a job name), the services run
# `vmshadow job run|verify|prune JOB` and each timer starts its service. systemd-analyze verify reads the files offline: it
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
declare -A sub=([backup]=run [verify]=verify [prune]=prune)
declare -A cal=([backup]=daily [verify]=weekly [prune]=daily)
all=()
for k in backup verify prune; do
  for u in service timer; do
    sed "s|^ExecStart=[^ ]*/vmshadow |ExecStart=$vmshadow |" \
      "$units/vmshadow-$k@.$u" > "$tmp/vmshadow-$k@nightly.$u"
    all+=("$tmp/vmshadow-$k@nightly.$u")
  done
  grep -qx "ExecStart=$vmshadow job ${sub[$k]} %i" "$tmp/vmshadow-$k@nightly.service" \
    || fail "vmshadow-$k@ does not run 'vmshadow job ${sub[$k]} %i': $(grep ExecStart "$units/vmshadow-$k@.service")"
  grep -qx "ExecStart=/.*/vmshadow job ${sub[$k]} %i" "$units/vmshadow-$k@.service" \
    || fail "the installed vmshadow-$k@.service's ExecStart is not an absolute path"
  grep -qx "OnCalendar=${cal[$k]}" "$tmp/vmshadow-$k@nightly.timer" || fail "vmshadow-$k@.timer: no ${cal[$k]} OnCalendar"
  for h in PrivateTmp=yes ProtectSystem=full ProtectHome=yes NoNewPrivileges=yes Type=oneshot; do
    grep -qx "$h" "$tmp/vmshadow-$k@nightly.service" || fail "vmshadow-$k@.service lacks $h"
  done
done
# Its own output, checked: any complaint about our files fails (messages
# about the machine's other units, when it has a systemd of its own
# running, are not ours).
out=$(cd "$tmp" && SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --man=no \
        "${all[@]}" 2>&1) \
  || fail "systemd-analyze verify failed: $out"
if grep -i "vmshadow-" <<<"$out"; then
  fail "systemd-analyze verify complained: $out"
fi
# A unit that is wrong fails the same check: the check can fail.
sed 's/^Type=oneshot/Type=oneshotx/' "$tmp/vmshadow-backup@nightly.service" > "$tmp/bad@x.service"
if out=$(systemd-analyze verify --man=no "$tmp/bad@x.service" 2>&1) && ! grep -q "oneshotx" <<<"$out"; then
  fail "systemd-analyze verify accepted a bad unit: $out"
fi
echo "PASS: vmshadow-backup@, -verify@ and -prune@ .service and .timer verified for instance nightly"
