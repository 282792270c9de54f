#!/bin/bash
# bench/guest-freeze.sh — what guest processing and consistency groups cost
# the freeze window (issue 17), under the VM lab (TCG guests, real
# libvirtd, QEMU and qemu-ga; docs/vm-lab.md). Not a test: it prints
# figures and the targets next to them.
#
#   sudo bench/guest-freeze.sh [BUILD-DIR [RUNS]]       (default: build 5)
#
#   agent-1      freeze window of `vmshadow backup` of one idle VM with no
#                guest side (the agent's own freeze, the job's begin, the
#                thaw): the limit measured the same way, median
#   guest-1      freeze window (freeze_window_ms) of `vmshadow backup
#                --guest-processing required` of that VM with vmshadow-guest
#                installed as its fsfreeze hook and two guest writers (each a
#                shell script that logs the event), median
#   group-3      freeze window of `vmshadow backup --group` of three such VMs
#                (no guest writers): median over runs of the largest window
# Targets (issue 17): guest-1 - agent-1 <= 150 ms; group-3 <= 300 ms.
set -euo pipefail
BENCH_ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(realpath "${1:-$BENCH_ROOT/build}")
RUNS=${2:-5}
VMSHADOW=$BUILD/cli/vmshadow
VMSHADOW_GUEST_BINARY=$BUILD/guest/vmshadow-guest
[ -x "$VMSHADOW" ] && [ -x "$VMSHADOW_GUEST_BINARY" ] ||
    { echo "no $VMSHADOW or $VMSHADOW_GUEST_BINARY: build first (ninja -C $BUILD)" >&2; exit 1; }
export VMSLAB_LAB_DIR=$BENCH_ROOT/lab VMSHADOW VMSHADOW_GUEST_BINARY
LAB_NAME=guest-freeze-bench
# shellcheck disable=SC1091
. "$BENCH_ROOT/tests/vm/lib.sh"
lab_init
# shellcheck disable=SC1091
. "$BENCH_ROOT/tests/vm/vm-writer-lib.sh"
vmw_init
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
verdict() { awk -v v="$1" -v t="$2" 'BEGIN { print (v + 0 <= t + 0) ? "meets" : "MISSES" }'; }
window_of() { jq -r --arg u "$(virsh domuuid "$1")" '.components[] | select(.component == $u) | .freeze_window_ms' "$VMW_SUMMARY"; }

echo "# vmshadow $("$VMSHADOW" --version 2>/dev/null | head -n 1), $(nproc) CPUs, TCG guests, $RUNS runs per figure, load $(cut -d' ' -f1-3 /proc/loadavg)"
doms=()
for n in 1 2 3; do
    lab_vm_create --data-disk 64M --memory 128 --name "gfb$n"
    doms+=("$LAB_DOM")
    lab_wait_agent "$LAB_DOM" 240 >/dev/null
done
d=${doms[0]}

agent=()
for i in $(seq "$RUNS"); do
    vmw_backup "$d" || lab_fail "plain backup failed: $(vmw_backup_failure)"
    agent+=("$(window_of "$d")")
done

"$VMSHADOW" guest install "$d" >/dev/null
for w in 10-a 20-b; do
    printf '#!/bin/sh\necho "$1" >>/run/%s.log\n[ "$1" = identify ] && echo '"'"'{"format":"vmshadow-writer-metadata","version":1,"writer":{"name":"%s","id":"%s"},"components":[]}'"'"'\nexit 0\n' \
        "$w" "$w" "$(cat /proc/sys/kernel/random/uuid)" >"$LAB_WORK/$w"
    lab_guest_put "$d" "$LAB_WORK/$w" "/etc/vmshadow/guest-writers.d/$w" 755
done
guest=()
for i in $(seq "$RUNS"); do
    vmw_backup --guest-processing required "$d" || lab_fail "guest backup failed: $(vmw_backup_failure)"
    guest+=("$(window_of "$d")")
done

group=()
VMW_REPO=$LAB_WORK/repo-group
for i in $(seq "$RUNS"); do
    vmw_backup --group "${doms[@]}" || lab_fail "group backup failed: $(vmw_backup_failure)"
    m=0
    for x in "${doms[@]}"; do w=$(window_of "$x"); [ "$w" -gt "$m" ] && m=$w; done
    group+=("$m")
done

a=$(printf '%s\n' "${agent[@]}" | median)
g=$(printf '%s\n' "${guest[@]}" | median)
p=$(printf '%s\n' "${group[@]}" | median)
extra=$(awk -v g="$g" -v a="$a" 'BEGIN { printf "%.0f", g - a }')
echo "agent-1  ${agent[*]} ms -> median $a ms (no guest side)"
echo "guest-1  ${guest[*]} ms -> median $g ms; $extra ms more than agent-1 (target <= 150 ms more): $(verdict "$extra" 150)"
echo "group-3  ${group[*]} ms -> median of the largest window $p ms (target <= 300 ms): $(verdict "$p" 300)"
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
