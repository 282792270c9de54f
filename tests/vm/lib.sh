# tests/vm/lib.sh — the shell side of vmshadow's VM test lab (issue 3).
#
# Sourced by every test of the 'vm' suite (bash).  It prepares the lab
# (lab/setup.sh, cached), makes test VMs with the disks and NICs a test asks
# for, runs commands in guests through qemu-guest-agent, drives libvirt
# backup jobs, and undoes everything it made when the test exits — passed,
# failed or killed.  Everything it makes is named with the prefix "vmslab-"
# (domains, networks, bridges, taps, work dirs under /var/tmp), and
# lab/cleanup.sh removes leftovers with that prefix; nothing else is touched.
#
# Usage in a test:
#     . "$(dirname "$0")/lib.sh"
#     lab_init                           # skip (77) or fail with one reason
#     lab_vm_create --data-disk 64M      # sets LAB_DOM
#     lab_wait_agent "$LAB_DOM"
#     out=$(lab_guest_run "$LAB_DOM" 'uname -r')
#
# Never call a function that makes something (lab_vm_create, lab_bridge_create,
# ...) inside $(...): the undo list lives in this shell.

set -euo pipefail
export LC_ALL=C
export LIBVIRT_DEFAULT_URI=qemu:///system

LAB_PREFIX=vmslab-
LAB_TESTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LAB_DIR=${VMSLAB_LAB_DIR:-$(cd "$LAB_TESTS_DIR/../../lab" && pwd)}
LAB_CACHE=${VMSLAB_CACHE:-/var/cache/vmshadow-lab}
LAB_WORKROOT=/var/tmp
LAB_NAME=${LAB_NAME:-$(basename "$0" .sh)}
LAB_WORK=
LAB_DOM=
LAB_UNDO=()
LAB_DOMS=()
LAB_SEQ=0
declare -A LAB_DISK_FILE=()    # "dom/vdb" -> image file (or loop device's file)
declare -A LAB_DISK_FMT=()     # "dom/vdb" -> qcow2 | raw
declare -A LAB_DISK_DEV=()     # "dom/vdb" -> /dev/loopN for block disks
declare -A LAB_CHANNEL=()      # "dom/NAME" -> host socket of --channel NAME
declare -A LAB_DISK_IQN=()     # "dom/vdb" -> the lab iSCSI target's IQN (LUN 1)
declare -A LAB_DISK_SECRET=()  # "dom/vdb" -> UUID of its libvirt CHAP / cephx secret
declare -A LAB_DISK_RBD=()     # "dom/vdb" -> "rbd/IMAGE" in the lab's Ceph (rbd disks)
LAB_T0=$(date +%s.%N)

# ------------------------------------------------------------------ output
# Plain exit codes for meson; lines on stdout say what was shown.
lab_log()  { echo "# $*"; }
lab_ok()   { echo "ok - $*"; }
lab_skip() { echo "SKIP: $*"; exit 77; }
lab_fail() { echo "not ok - $*" >&2; exit 1; }
lab_elapsed() { awk -v a="$LAB_T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

# lab_assert_eq WHAT GOT WANT
lab_assert_eq() {
    [ "$2" = "$3" ] || lab_fail "$1: got '$2', want '$3'"
}

# ------------------------------------------------------------------ setup
# lab_init: prepare the lab (packages, libvirtd, guest) and a work dir.
# Exits 77 with one line where the lab cannot run here, 1 where it is broken.
lab_init() {
    [ "$(id -u)" = 0 ] || lab_skip "the vm suite needs root (libvirtd, VMs, bridges, loop devices)"
    local rc=0
    "$LAB_DIR/setup.sh" --quiet || rc=$?
    case $rc in
        0) ;;
        77) exit 77 ;;    # setup.sh printed the reason
        *) echo "not ok - lab setup failed (message above); the test did not run" >&2; exit 1 ;;
    esac
    # shellcheck disable=SC1091
    . "$LAB_CACHE/lab.env"
    # QEMU's user and group as libvirt labels its processes (issue 20: the
    # lab runs libvirt as shipped, QEMU as libvirt-qemu, not root).
    local label
    label=$(virsh -q capabilities 2>/dev/null |
        sed -n "s|.*<baselabel type='kvm'>+\([0-9]*\):+\([0-9]*\)</baselabel>.*|\1 \2|p" | head -n 1)
    read -r LAB_QEMU_UID LAB_QEMU_GID <<<"$label"
    [ -n "${LAB_QEMU_GID:-}" ] ||
        { echo "not ok - libvirt reports no DAC label for QEMU (virsh capabilities); the test did not run" >&2; exit 1; }
    LAB_WORK=$(mktemp -d "$LAB_WORKROOT/${LAB_PREFIX}${LAB_NAME:0:24}.XXXXXX")
    # QEMU (group LAB_QEMU_GID) may create the sockets of the lab's own
    # backup jobs here, as an admin would allow another tool's.
    chgrp "$LAB_QEMU_GID" "$LAB_WORK" && chmod 0775 "$LAB_WORK"
    echo "$LAB_NAME $$ $(lab__started $$)" >"$LAB_WORK/owner"
    lab__reap_killed
    trap lab__on_exit EXIT
    trap 'exit 143' TERM
    trap 'exit 130' INT
    lab_log "lab ready in $(lab_elapsed) s; work dir $LAB_WORK"
}

