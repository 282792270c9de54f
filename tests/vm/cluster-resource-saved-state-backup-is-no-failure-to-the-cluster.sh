#!/bin/bash
# cluster-resource-saved-state-backup-is-no-failure-to-the-cluster
# (issue 18, R22).  A lab guest run by the lab's Pacemaker cluster as a
# VirtualDomain resource:
#   - `vmshadow writers` names its resource and node;
#   - a saved-state backup puts the resource into maintenance and pins it
#     to this node while the VM is paused; a migration the administrator
#     asks for meanwhile (crm_resource --move to a second node) is held off
#     by the pin and would happen once the backup ended — one node cannot
#     migrate, so the scheduler's decision is read with that second node
#     simulated online (crm_simulate on the live CIB);
#   - afterwards the fail-count is 0, no operation failed, the cluster did
#     no stop/start/recovery (no such operation recorded since, the QEMU
#     process and the guest's boot are the same), the meta attributes are
#     exactly as before and our constraint is gone; `show` names the resource;
#   - vmshadow SIGKILLed while the resource is in maintenance with the VM
#     paused: the guard resumes the VM, puts the meta attributes back
#     exactly and removes the pin; no recovery happens.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cluster-lib.sh"
lab_init
. "$(dirname "$0")/vm-writer-lib.sh"
vmw_init
cl_init

lab_vm_create --no-start --data-disk 16M --memory 128 --name clss
vm=$LAB_DOM
cl_resource_create "$vm"
t0=$(date +%s)
until grep -q 'sysinit done' "$LAB_WORK/$vm.console" 2>/dev/null; do
    [ $(($(date +%s) - t0)) -lt 240 ] || lab_fail "$vm did not boot within 240 s"
    sleep 0.2
done
uuid=$(virsh -q domuuid "$vm")
qemu_pid=$(cat "/run/libvirt/qemu/$vm.pid")
meta_before=$(cl_meta_xml "$vm")
calls_before=$(cl_history "$vm" | awk '{ print $3 }' | sort -n | tail -n 1)

"$VMSHADOW" writers >"$LAB_WORK/writers.out" 2>&1 || lab_fail "vmshadow writers failed: $(tail -n 3 "$LAB_WORK/writers.out")"
grep -A1 "^      $uuid" "$LAB_WORK/writers.out" | grep -q "cluster: pacemaker resource $vm (VirtualDomain, config $CL_CONFIG) running on node $CL_NODE" ||
    lab_fail "vmshadow writers does not name the resource: $(grep -A2 "$uuid" "$LAB_WORK/writers.out" | tr '\n' ' ')"
lab_ok "vmshadow writers: $(grep -A1 "^      $uuid" "$LAB_WORK/writers.out" | sed -n 2p | sed 's/^ *//')"

# ---- a saved-state backup, with a migration asked for in the middle
cl_fake_node vmslab-node2
lab_assert_eq "placement with node2 online, before" "$(cl_would_run "$vm" vmslab-node2)" "$CL_NODE"
seen=$LAB_WORK/seen
(
    # Watch the CIB during the backup; once maintenance is on: ask for
    # the migration and let the scheduler say where the VM would go.
    for i in $(seq 600); do
        if [ "$(cl_meta "$vm" maintenance)" = true ]; then
            echo "maintenance $(virsh -q domstate "$vm")" >"$seen.m"
            cibadmin --query --xpath "//rsc_location[@id='vmshadow-pin-$vm']" >"$seen.pin" 2>&1
            crm_resource --resource "$vm" --move --node vmslab-node2 >"$seen.move" 2>&1
            cl_would_run "$vm" vmslab-node2 >"$seen.where"
            exit 0
        fi
        sleep 0.05
    done
) &
watcher=$!
vmw_backup --method saved-state "$vm" || lab_fail "saved-state backup failed: $(vmw_backup_failure)"
wait $watcher
[ -s "$seen.m" ] || lab_fail "maintenance=true was never seen during the backup"
grep -q "rsc=\"$vm\"" "$seen.pin" && grep -q 'score="-INFINITY"' "$seen.pin" ||
    lab_fail "no pin constraint during the backup: $(cat "$seen.pin")"
lab_ok "during the backup: maintenance=true ($(cat "$seen.m")), pin constraint vmshadow-pin-$vm (-INFINITY off $CL_NODE)"
lab_assert_eq "where the scheduler puts $vm after crm_resource --move to node2, during the backup" "$(cat "$seen.where")" "$CL_NODE"
lab_assert_eq "... after the backup (the pin lifted)" "$(cl_would_run "$vm" vmslab-node2)" vmslab-node2
crm_resource --resource "$vm" --clear >/dev/null 2>&1
lab_ok "a migration asked for during the backup is held off and would happen after it"

