#!/usr/bin/env bash
# An encrypted repository (issue 13, R28) holds no plaintext, and every
# tampering its storage (or an operator) can do is detected and named —
# and none yields wrong data: a flipped bit in a chunk, a chunk swapped
# for another valid chunk, an index from another backup, a manifest
# replayed from an older backup under a new name (and over another
# backup's), a truncated object, a wrong key, a wrong passphrase, a backup
# moved from another repository that shares the key. Each
# damage is made on a fresh copy of the repository; extract must fail and
# leave no file. Without the key, verify checks the structure and says
# contents were not authenticated; list works only where ids are visible.
set -euo pipefail
vmshadow=$1
tmp=$(mktemp -d /var/tmp/vmshadow-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail () { echo "FAIL: $*"; exit 1; }
. "$(dirname "$0")/../../flip-byte.sh"
export VMSHADOW_SCRATCH_DIR=$tmp/scratch VMSHADOW_REPO=$tmp/repo
export VMSHADOW_WRITERS_DIR=$tmp/writers.d VMSHADOW_KEY_DIR=$tmp/keys
export VMSHADOW_PASSPHRASE=tamper-test-passphrase VMSHADOW_SCRYPT_LOG2N=14
unset VMSHADOW_NEW_PASSPHRASE VMSHADOW_REPO_FORMAT VMSHADOW_REPO_PACK_SIZE

mkdir -p "$tmp/app" "$VMSHADOW_WRITERS_DIR"
# 1 MiB of random data first (8 raw blobs at the start of the pack), then
# text with a marker that must never be found in the repository.
head -c $((1024 * 1024)) /dev/urandom > "$tmp/app/blob.bin"
for i in $(seq 1 20000); do echo "MARKER-PLAINTEXT-$i"; done > "$tmp/app/text"
cat > "$VMSHADOW_WRITERS_DIR/app" <<W
#!/bin/sh
env >> "$tmp/writer-env"
[ "\$1" = identify ] || exit 0
cat <<JSON
{"format": "vmshadow-writer-metadata", "version": 1,
 "writer": {"name": "app", "id": "0d9f3c1e-2b4a-4c5d-8e6f-7a8b9c0d1e2f"},
 "components": [{"name": "files", "files": [
   {"path": "$tmp/app/blob.bin", "kind": "plain"},
   {"path": "$tmp/app/text", "kind": "plain"}]}]}
JSON
W
chmod 755 "$VMSHADOW_WRITERS_DIR/app"

"$vmshadow" init --encrypt --visible-backup-ids > "$tmp/out" || fail "init: $(cat "$tmp/out")"
fp=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["encryption"]["key_fingerprint"])' "$VMSHADOW_REPO/config")
[ -f "$VMSHADOW_KEY_DIR/$fp.key" ] || fail "no key file $fp.key"
[ "$(stat -c %a "$VMSHADOW_KEY_DIR/$fp.key")" = 600 ] || fail "key file mode"
grep -q "$VMSHADOW_PASSPHRASE" "$VMSHADOW_KEY_DIR/$fp.key" && fail "the passphrase is in the key file"
# A second init fails, changes nothing, and leaves no key behind.
if "$vmshadow" init --encrypt > "$tmp/out" 2>&1; then fail "a second init --encrypt succeeded"; fi
[ "$(ls "$VMSHADOW_KEY_DIR" | wc -l)" = 1 ] || fail "a failed init left a key: $(ls "$VMSHADOW_KEY_DIR")"
"$vmshadow" backup --json > "$tmp/b1.json" || fail "backup 1: $(cat "$tmp/b1.json")"
b1=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["backup_id"])' "$tmp/b1.json")
sleep 1
for i in $(seq 1 20000); do echo "MARKER-PLAINTEXT-$i changed"; done > "$tmp/app/text"
"$vmshadow" backup --json > "$tmp/b2.json" || fail "backup 2: $(cat "$tmp/b2.json")"
b2=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["backup_id"])' "$tmp/b2.json")
"$vmshadow" verify --deep > "$tmp/out" || fail "verify --deep of a sound repository: $(cat "$tmp/out")"

