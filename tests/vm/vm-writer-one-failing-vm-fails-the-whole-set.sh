#!/bin/bash
# vm-writer-one-failing-vm-fails-the-whole-set (issue 5; R12, R3, R4): three
# running VMs with agents are backed up once as a set.  Then a guest
# fsfreeze hook in the second one vetoes the freeze, and the set is backed
# up again: vmshadow exits non-zero; its report names that VM, the phase
# (prepare-snapshot) and the reason (the freeze was refused); `vmshadow
# list` shows no new backup and the repository verifies; all three VMs
# are running, their guests thawed (guest-fsfreeze-status "thawed") and
# writable; no backup job is left on any of them; no new vmshadow-
# checkpoint is left (the first backup's stay); the scratch directories are
# gone.  Then one VM's disk image vanishes from the host (renamed away while
# it runs) and the same holds.  Last (issue 20), the guest of the second VM
# vetoes again, now in a `backup --each` run (one set per VM): the first
# and third VMs are stored, the exit status is 4 (partial), and the report,
# JSON and text, names the second VM as failed and why; it stays running
# and thawed.
. "$(dirname "$0")/lib.sh"
lab_init
. "$LAB_TESTS_DIR/vm-writer-lib.sh"
vmw_init

doms=()
for n in a b c; do
    lab_vm_create --data-disk 32M --memory 128 --name "set$n"
    doms+=("$LAB_DOM")
done
for d in "${doms[@]}"; do lab_wait_agent "$d"; done
a=${doms[0]} b=${doms[1]} c=${doms[2]}

vmw_backup "${doms[@]}" || lab_fail "first backup of the set failed: $(vmw_backup_failure)"
declare -A cps=()
for d in "${doms[@]}"; do
    cps[$d]=$(vmw_checkpoints "$d")
    [ -n "${cps[$d]}" ] || lab_fail "first backup left no vmshadow- checkpoint on $d"
done
lab_ok "first backup $VMW_BID of $a, $b, $c; checkpoints ${cps[$a]}"

# assert_set_untouched WHAT — after a failed backup: one backup in the
# repository, every VM running and thawed and writable, no job, only the
# first backup's checkpoints, no scratch directory left.
assert_set_untouched() {
    local what=$1 d st job
    lab_assert_eq "backups after $what" "$(vmw_backup_count)" 1
    vmw_vmshadow verify || lab_fail "vmshadow verify after $what: $(tr '\n' ' ' <"$VMW_OUT")"
    for d in "${doms[@]}"; do
        lab_assert_eq "state of $d after $what" "$(virsh domstate "$d")" running
        st=$(lab_agent "$d" '{"execute":"guest-fsfreeze-status"}')
        lab_assert_eq "guest-fsfreeze-status of $d after $what" "$st" '"thawed"'
        LAB_EXEC_TIMEOUT=20 lab_guest_run "$d" 'echo x >/data/after && sync -f /data/after'
        job=$(virsh domjobinfo "$d" | awk -F: '$1 == "Job type" { gsub(/ /, "", $2); print $2 }')
        lab_assert_eq "backup job of $d after $what" "$job" None
        lab_assert_eq "vmshadow checkpoints of $d after $what" "$(vmw_checkpoints "$d")" "${cps[$d]}"
    done
    local left
    left=$(find "$VMSHADOW_VM_STATE_DIR" -name 'scratch-*' 2>/dev/null | head -n 3)
    [ -z "$left" ] || lab_fail "scratch left after $what: $left"
}

# --- 1: a guest writer in $b vetoes the freeze.
cat >"$LAB_WORK/veto" <<'HOOK'
#!/bin/sh
[ "$1" = freeze ] && { echo "vmslab veto" >&2; exit 1; }
exit 0
HOOK
lab_guest_put "$b" "$LAB_WORK/veto" /etc/qemu/fsfreeze-hook.d/10-veto 755
rc=0
vmw_backup "${doms[@]}" || rc=$?
[ $rc -ne 0 ] || lab_fail "backup succeeded although the guest of $b vetoed its freeze"
report="$(jq -c . "$VMW_SUMMARY" 2>/dev/null) $(tr '\n' ' ' <"${VMW_SUMMARY%.out}.err")"
lab_log "report: $report"
lab_assert_eq "state in the report" "$(jq -r .state "$VMW_SUMMARY")" failed
msg=$(jq -r '.failure.message // empty' "$VMW_SUMMARY")
lab_assert_eq "failed phase in the report" "$(jq -r '.failure.phase // empty' "$VMW_SUMMARY")" prepare-snapshot
grep -qF "\"$b\"" <<<"$msg" || lab_fail "the failure message does not name $b: $msg"
grep -qE 'prepare-snapshot' <<<"$msg" || lab_fail "the failure message does not name the phase: $msg"
grep -qiE 'freeze|froze' <<<"$msg" || lab_fail "the failure message does not say the freeze failed: $msg"
for d in "$a" "$c"; do
    grep -qF "\"$d\"" <<<"$msg" && lab_fail "the failure message blames $d too: $msg"
