# tests/ceph/ceph-lib.sh — the one hook through which tests use the lab's
# Ceph cluster (lab/ceph.sh; issues 11, 12, 14).  Source it from bash, then:
#
#   ceph_lab_start     start (or reuse) the cluster and export CEPH_CONF and
#                      VMSLAB_CEPH_* (lab/ceph.sh env); where Ceph cannot run
#                      here the test exits 77 with lab/ceph.sh's reason; the
#                      namespaces are emptied at exit, before what the
#                      test's EXIT trap set so far (a trap set later
#                      replaces this one: call ceph_lab_empty_namespaces)
#   ceph_lab_namespace VAR NAME
#                      set VAR to a namespace of the repositories' pool unique
#                      to this run (NAME-PID-RANDOM), emptied again at exit
#                      (call it directly, not in $(...): it records the name)
#
# VMSLAB_LAB_DIR names lab/ (meson sets it; default: ../../lab from here).

ceph_lab_dir=${VMSLAB_LAB_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../lab" && pwd)}
ceph_lab_namespaces=()

ceph_lab_start () {
  local rc=0
  "$ceph_lab_dir/ceph.sh" start -q || rc=$?
  case $rc in
    0) ;;
    77) exit 77 ;;      # lab/ceph.sh said why on stderr
    *) echo "FAIL: lab/ceph.sh start failed (exit $rc)" >&2; exit 1 ;;
  esac
  eval "$("$ceph_lab_dir/ceph.sh" env)"
  # Before the test's own EXIT trap (kept), which may remove files the
  # namespace's cleanup does not need.
  local prev
  prev=$(trap -p EXIT)
  prev=${prev#trap -- \'}
  prev=${prev%\' EXIT}
  trap "ceph_lab_empty_namespaces${prev:+; $prev}" EXIT
}

ceph_lab_namespace () {
  local ceph_lab_ns_
  ceph_lab_ns_=$2-$$-$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
  ceph_lab_namespaces+=("$ceph_lab_ns_")
  printf -v "$1" '%s' "$ceph_lab_ns_"
}

# Delete every object of the namespaces this test made.
ceph_lab_empty_namespaces () {
  local ns obj
  for ns in "${ceph_lab_namespaces[@]}"; do
    rados -p "$VMSLAB_CEPH_POOL" -N "$ns" ls 2>/dev/null |
      while IFS= read -r obj; do
        rados -p "$VMSLAB_CEPH_POOL" -N "$ns" rm "$obj" 2>/dev/null
      done
  done
}
