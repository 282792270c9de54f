#!/bin/bash
# no-lab-leftovers: runs last; after the suite no vmslab- domain, network,
# bridge, tap, loop device, qemu-nbd or work dir is left on the machine
# (each test undoes what it made, also on failure).  Any leftover fails the
# test and is removed by lab/cleanup.sh.
[ "$(id -u)" = 0 ] || { echo "SKIP: the vm suite needs root"; exit 77; }
lab=${VMSLAB_LAB_DIR:-$(dirname "$0")/../../lab}
# What a test killed by its timeout (SIGKILL: no cleanup) left is undone
# first and named: that test already failed, and the check below is about
# tests that ran their cleanup and still left something.
# shellcheck disable=SC1091
. "$(dirname "$0")/lib.sh"
set +e
lab__reap_killed
if "$lab/cleanup.sh" --check; then
    echo "ok - no vmslab leftovers"
    exit 0
fi
echo "not ok - vm tests left the objects listed above behind (now removed)" >&2
exit 1
