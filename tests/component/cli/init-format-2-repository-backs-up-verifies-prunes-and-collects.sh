#!/usr/bin/env bash
# vmshadow init makes a format version 2 repository (packs, issue 12), and
# backup, list, verify --deep, extract, prune and gc work on it end to end
# through a real exec writer and the file provider: no chunk files, a
# pack per 30 MiB, a flipped byte in a pack found by verify --deep, a
# second init refused without changing anything, --format checked per
# command. Run on the local directory and on RADOS (issue 12).
set -euo pipefail
vmshadow=$1
tmp=$(mktemp -d /var/tmp/vmshadow-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail () { echo "FAIL: $*"; exit 1; }
. "$(dirname "$0")/../../flip-byte.sh"
# Also run on an encrypted repository (issue 13): VMSHADOW_TEST_ENCRYPTED=1.
. "$(dirname "$0")/encrypted-lib.sh"
export VMSHADOW_SCRATCH_DIR=$tmp/scratch VMSHADOW_REPO=$tmp/repo
export VMSHADOW_WRITERS_DIR=$tmp/writers.d
unset VMSHADOW_REPO_FORMAT VMSHADOW_REPO_PACK_SIZE
# Also run on RADOS (issue 12): VMSHADOW_TEST_BACKEND=rados.
. "$(dirname "$0")/repo-backend-lib.sh"
repo_backend_setup
main_repo=$VMSHADOW_REPO

mkdir -p "$tmp/app" "$VMSHADOW_WRITERS_DIR"
head -c $((40 * 1024 * 1024 + 5)) /dev/urandom > "$tmp/app/blob.bin"
truncate -s $((16 * 1024 * 1024)) "$tmp/app/disk.raw"
head -c $((2 * 1024 * 1024)) /dev/urandom | dd of="$tmp/app/disk.raw" conv=notrunc status=none
cat > "$VMSHADOW_WRITERS_DIR/app" <<W
#!/bin/sh
case "\$1" in
identify) cat <<JSON
{"format": "vmshadow-writer-metadata", "version": 1,
 "writer": {"name": "app", "id": "0d9f3c1e-2b4a-4c5d-8e6f-7a8b9c0d1e2f"},
 "components": [
   {"name": "files", "files": [{"path": "$tmp/app/blob.bin", "kind": "plain"},
     {"path": "$tmp/app/disk.raw", "kind": "disk", "format": "raw"}]}]}
JSON
;;
esac
exit 0
W
chmod 755 "$VMSHADOW_WRITERS_DIR/app"

# Options checked per command, before anything is made.
if "$vmshadow" init --format 3 2> "$tmp/err"; then fail "init --format 3 accepted"; fi
grep -q "1 or 2 (init)" "$tmp/err" || fail "bad message: $(cat "$tmp/err")"
if "$vmshadow" extract --format 2 b c f --to "$tmp/x" 2> "$tmp/err"; then fail "extract --format 2 accepted"; fi
grep -q "does not apply" "$tmp/err" || fail "bad message: $(cat "$tmp/err")"
[ "$(repo_count '')" = 0 ] || fail "a refused command made the repository"

"$vmshadow" init "${encrypted_init_args[@]}" > "$tmp/out" || fail "init: $(cat "$tmp/out")"
grep -q "format version 2" "$tmp/out" || fail "init said: $(cat "$tmp/out")"
repo_cat config | grep -q '"version": 2' || fail "config: $(repo_cat config)"
repo_cat config > "$tmp/config.before"
if "$vmshadow" init --format 1 2> "$tmp/err"; then fail "second init succeeded"; fi
grep -q "is a repository already (format version 2)" "$tmp/err" || fail "bad message: $(cat "$tmp/err")"
repo_cat config | cmp -s - "$tmp/config.before" || fail "second init changed the config"

"$vmshadow" backup > "$tmp/out" || fail "backup: $(cat "$tmp/out")"
[ "$(repo_count chunks/)" = 0 ] || fail "a version 2 repository has chunks/"
packs=$(repo_count packs/)
segments=$(repo_count index/)
# 42 MiB of random data: two packs (30 MiB target), each with its segment.
[ "$packs" -eq 2 ] && [ "$segments" -eq 2 ] || fail "$packs packs, $segments segments"
id1=$("$vmshadow" list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["backups"][0]["backup_id"])')
[ "$(repo_count "backups/$id1/manifest")" = 1 ] || fail "no manifest object"
"$vmshadow" verify --deep > "$tmp/out" || fail "verify: $(cat "$tmp/out")"
"$vmshadow" extract "$id1" files "$tmp/app/blob.bin" --to "$tmp/blob.out" > /dev/null ||
  fail "extract failed"
