# Shared by the hardening tests of issue 9 (sourced, the command as $1):
# cli-lib.sh's preamble, with the temporary directory open to other users
# (the attacks run as the unprivileged user nobody) and cleanup hooks; an
# exec writer with one small plain file and one raw disk; helpers.
source "$(dirname "${BASH_SOURCE[0]}")/cli-lib.sh"
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root (vmshadow runs as root; the attacks as nobody)"; exit 77; }
chmod 0755 "$tmp"
cleanup_hooks=()
cleanup () {
  for h in "${cleanup_hooks[@]}"; do eval "$h" || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

# Run a command as the unprivileged user nobody (made if missing);
# as_nobody_bg in the background, its pid (the command's own: setpriv
# execs it) in $bg_pid, and stopped at exit.
id nobody >/dev/null 2>&1 || useradd --system --no-create-home nobody
as_nobody () {
  setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups -- "$@"
}
as_nobody_bg () {
  setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups -- "$@" &
  bg_pid=$!
  cleanup_hooks+=("kill $bg_pid 2>/dev/null; wait $bg_pid 2>/dev/null")
}

# Run vmshadow with a deadline: a hang is a failure, not a stuck test.
vms () { timeout 20 "$vmshadow" "$@"; }

echo "setting = 1" > "$tmp/app/app.conf"
head -c $((1024 * 1024 + 4096)) /dev/urandom > "$tmp/app/disk.raw"
cat > "$VMSHADOW_WRITERS_DIR/app" <<W
#!/bin/sh
[ "\$1" = identify ] || exit 0
cat <<JSON
{"format": "vmshadow-writer-metadata", "version": 1,
 "writer": {"name": "app", "id": "3b1f6c2d-8e4a-4f5b-9c0d-1e2f3a4b5c6d"},
 "components": [{"name": "data", "files": [
   {"path": "$tmp/app/app.conf", "kind": "plain"},
   {"path": "$tmp/app/disk.raw", "kind": "disk", "format": "raw"}]}]}
JSON
W
chmod 755 "$VMSHADOW_WRITERS_DIR/app"

# The id of the newest backup.
newest () { vms list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["backups"][-1]["backup_id"])'; }
