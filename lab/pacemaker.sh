#!/bin/bash
# lab/pacemaker.sh — a one-node Pacemaker + Corosync cluster on loopback for
# the VM lab (issue 18, R22): what an administrator of a cluster-managed
# libvirt host runs, minus systemd, pcsd and fencing.
#
#   lab/pacemaker.sh start    install what is missing, start corosync and
#                             pacemakerd (by PID, no systemd) unless they run,
#                             wait until this node is online and DC
#   lab/pacemaker.sh stop     stop the cluster this script started (by PID)
#   lab/pacemaker.sh status   0 when our cluster runs and answers, 3 when not
#   lab/pacemaker.sh remove-resource R
#                             take resource R out of maintenance, stop it,
#                             delete it and the location constraints naming it
#   lab/pacemaker.sh resources
#                             list the lab's resources (ids vmslab-*)
#
# Idempotent.  The cluster is named "vmshadow-lab": corosync with knet on
# 127.0.0.1 (no encryption; nothing leaves the host), votequorum with one
# expected vote, this host's `uname -n` as node name.  Its configuration and
# logs live in $VMSLAB_CACHE/pacemaker (default /var/cache/vmshadow-lab);
# the host's /etc/corosync/corosync.conf is never read or written.  The CIB
# (/var/lib/pacemaker/cib) starts from a fresh one on every start: fencing
# disabled (stonith-enabled=false — for this test cluster only; a production
# cluster needs fencing), dc-deadtime 2s so the node is DC in seconds.
# The resources are made with Pacemaker's own tools (cibadmin, crm_resource):
# pcs would need pcsd (Ruby) and crmsh a Python stack that the tests do not
# need.
#
# It refuses to touch a corosync or pacemakerd it did not start (a real
# cluster on this host).  lab/cleanup.sh stops the cluster.
#
# Exit status: 0 done; 77 cannot run here (not root, packages missing and
# VMSLAB_NO_INSTALL=1, another cluster runs), reason on stderr; 1 failed.

set -uo pipefail
LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
umask 022
export LC_ALL=C

CACHE=${VMSLAB_CACHE:-/var/cache/vmshadow-lab}
DIR=$CACHE/pacemaker
RUN=/run/vmshadow-lab
COROSYNC_PID=$RUN/corosync.pid
PACEMAKERD_PID=$RUN/pacemakerd.pid
CIB_DIR=/var/lib/pacemaker/cib
CLUSTER=vmshadow-lab
PACKAGES=(corosync pacemaker pacemaker-cli-utils resource-agents)

skip() { echo "SKIP: the lab's Pacemaker cluster cannot run here: $*" >&2; exit 77; }
die()  { echo "ERROR: lab/pacemaker.sh: $*" >&2; exit 1; }
say()  { [ "${QUIET:-0}" = 1 ] || echo "lab pacemaker: $*" >&2; }

usage() { echo "usage: lab/pacemaker.sh start|stop|status|resources|remove-resource R" >&2; exit 2; }
[ $# -ge 1 ] || usage
[ "$(id -u)" = 0 ] || skip "needs root"

# The live process of a pid file, with the expected program name.
alive() {
    local pidf=$1 comm=$2 pid
    [ -s "$pidf" ] || return 1
    pid=$(cat "$pidf")
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ]
}

# Processes of that name we did not start.
foreign() {
    local comm=$1 pidf=$2 p
    for p in $(pgrep -x "$comm"); do
        [ -s "$pidf" ] && [ "$(cat "$pidf")" = "$p" ] && continue
        echo "$p"
    done
}

answers() {
    timeout 10 crm_mon -1 --output-as=xml 2>/dev/null |
        grep -q "<node name=\"$(uname -n)\"[^>]* online=\"true\"[^>]*is_dc=\"true\""
}

ensure_packages() {
    local p missing=()
    for p in "${PACKAGES[@]}"; do
        [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ] ||
            missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "${VMSLAB_NO_INSTALL:-0}" = 1 ] && skip "packages missing and VMSLAB_NO_INSTALL=1: ${missing[*]}"
    command -v apt-get >/dev/null || skip "packages missing and no apt-get: ${missing[*]}"
    say "installing ${missing[*]}"
    # apt's download lock is not covered by DPkg::Lock::Timeout: retry.
    local i
    for i in 1 2 3; do
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q \
            --no-install-recommends "${missing[@]}" >>"$DIR/install.log" 2>&1 && return 0
        sleep 5
    done
    die "apt-get install ${missing[*]} failed; see $DIR/install.log"
}

write_config() {
    local node
    node=$(uname -n)
    cat >"$DIR/corosync.conf.tmp" <<EOF
# written by lab/pacemaker.sh (vmshadow's VM lab): a one-node test cluster
totem {
    version: 2
    cluster_name: $CLUSTER
    transport: knet
    crypto_cipher: none
    crypto_hash: none
}
nodelist {
    node {
        ring0_addr: 127.0.0.1
        name: $node
        nodeid: 1
    }
}
quorum {
    provider: corosync_votequorum
    expected_votes: 1
}
logging {
    to_logfile: yes
    logfile: $DIR/corosync.log
    to_stderr: no
    to_syslog: no
    timestamp: on
}
EOF
    mv -f "$DIR/corosync.conf.tmp" "$DIR/corosync.conf"
    # A fresh CIB: no leftovers of an earlier run, fencing off, DC at once.
    # (No cib.xml.sig: Pacemaker accepts a CIB without one and writes it.)
    rm -f "$CIB_DIR"/cib*
    cat >"$CIB_DIR/cib.xml" <<EOF
<cib validate-with="pacemaker-3.9" epoch="1" num_updates="0" admin_epoch="0">
  <configuration>
    <crm_config>
      <cluster_property_set id="cib-bootstrap-options">
        <nvpair id="opt-stonith-enabled" name="stonith-enabled" value="false"/>
        <nvpair id="opt-dc-deadtime" name="dc-deadtime" value="2s"/>
        <nvpair id="opt-cluster-name" name="cluster-name" value="$CLUSTER"/>
        <nvpair id="opt-cluster-recheck" name="cluster-recheck-interval" value="1min"/>
      </cluster_property_set>
    </crm_config>
    <nodes/>
    <resources/>
    <constraints/>
  </configuration>
  <status/>
</cib>
EOF
    chown hacluster:haclient "$CIB_DIR/cib.xml" && chmod 0600 "$CIB_DIR/cib.xml" ||
        die "cannot write $CIB_DIR/cib.xml"
}

