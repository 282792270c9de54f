#!/usr/bin/env bash
# The requester's example (examples/restore-a-file.c, linked with
# libvmshadow.so, public API only): a writer of its own, a backup session
# of a file into a new repository and a restore session of that backup into
# a directory (issue 10). The file comes back byte for byte under the
# directory, the writer gets "all" at PostRestore, and both sessions say so.
set -euo pipefail
example=$1
tmp=$(mktemp -d /var/tmp/vmshadow-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail () { echo "FAIL: $*"; exit 1; }
export VMSHADOW_SCRATCH_DIR=$tmp/scratch

mkdir "$tmp/data"
head -c 200000 /dev/urandom > "$tmp/data/file"
truncate -s 2M "$tmp/data/file"
printf 'the end\n' >> "$tmp/data/file"

out=$("$example" "$tmp/repo" "$tmp/data/file" "$tmp/restored" 2>&1) ||
    fail "the example failed: $out"
grep -q '^backup [^ ]*: complete, 1 component(s), [1-9][0-9]* bytes read$' <<<"$out" &&
grep -q '^post-restore: file restore status all$' <<<"$out" &&
grep -q '^restored file of example-file: ok$' <<<"$out" &&
grep -qF "  $tmp/data/file -> $tmp/restored$tmp/data/file: written" <<<"$out" &&
grep -q '^restore: success$' <<<"$out" || fail "unexpected output: $out"
cmp "$tmp/data/file" "$tmp/restored$tmp/data/file" || fail "the restored file differs"
echo "ok - a backup and a restore session through the requester: $(tr '\n' ';' <<<"$out")"
