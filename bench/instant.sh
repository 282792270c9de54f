#!/bin/bash
# bench/instant.sh — instant recovery (issue 16, R25): the time from
# `vmshadow restore --instant` to a running VM and to its guest agent, and
# the mover's throughput against a plain restore of the same disk, both
# measured in the same run.
#
#   flock /var/lock/vmshadow-vm-suite bench/instant.sh [BUILD-DIR] [SIZE-GIB]
#                                       (defaults: build, 4)
#
# A stopped lab VM (vmslab-bench-ir-<pid>, TCG, the lab's kernel and
# initramfs, a guest agent channel) has one qcow2 disk of SIZE GiB: 1 GiB
# random, the same GiB again, then zeros (unallocated). It is backed up
# (offline) into a fresh repository. Then, page cache dropped before each:
#   restore   VM undefined, image deleted; `vmshadow restore` (image
#             recreated from the repository, defined): its time and MiB/s
#   instant   VM undefined, image deleted; `vmshadow restore --instant`:
#             time to the VM running, to its guest agent's first answer,
#             to the end of the move (the VM on its final image, nothing
#             of the backup used); the mover's MiB/s (of data and of
#             virtual size) and its time against the plain restore's
#   steps     where the time to the agent goes, from the command's start:
#             the exports serving (nbdkit ready) and the overlays made
#             (vmshadow's debug lines), the VM defined and started
#             (post-restore done), the guest's console: "sysinit done
#             after U s" (U: the guest kernel's own clock, so firmware and
#             kernel loading took the rest) and "starting qemu-ga", the
#             agent's answer as vmshadow saw it (agent_ms), the move's start
# Work files (about 3 GiB + the disk) go to a fresh directory under
# $BENCH_DIR (default /var/tmp, reachable by QEMU), removed at the end.
set -euo pipefail
export LC_ALL=C LIBVIRT_DEFAULT_URI=qemu:///system