# The passphrase never reaches a writer (vmshadow takes it out of its
# environment before it runs anything).
[ -s "$tmp/writer-env" ] || fail "the writer was not run"
if grep -q "$VMSHADOW_PASSPHRASE" "$tmp/writer-env"; then fail "an exec writer got the passphrase"; fi
# No plaintext anywhere: not the text, not a file path, not a writer name.
if grep -rlaE "MARKER-PLAINTEXT|$tmp/app|0d9f3c1e-2b4a" "$VMSHADOW_REPO" > "$tmp/leak"; then
  fail "plaintext in: $(cat "$tmp/leak")"
fi
# Chunk ids are keyed: the SHA-256 of the first chunk is nowhere (not
# even in a sealed segment would it be readable, but neither is the HMAC
# the same as the hash).
sha=$(head -c 131072 "$tmp/app/blob.bin" | sha256sum | cut -d' ' -f1)
if grep -rlaF "$sha" "$VMSHADOW_REPO" "$VMSHADOW_KEY_DIR"; then fail "a plain chunk hash is stored"; fi

cp -a "$VMSHADOW_REPO" "$tmp/pristine"
fresh () { rm -rf "$VMSHADOW_REPO"; cp -a "$tmp/pristine" "$VMSHADOW_REPO"; }
# Backup 1's pack (each backup puts its own): the oldest.
pack=$(cd "$tmp/pristine" && ls -tr packs/*/* | head -1)
[ "$(cd "$tmp/pristine" && find packs -type f | wc -l)" -eq 2 ] || fail "expected two packs"

# expect_extract_fails BACKUP FILE PATTERN: extract fails naming PATTERN
# and writes nothing.
expect_extract_fails () {
  rm -f "$tmp/x"
  if "$vmshadow" extract "$1" files "$2" --to "$tmp/x" > "$tmp/out" 2>&1; then
    fail "extract of $2 from $1 succeeded on a tampered repository"
  fi
  grep -qE "$3" "$tmp/out" || fail "extract did not say '$3': $(cat "$tmp/out")"
  [ ! -e "$tmp/x" ] || fail "extract left a file behind"
}
expect_verify_names () {
  if "$vmshadow" verify --deep > "$tmp/out" 2>&1; then
    fail "verify --deep missed: $1"
  fi
  grep -qE "$1" "$tmp/out" || fail "verify did not say '$1': $(cat "$tmp/out")"
}

# 1. A flipped bit in a chunk (the third blob: raw, 131072 + 33 bytes, the
# first at offset 16; which file offset it holds depends on the order the
# datapath's threads stored them in).
fresh
flip_byte "$VMSHADOW_REPO/$pack" $((16 + 2 * 131105 + 500))
expect_verify_names "file $tmp/app/blob.bin, offset [0-9]+: chunk [0-9a-f]{64} is corrupt \(failed authentication in pack $pack"
expect_extract_fails "$b1" "$tmp/app/blob.bin" "failed authentication"

# 2. A chunk swapped for another valid chunk (blobs 0 and 1 exchanged:
# both sealed with the right key, but each for its own id).
fresh
python3 - "$VMSHADOW_REPO/$pack" <<'PY'
import sys
p = sys.argv[1]; n = 131105
b = bytearray(open(p, "rb").read())
a0, a1 = b[16:16 + n], b[16 + n:16 + 2 * n]
b[16:16 + n], b[16 + n:16 + 2 * n] = a1, a0
open(p, "wb").write(b)
PY
expect_verify_names "offset [0-9]+: chunk [0-9a-f]{64} is corrupt \(failed authentication"
[ "$(grep -c "backup $b1, .* is corrupt (failed authentication" "$tmp/out")" -eq 2 ] ||
  fail "not both swapped chunks are named: $(cat "$tmp/out")"
expect_extract_fails "$b2" "$tmp/app/blob.bin" "failed authentication"

# 2b. A pack trailer (the pack's own index, for recovery) replaced by the
# other pack's: verify --deep opens every trailer for its own pack.
fresh
other=$(cd "$VMSHADOW_REPO" && ls packs/*/* | grep -v "^$pack\$")
python3 - "$VMSHADOW_REPO/$pack" "$VMSHADOW_REPO/$other" <<'PY'
import struct, sys, hashlib
a = bytearray(open(sys.argv[1], "rb").read()); b = open(sys.argv[2], "rb").read()
ta, la = struct.unpack("<QQ", a[-48:-32]); tb, lb = struct.unpack("<QQ", b[-48:-32])
# The other pack's trailer, cut or padded to this one's length, its tail
# made consistent (offset, length, checksum: written as pack format
# version 1, whose checksum is SHA-256, which Python has; version 2's
# XXH3-128 it has not): only the seal can tell.
t = (b[tb:tb + lb] + bytes(la))[:la]
a[ta:ta + la] = t
a[8:12] = struct.pack("<I", 1)
a[-16 - 32:] = struct.pack("<QQ", ta, la) + hashlib.sha256(a[:-48]).digest()
open(sys.argv[1], "wb").write(a)
PY
expect_verify_names "pack $pack: its trailer failed authentication"

