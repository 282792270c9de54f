#!/bin/bash
# The main job, shown on a throw-away VM: a configured job (a repository
# and a job in a configuration directory, as in /etc/vmshadow) backs up a
# running VM online (its guest filesystems frozen for a few milliseconds through
# qemu-guest-agent while QEMU starts a point-in-time backup job), the VM is
# then destroyed, undefined and its disks deleted, and `vmshadow restore`
# brings it back; started again, its data checks. Uses the VM lab
# (lab/setup.sh: libvirtd, and a tiny guest kernel with qemu-guest-agent)
# and leaves nothing behind but its repository.
#
#   scripts/demo.sh [VMSHADOW]      (default: vmshadow on the PATH)
set -euo pipefail
export VMSHADOW=${1:-$(command -v vmshadow || true)}
[ -x "$VMSHADOW" ] || { echo "demo: no vmshadow command (run ./setup.sh)" >&2; exit 1; }
export LAB_NAME=demo
. "$(dirname "$0")/../tests/vm/lib.sh"
lab_init
. "$LAB_TESTS_DIR/vm-writer-lib.sh"
vmw_init
VMW_REPO=${VMSHADOW_DEMO_REPO:-/var/lib/vmshadow/demo-repo}
step () { printf '\n== %s\n' "$*"; }

step "A running VM with a guest agent, a 64 MiB ext4 data disk and a raw disk"
lab_vm_create --data-disk 64M --disk raw:16M --memory 160 --name demo
dom=$LAB_DOM
lab_wait_agent "$dom"
lab_guest_run "$dom" 'vmslab-pattern write /dev/vdb 7 0 4194304' >/dev/null
lab_guest_run "$dom" 'echo "hello from before the backup" > /data/hello; sync' >/dev/null
virsh -q list --all | grep "$dom"

step "vmshadow writers (the VM writer, and this VM as its component)"
"$VMSHADOW" writers > "$LAB_WORK/writers.txt" || true
sed -n "/Writer name: 'libvirt-vm'/,/Components/p" "$LAB_WORK/writers.txt"
grep -A4 "\\\\$dom\"" "$LAB_WORK/writers.txt" || true

tag=demo-$$
step "The VM tagged $tag in its libvirt metadata (virsh metadata; docs/configuration.md)"
virsh metadata "$dom" --uri https://vmshadow.org/xmlns/tags/1 --key vmshadow-tags \
  --set "<tags>$tag</tags>" --config --live
virsh metadata "$dom" --uri https://vmshadow.org/xmlns/tags/1

step "A configured job: repository $VMW_REPO, job demo backs up the VMs tagged $tag"
conf=$LAB_WORK/etc
mkdir -p "$conf/jobs.d"
printf '[repository demo]\npath = %s\n' "$VMW_REPO" > "$conf/vmshadow.conf"
printf '[job demo]\nrepository = demo\nvms = tag:%s\nexec-writers = no\nmax-age = 1d\nschedule = *-*-* 01:30\n' "$tag" \
  > "$conf/jobs.d/demo.conf"
cat "$conf/vmshadow.conf" "$conf/jobs.d/demo.conf"
"$VMSHADOW" config check --config "$conf"
"$VMSHADOW" job timers --config "$conf"

step "vmshadow job run demo --json (what vmshadow-backup@demo.timer runs)"
"$VMSHADOW" job run demo --json --config "$conf" > "$LAB_WORK/job.json"
jq '{outcome, duration_s, selected_vms, vms: [.vms[] | {vm, state, method, type, size, bytes_stored, elapsed_ms}]}' \
  "$LAB_WORK/job.json"
jq -e --arg dom "$dom" '.outcome == "success" and .selected_vms == [$dom] and
  ([.vms[] | select(.vm == $dom and .state == "complete" and .size > 0)] | length) == 1' \
  "$LAB_WORK/job.json" > /dev/null || { echo "demo: the job did not back up $dom by its tag" >&2; exit 1; }
bid=$(jq -r '.vms[0].backup_id' "$LAB_WORK/job.json")

step "vmshadow status"
"$VMSHADOW" status --config "$conf"

step "vmshadow show $bid"
"$VMSHADOW" --repo "$VMW_REPO" show "$bid"

step "vmshadow verify --deep"
"$VMSHADOW" --repo "$VMW_REPO" verify --deep "$bid"

step "Disaster: $dom destroyed, undefined, its disk images deleted"
qcow=${LAB_DISK_FILE[$dom/vda]} raw=${LAB_DISK_FILE[$dom/vdb]}
virsh -q destroy "$dom" >/dev/null
virsh -q undefine "$dom" --checkpoints-metadata >/dev/null
rm -f "$qcow" "$raw"
virsh -q list --all | grep -c "$dom" >/dev/null || echo "(no $dom on this host any more)"

step "vmshadow restore $bid --start"
"$VMSHADOW" --repo "$VMW_REPO" restore "$bid" --start

step "The restored VM"
lab_wait_agent "$dom"
lab_guest_run "$dom" 'cat /data/hello'
lab_guest_run "$dom" 'vmslab-pattern check /dev/vdb 7 0 4194304' >/dev/null && echo "pattern on the raw disk: intact"
virsh -q list --all | grep "$dom"
echo
echo "Done: backed up online, restored from the repository at $VMW_REPO."
echo "(The demo VM is removed now; the repository stays: vmshadow --repo $VMW_REPO list)"
