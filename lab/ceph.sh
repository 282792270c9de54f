#!/bin/bash
# lab/ceph.sh — a single-node Ceph cluster for vmshadow's tests (issue 12;
# shared with issue 11's RBD disks and issue 14's S3 gateway).
#
#   lab/ceph.sh start [-q]   start it (build it the first time); idempotent
#   lab/ceph.sh stop         stop the daemons this script started
#   lab/ceph.sh status       say whether it runs and answers (exit 0 if so)
#   lab/ceph.sh env          print the shell lines tests eval:
#                              eval "$(lab/ceph.sh env)"
#   lab/ceph.sh reset        stop and delete the cluster's data
#   lab/ceph.sh rgw [-q]     start the cluster and its RADOS Gateway (S3 on
#                            127.0.0.1:$VMSLAB_RGW_PORT, default 7480) with a
#                            test user; idempotent; 'env' then also prints
#                            VMSLAB_S3_* (endpoint, the user's keys)
#
# One monitor (mon.a), one manager (mgr.x) and one OSD (osd.0, BlueStore on a
# sparse plain file — no ceph-volume, no LVM, no loop device, no systemd),
# all on 127.0.0.1, tuned for 2 cores and little memory: one op shard, a
# 1 GiB OSD memory target, pools of size 1 with 8 placement groups.  Pools:
# "vmshadow" (repositories, rados:vmshadow/NAMESPACE — tests use a namespace
# each) and "rbd" (rbd pool init).  A second client, client.vmshadow, may use
# only the vmshadow pool (tests of --rados-id and of refused access).
#
# Data, logs, ceph.conf and keyrings live in $VMSLAB_CEPH_DIR (default
# /var/cache/vmshadow-lab/ceph) and survive a stop: the next start only
# starts the daemons.  A cluster that does not come back healthy is rebuilt
# once.  ceph.conf names the admin keyring, so CEPH_CONF is all a client
# (rados, rbd, ceph, librados) needs.
#
# Exit status: 0 ready; 77 Ceph cannot run here (reason on stderr: not root,
# packages missing and installing forbidden or impossible); 1 broken (one
# message on stderr; details in $VMSLAB_CEPH_DIR/ceph-lab.log and log/).
#
# Environment: VMSLAB_CACHE (default /var/cache/vmshadow-lab),
# VMSLAB_CEPH_DIR (default $VMSLAB_CACHE/ceph), VMSLAB_NO_INSTALL=1 (never
# run apt-get; skip instead), VMSLAB_CEPH_OSD_SIZE (the OSD file's size,
# default 40G, sparse).

set -uo pipefail
LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
umask 022
export LC_ALL=C

CACHE=${VMSLAB_CACHE:-/var/cache/vmshadow-lab}
D=${VMSLAB_CEPH_DIR:-$CACHE/ceph}
CONF=$D/ceph.conf
LOG=$D/ceph-lab.log
POOL=vmshadow
RBD_POOL=rbd
OSD_SIZE=${VMSLAB_CEPH_OSD_SIZE:-40G}
# Bump when the layout below changes: an older cluster is rebuilt.
LAYOUT=1
QUIET=0

PACKAGES=(ceph-mon ceph-mgr ceph-osd ceph-common)
# Issue 14: the S3 gateway (lab/ceph.sh rgw), installed only when asked for.
RGW_PORT=${VMSLAB_RGW_PORT:-7480}
RGW_UID=vmshadow-lab
RGW_UID2=vmshadow-lab-other

say()  { [ "$QUIET" = 1 ] || echo "ceph-lab: $*" >&2; }
skip() { echo "SKIP: the lab's Ceph cluster cannot run here: $*" >&2; exit 77; }
die()  { echo "ERROR: the lab's Ceph cluster: $*" >&2; exit 1; }

usage() {
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
}

# run DESCRIPTION CMD... — a step with its output in the log; on failure the
# step's last lines go to stderr.
run() {
    local what=$1 out rc=0
    shift
    out=$(mktemp)
    "$@" >"$out" 2>&1 || rc=$?
    { echo "== $(date '+%F %T') $what: $*"; cat "$out"; } >>"$LOG"
    if [ $rc -ne 0 ]; then
        echo "---- $what: $* (exit $rc) ----" >&2
        tail -n 15 "$out" >&2
        echo "----" >&2
    fi
    rm -f "$out"
    return $rc
}

ceph_cli() { timeout 30 ceph --conf "$CONF" "$@"; }

