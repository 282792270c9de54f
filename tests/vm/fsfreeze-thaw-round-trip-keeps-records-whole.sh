#!/bin/bash
# fsfreeze-thaw-round-trip-keeps-records-whole: with the busy writer
# appending fsync'd records to /data, guest-fsfreeze-freeze freezes the data
# file system (status "frozen", the fsfreeze hook ran with "freeze"), no
# record is written while it is frozen, guest-fsfreeze-thaw thaws it (hook
# ran with "thaw", status "thawed"), the writer goes on, and every record is
# whole and in sequence.  The libvirt API path (virsh domfsfreeze/domfsthaw,
# what vmshadow calls) round-trips too.
. "$(dirname "$0")/lib.sh"
lab_init

lab_vm_create --data-disk 64M
dom=$LAB_DOM
lab_wait_agent "$dom"

# A guest-side hook that records what qemu-ga asked of it.
cat >"$LAB_WORK/hook" <<'HOOK'
#!/bin/sh
echo "$1" >>/run/vmslab/test-hook.log
HOOK
lab_guest_put "$dom" "$LAB_WORK/hook" /etc/qemu/fsfreeze-hook.d/50-test 755

lab_guest_run "$dom" 'vmslab-writer start /data/records' >/dev/null
n=0
for _ in $(seq 100); do
    n=$(lab_guest_run "$dom" 'echo $(($(wc -c </data/records) / 64))')
    [ "$n" -ge 20 ] && break
    sleep 0.2
done
[ "$n" -ge 20 ] || lab_fail "busy writer wrote only $n records"
lab_ok "busy writer running ($n records so far)"

gtime() { lab_agent "$dom" '{"execute":"guest-get-time"}' | awk '{ printf "%d", $1 / 1000000000 }'; }
g0=$(gtime)
frozen=$(lab_agent "$dom" '{"execute":"guest-fsfreeze-freeze"}')
lab_assert_eq "file systems frozen" "$frozen" 1
lab_assert_eq "status while frozen" "$(lab_agent "$dom" '{"execute":"guest-fsfreeze-status"}')" '"frozen"'
sleep 5
thawed=$(lab_agent "$dom" '{"execute":"guest-fsfreeze-thaw"}')
lab_assert_eq "file systems thawed" "$thawed" 1
lab_assert_eq "status after thaw" "$(lab_agent "$dom" '{"execute":"guest-fsfreeze-status"}')" '"thawed"'
g1=$(gtime)
lab_ok "guest-fsfreeze-freeze/thaw round trip (guest clock $g0 .. $g1)"

sleep 1
total=$(lab_guest_run "$dom" 'vmslab-writer stop')
lab_guest_run "$dom" 'cat /data/records' >"$LAB_WORK/records"
check=$(sh "$LAB_DIR/guest/bin/vmslab-records-check" "$LAB_WORK/records") ||
    lab_fail "records are not whole after the freeze: $check"
lab_guest_run "$dom" 'vmslab-records-check /data/records' >/dev/null
lab_ok "all $total records whole and in sequence, in the guest and on the host ($check)"

# Records are stamped before their write, so one stamped in the freeze's
# first second may land after the thaw; none may be stamped inside it.
during=$(awk -v a=$((g0 + 2)) -v b=$((g1 - 2)) '{ t = $3; sub(/^0+/, "", t); if (t + 0 >= a && t + 0 <= b) n++ } END { print n + 0 }' "$LAB_WORK/records")
before=$(awk -v a="$g0" '{ t = $3; sub(/^0+/, "", t); if (t + 0 <= a) n++ } END { print n + 0 }' "$LAB_WORK/records")
after=$(awk -v b="$g1" '{ t = $3; sub(/^0+/, "", t); if (t + 0 >= b) n++ } END { print n + 0 }' "$LAB_WORK/records")
lab_assert_eq "records stamped while frozen" "$during" 0
[ "$before" -gt 0 ] && [ "$after" -gt 0 ] ||
    lab_fail "writer did not run on both sides of the freeze ($before before, $after after)"
lab_ok "no record written while frozen; $before before, $after after the thaw"

hook=$(lab_guest_run "$dom" 'cat /run/vmslab/test-hook.log' | tr '\n' ' ')
lab_assert_eq "fsfreeze hook calls" "$hook" "freeze thaw "
grep -q 'freeze end rc=0' <(lab_guest_run "$dom" 'cat /run/vmslab/fsfreeze-hook.log') ||
    lab_fail "fsfreeze-hook log has no successful freeze"
lab_ok "fsfreeze hook dir ran the test hook with freeze, then thaw"

out=$(virsh domfsfreeze "$dom") || lab_fail "virsh domfsfreeze failed"
grep -q 'Froze 1 filesystem' <<<"$out" || lab_fail "virsh domfsfreeze: $out"
out=$(virsh domfsthaw "$dom") || lab_fail "virsh domfsthaw failed"
grep -q 'Thawed 1 filesystem' <<<"$out" || lab_fail "virsh domfsthaw: $out"
lab_ok "virsh domfsfreeze/domfsthaw round trip"
