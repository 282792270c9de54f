#!/bin/bash
# lab-ceph-cluster-is-healthy (issue 12): the lab's one-node Ceph cluster
# (lab/ceph.sh) starts, says HEALTH_OK with one OSD up, has the pools the
# tests use, stores an object and gives back the same bytes through the
# rados CLI, lets client.vmshadow into the repositories' pool only, and a
# second start reuses the running daemons.
set -uo pipefail
. "$(dirname "$0")/ceph-lib.sh"
fail () { echo "FAIL: $*"; exit 1; }
[ "$(id -u)" = 0 ] || { echo "SKIP: the lab's Ceph cluster needs root" >&2; exit 77; }

ceph_lab_start
[ "$(ceph health)" = HEALTH_OK ] || fail "ceph health: $(ceph health detail)"
ceph osd stat | grep -q '1 osds: 1 up.*1 in' || fail "osd stat: $(ceph osd stat)"
ceph osd pool application get "$VMSLAB_CEPH_POOL" | grep -q vmshadow ||
  fail "pool $VMSLAB_CEPH_POOL has no application vmshadow"
ceph osd pool application get "$VMSLAB_CEPH_RBD_POOL" | grep -q rbd ||
  fail "pool $VMSLAB_CEPH_RBD_POOL was not initialised for RBD"

ceph_lab_namespace ns lab-healthy
tmp=$(mktemp -d)
trap 'ceph_lab_empty_namespaces; rm -rf "$tmp"' EXIT
head -c 3000000 /dev/urandom > "$tmp/in"
rados -p "$VMSLAB_CEPH_POOL" -N "$ns" put object "$tmp/in" || fail "rados put"
rados -p "$VMSLAB_CEPH_POOL" -N "$ns" get object "$tmp/out" || fail "rados get"
cmp "$tmp/in" "$tmp/out" || fail "the object read back differs from what was written"
rados -p "$VMSLAB_CEPH_POOL" -N "$ns" stat object | grep -q 'size 3000000' ||
  fail "stat: $(rados -p "$VMSLAB_CEPH_POOL" -N "$ns" stat object)"
[ "$(rados -p "$VMSLAB_CEPH_POOL" -N "$ns" ls)" = object ] || fail "ls of the namespace"
rados -p "$VMSLAB_CEPH_POOL" ls | grep -qx object && fail "the namespace leaked into the default one"
echo "ok - HEALTH_OK, 1 OSD up, a 3 MB object written, read back and listed in namespace $ns"

# client.vmshadow: its own keyring, the repositories' pool only.
echo x | rados --id "$VMSLAB_CEPH_USER" -p "$VMSLAB_CEPH_POOL" -N "$ns" put user - ||
  fail "client.$VMSLAB_CEPH_USER cannot write to $VMSLAB_CEPH_POOL"
if echo x | rados --id "$VMSLAB_CEPH_USER" -p "$VMSLAB_CEPH_RBD_POOL" put user - 2>/dev/null; then
  rados -p "$VMSLAB_CEPH_RBD_POOL" rm user
  fail "client.$VMSLAB_CEPH_USER could write to pool $VMSLAB_CEPH_RBD_POOL"
fi
echo "ok - client.$VMSLAB_CEPH_USER writes to $VMSLAB_CEPH_POOL and is refused $VMSLAB_CEPH_RBD_POOL"

# Idempotent: a second start keeps the same daemons.
before=$("$ceph_lab_dir/ceph.sh" status | grep -o 'pid [0-9]*' | tr '\n' ' ')
"$ceph_lab_dir/ceph.sh" start -q || fail "second start"
after=$("$ceph_lab_dir/ceph.sh" status | grep -o 'pid [0-9]*' | tr '\n' ' ')
[ "$before" = "$after" ] || fail "a second start restarted daemons ($before -> $after)"
echo "ok - a second start reuses the running daemons ($after)"

ceph_lab_empty_namespaces
[ -z "$(rados -p "$VMSLAB_CEPH_POOL" -N "$ns" ls)" ] || fail "the test's namespace was not emptied"
echo "ok - the test's namespace is empty again"
