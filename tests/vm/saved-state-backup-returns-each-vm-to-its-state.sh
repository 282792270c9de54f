#!/bin/bash
# saved-state-backup-returns-each-vm-to-its-state (issue 5; R8, R9, R7):
# one `vmshadow backup --fallback saved-state` (method auto; the default
# fallback is crash-consistent, issue 20) of a running VM without a guest
# agent and of a paused VM:
#   - both go through saved state: method "saved-state", caption Offline\,
#     a memory.state file stored (non-empty, libvirt's save-image format);
#   - the running VM is running again, not rebooted (one boot on its
#     console), with downtime_ms recorded; the paused VM is still paused,
#     with its RAM marker intact once resumed;
#   - no backup job is left and the state files are gone from the host;
#   - the stored state file is what `virsh restore` takes: the paused VM
#     destroyed, its stored state restored onto its extracted disk brings
#     back its RAM marker (the guest resumes, it is not booted).
. "$(dirname "$0")/lib.sh"
lab_init
. "$(dirname "$0")/vm-writer-lib.sh"
vmw_init

lab_vm_create --data-disk 32M --memory 256 --no-agent --name ssrun
run=$LAB_DOM
lab_vm_create --data-disk 32M --memory 128 --name sspaused
paused=$LAB_DOM
lab_wait_agent "$paused"
token=$(lab_guest_run "$paused" 'vmslab-marker set')
virsh -q suspend "$paused" >/dev/null || lab_fail "virsh suspend $paused failed"
# the agent-less guest has booted once when its init says so
for i in $(seq 100); do
    grep -q 'sysinit done' "$LAB_WORK/$run.console" 2>/dev/null && break
    sleep 0.2
done
boots() { grep -c 'sysinit done' "$LAB_WORK/$1.console"; }
lab_assert_eq "boots of $run before" "$(boots "$run")" 1
run_uuid=$(virsh domuuid "$run" | sed -n 1p)
paused_uuid=$(virsh domuuid "$paused" | sed -n 1p)

vmw_backup --fallback saved-state "$run" "$paused" || lab_fail "vmshadow backup failed: $(vmw_backup_failure)"
lab_ok "backup $VMW_BID of a running agent-less VM and a paused VM"

vmw_show "$VMW_BID"
for u in "$run_uuid" "$paused_uuid"; do
    lab_assert_eq "method of $u" "$(vmw_attr "$u" method)" saved-state
    case $(vmw_caption "$u") in Offline\\*) ;; *) lab_fail "caption of $u: $(vmw_caption "$u")" ;; esac
done
downtime=$(vmw_attr "$run_uuid" downtime_ms)
[[ $downtime =~ ^[0-9]+$ ]] && [ "$downtime" -gt 0 ] ||
    lab_fail "downtime_ms of $run: '$downtime'"
[ "$downtime" -lt 10000 ] || lab_fail "downtime_ms of $run is $downtime ms"
lab_assert_eq "summary downtime" \
    "$(jq -r --arg u "$run_uuid" '[.. | objects | select(.component? == $u) | .downtime_ms] | first // empty' "$VMW_SUMMARY")" "$downtime"
lab_ok "both saved-state, caption Offline\\; $run down for $downtime ms (256 MiB guest)"

lab_assert_eq "state of $run after" "$(virsh -q domstate "$run")" running
lab_assert_eq "state of $paused after" "$(virsh -q domstate "$paused")" paused
sleep 2
lab_assert_eq "boots of $run after" "$(boots "$run")" 1
for d in "$run" "$paused"; do
    virsh -q domjobinfo "$d" | grep 'Job type: *None' >/dev/null || lab_fail "$d still has a job: $(virsh -q domjobinfo "$d" | head -2)"
done
left=$(find "$LAB_WORK/state" -name memory.state)
[ -z "$left" ] || lab_fail "state files left on the host: $left"
lab_ok "$run running again (not rebooted), $paused still paused, no job, no state file left"

# The stored state files.
for u in "$run_uuid" "$paused_uuid"; do
    f=$LAB_WORK/state/$u/memory.state
    vmw_extract "$VMW_BID" "$u" "$f" "$LAB_WORK/$u.state"
    [ -s "$LAB_WORK/$u.state" ] || lab_fail "stored state file of $u is empty"
    virsh save-image-dumpxml "$LAB_WORK/$u.state" >"$LAB_WORK/$u.state.xml" ||
        lab_fail "the stored state of $u is not a libvirt save image"
    grep -q "<uuid>$u</uuid>" "$LAB_WORK/$u.state.xml" || lab_fail "the stored state of $u names another domain"
done
lab_ok "stored memory.state files are libvirt save images ($(du -h "$LAB_WORK/$run_uuid.state" | cut -f1), $(du -h "$LAB_WORK/$paused_uuid.state" | cut -f1))"

virsh -q resume "$paused" >/dev/null || lab_fail "virsh resume $paused failed"
lab_wait_agent "$paused" 30
lab_assert_eq "marker of $paused after resume" "$(lab_guest_run "$paused" "vmslab-marker check $token")" "$token"

# virsh restore of the stored state onto the stored disk.
disk=${LAB_DISK_FILE[$paused/vda]}
vmw_extract "$VMW_BID" "$paused_uuid" "$disk" "$LAB_WORK/restored-vda.qcow2" qcow2
virsh -q destroy "$paused" >/dev/null
sed "s|$disk|$LAB_WORK/restored-vda.qcow2|" "$LAB_WORK/$paused_uuid.state.xml" >"$LAB_WORK/restore.xml"
virsh -q restore "$LAB_WORK/$paused_uuid.state" --xml "$LAB_WORK/restore.xml" --running >/dev/null ||
    lab_fail "virsh restore of the stored state failed"
lab_wait_agent "$paused" 30
lab_assert_eq "marker after virsh restore" "$(lab_guest_run "$paused" "vmslab-marker check $token")" "$token"
lab_guest_run "$paused" 'grep -q " /data " /proc/mounts' || lab_fail "data disk not mounted after restore"
lab_ok "virsh restore of the stored state on the extracted disk resumes the guest: RAM marker $token back"