# 3. An index from another backup (backup 1's text index in backup 2).
fresh
cp "$VMSHADOW_REPO/backups/$b1/file-1.idx" "$VMSHADOW_REPO/backups/$b2/file-1.idx"
expect_extract_fails "$b2" "$tmp/app/text" "backup $b2: index 1 \(file-1.idx\) failed authentication"
expect_verify_names "backup $b2: index 1 \(file-1.idx\) failed authentication"

# 4. A manifest replayed from an older backup under a new name, and over
# a newer backup's.
fresh
mkdir "$VMSHADOW_REPO/backups/2030-01-01T00:00:00Z-replay"
cp "$VMSHADOW_REPO/backups/$b1/"* "$VMSHADOW_REPO/backups/2030-01-01T00:00:00Z-replay/"
expect_extract_fails "2030-01-01T00:00:00Z-replay" "$tmp/app/text" "backup 2030-01-01T00:00:00Z-replay: cannot read its manifest: failed authentication"
if "$vmshadow" list > "$tmp/out" 2>&1; then fail "list accepted a replayed manifest"; fi
grep -q "2030-01-01T00:00:00Z-replay: cannot read its manifest: failed authentication" "$tmp/out" || fail "list said: $(cat "$tmp/out")"
fresh
cp "$VMSHADOW_REPO/backups/$b1/manifest" "$VMSHADOW_REPO/backups/$b2/manifest"
expect_extract_fails "$b2" "$tmp/app/text" "backup $b2: cannot read its manifest: failed authentication"

# 5. Truncated objects: a manifest, and the pack (its last blobs).
fresh
truncate -s -7 "$VMSHADOW_REPO/backups/$b2/manifest"
expect_extract_fails "$b2" "$tmp/app/text" "backup $b2: cannot read its manifest: failed authentication"
fresh
truncate -s 300000 "$VMSHADOW_REPO/$pack"
expect_verify_names "is corrupt \(its pack $pack is shorter than the index says\)"
expect_extract_fails "$b1" "$tmp/app/blob.bin" "shorter than the index says"
# Without the key the truncated pack is found by its checksum.
if env -u VMSHADOW_PASSPHRASE "$vmshadow" verify < /dev/null > "$tmp/out" 2>&1; then
  fail "verify without the key missed a truncated pack"
fi
grep -q "pack $pack is corrupt (checksum mismatch" "$tmp/out" || fail "keyless verify said: $(cat "$tmp/out")"
grep -q "contents were not authenticated" "$tmp/out" || fail "keyless verify did not say what it did not check: $(cat "$tmp/out")"