# ---------------------------------------------------------------- packages
ensure_packages() {
    [ $# -gt 0 ] || set -- "${PACKAGES[@]}"
    command -v dpkg-query >/dev/null || {
        for c in ceph-mon ceph-mgr ceph-osd ceph rados; do
            command -v $c >/dev/null || skip "not a Debian system and $c is not installed"
        done
        return 0
    }
    local p st missing=()
    for p in "$@"; do
        st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)
        [ "$st" = installed ] || missing+=("$p")
    done
    [ ${#missing[@]} = 0 ] && return 0
    [ "${VMSLAB_NO_INSTALL:-0}" = 1 ] &&
        skip "packages missing and VMSLAB_NO_INSTALL=1: ${missing[*]}"
    command -v apt-get >/dev/null || skip "packages missing and no apt-get: ${missing[*]}"
    say "installing: ${missing[*]}"
    run "apt-get update" apt-get -o DPkg::Lock::Timeout=600 update -q ||
        skip "apt-get update failed (no package mirror reachable?); packages missing: ${missing[*]}"
    run "apt-get install" env DEBIAN_FRONTEND=noninteractive \
        apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}" ||
        die "apt-get install of '${missing[*]}' failed (see above); fix apt, then rerun lab/ceph.sh start"
}

# ---------------------------------------------------------------- daemons
# A daemon's pid file holds a pid; it is ours only while that process's
# command line still names our ceph.conf.
daemon_pid() {
    local f=$D/run/$1.pid pid
    [ -s "$f" ] || return 1
    pid=$(cat "$f")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$CONF" || return 1
    echo "$pid"
}

daemon_running() { daemon_pid "$1" >/dev/null; }

start_daemon() {   # NAME BINARY ID (client.X: a full name; radosgw ignores -i)
    local name=$1 bin=$2 id=$3 idarg=(-i "$3")
    [[ $id == client.* ]] && idarg=(-n "$id")
    daemon_running "$name" && return 0
    # detached: the daemon must not inherit (and hold) the lab lock.
    run "start $name" "$LAB_DIR/detached" "$bin" --conf "$CONF" "${idarg[@]}" || return 1
    local i
    for i in $(seq 1 50); do
        daemon_running "$name" && return 0
        sleep 0.2
    done
    echo "ceph-lab: $name did not start; see $D/log/$name.log" >&2
    tail -n 15 "$D/log/$name.log" >&2 2>/dev/null
    return 1
}

stop_daemon() {
    local name=$1 pid i
    pid=$(daemon_pid "$name") || { rm -f "$D/run/$name.pid"; return 0; }
    kill "$pid" 2>/dev/null
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "$name ($pid) did not stop in 20 s; killing it"
        kill -9 "$pid" 2>/dev/null
    fi
    rm -f "$D/run/$name.pid"
}

stop_all() {
    stop_daemon client.rgw.lab
    stop_daemon osd.0
    stop_daemon mgr.x
    stop_daemon mon.a
}

# ---------------------------------------------------------------- build
write_conf() {
    local fsid=$1
    cat >"$CONF.tmp" <<EOF
# Written by lab/ceph.sh (layout $LAYOUT): the vmshadow lab's one-node cluster.
[global]
fsid = $fsid
mon initial members = a
mon host = [v2:127.0.0.1:3300,v1:127.0.0.1:6789]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
run dir = $D/run
pid file = $D/run/\$name.pid
log to stderr = false
err to stderr = true
crash dir = $D/crash
# one node, one OSD: pools of one replica, no redundancy warnings
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
# the lab shares its disk with everything else
mon data avail warn = 2
mon data avail crit = 1
# 2 cores, little memory
ms async op threads = 1
osd op num shards = 1
osd op num threads per shard = 2
osd memory target = 1073741824
osd memory base = 268435456
osd memory cache min = 134217728
bluestore cache autotune = true
osd scrub load threshold = 0.5

# daemons: admin sockets and logs; clients (rados, librados in vmshadow):
# neither (several clients at once would fight over one socket name)
[mon]
admin socket = $D/run/\$name.asok
log file = $D/log/\$name.log
[mgr]
admin socket = $D/run/\$name.asok
log file = $D/log/\$name.log
[osd]
admin socket = $D/run/\$name.asok
log file = $D/log/\$name.log
[client]
admin socket =
log file =

[mon.a]
mon data = $D/mon.a

[mgr.x]
mgr data = $D/mgr.x
mgr initial modules = iostat

[osd.0]
osd data = $D/osd.0
osd objectstore = bluestore
bluestore block create = true
bluestore block size = $(numfmt --from=iec "$OSD_SIZE")
bluestore min alloc size = 4096
bdev enable discard = false
osd crush update on start = true

[client.admin]
keyring = $D/admin.keyring

[client.vmshadow]
keyring = $D/vmshadow.keyring

# Issue 14: the RADOS Gateway (lab/ceph.sh rgw): S3 on loopback only, few
# threads, no usage or ops logs, no resharding; "localhost" as its DNS name
# so that BUCKET.localhost reaches a bucket (virtual-host addressing; curl
# resolves *.localhost to the loopback address itself).
[client.rgw.lab]
keyring = $D/rgw.keyring
admin socket = $D/run/\$name.asok
log file = $D/log/\$name.log
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw dns name = localhost
rgw thread pool size = 16
rgw enable usage log = false
rgw enable ops log = false
rgw dynamic resharding = false
EOF
    mv "$CONF.tmp" "$CONF"
}

wait_for() {   # SECONDS WHAT CMD...
    local secs=$1 what=$2 i
    shift 2
    for i in $(seq 1 "$secs"); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 1
    done
    echo "ceph-lab: timed out after ${secs} s waiting for $what" >&2
    return 1
}

mon_answers() { ceph_cli mon stat; }
osd_up() { ceph_cli osd dump --format json | grep -q '"up":1'; }
mgr_active() { ceph_cli mgr dump --format json | grep -q '"available":true'; }
# Every placement group active+clean (a restarted OSD's PGs are "stale" at
# first, and health may still say HEALTH_OK from before).
pgs_clean() {
    local st
    st=$(ceph_cli pg stat 2>/dev/null) || return 1
    [[ $st =~ ^([0-9]+)\ pgs:\ ([0-9]+)\ active\+clean\; ]] &&
        [ "${BASH_REMATCH[1]}" = "${BASH_REMATCH[2]}" ]
}
healthy() { [ "$(ceph_cli health 2>/dev/null)" = HEALTH_OK ] && pgs_clean; }

build() {
    local fsid uuid secret
    say "building a one-node cluster in $D"
    case $D in /|/var|/var/cache|/var/lib|"$CACHE") die "refusing to use $D as the cluster's directory" ;; esac
    rm -rf "$D"
    mkdir -p "$D/run" "$D/log" "$D/crash" "$D/mon.a" "$D/mgr.x" "$D/osd.0"
    : >"$LOG"
    fsid=$(cat /proc/sys/kernel/random/uuid)
    echo "$fsid" >"$D/fsid"
    write_conf "$fsid"

    run "mon keyring" ceph-authtool --create-keyring "$D/mon.keyring" --gen-key -n mon. \
        --cap mon 'allow *' || return 1
    run "admin keyring" ceph-authtool --create-keyring "$D/admin.keyring" --gen-key \
        -n client.admin --cap mon 'allow *' --cap osd 'allow *' --cap mds 'allow *' \
        --cap mgr 'allow *' || return 1
    run "import admin key" ceph-authtool "$D/mon.keyring" --import-keyring "$D/admin.keyring" || return 1
    run "monmap" monmaptool --create --addv a '[v2:127.0.0.1:3300,v1:127.0.0.1:6789]' \
        --fsid "$fsid" "$D/monmap" || return 1
    run "mon mkfs" ceph-mon --conf "$CONF" --mkfs -i a --monmap "$D/monmap" \
        --keyring "$D/mon.keyring" || return 1
    start_daemon mon.a ceph-mon a || return 1
    wait_for 60 "the monitor" mon_answers || return 1

    run "mgr key" ceph_cli auth get-or-create mgr.x mon 'allow profile mgr' osd 'allow *' \
        mds 'allow *' -o "$D/mgr.x/keyring" || return 1
    start_daemon mgr.x ceph-mgr x || return 1

    uuid=$(cat /proc/sys/kernel/random/uuid)
    secret=$(ceph-authtool --gen-print-key) || return 1
    printf '{"cephx_secret": "%s"}\n' "$secret" >"$D/osd-secret.json"
    run "osd new" ceph_cli osd new "$uuid" 0 -i "$D/osd-secret.json" || return 1
    rm -f "$D/osd-secret.json"
    run "osd keyring" ceph-authtool --create-keyring "$D/osd.0/keyring" --name osd.0 \
        --add-key "$secret" || return 1
    say "making the OSD's BlueStore ($OSD_SIZE sparse file)"
    run "osd mkfs" ceph-osd --conf "$CONF" -i 0 --mkfs --osd-uuid "$uuid" || return 1
    start_daemon osd.0 ceph-osd 0 || return 1
    wait_for 120 "the OSD to be up" osd_up || return 1

    run "pool $POOL" ceph_cli osd pool create "$POOL" 8 8 || return 1
    run "pool $POOL application" ceph_cli osd pool application enable "$POOL" vmshadow || return 1
    run "pool $RBD_POOL" ceph_cli osd pool create "$RBD_POOL" 8 8 || return 1
    run "rbd pool init" timeout 60 rbd --conf "$CONF" pool init "$RBD_POOL" || return 1
    run "client.vmshadow" ceph_cli auth get-or-create client.vmshadow mon 'profile simple-rados-client' \
        osd "allow rwx pool=$POOL" -o "$D/vmshadow.keyring" || return 1
    echo "$LAYOUT $(ceph-mon --version | awk '{print $3}')" >"$D/layout"
    return 0
}

