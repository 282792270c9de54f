#!/bin/bash
# Issue 14: sync --vm and --since choose which backups of SRC are copied.
# Two exec writers stand in for the VM writer here (test doubles, named
# vm-alpha and vm-beta): each one's component is named by a UUID and
# carries the "vm_name" attribute, which is what the VM writer records
# (docs/vm-writer.md) and what --vm reads. Backups: A (alpha only), AB
# (both), B (beta only), a second apart. --vm beta copies AB and B; --since
# AB's time copies AB and B; both together (--vm alpha) copy AB alone; a
# selection matching nothing copies nothing and does not create DST; bad
# times are usage errors. Each copy verifies deep.
source "$(dirname "$0")/cli-lib.sh"
export VMSHADOW_REPO=$tmp/src
writer () {   # NAME UUID
  echo "$1 data" > "$tmp/app/$1"
  cat > "$VMSHADOW_WRITERS_DIR/vm-$1" <<W
#!/bin/sh
[ "\$1" = identify ] || exit 0
cat <<JSON
{"format": "vmshadow-writer-metadata", "version": 1,
 "writer": {"name": "vm-$1", "id": "$2"},
 "components": [{"name": "$2", "attributes": {"vm_name": "$1"},
                 "files": [{"path": "$tmp/app/$1", "kind": "plain"}]}]}
JSON
W
  chmod 755 "$VMSHADOW_WRITERS_DIR/vm-$1"
}
"$vmshadow" init > /dev/null
writer alpha 0d9f3c1e-2b4a-4c5d-8e6f-7a8b9c0d1e2f
"$vmshadow" backup > /dev/null || fail "backup A"
sleep 1.1
writer beta 5a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d
"$vmshadow" backup > /dev/null || fail "backup AB"
sleep 1.1
rm "$VMSHADOW_WRITERS_DIR/vm-alpha"
"$vmshadow" backup > /dev/null || fail "backup B"
read -r A AB B tab < <("$vmshadow" list --json | python3 -c '
import json, sys, time
b = json.load(sys.stdin)["backups"]
print(" ".join(x["backup_id"] for x in b), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(b[1]["time"])) if isinstance(b[1]["time"], int) else b[1]["time"])')
[ -n "$B" ] || fail "three backups expected: $("$vmshadow" list)"
case $tab in *T*Z) ;; *) fail "the time of backup AB: '$tab'" ;; esac
ids () { "$vmshadow" --repo "$1" list --json | python3 -c 'import json,sys; print(" ".join(b["backup_id"] for b in json.load(sys.stdin)["backups"]))'; }

"$vmshadow" sync "$tmp/src" "$tmp/d1" --vm beta > "$tmp/out" || fail "sync --vm beta: $(cat "$tmp/out")"
[ "$(ids "$tmp/d1")" = "$AB $B" ] || fail "--vm beta copied: $(ids "$tmp/d1"), not $AB $B"
"$vmshadow" sync "$tmp/src" "$tmp/d2" --since "$tab" > "$tmp/out" || fail "sync --since: $(cat "$tmp/out")"
[ "$(ids "$tmp/d2")" = "$AB $B" ] || fail "--since $tab copied: $(ids "$tmp/d2")"
"$vmshadow" sync "$tmp/src" "$tmp/d3" --vm alpha --since "$tab" > "$tmp/out" || fail "sync --vm alpha --since: $(cat "$tmp/out")"
[ "$(ids "$tmp/d3")" = "$AB" ] || fail "--vm alpha --since copied: $(ids "$tmp/d3")"
"$vmshadow" sync "$tmp/src" "$tmp/d4" --vm 0d9f3c1e-2b4a-4c5d-8e6f-7a8b9c0d1e2f "$A" "$B" > "$tmp/out" ||
  fail "sync --vm UUID A B: $(cat "$tmp/out")"
[ "$(ids "$tmp/d4")" = "$A" ] || fail "--vm alpha's UUID among A and B copied: $(ids "$tmp/d4")"
for d in d1 d2 d3 d4; do
  "$vmshadow" --repo "$tmp/$d" verify --deep > "$tmp/out" || fail "verify --deep $d: $(cat "$tmp/out")"
done
echo "ok - --vm (name or UUID), --since and both together copy exactly the backups chosen; each copy verifies deep"

"$vmshadow" sync "$tmp/src" "$tmp/d5" --vm gamma > "$tmp/out" || fail "sync --vm gamma: $(cat "$tmp/out")"
grep -q "No backup of .* matches" "$tmp/out" || fail "sync --vm gamma said: $(cat "$tmp/out")"
[ ! -e "$tmp/d5" ] || fail "a sync that matched nothing created DST"
"$vmshadow" sync "$tmp/src" "$tmp/d5" --since 1h > "$tmp/out" || fail "sync --since 1h: $(cat "$tmp/out")"
[ "$(ids "$tmp/d5")" = "$A $AB $B" ] || fail "--since 1h copied: $(ids "$tmp/d5")"
for bad in yesterday 2026-13-01 2026-12-01T10:00:00 5x ""; do
  rc=0; "$vmshadow" sync "$tmp/src" "$tmp/d6" --since "$bad" > /dev/null 2> "$tmp/err" || rc=$?
  [ $rc = 2 ] || fail "--since '$bad' exited $rc, not 2: $(cat "$tmp/err")"
done
[ ! -e "$tmp/d6" ] || fail "a refused sync created DST"
echo "ok - no match copies nothing and creates nothing; --since 1h takes all three; bad times are usage errors"
