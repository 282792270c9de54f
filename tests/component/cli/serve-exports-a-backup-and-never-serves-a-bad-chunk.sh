#!/usr/bin/env bash
# vmshadow serve and nbdkit-vmshadow-plugin (issue 16): a disk of a backup
# as a read-only NBD export read straight from the repository — the same
# bytes as the source, all-zero chunks reported as holes; a damaged chunk
# is an I/O error for its range only (never wrong bytes) while the other
# ranges are still served; bad selections fail before anything starts;
# the server stops on SIGTERM and with a SIGKILLed vmshadow.
# $2: the plugin in the build tree.
source "$(dirname "$0")/cli-lib.sh"
# Format 1, asked for (new repositories are format 2): it damages a format 1 chunk file.
export VMSHADOW_REPO_FORMAT=1
export VMSHADOW_NBDKIT_PLUGIN=$2 TMPDIR=$tmp/t
mkdir -p "$TMPDIR"
for p in nbdkit nbdcopy nbdinfo qemu-io; do
  command -v $p >/dev/null || { echo "SKIP: $p is not installed (scripts/install-deps.sh)"; exit 77; }
done
serve_pid=
cleanup_serve () { [ -z "$serve_pid" ] || { kill "$serve_pid" 2>/dev/null; wait "$serve_pid" 2>/dev/null || true; }; }
trap 'cleanup_serve; rm -rf "$tmp"' EXIT
K=131072

# A raw disk: chunk 0 all 'A', chunk 1 random, chunk 2 all 'C', 1 MiB of
# zeros, a random tail.
disk=$tmp/app/disk.raw
{ head -c $K /dev/zero | tr '\0' A; head -c $K /dev/urandom
  head -c $K /dev/zero | tr '\0' C; head -c $((8 * K)) /dev/zero
  head -c $((2 * K + 4096)) /dev/urandom; } > "$disk"
cat > "$VMSHADOW_WRITERS_DIR/app" <<W
#!/bin/sh
[ "\$1" = identify ] || exit 0
cat <<JSON
{"format": "vmshadow-writer-metadata", "version": 1,
 "writer": {"name": "app", "id": "6a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c4d"},
 "components": [{"name": "data", "files": [{"path": "$disk", "kind": "disk", "format": "raw"}]}]}
JSON
W
chmod 755 "$VMSHADOW_WRITERS_DIR/app"
"$vmshadow" backup >/dev/null || fail "backup"
id=$("$vmshadow" list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["backups"][-1]["backup_id"])')

# Start `vmshadow serve ARGS` in the background; $uri once it serves.
serve () {
  rm -f "$tmp/uri"
  "$vmshadow" serve "$@" > "$tmp/uri" 2> "$tmp/serve.err" &
  serve_pid=$!
  for _ in $(seq 300); do [ -s "$tmp/uri" ] && break; kill -0 $serve_pid 2>/dev/null || break; sleep 0.05; done
  uri=$(cat "$tmp/uri")
  [ -n "$uri" ] || fail "serve printed no URI: $(cat "$tmp/serve.err")"
}
stop_serve () {
  kill -TERM "$serve_pid"
  wait "$serve_pid" || fail "serve did not exit 0 on SIGTERM"
  serve_pid=
}
server_gone () {
  for _ in $(seq 100); do pgrep -f "repo=$tmp/" >/dev/null || return 0; sleep 0.1; done
  fail "the server outlived its vmshadow: $(pgrep -af "repo=$tmp/")"
}

# The same bytes; zeros as holes; read-only.
serve "$id" data
nbdcopy "$uri" "$tmp/out.raw" || fail "nbdcopy from the export"
cmp "$disk" "$tmp/out.raw" || fail "the export differs from the backed-up disk"
nbdinfo --map "$uri" > "$tmp/map"
grep -Eq "^ *$((3 * K)) +$((8 * K)) +3 +hole,zero" "$tmp/map" ||
  fail "the zero chunks are not one hole in the map: $(cat "$tmp/map")"
if qemu-io -f raw "$uri" -c "write 0 512" >/dev/null 2>&1; then fail "the export took a write"; fi
qemu-io -r -f raw "$uri" -c "read -P 0x41 0 $K" | grep -q "read $K/$K" || fail "chunk 0 not served"
stop_serve
server_gone

# The same from a repository of format version 2 (chunks in packs).
VMSHADOW_REPO=$tmp/repo2 "$vmshadow" init --format 2 >/dev/null || fail "init --format 2"
VMSHADOW_REPO=$tmp/repo2 "$vmshadow" backup >/dev/null || fail "backup into version 2"
id2=$(VMSHADOW_REPO=$tmp/repo2 "$vmshadow" list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["backups"][-1]["backup_id"])')
VMSHADOW_REPO=$tmp/repo2 serve "$id2" data
nbdcopy "$uri" "$tmp/out2.raw" || fail "nbdcopy from a version 2 export"
cmp "$disk" "$tmp/out2.raw" || fail "the version 2 export differs from the backed-up disk"
stop_serve

