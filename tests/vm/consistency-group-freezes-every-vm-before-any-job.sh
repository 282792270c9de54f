#!/bin/bash
# consistency-group-freezes-every-vm-before-any-job (issue 17; R10, R11, R12):
# three running VMs run one application spread over them: a counter that a
# host-side driver (tests/vm/counter-driver.c) ticks in lockstep, each guest
# writing the current value to its data disk every 10 ms and quiescing it
# from its fsfreeze hook (as a guest writer would: the counter pauses with
# every guest holding the same value, and runs again once every paused guest
# thawed).
#  1. `vmshadow backup --group A B C`: the report says grouped, each VM's
#     frozen interval is there and the latest freeze precedes the earliest
#     thaw (the common frozen interval, checked from the components, not only
#     from the summary line); the three data disks extracted from the
#     backup hold the same counter value, ±0, and the counter ran on after.
#  2. The same without --group: the report says not grouped (text and
#     JSON); the values and whether the windows overlapped are logged, not
#     asserted (they depend on scheduling).
#  3. A guest hook of B vetoes its freeze under --group: the backup fails
#     naming B, no backup is added, every guest is thawed and writable, no
#     job is left, and the counter runs again.
. "$(dirname "$0")/lib.sh"
lab_init
. "$LAB_TESTS_DIR/vm-writer-lib.sh"
vmw_init
DRIVER=${VMSLAB_COUNTER_DRIVER:-}
[ -n "$DRIVER" ] && [ -x "$DRIVER" ] ||
    lab_skip "VMSLAB_COUNTER_DRIVER does not name the built counter-driver (run through meson test)"

doms=()
for n in a b c; do
    lab_vm_create --data-disk 32M --memory 128 --channel vmslab.counter --name "grp$n"
    doms+=("$LAB_DOM")
done
for d in "${doms[@]}"; do lab_wait_agent "$d"; done
a=${doms[0]} b=${doms[1]} c=${doms[2]}

# The driver first: a guest's port reads end-of-file until the host end is
# connected.
socks=()
for d in "${doms[@]}"; do socks+=("${LAB_CHANNEL[$d/vmslab.counter]}"); done
CLOG=$LAB_WORK/counter.log
"$DRIVER" "$CLOG" "${socks[@]}" 2>"$LAB_WORK/counter-driver.err" &
DRIVER_PID=$!
lab__undo_push pid $DRIVER_PID "$CLOG"
for d in "${doms[@]}"; do
    lab_guest_put "$d" "$LAB_TESTS_DIR/counter-guest.sh" /etc/qemu/fsfreeze-hook.d/50-counter 755
    lab_guest_run "$d" 'setsid /etc/qemu/fsfreeze-hook.d/50-counter run /data/counter </dev/null >/dev/null 2>/run/vmslab/counter.err &'
done

# counter_now — the driver's current tick.
counter_now() { cat "$CLOG.state" 2>/dev/null || echo 0; }
# counter_wait_past N — until the counter runs past N (fails after 60 s).
counter_wait_past() {
    local i
    for i in $(seq 600); do
        [ "$(counter_now)" -gt "$1" ] && return 0
        kill -0 "$DRIVER_PID" 2>/dev/null ||
            lab_fail "counter-driver exited: $(cat "$LAB_WORK/counter-driver.err")"
        sleep 0.1
    done
    lab_fail "the counter did not run past $1 (now $(counter_now)): $(tail -n 5 "$CLOG" | tr '\n' ' ')"
}
counter_wait_past 50
lab_ok "counter running in $a, $b, $c: tick $(counter_now)"

# backed_up_values BACKUP — the counter value in each VM's data disk of the backup.
backed_up_values() {
    local d uuid img out=""
    for d in "${doms[@]}"; do
        uuid=$(virsh domuuid "$d")
        img=${LAB_DISK_FILE[$d/vda]}
        rm -f "$LAB_WORK/$d.img"
        vmw_extract "$1" "$uuid" "$img" "$LAB_WORK/$d.img" raw
        out+="$(debugfs -R 'cat /counter' "$LAB_WORK/$d.img" 2>/dev/null | tr -d '\n') "
    done
    echo "${out% }"
}

# --- 1: --group
vmw_backup --group "${doms[@]}" || lab_fail "backup --group failed: $(vmw_backup_failure)"
bid1=$VMW_BID
lab_assert_eq "consistency.grouped" "$(jq -r .consistency.grouped "$VMW_SUMMARY")" true
lab_assert_eq "consistency.frozen" "$(jq -r .consistency.frozen "$VMW_SUMMARY")" 3
lab_assert_eq "consistency.common_instant" "$(jq -r .consistency.common_instant "$VMW_SUMMARY")" true
for d in "${doms[@]}"; do
    uuid=$(virsh domuuid "$d")
    comp=$(jq -c --arg u "$uuid" '.components[] | select(.component == $u)' "$VMW_SUMMARY")
    lab_assert_eq "grouped of $d" "$(jq -r .grouped <<<"$comp")" true
    jq -e '.frozen_from_us > 0 and .frozen_until_us > .frozen_from_us' <<<"$comp" >/dev/null ||
        lab_fail "$d: no frozen interval in the report: $comp"
