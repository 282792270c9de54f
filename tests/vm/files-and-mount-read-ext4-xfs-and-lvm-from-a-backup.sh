#!/bin/bash
# files-and-mount-read-ext4-xfs-and-lvm-from-a-backup (issue 16, R26):
# file-level restore without restoring a disk and without the host kernel
# mounting a guest filesystem.  A shut-off VM's two disks are made by
# libguestfs (guestfish; nothing is mounted on the host): vda holds an
# ext4 and an xfs partition, vdb is an LVM physical volume with an ext4
# logical volume "my-lv" in volume group vg0; each holds the same known
# tree (a 3 MiB random file, a nested file, a symlink, a file whose name
# holds a terminal escape).  The VM writer backs it up from its images.
# Then, each through the libguestfs appliance over the repository's NBD
# exports:
#   - `files B VM` finds /vda1 ext4, /vda2 xfs and /vg0-my--lv ext4 by
#     itself (no device named), the PV not as a filesystem;
#   - `files ls` lists them and the tree, the escape printed escaped; a
#     filesystem that is not there is an error naming those there are;
#   - `files cat` prints the three files byte for byte; a missing path is
#     an error (exit 4: the others were printed);
#   - `files get --to` copies a tree out equal to the source (diff -r,
#     the symlink a symlink); an existing name is never overwritten; a FIFO
#     is refused;
#   - `mount`, from a second backup in an encrypted repository (R28; the
#     passphrase on a descriptor, the key handed to each export on a pipe:
#     in no environment or command line), shows all three trees equal to
#     the source, read-only; unmounting ends the serving process, its
#     exports and the appliance;
#   - a VM whose disk holds no filesystem: a clear error;
#   - last, a chunk inside one file of the xfs damaged in the repository:
#     the error names the chunk and no wrong byte is printed; either the
#     other file of that filesystem is read whole and the damaged one is an
#     I/O error, or (the known defect, said as such) the filesystem is
#     hidden and nothing of it printed;
#   - bad input refused before any appliance starts: a backup that does
#     not exist, a VM not in the backup, a path that is not absolute.
. "$(dirname "$0")/lib.sh"
lab_init
. "$LAB_TESTS_DIR/vm-writer-lib.sh"
. "$LAB_TESTS_DIR/../flip-byte.sh"
vmw_init
# Format 1, asked for (new repositories are format 2): it damages a chunk's own file (the encrypted repository is format 2, made by init).
export VMSHADOW_REPO_FORMAT=1
for p in guestfish python3 diff; do
    command -v $p >/dev/null || lab_skip "$p is not installed (scripts/install-deps.sh)"
done
# The appliance (built once, cached); on this lab KVM does not work for
# nested guests: libguestfs runs its appliance under TCG, as the lab does.
rc=0
"$LAB_DIR/../scripts/guestfs-appliance.sh" -q || rc=$?
[ $rc = 77 ] && lab_skip "no libguestfs appliance can be built here (message above)"
[ $rc = 0 ] || lab_fail "scripts/guestfs-appliance.sh failed (message above)"
export LIBGUESTFS_BACKEND_SETTINGS=force_tcg LIBGUESTFS_BACKEND=direct
# Our servers' and libguestfs's temporary files in TMPDIR (checked to be
# gone after each command); libguestfs's own appliance cache elsewhere.
export TMPDIR=$LAB_WORK/tmp LIBGUESTFS_CACHEDIR=$LAB_WORK/guestfs-cache
mkdir -p "$TMPDIR" "$LIBGUESTFS_CACHEDIR"
W=$LAB_WORK

# ---- the known tree, and the disks made by libguestfs
src=$W/tree
mkdir -p "$src/dir/sub" "$src/empty"
printf 'hello from a backup\n' >"$src/hello.txt"
head -c 3145728 /dev/urandom >"$src/dir/big.bin"
printf 'deep\n' >"$src/dir/sub/deep.txt"
ln -s ../hello.txt "$src/dir/link"
esc=$'esc\e[31mred.txt'
printf 'red\n' >"$src/$esc"
head -c 1048576 /dev/urandom >"$W/damaged.bin"