write_env() {
    cat >"$D/ceph.env.tmp" <<EOF
export CEPH_CONF=$CONF
export VMSLAB_CEPH_CONF=$CONF
export VMSLAB_CEPH_KEYRING=$D/admin.keyring
export VMSLAB_CEPH_POOL=$POOL
export VMSLAB_CEPH_RBD_POOL=$RBD_POOL
export VMSLAB_CEPH_USER=vmshadow
export VMSLAB_CEPH_USER_KEYRING=$D/vmshadow.keyring
EOF
    # The gateway's users (lab/ceph.sh rgw), once made.
    [ -s "$D/rgw.env" ] && cat "$D/rgw.env" >>"$D/ceph.env.tmp"
    mv "$D/ceph.env.tmp" "$D/ceph.env"
}

current() {
    [ -s "$D/layout" ] && [ -s "$CONF" ] && [ -s "$D/fsid" ] &&
        [ "$(cat "$D/layout")" = "$LAYOUT $(ceph-mon --version | awk '{print $3}')" ]
}

start_existing() {
    # The tuning above may have changed since the cluster was built.
    write_conf "$(cat "$D/fsid")" || return 1
    start_daemon mon.a ceph-mon a || return 1
    wait_for 60 "the monitor" mon_answers || return 1
    start_daemon mgr.x ceph-mgr x || return 1
    start_daemon osd.0 ceph-osd 0 || return 1
    wait_for 120 "the OSD to be up" osd_up || return 1
}

