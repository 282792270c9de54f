#!/usr/bin/env bash
# The disaster drill of docs/encryption.md (issue 13, R28): back up into
# an encrypted repository, print the paper key, then lose the host — its
# key store, scratch space, writers and everything else are deleted. On a
# "new host" (a clean directory tree with only a copy of the repository)
# nothing can be read until the key is typed back in from the paper
# (a mistyped line is named and changes nothing); then every file of the
# backup comes back exactly and verify --deep authenticates everything.
# Then the same with an organisation's RSA master key instead of the
# paper: the repository's keys/ copy and the master private key suffice.
# Then an X25519 master key (issue 13): a key created for one wraps it
# (key show names the method), the RSA private key and another X25519 key
# are refused and named, a recovery copy with one altered byte does not
# open, and the right private key restores the backup.
set -euo pipefail
vmshadow=$1
tmp=$(mktemp -d /var/tmp/vmshadow-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail () { echo "FAIL: $*"; exit 1; }
unset VMSHADOW_NEW_PASSPHRASE VMSHADOW_REPO_FORMAT VMSHADOW_REPO_PACK_SIZE
export VMSHADOW_SCRYPT_LOG2N=14
old=$tmp/old-host new=$tmp/new-host
host_env () {
  export VMSHADOW_SCRATCH_DIR=$1/scratch VMSHADOW_REPO=$1/repo
  export VMSHADOW_WRITERS_DIR=$1/writers.d VMSHADOW_KEY_DIR=$1/etc/keys
}

# ---- the old host ----
host_env "$old"
export VMSHADOW_PASSPHRASE=old-host-passphrase
mkdir -p "$old/app" "$VMSHADOW_WRITERS_DIR"
head -c $((3 * 1024 * 1024 + 4096)) /dev/urandom > "$old/app/disk.img"
seq 1 100000 > "$old/app/app.conf"
cat > "$VMSHADOW_WRITERS_DIR/app" <<W
#!/bin/sh
[ "\$1" = identify ] || exit 0
cat <<JSON
{"format": "vmshadow-writer-metadata", "version": 1,
 "writer": {"name": "app", "id": "0d9f3c1e-2b4a-4c5d-8e6f-7a8b9c0d1e2f"},
 "components": [{"name": "files", "files": [
   {"path": "$old/app/disk.img", "kind": "disk", "format": "raw"},
   {"path": "$old/app/app.conf", "kind": "plain"}]}]}
JSON
W
chmod 755 "$VMSHADOW_WRITERS_DIR/app"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$tmp/master.pem" 2> /dev/null
openssl pkey -in "$tmp/master.pem" -pubout -out "$tmp/master.pub.pem"

"$vmshadow" init --encrypt --master-key "$tmp/master.pub.pem" > "$tmp/out" || fail "init: $(cat "$tmp/out")"
"$vmshadow" backup --json > "$tmp/b.json" || fail "backup: $(cat "$tmp/b.json")"
id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["backup_id"])' "$tmp/b.json")
"$vmshadow" key export --paper > "$tmp/paper.txt" || fail "export: $(cat "$tmp/paper.txt")"
fp=$(awk '/^fingerprint/ {print $2}' "$tmp/paper.txt")
[ "$(grep -cE '^[1-4]: ([0-9a-f]{4} ){4} [0-9a-f]{4}$' "$tmp/paper.txt")" -eq 4 ] ||
  fail "the paper key is not four checksummed lines: $(cat "$tmp/paper.txt")"
cp "$old/app/disk.img" "$old/app/app.conf" "$tmp/"     # the truth, kept aside
"$vmshadow" key show --json > "$tmp/show.json" || fail "key show"
grep -q '"recovery_key_sha256": "[0-9a-f]\{64\}"' "$tmp/show.json" || fail "no recovery wrap: $(cat "$tmp/show.json")"

# ---- the disaster: the host is gone, the repository survives ----
mkdir -p "$new"
cp -a "$old/repo" "$new/repo"
cp -a "$new/repo" "$tmp/repo-copy"
rm -rf "$old"
host_env "$new"
export VMSHADOW_PASSPHRASE=new-host-passphrase

if "$vmshadow" extract "$id" files "$old/app/disk.img" --to "$new/x" > "$tmp/out" 2>&1; then
  fail "the new host read the repository without a key"
fi
grep -q "no key $fp here" "$tmp/out" || fail "said: $(cat "$tmp/out")"