done
# The common instant, from the components themselves.
span=$(jq -r '[.components[] | select(.frozen_from_us)] |
    "\(map(.frozen_from_us) | max) \(map(.frozen_until_us) | min)"' "$VMW_SUMMARY")
read -r last_freeze first_thaw <<<"$span"
[ "$last_freeze" -lt "$first_thaw" ] ||
    lab_fail "with --group the last freeze ($last_freeze) does not precede the first thaw ($first_thaw)"
lab_assert_eq "consistency.common_us" "$(jq -r .consistency.common_us "$VMW_SUMMARY")" $((first_thaw - last_freeze))
lab_ok "backup --group $bid1: every guest frozen from $last_freeze until at least $first_thaw us (common $(((first_thaw - last_freeze) / 1000)) ms)"
vmw_show "$bid1"
lab_assert_eq "group attribute of $a in the backup" "$(vmw_attr "$(virsh domuuid "$a")" group)" 1

after=$(counter_now)
read -r va vb vc <<<"$(backed_up_values "$bid1")"
lab_log "counter values in the backup: $a=$va $b=$vb $c=$vc"
[[ $va =~ ^[0-9]+$ ]] && [ "$va" -gt 0 ] || lab_fail "$a: no counter value in its backed-up data disk ('$va')"
lab_assert_eq "counter of $b in the grouped backup (same as $a's, ±0)" "$vb" "$va"
lab_assert_eq "counter of $c in the grouped backup (same as $a's, ±0)" "$vc" "$va"
counter_wait_past "$after"
lab_ok "grouped backup: all three data disks hold counter $va; the counter ran on after the thaw ($(counter_now))"

# --- 2: without --group (text report)
vmw_vmshadow backup "${doms[@]}" || lab_fail "backup without --group failed: $(tail -n 5 "$VMW_ERR" | tr '\n' ' ')"
grep -q '^Not grouped (3 frozen VMs): ' "$VMW_OUT" ||
    lab_fail "the text report does not say the VMs were not grouped: $(tr '\n' ' ' <"$VMW_OUT")"
grep -q 'frozen .* UTC (grouped)' "$VMW_OUT" && lab_fail "a VM is called grouped without --group: $(cat "$VMW_OUT")"
lab_log "$(grep '^Not grouped' "$VMW_OUT")"
bid2=$(sed -n 's/^Backup \(.*\) complete\.$/\1/p' "$VMW_OUT")
[ -n "$bid2" ] || lab_fail "no backup id in the text report: $(head -n 3 "$VMW_OUT" | tr '\n' ' ')"
read -r va vb vc <<<"$(backed_up_values "$bid2")"
lab_ok "without --group: report says not grouped; counter values $a=$va $b=$vb $c=$vc (not asserted: without the barrier they differ when one guest thaws before another freezes)"
lab_assert_eq "backups after two" "$(vmw_backup_count)" 2

# --- 3: one veto fails the group
cat >"$LAB_WORK/veto" <<'HOOK'
#!/bin/sh
[ "$1" = freeze ] && { echo "vmslab veto" >&2; exit 1; }
exit 0
HOOK
lab_guest_put "$b" "$LAB_WORK/veto" /etc/qemu/fsfreeze-hook.d/10-veto 755
before=$(counter_now)
rc=0
vmw_backup --group "${doms[@]}" || rc=$?
[ $rc -ne 0 ] || lab_fail "backup --group succeeded although the guest of $b vetoed its freeze"
msg=$(jq -r '.failure.message // empty' "$VMW_SUMMARY")
lab_log "report: $msg"
grep -qF "\"$b\"" <<<"$msg" || lab_fail "the failure does not name $b: $msg"
grep -qiE 'freeze' <<<"$msg" || lab_fail "the failure does not say the freeze failed: $msg"
grep -qF 'consistency group' <<<"$msg" || lab_fail "the failure does not say the others failed with the group: $msg"
lab_assert_eq "backups after the vetoed group" "$(vmw_backup_count)" 2
for d in "${doms[@]}"; do
    lab_assert_eq "guest-fsfreeze-status of $d" "$(lab_agent "$d" '{"execute":"guest-fsfreeze-status"}')" '"thawed"'
    LAB_EXEC_TIMEOUT=20 lab_guest_run "$d" 'echo x >/data/after && sync -f /data/after'
    job=$(virsh domjobinfo "$d" | awk -F: '$1 == "Job type" { gsub(/ /, "", $2); print $2 }')
    lab_assert_eq "backup job of $d after the vetoed group" "$job" None
done
counter_wait_past "$before"
lab_ok "a veto in $b failed the whole group (exit $rc), nothing stored, every guest thawed and writable, no job left, the counter runs on"
