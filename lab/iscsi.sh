#!/bin/bash
# lab/iscsi.sh — the lab's iSCSI target (issue 11): tgt's tgtd, all in user
# space, listening on 127.0.0.1:3261 only, reached by QEMU's libiscsi
# (qemu-block-extra) over loopback.  One tgtd serves every test; each test
# adds its own targets (IQNs with "vmslab-" in them) and removes them.
#
#   lab/iscsi.sh start                 start tgtd unless it runs (installs tgt
#                                      and qemu-block-extra when missing)
#   lab/iscsi.sh add IQN FILE [USER PASSWORD]
#                                      a target IQN whose LUN 1 is FILE, for
#                                      127.0.0.1 only, with CHAP when USER is given
#   lab/iscsi.sh lun IQN N FILE        one more LUN N of target IQN
#   lab/iscsi.sh remove IQN            delete the target (and its CHAP account)
#   lab/iscsi.sh list                  the IQNs of the targets
#   lab/iscsi.sh stop                  stop tgtd (lab/cleanup.sh does)
#
# Exit status 0; 77 when the lab cannot run an iSCSI target here (reason on
# stderr); 1 on failure.  tgtd is stopped by the pid this script recorded,
# only while its command line is still ours.
set -uo pipefail
LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export LC_ALL=C

PORT=3261
CONTROL=17                      # tgtadm's management socket /var/run/tgtd/socket.17
RUN=/run/vmshadow-lab
PIDFILE=$RUN/tgtd.pid
LOG=$RUN/tgtd.log
PREFIX=vmslab-

die()  { echo "lab/iscsi.sh: $*" >&2; exit 1; }
skip() { echo "SKIP: lab iSCSI target cannot run here: $*" >&2; exit 77; }
adm()  { tgtadm -C "$CONTROL" --lld iscsi "$@"; }

[ "$(id -u)" = 0 ] || skip "needs root"
mkdir -p "$RUN" || die "cannot create $RUN"
exec 8>"$RUN/iscsi.lock"
flock 8

running() {
    local pid
    pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
    [ -r "/proc/$pid/cmdline" ] &&
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "^tgtd -f -C $CONTROL "
}

ensure_packages() {
    local p missing=()
    for p in tgt qemu-block-extra; do
        [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ] || missing+=("$p")
    done
    [ ${#missing[@]} = 0 ] && return 0
    [ "${VMSLAB_NO_INSTALL:-0}" = 1 ] && skip "packages missing and VMSLAB_NO_INSTALL=1: ${missing[*]}"
    command -v apt-get >/dev/null || skip "packages missing and no apt-get: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q \
        --no-install-recommends "${missing[@]}" >>"$LOG" 2>&1 ||
        { apt-get -o DPkg::Lock::Timeout=600 update -q >>"$LOG" 2>&1 &&
          DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q \
              --no-install-recommends "${missing[@]}" >>"$LOG" 2>&1; } ||
        die "apt-get install ${missing[*]} failed (see $LOG)"
}

start() {
    running && return 0
    ensure_packages
    # Foreground (-f) in a session of its own: its pid is the one we record.
    setsid "$LAB_DIR/detached" tgtd -f -C "$CONTROL" --iscsi portal=127.0.0.1:$PORT </dev/null >>"$LOG" 2>&1 &
    local pid=$! i
    echo "$pid" >"$PIDFILE"
    # Alive is "the process we started exists, not a zombie", not running(): until
    # lab/detached has closed its fds and exec'd tgtd, its command line is
    # the wrapper's, which read as "exited at once" on a loaded machine.
    for i in $(seq 50); do
        adm --op show --mode target >/dev/null 2>&1 && return 0
        [[ $(sed -n 's/^.*) \(.\).*/\1/p' "/proc/$pid/stat" 2>/dev/null) =~ ^[^Z]$ ]] ||
            die "tgtd exited at once: $(tail -n 3 "$LOG" | tr '\n' ' ')"
        sleep 0.1
    done
    die "tgtd did not answer on its control port $CONTROL within 5 s"
}

tid_of() {   # IQN -> tid, or nothing
    adm --op show --mode target | awk -v q="$1" '$1 == "Target" && $3 == q { sub(":", "", $2); print $2 }'
}

case ${1:-} in
    start) start ;;
    add)
        [ $# -ge 3 ] || die "usage: add IQN FILE [USER PASSWORD]"
        case $2 in *"$PREFIX"*) ;; *) die "a lab IQN must contain $PREFIX: $2" ;; esac
        start
        [ -n "$(tid_of "$2")" ] && die "target $2 exists"
        tid=$(adm --op show --mode target | awk '$1 == "Target" { sub(":", "", $2); if ($2 > m) m = $2 } END { print m + 1 }')
        adm --op new --mode target --tid "$tid" -T "$2" || die "cannot make target $2"
        adm --op new --mode logicalunit --tid "$tid" --lun 1 -b "$3" ||
            { adm --op delete --mode target --tid "$tid" --force; die "cannot add $3 as LUN 1 of $2"; }
        adm --op bind --mode target --tid "$tid" -I 127.0.0.1 || die "cannot bind $2 to 127.0.0.1"
        if [ $# -ge 5 ]; then
            adm --op new --mode account --user "$4" --password "$5" || die "cannot make CHAP account $4"
            adm --op bind --mode account --tid "$tid" --user "$4" || die "cannot bind CHAP account $4 to $2"
        fi
        echo "$tid" ;;
    lun)
        [ $# -eq 4 ] || die "usage: lun IQN N FILE"
        tid=$(tid_of "$2")
        [ -n "$tid" ] || die "no target $2"
        adm --op new --mode logicalunit --tid "$tid" --lun "$3" -b "$4" || die "cannot add $4 as LUN $3 of $2" ;;
    remove)
        [ $# -eq 2 ] || die "usage: remove IQN"
        running || exit 0
        tid=$(tid_of "$2")
        [ -n "$tid" ] || exit 0
        users=$(adm --op show --mode target | awk -v t="$tid" '
            $1 == "Target" { sub(":", "", $2); cur = $2 }
            /Account information:/ { acc = 1; next }
            /ACL information:/ { acc = 0 }
            acc && cur == t && NF == 1 { print $1 }')
        adm --op delete --mode target --tid "$tid" --force || die "cannot delete target $2"
        for u in $users; do
            adm --op delete --mode account --user "$u" 2>/dev/null
        done ;;
    list)
        running || exit 0
        adm --op show --mode target | awk '$1 == "Target" { print $3 }' ;;
    stop)
        running || { rm -f "$PIDFILE"; exit 0; }
        pid=$(cat "$PIDFILE")
        # tgtd ignores SIGTERM while it has targets; this asks it to end.
        tgtadm -C "$CONTROL" --op delete --mode system --force >/dev/null 2>&1
        for _ in $(seq 30); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
        rm -f "$PIDFILE" ;;
    *) die "usage: lab/iscsi.sh start|add|lun|remove|list|stop" ;;
esac