BUILD=$(realpath "${1:-build}")
SIZE=${2:-4}
VMSHADOW=$BUILD/cli/vmshadow
SRC=$(cd "$(dirname "$0")/.." && pwd)
[ -x "$VMSHADOW" ] || { echo "no $VMSHADOW: build first (ninja -C $BUILD)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "needs root (libvirt, page cache)" >&2; exit 1; }
[ "$SIZE" -ge 3 ] || { echo "SIZE-GIB must be at least 3 (2 GiB of data)" >&2; exit 1; }
export VMSHADOW_NBDKIT_PLUGIN=${VMSHADOW_NBDKIT_PLUGIN:-$BUILD/plugins/nbdkit/nbdkit-vmshadow-plugin.so}
[ -f "$VMSHADOW_NBDKIT_PLUGIN" ] || { echo "no $VMSHADOW_NBDKIT_PLUGIN" >&2; exit 1; }
"$SRC/lab/setup.sh" --quiet
. /var/cache/vmshadow-lab/lab.env
WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/vmslab-bench-ir-XXXXXX")
chmod 755 "$WORK"
DOM=vmslab-bench-ir-$$
export VMSHADOW_VM_STATE_DIR=$WORK/state VMSHADOW_WRITERS_DIR=$WORK/writers.d
export VMSHADOW_INSTANT_DIR=$WORK/instant
cleanup() {
  virsh -q destroy "$DOM" >/dev/null 2>&1 || true
  virsh -q undefine "$DOM" >/dev/null 2>&1 || true
  # the exports this run started, by their pid files
  for f in "$VMSHADOW_INSTANT_DIR"/*/*.pid; do
    [ -f "$f" ] || continue
    p=$(cat "$f"); grep -qF "$WORK" "/proc/$p/cmdline" 2>/dev/null && kill "$p"
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
GiB=$((1024 * 1024 * 1024))
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc -l; }
mkdir -p "$WORK/state" "$WORK/writers.d"
echo "$(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); vmshadow $VMSHADOW; work dir $WORK"

echo "making the $SIZE GiB disk (1 GiB random, the same again, zeros)"
head -c $GiB /dev/urandom > "$WORK/rand"
IMG=$WORK/disk.qcow2
cat "$WORK/rand" "$WORK/rand" > "$WORK/data.raw"
rm -f "$WORK/rand"
truncate -s "${SIZE}G" "$WORK/data.raw"
qemu-img convert -q -f raw -O qcow2 "$WORK/data.raw" "$IMG"
rm -f "$WORK/data.raw"

cat > "$WORK/dom.xml" <<XML
<domain type='qemu'>
  <name>$DOM</name>
  <memory unit='MiB'>160</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>$VMSLAB_KERNEL</kernel>
    <initrd>$VMSLAB_INITRD</initrd><cmdline>${VMSLAB_CMDLINE:-console=ttyS0 loglevel=4 panic=0}</cmdline></os>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <emulator>$(command -v qemu-system-x86_64)</emulator>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='$IMG'/><target dev='vda' bus='virtio'/></disk>
    <serial type='file'><source path='$WORK/console.log'/><target port='0'/></serial>
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
    <controller type='usb' model='none'/><memballoon model='none'/>
  </devices>
</domain>
XML
virsh -q define "$WORK/dom.xml" >/dev/null
"$VMSHADOW" --repo "$WORK/repo" backup --json "$DOM" > "$WORK/backup.json"
BID=$(jq -r .backup_id "$WORK/backup.json")
echo "backup $BID"

forget() { virsh -q destroy "$DOM" >/dev/null 2>&1 || true
           virsh -q undefine "$DOM" >/dev/null; rm -f "$IMG" "$WORK/console.log"; }
forget
drop
t0=$(now)
"$VMSHADOW" --repo "$WORK/repo" restore "$BID" > "$WORK/restore.out"
t1=$(now)
REST=$(secs "$t0" "$t1")

forget
drop
t0=$(now)
# (debug lines: each carries the seconds since vmshadow began)
VMSHADOW_DEBUG=1 "$VMSHADOW" --repo "$WORK/repo" restore --instant --json "$BID" > "$WORK/instant.json" 2> "$WORK/instant.err" &
pid=$!
while [ "$(virsh -q domstate "$DOM" 2>/dev/null | head -n 1)" != running ]; do
  kill -0 $pid 2>/dev/null || { echo "restore --instant ended before the VM ran: $(cat "$WORK/instant.err")" >&2; exit 1; }
  sleep 0.05
done
t_run=$(now)
# the agent is awaited even when the move ends first (the guest boots on)
t_sysinit=; t_ga=
until virsh qemu-agent-command --timeout 2 "$DOM" '{"execute":"guest-ping"}' >/dev/null 2>&1; do
  awk -v a="$t0" -v b="$(now)" 'BEGIN { exit !(b - a < 300) }' || { echo "the guest agent did not answer within 300 s" >&2; exit 1; }
  [ -n "$t_sysinit" ] || ! grep -q "sysinit done" "$WORK/console.log" 2>/dev/null || t_sysinit=$(now)
  [ -n "$t_ga" ] || ! grep -q "starting qemu-ga" "$WORK/console.log" 2>/dev/null || t_ga=$(now)
  sleep 0.1
done
t_agent=$(now)
wait $pid || { echo "restore --instant failed: $(cat "$WORK/instant.err")" >&2; exit 1; }
t_done=$(now)
[ "$(jq -r .instant.moved "$WORK/instant.json")" = true ] || { echo "not moved: $(cat "$WORK/instant.json")" >&2; exit 1; }
MOVE=$(echo "$(jq -r .instant.move_ms "$WORK/instant.json") / 1000" | bc -l)

data=$((2 * GiB)); virt=$((SIZE * GiB))
printf '  restore      %7.2f s  %7.1f MiB/s of data, %7.1f MiB/s of virtual size (plain restore)\n' "$REST" \
  "$(echo "$data / $REST / 1048576" | bc -l)" "$(echo "$virt / $REST / 1048576" | bc -l)"
printf '  instant      %7.2f s  from the command to the VM running\n' "$(secs "$t0" "$t_run")"
printf '               %7.2f s  to its guest agent answering (a TCG boot)\n' "$(secs "$t0" "$t_agent")"
printf '  move         %7.2f s  %7.1f MiB/s of data, %7.1f MiB/s of virtual size (block copy + pivot)\n' "$MOVE" \
  "$(echo "$data / $MOVE / 1048576" | bc -l)" "$(echo "$virt / $MOVE / 1048576" | bc -l)"
printf '               %7.2f s  from the command to the end (VM on its final disk, nothing of the backup used)\n' "$(secs "$t0" "$t_done")"
printf '  ratio        move time / plain restore time = %.2f\n' "$(echo "$MOVE / $REST" | bc -l)"
# where the time to the agent went (debug lines: vmshadow's own clock,
# which starts a few ms after the command; console lines: seen by the
# polling above, to 0.1 s and a virsh call)
dbg() { grep -m 1 -- "$1" "$WORK/instant.err" | sed -n 's/.*debug: \[+\([0-9.]*\)\].*/\1/p'; }
U=$(grep -a -o 'sysinit done after [0-9.]* s' "$WORK/console.log" | grep -o "[0-9.]*" | head -n 1 || true)
step() { printf '  step  %7s s  %s\n' "${1:--}" "$2"; }
step "$(dbg 'serves .* (detached)')" "exports serving (nbdkit ready)"
step "$(dbg 'qemu-img (pid [0-9]*) ended')" "overlays made"
step "$(dbg 'post-restore done')" "VM defined and started (post-restore done)"
step "$(secs "$t0" "$t_run" | xargs printf '%.2f')" "libvirt says running (bench's poll)"
[ -z "$t_sysinit" ] || step "$(secs "$t0" "$t_sysinit" | xargs printf '%.2f')" "guest console: sysinit done after ${U:-?} s of guest kernel clock (firmware + kernel load: the rest since running)"
[ -z "$t_ga" ] || step "$(secs "$t0" "$t_ga" | xargs printf '%.2f')" "guest console: starting qemu-ga"
step "$(jq -r '.instant.agent_ms // empty' "$WORK/instant.json" | awk '{ if ($1 != "") printf "%.2f", $1 / 1000 }')" "guest agent answered vmshadow (agent_ms); the move starts then"
step "$(dbg 'instant: copying')" "copy job started"
