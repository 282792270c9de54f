#!/usr/bin/env bash
# Issue 9 item 6: a backups/ or chunks/ that is a symbolic link was
# followed: prune deleted a backup directory outside the repository, gc
# --grace 0 deleted a file outside it, backup wrote chunks through it.
# Now every path of the repository is opened from its directory fd without
# following a link: such a repository is refused with a message naming the
# link, and nothing outside it changes. A link as one backup (backups/ID
# -> elsewhere) is removed by prune, not what it points to.
source "$(dirname "$0")/hardening-lib.sh"
# Format 1, asked for (new repositories are format 2): the links replace format 1's chunk and backup files.
export VMSHADOW_REPO_FORMAT=1

vms backup >/dev/null || fail "first backup"
id1=$(newest)
echo "more" >> "$tmp/app/app.conf"
vms backup >/dev/null || fail "second backup"
outside=$tmp/outside
mkdir "$outside"
snapshot () { (cd "$outside" && find . -printf '%p %s %T@\n' | sort); }

# backups/ -> a copy outside: prune and list refuse, the copy stays whole.
cp -a "$VMSHADOW_REPO/backups" "$outside/backups"
mv "$VMSHADOW_REPO/backups" "$tmp/backups.real"
ln -s "$outside/backups" "$VMSHADOW_REPO/backups"
before=$(snapshot)
vms prune --keep-last 1 > "$tmp/out" 2>&1 && fail "prune worked through a backups/ link"
grep -q "symbolic link" "$tmp/out" || fail "prune did not name the link: $(cat "$tmp/out")"
vms list > "$tmp/out" 2>&1 && fail "list read through a backups/ link"
[ "$(snapshot)" = "$before" ] || fail "prune changed files outside the repository"
rm "$VMSHADOW_REPO/backups"
mv "$tmp/backups.real" "$VMSHADOW_REPO/backups"

# chunks/ -> a copy outside, with an unreferenced chunk-named file: gc
# and backup refuse; nothing outside is removed or added.
cp -a "$VMSHADOW_REPO/chunks" "$outside/chunks"
mkdir -p "$outside/chunks/ab"
stray=$outside/chunks/ab/ab$(printf '%062d' 0)
echo "not a chunk of this repository" > "$stray"
touch -d '3 days ago' "$stray"
mv "$VMSHADOW_REPO/chunks" "$tmp/chunks.real"
ln -s "$outside/chunks" "$VMSHADOW_REPO/chunks"
before=$(snapshot)
vms gc --grace 0 > "$tmp/out" 2>&1 && fail "gc worked through a chunks/ link"
grep -q "symbolic link" "$tmp/out" || fail "gc did not name the link: $(cat "$tmp/out")"
head -c 70000 /dev/urandom >> "$tmp/app/disk.raw"
vms backup > "$tmp/out" 2>&1 && fail "backup wrote through a chunks/ link"
[ "$(snapshot)" = "$before" ] || fail "gc or backup changed files outside the repository"
rm "$VMSHADOW_REPO/chunks"
mv "$tmp/chunks.real" "$VMSHADOW_REPO/chunks"

# One chunk directory chunks/XY -> outside: gc does not sweep it, verify
# reports it.
sub=$(cd "$VMSHADOW_REPO/chunks" && ls | head -1)
mv "$VMSHADOW_REPO/chunks/$sub" "$outside/$sub"
touch -d '3 days ago' "$outside/$sub"/*
ln -s "$outside/$sub" "$VMSHADOW_REPO/chunks/$sub"
before=$(snapshot)
vms gc --grace 0 >/dev/null 2>&1 || true
vms verify > "$tmp/out" 2>&1 && fail "verify passed with a chunk directory that is a link"
[ "$(snapshot)" = "$before" ] || fail "gc changed files through chunks/$sub"
rm "$VMSHADOW_REPO/chunks/$sub"
mv "$outside/$sub" "$VMSHADOW_REPO/chunks/$sub"

# backups/ID -> a backup directory outside: prune keeps it as unreadable
# (it removes only what it can read), list names the link, and nothing
# outside changes.
vms verify >/dev/null || fail "the repository does not verify after the links were undone"
mv "$VMSHADOW_REPO/backups/$id1" "$outside/$id1"
ln -s "$outside/$id1" "$VMSHADOW_REPO/backups/$id1"
before=$(snapshot)
vms prune --keep-last 1 > "$tmp/out" 2>&1 || fail "prune: $(cat "$tmp/out")"
grep -q "keep $id1 (unreadable.*symbolic link" "$tmp/out" || fail "prune did not keep the link as unreadable: $(cat "$tmp/out")"
[ "$(snapshot)" = "$before" ] || fail "prune removed files of a backup directory outside the repository"
vms list > "$tmp/out" 2>&1 && fail "list did not report the link"
grep -q "$id1.*symbolic link" "$tmp/out" || fail "list did not name the link: $(cat "$tmp/out")"
echo ok
