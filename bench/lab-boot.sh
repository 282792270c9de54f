#!/bin/bash
# bench/lab-boot.sh — how long the lab guest (TCG) takes from `virsh start`
# to its guest agent's first answer, and where that time goes (issue 16:
# every VM test waits for it, about 60 boots per CI run).
#
#   flock /var/lock/vmshadow-vm-suite bench/lab-boot.sh [BOOTS]   (default 3)
#
# Each boot is the guest of guest-boots-and-agent-answers, made by
# tests/vm/lib.sh's lab_vm_create exactly as the tests make it: a 64 MiB ext4
# data disk, a NIC on a test bridge, the agent channel. The agent is awaited
# with lab_wait_agent, as the tests wait for it. Per boot it prints, from the
# moment `virsh start` is called:
#   start    virsh start returned (QEMU runs)
#   sysinit  the console shows "vmslab-init: sysinit done after U s" (host
#            time), and U, the guest's own uptime then (kernel clock: from
#            early kernel boot, after firmware and decompression)
#   qemu-ga  the console shows "starting qemu-ga"
#   agent    guest-ping answered
# VMSLAB_GUEST_APPEND adds kernel parameters (e.g. "printk.time=1
# loglevel=7 initcall_debug"); BENCH_CONSOLE=1 prints the last boot's
# serial console. Everything is removed at the end (lib.sh's EXIT trap).
set -euo pipefail
N=${1:-3}
SRC=$(cd "$(dirname "$0")/.." && pwd)
LAB_NAME=bench-lab-boot
# shellcheck source=../tests/vm/lib.sh
. "$SRC/tests/vm/lib.sh"
lab_init >/dev/null

now() { date +%s.%N; }
# watch_console FILE OUT — append "WHAT HOST-TIME [LINE]" to OUT when the
# console shows the lines above (reads on from where it stopped).
watch_console() {
    local f=$1 out=$2 line= part
    until [ -e "$f" ]; do sleep 0.02; done
    exec 7<"$f"
    while :; do
        if IFS= read -r part <&7; then
            line+=$part
            case $line in
                *"sysinit done"*) echo "sysinit $(now) $line" >>"$out" ;;
                *"starting qemu-ga"*) echo "qemu-ga $(now)" >>"$out" ;;
            esac
            line=
        else
            line+=$part
            sleep 0.02
        fi
    done
}

echo "$(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); guest $VMSLAB_GUEST_KEY, kernel $(basename "$VMSLAB_KERNEL"), initramfs $(du -h "$VMSLAB_INITRD" | cut -f1)"
echo "cmdline: ${VMSLAB_CMDLINE:-?} ${VMSLAB_GUEST_APPEND:-}"
printf '%-5s %8s %8s %8s %8s %8s\n' boot start sysinit uptime qemu-ga agent
agents=()
for i in $(seq "$N"); do
    lab_vm_create --data-disk 64M --nic bridge --no-start --name "bboot$i" >/dev/null
    dom=$LAB_DOM
    marks=$LAB_WORK/$dom.marks
    : >"$marks"
    watch_console "$LAB_WORK/$dom.console" "$marks" &
    wpid=$!
    t0=$(now)
    virsh -q start "$dom" >/dev/null || lab_fail "virsh start $dom failed"
    t_start=$(now)
    lab_wait_agent "$dom" "${BENCH_AGENT_LIMIT:-240}" >/dev/null
    t_agent=$(now)
    sleep 0.1
    kill "$wpid" 2>/dev/null; wait "$wpid" 2>/dev/null || true
    t_sys=$(awk '$1 == "sysinit" { print $2; exit }' "$marks")
    up=$(sed -n 's/.*sysinit done after \([0-9.]*\) s.*/\1/p' "$marks" | head -n 1)
    t_qga=$(awk '$1 == "qemu-ga" { print $2; exit }' "$marks")
    rel() { [ -n "$1" ] && awk -v a="$t0" -v b="$1" 'BEGIN { printf "%.2f", b - a }' || echo -; }
    a=$(rel "$t_agent")
    agents+=("$a")
    printf '%-5s %8s %8s %8s %8s %8s\n' "$i" "$(rel "$t_start")" "$(rel "$t_sys")" "${up:--}" "$(rel "$t_qga")" "$a"
    if [ "${BENCH_CONSOLE:-0}" = 1 ] && [ "$i" = "$N" ]; then
        echo "---- serial console of $dom ----"
        cat "$LAB_WORK/$dom.console"
    fi
    virsh -q destroy "$dom" >/dev/null 2>&1 || true
done
printf '%s\n' "${agents[@]}" | sort -n |
    awk '{ v[NR] = $1 } END { printf "agent answers after %s s (median of %d boots; min %s, max %s)\n", v[int((NR + 1) / 2)], NR, v[1], v[NR] }'
