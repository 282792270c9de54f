#!/usr/bin/env bash
# Issue 9 item 3: each killed backup left its scratch copies
# ($VMSHADOW_SCRATCH_DIR/<session>/, full copies of the files) and its NBD
# server directory ($TMPDIR/vmshadow-nbd-*) for good, and a killed extract
# left a full-size temporary file beside its target. Now each lives in a
# session directory that records its owner (pid and start time), and the
# next run removes those whose owner is gone: after a gc, a backup and an
# extract that follow the kills, nothing of the killed runs is left.
source "$(dirname "$0")/hardening-lib.sh"
export TMPDIR=$tmp/tmpdir
mkdir -p "$TMPDIR" "$VMSHADOW_SCRATCH_DIR"
head -c $((96 * 1024 * 1024)) /dev/urandom >> "$tmp/app/disk.raw"

# Start "vmshadow ARGS...", wait until a path matching the glob $1
# exists, kill it with SIGKILL.
kill_when () {
  local glob=$1; shift
  "$vmshadow" "$@" >/dev/null 2>&1 &
  local pid=$! found=
  for _ in $(seq 400); do
    # shellcheck disable=SC2086
    if compgen -G "$glob" >/dev/null; then found=1; break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.01
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  [ -n "$found" ] || fail "'vmshadow $*' never made $glob"
}

vms backup >/dev/null || fail "first backup"
id=$(newest)

# Backups killed while copying and while exporting; then COMMAND must
# remove what they left.
kills_then () {
  kill_when "$VMSHADOW_SCRATCH_DIR/*/0-*" backup
  kill_when "$TMPDIR/vmshadow-nbd-*/sock" backup
  compgen -G "$VMSHADOW_SCRATCH_DIR/*" >/dev/null || fail "the killed backups left no scratch: nothing tested"
  # The processes the killed backups started end by themselves.
  for _ in $(seq 100); do pgrep -f "$tmp/" >/dev/null || break; sleep 0.1; done
  # A run killed between mkdir and its owner file leaves a staging
  # directory whose name carries the (gone) owner: also removed.
  mkdir "$VMSHADOW_SCRATCH_DIR/.vms-new-999999999-1-killed" "$TMPDIR/.vms-new-999999999-1-killed"
  vms "$@" >/dev/null || fail "'vmshadow $*' after the kills"
  local left
  left=$(ls -A "$VMSHADOW_SCRATCH_DIR" "$TMPDIR")
  [ -z "$(ls -A "$VMSHADOW_SCRATCH_DIR")" ] || fail "'vmshadow $*' left scratch of killed backups: $left"
  [ -z "$(ls -A "$TMPDIR")" ] || fail "'vmshadow $*' left NBD directories of killed backups: $left"
}
kills_then gc
kills_then backup

mkdir "$tmp/out"
kill_when "$tmp/out/.*[a-z]*" extract "$id" data "$tmp/app/disk.raw" --to "$tmp/out/disk.img"
[ ! -e "$tmp/out/disk.img" ] || fail "a killed extract left its target"
vms extract "$id" data "$tmp/app/disk.raw" --to "$tmp/out/disk2.img" >/dev/null ||
  fail "extract after a killed one"
[ "$(ls -A "$tmp/out")" = disk2.img ] ||
  fail "the next extract did not remove what the killed one left: $(ls -A "$tmp/out")"
echo ok
