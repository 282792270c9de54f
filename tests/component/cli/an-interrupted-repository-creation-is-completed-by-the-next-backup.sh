#!/usr/bin/env bash
# Issue 9 item 8: a repository creation interrupted part-way (killed, or
# out of space) left a directory that every later backup refused as "not
# a vmshadow repository". Now the config is published last, by a rename,
# and a directory that holds only the skeleton (chunks/, backups/, tmp/
# empty, the lock, a config.tmp.*) is completed by the next backup
# (docs/repository-format.md "Creation"). Anything else still makes the
# directory no repository.
source "$(dirname "$0")/hardening-lib.sh"

# Killed after the skeleton, with a half-written config temp.
mkdir -p "$VMSHADOW_REPO"/{chunks,backups,tmp}
: > "$VMSHADOW_REPO/lock"
printf '{\n  "format": "vmshadow-rep' > "$VMSHADOW_REPO/config.tmp.99999"
vms backup > "$tmp/out" 2>&1 || fail "backup into a half-made repository: $(cat "$tmp/out")"
vms verify >/dev/null || fail "the completed repository does not verify"
[ ! -e "$VMSHADOW_REPO/config.tmp.99999" ] || fail "the stale config temp is left"

# Out of space part-way (a filesystem with too few inodes for the
# skeleton and the config), then space again.
mkdir "$tmp/small"
mount -t tmpfs -o size=8m,nr_inodes=4 tmpfs "$tmp/small" || { echo "SKIP: cannot mount tmpfs"; exit 77; }
cleanup_hooks+=("umount '$tmp/small'")
VMSHADOW_REPO=$tmp/small/repo vms backup > "$tmp/out" 2>&1 && fail "a repository was made with 4 inodes"
grep -qi "no space" "$tmp/out" || fail "unclear message: $(cat "$tmp/out")"
mount -o remount,nr_inodes=1000 "$tmp/small"
VMSHADOW_REPO=$tmp/small/repo vms backup > "$tmp/out" 2>&1 || fail "backup after space came back: $(cat "$tmp/out")"
VMSHADOW_REPO=$tmp/small/repo vms verify >/dev/null || fail "the repository made after ENOSPC does not verify"

# Not a skeleton: a file of someone else's, or a non-empty backups/.
mkdir -p "$tmp/other"/{chunks,backups/x,tmp}
VMSHADOW_REPO=$tmp/other vms backup > "$tmp/out" 2>&1 && fail "a directory with backups/x became a repository"
grep -q "not a vmshadow repository" "$tmp/out" || fail "unclear message: $(cat "$tmp/out")"
rmdir "$tmp/other/backups/x"
echo data > "$tmp/other/notes.txt"
VMSHADOW_REPO=$tmp/other vms backup > "$tmp/out" 2>&1 && fail "a directory with notes.txt became a repository"
[ -f "$tmp/other/notes.txt" ] || fail "notes.txt is gone"
echo ok
