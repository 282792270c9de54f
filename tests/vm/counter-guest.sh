#!/bin/sh
# counter-guest.sh — the guest half of the consistency group test's counter
# (issue 17; the host half and the protocol: tests/vm/counter-driver.c).
# Run in the lab guest from the test:
#   counter-guest.sh run FILE     answer the driver on the virtio-serial port
#                                 "vmslab.counter": each "tick N" writes N to
#                                 FILE (on the frozen file system) and acks
#   counter-guest.sh freeze|thaw  the fsfreeze hook: ask the counter to pause
#                                 (and wait until every guest holds the same
#                                 N) / to resume
# No fork per tick: the shell's own echo writes FILE; the freeze flushes it.
export PATH=/usr/bin:/bin:/usr/sbin:/sbin
d=/run/vmslab/counter
case $1 in
    run)
        dev=
        for p in /sys/class/virtio-ports/*; do
            [ "$(cat "$p/name" 2>/dev/null)" = vmslab.counter ] && dev=/dev/${p##*/}
        done
        [ -n "$dev" ] || { echo "counter-guest: no vmslab.counter port" >&2; exit 1; }
        mkdir -p "$d"
        rm -f "$d/want-pause" "$d/want-resume" "$d/paused"
        exec 3<>"$dev"
        paused=0
        # A read returns end-of-file while no host end is connected.
        while :; do
        while read -r cmd n <&3; do
            case $cmd in
                tick) echo "$n" >"$2"; echo "ack $n" >&3 ;;
                paused) : >"$d/paused" ;;
            esac
            if [ $paused = 0 ] && [ -e "$d/want-pause" ]; then
                paused=1
                echo pause >&3
            elif [ $paused = 1 ] && [ -e "$d/want-resume" ]; then
                rm -f "$d/want-pause" "$d/want-resume" "$d/paused"
                paused=0
                echo resume >&3
            fi
        done
        usleep 50000
        done ;;
    freeze)
        mkdir -p "$d"
        rm -f "$d/want-resume" "$d/paused"
        : >"$d/want-pause"
        i=0
        while [ ! -e "$d/paused" ]; do
            i=$((i + 1))
            [ $i -le 2000 ] || { echo "counter-guest: not paused in 20 s" >&2; exit 1; }
            usleep 10000
        done ;;
    thaw)
        [ -e "$d/want-pause" ] && : >"$d/want-resume"
        exit 0 ;;
    *) echo "usage: counter-guest.sh run FILE | freeze | thaw" >&2; exit 2 ;;
esac
