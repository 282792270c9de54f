#!/bin/bash
# s3-job-reaches-its-repository-with-the-credentials-it-names (issue 19,
# issue 14): a configured job whose [repository] is s3://BUCKET/PREFIX and
# names its credentials by reference (s3-config = a 0600 settings file) runs
# with nothing about S3 in its environment: job run backs up into the
# bucket, status reads it back (health ok), job verify passes. The same job
# pointed at a settings file with a wrong secret fails, naming the refusal,
# and writes nothing; a settings file others may read is refused. A local
# job with verify-after = deep and sync-to = the bucket verifies its
# repository and copies its backup into the bucket after the run (verified
# deep there); a sync the bucket refuses is a warning (exit 3) naming it,
# the backup stored. status gives the last verify; after a job verify finds
# a damaged chunk, the job is critical.
set -uo pipefail
vmshadow=$1
. "$(dirname "$0")/s3-lib.sh"
. "$(dirname "$0")/../flip-byte.sh"
fail () { echo "FAIL: $*"; exit 1; }
tmp=$(mktemp -d /var/tmp/vmshadow-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
s3_lab_start
s3_bucket bucket vmshadow-job
# Only the job's settings file may tell where S3 is and who we are.
unset VMSHADOW_S3_ENDPOINT VMSHADOW_S3_REGION VMSHADOW_S3_ACCESS_KEY_ID \
  VMSHADOW_S3_SECRET_ACCESS_KEY VMSHADOW_REPO VMSHADOW_REPO_FORMAT VMSHADOW_CONFIG_DIR
export VMSHADOW_SCRATCH_DIR=$tmp/scratch VMSHADOW_RUN_DIR=$tmp/run VMSHADOW_STATE_DIR=$tmp/state
mkdir -p "$tmp/app" "$tmp/writers.d" "$tmp/etc" "$tmp/run"
head -c 1000000 /dev/urandom > "$tmp/app/data"
cat > "$tmp/writers.d/app" <<W
#!/bin/sh
[ "\$1" = identify ] || exit 0
echo '{"format": "vmshadow-writer-metadata", "version": 1, "writer": {"name": "app", "id": "5b2e8c1d-3f4a-4b6c-9d7e-1a2b3c4d5e6f"}, "components": [{"name": "data", "files": [{"path": "$tmp/app/data", "kind": "plain"}]}]}'
W
chmod 755 "$tmp/writers.d/app"
settings () {   # FILE SECRET: an S3 settings file for the lab's gateway
  printf '[default]\nendpoint = %s\nregion = %s\naccess_key_id = %s\nsecret_access_key = %s\n' \
    "$VMSLAB_S3_ENDPOINT" "$VMSLAB_S3_REGION" "$VMSLAB_S3_ACCESS_KEY_ID" "$2" > "$1"
  chmod 600 "$1"
}
settings "$tmp/s3-good.conf" "$VMSLAB_S3_SECRET_ACCESS_KEY"
settings "$tmp/s3-wrong.conf" "not-the-secret"
job () {        # SETTINGS-FILE: the configuration of job j into the bucket
  printf '[repository off]\npath = s3://%s/jobs\ns3-config = %s\n[job j]\nrepository = off\nkeep-last = 2\n' \
    "$bucket" "$1" > "$tmp/etc/vmshadow.conf"
}
objects () { s3_curl "$VMSLAB_S3_ENDPOINT/$bucket?list-type=2" | grep -o '<Key>[^<]*</Key>' | wc -l; }

# Wrong secret: refused by the gateway, named, nothing written.
job "$tmp/s3-wrong.conf"
rc=0; out=$("$vmshadow" job run j --config "$tmp/etc" --writers-dir "$tmp/writers.d" 2>&1) || rc=$?
[ $rc != 0 ] || fail "job run with a wrong secret succeeded: $out"
grep -q "SignatureDoesNotMatch\|403" <<<"$out" || fail "job run with a wrong secret did not name the refusal: $out"
[ "$(objects)" = 0 ] || fail "job run with a wrong secret wrote $(objects) objects"
echo "ok - a wrong secret in the job's settings file is refused by the gateway, named, nothing written"

# A settings file others may read holds a secret anyone could take.
chmod 644 "$tmp/s3-good.conf"
job "$tmp/s3-good.conf"
rc=0; out=$("$vmshadow" job run j --config "$tmp/etc" --writers-dir "$tmp/writers.d" 2>&1) || rc=$?
[ $rc != 0 ] || fail "job run with a world-readable settings file succeeded: $out"
grep -qF "$tmp/s3-good.conf" <<<"$out" || fail "the refusal does not name the settings file: $out"
chmod 600 "$tmp/s3-good.conf"
echo "ok - a settings file others may read is refused, named"

# The right settings: backed up into the bucket, status and verify read it.
out=$("$vmshadow" job run j --config "$tmp/etc" --writers-dir "$tmp/writers.d" 2>&1) \
  || fail "job run into s3://$bucket/jobs: $out"
n=$(objects)
[ "$n" -gt 0 ] || fail "job run wrote no object into the bucket"
status=$("$vmshadow" status --config "$tmp/etc" --json 2>&1) || fail "status: $status"
grep -q '"health": "ok"' <<<"$status" || fail "status after the job: $status"
out=$("$vmshadow" job verify j --config "$tmp/etc" 2>&1) || fail "job verify: $out"
# The repository is the job's: read with the same keys given another way.
list=$(VMSHADOW_S3_CONFIG=$tmp/s3-good.conf "$vmshadow" list --repo "s3://$bucket/jobs" 2>&1) \
  || fail "list: $list"
grep -qE '^[0-9]{8}T[0-9]{6}Z-[0-9a-f]+ .* j$' <<<"$list" || fail "the job's backup is not listed: $list"
echo "ok - job run, status and job verify reach s3://$bucket/jobs through the job's s3-config alone ($n objects)"

# A local job that verifies deep and syncs into the bucket after each run.
printf '[repository here]\npath = %s\n[repository off]\npath = s3://%s/synced\ns3-config = %s\n[job l]\nrepository = here\nverify-after = deep\nsync-to = off\n' \
  "$tmp/local" "$bucket" "$tmp/s3-good.conf" > "$tmp/etc/vmshadow.conf"
out=$("$vmshadow" job run l --config "$tmp/etc" --writers-dir "$tmp/writers.d" 2>&1) \
  || fail "job run with verify-after and sync-to: $out"
grep -q "Job l: verify (deep)" <<<"$out" && grep -q "Job l: sync into s3://$bucket/synced" <<<"$out" \
  || fail "the run did not say it verified and synced: $out"
id=$("$vmshadow" list --repo "$tmp/local" 2>&1 | awk '$NF == "l" { print $1 }')
[ -n "$id" ] || fail "no backup of job l in the local repository"
list=$(VMSHADOW_S3_CONFIG=$tmp/s3-good.conf "$vmshadow" list --repo "s3://$bucket/synced" 2>&1) || fail "list: $list"
grep -q "^$id " <<<"$list" || fail "backup $id was not synced into s3://$bucket/synced: $list"
out=$(VMSHADOW_S3_CONFIG=$tmp/s3-good.conf "$vmshadow" verify --deep --repo "s3://$bucket/synced" 2>&1) \
  || fail "verify --deep of the synced copy: $out"
# The sync's destination refuses (wrong secret): the backup is stored, the
# run ends with warnings (exit 3) and names the refusal.
sed -i "s|s3-config = .*|s3-config = $tmp/s3-wrong.conf|" "$tmp/etc/vmshadow.conf"
rc=0; out=$("$vmshadow" job run l --config "$tmp/etc" --writers-dir "$tmp/writers.d" 2>&1) || rc=$?
[ $rc = 3 ] || fail "a run whose sync failed exited $rc, not 3 (warnings): $out"
grep -q "SignatureDoesNotMatch\|403" <<<"$out" || fail "the failed sync is not named: $out"
[ "$("$vmshadow" list --repo "$tmp/local" 2>&1 | awk '$NF == "l"' | wc -l)" = 2 ] \
  || fail "the second backup of job l is not stored"
echo "ok - verify-after = deep and sync-to: the run's backup verified and copied into the bucket, verified deep there; a refused sync is a warning naming it, the backup stored"

# status tells the last verify; one that found damage makes the job critical.
st=$("$vmshadow" status --config "$tmp/etc" --json 2>&1) || fail "status after a passing verify: $st"
python3 - "$st" <<'PY' || fail "status --json does not give job l's last verify as deep and ok: $st"
import json, sys
c = [c for c in json.loads(sys.argv[1])["components"] if c["job"] == "l"]
assert c and all(x["last_verify"] and x["last_verify"]["deep"] and x["last_verify"]["ok"] for x in c), c
PY
victim=$(find "$tmp/local/chunks" "$tmp/local/packs" -type f -size +1k 2>/dev/null | head -n 1)
[ -n "$victim" ] || fail "no chunk or pack file to damage in $tmp/local"
flip_byte "$victim" 600
echo "verify-deep = yes" >> "$tmp/etc/vmshadow.conf"     # (job l's section is the last)
rc=0; out=$("$vmshadow" job verify l --config "$tmp/etc" 2>&1) || rc=$?
[ $rc != 0 ] || fail "job verify of a damaged repository passed: $out"
rc=0; st=$("$vmshadow" status --config "$tmp/etc" 2>&1) || rc=$?
[ $rc = 2 ] || fail "status after a verify that found damage exited $rc, not 2 (critical): $st"
grep -q "^l .* critical " <<<"$st" && grep -q "^Last verify of job l: .*, FAILED$" <<<"$st" \
  || fail "status does not show job l critical with its failed verify: $st"
echo "ok - status gives the last verify (deep, ok); after job verify finds a damaged chunk, job l is critical and its verify FAILED"
