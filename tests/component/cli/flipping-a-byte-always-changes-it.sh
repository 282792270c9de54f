#!/usr/bin/env bash
# flipping-a-byte-always-changes-it (issue 9, item 10): the helper the
# damage tests use (tests/flip-byte.sh) changes the byte whatever its value
# — 0xff and 'X' included, which the old "write 0xff" / "write 'X'" left as
# they were — and touches no other byte.
set -euo pipefail
. "$(dirname "$0")/../../flip-byte.sh"
tmp=$(mktemp -d /var/tmp/vmshadow-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail () { echo "FAIL: $*"; exit 1; }

# 0xff and 'X' (88) are the values the old tests wrote; the ends and the
# middle of the range besides.
for v in 0 1 88 127 128 254 255; do
    # Three bytes: v between two known neighbours.
    printf "\\101\\$(printf '%03o' "$v")\\102" > "$tmp/f"
    flip_byte "$tmp/f" 1
    got=$(od -An -tu1 "$tmp/f" | tr -s ' ' | sed 's/^ //;s/ $//')
    [ "$got" = "65 $(( v ^ 0xff )) 66" ] || fail "byte $v became: $got"
done
echo "ok: every byte value tried changes, neighbours untouched"
