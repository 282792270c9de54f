#!/usr/bin/env bash
# Issue 9 item 2: extract (as root) made its temporary file by name in the
# target directory and handed that name to qemu-img and qemu-nbd; a user
# owning the directory swapped a link in meanwhile, and qemu overwrote the
# file it pointed to (qcow2), or the final rename moved the planted link
# into place (raw). Now the output is made in a private 0700 directory
# reached only by fd, and QEMU gets it through /proc/PID/fd/N: the attack,
# run here as nobody in a tight loop during several extracts, changes
# nothing outside and never gets its link into place.
source "$(dirname "$0")/hardening-lib.sh"

vms backup >/dev/null || fail "backup"
id=$(newest)
userdir=$tmp/userdir
mkdir "$userdir"
chown nobody "$userdir"
echo "root's precious file" > "$tmp/victim"
chmod 0644 "$tmp/victim"
cp "$tmp/victim" "$tmp/victim.orig"

# The attacker: every entry of the directory that is not a link yet is
# moved aside and replaced by a link to the victim.
cat > "$tmp/attack.py" <<'PY'
import os, sys, time
d, victim, until = sys.argv[1], sys.argv[2], time.time() + float(sys.argv[3])
n = 0
while time.time() < until:
    for e in os.listdir(d):
        p = os.path.join(d, e)
        if e.startswith("moved.") or os.path.islink(p) or not e.startswith("."):
            continue
        try:
            n += 1
            os.rename(p, os.path.join(d, "moved.%d" % n))
            os.symlink(victim, p)
        except OSError:
            pass
PY
as_nobody_bg /usr/bin/python3 "$tmp/attack.py" "$userdir" "$tmp/victim" 120
attacker=$bg_pid

for i in 1 2 3 4 5; do
  for fmt in raw qcow2; do
    out=$userdir/disk-$i.$fmt
    vms extract "$id" data "$tmp/app/disk.raw" --format "$fmt" --to "$out" \
      > "$tmp/out" 2>&1 || true
    cmp -s "$tmp/victim" "$tmp/victim.orig" ||
      fail "extract ($fmt, run $i) overwrote a file outside the target: $(cat "$tmp/out")"
    if [ -e "$out" ] || [ -L "$out" ]; then
      [ ! -L "$out" ] || fail "extract ($fmt, run $i) moved a planted link into place"
      [ -f "$out" ] || fail "extract ($fmt, run $i) left a non-file at $out"
      if [ "$fmt" = raw ]; then
        cmp -s "$out" "$tmp/app/disk.raw" || fail "extract (raw, run $i) wrote wrong data"
      else
        qemu-img compare -q -f qcow2 -F raw "$out" "$tmp/app/disk.raw" ||
          fail "extract (qcow2, run $i) wrote wrong data"
      fi
    fi
  done
done
kill "$attacker" 2>/dev/null || true
wait "$attacker" 2>/dev/null || true
cmp -s "$tmp/victim" "$tmp/victim.orig" || fail "the victim file changed"
ls "$userdir"/disk-*.raw >/dev/null 2>&1 || fail "no raw extract succeeded under attack"
echo ok