check_no_failure() {
    local when=$1 ops
    lab_assert_eq "fail-count $when" "$(cl_failcount "$vm")" 0
    ops=$(cl_history "$vm")
    grep -q '_last_failure_' <<<"$(cibadmin --query --xpath "//lrm_resource[@id='$vm']" 2>/dev/null)" &&
        lab_fail "a failed operation is recorded $when: $(tr '\n' ';' <<<"$ops")"
    awk -v b="$calls_before" '$3 > b && ($2 != "monitor" || $4 != 0)' <<<"$ops" | grep -q . &&
        lab_fail "the cluster acted on $vm $when: $(tr '\n' ';' <<<"$ops")"
    lab_assert_eq "meta attributes $when" "$(cl_meta_xml "$vm")" "$meta_before"
    cibadmin --query --xpath "//rsc_location[@id='vmshadow-pin-$vm']" >/dev/null 2>&1 &&
        lab_fail "our pin constraint is still there $when"
    lab_assert_eq "QEMU process $when" "$(cat "/run/libvirt/qemu/$vm.pid")" "$qemu_pid"
    lab_assert_eq "boots of the guest $when" "$(grep -c 'sysinit done' "$LAB_WORK/$vm.console")" 1
    return 0
}
sleep 12     # one more 10 s monitor after maintenance ended
lab_assert_eq "state after the backup" "$(virsh -q domstate "$vm")" running
check_no_failure "after the backup"
lab_ok "after the backup: fail-count 0, no failed or recovery operation, same QEMU process, meta attributes as before, no pin"
vmw_show "$VMW_BID"
[ "$(vmw_attr "$uuid" cluster_resource)" = "$vm" ] || lab_fail "show --json: cluster_resource is '$(vmw_attr "$uuid" cluster_resource)'"
vmw_vmshadow show "$VMW_BID" && grep -q "cluster: pacemaker resource $vm" "$VMW_OUT" ||
    lab_fail "vmshadow show does not name the resource"
lab_ok "vmshadow show: $(grep 'cluster:' "$VMW_OUT" | sed 's/^ *//')"

# ---- SIGKILL while the resource is in maintenance and the VM paused
"$VMSHADOW" --repo "$VMW_REPO" backup --method saved-state "$vm" >"$LAB_WORK/kill.out" 2>"$LAB_WORK/kill.err" &
pid=$!
t0=$(date +%s)
until [ "$(cl_meta "$vm" maintenance)" = true ] && [ "$(virsh -q domstate "$vm")" = paused ]; do
    kill -0 $pid 2>/dev/null || lab_fail "vmshadow ended before it paused $vm: $(tail -n 3 "$LAB_WORK/kill.err" | tr '\n' ' ')"
    [ $(($(date +%s) - t0)) -lt 60 ] || { kill -9 $pid; lab_fail "no maintenance + pause within 60 s"; }
    sleep 0.05
done
kill -9 $pid
tkill=$(date +%s)
wait $pid 2>/dev/null || true
until [ "$(virsh -q domstate "$vm")" = running ] && [ "$(cl_meta_xml "$vm")" = "$meta_before" ] &&
        ! cibadmin --query --xpath "//rsc_location[@id='vmshadow-pin-$vm']" >/dev/null 2>&1; do
    [ $(($(date +%s) - tkill)) -lt 20 ] ||
        lab_fail "not undone 20 s after the kill: $(virsh -q domstate "$vm"), maintenance '$(cl_meta "$vm" maintenance)'; guard: $(grep guard "$LAB_WORK/kill.err" | tr '\n' ' ')"
    sleep 0.2
done
lab_ok "killed with $vm paused in maintenance: within $(($(date +%s) - tkill)) s it runs again, maintenance put back, pin gone"
sleep 12
check_no_failure "after the kill"
grep -q "resource $vm: maintenance put back" "$LAB_WORK/kill.err" ||
    lab_fail "the guard did not say it put maintenance back: $(grep guard "$LAB_WORK/kill.err" | tr '\n' ' ')"
lab_ok "after the kill: fail-count 0, no recovery; the guard said: $(grep 'vmshadow-guard' "$LAB_WORK/kill.err" | sed 's/^vmshadow-guard\[[0-9]*\]: //' | tr '\n' ';')"
