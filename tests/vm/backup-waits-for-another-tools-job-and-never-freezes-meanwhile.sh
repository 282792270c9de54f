#!/bin/bash
# backup-waits-for-another-tools-job-and-never-freezes-meanwhile (issue 20;
# R2, R12): another tool's libvirt backup job (`virsh backup-begin`, pull
# mode, kept running) is on a running VM.  `vmshadow backup` fails at
# once, before touching the guest: exit 1, the report names the VM and the
# job; the guest's fsfreeze hook never ran (its log has no new freeze), the
# other tool's job still runs, the repository holds no backup.  Then
# `vmshadow backup --wait` waits (still no freeze while the job runs) and,
# once the other job ends, backs the VM up (exit 0, one freeze).  A block
# job (`virsh blockcopy`, kept in its mirror phase) is refused the same way.
. "$(dirname "$0")/lib.sh"
lab_init
. "$LAB_TESTS_DIR/vm-writer-lib.sh"
vmw_init

lab_vm_create --data-disk 32M --memory 128 --name jobs
dom=$LAB_DOM
lab_wait_agent "$dom"
freezes() {
    lab_guest_run "$dom" 'cat /run/vmslab/fsfreeze-hook.log 2>/dev/null || true' | grep -c 'freeze begin' || true
}
f0=$(freezes)

# --- 1: another tool's backup job: refused before any freeze.
lab_backup_begin "$dom" "$LAB_WORK/other.sock" vda
rc=0
vmw_backup "$dom" || rc=$?
lab_assert_eq "exit status with another tool's backup job" "$rc" 1
msg=$(jq -r '.failure.message // .error // empty' "$VMW_SUMMARY")
lab_log "report: $msg"
grep -qF "\"$dom\"" <<<"$msg" || lab_fail "the failure does not name $dom: $msg"
grep -q "a backup job runs on it" <<<"$msg" || lab_fail "the failure does not name the backup job: $msg"
grep -q "no guest was frozen or paused" <<<"$msg" || lab_fail "the failure does not say nothing was touched: $msg"
lab_assert_eq "guest freezes after the refused backup" "$(freezes)" "$f0"
lab_assert_eq "state of $dom" "$(virsh domstate "$dom")" running
jobinfo=$(virsh -q domjobinfo "$dom")
grep -q 'Operation:.*Backup' <<<"$jobinfo" ||
    lab_fail "the other tool's backup job is gone: $(tr '\n' ' ' <<<"$jobinfo")"
lab_assert_eq "backups after the refused backup" "$(vmw_backup_count)" 0
lab_ok "refused at once (exit 1), guest never frozen, the other job untouched: $msg"

# --- 2: --wait waits for it, then backs up.
VMW_OUT=$LAB_WORK/wait.out
"$VMSHADOW" --repo "$VMW_REPO" backup --json --wait --wait-timeout 120 "$dom" \
    >"$VMW_OUT" 2>"$LAB_WORK/wait.err" &
pid=$!
sleep 6
kill -0 $pid 2>/dev/null || lab_fail "backup --wait did not wait: $(cat "$VMW_OUT" "$LAB_WORK/wait.err")"
grep -q "waiting for it to end" "$LAB_WORK/wait.err" ||
    lab_fail "backup --wait does not say it waits: $(cat "$LAB_WORK/wait.err")"
lab_assert_eq "guest freezes while waiting" "$(freezes)" "$f0"
lab_backup_end "$dom"
rc=0
wait $pid || rc=$?
lab_assert_eq "exit status of backup --wait" "$rc" 0
lab_assert_eq "state in the report" "$(jq -r .state "$VMW_OUT")" complete
lab_assert_eq "guest freezes after backup --wait" "$(freezes)" $((f0 + 1))
lab_assert_eq "backups after backup --wait" "$(vmw_backup_count)" 1
lab_ok "backup --wait waited while the job ran, then stored the backup with one freeze"

# --- 3: a block job (a block copy in its mirror phase) is refused too.
f1=$(freezes)
if virsh -q blockcopy "$dom" vda "$LAB_WORK/copy.qcow2" --transient-job >"$LAB_WORK/blockcopy.out" 2>&1; then
    rc=0
    vmw_backup "$dom" || rc=$?
    virsh -q blockjob "$dom" vda --abort >/dev/null 2>&1 || true
    lab_assert_eq "exit status with a block copy" "$rc" 1
    msg=$(jq -r '.failure.message // .error // empty' "$VMW_SUMMARY")
    grep -q "block copy job runs on its disk vda" <<<"$msg" || lab_fail "the failure does not name the block copy: $msg"
    lab_assert_eq "guest freezes after the refused backup" "$(freezes)" "$f1"
    lab_ok "block copy on vda: refused, never frozen: $msg"
else
    lab_log "virsh blockcopy could not start here ($(tr '\n' ' ' <"$LAB_WORK/blockcopy.out")): block-job case not run"
fi
