# Sourced by the repository tests that meson runs on both storage backends
# (issue 12): with VMSHADOW_TEST_BACKEND=rados, repo_backend_setup points
# $VMSHADOW_REPO at rados:POOL/NAMESPACE on the lab's Ceph cluster (a
# namespace of this run, emptied at exit; the test skips with the reason
# where Ceph cannot run); otherwise it leaves the local directory. The
# repo_* functions look at the repository's objects by name on either:
#   repo_objects PREFIX   object names under PREFIX, one a line
#   repo_count PREFIX     how many
#   repo_bytes PREFIX     their total size in bytes
#   repo_cat NAME         an object's bytes on stdout
#   repo_flip NAME OFFSET XOR one byte of an object with 0xff, in place
repo_backend=${VMSHADOW_TEST_BACKEND:-local}
repo_backend_dir=$(dirname "${BASH_SOURCE[0]}")

repo_backend_setup () {
  [ "$repo_backend" = rados ] || return 0
  . "$repo_backend_dir/../../ceph/ceph-lib.sh"
  ceph_lab_start
  ceph_lab_namespace repo_rados_ns "$(basename "$0" .sh | cut -c1-40)"
  export VMSHADOW_REPO=rados:$VMSLAB_CEPH_POOL/$repo_rados_ns
}

repo_objects () {
  if [ "$repo_backend" = rados ]; then
    rados -p "$VMSLAB_CEPH_POOL" -N "$repo_rados_ns" ls |
      grep -v -e '^lock$' -e '^clock/' | grep -F "$1" | grep "^$1" || true
  else
    [ -d "$VMSHADOW_REPO" ] || return 0
    (cd "$VMSHADOW_REPO" && find . -type f ! -path './tmp/*' ! -name lock) |
      sed 's|^\./||' | grep "^$1" || true
  fi
}

repo_count () { repo_objects "$1" | wc -l; }

repo_cat () {
  if [ "$repo_backend" = rados ]; then
    rados -p "$VMSLAB_CEPH_POOL" -N "$repo_rados_ns" get "$1" -
  else
    cat "$VMSHADOW_REPO/$1"
  fi
}

repo_bytes () {
  local n total=0 size
  for n in $(repo_objects "$1"); do
    if [ "$repo_backend" = rados ]; then
      size=$(rados -p "$VMSLAB_CEPH_POOL" -N "$repo_rados_ns" stat "$n" | sed 's/.*size //')
    else
      size=$(stat -c %s "$VMSHADOW_REPO/$n")
    fi
    total=$((total + size))
  done
  echo "$total"
}

repo_flip () {
  if [ "$repo_backend" = rados ]; then
    local f
    f=$(mktemp)
    rados -p "$VMSLAB_CEPH_POOL" -N "$repo_rados_ns" get "$1" "$f" &&
      flip_byte "$f" "$2" &&
      rados -p "$VMSLAB_CEPH_POOL" -N "$repo_rados_ns" put "$1" "$f"
    local rc=$?
    rm -f "$f"
    return $rc
  else
    flip_byte "$VMSHADOW_REPO/$1" "$2"
  fi
}
