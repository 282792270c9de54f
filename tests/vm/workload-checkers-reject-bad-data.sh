#!/bin/bash
# workload-checkers-reject-bad-data: the lab's checkers fail on the damage
# they exist to find.  vmslab-records-check accepts what vmslab-writer wrote
# and rejects a torn tail, NUL-filled (allocated, never written) records, a
# wrong check value and a missing record; vmslab-pattern check rejects the
# right bytes at the wrong offset or with the wrong seed.  Host only, no VM.
set -euo pipefail
bin=${VMSLAB_LAB_DIR:-$(dirname "$0")/../../lab}/guest/bin
tmp=$(mktemp -d /var/tmp/vmslab-checkers.XXXXXX 2>/dev/null || mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "not ok - $*" >&2; exit 1; }
ok() { echo "ok - $*"; }
must_reject() {   # WHAT FILE
    if out=$("$bin/vmslab-records-check" "$2" 2>&1); then
        fail "records check accepted $1: $out"
    fi
    ok "records check rejects $1 ($out)"
}

# A real writer run (foreground, stopped through its stop file).
export VMSLAB_STATE=$tmp/state
mkdir -p "$VMSLAB_STATE"
sh "$bin/vmslab-writer" run "$tmp/rec" &
wpid=$!
for _ in $(seq 50); do
    [ "$(wc -c 2>/dev/null <"$tmp/rec" || echo 0)" -ge 6400 ] && break
    sleep 0.1
done
touch "$VMSLAB_STATE/writer.stop"
wait "$wpid"
out=$("$bin/vmslab-records-check" "$tmp/rec") || fail "records check rejects a clean writer file"
n=$(sed -n 's/^records=\([0-9]*\).*/\1/p' <<<"$out")
[ "$n" -ge 100 ] || fail "writer wrote only $n records"
ok "records check accepts the writer's file: $out"

cp "$tmp/rec" "$tmp/torn"; printf 'REC 00000' >>"$tmp/torn"
must_reject "a torn last record" "$tmp/torn"
"$bin/vmslab-records-check" --allow-torn-tail "$tmp/torn" >/dev/null ||
    fail "--allow-torn-tail does not forgive a torn tail"
ok "--allow-torn-tail forgives only the tail"

cp "$tmp/rec" "$tmp/nul"; head -c 64 /dev/zero | dd of="$tmp/nul" bs=64 seek=10 conv=notrunc 2>/dev/null
must_reject "a record of NUL bytes" "$tmp/nul"

awk 'NR == 7 { c = substr($0, 63, 1); $0 = substr($0, 1, 62) (c == "0" ? "1" : "0") } { print }' \
    "$tmp/rec" >"$tmp/sum"
must_reject "a wrong check value" "$tmp/sum"

sed '20d' "$tmp/rec" >"$tmp/gap"
must_reject "a missing record" "$tmp/gap"

# Pattern: right seed and offset pass; shifted or other seed fail.
truncate -s 1M "$tmp/disk"
sum=$(sh "$bin/vmslab-pattern" write "$tmp/disk" s1 65536 131072)
[ "$sum" = "$(sh "$bin/vmslab-pattern" sum s1 65536 131072)" ] || fail "pattern write printed a wrong sha256"
sh "$bin/vmslab-pattern" check "$tmp/disk" s1 65536 131072 >/dev/null || fail "pattern check rejects good data"
ok "pattern check accepts the pattern where it was written"
if sh "$bin/vmslab-pattern" check "$tmp/disk" s2 65536 131072 2>/dev/null; then fail "pattern check accepts another seed"; fi
if sh "$bin/vmslab-pattern" check "$tmp/disk" s1 61440 131072 2>/dev/null; then fail "pattern check accepts a shifted range"; fi
ok "pattern check rejects another seed and a shifted range"