wait_healthy() {
    wait_for 180 "an active manager" mgr_active || return 1
    wait_for 180 "HEALTH_OK" healthy || {
        ceph_cli health detail >&2
        return 1
    }
}

cmd_start() {
    [ "$(id -u)" = 0 ] || skip "needs root (it starts ceph-mon, ceph-mgr and ceph-osd)"
    mkdir -p "$CACHE" || die "cannot create $CACHE"
    ensure_packages
    for c in ceph-mon ceph-mgr ceph-osd ceph rados rbd ceph-authtool monmaptool; do
        command -v $c >/dev/null || skip "$c is not installed (packages: ${PACKAGES[*]})"
    done
    mkdir -p "$D" || die "cannot create $D"
    exec 9>"$CACHE/.ceph-lock"
    flock 9
    : >>"$LOG" || die "cannot write $LOG"

    # The configuration may have changed since the cluster was built (the
    # daemons read it when they start, clients every time).
    current && write_conf "$(cat "$D/fsid")"
    if daemon_running mon.a && daemon_running mgr.x && daemon_running osd.0 && current &&
        healthy; then
        write_env
        return 0
    fi
    if current; then
        say "starting the cluster in $D"
        if start_existing && wait_healthy; then
            write_env
            say "ready (HEALTH_OK)"
            return 0
        fi
        say "the cached cluster did not come back healthy; rebuilding it"
        stop_all
    else
        stop_all
    fi
    build || { stop_all; die "building the cluster failed; see $LOG and $D/log/"; }
    wait_healthy || { stop_all; die "the new cluster is not healthy; see $LOG and $D/log/"; }
    write_env
    say "ready (HEALTH_OK)"
}

