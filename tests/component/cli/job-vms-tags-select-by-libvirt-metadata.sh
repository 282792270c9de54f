#!/bin/bash
# Issue 19: a job's vms and exclude take "tag:NAME", the VMs whose libvirt
# <metadata> holds <tags> of namespace https://vmshadow.org/xmlns/tags/1
# with NAME among its words (what `virsh metadata VM --uri ... --set
# '<tags>nightly db</tags>'` writes). The host is libvirt's own test driver
# reading a node XML of our making (test:///FILE), so the tags come through
# the real libvirt API (virDomainGetMetadata), not a test double. The test
# driver cannot make backups (no virDomainBackupBegin), so each run fails
# after selecting: `job run --json` prints one document whose selected_vms
# and per-VM rows name exactly the VMs the tags chose, each failed with the
# driver's error. A VM whose tags are malformed is named in a warning and
# taken by no tag: entry; a tag that no VM has is a warning; a bad tag in
# the configuration is an error with its line.
source "$(dirname "$0")/cli-lib.sh"
export VMSHADOW_RUN_DIR=$tmp/run
unset VMSHADOW_REPO
ns=https://vmshadow.org/xmlns/tags/1
dom () {   # NAME [TAGS-ELEMENT]
  cat <<EOF
  <domain type='test'>
    <name>$1</name>
    <memory>65536</memory>
    <os><type>hvm</type></os>
    ${2:+<metadata>$2</metadata>}
  </domain>
EOF
}
{
  echo "<node>"
  dom db1 "<t:tags xmlns:t='$ns'>nightly db</t:tags>"
  dom db2 "<t:tags xmlns:t='$ns'>nightly,db,no-backup</t:tags>"
  dom web1 "<t:tags xmlns:t='$ns'>weekly</t:tags>"
  dom web2 "<x:tags xmlns:x='https://example.org/other'>nightly</x:tags>"
  dom odd "<t:tags xmlns:t='$ns'>nightly <t:b/></t:tags>"
  dom bad "<t:tags xmlns:t='$ns'>night\$ly</t:tags>"
  dom plain
  echo "</node>"
} > "$tmp/node.xml"
uri=test://$tmp/node.xml
virsh -c "$uri" list --all --name > "$tmp/virsh" 2>&1 || fail "the test driver does not read our node XML: $(cat "$tmp/virsh")"
conf=$tmp/etc
mkdir -p "$conf"
cat > "$conf/vmshadow.conf" <<EOF2
[repository main]
path = $tmp/repo
[defaults]
repository = main
exec-writers = no
[job nightly]
vms = tag:nightly
exclude = tag:no-backup
[job mixed]
vms = tag:weekly pl*n tag:nosuchtag
[job untagged]
vms = all
exclude = tag:nightly tag:weekly
EOF2
"$vmshadow" config check --config "$conf" > /dev/null || fail "config check: $("$vmshadow" config check --config "$conf" 2>&1)"

run () {   # JOB: its --json result in $tmp/JOB.json, stderr in $tmp/JOB.err
  local rc=0
  "$vmshadow" job run "$1" --json -c "$uri" --config "$conf" > "$tmp/$1.json" 2> "$tmp/$1.err" || rc=$?
  [ $rc = 1 ] || fail "job $1 exited $rc (the test driver cannot back up: 1 expected): $(cat "$tmp/$1.err")"
}
# check JOB "VM ..." : one JSON document, selected_vms and the failed rows
# exactly those VMs, no backup stored.
check () {
  python3 - "$tmp/$1.json" "$2" <<'PY' || fail "job $1: $(cat "$tmp/$1.json") $(cat "$tmp/$1.err")"
import json, sys
d = json.load(open(sys.argv[1]))          # one document, or this fails
want = sys.argv[2].split()
assert d["format"] == "vmshadow-job-result" and d["exit_code"] == 1, d
assert d["outcome"] == "failure", d
assert d["selected_vms"] == want, (d["selected_vms"], want)
assert [r["vm"] for r in d["vms"]] == want, d["vms"]
for r in d["vms"]:
    assert r["state"] == "failed" and r["backup_id"] is None, r
    assert "virDomainBackupBegin" in r["error"], r
assert d["bytes_stored"] == 0 and d["backup"]["state"] == "failed", d
PY
}
run nightly
check nightly "db1"
grep -q "VM 'odd': its vmshadow tags (metadata) have an element inside <tags>" "$tmp/nightly.err" \
  || fail "no warning for odd's malformed tags: $(cat "$tmp/nightly.err")"
grep -q "VM 'bad': its vmshadow tags (metadata) have a word that is not a tag" "$tmp/nightly.err" \
  || fail "no warning for bad's malformed tags: $(cat "$tmp/nightly.err")"
# web2's element is of another namespace: not vmshadow's tags, no warning.
if grep -q "web2" "$tmp/nightly.err"; then fail "web2 named: $(cat "$tmp/nightly.err")"; fi

run mixed
check mixed "plain web1"
grep -q "job 'mixed': no VM of the host has the tag 'nosuchtag'" "$tmp/mixed.err" \
  || fail "no warning for a tag no VM has: $(cat "$tmp/mixed.err")"

# all but the tagged: the malformed ones are not left out by a tag.
run untagged
check untagged "bad odd plain web2"
[ ! -e "$tmp/repo/backups" ] || [ -z "$(ls "$tmp/repo/backups")" ] || fail "a backup was stored"

# A tag the configuration cannot mean: an error naming file and line.
printf '[job badtag]\nvms = tag:ni$ght\n' > "$conf/jobs.d.conf"
mkdir -p "$conf/jobs.d" && mv "$conf/jobs.d.conf" "$conf/jobs.d/bad.conf"
rc=0; "$vmshadow" config check --config "$conf" > "$tmp/out" 2>&1 || rc=$?
[ $rc = 2 ] || fail "config check of a bad tag exited $rc"
grep -q "jobs.d/bad.conf:2: vms: 'tag:ni\$ght' names no tag" "$tmp/out" || fail "bad tag: $(cat "$tmp/out")"
echo "PASS: tag: entries select and leave out VMs by their libvirt metadata tags"
