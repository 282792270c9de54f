#!/bin/bash
# with-ceph.sh CMD ARG...: start (or reuse) the lab's Ceph cluster through
# ceph-lib.sh, export CEPH_CONF and VMSLAB_CEPH_*, and run CMD (issue 12:
# the storage contract against the RADOS backend). Exits 77 with the
# reason where Ceph cannot run.
set -uo pipefail
[ "$(id -u)" = 0 ] || { echo "SKIP: the lab's Ceph cluster needs root" >&2; exit 77; }
. "$(dirname "$0")/ceph-lib.sh"
ceph_lab_start
trap - EXIT
exec "$@"
