#!/bin/bash
# prune-keeps-each-vms-newest-and-deletes-unneeded-checkpoints (issue 20):
# two running VMs backed up online at different frequencies (a three
# times, b once, then both once more as one set each with --each).  `prune
# --keep-last 2` counts each VM's backups on its own: a keeps its newest
# two, b both of its.  Its dry run deletes nothing and says which
# vmshadow checkpoints would go; the real prune deletes, on each VM, every
# vmshadow checkpoint no remaining backup needs, so that `virsh
# checkpoint-list` holds only the one each disk's next incremental starts
# from; a checkpoint of another tool is left alone.  The next backup of a
# is still an incremental from the checkpoint kept.
. "$(dirname "$0")/lib.sh"
lab_init
. "$LAB_TESTS_DIR/vm-writer-lib.sh"
vmw_init

lab_vm_create --data-disk 32M --memory 128 --name prunea
a=$LAB_DOM
lab_vm_create --data-disk 32M --memory 128 --name pruneb
b=$LAB_DOM
lab_wait_agent "$a"
lab_wait_agent "$b"
ua=$(virsh domuuid "$a") ub=$(virsh domuuid "$b")

# A checkpoint of another tool on a (no vmshadow- prefix): never touched.
lab_backup_begin "$a" "$LAB_WORK/other.sock" vda othertool-cp
lab_backup_end "$a"

declare -a ids_a=() ids_b=()
for i in 1 2 3; do
    lab_guest_run "$a" "echo $i >/data/round && sync -f /data/round"
    vmw_backup "$a" || lab_fail "backup $i of $a failed: $(vmw_backup_failure)"
    ids_a+=("$VMW_BID")
done
vmw_backup "$b" || lab_fail "backup of $b failed: $(vmw_backup_failure)"
ids_b+=("$VMW_BID")
rc=0
vmw_backup --each "$a" "$b" || rc=$?
lab_assert_eq "exit status of backup --each $a $b" "$rc" 0
ids_a+=("$(jq -r --arg v "$a" '.sets[] | select(.vm == $v) | .backup_id' "$VMW_SUMMARY")")
ids_b+=("$(jq -r --arg v "$b" '.sets[] | select(.vm == $v) | .backup_id' "$VMW_SUMMARY")")
lab_assert_eq "backups before prune" "$(vmw_backup_count)" 6
cps_a=$(vmw_checkpoints "$a") cps_b=$(vmw_checkpoints "$b")
lab_assert_eq "vmshadow checkpoints of $a before prune" "$(wc -w <<<"$cps_a")" 4
lab_assert_eq "vmshadow checkpoints of $b before prune" "$(wc -w <<<"$cps_b")" 2
lab_ok "$a backed up 4 times (${ids_a[*]}), $b twice (${ids_b[*]}); checkpoints: $a: $cps_a; $b: $cps_b"

# The checkpoint each VM's newest backup recorded: what its next
# incremental starts from.
vmw_show "${ids_a[3]}"; keep_a=$(vmw_attr "$ua" checkpoint)
vmw_show "${ids_b[1]}"; keep_b=$(vmw_attr "$ub" checkpoint)
[ -n "$keep_a" ] && [ -n "$keep_b" ] || lab_fail "the newest backups record no checkpoint ($keep_a, $keep_b)"

vmw_vmshadow prune --json --keep-last 2 --dry-run || lab_fail "prune --dry-run failed: $(cat "$VMW_OUT" "$VMW_ERR")"
lab_log "dry run: $(jq -c . "$VMW_OUT")"
lab_assert_eq "checkpoints a dry run would delete" "$(jq '.checkpoints.deleted' "$VMW_OUT")" 4
lab_assert_eq "vmshadow checkpoints of $a after the dry run" "$(vmw_checkpoints "$a")" "$cps_a"
lab_assert_eq "backups after the dry run" "$(vmw_backup_count)" 6

vmw_vmshadow prune --json --keep-last 2 || lab_fail "prune failed: $(cat "$VMW_OUT" "$VMW_ERR")"
lab_log "prune: $(jq -c . "$VMW_OUT")"
lab_assert_eq "exit code in the prune report" "$(jq .exit_code "$VMW_OUT")" 0
lab_assert_eq "checkpoints deleted" "$(jq '.checkpoints.deleted' "$VMW_OUT")" 4
vmw_vmshadow list --json || lab_fail "list failed"
left=$(jq -r '[.backups[].backup_id] | sort | join(" ")' "$VMW_OUT")
want=$(printf '%s\n' "${ids_a[2]}" "${ids_a[3]}" "${ids_b[0]}" "${ids_b[1]}" | sort | tr '\n' ' ')
lab_assert_eq "backups left (each VM's newest 2)" "$left " "$want"
lab_assert_eq "vmshadow checkpoints of $a after prune" "$(vmw_checkpoints "$a")" "$keep_a "
lab_assert_eq "vmshadow checkpoints of $b after prune" "$(vmw_checkpoints "$b")" "$keep_b "
all_cps=$(virsh -q checkpoint-list "$a" --name)
grep -qx othertool-cp <<<"$all_cps" ||
    lab_fail "prune deleted another tool's checkpoint of $a: $(tr '\n' ' ' <<<"$all_cps")"
lab_ok "prune kept ${ids_a[2]} ${ids_a[3]} of $a and both of $b; checkpoints left: $a: $keep_a (and othertool-cp), $b: $keep_b"

# The checkpoint kept still starts an incremental.
lab_guest_run "$a" "echo 5 >/data/round && sync -f /data/round"
vmw_backup "$a" || lab_fail "backup of $a after prune failed: $(vmw_backup_failure)"
vmw_show "$VMW_BID"
lab_assert_eq "backup type of $a after prune" "$(vmw_attr "$ua" backup_type)" incremental
lab_assert_eq "parent checkpoint of $a after prune" "$(vmw_attr "$ua" parent_checkpoint)" "$keep_a"
lab_ok "the next backup of $a is an incremental from $keep_a"
