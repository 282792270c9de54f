#!/bin/bash
# pacemaker-runs-a-lab-guest-as-a-virtualdomain-resource (issue 18, R22):
# lab/pacemaker.sh starts a one-node Corosync + Pacemaker cluster without
# systemd (a second start is a no-op), and the cluster runs a lab guest as
# an ocf:heartbeat:VirtualDomain resource the way a cluster-managed host
# does: the agent undefines the domain and starts it transient from its
# config file, its monitor runs, and a stop through the cluster destroys
# the domain.  Fencing is off for this test cluster only.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cluster-lib.sh"
lab_init
cl_init

"$LAB_DIR/pacemaker.sh" status >/dev/null || lab_fail "lab/pacemaker.sh status says the cluster is not running after start"
pids=$(cat /run/vmshadow-lab/corosync.pid /run/vmshadow-lab/pacemakerd.pid | tr '\n' ' ')
"$LAB_DIR/pacemaker.sh" start 2>/dev/null || lab_fail "a second lab/pacemaker.sh start failed"
lab_assert_eq "pids after a second start" "$(cat /run/vmshadow-lab/corosync.pid /run/vmshadow-lab/pacemakerd.pid | tr '\n' ' ')" "$pids"
lab_assert_eq "stonith-enabled" "$(crm_attribute --type crm_config --name stonith-enabled --query --quiet)" false
lab_ok "cluster up on $CL_NODE (corosync and pacemakerd pids $pids), idempotent start, fencing off"

lab_vm_create --no-start --data-disk 16M --name pcmk
cl_resource_create "$LAB_DOM"
# (libvirt starts QEMU paused and then lets it run; the agent's monitor
# counts both as running)
t0=$(date +%s)
until [ "$(virsh -q domstate "$LAB_DOM")" = running ]; do
    [ $(($(date +%s) - t0)) -lt 20 ] || lab_fail "$LAB_DOM is $(virsh -q domstate "$LAB_DOM"), not running"
    sleep 0.2
done
info=$(virsh -q dominfo "$LAB_DOM")    # (not piped into grep -q: pipefail)
grep -Eq '^Persistent: +no' <<<"$info" ||
    lab_fail "VirtualDomain should run $LAB_DOM transient (it undefines it before starting)"
lab_ok "the cluster started $LAB_DOM transient from $CL_CONFIG"

# The recurring monitor ran and succeeded (rc 0), nothing failed.
t0=$(date +%s)
until cl_history "$LAB_DOM" | grep -q "^${LAB_DOM}_monitor_10000 monitor [0-9]* 0$"; do
    [ $(($(date +%s) - t0)) -lt 30 ] || lab_fail "no successful 10 s monitor recorded: $(cl_history "$LAB_DOM" | tr '\n' ';')"
    sleep 1
done
lab_assert_eq "fail-count" "$(cl_failcount "$LAB_DOM")" 0
lab_ok "monitor every 10 s succeeds; fail-count 0"

crm_resource --resource "$LAB_DOM" --meta --set-parameter target-role --parameter-value Stopped >/dev/null
cl_wait_stopped "$LAB_DOM"
virsh -q domstate "$LAB_DOM" >/dev/null 2>&1 && lab_fail "$LAB_DOM still exists after the cluster stopped it"
lab_ok "target-role Stopped: the cluster destroyed the transient domain"