# A mistyped paper line is named, and nothing is made.
python3 - "$tmp/paper.txt" "$tmp/typo.txt" <<'PY'
import sys
lines = open(sys.argv[1]).read().split("\n")
for i, l in enumerate(lines):
    if l.startswith("2: "):
        d = l[3]
        lines[i] = l[:3] + ("0" if d != "0" else "1") + l[4:]
open(sys.argv[2], "w").write("\n".join(lines))
PY
if "$vmshadow" key import --paper "$tmp/typo.txt" > "$tmp/out" 2>&1; then
  fail "a mistyped paper key was accepted"
fi
grep -q "line 2 does not match its checksum" "$tmp/out" || fail "said: $(cat "$tmp/out")"
[ ! -e "$VMSHADOW_KEY_DIR/$fp.key" ] || fail "a bad import left a key file"

# Typed back in (spacing and case as a person types them), under the new
# host's passphrase, from stdin.
sed '/^[1-4]: /{y/abcdef/ABCDEF/;s/ //g;s/:/: /}' "$tmp/paper.txt" > "$tmp/typed.txt"
grep -q '^1: [0-9A-F]\{20\}$' "$tmp/typed.txt" || fail "typed: $(cat "$tmp/typed.txt")"
"$vmshadow" key import --paper < "$tmp/typed.txt" > "$tmp/out" 2>&1 || fail "paper import: $(cat "$tmp/out")"
grep -q "Imported key $fp" "$tmp/out" || fail "said: $(cat "$tmp/out")"

"$vmshadow" list > "$tmp/out" || fail "list: $(cat "$tmp/out")"
grep -q "$id" "$tmp/out" || fail "list: $(cat "$tmp/out")"
"$vmshadow" verify --deep > "$tmp/out" || fail "verify --deep: $(cat "$tmp/out")"
mkdir -p "$new/restored"
"$vmshadow" extract "$id" files "$old/app/disk.img" --to "$new/restored/disk.img" > "$tmp/out" 2>&1 ||
  fail "extract disk: $(cat "$tmp/out")"
"$vmshadow" extract "$id" files "$old/app/app.conf" --to "$new/restored/app.conf" > "$tmp/out" 2>&1 ||
  fail "extract conf: $(cat "$tmp/out")"
cmp -s "$new/restored/disk.img" "$tmp/disk.img" || fail "the restored disk differs"
cmp -s "$new/restored/app.conf" "$tmp/app.conf" || fail "the restored file differs"

# The new passphrase can be changed; the old one never worked here.
VMSHADOW_NEW_PASSPHRASE=third-passphrase "$vmshadow" key change-passphrase > "$tmp/out" 2>&1 ||
  fail "change-passphrase: $(cat "$tmp/out")"
if "$vmshadow" list > "$tmp/out" 2>&1; then fail "the replaced passphrase still works"; fi
VMSHADOW_PASSPHRASE=third-passphrase "$vmshadow" list > "$tmp/out" 2>&1 || fail "new passphrase: $(cat "$tmp/out")"

# ---- the same disaster, recovered with the organisation's master key ----
rm -rf "$new"
mkdir -p "$new"
cp -a "$tmp/repo-copy" "$new/repo"
"$vmshadow" key import --master-key "$tmp/master.pem" > "$tmp/out" 2>&1 ||
  fail "master key import: $(cat "$tmp/out")"
"$vmshadow" extract "$id" files "$old/app/disk.img" --to "$new/restored.img" > "$tmp/out" 2>&1 ||
  fail "extract after master-key recovery: $(cat "$tmp/out")"
cmp -s "$new/restored.img" "$tmp/disk.img" || fail "the disk restored after master-key recovery differs"

# ---- an X25519 master key ----
openssl genpkey -algorithm X25519 -out "$tmp/x.pem" 2> /dev/null
openssl pkey -in "$tmp/x.pem" -pubout -out "$tmp/x.pub.pem"
openssl genpkey -algorithm X25519 -out "$tmp/other-x.pem" 2> /dev/null
x=$tmp/x-host
host_env "$x"
export VMSHADOW_PASSPHRASE=x-host-passphrase
"$vmshadow" key create --master-key "$tmp/x.pub.pem" > "$tmp/out" 2>&1 || fail "key create x25519: $(cat "$tmp/out")"
xfp=$(grep -oE '[0-9a-f]{32}' "$tmp/out" | head -1)
[ -n "$xfp" ] || fail "key create printed no fingerprint: $(cat "$tmp/out")"
"$vmshadow" init --encrypt --key "$xfp" > "$tmp/out" 2>&1 || fail "init with the x25519-wrapped key: $(cat "$tmp/out")"
"$vmshadow" key show --json > "$tmp/show.json" || fail "key show x25519"
grep -q '"recovery_method": "x25519-hkdf-sha256-aes256gcm"' "$tmp/show.json" ||
  fail "key show does not name the X25519 wrap: $(cat "$tmp/show.json")"
