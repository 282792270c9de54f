#!/usr/bin/env bash
# Issue 9 item 1: gc removed old entries under tmp/ following a link, so a
# local user who could write the repository directory (one that existed
# with mode 0777) planted tmp -> /somewhere and the next gc, as root,
# emptied /somewhere. Now the repository's directories are made 0700 by
# the first writer whatever they were, so the user cannot plant the link;
# and a link that is there anyway is refused, never followed.
source "$(dirname "$0")/hardening-lib.sh"
# Format 1, asked for (new repositories are format 2): the attack is on format 1's chunk directories.
export VMSHADOW_REPO_FORMAT=1

mkdir -m 0777 "$VMSHADOW_REPO"
chmod 0777 "$VMSHADOW_REPO"
vms backup >/dev/null || fail "backup into an existing 0777 directory"
for d in "" /tmp /backups /chunks; do
  mode=$(stat -c %a "$VMSHADOW_REPO$d")
  [ "$mode" = 700 ] || fail "repository directory ${d:-/} has mode $mode, not 700"
done

# The attack, as an unprivileged user: replace tmp/ by a link to a
# directory of root's. It must not even be possible.
mkdir -m 0755 "$tmp/victim"
echo precious > "$tmp/victim/old-file"
touch -d '3 days ago' "$tmp/victim/old-file"
if as_nobody sh -c "rmdir '$VMSHADOW_REPO/tmp' && ln -s '$tmp/victim' '$VMSHADOW_REPO/tmp'" 2>/dev/null; then
  fail "an unprivileged user replaced tmp/ by a link"
fi

# A link that is there anyway (planted while the directory was open,
# say): gc refuses the repository and names the link; the target is
# untouched.
rmdir "$VMSHADOW_REPO/tmp"
ln -s "$tmp/victim" "$VMSHADOW_REPO/tmp"
vms gc --grace 0 > "$tmp/out" 2>&1 && fail "gc worked through a tmp/ that is a link"
[ -f "$tmp/victim/old-file" ] || fail "gc removed a file through the tmp link: $(cat "$tmp/out")"
grep -q "symbolic link" "$tmp/out" || fail "gc did not say tmp/ is a link: $(cat "$tmp/out")"
echo ok