# 6. A wrong key: another real key put in the repository's config (as a
# swapped or mistaken key would be): every sealed object fails.
fresh
"$vmshadow" key create --json > "$tmp/k2.json" || fail "key create: $(cat "$tmp/k2.json")"
fp2=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["fingerprint"])' "$tmp/k2.json")
[ "$fp2" != "$fp" ] || fail "two keys with one fingerprint"
sed -i "s/$fp/$fp2/" "$VMSHADOW_REPO/config"
expect_extract_fails "$b1" "$tmp/app/text" "backup $b1: cannot read its manifest: failed authentication"
# ... and a key file that claims another key's name.
fresh
cp "$VMSHADOW_KEY_DIR/$fp.key" "$tmp/key.saved"
cp "$VMSHADOW_KEY_DIR/$fp2.key" "$VMSHADOW_KEY_DIR/$fp.key"
expect_extract_fails "$b1" "$tmp/app/text" "holds key $fp2, not the key its name says"
cp "$tmp/key.saved" "$VMSHADOW_KEY_DIR/$fp.key"

# 7. A wrong passphrase.
fresh
rm -f "$tmp/x"
if VMSHADOW_PASSPHRASE=not-the-passphrase "$vmshadow" extract "$b1" files "$tmp/app/text" --to "$tmp/x" > "$tmp/out" 2>&1; then
  fail "a wrong passphrase opened the key"
fi
grep -q "wrong passphrase for key $fp" "$tmp/out" || fail "said: $(cat "$tmp/out")"
[ ! -e "$tmp/x" ] || fail "extract with a wrong passphrase left a file"

# 8. A backup moved from another repository under the same key (one key
# may serve several, R29): same object names, same key, only the
# repository id in the associated data differs.
export VMSHADOW_REPO=$tmp/other
"$vmshadow" init --encrypt --key "$fp" --visible-backup-ids > "$tmp/out" || fail "init --key: $(cat "$tmp/out")"
mkdir -p "$VMSHADOW_REPO/backups/$b1"
cp "$tmp/pristine/backups/$b1/"* "$VMSHADOW_REPO/backups/$b1/"
expect_extract_fails "$b1" "$tmp/app/text" "backup $b1: cannot read its manifest: failed authentication"
export VMSHADOW_REPO=$tmp/repo

# The sound copy still restores exactly, through a passphrase on a file
# descriptor (never argv).
fresh
env -u VMSHADOW_PASSPHRASE "$vmshadow" extract "$b2" files "$tmp/app/text" --to "$tmp/x" \
  --passphrase-fd 3 3< <(echo "$VMSHADOW_PASSPHRASE") > "$tmp/out" 2>&1 || fail "extract: $(cat "$tmp/out")"
cmp -s "$tmp/x" "$tmp/app/text" || fail "extract of the sound repository differs"

# Listing without the key: ids only where visible ...
env -u VMSHADOW_PASSPHRASE "$vmshadow" list < /dev/null > "$tmp/out" 2>&1 || fail "keyless list: $(cat "$tmp/out")"
grep -q "$b1" "$tmp/out" && grep -q "$b2" "$tmp/out" || fail "keyless list: $(cat "$tmp/out")"
# ... and never where the owner hid them (the default).
export VMSHADOW_REPO=$tmp/hidden
"$vmshadow" init --encrypt --key "$fp" > "$tmp/out" || fail "init --key: $(cat "$tmp/out")"
"$vmshadow" backup --json > "$tmp/b3.json" || fail "backup 3: $(cat "$tmp/b3.json")"
b3=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["backup_id"])' "$tmp/b3.json")
[ ! -e "$VMSHADOW_REPO/backups/$b3" ] || fail "a hidden backup id is in an object name"
"$vmshadow" list > "$tmp/out" || fail "list with the key: $(cat "$tmp/out")"
grep -q "$b3" "$tmp/out" || fail "list with the key: $(cat "$tmp/out")"
if env -u VMSHADOW_PASSPHRASE "$vmshadow" list < /dev/null > "$tmp/out" 2>&1; then
  fail "list without the key showed hidden ids: $(cat "$tmp/out")"
fi
grep -q "hides its backup ids" "$tmp/out" || fail "said: $(cat "$tmp/out")"
grep -q "$b3" "$tmp/out" && fail "the hidden id leaked: $(cat "$tmp/out")"
"$vmshadow" verify --deep > "$tmp/out" || fail "verify --deep (hidden ids): $(cat "$tmp/out")"
echo "ok: no plaintext; every tampering detected and named; none yielded data"
