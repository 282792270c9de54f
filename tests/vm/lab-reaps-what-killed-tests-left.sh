#!/bin/bash
# lab-reaps-what-killed-tests-left: a test killed before its cleanup (meson's
# timeout, or the whole session ending) leaves its work dir and its defined
# VMs; the next test's lab_init undoes them.  Two such dirs, each owning a
# defined, shut-off domain (virsh destroy fails on it, as after a libvirtd
# restart): one whose owner pid is gone, one whose pid now belongs to another
# process (pids are reused; the start time tells them apart).  The reaper
# removes both dirs and domains and the calling test goes on (it runs under
# errexit, as every test does); a dir whose owner lives is left alone.
. "$(dirname "$0")/lib.sh"
lab_init

# a dead pid: a process that has ended
sh -c 'exit 0' &
dead=$!
wait "$dead"
# a live process not the owner: its pid with another start time
sleep 300 &
other=$!
lab__undo_push pid "$other" "sleep 300"
# the live owner: this test, as lab_init wrote it
live="$LAB_NAME-live $$ $(lab__started $$)"

FAKE_DIR='' FAKE_DOM=''
fake_dir() {   # NAME OWNER-LINE: a killed test's work dir with one shut-off domain
    FAKE_DIR=$(mktemp -d "$LAB_WORKROOT/${LAB_PREFIX}reap-$1.XXXXXX")
    FAKE_DOM=${LAB_PREFIX}reap-$1-$$
    lab__undo_push domain "$FAKE_DOM"
    printf '%s\n' "$2" >"$FAKE_DIR/owner"
    cat >"$FAKE_DIR/$FAKE_DOM.xml" <<EOF
<domain type='qemu'>
  <name>$FAKE_DOM</name>
  <memory unit='MiB'>32</memory>
  <os><type arch='x86_64'>hvm</type></os>
</domain>
EOF
    virsh -q define "$FAKE_DIR/$FAKE_DOM.xml" >/dev/null || lab_fail "virsh define $FAKE_DOM failed"
    echo "domain $FAKE_DOM" >"$FAKE_DIR/undo"
}
fake_dir dead "killed-test $dead 1"
dir_dead=$FAKE_DIR dom_dead=$FAKE_DOM
fake_dir reused "killed-test $other $(($(lab__started "$other") + 1))"
dir_reused=$FAKE_DIR dom_reused=$FAKE_DOM
fake_dir live "$live"
dir_live=$FAKE_DIR dom_live=$FAKE_DOM

# What lab_init does, in a shell with errexit on like every test's.
out=$(bash -c 'set -euo pipefail; . "$1/lib.sh"; LAB_WORK=; lab__reap_killed; echo reaper-returned' \
    reaper "$(dirname "$0")" 2>&1) || lab_fail "the reaper ended its caller: $out"
[[ $out == *reaper-returned* ]] || lab_fail "the reaper did not return: $out"
for d in "$dir_dead" "$dir_reused"; do
    [ ! -e "$d" ] || lab_fail "work dir $d of a killed test was not reaped: $out"
done
for dom in "$dom_dead" "$dom_reused"; do
    ! virsh -q dominfo "$dom" >/dev/null 2>&1 || lab_fail "domain $dom of a killed test was not undefined: $out"
done
lab_ok "a killed test's dir and domain are undone, whether its pid is gone or reused by another process"
if [ ! -d "$dir_live" ] || ! virsh -q dominfo "$dom_live" >/dev/null 2>&1; then
    lab_fail "the reaper undid the dir or domain of a live owner: $out"
fi
rm -rf "$dir_live"
lab_ok "a live owner's dir and domain are left alone"