[ -f "$x/repo/keys/$xfp" ] || fail "no recovery copy keys/$xfp in the repository"
grep -q '"ephemeral": "[0-9a-f]\{64\}"' "$x/repo/keys/$xfp" || fail "the recovery copy has no X25519 wrap: $(cat "$x/repo/keys/$xfp")"
if grep -q '"sealed"' "$x/repo/keys/$xfp"; then fail "the repository's copy holds the passphrase-sealed secret"; fi
mkdir -p "$x/app" "$VMSHADOW_WRITERS_DIR"
cp "$tmp/disk.img" "$x/app/disk.img"
cat > "$VMSHADOW_WRITERS_DIR/app" <<W
#!/bin/sh
[ "\$1" = identify ] || exit 0
cat <<JSON
{"format": "vmshadow-writer-metadata", "version": 1,
 "writer": {"name": "app", "id": "0d9f3c1e-2b4a-4c5d-8e6f-7a8b9c0d1e2f"},
 "components": [{"name": "files", "files": [
   {"path": "$x/app/disk.img", "kind": "disk", "format": "raw"}]}]}
JSON
W
chmod 755 "$VMSHADOW_WRITERS_DIR/app"
"$vmshadow" backup --json > "$tmp/xb.json" 2> "$tmp/out" || fail "backup x25519: $(cat "$tmp/out" "$tmp/xb.json")"
xid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["backup_id"])' "$tmp/xb.json")
rm -rf "$x/etc" "$x/scratch"                         # the host's keys are gone
if "$vmshadow" list > "$tmp/out" 2>&1; then fail "the repository opened without its key"; fi
if "$vmshadow" key import --master-key "$tmp/master.pem" > "$tmp/out" 2>&1; then
  fail "the RSA master key opened an X25519 wrap"; fi
grep -q "another master key" "$tmp/out" || fail "RSA against an X25519 wrap: not named: $(cat "$tmp/out")"
if "$vmshadow" key import --master-key "$tmp/other-x.pem" > "$tmp/out" 2>&1; then
  fail "another X25519 key opened the wrap"; fi
grep -q "another master key" "$tmp/out" || fail "another X25519 key: not named: $(cat "$tmp/out")"
# One byte of the wrapped secret altered: refused (GCM), nothing installed.
cp "$x/repo/keys/$xfp" "$tmp/xkey.orig"
python3 - "$x/repo/keys/$xfp" <<'PY'
import json, sys
p = sys.argv[1]; k = json.load(open(p)); w = k["recovery"]["wrapped"]
k["recovery"]["wrapped"] = w[:40] + ("0" if w[40] != "0" else "1") + w[41:]
open(p, "w").write(json.dumps(k))
PY
if "$vmshadow" key import --master-key "$tmp/x.pem" > "$tmp/out" 2>&1; then fail "an altered X25519 wrap opened"; fi
grep -q "does not open" "$tmp/out" || fail "altered X25519 wrap: not named: $(cat "$tmp/out")"
[ ! -e "$x/etc/keys/$xfp.key" ] || fail "a key file was installed from an altered wrap"
cp "$tmp/xkey.orig" "$x/repo/keys/$xfp"
"$vmshadow" key import --master-key "$tmp/x.pem" > "$tmp/out" 2>&1 || fail "x25519 import: $(cat "$tmp/out")"
"$vmshadow" extract "$xid" files "$x/app/disk.img" --to "$tmp/x-restored.img" > "$tmp/out" 2>&1 ||
  fail "extract after x25519 recovery: $(cat "$tmp/out")"
cmp -s "$tmp/x-restored.img" "$tmp/disk.img" || fail "the disk restored after X25519 recovery differs"
echo "ok: restored on a new host from the paper key, and from an RSA and an X25519 master key"