start() {
    mkdir -p "$DIR" "$RUN" || die "cannot create $DIR or $RUN"
    # One start at a time: tests that run side by side both start the
    # cluster, and a second corosync exits on the first one's port. (The
    # daemons do not keep fd 8: lab/detached closes it.)
    exec 8>"$DIR/.start-lock"
    flock 8
    ensure_packages
    local p
    p=$(foreign corosync "$COROSYNC_PID"; foreign pacemakerd "$PACEMAKERD_PID")
    [ -z "$p" ] || skip "a corosync/pacemakerd not started by lab/pacemaker.sh runs (pid $(echo $p)); the lab does not touch a real cluster"
    if alive "$COROSYNC_PID" corosync && alive "$PACEMAKERD_PID" pacemakerd; then
        answers && { say "running"; return 0; }
    else
        stop_ours
        write_config
        say "starting corosync"
        setsid "$LAB_DIR/detached" corosync -f -c "$DIR/corosync.conf" </dev/null >>"$DIR/corosync.out" 2>&1 &
        echo $! >"$COROSYNC_PID"
        local i
        for i in $(seq 100); do
            corosync-quorumtool -s >/dev/null 2>&1 && break
            alive "$COROSYNC_PID" corosync || die "corosync exited; see $DIR/corosync.log and $DIR/corosync.out"
            sleep 0.1
        done
        corosync-quorumtool -s >/dev/null 2>&1 || die "corosync is not quorate after 10 s; see $DIR/corosync.log"
        say "starting pacemakerd"
        PCMK_logfile=$DIR/pacemaker.log PCMK_logfacility=none \
            setsid "$LAB_DIR/detached" pacemakerd </dev/null >>"$DIR/pacemakerd.out" 2>&1 &
        echo $! >"$PACEMAKERD_PID"
    fi
    for i in $(seq 120); do
        answers && { say "running: node $(uname -n) online, DC"; return 0; }
        alive "$PACEMAKERD_PID" pacemakerd || die "pacemakerd exited; see $DIR/pacemaker.log"
        sleep 0.5
    done
    die "node $(uname -n) not online as DC after 60 s; see $DIR/pacemaker.log"
}

# Stop what our pid files name (SIGTERM, then SIGKILL after the wait).
stop_one() {
    local pidf=$1 comm=$2 wait=$3 pid i
    alive "$pidf" "$comm" || { rm -f "$pidf"; return 0; }
    pid=$(cat "$pidf")
    kill "$pid" 2>/dev/null
    for i in $(seq $((wait * 5))); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "$comm (pid $pid) did not stop within $wait s: killing it"
        kill -9 -- "-$pid" 2>/dev/null; kill -9 "$pid" 2>/dev/null
    fi
    rm -f "$pidf"
}

stop_ours() {
    # pacemakerd stops its resources (the lab's VMs: tests remove theirs
    # first) and its daemons, then corosync may go.
    stop_one "$PACEMAKERD_PID" pacemakerd 120
    stop_one "$COROSYNC_PID" corosync 20
}

running() {
    alive "$COROSYNC_PID" corosync && alive "$PACEMAKERD_PID" pacemakerd && answers
}

resources() {
    running || return 0
    cibadmin --query --scope resources 2>/dev/null |
        grep -o '<primitive id="vmslab-[^"]*"' | sed 's/.*id="//; s/"$//'
}

remove_resource() {
    local r=$1 i
    running || return 0
    case $r in *[!A-Za-z0-9_.-]*|"") die "bad resource id '$r'" ;; esac
    cibadmin --query --xpath "//primitive[@id='$r']" >/dev/null 2>&1 || return 0
    crm_resource --resource "$r" --meta --delete-parameter maintenance >/dev/null 2>&1
    crm_resource --resource "$r" --meta --set-parameter target-role --parameter-value Stopped >/dev/null 2>&1
    for i in $(seq 120); do
        crm_resource --resource "$r" --locate 2>/dev/null | grep -q "is running on" || break
        sleep 0.5
    done
    cibadmin --delete-all --xpath "//rsc_location[@rsc='$r']" >/dev/null 2>&1
    crm_resource --cleanup --resource "$r" >/dev/null 2>&1
    crm_resource --resource "$r" --delete --resource-type primitive >/dev/null 2>&1 ||
        die "cannot delete resource $r"
}

case $1 in
    start) start ;;
    resources) resources ;;
    remove-resource) [ $# -eq 2 ] || usage; remove_resource "$2" ;;
    stop) stop_ours; say "stopped" ;;
    status)
        if running; then
            echo "lab pacemaker: running (node $(uname -n), cluster $CLUSTER)"
            exit 0
        fi
        echo "lab pacemaker: not running"
        exit 3 ;;
    *) usage ;;
esac
exit 0
