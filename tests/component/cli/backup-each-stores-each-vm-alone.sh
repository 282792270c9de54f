#!/usr/bin/env bash
# backup-each-stores-each-vm-alone (issue 20; R12 per set): `backup --each`
# backs up every VM as a consistency set of its own, and the host's exec
# writers as one more. Over libvirt's test driver (in-process, no daemon,
# no QEMU: two shut-off domains described in a file, one of whose disk
# image is missing) and one exec writer: the exec writers' set and the
# good VM are stored, the bad VM is not, the exit status is 4 (partial),
# and the report (JSON and text) names the VM that failed and why. Without
# --each the same run is one set: all or nothing, exit 1, nothing stored.
. "$(dirname "$0")/cli-lib.sh"
cd "$tmp"
export VMSHADOW_VM_STATE_DIR=$tmp/state

app_writer
truncate -s 4M "$tmp/good.raw"
head -c 300000 /dev/urandom | dd of="$tmp/good.raw" conv=notrunc status=none
domain () {
  cat <<X
  <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>
    <name>$1</name><uuid>$2</uuid><memory>65536</memory>
    <os><type>hvm</type></os>
    <devices><disk type='file' device='disk'><driver name='qemu' type='raw'/>
      <source file='$3'/><target dev='vda' bus='virtio'/></disk></devices>
    <test:runstate>5</test:runstate>
  </domain>
X
}
{ echo "<node>"
  domain good 6695eb01-f6a4-8304-79aa-97f2502e193f "$tmp/good.raw"
  domain bad 6695eb01-f6a4-8304-79aa-97f2502e1940 "$tmp/missing.raw"
  echo "</node>"; } > "$tmp/node.xml"
uri=test://$tmp/node.xml
"$vmshadow" writers -c "$uri" 2>/dev/null | grep -q libvirt-vm || {
  echo "SKIP: vmshadow has no VM writer (built without libvirt)"; exit 77; }

count () { ls "$VMSHADOW_REPO/backups" 2>/dev/null | wc -l; }
run () {
  local want=$1 rc=0; shift
  "$vmshadow" "$@" > "$tmp/out" 2> "$tmp/err" || rc=$?
  [ $rc -eq "$want" ] || fail "vmshadow $*: exit $rc, not $want: $(cat "$tmp/out" "$tmp/err")"
}

# One set of everything: the bad VM sinks the whole set (R12).
run 1 backup --json -c "$uri" --all
[ "$(count)" -eq 0 ] || fail "a failed set stored something"

# One set per VM: the others are stored.
run 4 backup --json -c "$uri" --all --each
python3 - "$tmp/out" <<'PY' || fail "the --each report: $(cat "$tmp/out")"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["outcome"] == "partial" and r["exit_code"] == 4, r
assert r["succeeded"] == ["good"] and r["failed"] == ["bad"], r
sets = r["sets"]
assert len(sets) == 3, sets
app, bad, good = sets
assert app.get("host_applications") is True and app["state"] == "complete", app
assert "vm" not in app and [c["writer"] for c in app["components"]] == ["app"], app
assert bad["vm"] == "bad" and bad["state"] == "failed", bad
assert '"bad"' in bad["failure"]["message"] and "missing" in bad["failure"]["message"], bad
assert bad["failure"]["phase"] == "prepare-backup", bad
assert good["vm"] == "good" and good["state"] == "complete", good
assert [c["caption"] for c in good["components"]] == ["Offline\\good"], good
ids = [s["backup_id"] for s in sets]
assert len(set(ids)) == 3, ids
PY
[ "$(count)" -eq 2 ] || fail "expected the exec writers' and good's backups, have $(count)"
good_id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sets"][2]["backup_id"])' "$tmp/out")
"$vmshadow" extract "$good_id" 6695eb01-f6a4-8304-79aa-97f2502e193f "$tmp/good.raw" --to "$tmp/good.out"
cmp "$tmp/good.raw" "$tmp/good.out" || fail "good's disk did not come back whole"

# The text report says the same.
run 4 backup -c "$uri" --each good bad
grep -q '^vm "good": complete, backup ' "$tmp/out" || fail "text: good: $(cat "$tmp/out")"
grep -q '^vm "bad": failed' "$tmp/out" || fail "text: bad: $(cat "$tmp/out")"
grep -q '^host applications: complete' "$tmp/out" || fail "text: exec writers: $(cat "$tmp/out")"
grep -A1 "failed:" "$tmp/out" | grep -q 'vm "bad"' || fail "text: the failed list: $(cat "$tmp/out")"
grep -q 'vm "bad".*missing' "$tmp/err" || fail "text: why bad failed: $(cat "$tmp/err")"

# prune asks libvirt for the checkpoints of the VMs left in the repository
# (this driver has none): it goes on, exit 0; with libvirt out of reach it
# says so and still exits 0.
"$vmshadow" prune --keep-last 1 -c "$uri" > "$tmp/out" 2> "$tmp/err" || fail "prune: $(cat "$tmp/err")"
"$vmshadow" prune --json --keep-last 1 -c "test://$tmp/no-such-node.xml" > "$tmp/out" 2> "$tmp/err" ||
  fail "prune with libvirt out of reach failed: $(cat "$tmp/out" "$tmp/err")"
python3 -c 'import json,sys; r = json.load(open(sys.argv[1])); assert "skipped" in r["checkpoints"] and r["exit_code"] == 0, r' "$tmp/out" ||
  fail "prune does not say the checkpoints were skipped: $(cat "$tmp/out")"

# Every set stored: 0; every set failed: 1.
run 0 backup --json -c "$uri" --each good
rm "$VMSHADOW_WRITERS_DIR/app"
run 1 backup --json -c "$uri" --each bad
python3 -c 'import json,sys; r = json.load(open(sys.argv[1])); assert r["outcome"] == "failure" and r["failed"] == ["bad"], r' "$tmp/out" ||
  fail "all sets failed: $(cat "$tmp/out")"
echo "ok: --each stores each VM alone; partial is 4 and names the failed VM"
