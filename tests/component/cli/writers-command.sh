#!/usr/bin/env bash
# `vmshadow writers` end to end with real exec writers: a good writer is
# listed with its ID, state and components (text and JSON); a broken one is
# listed as failed-at-identify and makes the command exit 1; a writers
# directory that does not exist is a clear error.
set -euo pipefail
vmshadow=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail () { echo "FAIL: $*"; exit 1; }

mkdir "$tmp/writers.d"
cat > "$tmp/writers.d/10-good" <<'W'
#!/bin/sh
[ "$1" = identify ] || exit 0
cat <<JSON
{"format": "vmshadow-writer-metadata", "version": 1,
 "writer": {"name": "good-app", "id": "6b1a7f2e-0c1d-4e8f-9a3b-5d2c1e0f9a77"},
 "components": [{"name": "db", "caption": "GoodApp\\\\db",
                 "files": [{"path": "/var/lib/good/db.sqlite", "kind": "plain"}]}]}
JSON
W
chmod +x "$tmp/writers.d/10-good"

out=$("$vmshadow" --writers-dir "$tmp/writers.d" writers) || fail "exit $? with one good writer"
grep -q "Writer name: 'good-app'" <<<"$out" || fail "name missing: $out"
grep -q "6b1a7f2e-0c1d-4e8f-9a3b-5d2c1e0f9a77" <<<"$out" || fail "id missing"
grep -q "State: stable" <<<"$out" || fail "state missing"
grep -q "/var/lib/good/db.sqlite" <<<"$out" || fail "file missing"

json=$(VMSHADOW_WRITERS_DIR="$tmp/writers.d" "$vmshadow" writers --json)
python3 - "$json" <<'PY'
import json, sys
# The VM writer is listed too where libvirtd runs; the exec writer is ours.
w = [x for x in json.loads(sys.argv[1])["writers"] if x["name"] != "libvirt-vm"]
assert len(w) == 1, w
assert w[0]["name"] == "good-app" and w[0]["state"] == "stable", w[0]
assert w[0]["components"][0]["files"][0]["path"] == "/var/lib/good/db.sqlite"
PY

printf '#!/bin/sh\necho "this is not JSON"\n' > "$tmp/writers.d/20-garbage"
chmod +x "$tmp/writers.d/20-garbage"
if out=$("$vmshadow" --writers-dir "$tmp/writers.d" writers 2>&1); then
  fail "a broken writer must make the command fail"
fi
grep -q "failed-at-identify" <<<"$out" || fail "no failed state: $out"
grep -q "20-garbage" <<<"$out" || fail "the broken writer is not named: $out"
grep -q "good-app" <<<"$out" || fail "the good writer must still be listed"

if out=$("$vmshadow" --writers-dir "$tmp/nowhere" writers 2>&1); then
  fail "a missing writers directory must fail"
fi
grep -q "$tmp/nowhere" <<<"$out" || fail "the message must name the directory: $out"

if "$vmshadow" frobnicate 2>/dev/null; then fail "unknown command accepted"; fi
echo "ok"