lab_vm_create --no-start --disk raw:512M --disk raw:128M --name files
dom=$LAB_DOM
vda=${LAB_DISK_FILE[$dom/vda]} vdb=${LAB_DISK_FILE[$dom/vdb]}
lab_vm_create --no-start --disk raw:16M --name blank
blank=$LAB_DOM
LIBGUESTFS_PATH=${VMSHADOW_APPLIANCE:-/var/cache/vmshadow/appliance} guestfish --rw --format=raw -a "$vda" --format=raw -a "$vdb" >"$W/guestfish.log" 2>&1 <<EOF || lab_fail "guestfish could not make the disks: $(tail -n 5 "$W/guestfish.log")"
run
part-init /dev/sda mbr
part-add /dev/sda p 2048 133119
part-add /dev/sda p 133120 -1
mkfs ext4 /dev/sda1 label:files-ext4
mkfs xfs /dev/sda2
pvcreate /dev/sdb
vgcreate vg0 /dev/sdb
lvcreate my-lv vg0 64
mkfs ext4 /dev/vg0/my-lv
mount /dev/sda1 /
copy-in $src /
mkdir /special
mkfifo 0644 /special/fifo
write /special/plain "plain"
umount /
mount /dev/sda2 /
copy-in $src /
upload $W/damaged.bin /damaged.bin
umount /
mount /dev/vg0/my-lv /
copy-in $src /
umount-all
EOF
lab_ok "disks of $dom made by guestfish: vda1 ext4, vda2 xfs, vdb LVM vg0/my-lv ext4"

vmw_backup "$dom" "$blank" || lab_fail "backup failed: $(vmw_backup_failure)"
bid=$VMW_BID
plain_repo=$VMW_REPO
VMW_REPO=$W/repo-encrypted
vmw_encrypted_repo "$VMW_REPO"
VMSHADOW_PASSPHRASE=$VMW_PASSPHRASE vmw_backup "$dom" || lab_fail "backup into an encrypted repository failed: $(vmw_backup_failure)"
ebid=$VMW_BID
VMW_REPO=$plain_repo
lab_ok "backup $bid of $dom and $blank (from their images); $ebid of $dom in an encrypted repository"

# files ARGS... -> $out, $err, $rc
files() {
    rc=0
    "$VMSHADOW" --repo "$VMW_REPO" files "$@" >"$W/out" 2>"$W/err" || rc=$?
    out=$W/out err=$W/err
}

# ---- bad input: refused before any appliance or server starts
files nope "$dom" ls /
[ $rc = 1 ] && grep -q 'nope' "$err" || lab_fail "a backup that does not exist: exit $rc, $(cat "$err")"
files "$bid" no-such-vm ls /
[ $rc = 1 ] && grep -q 'has no VM "no-such-vm"' "$err" || lab_fail "a VM not in the backup: exit $rc, $(cat "$err")"
files "$bid" "$dom" cat relative/path
[ $rc = 2 ] && grep -q "starts with '/'" "$err" || lab_fail "a relative path: exit $rc, $(cat "$err")"
files "$bid" "$dom" cat /vda1/../etc
[ $rc = 2 ] || lab_fail "a path with '..': exit $rc, $(cat "$err")"
[ -z "$(ls -A "$TMPDIR")" ] || lab_fail "refused commands left $(ls -A "$TMPDIR")"
lab_ok "bad backup, VM and paths refused before anything started"

# ---- the filesystems, found without being told
t0=$(date +%s)
files "$bid" "$dom"
[ $rc = 0 ] || lab_fail "files $bid $dom: exit $rc: $(cat "$err")"
grep -Eq '^/vda1 +ext4 .*files-ext4' "$out" && grep -Eq '^/vda2 +xfs ' "$out" &&
    grep -Eq '^/vg0-my--lv +ext4 ' "$out" ||
    lab_fail "the filesystems listed are not vda1 ext4, vda2 xfs, vg0-my--lv ext4: $(cat "$out")"
[ "$(grep -c '^/' "$out")" = 3 ] || lab_fail "not exactly three filesystems: $(cat "$out")"
lab_ok "files $bid $dom: /vda1 ext4, /vda2 xfs, /vg0-my--lv ext4 ($(($(date +%s) - t0)) s)"

# ---- ls
files "$bid" "$dom" ls / /vda1/tree /vda9
[ $rc = 4 ] || lab_fail "ls with one missing filesystem: exit $rc (want 4): $(cat "$err")"
grep -q 'has no filesystem "vda9" (its filesystems: /vda1, /vda2, /vg0-my--lv)' "$err" ||
    lab_fail "no clear message for /vda9: $(cat "$err")"
for n in vda1 vda2 vg0-my--lv hello.txt dir empty; do
    grep -Eq " $n\$" "$out" || lab_fail "ls does not show $n: $(cat "$out")"
