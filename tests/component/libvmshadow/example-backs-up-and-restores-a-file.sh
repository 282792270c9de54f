#!/usr/bin/env bash
# The example of vmshadow(3) (examples/backup-a-file.c, linked with
# libvmshadow.so) backs up a sparse file with data around a hole and
# writes it back out byte for byte; it refuses to overwrite an existing
# file, with vmshadow's message.
set -euo pipefail
example=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail () { echo "FAIL: $*"; exit 1; }

head -c 300000 /dev/urandom > "$tmp/file"
truncate -s 3M "$tmp/file"
printf 'the end\n' >> "$tmp/file"

out=$("$example" "$tmp/repo" "$tmp/file" "$tmp/restored") \
  || fail "the example failed: $out"
grep -q '^example-[0-9]*: 3145736 bytes, [1-9][0-9]* chunks new, [1-9][0-9]* zero$' <<<"$out" \
  || fail "unexpected report: $out"
cmp "$tmp/file" "$tmp/restored" || fail "the restored file differs"
[ -f "$tmp/repo/config" ] || fail "no repository was made"

sleep 1     # a new backup ID (the example names it by the second)
if err=$("$example" "$tmp/repo" "$tmp/file" "$tmp/restored" 2>&1); then
  fail "restoring over an existing file succeeded"
fi
grep -q 'restoring: .*exists' <<<"$err" || fail "no clear message: $err"
echo "ok - backed up and restored $(stat -c %s "$tmp/file") bytes: $out"
