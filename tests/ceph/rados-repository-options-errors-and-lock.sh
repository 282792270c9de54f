#!/bin/bash
# rados-repository-options-errors-and-lock (issue 12): --repo rados:POOL/NS
# on the lab's cluster takes the client options from the environment
# (VMSHADOW_RADOS_ID, VMSHADOW_RADOS_KEYRING, VMSHADOW_RADOS_CONF), says
# clearly what is wrong with a bad spec, a missing pool, a bad ceph.conf
# and a client without rights — and makes nothing then —, keeps namespaces
# apart; there is no writer lock, only leases (two backups commit at once,
# a second gc meets the first's gc/lease).
set -uo pipefail
vmshadow=$1
. "$(dirname "$0")/ceph-lib.sh"
fail () { echo "FAIL: $*"; exit 1; }
[ "$(id -u)" = 0 ] || { echo "SKIP: the lab's Ceph cluster needs root" >&2; exit 77; }
tmp=$(mktemp -d /var/tmp/vmshadow-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
ceph_lab_start
ceph_lab_namespace ns rados-options
ceph_lab_namespace ns2 rados-options-other
export VMSHADOW_SCRATCH_DIR=$tmp/scratch VMSHADOW_WRITERS_DIR=$tmp/writers.d
unset VMSHADOW_REPO VMSHADOW_REPO_FORMAT VMSHADOW_REPO_PACK_SIZE
mkdir -p "$tmp/app" "$VMSHADOW_WRITERS_DIR"
head -c 3000000 /dev/urandom > "$tmp/app/data"
. "$(dirname "$0")/../exec-writer-double.sh"
exec_writer_double "$VMSHADOW_WRITERS_DIR" "$tmp/app/data"
objects () { rados -p "$VMSLAB_CEPH_POOL" -N "$1" ls | sort; }

expect_error () {   # PATTERN CMD... : fails, exit 1, says PATTERN
  local pat=$1 rc=0
  shift
  "$@" > "$tmp/out" 2> "$tmp/err" || rc=$?
  [ $rc = 1 ] || fail "'$*' exited $rc, not 1: $(cat "$tmp/out" "$tmp/err")"
  grep -q -- "$pat" "$tmp/err" || fail "'$*' said: $(cat "$tmp/err"), not '$pat'"
}
expect_error "the form is rados:POOL or rados:POOL/NAMESPACE" "$vmshadow" --repo rados: init
expect_error "the form is rados:POOL or rados:POOL/NAMESPACE" "$vmshadow" --repo "rados:$VMSLAB_CEPH_POOL/a/b" list
expect_error "may hold only letters" "$vmshadow" --repo "rados:$VMSLAB_CEPH_POOL/a b" list
expect_error "cannot open pool vmshadow-no-such-pool: no such pool" \
  "$vmshadow" --repo rados:vmshadow-no-such-pool/x backup
expect_error "no repository at rados:$VMSLAB_CEPH_POOL/$ns" "$vmshadow" --repo "rados:$VMSLAB_CEPH_POOL/$ns" list
VMSHADOW_RADOS_CONF=$tmp/none.conf expect_error "cannot read the Ceph configuration $tmp/none.conf" \
  "$vmshadow" --repo "rados:$VMSLAB_CEPH_POOL/$ns" init
[ -z "$(objects "$ns")" ] || fail "a refused command wrote objects: $(objects "$ns")"
echo "ok - bad specs, a missing pool, a missing repository and a bad ceph.conf are named, nothing written"

# client.vmshadow (lab/ceph.sh: rights on the repositories' pool only).
export VMSHADOW_RADOS_ID=$VMSLAB_CEPH_USER VMSHADOW_RADOS_KEYRING=$VMSLAB_CEPH_USER_KEYRING
expect_error "Operation not permitted\|permission denied" \
  "$vmshadow" --repo "rados:$VMSLAB_CEPH_RBD_POOL/$ns" init
[ -z "$(rados -p "$VMSLAB_CEPH_RBD_POOL" -N "$ns" ls)" ] || fail "objects written to the rbd pool"
repo=rados:$VMSLAB_CEPH_POOL/$ns
"$vmshadow" --repo "$repo" init > "$tmp/out" || fail "init as client.vmshadow: $(cat "$tmp/out")"
"$vmshadow" --repo "$repo" backup > "$tmp/out" || fail "backup: $(cat "$tmp/out")"
"$vmshadow" --repo "$repo" verify --deep > "$tmp/out" || fail "verify: $(cat "$tmp/out")"
id=$("$vmshadow" --repo "$repo" list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["backups"][0]["backup_id"])')
"$vmshadow" --repo "$repo" extract "$id" data "$tmp/app/data" --to "$tmp/data.out" > /dev/null || fail "extract"
cmp -s "$tmp/data.out" "$tmp/app/data" || fail "extracted data differs"
objects "$ns" | grep -q '^config$' || fail "no config object: $(objects "$ns")"
objects "$ns" | grep -q "^backups/$id/manifest$" || fail "no manifest object: $(objects "$ns")"
echo "ok - client.vmshadow is refused the rbd pool and backs up, verifies and extracts in rados:$VMSLAB_CEPH_POOL/$ns"
unset VMSHADOW_RADOS_ID VMSHADOW_RADOS_KEYRING

# Namespaces are repositories of their own.
expect_error "no repository at rados:$VMSLAB_CEPH_POOL/$ns2" "$vmshadow" --repo "rados:$VMSLAB_CEPH_POOL/$ns2" list
[ -z "$(objects "$ns2")" ] || fail "objects appeared in $ns2"
echo "ok - another namespace is another (absent) repository"

# No writer lock (issue 12, docs/repository-format.md "Concurrency"): two
# backups at once both commit, each under its own session lease, gone
# after. A gc lease held by another gc refuses a second gc, naming it;
# readers go on; an expired one (a killed gc) is taken over.
"$vmshadow" --repo "$repo" backup > "$tmp/b1" 2>&1 &
p1=$!
"$vmshadow" --repo "$repo" backup > "$tmp/b2" 2>&1 &
p2=$!
wait "$p1" || fail "first of two concurrent backups: $(cat "$tmp/b1")"
wait "$p2" || fail "second of two concurrent backups: $(cat "$tmp/b2")"
[ "$("$vmshadow" --repo "$repo" list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["backups"]))')" = 3 ] ||
  fail "two concurrent backups did not both commit"
[ -z "$(objects "$ns" | grep '^sessions/')" ] || fail "session leases left: $(objects "$ns")"
echo '{"format": "vmshadow-lease", "version": 1, "host": "otherhost", "pid": 4242, "created": 0, "ttl": 600}' |
  rados -p "$VMSLAB_CEPH_POOL" -N "$ns" put gc/lease - || fail "cannot put a gc lease with the rados CLI"
expect_error "another gc is running (on otherhost, pid 4242" "$vmshadow" --repo "$repo" gc --grace 0
"$vmshadow" --repo "$repo" verify > "$tmp/out" || fail "a reader needs no lease: $(cat "$tmp/out")"
echo '{"format": "vmshadow-lease", "version": 1, "host": "otherhost", "pid": 4242, "created": 0, "ttl": 6}' |
  rados -p "$VMSLAB_CEPH_POOL" -N "$ns" put gc/lease - || fail "cannot put a gc lease with the rados CLI"
sleep 8
"$vmshadow" --repo "$repo" gc --grace 0 > "$tmp/out" || fail "gc after the other gc's lease expired: $(cat "$tmp/out")"
[ -z "$(objects "$ns" | grep -e '^gc/lease$' -e '^sessions/')" ] || fail "leases left: $(objects "$ns")"
"$vmshadow" --repo "$repo" verify --deep > "$tmp/out" || fail "verify after gc: $(cat "$tmp/out")"
echo "ok - two backups commit at once; a held gc lease refuses a second gc with its host and pid; an expired one is taken over"
