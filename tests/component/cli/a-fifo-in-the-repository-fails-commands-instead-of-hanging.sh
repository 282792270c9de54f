#!/usr/bin/env bash
# Issue 9 item 4: files of the repository were opened without O_NONBLOCK
# before their regular-file check, so a FIFO in place of one hung the
# command for ever — gc included, holding the writer lock, which stopped
# every backup. Now each such file is refused at once with a message, and
# the command ends.
source "$(dirname "$0")/hardening-lib.sh"
# Format 1, asked for (new repositories are format 2): the fifo replaces a format 1 chunk file.
export VMSHADOW_REPO_FORMAT=1

vms backup >/dev/null || fail "first backup"
id=$(newest)
r=$VMSHADOW_REPO
# app.conf is one small chunk, stored raw under its SHA-256.
h=$(sha256sum < "$tmp/app/app.conf" | cut -c1-64)
chunk=${h:0:2}/$h
[ -f "$r/chunks/$chunk" ] || fail "no chunk file chunks/$chunk for app.conf"
[ -f "$r/backups/$id/metadata/0.json" ] || fail "the backup has no metadata/0.json"
[ -f "$r/backups/$id/indexes/0.idx" ] || fail "the backup has no indexes/0.idx"

# file in the repository, then the commands that read it
check () {
  local file=$1; shift
  mv "$r/$file" "$tmp/saved"
  mkfifo "$r/$file"
  for cmd in "$@"; do
    # shellcheck disable=SC2086
    set +e; vms $cmd > "$tmp/out" 2>&1; rc=$?; set -e
    [ "$rc" -ne 124 ] || fail "'vmshadow $cmd' hangs on a FIFO as $file"
    [ "$rc" -ne 0 ] || fail "'vmshadow $cmd' succeeded with a FIFO as $file"
    grep -qi "not a regular file\|corrupt\|not a vmshadow" "$tmp/out" ||
      fail "'vmshadow $cmd' did not say what is wrong with $file: $(cat "$tmp/out")"
  done
  rm "$r/$file"
  mv "$tmp/saved" "$r/$file"
}
check config list "gc --grace 0" backup
check lock "gc --grace 0" backup
check "backups/$id/manifest.json" list "show $id" "verify $id"
check "backups/$id/metadata/0.json" "show $id" "verify $id"
check "backups/$id/indexes/0.idx" "verify $id" "extract $id data $tmp/app/app.conf --to $tmp/x"
check "chunks/$chunk" "verify --deep $id" "extract $id data $tmp/app/app.conf --to $tmp/y"
vms verify --deep >/dev/null || fail "the repository does not verify once the files are back"
echo ok