done
lab_ok "backup failed (exit $rc): $msg"
assert_set_untouched "the vetoed freeze"
lab_ok "after the veto: still 1 backup, all three running, thawed, writable, no job, no new checkpoint"
lab_guest_run "$b" 'rm /etc/qemu/fsfreeze-hook.d/10-veto'

# --- 2: the disk image of $c vanished (renamed away; QEMU keeps its open file).
img=${LAB_DISK_FILE[$c/vda]}
mv "$img" "$img.away"
rc=0
vmw_backup "${doms[@]}" || rc=$?
mv "$img.away" "$img"
[ $rc -ne 0 ] || lab_fail "backup succeeded although the image of $c had vanished"
msg=$(jq -r '.failure.message // empty' "$VMW_SUMMARY")
lab_log "report: $(jq -c .failure "$VMW_SUMMARY" 2>/dev/null) $(tr '\n' ' ' <"${VMW_SUMMARY%.out}.err")"
grep -qF "\"$c\"" <<<"$msg" || lab_fail "the failure message does not name $c: $msg"
grep -qF "$img" <<<"$msg" && grep -q "is missing" <<<"$msg" ||
    lab_fail "the failure message does not say the image $img is missing: $msg"
phase=$(jq -r '.failure.phase // empty' "$VMW_SUMMARY")
lab_assert_eq "failed phase for a vanished image" "$phase" prepare-backup
lab_ok "backup failed (exit $rc) at $phase: $msg"
assert_set_untouched "the vanished image"
lab_ok "after the vanished image: still 1 backup, all three running, thawed, writable, no job, no new checkpoint"

# --- 3 (issue 20): one set per VM: the veto in $b sinks only $b.
lab_guest_put "$b" "$LAB_WORK/veto" /etc/qemu/fsfreeze-hook.d/10-veto 755
rc=0
vmw_backup --each "${doms[@]}" || rc=$?
lab_log "report: $(jq -c '{outcome, succeeded, failed, exit_code}' "$VMW_SUMMARY" 2>/dev/null) $(tr '\n' ' ' <"${VMW_SUMMARY%.out}.err")"
lab_assert_eq "exit status of backup --each with one veto" "$rc" 4
lab_assert_eq "outcome" "$(jq -r .outcome "$VMW_SUMMARY")" partial
lab_assert_eq "VMs stored" "$(jq -r '.succeeded | join(" ")' "$VMW_SUMMARY")" "$a $c"
lab_assert_eq "VMs failed" "$(jq -r '.failed | join(" ")' "$VMW_SUMMARY")" "$b"
msg=$(jq -r --arg v "$b" '.sets[] | select(.vm == $v) | .failure.message' "$VMW_SUMMARY")
grep -qiE 'freeze|froze' <<<"$msg" || lab_fail "the report does not say why $b failed: $msg"
for d in "$a" "$c"; do
    lab_assert_eq "state of $d's set" "$(jq -r --arg v "$d" '.sets[] | select(.vm == $v) | .state' "$VMW_SUMMARY")" complete
done
lab_assert_eq "backups after backup --each" "$(vmw_backup_count)" 3
rc=0
vmw_vmshadow backup --each "${doms[@]}" || rc=$?
lab_assert_eq "exit status of backup --each (text)" "$rc" 4
grep -q "^vm \"$b\": failed" "$VMW_OUT" || lab_fail "the text report does not name $b as failed: $(tr '\n' ';' <"$VMW_OUT")"
grep -A3 "failed:" "$VMW_OUT" | grep -qF "vm \"$b\"" || lab_fail "the text summary does not list $b: $(tr '\n' ';' <"$VMW_OUT")"
grep -F "vm \"$b\"" "$VMW_ERR" | grep -qiE 'freeze|froze' || lab_fail "the text report does not say why $b failed: $(tr '\n' ';' <"$VMW_ERR")"
lab_assert_eq "backups after the second backup --each" "$(vmw_backup_count)" 5
lab_assert_eq "state of $b after backup --each" "$(virsh domstate "$b")" running
lab_assert_eq "guest-fsfreeze-status of $b after backup --each" "$(lab_agent "$b" '{"execute":"guest-fsfreeze-status"}')" '"thawed"'
lab_guest_run "$b" 'rm /etc/qemu/fsfreeze-hook.d/10-veto'
lab_ok "backup --each: $a and $c stored, $b failed (exit 4, partial): $msg"
