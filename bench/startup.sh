#!/bin/bash
# bench/startup.sh — the fixed cost of starting and ending a vmshadow
# process (issue 15), for one or more builds side by side. Not a test: it
# prints figures.
#
#   bench/startup.sh BUILD-DIR [BUILD-DIR...]
#
# Per build:
#   libraries   how many shared objects `vmshadow` and `vmshadow-guard` map
#               at start (ldd), and the symbol relocations ld.so does
#               (LD_DEBUG=statistics)
#   instr       instructions of `vmshadow --version` and of `vmshadow list`
#               on an empty local repository, counted by valgrind's
#               callgrind: independent of the machine's load
#   warm        wall time of `vmshadow --version`, median of STARTUP_RUNS
#               (default 21) runs, page cache warm, and the CPU time of all
#               of them (run it under bench's quiet lock for a figure)
#   cold        STARTUP_COLD=1 (root): the same with the page cache dropped
#               before each of 5 runs, as bench/vm-writer.sh's incremental
#               starts
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 BUILD-DIR [BUILD-DIR...]" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "valgrind is needed" >&2; exit 1; }
RUNS=${STARTUP_RUNS:-21}
WORK=$(mktemp -d /var/tmp/vms-startup.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

now() { date +%s%N; }
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
# instr CMD...: instructions CMD executes (callgrind's total).
instr() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 >/dev/null |
        awk '/Collected :/ { print $NF }'
}
# walls CMD...: wall time of each of RUNS runs, ms, one a line.
walls() {
    for _ in $(seq "$RUNS"); do
        t0=$(now); "$@" >/dev/null; echo $((($(now) - t0) / 1000000))
    done
}

i=0
for b in "$@"; do
    i=$((i + 1))
    v=$(realpath "$b")/cli/vmshadow g=$(realpath "$b")/writers/libvirt/vmshadow-guard
    [ -x "$v" ] || { echo "no $v" >&2; exit 1; }
    echo "== $v ($(git -C "$(dirname "$v")" rev-parse --short HEAD 2>/dev/null || echo '?'))"
    relocs=$(LD_DEBUG=statistics "$v" --version 2>&1 >/dev/null |
                 awk '/final number of relocations:/ { print $NF; exit }')
    echo "libraries    vmshadow $(ldd "$v" | grep -c '=>'), vmshadow-guard" \
         "$( [ -x "$g" ] && ldd "$g" | grep -c '=>' || echo '-'); symbol relocations at start: $relocs"
    repo=$WORK/repo-$i
    "$v" --repo "$repo" init >/dev/null
    echo "instr        --version $(instr "$v" --version), list (empty repository)" \
         "$(instr "$v" --repo "$repo" list)"
    w=$(walls "$v" --version | median)
    cpu=$(/usr/bin/time -f '%U %S' sh -c 'for _ in $(seq "$1"); do "$2" --version; done' \
              sh "$RUNS" "$v" 2>&1 >/dev/null | tail -n 1)
    echo "warm         --version median $w ms wall of $RUNS; CPU" \
         "$(echo "$cpu" | awk -v n="$RUNS" '{ printf "%.0f ms user + %.0f ms system", $1 * 1000 / n, $2 * 1000 / n }')" \
         "a run; load average $(cut -d' ' -f1 /proc/loadavg)"
    if [ "${STARTUP_COLD:-0}" = 1 ]; then
        c=$(for _ in 1 2 3 4 5; do
                sync; echo 3 >/proc/sys/vm/drop_caches
                t0=$(now); "$v" --version >/dev/null; echo $((($(now) - t0) / 1000000))
            done | median)
        echo "cold         --version median $c ms wall of 5, page cache dropped before each"
    fi
done