done
grep -q "$(printf '\e')" "$out" && lab_fail "ls printed a raw escape character"
grep -qF 'esc\x1b[31mred.txt' "$out" || lab_fail "ls does not show the escaped name: $(cat -v "$out")"
big_line=$(grep ' dir$' "$out")
[[ $big_line == d* ]] || lab_fail "dir is not listed as a directory: $big_line"
lab_ok "ls: the filesystems, the tree, names escaped; a missing filesystem named"

# ---- cat
files "$bid" "$dom" cat /vda1/tree/hello.txt /vda2/tree/dir/big.bin /vg0-my--lv/tree/dir/sub/deep.txt /vda1/tree/nope
[ $rc = 4 ] || lab_fail "cat with a missing path: exit $rc (want 4): $(cat "$err")"
cat "$src/hello.txt" "$src/dir/big.bin" "$src/dir/sub/deep.txt" >"$W/want"
cmp -s "$W/want" "$out" || lab_fail "cat printed other bytes than the three files hold"
grep -q '/vda1/tree/nope' "$err" || lab_fail "no message for the missing path: $(cat "$err")"
lab_ok "cat: ext4, xfs and LVM files byte for byte; a missing path is an error"

# ---- get
mkdir "$W/get"
echo keep >"$W/get/hello.txt"
files "$bid" "$dom" get --to "$W/get" /vda1/tree /vda2/tree /vda1/special /vg0-my--lv/tree/hello.txt
[ $rc = 4 ] || lab_fail "get: exit $rc (want 4: the FIFO and the existing name): $(cat "$err")"
diff -r "$src" "$W/get/tree" >"$W/diff" || lab_fail "the tree got from /vda1 differs: $(head -n 5 "$W/diff")"
[ -L "$W/get/tree/dir/link" ] && [ "$(readlink "$W/get/tree/dir/link")" = ../hello.txt ] ||
    lab_fail "the symlink is not a symlink to ../hello.txt"
grep -q '/vda2/tree: tree is there already' "$err" || lab_fail "the second tree was not refused: $(cat "$err")"
grep -q '/vda1/special/fifo: is a FIFO: refused' "$err" || lab_fail "the FIFO was not refused: $(cat "$err")"
[ "$(cat "$W/get/special/plain")" = plain ] || lab_fail "the plain file beside the FIFO was not restored"
[ ! -e "$W/get/special/fifo" ] || lab_fail "a FIFO was made"
grep -q '/vg0-my--lv/tree/hello.txt: hello.txt is there already' "$err" &&
    [ "$(cat "$W/get/hello.txt")" = keep ] || lab_fail "an existing file was not kept: $(cat "$err")"
lab_ok "get: tree equal (diff -r), link kept; existing name and FIFO refused, nothing overwritten"

# ---- mount
mnt=$W/mnt
mkdir "$mnt"
printf '%s\n' "$VMW_PASSPHRASE" >"$W/passphrase"
"$VMSHADOW" --repo "$W/repo-encrypted" mount --passphrase-fd 3 "$ebid" "$dom" "$mnt" >"$W/out" 2>"$W/err" 3<"$W/passphrase" ||
    lab_fail "mount failed: $(cat "$W/err")"
child=$(sed -n 's/.*served by process \([0-9]*\).*/\1/p' "$W/err")
[ -n "$child" ] || lab_fail "mount did not say its process: $(cat "$W/err")"
lab__undo_push pid "$child" vmshadow
grep -q " $mnt fuse" /proc/mounts || lab_fail "$mnt is not a FUSE mount: $(grep "$mnt" /proc/mounts)"
for fs in vda1 vda2 vg0-my--lv; do
    diff -r "$src" "$mnt/$fs/tree" >"$W/diff" || lab_fail "the tree on /$fs differs through mount: $(head -n 5 "$W/diff")"
