# Sourced by the tests of the vmshadow command (bash), with the command as
# $1: a private temporary directory removed on exit, the environment that
# points vmshadow at it (repository, scratch, writers directory), fail,
# and app_writer, the smallest exec writer that backs up one file.
set -euo pipefail
vmshadow=$(realpath "$1")
tmp=$(mktemp -d /var/tmp/vmshadow-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail () { echo "FAIL: $*"; exit 1; }
export VMSHADOW_SCRATCH_DIR=$tmp/scratch VMSHADOW_REPO=$tmp/repo
export VMSHADOW_WRITERS_DIR=$tmp/writers.d
mkdir -p "$tmp/app" "$VMSHADOW_WRITERS_DIR"

# app_writer: the exec writer "app", whose one component "config" is the
# file $tmp/app/app.conf (made here).
app_writer () {
  echo "setting = 1" > "$tmp/app/app.conf"
  cat > "$VMSHADOW_WRITERS_DIR/app" <<W
#!/bin/sh
[ "\$1" = identify ] || exit 0
cat <<JSON
{"format": "vmshadow-writer-metadata", "version": 1,
 "writer": {"name": "app", "id": "0d9f3c1e-2b4a-4c5d-8e6f-7a8b9c0d1e2f"},
 "components": [{"name": "config", "files": [{"path": "$tmp/app/app.conf", "kind": "plain"}]}]}
JSON
W
  chmod 755 "$VMSHADOW_WRITERS_DIR/app"
}
