# tests/exec-writer-double.sh — source it (bash): a test double for a host
# application, the smallest exec writer that backs up one file.
#
#   exec_writer_double DIR FILE   write DIR/app, the exec writer "app" whose
#                                 one component "data" is FILE (plain)
exec_writer_double () {
  cat > "$1/app" <<W
#!/bin/sh
[ "\$1" = identify ] || exit 0
cat <<JSON
{"format": "vmshadow-writer-metadata", "version": 1,
 "writer": {"name": "app", "id": "0d9f3c1e-2b4a-4c5d-8e6f-7a8b9c0d1e2f"},
 "components": [{"name": "data", "files": [{"path": "$2", "kind": "plain"}]}]}
JSON
W
  chmod 755 "$1/app"
}