done
if touch "$mnt/vda1/new" 2>/dev/null; then lab_fail "the mount took a write"; fi
cmp -s "$mnt/vda2/damaged.bin" "$W/damaged.bin" || lab_fail "damaged.bin differs through mount"
servers=$(pgrep -f "repo=$(realpath "$W/repo-encrypted")" | tr '\n' ' ')
[ -n "$servers" ] || lab_fail "no export server while mounted?"
vmw_assert_key_hidden "mount of an encrypted backup" $servers $(pgrep -P "$child") "$child"
lab_ok "mount of the encrypted backup: three trees and damaged.bin (before the damage) equal, read-only; the key in no environment or command line"
umount "$mnt" || lab_fail "umount $mnt failed"
for _ in $(seq 150); do kill -0 "$child" 2>/dev/null || break; sleep 0.2; done
kill -0 "$child" 2>/dev/null && lab_fail "the mount's process $child still runs after the unmount"
for pid in $servers; do kill -0 "$pid" 2>/dev/null && lab_fail "export server $pid outlived the mount"; done
pgrep -f "qemu.*$TMPDIR" >/dev/null && lab_fail "an appliance outlived the mount"
[ -z "$(ls -A "$TMPDIR")" ] || lab_fail "the mount left $(ls -A "$TMPDIR")"
lab_ok "umount: the serving process, its exports and the appliance are gone"

# ---- a VM without a filesystem
files "$bid" "$blank" ls /
[ $rc = 1 ] && grep -q "no filesystem found on the disks of VM \"$blank\"" "$err" ||
    lab_fail "a disk without a filesystem: exit $rc, $(cat "$err")"
[ -z "$(ls -A "$TMPDIR")" ] || lab_fail "the refused run left $(ls -A "$TMPDIR")"
lab_ok "a VM whose disk has no filesystem: a clear error"

# ---- damage a chunk inside damaged.bin (xfs, vda2): the one holding its
# byte 256 KiB, which lies wholly within the 1 MiB file, so no filesystem
# metadata shares it and the filesystem itself still mounts
cs=$(jq -r .chunk_size "$VMW_REPO/config")
d=$(python3 - "$vda" "$W/damaged.bin" "$cs" <<'PY'
import hashlib, sys
img, f, cs = sys.argv[1], sys.argv[2], int(sys.argv[3])
pat = open(f, 'rb').read()[262144:262144 + 4096]
data = open(img, 'rb').read()
off = data.find(pat)
if off < 0 or data.find(pat, off + 1) >= 0:
    sys.exit('the file is not in the image exactly once')
start = off // cs * cs
print(hashlib.sha256(data[start:start + cs]).hexdigest())
PY
) || lab_fail "cannot find damaged.bin in $vda"
chunk=$VMW_REPO/chunks/${d:0:2}/$d
# (a chunk that compresses is stored zstd-compressed, as DIGEST.zst)
[ -f "$chunk" ] || chunk=$chunk.zst
[ -f "$chunk" ] || lab_fail "chunk $d not in the repository (layout changed?)"
flip_byte "$chunk" 3000

files "$bid" "$dom" cat /vda2/tree/hello.txt /vda2/damaged.bin
# Never wrong bytes, and the error says why: the damaged chunk by its id.
grep -q "$d" "$err" || lab_fail "the error does not name the damaged chunk $d: $(cat "$err")"
[ $rc != 0 ] || lab_fail "a file with a damaged chunk was read without error"
if grep -q 'has no filesystem "vda2"' "$err"; then
    # Known defect (docs/file-restore.md): the appliance could not use the
    # filesystem at all; nothing of it was printed.
    [ ! -s "$out" ] || lab_fail "bytes printed from a filesystem said to be missing"
    lab_ok "a damaged chunk: KNOWN DEFECT, the xfs is hidden, but the message names the damaged chunk ${d:0:12}…; no byte printed"
else
    [ $rc = 4 ] || lab_fail "cat of a good file and of one with a damaged chunk on the same xfs: exit $rc (want 4: one done, one not): $(cat "$err")"
    h=$(stat -c %s "$src/hello.txt")
    cmp -s <(head -c "$h" "$out") "$src/hello.txt" || lab_fail "the good file beside the damaged one was not printed right"
    n=$(($(stat -c %s "$out") - h))
    cmp -s <(tail -c +$((h + 1)) "$out") <(head -c "$n" "$W/damaged.bin") || lab_fail "cat printed wrong bytes of the damaged file"
    [ "$n" -lt 1048576 ] || lab_fail "cat printed the whole damaged file"
    # (libguestfs says "file receive cancelled by daemon" when the
    # appliance's read fails; vmshadow adds where and why)
    grep -q '^vmshadow files: /vda2/damaged.bin: .*(the backup could not be read there: disk vda: bytes' "$err" ||
        lab_fail "the damaged file's error does not say the backup could not be read there: $(cat "$err")"
    lab_ok "a damaged chunk: the file beside it on the same xfs read whole; the damaged file an I/O error after $n right bytes, naming chunk ${d:0:12}…"
fi
