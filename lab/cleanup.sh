#!/bin/bash
# lab/cleanup.sh — remove everything the VM test lab (issue 3) left behind:
# libvirt domains and networks, bridges and taps named "vmslab-*", loop
# devices and qemu-nbd processes of lab work dirs, and the work dirs
# /var/tmp/vmslab-*; without --check it also stops the lab's Ceph cluster
# (lab/ceph.sh stop).  Nothing without the prefix is touched; processes are
# stopped by the pid the lab recorded, only when their command line still
# names the lab's work dir.
#
#   lab/cleanup.sh          remove leftovers, say what was removed
#   lab/cleanup.sh --check  list leftovers; exit 1 if there are any (and
#                           remove them), 0 if the machine is clean
#
# Do not run it while vm tests are running: their objects carry the prefix too.

set -uo pipefail
export LC_ALL=C LIBVIRT_DEFAULT_URI=qemu:///system
PREFIX=vmslab-
WORKROOT=/var/tmp
check=0
[ "${1:-}" = --check ] && check=1

[ "$(id -u)" = 0 ] || { echo "lab/cleanup.sh: needs root" >&2; exit 77; }

found=0
note() { found=$((found + 1)); echo "${PREFIX%-} leftover: $*"; }

# The lab's Pacemaker cluster (lab/pacemaker.sh, issue 18): its vmslab-
# resources go first (or it would start their domains again), then the
# cluster itself stops (a service like libvirtd: not a leftover).
if [ -x "$(dirname "$0")/pacemaker.sh" ]; then
    for r in $("$(dirname "$0")/pacemaker.sh" resources 2>/dev/null); do
        note "cluster resource $r"
        "$(dirname "$0")/pacemaker.sh" remove-resource "$r"
    done
    QUIET=1 "$(dirname "$0")/pacemaker.sh" stop
fi

if command -v virsh >/dev/null && timeout 10 virsh -q version >/dev/null 2>&1; then
    for d in $(virsh -q list --all --name | grep "^$PREFIX"); do
        note "domain $d"
        virsh -q destroy "$d" >/dev/null 2>&1
        virsh -q undefine "$d" --nvram --managed-save --snapshots-metadata \
            --checkpoints-metadata >/dev/null 2>&1 || virsh -q undefine "$d" >/dev/null 2>&1
    done
    # libvirt secrets of lab disks (usage names start with the prefix).
    for s in $(virsh -q secret-list 2>/dev/null | awk -v p="$PREFIX" 'index($NF, p) == 1 { print $1 }'); do
        note "secret $s"
        virsh -q secret-undefine "$s" >/dev/null 2>&1
    done
    for n in $(virsh -q net-list --all --name | grep "^$PREFIX"); do
        note "network $n"
        virsh -q net-destroy "$n" >/dev/null 2>&1
        virsh -q net-undefine "$n" >/dev/null 2>&1
    done
fi

for l in $(ip -o link show 2>/dev/null | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' | grep "^$PREFIX"); do
    note "link $l"
    ip link del "$l" 2>/dev/null
done

# The lab's iSCSI target (lab/iscsi.sh, issue 11): vmslab- targets left by
# a test are leftovers; tgtd itself is the lab's shared service, stopped here.
LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ -s /run/vmshadow-lab/tgtd.pid ]; then
    for iqn in $("$LAB_DIR/iscsi.sh" list 2>/dev/null | grep -F "$PREFIX"); do
        note "iSCSI target $iqn"
        "$LAB_DIR/iscsi.sh" remove "$iqn"
    done
    "$LAB_DIR/iscsi.sh" stop
fi

# Loop devices backed by files of lab work dirs (also deleted ones).
for dev in $(losetup -n -O NAME,BACK-FILE -l 2>/dev/null | awk -v d="$WORKROOT/$PREFIX" 'index($2, d) == 1 { print $1 }'); do
    note "loop device $dev"
    losetup -d "$dev"
done

for dir in "$WORKROOT"/"$PREFIX"*; do
    [ -d "$dir" ] || continue
    for pidf in "$dir"/*.pid; do
        [ -s "$pidf" ] || continue
        pid=$(cat "$pidf")
        if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -F >/dev/null -- "$dir/"; then
            note "process $pid ($(tr '\0' ' ' <"/proc/$pid/cmdline" | cut -c1-60))"
            kill "$pid" 2>/dev/null
            sleep 0.5
            kill -9 "$pid" 2>/dev/null
        fi
    done
    note "work dir $dir"
    rm -rf "$dir"
done

# RBD images of lab disks (issue 11: vmslab-* in the rbd pool), while the
# lab's Ceph cluster answers.
if [ -x "$LAB_DIR/ceph.sh" ] && "$LAB_DIR/ceph.sh" status >/dev/null 2>&1; then
    eval "$("$LAB_DIR/ceph.sh" env)"
    for img in $(timeout 60 rbd ls "$VMSLAB_CEPH_RBD_POOL" 2>/dev/null | grep "^$PREFIX"); do
        note "RBD image $VMSLAB_CEPH_RBD_POOL/$img"
        # (snapshots first, vmshadow's of a stopped VM's disk too: rbd rm
        # refuses an image with snapshots)
        timeout 60 rbd snap purge --no-progress "$VMSLAB_CEPH_RBD_POOL/$img" >/dev/null 2>&1
        timeout 60 rbd rm --no-progress "$VMSLAB_CEPH_RBD_POOL/$img" >/dev/null 2>&1
    done
fi

# The lab's Ceph cluster (lab/ceph.sh, issue 12) is a shared, cached service
# like libvirtd: --check (run while other tests may still use it) leaves it
# running; a plain cleanup stops its daemons (its data stays cached).
if [ $check = 0 ] && [ -x "$(dirname "$0")/ceph.sh" ]; then
    "$(dirname "$0")/ceph.sh" stop
fi

if [ $check = 1 ]; then
    [ $found = 0 ] && { echo "no ${PREFIX%-} leftovers"; exit 0; }
    exit 1
fi
echo "removed $found ${PREFIX%-} leftover(s)"
exit 0