cmp -s "$tmp/blob.out" "$tmp/app/blob.bin" || fail "extracted file differs"
"$vmshadow" extract "$id1" files "$tmp/app/disk.raw" --to "$tmp/disk.out" > /dev/null ||
  fail "extract of the disk failed"
cmp -s "$tmp/disk.out" "$tmp/app/disk.raw" || fail "extracted disk differs"

# A second backup of changed data, then prune the first and gc: the
# first's unique chunks go, the second verifies deep.
# 24 MiB of the 30 MiB first pack change: under half of it stays live, so
# gc repacks it.
head -c $((24 * 1024 * 1024)) /dev/urandom | dd of="$tmp/app/blob.bin" conv=notrunc status=none
sleep 1
"$vmshadow" backup > "$tmp/out" || fail "second backup: $(cat "$tmp/out")"
"$vmshadow" prune --keep-last 1 > "$tmp/out" || fail "prune: $(cat "$tmp/out")"
grep -q "remove $id1" "$tmp/out" || fail "prune said: $(cat "$tmp/out")"
before=$(repo_bytes packs/)
"$vmshadow" gc --grace 0 --json > "$tmp/out" || fail "gc: $(cat "$tmp/out")"
after=$(repo_bytes packs/)
removed=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["chunks_removed"])' "$tmp/out")
[ "$removed" -ge 150 ] || fail "gc removed $removed chunks, expected about 192: $(cat "$tmp/out")"
[ "$after" -lt "$before" ] || fail "gc freed nothing ($before -> $after)"
"$vmshadow" verify --deep > "$tmp/out" || fail "verify after gc: $(cat "$tmp/out")"
[ "$(repo_count "backups/$id1/")" = 0 ] || fail "objects of the pruned backup are left: $(repo_objects "backups/$id1/")"

# A backup into a missing directory makes a version 2 repository (packs,
# issue 12), as init does.
VMSHADOW_REPO=$tmp/repo-new "$vmshadow" backup > "$tmp/out" || fail "backup into a new directory: $(cat "$tmp/out")"
grep -q '"version": 2' "$tmp/repo-new/config" && [ -d "$tmp/repo-new/packs" ] && [ ! -e "$tmp/repo-new/chunks" ] ||
  fail "a backup did not create a version 2 repository: $(cat "$tmp/repo-new/config")"
# vmshadow upgrade: a version 1 repository (what older vmshadow made, or
# VMSHADOW_REPO_FORMAT=1) moves to version 2 keeping its backup, which
# verifies deep and extracts the same.
export VMSHADOW_REPO=$tmp/repo1
VMSHADOW_REPO_FORMAT=1 "$vmshadow" backup > "$tmp/out" || fail "v1 backup: $(cat "$tmp/out")"
[ -d "$tmp/repo1/chunks" ] || fail "VMSHADOW_REPO_FORMAT=1 did not create a version 1 repository"
idv1=$("$vmshadow" list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["backups"][0]["backup_id"])')
"$vmshadow" upgrade > "$tmp/out" || fail "upgrade: $(cat "$tmp/out")"
grep -q "upgraded $idv1" "$tmp/out" || fail "upgrade said: $(cat "$tmp/out")"
grep -q '"version": 2' "$tmp/repo1/config" || fail "config after upgrade: $(cat "$tmp/repo1/config")"
[ ! -e "$tmp/repo1/chunks" ] || fail "chunks/ left after the upgrade"
"$vmshadow" verify --deep > "$tmp/out" || fail "verify after upgrade: $(cat "$tmp/out")"
"$vmshadow" extract "$idv1" files "$tmp/app/blob.bin" --to "$tmp/blob1.out" > /dev/null ||
  fail "extract after upgrade failed"
cmp -s "$tmp/blob1.out" "$tmp/app/blob.bin" || fail "extracted file differs after upgrade"
if "$vmshadow" upgrade 2> "$tmp/err"; then fail "a second upgrade succeeded"; fi
grep -q "format version 2 already" "$tmp/err" || fail "bad message: $(cat "$tmp/err")"
export VMSHADOW_REPO=$main_repo

# A flipped byte in a pack: verify --deep names it; extract refuses.
pack=$(repo_objects packs/ | head -1)
repo_flip "$pack" 5000
if "$vmshadow" verify --deep > "$tmp/out"; then fail "verify --deep missed a flipped byte"; fi
grep -q "is corrupt" "$tmp/out" || fail "verify said: $(cat "$tmp/out")"
exit 0