# lab_require_probe: the libnbd test program must have been built.
lab_require_probe() {
    LAB_PROBE=${VMSLAB_NBD_PROBE:-}
    [ -n "$LAB_PROBE" ] && [ -x "$LAB_PROBE" ] ||
        lab_skip "tests/vm/nbd-probe was not built: libnbd-dev was missing when meson configured; run lab/setup.sh --packages-only, then meson setup --reconfigure"
}

# ------------------------------------------------------------------ undo
# The undo list is kept in this shell and, line by line, in $LAB_WORK/undo:
# a test killed by SIGKILL (meson's timeout) never runs its EXIT trap, and
# its running VMs would slow every later test; lab__reap_killed replays it.
lab__undo_push() {
    LAB_UNDO+=("$*")
    printf '%s\n' "$*" >>"$LAB_WORK/undo"
}

# lab__started PID: when the process started (clock ticks since boot, field
# 22 of /proc/PID/stat, read after the ')' that ends its name).
lab__started() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    stat=${stat##*) }
    awk '{ print $20 }' <<<"$stat"
}

# lab__reap_killed: undo what tests killed before their cleanup left: work
# dirs whose owner process is gone (a test that exits removes its work dir,
# or marks it "kept" under VMSLAB_KEEP=1). Live owners are never touched,
# so tests running beside this one keep what they made.  An owner is its pid
# and its start time: a test killed with the machine's session leaves a pid
# that a later process may have been given (seen in CI: a work dir whose pid
# was reused was never reaped, and its VMs were left).
lab__reap_killed() {
    # The undo goes on past what is already gone (virsh destroy of a shut-off
    # domain fails): errexit, which the tests run with, is off here only.
    # (Seen in CI: with it on, the reaper exited the test that called it at
    # its first such step, and the mark it then used kept every later reaper
    # away.)
    local -
    set +e
    local dir name pid started line i lock
    local -a undo
    for dir in "$LAB_WORKROOT/$LAB_PREFIX"*; do
        [ -f "$dir/owner" ] && [ ! -e "$dir/kept" ] && [ "$dir" != "$LAB_WORK" ] || continue
        read -r name pid started <"$dir/owner" || continue
        [[ $pid =~ ^[0-9]+$ ]] || continue
        kill -0 "$pid" 2>/dev/null && [ "$(lab__started "$pid")" = "${started:-}" ] && continue
        # One reaper per dir: a lock, not a mark, so that a reaper killed
        # mid-way does not keep the next one away.
        exec {lock}<"$dir/owner" || continue
        flock -n "$lock" || { exec {lock}<&-; continue; }
        lab_log "reaping what $name (pid $pid) left behind: it was killed before its cleanup ran"
        undo=()
        [ -f "$dir/undo" ] && mapfile -t undo <"$dir/undo"
        for ((i = ${#undo[@]} - 1; i >= 0; i--)); do
            line=${undo[i]}
            # shellcheck disable=SC2086
            lab__undo_one $line
        done
        rm -rf "$dir"
        exec {lock}<&-
    done
}

lab__undo_one() {
    local kind=$1 arg=$2 what=${3:-}
    case $kind in
        domain)
            virsh -q destroy "$arg" >/dev/null 2>&1
            virsh -q undefine "$arg" --nvram --managed-save --snapshots-metadata \
                --checkpoints-metadata >/dev/null 2>&1 ;;
        net)
            virsh -q net-destroy "$arg" >/dev/null 2>&1
            virsh -q net-undefine "$arg" >/dev/null 2>&1 ;;
        link)
            ip link del "$arg" 2>/dev/null ;;
        loop)
            losetup -d "$arg" 2>/dev/null ;;
        resource)
            # a Pacemaker resource of the test (tests/vm/cluster-lib.sh):
            # out of maintenance, stopped, deleted with its constraints
            "$LAB_DIR/pacemaker.sh" remove-resource "$arg" ;;
        cluster-node)
            # a node a test added to the lab cluster's CIB (never online)
            crm_node --force --remove "$arg" >/dev/null 2>&1 ;;
        iscsi)
            "$LAB_DIR/iscsi.sh" remove "$arg" ;;
        secret)
            virsh -q secret-undefine "$arg" >/dev/null 2>&1 ;;
        rbd)
            # an RBD image of the test in the lab's Ceph (issue 11)
            # (vmshadow's snapshots of a stopped VM's disk first: rbd rm refuses
            # an image with snapshots)
            timeout 60 rbd snap purge --no-progress "$arg" >/dev/null 2>&1
            timeout 60 rbd rm --no-progress "$arg" >/dev/null 2>&1 ;;
        pidfiles)
            # servers the test's vmshadow started detached (instant
            # recovery: nbdkit), each by the pid in its pid file under $arg,
            # only while its command line still names $arg
            local f p
            for f in "$arg"/*/*.pid; do
                [ -f "$f" ] || continue
                p=$(cat "$f" 2>/dev/null)
                [[ $p =~ ^[0-9]+$ ]] || continue
                if [ -r "/proc/$p/cmdline" ] && tr '\0' ' ' <"/proc/$p/cmdline" | grep -F >/dev/null -- "$arg"; then
                    kill "$p" 2>/dev/null
                fi
            done ;;
        sysfs)
            # a kernel setting the caller changed (a bench's), written back
            [ -w "$arg" ] && printf '%s\n' "$what" >"$arg" 2>/dev/null ;;
        pid)
            # only our own process: same pid, command line still names $what
            if [ -r "/proc/$arg/cmdline" ] && tr '\0' ' ' <"/proc/$arg/cmdline" | grep -F >/dev/null -- "$what"; then
                kill "$arg" 2>/dev/null
                local i
                for i in 1 2 3 4 5 6 7 8 9 10; do
                    kill -0 "$arg" 2>/dev/null || break
                    sleep 0.2
                done
                kill -9 "$arg" 2>/dev/null
            fi ;;
    esac
    return 0
}

# Print what helps to understand a failure: the end of each guest's console.
lab__diagnose() {
    local d
    for d in "${LAB_DOMS[@]}"; do
        if [ -s "$LAB_WORK/$d.console" ]; then
            echo "# ---- last lines of the serial console of $d ----" >&2
            tail -n 25 "$LAB_WORK/$d.console" | sed 's/^/#   /' >&2
        fi
        if [ -s "/var/log/libvirt/qemu/$d.log" ]; then
            echo "# ---- last lines of /var/log/libvirt/qemu/$d.log ----" >&2
            tail -n 5 "/var/log/libvirt/qemu/$d.log" | sed 's/^/#   /' >&2
        fi
    done
}

lab__on_exit() {
    local rc=$? i
    set +e
    trap - EXIT TERM INT
    if [ $rc -ne 0 ] && [ $rc -ne 77 ]; then
        lab__diagnose
    fi
    for ((i = ${#LAB_UNDO[@]} - 1; i >= 0; i--)); do
        # shellcheck disable=SC2086
        lab__undo_one ${LAB_UNDO[i]}
    done
    if [ -n "$LAB_WORK" ] && [ "${VMSLAB_KEEP:-0}" != 1 ]; then
        rm -rf "$LAB_WORK"
    elif [ -n "$LAB_WORK" ]; then
        : >"$LAB_WORK/kept"
    fi
    [ $rc -eq 0 ] && lab_log "passed in $(lab_elapsed) s"
    exit $rc
}

# ------------------------------------------------------------------ networks
# lab_bridge_create: a Linux bridge (ip link add ... type bridge); sets LAB_BRIDGE.
lab_bridge_create() {
    LAB_SEQ=$((LAB_SEQ + 1))
    LAB_BRIDGE=${LAB_PREFIX}b$$$LAB_SEQ
    LAB_BRIDGE=${LAB_BRIDGE:0:15}
    lab__undo_push link "$LAB_BRIDGE"
    ip link add "$LAB_BRIDGE" type bridge || lab_fail "cannot create bridge $LAB_BRIDGE"
    ip link set "$LAB_BRIDGE" up
}

# lab_network_create: a transient libvirt network without <ip> (a plain
# bridge: no dnsmasq, no iptables); sets LAB_NETWORK.
lab_network_create() {
    LAB_SEQ=$((LAB_SEQ + 1))
    LAB_NETWORK=${LAB_PREFIX}net-$$-$LAB_SEQ
    local br=${LAB_PREFIX}n$$$LAB_SEQ
    br=${br:0:15}
    cat >"$LAB_WORK/$LAB_NETWORK.xml" <<EOF
<network>
  <name>$LAB_NETWORK</name>
  <bridge name='$br' stp='off' delay='0'/>
</network>
EOF
    lab__undo_push net "$LAB_NETWORK"
    virsh -q net-create "$LAB_WORK/$LAB_NETWORK.xml" >/dev/null ||
        lab_fail "libvirt could not create network $LAB_NETWORK"
}

# ------------------------------------------------------------------ VMs
lab__size_bytes() {
    local s=$1
    case $s in
        *K) echo $((${s%K} * 1024)) ;;
        *M) echo $((${s%M} * 1024 * 1024)) ;;
        *G) echo $((${s%G} * 1024 * 1024 * 1024)) ;;
        *) echo "$s" ;;
    esac
}

# lab__disk_xml DOM TARGET KIND SIZE SERIAL — make the disk's backing store
# and append its <disk> element to LAB__XML.
lab__disk_xml() {
    local dom=$1 tgt=$2 kind=$3 size=$4 serial=$5 f serial_xml=
    [ -n "$serial" ] && serial_xml="<serial>$serial</serial>"
    case $kind in
        qcow2)
            f=$LAB_WORK/$dom-$tgt.qcow2
            qemu-img create -q -f qcow2 "$f" "$size" || lab_fail "qemu-img create $f failed"
            LAB_DISK_FILE[$dom/$tgt]=$f; LAB_DISK_FMT[$dom/$tgt]=qcow2
            LAB__XML+="    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='$f'/><target dev='$tgt' bus='virtio'/>$serial_xml</disk>"$'\n' ;;
        ext4)
            # qcow2 holding an ext4 made on the host: the guest need not spend
            # seconds of TCG time formatting it.
            f=$LAB_WORK/$dom-$tgt.qcow2
            truncate -s "$size" "$f.raw"
            mkfs.ext4 -q -F -L vmslab-data -E lazy_itable_init=0,lazy_journal_init=0 "$f.raw" ||
                lab_fail "mkfs.ext4 on $f.raw failed"
            qemu-img convert -q -f raw -O qcow2 "$f.raw" "$f" || lab_fail "qemu-img convert to $f failed"
            rm -f "$f.raw"
            LAB_DISK_FILE[$dom/$tgt]=$f; LAB_DISK_FMT[$dom/$tgt]=qcow2
            LAB__XML+="    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='$f'/><target dev='$tgt' bus='virtio'/>$serial_xml</disk>"$'\n' ;;
        raw)
            f=$LAB_WORK/$dom-$tgt.raw
            truncate -s "$size" "$f"
            LAB_DISK_FILE[$dom/$tgt]=$f; LAB_DISK_FMT[$dom/$tgt]=raw
            LAB__XML+="    <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='$f'/><target dev='$tgt' bus='virtio'/>$serial_xml</disk>"$'\n' ;;
        block)
            f=$LAB_WORK/$dom-$tgt.loop
            truncate -s "$size" "$f"
            local dev
            dev=$(losetup --find --show "$f") || lab_fail "losetup of $f failed (no free loop device?)"
            lab__undo_push loop "$dev"
            LAB_DISK_FILE[$dom/$tgt]=$f; LAB_DISK_FMT[$dom/$tgt]=raw; LAB_DISK_DEV[$dom/$tgt]=$dev
            LAB__XML+="    <disk type='block' device='disk'><driver name='qemu' type='raw'/><source dev='$dev'/><target dev='$tgt' bus='virtio'/>$serial_xml</disk>"$'\n' ;;
        nbd)
            # A network disk that can start: qemu-nbd serves a qcow2 image on a
            # Unix socket; QEMU is its NBD client.
            f=$LAB_WORK/$dom-$tgt.qcow2
            # (short names: a Unix socket path has at most 107 bytes)
            local sock=$LAB_WORK/nbd-$LAB_SEQ-$tgt.sock pidf=$LAB_WORK/nbd-$LAB_SEQ-$tgt.pid
            qemu-img create -q -f qcow2 "$f" "$size" || lab_fail "qemu-img create $f failed"
            qemu-nbd --fork --pid-file="$pidf" --persistent --shared=0 -f qcow2 \
                -x vmslab -k "$sock" "$f" || lab_fail "qemu-nbd could not serve $f"
            lab__undo_push pid "$(cat "$pidf")" "$sock"
            # libvirt labels no network disk: QEMU's group must be let in
            # to the socket, as an admin would do.
            chgrp "$LAB_QEMU_GID" "$sock" && chmod 0660 "$sock" ||
                lab_fail "cannot open $sock to QEMU's group $LAB_QEMU_GID"
            LAB_DISK_FILE[$dom/$tgt]=$f; LAB_DISK_FMT[$dom/$tgt]=qcow2
            LAB__XML+="    <disk type='network' device='disk'><driver name='qemu' type='raw'/><source protocol='nbd' name='vmslab'><host transport='unix' socket='$sock'/></source><target dev='$tgt' bus='virtio'/>$serial_xml</disk>"$'\n' ;;
        iscsi-lun|lun|hostdev)
            # A LUN of the lab's iSCSI target (lab/iscsi.sh: tgtd on
            # 127.0.0.1:3261), a file on the host behind it. iscsi-lun: a disk
            # QEMU reads through libiscsi, with CHAP whose password is a
            # libvirt secret (issue 11); lun: the same as a pass-through SCSI
            # LUN (device='lun'); hostdev: as a SCSI host device.
            f=$LAB_WORK/$dom-$tgt.lun
            truncate -s "$size" "$f"
            local iqn=iqn.2024-01.org.vmshadow.lab:${LAB_PREFIX}$$-$LAB_SEQ-$tgt rc=0
            local user= pass= auth_xml=
            if [ "$kind" = iscsi-lun ]; then
                user=vmslab$$ pass=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
            fi
            "$LAB_DIR/iscsi.sh" add "$iqn" "$f" $user $pass >/dev/null || rc=$?
            [ $rc = 77 ] && lab_skip "the lab's iSCSI target cannot run here (lab/iscsi.sh said why above)"
            [ $rc = 0 ] || lab_fail "lab/iscsi.sh add $iqn failed"
            lab__undo_push iscsi "$iqn"
            if [ -n "$user" ]; then
                local usage=${LAB_PREFIX}$$-$LAB_SEQ-$tgt uuid
                uuid=$(cat /proc/sys/kernel/random/uuid)
                printf "<secret ephemeral='no' private='no'><uuid>%s</uuid><usage type='iscsi'><target>%s</target></usage></secret>" "$uuid" "$usage" >"$LAB_WORK/$usage.secret.xml"
                virsh -q secret-define "$LAB_WORK/$usage.secret.xml" >/dev/null ||
                    lab_fail "virsh secret-define for $iqn failed"
                lab__undo_push secret "$uuid"
                virsh -q secret-set-value "$uuid" --base64 "$(printf %s "$pass" | base64)" >/dev/null 2>&1 ||
                    lab_fail "virsh secret-set-value $uuid failed"
                auth_xml="<auth username='$user'><secret type='iscsi' usage='$usage'/></auth>"
                LAB_DISK_SECRET[$dom/$tgt]=$uuid
            fi
            LAB_DISK_FILE[$dom/$tgt]=$f; LAB_DISK_FMT[$dom/$tgt]=raw; LAB_DISK_IQN[$dom/$tgt]=$iqn
            local src="<source protocol='iscsi' name='$iqn/1'><host name='127.0.0.1' port='3261'/>$auth_xml</source>"
            case $kind in
                iscsi-lun) LAB__XML+="    <disk type='network' device='disk'><driver name='qemu' type='raw'/>$src<target dev='$tgt' bus='virtio'/>$serial_xml</disk>"$'\n' ;;
                lun) LAB__XML+="    <disk type='network' device='lun'><driver name='qemu' type='raw'/>$src<target dev='s${tgt#v}' bus='scsi'/></disk>"$'\n'
                     LAB__SCSI=1 ;;
                hostdev) LAB__XML+="    <hostdev mode='subsystem' type='scsi'>$src</hostdev>"$'\n'
                         LAB__SCSI=1 ;;
            esac ;;
        rbd)
            # An RBD image in the lab's one-node Ceph cluster (lab/ceph.sh,
            # pool rbd), opened by QEMU's rbd driver (qemu-block-extra) with
            # cephx: client.admin's key is a libvirt secret of type ceph
            # (issue 11). Images are named vmslab-*; lab/cleanup.sh removes
            # leftovers.
            local rc=0 img=${LAB_PREFIX}$$-$LAB_SEQ-$tgt uuid key
            "$LAB_DIR/ceph.sh" start -q || rc=$?
            [ $rc = 77 ] && lab_skip "the lab's Ceph cluster cannot run here (lab/ceph.sh said why above)"
            [ $rc = 0 ] || lab_fail "lab/ceph.sh start failed (exit $rc)"
            eval "$("$LAB_DIR/ceph.sh" env)"
            timeout 60 rbd create --size "$(($(lab__size_bytes "$size") / 1048576))" "rbd/$img" ||
                lab_fail "rbd create rbd/$img failed"
            lab__undo_push rbd "rbd/$img"
            key=$(timeout 30 ceph auth get-key client.admin) || lab_fail "ceph auth get-key client.admin failed"
            uuid=$(cat /proc/sys/kernel/random/uuid)
            printf "<secret ephemeral='no' private='no'><uuid>%s</uuid><usage type='ceph'><name>%s</name></usage></secret>" "$uuid" "$img" >"$LAB_WORK/$img.secret.xml"
            virsh -q secret-define "$LAB_WORK/$img.secret.xml" >/dev/null ||
                lab_fail "virsh secret-define for rbd/$img failed"
            lab__undo_push secret "$uuid"
            # the key is base64 already: libvirt keeps its bytes
            virsh -q secret-set-value "$uuid" --base64 "$key" >/dev/null 2>&1 ||
                lab_fail "virsh secret-set-value $uuid failed"
            LAB_DISK_SECRET[$dom/$tgt]=$uuid; LAB_DISK_RBD[$dom/$tgt]=rbd/$img; LAB_DISK_FMT[$dom/$tgt]=raw
            LAB__XML+="    <disk type='network' device='disk'><driver name='qemu' type='raw'/><source protocol='rbd' name='rbd/$img'><host name='127.0.0.1' port='6789'/></source><auth username='admin'><secret type='ceph' uuid='$uuid'/></auth><target dev='$tgt' bus='virtio'/>$serial_xml</disk>"$'\n' ;;
        iscsi)
            # Unreachable on purpose (TEST-NET-1): such a VM can be defined and
            # inspected, never started.
            LAB__XML+="    <disk type='network' device='disk'><driver name='qemu' type='raw'/><source protocol='iscsi' name='iqn.2024-01.org.vmshadow.lab:unreachable/0'><host name='192.0.2.1' port='3260'/></source><target dev='$tgt' bus='virtio'/>$serial_xml</disk>"$'\n' ;;
        *) lab_fail "unknown disk kind '$kind' (qcow2, raw, block, nbd, iscsi, iscsi-lun, rbd, lun, hostdev, ext4)" ;;
    esac
}

# lab_vm_create [options] — define a test VM and (unless --no-start) start it.
#   --disk KIND:SIZE[:SERIAL]  KIND qcow2|raw|block|nbd|iscsi|ext4 (a qcow2 holding an
#                              ext4 made on the host); targets vda, vdb, ... in order.
#                              iscsi-lun (a LUN of the lab's tgt, CHAP with a libvirt
#                              secret), lun (one as device='lun', target sdX), hostdev
#                              (one as a SCSI <hostdev>) need lab/iscsi.sh; rbd (an
#                              image in the lab's Ceph, cephx key a libvirt secret)
#                              needs lab/ceph.sh.
#                              The guest mounts the disk with serial vmslab-data on
#                              /data (formatting it first when blank).
#   --data-disk SIZE           = --disk ext4:SIZE:vmslab-data
#   --no-agent                 no qemu-guest-agent channel
#   --channel NAME             a virtio-serial port NAME; its host end is the Unix
#                              socket LAB_CHANNEL[dom/NAME] (QEMU listens)
#   --nic bridge|network       a virtio NIC on a new test bridge / libvirt network
#   --memory MIB               guest RAM (default 192)
#   --name NAME                domain name suffix (default: the test's name)
#   --no-start                 define only
# Sets LAB_DOM to the domain's name.
lab_vm_create() {
    local disks=() agent=1 nics=() mem=192 start=1 suffix=$LAB_NAME channels=()
    while [ $# -gt 0 ]; do
        case $1 in
            --channel) channels+=("$2"); shift ;;
            --disk) disks+=("$2"); shift ;;
            --data-disk) disks+=("ext4:$2:vmslab-data"); shift ;;
            --no-agent) agent=0 ;;
            --nic) nics+=("$2"); shift ;;
            --memory) mem=$2; shift ;;
            --name) suffix=$2; shift ;;
            --no-start) start=0 ;;
            *) lab_fail "lab_vm_create: unknown option $1" ;;
        esac
        shift
    done
    LAB_SEQ=$((LAB_SEQ + 1))
    local dom=${LAB_PREFIX}${suffix}-$$-$LAB_SEQ
    local xml=$LAB_WORK/$dom.xml i=0 spec kind size serial tgt
    local letters=abcdefghijklmnopqrstuvwxyz
    LAB__XML=
    LAB__SCSI=0
    for spec in "${disks[@]}"; do
        IFS=: read -r kind size serial <<<"$spec"
        tgt=vd${letters:i:1}
        i=$((i + 1))
        [ "$kind" = iscsi ] && [ $start = 1 ] &&
            lab_fail "lab_vm_create: an iscsi disk is unreachable; use it with --no-start"
        lab__disk_xml "$dom" "$tgt" "$kind" "${size:-64M}" "${serial:-}"
    done
    local devs=$LAB__XML
    [ "$LAB__SCSI" = 1 ] && devs+="    <controller type='scsi' model='virtio-scsi'/>"$'\n'
    local nic
    for nic in "${nics[@]}"; do
        LAB_SEQ=$((LAB_SEQ + 1))
        local tap=${LAB_PREFIX}t$$$LAB_SEQ
        tap=${tap:0:15}
        case $nic in
            bridge)
                lab_bridge_create
                devs+="    <interface type='bridge'><source bridge='$LAB_BRIDGE'/><target dev='$tap'/><model type='virtio'/><rom enabled='no'/></interface>"$'\n' ;;
            network)
                lab_network_create
                devs+="    <interface type='network'><source network='$LAB_NETWORK'/><target dev='$tap'/><model type='virtio'/><rom enabled='no'/></interface>"$'\n' ;;
            *) lab_fail "lab_vm_create: --nic bridge or --nic network, not '$nic'" ;;
        esac
    done
    if [ $agent = 1 ]; then
        devs+="    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>"$'\n'
    fi
    local ch
    for ch in "${channels[@]}"; do
        LAB_SEQ=$((LAB_SEQ + 1))
        LAB_CHANNEL[$dom/$ch]=$LAB_WORK/ch$LAB_SEQ.sock
        devs+="    <channel type='unix'><source mode='bind' path='$LAB_WORK/ch$LAB_SEQ.sock'/><target type='virtio' name='$ch'/></channel>"$'\n'
    done
    cat >"$xml" <<EOF
<domain type='qemu'>
  <name>$dom</name>
  <memory unit='MiB'>$mem</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$VMSLAB_KERNEL</kernel>
    <initrd>$VMSLAB_INITRD</initrd>
    <cmdline>${VMSLAB_CMDLINE:-console=ttyS0 loglevel=4 panic=0}${VMSLAB_GUEST_APPEND:+ $VMSLAB_GUEST_APPEND}</cmdline>
  </os>
  <features><acpi/></features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>$(command -v qemu-system-x86_64)</emulator>
$devs    <serial type='file'><source path='$LAB_WORK/$dom.console' append='on'/><target port='0'/></serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
    LAB_DOMS+=("$dom")
    lab__undo_push domain "$dom"
    virsh -q define "$xml" >/dev/null || lab_fail "virsh define $dom failed (XML in $xml)"
    if [ $start = 1 ]; then
        virsh -q start "$dom" >/dev/null || lab_fail "virsh start $dom failed"
    fi
    LAB_DOM=$dom
    lab_log "domain $dom: ${disks[*]:-no disks}${nics:+, nic ${nics[*]}}, agent=$agent, started=$start"
}

# ------------------------------------------------------------------ agent
# lab_agent DOM JSON — one agent command; prints the reply's "return" (JSON).
lab_agent() {
    local out
    out=$(virsh qemu-agent-command --timeout 10 "$1" "$2" 2>&1) || {
        echo "agent command $2 on $1 failed: $out" >&2
        return 1
    }
    jq -c '.return' <<<"$out"
}

# lab_wait_agent DOM [SECONDS] — until guest-ping answers (default 240 s:
# a boot under TCG on a loaded 2-core machine has taken over 90 s; this is
# a readiness wait, not a measure).
lab_wait_agent() {
    local dom=$1 limit=${2:-240} t0 out
    t0=$(date +%s)
    while :; do
        if out=$(virsh qemu-agent-command --timeout 2 "$dom" '{"execute":"guest-ping"}' 2>&1); then
            lab_log "agent of $dom answers after $(($(date +%s) - t0)) s"
            return 0
        fi
        case $out in
            *"not configured"*) lab_fail "$dom has no guest agent channel: $out" ;;
            *"domain is not running"*) lab_fail "$dom stopped while waiting for its agent" ;;
        esac
        [ $(($(date +%s) - t0)) -lt "$limit" ] ||
            lab_fail "guest agent of $dom did not answer within $limit s (last error: $out)"
        sleep 0.3
    done
}

# lab_guest_exec DOM COMMAND [STDIN-FILE] — run "sh -c COMMAND" in the guest
# through guest-exec; its stdout to stdout, stderr to stderr; returns its
# exit status (124 when it runs longer than LAB_EXEC_TIMEOUT, default 120 s).
lab_guest_exec() {
    local dom=$1 cmd=$2 input=${3:-} req reply pid st t0
    req=$(jq -cn --arg c "$cmd" '{execute: "guest-exec", arguments: {path: "/bin/sh", arg: ["-c", $c], "capture-output": true}}')
    if [ -n "$input" ]; then
        req=$(jq -c --arg d "$(base64 -w0 <"$input")" '.arguments["input-data"] = $d' <<<"$req")
    fi
    reply=$(lab_agent "$dom" "$req") || return 125
    pid=$(jq -r '.pid' <<<"$reply")
    t0=$(date +%s)
    while :; do
        st=$(lab_agent "$dom" "{\"execute\":\"guest-exec-status\",\"arguments\":{\"pid\":$pid}}") || return 125
        [ "$(jq -r '.exited' <<<"$st")" = true ] && break
        if [ $(($(date +%s) - t0)) -ge "${LAB_EXEC_TIMEOUT:-120}" ]; then
            echo "guest command timed out after ${LAB_EXEC_TIMEOUT:-120} s: $cmd" >&2
            return 124
        fi
        sleep 0.05
    done
    jq -r '.["out-data"] // ""' <<<"$st" | base64 -d
    jq -r '.["err-data"] // ""' <<<"$st" | base64 -d >&2
    if [ "$(jq -r '.signal // empty' <<<"$st")" != "" ]; then
        echo "guest command killed by signal $(jq -r '.signal' <<<"$st"): $cmd" >&2
        return 126
    fi
    return "$(jq -r '.exitcode // 255' <<<"$st")"
}

# lab_guest_run DOM COMMAND [STDIN-FILE] — lab_guest_exec, failing the test
# when the command fails.
lab_guest_run() {
    local rc=0
    lab_guest_exec "$@" || rc=$?
    [ $rc -eq 0 ] || lab_fail "guest command failed (exit $rc) in $1: $2"
}

# lab_guest_put DOM LOCAL-FILE GUEST-PATH [MODE] — copy a file into the guest.
lab_guest_put() {
    lab_guest_run "$1" "cat > '$3' && chmod ${4:-644} '$3'" "$2"
}

# ------------------------------------------------------------------ backups
# lab_backup_begin DOM SOCKET DISKS [CHECKPOINT [INCREMENTAL-FROM]]
# Start a pull-mode backup job: every disk in DISKS (space separated targets)
# is exported over NBD on the Unix socket SOCKET under its target name, with
# a qcow2 scratch file in the work dir.  With CHECKPOINT, a checkpoint of
# those disks is created in the same transaction; with INCREMENTAL-FROM, the
# export also offers qemu:dirty-bitmap:backup-<disk> (what changed since that
# checkpoint).  Other disks take no part.
lab_backup_begin() {
    local dom=$1 sock=$2 want=" $3 " cp=${4:-} from=${5:-} t
    local bxml=$LAB_WORK/$dom-backup-${cp:-nocp}.xml cxml=$LAB_WORK/$dom-checkpoint-${cp:-nocp}.xml
    {
        echo "<domainbackup mode='pull'>"
        [ -n "$from" ] && echo "  <incremental>$from</incremental>"
        echo "  <server transport='unix' socket='$sock'/>"
        echo "  <disks>"
        for t in $(virsh -q domblklist "$dom" | awk '{ print $1 }'); do
            if [[ $want == *" $t "* ]]; then
                echo "    <disk name='$t' backup='yes' type='file'><scratch file='$LAB_WORK/$dom-$t-scratch-${cp:-nocp}.qcow2'/></disk>"
            else
                echo "    <disk name='$t' backup='no'/>"
            fi
        done
        echo "  </disks>"
        echo "</domainbackup>"
    } >"$bxml"
    if [ -n "$cp" ]; then
        {
            echo "<domaincheckpoint><name>$cp</name><disks>"
            for t in $(virsh -q domblklist "$dom" | awk '{ print $1 }'); do
                if [[ $want == *" $t "* ]]; then
                    echo "  <disk name='$t' checkpoint='bitmap'/>"
                else
                    echo "  <disk name='$t' checkpoint='no'/>"
                fi
            done
            echo "</disks></domaincheckpoint>"
        } >"$cxml"
        virsh -q backup-begin "$dom" "$bxml" "$cxml" >/dev/null ||
            lab_fail "virsh backup-begin $dom (checkpoint $cp${from:+, incremental from $from}) failed"
    else
        virsh -q backup-begin "$dom" "$bxml" >/dev/null ||
            lab_fail "virsh backup-begin $dom failed"
    fi
    lab_log "backup job on $dom: disks$want-> $sock${cp:+ checkpoint $cp}${from:+ incremental from $from}"
}

# lab_backup_end DOM — end the pull-mode backup job (the checkpoint stays).
lab_backup_end() {
    virsh -q domjobabort "$1" >/dev/null || lab_fail "virsh domjobabort $1 failed"
    local i
    for i in $(seq 50); do
        virsh -q domjobinfo "$1" 2>/dev/null | grep >/dev/null 'Job type:.*None' && return 0
        sleep 0.1
    done
    lab_fail "backup job of $1 did not end"
}
