# tests/component/cli/restore-writer-lib.sh — a test double exec writer for
# the restore tests (sourced). It is not a real application: it names the
# files under $tmp/app as two components, logs every event it gets (and
# its stdin) to $tmp/log/, and vetoes pre-restore while $tmp/veto-pre-restore
# exists. Extra attributes of component "one" come from $tmp/one-attrs
# (a JSON object's members, e.g. "restore_target:/x": "/y"), if present.
WRITER_ID=6a1c5e0e-9b7d-4f30-8d2a-0c4b1e2f3a4d
make_writer () {
    mkdir -p "$VMSHADOW_WRITERS_DIR" "$tmp/log"
    cat > "$VMSHADOW_WRITERS_DIR/double" <<W
#!/bin/sh
# Test double (tests/component/cli/restore-writer-lib.sh).
n=\$(ls "$tmp/log" | wc -l)
cat > "$tmp/log/\$(printf %03d \$n)-\$1.json"
case "\$1" in
identify)
  extra=\$(cat "$tmp/one-attrs" 2>/dev/null || true)
  cat <<JSON
{"format": "vmshadow-writer-metadata", "version": 1,
 "writer": {"name": "double", "id": "$WRITER_ID"},
 "components": [
   {"name": "one", "files": [{"path": "$tmp/app/a/one.conf", "kind": "plain"},
                             {"path": "$tmp/app/b/one.data", "kind": "plain"}],
    "attributes": {"test": "double"\${extra:+, \$extra}}},
   {"name": "two", "files": [{"path": "$tmp/app/a/two.conf", "kind": "plain"}]}]}
JSON
  ;;
pre-restore)
  if [ -e "$tmp/veto-pre-restore" ]; then
    echo '{"failure": "non-retryable", "message": "the application is running; stop it first"}'
    exit 1
  fi ;;
esac
exit 0
W
    chmod 755 "$VMSHADOW_WRITERS_DIR/double"
}
# The events the writer got since the log was last cleared, in order.
events () { ls "$tmp/log" | sed 's/^[0-9]*-//; s/\.json$//' | tr '\n' ' '; }
# Issue 13: meson runs the restore tests on an encrypted repository too.
. "$(dirname "${BASH_SOURCE[0]}")/encrypted-lib.sh"
# Issue 12: and on RADOS (VMSHADOW_TEST_BACKEND=rados).
repo_backend_setup
encrypted_repo_if_asked
