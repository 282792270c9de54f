#!/usr/bin/env bash
# vmshadow backup / list / show / verify / extract / restore / prune / gc end to end,
# through a real exec writer whose components name a config file, a raw
# disk image and a qcow2 image, the file provider and the repository
# (issue 4). Every file comes back byte-identical, holes stay holes, a
# flipped byte is found by verify --deep and stops extract, and a veto
# leaves nothing in the repository (R12).
set -euo pipefail
vmshadow=$1
tmp=$(mktemp -d /var/tmp/vmshadow-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail () { echo "FAIL: $*"; exit 1; }
. "$(dirname "$0")/../../flip-byte.sh"
export VMSHADOW_SCRATCH_DIR=$tmp/scratch VMSHADOW_REPO=$tmp/repo
export VMSHADOW_WRITERS_DIR=$tmp/writers.d
# Format 1, asked for (new repositories are format 2): it counts format 1's chunk files.
export VMSHADOW_REPO_FORMAT=1

# The data: a config file, an odd-sized binary file, an empty file, a raw
# image with random data, a duplicated region, zeros and holes, not a
# multiple of the chunk size (but of the 512-byte sector, as QEMU sizes
# every disk); a qcow2 image.
mkdir -p "$tmp/app" "$VMSHADOW_WRITERS_DIR"
echo "setting = 1" > "$tmp/app/app.conf"
head -c $((5 * 1024 * 1024 + 7)) /dev/urandom > "$tmp/app/blob.bin"
: > "$tmp/app/empty"
truncate -s $((20 * 1024 * 1024 + 12288)) "$tmp/app/disk.raw"
head -c $((3 * 1024 * 1024)) /dev/urandom > "$tmp/rand"
dd if="$tmp/rand" of="$tmp/app/disk.raw" conv=notrunc status=none
dd if="$tmp/rand" of="$tmp/app/disk.raw" bs=1M seek=8 conv=notrunc status=none
dd if=/dev/zero of="$tmp/app/disk.raw" bs=1M seek=12 count=2 conv=notrunc status=none
qemu-img create -q -f qcow2 "$tmp/app/disk.qcow2" 64M
qemu-io -f qcow2 -c 'write -P 0x5a 1M 3M' -c 'write -P 0x11 40M 64k' "$tmp/app/disk.qcow2" >/dev/null

cat > "$VMSHADOW_WRITERS_DIR/app" <<W
#!/bin/sh
case "\$1" in
identify) cat <<JSON
{"format": "vmshadow-writer-metadata", "version": 1,
 "writer": {"name": "app", "id": "0d9f3c1e-2b4a-4c5d-8e6f-7a8b9c0d1e2f"},
 "components": [
   {"name": "config", "files": [{"path": "$tmp/app/app.conf", "kind": "plain"},
                                {"path": "$tmp/app/blob.bin", "kind": "plain"},
                                {"path": "$tmp/app/empty", "kind": "plain"}]},
   {"name": "disks", "files": [
     {"path": "$tmp/app/disk.raw", "kind": "disk", "format": "raw"},
     {"path": "$tmp/app/disk.qcow2", "kind": "disk", "format": "qcow2"}]}]}
JSON
;;
freeze) [ -e "$tmp/veto" ] && { echo '{"failure":"retryable","message":"busy on purpose"}'; exit 1; } ;;
esac
exit 0
W
chmod 755 "$VMSHADOW_WRITERS_DIR/app"

"$vmshadow" backup > "$tmp/out1" || fail "first backup: $(cat "$tmp/out1")"
grep -q "complete" "$tmp/out1" || fail "no summary: $(cat "$tmp/out1")"
id1=$("$vmshadow" list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["backups"][0]["backup_id"])')

# Permissions: directories 0700, files 0600.
bad=$(find "$VMSHADOW_REPO" \( -type d ! -perm 700 \) -o \( -type f ! -perm 600 \) | head -3)
[ -z "$bad" ] || fail "wrong permissions: $bad"

"$vmshadow" show "$id1" | grep -q "disk.qcow2" || fail "show does not list the qcow2 disk"
"$vmshadow" verify --deep >/dev/null || fail "a fresh repository does not verify"

# Round trips.
"$vmshadow" extract "$id1" config "$tmp/app/app.conf" --to "$tmp/x.conf"
cmp "$tmp/app/app.conf" "$tmp/x.conf" || fail "config differs"
"$vmshadow" extract "$id1" config "$tmp/app/blob.bin" --to "$tmp/x.bin"
cmp "$tmp/app/blob.bin" "$tmp/x.bin" || fail "odd-sized file differs"
"$vmshadow" extract "$id1" config "$tmp/app/empty" --to "$tmp/x.empty"
[ -f "$tmp/x.empty" ] && [ ! -s "$tmp/x.empty" ] || fail "the empty file did not come back empty"
"$vmshadow" extract "$id1" disks "$tmp/app/disk.raw" --to "$tmp/x.raw"
cmp "$tmp/app/disk.raw" "$tmp/x.raw" || fail "raw disk differs"
[ "$(stat -c %b "$tmp/x.raw")" -lt $((16 * 1024 * 2)) ] || fail "holes were filled in"
"$vmshadow" extract "$id1" disks "$tmp/app/disk.qcow2" --to "$tmp/x.qcow2"
[ "$(qemu-img info --output=json "$tmp/x.qcow2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["format"])')" = qcow2 ] \
  || fail "the qcow2 disk did not come back as qcow2"
