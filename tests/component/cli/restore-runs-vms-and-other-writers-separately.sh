#!/usr/bin/env bash
# The VM writer's PreRestore turns VMs off and undefines them; a veto of
# another writer in the same PreRestore would leave them so with nothing
# restored (R16). So a restore that would take VMs and another writer's
# components in one session is refused before anything changes, naming
# both and the options; each kind alone goes ahead. No VM is needed: a
# test double exec writer claims the VM writer's ID in the backup (the
# refusal comes before libvirt is asked anything), beside the test double
# of restore-writer-lib.sh.
set -euo pipefail
vmshadow=$1
tmp=$(mktemp -d /var/tmp/vmshadow-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail () { echo "FAIL: $*"; exit 1; }
export VMSHADOW_SCRATCH_DIR=$tmp/scratch VMSHADOW_REPO=$tmp/repo
export VMSHADOW_WRITERS_DIR=$tmp/writers.d
. "$(dirname "$0")/restore-writer-lib.sh"
make_writer
mkdir -p "$tmp/app/a" "$tmp/app/b" "$tmp/vm"
echo "one = 1" > "$tmp/app/a/one.conf"
echo "data" > "$tmp/app/b/one.data"
echo "two = 2" > "$tmp/app/a/two.conf"
echo "<domain/>" > "$tmp/vm/domain.xml"
# Test double: not the VM writer, only its ID (so the backup looks like one
# with a VM).
cat > "$VMSHADOW_WRITERS_DIR/fake-vm" <<W
#!/bin/sh
[ "\$1" = identify ] && cat <<JSON
{"format": "vmshadow-writer-metadata", "version": 1,
 "writer": {"name": "fake-vm", "id": "d9857ac8-3081-4425-b43f-8530ac9a82d6"},
 "components": [{"name": "0b5a7c3e-1111-4222-8333-944455556666",
   "files": [{"path": "$tmp/vm/domain.xml", "kind": "plain"}]}]}
JSON
exit 0
W
chmod 755 "$VMSHADOW_WRITERS_DIR/fake-vm"
"$vmshadow" backup --json > "$tmp/backup.json" || fail "backup: $(cat "$tmp/backup.json")"
id=$(jq -r .backup_id "$tmp/backup.json")
echo changed > "$tmp/app/a/one.conf"
rm -f "$tmp/log"/*

for args in "" "--component double --vm 0b5a7c3e-1111-4222-8333-944455556666"; do
    rc=0
    # shellcheck disable=SC2086
    "$vmshadow" restore "$id" $args > "$tmp/out" 2> "$tmp/err" || rc=$?
    [ "$rc" = 1 ] || fail "restore $args: exit $rc, not 1: $(cat "$tmp/out" "$tmp/err")"
    grep -q 'writer "fake-vm" (the VMs) and of writer "double" are restored in separate runs.*--vm or --component double; nothing was changed' "$tmp/err" ||
        fail "restore $args: unclear message: $(cat "$tmp/err")"
done
[ "$(cat "$tmp/app/a/one.conf")" = changed ] || fail "a refused restore wrote a file"
[ -z "$(events)" ] || fail "a refused restore ran the writers: $(events)"

"$vmshadow" restore "$id" --component double > "$tmp/out" 2>&1 ||
    fail "the other writer alone: $(cat "$tmp/out")"
[ "$(cat "$tmp/app/a/one.conf")" = "one = 1" ] || fail "one.conf was not restored"
echo "ok - VMs and other writers' components are restored in separate runs"
