# tests/vm/cluster-lib.sh — helpers for the tests of cluster-managed VMs
# (issue 18, R22): the lab's one-node Pacemaker cluster (lab/pacemaker.sh)
# and VirtualDomain resources of lab guests.  Sourced after lib.sh and
# lab_init; not a test itself.
#
#   cl_init                    start the lab cluster (skip 77 where it cannot)
#   cl_resource_create DOM     a VirtualDomain resource named DOM, its config
#                              the domain's XML in $LAB_WORK; waits until the
#                              cluster runs it; removed when the test exits
#   cl_wait_started R          until the cluster reports R started here
#   cl_meta R NAME             a meta attribute's value ("" when unset)
#   cl_failcount R             R's fail-count on this node (a number)
#   cl_history R               R's operation history (CIB status): one line
#                              per recorded operation: key operation call-id rc
#   cl_meta_xml R              R's meta_attributes elements, as the CIB has them
#   cl_fake_node NAME          a second node in the CIB, never online (removed
#                              when the test exits): the scheduler can be asked
#                              (crm_simulate --node-up) where R would go
# Pacemaker's own tools only (cibadmin, crm_resource, crm_mon, crm_failcount).

cl_init() {
    local rc=0
    "$LAB_DIR/pacemaker.sh" start || rc=$?
    case $rc in
        0) ;;
        77) exit 77 ;;
        *) lab_fail "lab/pacemaker.sh start failed (message above)" ;;
    esac
    CL_NODE=$(uname -n)
}

# The resource's config: the domain's own inactive XML (with its UUID), as
# an administrator gives VirtualDomain.  The agent undefines the domain and
# runs it transient from this file (it does so on every start).
cl_resource_create() {
    local dom=$1 cfg=$LAB_WORK/$1.cluster.xml
    virsh -q dumpxml --inactive "$dom" >"$cfg" || lab_fail "virsh dumpxml $dom failed"
    lab__undo_push resource "$dom"
    cibadmin --create --scope resources --xml-text "
<primitive id='$dom' class='ocf' provider='heartbeat' type='VirtualDomain'>
  <instance_attributes id='$dom-ia'>
    <nvpair id='$dom-ia-config' name='config' value='$cfg'/>
    <nvpair id='$dom-ia-hypervisor' name='hypervisor' value='qemu:///system'/>
    <nvpair id='$dom-ia-force_stop' name='force_stop' value='true'/>
  </instance_attributes>
  <meta_attributes id='$dom-meta'>
    <nvpair id='$dom-meta-allow-migrate' name='allow-migrate' value='true'/>
  </meta_attributes>
  <operations>
    <op id='$dom-monitor' name='monitor' interval='10s' timeout='30s'/>
    <op id='$dom-start' name='start' interval='0' timeout='90s'/>
    <op id='$dom-stop' name='stop' interval='0' timeout='30s'/>
  </operations>
</primitive>" || lab_fail "cibadmin could not create resource $dom"
    CL_CONFIG=$cfg
    cl_wait_started "$dom"
    lab_log "resource $dom (VirtualDomain, config $cfg) started on $CL_NODE"
}

# cl_wait_started R [SECONDS] — the cluster has settled (no action pending:
# --locate alone also reports a start still in progress) with R running here.
cl_wait_started() {
    local r=$1 limit=${2:-120}
    crm_resource --wait --timeout "${limit}s" >/dev/null 2>&1 ||
        lab_fail "the cluster did not settle within $limit s: $(crm_mon -1 -r 2>&1 | tail -n 5 | tr '\n' ' ')"
    crm_resource --resource "$r" --locate 2>/dev/null | grep -q "is running on: $CL_NODE" ||
        lab_fail "the cluster does not run $r: $(crm_mon -1 -r 2>&1 | tail -n 5 | tr '\n' ' ')"
}

# cl_wait_stopped R [SECONDS]
cl_wait_stopped() {
    local r=$1 limit=${2:-60}
    crm_resource --wait --timeout "${limit}s" >/dev/null 2>&1 ||
        lab_fail "the cluster did not settle within $limit s"
    crm_resource --resource "$r" --locate 2>/dev/null | grep -q "is running on" &&
        lab_fail "the cluster still runs $r"
    return 0
}

cl_meta() {
    crm_resource --resource "$1" --meta --get-parameter "$2" 2>/dev/null || true
}

cl_failcount() {
    local v
    v=$(crm_failcount --query --resource "$1" --node "$CL_NODE" 2>/dev/null |
        sed -n 's/.*value=\([0-9A-Za-z]*\).*/\1/p')
    echo "${v:-0}"
}

cl_history() {
    cibadmin --query --xpath "//lrm_resource[@id='$1']/lrm_rsc_op" 2>/dev/null |
        grep -o '<lrm_rsc_op [^>]*>' |
        sed -E "s/.* operation_key=\"([^\"]*)\" operation=\"([^\"]*)\".* call-id=\"([^\"]*)\".* rc-code=\"([^\"]*)\".*/\1 \2 \3 \4/"
}

cl_meta_xml() {
    cibadmin --query --xpath "//primitive[@id='$1']/meta_attributes" 2>/dev/null || true
}

cl_fake_node() {
    lab__undo_push cluster-node "$1"
    cibadmin --create --scope nodes --xml-text "<node id='$1' uname='$1'/>" ||
        lab_fail "cannot add node $1 to the CIB"
}

# cl_would_run R NODE — where the scheduler puts R with NODE online too
# (crm_simulate on the live CIB; nothing is changed): prints the node.
cl_would_run() {
    crm_simulate --live-check --node-up="$2" --simulate 2>/dev/null |
        sed -n '/Revised Cluster Status/,$p' |
        sed -n "s/^ *\* $1[[:space:]].*Started \([^ ]*\).*/\1/p" | head -n 1
}
