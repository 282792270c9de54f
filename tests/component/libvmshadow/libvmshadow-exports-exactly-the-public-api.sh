#!/usr/bin/env bash
# libvmshadow.so exports the functions the public headers declare VMS_API,
# every one of them, and nothing else of ours (lib/util's internals and the
# like stay hidden: -fvisibility=hidden); every declaration in a public
# header is marked VMS_API.
set -euo pipefail
so=$1 inc=$2
fail () { echo "FAIL: $*"; exit 1; }

unmarked=$(grep -n '^extern [^V"]' "$inc"/vmshadow/*.h || true)
[ -z "$unmarked" ] || fail "declarations without VMS_API: $unmarked"

declared=$(python3 - "$inc"/vmshadow/*.h <<'PY'
import re, sys
names = set()
for p in sys.argv[1:]:
    text = open(p).read()
    names.update(re.findall(r'extern\s+VMS_API\s+[^;(]*?\b(\w+)\s*\(', text))
print('\n'.join(sorted(names)))
PY
)
exported=$(nm -D --defined-only "$so" | awk '{print $3}' | grep -v '^_' | sort -u)
[ -n "$declared" ] || fail "no VMS_API declaration found in $inc"
if ! d=$(diff <(echo "$declared") <(echo "$exported")); then
  fail "declared (<) and exported (>) differ: $d"
fi
echo "ok - $(wc -l <<<"$exported") functions exported, each declared VMS_API"
