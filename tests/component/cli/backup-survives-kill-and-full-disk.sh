#!/usr/bin/env bash
# Faults during a backup (issue 4): the process killed with SIGKILL at
# several points leaves no visible partial backup, earlier backups still
# verify, and the next backup works (the lock dies with its holder); a
# full repository filesystem fails with a clear message and leaves an
# intact repository.
set -euo pipefail
vmshadow=$1
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root to mount a small tmpfs"; exit 77; }
tmp=$(mktemp -d /var/tmp/vmshadow-test.XXXXXX)
cleanup () {
  mountpoint -q "$tmp/small" 2>/dev/null && umount "$tmp/small"
  rm -rf "$tmp"
}
trap cleanup EXIT
fail () { echo "FAIL: $*"; exit 1; }
count () { "$vmshadow" list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["backups"]))'; }
export VMSHADOW_SCRATCH_DIR=$tmp/scratch VMSHADOW_REPO=$tmp/repo
export VMSHADOW_WRITERS_DIR=$tmp/writers.d

mkdir -p "$tmp/app" "$VMSHADOW_WRITERS_DIR"
head -c $((96 * 1024 * 1024)) /dev/urandom > "$tmp/app/big.img"
cat > "$VMSHADOW_WRITERS_DIR/app" <<W
#!/bin/sh
[ "\$1" = identify ] || exit 0
cat <<JSON
{"format": "vmshadow-writer-metadata", "version": 1,
 "writer": {"name": "app", "id": "5e8c2a4f-1b3d-4e6f-9a0b-c1d2e3f4a5b6"},
 "components": [{"name": "img", "files": [{"path": "$tmp/app/big.img", "kind": "disk", "format": "raw"}]}]}
JSON
W
chmod 755 "$VMSHADOW_WRITERS_DIR/app"

"$vmshadow" backup >/dev/null || fail "first backup"
[ "$(count)" = 1 ] || fail "expected one backup"

# Kill at several points: early (writers, snapshot), mid-copy, late.
for delay in 0.05 0.3 0.8 1.5 2.5; do
  head -c 1048576 /dev/urandom | dd of="$tmp/app/big.img" bs=1M seek=$((RANDOM % 90)) conv=notrunc status=none
  "$vmshadow" backup >/dev/null 2>&1 &
  pid=$!
  sleep "$delay"
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  n=$(count)
  [ "$n" -ge 1 ] || fail "a backup vanished after a kill at ${delay}s"
  "$vmshadow" verify >/dev/null || fail "the repository does not verify after a kill at ${delay}s"
done
# Nothing the killed backups started (qemu-nbd exports of the shadow
# copies) may outlive them.
for _ in $(seq 50); do pgrep -f "$tmp/" >/dev/null || break; sleep 0.1; done
if left=$(pgrep -af "$tmp/"); then fail "processes outlived the killed backups: $left"; fi
before=$(count)
"$vmshadow" backup >/dev/null || fail "a backup after the kills (stale lock?)"
[ "$(count)" = $((before + 1)) ] || fail "the backup after the kills is not listed"
"$vmshadow" gc --grace 0 >/dev/null || fail "gc after the kills"
"$vmshadow" verify --deep >/dev/null || fail "deep verify after gc"

# A repository on a full filesystem.
mkdir "$tmp/small"
mount -t tmpfs -o size=16m tmpfs "$tmp/small" || { echo "SKIP: cannot mount tmpfs"; exit 77; }
if VMSHADOW_REPO=$tmp/small/repo "$vmshadow" backup > "$tmp/out" 2>&1; then
  fail "a backup of 96 MiB fitted in 16 MiB"
fi
grep -qi "no space" "$tmp/out" || fail "unclear message: $(cat "$tmp/out")"
VMSHADOW_REPO=$tmp/small/repo "$vmshadow" verify >/dev/null || fail "the full repository does not verify"
[ "$(VMSHADOW_REPO=$tmp/small/repo count)" = 0 ] || fail "a partial backup is visible"
echo "ok"