# ---------------------------------------------------------------- gateway
rgw_answers() {
    [ "$(curl -s -o /dev/null -m 5 -w '%{http_code}' "http://127.0.0.1:$RGW_PORT/")" = 200 ]
}

rgw_admin() { timeout 60 radosgw-admin --conf "$CONF" "$@"; }

rand_key() {   # LENGTH CHARSET
    local k
    k=$(LC_ALL=C tr -dc "$2" </dev/urandom | head -c "$1")
    echo "$k"
}

# A user of the gateway with keys of our making, once (VAR prefix, uid).
rgw_user() {
    local var=$1 uid=$2 ak sk
    # Made before (rgw.env goes with the cluster's directory).
    if [ -s "$D/rgw.env" ] && grep -q "^export ${var}_SECRET_ACCESS_KEY=" "$D/rgw.env"; then
        grep -m1 "^export ${var}_ACCESS_KEY_ID=" "$D/rgw.env" >>"$D/rgw.env.tmp"
        grep -m1 "^export ${var}_SECRET_ACCESS_KEY=" "$D/rgw.env" >>"$D/rgw.env.tmp"
        return 0
    fi
    if ! rgw_admin user info --uid="$uid" >/dev/null 2>&1; then
        ak=$(rand_key 20 A-Z0-9)
        sk=$(rand_key 40 A-Za-z0-9)
        run "rgw user $uid" rgw_admin user create --uid="$uid" \
            --display-name="vmshadow lab $uid" --access-key="$ak" --secret-key="$sk" || return 1
        echo "export ${var}_ACCESS_KEY_ID=$ak" >>"$D/rgw.env.tmp"
        echo "export ${var}_SECRET_ACCESS_KEY=$sk" >>"$D/rgw.env.tmp"
        return 0
    fi
    # The user exists but its keys were lost: new ones.
    run "rgw user $uid rm" rgw_admin user rm --uid="$uid" --purge-data || return 1
    rgw_user "$var" "$uid"
}

cmd_rgw() {
    local t0 t1
    cmd_start   # holds the lab lock (fd 9) from here on
    ensure_packages radosgw
    for c in radosgw radosgw-admin curl; do
        command -v $c >/dev/null || skip "$c is not installed (packages: radosgw curl)"
    done
    if [ ! -s "$D/rgw.keyring" ]; then
        run "client.rgw.lab" ceph_cli auth get-or-create client.rgw.lab mon 'allow rw' \
            osd 'allow rwx' mgr 'allow rw' -o "$D/rgw.keyring" ||
            die "cannot make the gateway's key; see $LOG"
    fi
    if ! daemon_running client.rgw.lab || ! rgw_answers; then
        stop_daemon client.rgw.lab
        say "starting the RADOS Gateway on 127.0.0.1:$RGW_PORT"
        t0=$(date +%s%N)
        start_daemon client.rgw.lab radosgw client.rgw.lab || die "the gateway did not start; see $D/log/"
        wait_for 180 "the gateway to answer on 127.0.0.1:$RGW_PORT" rgw_answers || {
            stop_daemon client.rgw.lab
            die "the gateway does not answer; see $D/log/client.rgw.lab.log"
        }
        t1=$(date +%s%N)
        echo "$(( (t1 - t0) / 1000000 ))" >"$D/rgw-start-ms"
        say "the gateway answers after $(( (t1 - t0) / 1000000 )) ms"
    fi
    : >"$D/rgw.env.tmp"
    rgw_user VMSLAB_S3 "$RGW_UID" && rgw_user VMSLAB_S3_OTHER "$RGW_UID2" ||
        die "cannot make the gateway's test users; see $LOG"
    echo "export VMSLAB_S3_ENDPOINT=http://127.0.0.1:$RGW_PORT" >>"$D/rgw.env.tmp"
    echo "export VMSLAB_S3_REGION=us-east-1" >>"$D/rgw.env.tmp"
    mv "$D/rgw.env.tmp" "$D/rgw.env"
    chmod 600 "$D/rgw.env"
    write_env
}

cmd_stop() {
    [ "$(id -u)" = 0 ] || skip "needs root"
    [ -d "$D" ] || return 0
    mkdir -p "$CACHE"
    exec 9>"$CACHE/.ceph-lock"
    flock 9
    stop_all
}

cmd_status() {
    local n rc=0
    for n in mon.a mgr.x osd.0 client.rgw.lab; do
        if daemon_running "$n"; then
            echo "$n: running (pid $(daemon_pid "$n"))"
        elif [ $n = client.rgw.lab ]; then
            echo "$n: not running (lab/ceph.sh rgw starts it)"
        else
            echo "$n: stopped"
            rc=1
        fi
    done
    [ $rc = 0 ] || return 3
    ceph_cli -s || return 1
}

case ${1:-} in
    start)
        [ "${2:-}" = -q ] || [ "${2:-}" = --quiet ] && QUIET=1
        cmd_start ;;
    rgw)
        [ "${2:-}" = -q ] || [ "${2:-}" = --quiet ] && QUIET=1
        cmd_rgw ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env)
        [ -s "$D/ceph.env" ] || die "no cluster yet: run lab/ceph.sh start"
        cat "$D/ceph.env" ;;
    reset)
        cmd_stop
        rm -rf "$D" ;;
    -h|--help) usage ;;
    *) usage >&2; exit 2 ;;
esac