qemu-img compare -q "$tmp/app/disk.qcow2" "$tmp/x.qcow2" || fail "qcow2 disk differs"
if "$vmshadow" extract "$id1" disks "$tmp/app/disk.raw" --to "$tmp/x.raw" 2>/dev/null; then
  fail "extract overwrote an existing file"
fi

# vmshadow restore puts the whole backup back in place (issue 10): a
# changed file, a deleted one, a damaged raw disk, a deleted qcow2 disk;
# holes stay holes and the qcow2 comes back as a qcow2.
echo "setting = damaged" > "$tmp/app/app.conf"
rm "$tmp/app/blob.bin" "$tmp/app/disk.qcow2"
dd if=/dev/urandom of="$tmp/app/disk.raw" bs=1M seek=1 count=1 conv=notrunc status=none
"$vmshadow" restore "$id1" --json > "$tmp/restore.json" || fail "restore: $(cat "$tmp/restore.json")"
python3 - "$tmp/restore.json" <<'PY' || fail "restore report: $(cat "$tmp/restore.json")"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["outcome"] == "success" and r["vms"] == [], r
c = {x["component"]: x for x in r["components"]}
assert set(c) == {"config", "disks"}, c
for x in c.values():
    assert x["status"] == "restored" and x["restore_status"] == "all", x
    assert all(f["status"] == "written" and f["target"] == f["path"] for f in x["files"]), x
PY
cmp "$tmp/app/app.conf" "$tmp/x.conf" || fail "restore: config differs"
cmp "$tmp/app/blob.bin" "$tmp/x.bin" || fail "restore: odd-sized file differs"
[ -f "$tmp/app/empty" ] && [ ! -s "$tmp/app/empty" ] || fail "restore: the empty file is not empty"
cmp "$tmp/app/disk.raw" "$tmp/x.raw" || fail "restore: raw disk differs"
[ "$(stat -c %b "$tmp/app/disk.raw")" -lt $((16 * 1024 * 2)) ] || fail "restore: holes were filled in"
qemu-img compare -q "$tmp/app/disk.qcow2" "$tmp/x.qcow2" || fail "restore: qcow2 disk differs"
[ "$(qemu-img info --output=json "$tmp/app/disk.qcow2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["format"])')" = qcow2 ] \
  || fail "restore: the qcow2 disk did not come back as qcow2"

# A second backup after a small change stores little (deduplication).
echo "setting = 2" > "$tmp/app/app.conf"
"$vmshadow" backup --json > "$tmp/out2" || fail "second backup"
stored=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["bytes_stored"])' "$tmp/out2")
[ "$stored" -lt 65536 ] || fail "second backup stored $stored bytes for a 12-byte change"
[ "$("$vmshadow" list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["backups"]))')" = 2 ] \
  || fail "expected 2 backups"

# A veto at freeze: no backup, the writer named (R4, R12).
touch "$tmp/veto"
if "$vmshadow" backup > "$tmp/out3" 2>&1; then fail "a vetoed backup succeeded"; fi
grep -q "app" "$tmp/out3" && grep -q "freeze" "$tmp/out3" || fail "the veto report: $(cat "$tmp/out3")"
rm "$tmp/veto"
[ "$("$vmshadow" list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["backups"]))')" = 2 ] \
  || fail "a vetoed backup became visible"

# A flipped byte in a chunk: verify --deep names backup, component, file
# and offset; extract of that file fails and leaves nothing behind.
# The largest chunk file: a chunk of random data, stored raw, whatever the
# chunk size.
chunk=$(find "$VMSHADOW_REPO/chunks" -type f -printf '%s %p\n' | sort -n | tail -1 | cut -d' ' -f2-)
[ -n "$chunk" ] || fail "no chunk to corrupt"
size=$(stat -c %s "$chunk")
flip_byte "$chunk" $((size - 100))
if "$vmshadow" verify --deep > "$tmp/verify" 2>&1; then fail "verify --deep missed a flipped byte"; fi
line=$(grep -m1 "offset" "$tmp/verify") || fail "verify report: $(cat "$tmp/verify")"
[[ "$line" =~ ^backup\ ([^,]+),\ component\ ([^,]+),\ file\ ([^,]+),\ offset\ [0-9]+: ]] \
  || fail "verify does not name backup, component, file and offset: $line"
bad_backup=${BASH_REMATCH[1]} bad_component=${BASH_REMATCH[2]} bad_file=${BASH_REMATCH[3]}
if "$vmshadow" extract "$bad_backup" "$bad_component" "$bad_file" --to "$tmp/y" 2>/dev/null; then
  fail "extract wrote $bad_file from a corrupt chunk"
fi
[ ! -e "$tmp/y" ] || fail "extract left a corrupt file behind"

# Prune and gc.
"$vmshadow" prune --keep-last 1 --dry-run >/dev/null
[ "$("$vmshadow" list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["backups"]))')" = 2 ] \
  || fail "a dry run removed a backup"
"$vmshadow" prune --keep-last 1 >/dev/null
[ "$("$vmshadow" list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["backups"]))')" = 1 ] \
  || fail "prune --keep-last 1 kept more"
"$vmshadow" gc --grace 0 >/dev/null
if "$vmshadow" prune 2>/dev/null; then fail "prune without a policy ran"; fi
echo "ok"