# The same from an encrypted repository (issue 13, R28), the passphrase
# given on a file descriptor only: serve unlocks the key once and hands it
# to nbdkit on an inherited pipe (keyfd=3), never in an environment or
# argv: the secret (read back from the paper key) is in no environment and
# no command line of the serve, its guard shell or nbdkit, and nbdkit's
# descriptor 3 is closed once the plugin took it. A plugin started with a
# keyfd holding other bytes refuses to start.
(
  export VMSHADOW_REPO=$tmp/repo3 VMSHADOW_KEY_DIR=$tmp/keys VMSHADOW_SCRYPT_LOG2N=14
  VMSHADOW_PASSPHRASE=serve-test-passphrase "$vmshadow" init --encrypt >/dev/null || fail "init --encrypt"
  VMSHADOW_PASSPHRASE=serve-test-passphrase "$vmshadow" backup >/dev/null || fail "backup into an encrypted repository"
  id3=$(VMSHADOW_PASSPHRASE=serve-test-passphrase "$vmshadow" list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["backups"][-1]["backup_id"])')
  secret=$(VMSHADOW_PASSPHRASE=serve-test-passphrase "$vmshadow" key export --paper | awk '/^[1-4]: /{printf "%s%s%s%s", $2, $3, $4, $5}')
  [ ${#secret} = 64 ] || fail "cannot read the secret back from the paper key: ${#secret} digits"
  unset VMSHADOW_PASSPHRASE
  exec 3< <(echo serve-test-passphrase)
  serve "$id3" data --passphrase-fd 3
  exec 3<&-
  nbdcopy "$uri" "$tmp/out3.raw" || fail "nbdcopy from an encrypted export: $(cat "$tmp/serve.err")"
  cmp "$disk" "$tmp/out3.raw" || fail "the encrypted export differs from the backed-up disk"
  pids=$(pgrep -f "^nbdkit .*repo=$tmp/repo3") || fail "no nbdkit serving the encrypted repository"
  grep -q ' keyfd=3 ' <<<" $(tr '\0' ' ' < "/proc/$pids/cmdline") " || fail "nbdkit was not given keyfd=3"
  fd3=$(readlink "/proc/$pids/fd/3" || true)
  [[ $fd3 != pipe:* ]] || fail "nbdkit still holds the key's pipe as descriptor 3"
  for p in $serve_pid $(pgrep -P "$serve_pid") $pids; do
    for f in environ cmdline; do
      if tr '\0' '\n' < "/proc/$p/$f" | grep -qi "$secret"; then
        fail "the key is in the $f of process $p ($(tr '\0' ' ' < "/proc/$p/cmdline" | head -c 80))"
      fi
    done
  done
  stop_serve
  # A descriptor that does not hold a key: nbdkit does not start.
  if nbdkit -U - "$VMSHADOW_NBDKIT_PLUGIN" repo="$tmp/repo3" backup="$id3" component=data keyfd=3 \
       --run true 3< <(echo "not a key") 2>"$tmp/bad-key.err"; then
    fail "the plugin served with a keyfd that holds no key"
  fi
  grep -q "does not hold a key handed over by vmshadow" "$tmp/bad-key.err" ||
    fail "unclear message for a bad keyfd: $(cat "$tmp/bad-key.err")"
)

# Bad selections: said before anything starts, nothing left running.
for args in "nope data" "$id nope" "$id --vm web" "$id data /no/such/file"; do
  # shellcheck disable=SC2086
  if "$vmshadow" serve $args > "$tmp/out" 2> "$tmp/err"; then fail "serve $args worked"; fi
  [ -s "$tmp/err" ] && [ ! -s "$tmp/out" ] || fail "serve $args: no message, or a URI: $(cat "$tmp/out" "$tmp/err")"
done
msg=$("$vmshadow" serve "$id" --vm web 2>&1) && fail "a VM not in the backup served"
grep -q 'has no VM "web"' <<<"$msg" || fail "unclear message for a VM not in the backup: $msg"
"$vmshadow" serve "$id" data --disk vda >/dev/null 2>&1 && fail "--disk without --vm accepted"
[ -z "$(ls -A "$TMPDIR")" ] || fail "refused serves left $(ls -A "$TMPDIR")"

# A damaged chunk (chunk 1): an I/O error for its range, the rest served.
digest=$(head -c $((2 * K)) "$disk" | tail -c $K | sha256sum | cut -c1-64)
chunk=$tmp/repo/chunks/${digest:0:2}/$digest
[ -f "$chunk" ] || fail "no chunk file $chunk (repository layout changed?)"
. "$(dirname "$0")/../../flip-byte.sh"
flip_byte "$chunk" 100
serve "$id" data
qemu-io -r -f raw "$uri" -c "read -P 0x41 0 $K" | grep -q "read $K/$K" || fail "chunk 0 not served next to a bad one"
qemu-io -r -f raw "$uri" -c "read -P 0x43 $((2 * K)) $K" | grep -q "read $K/$K" || fail "chunk 2 not served next to a bad one"
if qemu-io -r -f raw "$uri" -c "read $((K + 4096)) 512" 2>&1 | grep -q "read 512/512"; then
  fail "the damaged chunk was served"
fi
if nbdcopy "$uri" "$tmp/bad.raw" 2>/dev/null; then fail "nbdcopy of a disk with a damaged chunk succeeded"; fi
stop_serve
grep -q "$digest" "$tmp/serve.err" || fail "the log does not name the damaged chunk: $(cat "$tmp/serve.err")"
server_gone

# A SIGKILLed vmshadow serve takes its server with it.
serve "$id" data
kill -KILL "$serve_pid"; wait "$serve_pid" 2>/dev/null || true; serve_pid=
server_gone
echo "ok"
