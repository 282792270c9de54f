#!/bin/bash
# backup-dry-run-and-bad-policies-change-nothing (issue 20; R8, R9, R13):
# four VMs of every kind — running with a guest agent, running without one,
# stopped, and stopped with an (excluded) iSCSI network disk:
#   - `vmshadow backup --dry-run --json` says per VM the method and why
#     (online; crash-consistent, the default fallback, because the agent
#     does not answer; offline twice), the policy and where it comes from,
#     what the agent answered, the disks included (path, format) and left
#     out (the iSCSI disk, "backed up from inside the guest"), and the
#     scratch space (each running VM's disks' virtual size in its state
#     directory; nothing for stopped VMs; the total); the text output says
#     the same;
#   - with <vmshadow:policy fallback="saved-state"/> in the agent-less VM's
#     metadata the dry run says saved-state, from the metadata, with the
#     memory added to its scratch space;
#   - a malformed policy (method="pause", an unknown attribute) and the
#     policy fallback="fail" make the dry run and the backup fail naming
#     the VM and what is wrong; bad --method/--fallback values are usage
#     errors (exit 2);
#   - none of it changes anything: the repository (made by one real backup
#     of a stopped VM first) and the state directory are byte for byte as
#     before, no checkpoint exists on either running VM, both still run
#     (none paused) and the agent's guest is thawed.
. "$(dirname "$0")/lib.sh"
lab_init
. "$LAB_TESTS_DIR/vm-writer-lib.sh"
vmw_init

lab_vm_create --data-disk 32M --memory 128 --name dryagent
withagent=$LAB_DOM
lab_vm_create --disk qcow2:24M --memory 128 --no-agent --name drynoagent
noagent=$LAB_DOM
lab_vm_create --disk qcow2:16M --no-start --name drystopped
stopped=$LAB_DOM
lab_vm_create --disk qcow2:16M --disk iscsi:16M --no-start --name dryiscsi
iscsi=$LAB_DOM
lab_wait_agent "$withagent"
all=("$withagent" "$noagent" "$stopped" "$iscsi")
declare -A U=()
for d in "${all[@]}"; do U[$d]=$(virsh domuuid "$d" | sed -n 1p); done

# The repository exists (one real backup of a stopped VM), then nothing may
# change it.
vmw_backup "$stopped" || lab_fail "backup of $stopped failed: $(vmw_backup_failure)"
# What must not change: every name in the repository and the state
# directory, each file's size, mode and mtime (directories' mtimes and the
# writer lock's pid aside), the running VMs' states and their checkpoints.
snapshot() {
    { find "$VMW_REPO" "$VMSHADOW_VM_STATE_DIR" -type d -printf '%p %m\n'
      find "$VMW_REPO" "$VMSHADOW_VM_STATE_DIR" ! -type d ! -path "$VMW_REPO/lock" -printf '%p %y %s %m %T@\n'
    } | sort
    for d in "$withagent" "$noagent"; do
        echo "$d $(virsh -q domstate "$d") $(virsh -q checkpoint-list "$d" --name 2>&1 | tr '\n' ' ')"
    done
}
snapshot >"$LAB_WORK/before.txt"
unchanged() {
    snapshot >"$LAB_WORK/after.txt"
    cmp -s "$LAB_WORK/before.txt" "$LAB_WORK/after.txt" ||
        lab_fail "$1 changed something: $(diff "$LAB_WORK/before.txt" "$LAB_WORK/after.txt" | head -n 8 | tr '\n' ' ')"
}
# Every text the last command printed (JSON strings unescaped, and stderr).
said() { { jq -r '.. | strings' "$VMW_OUT" 2>/dev/null || cat "$VMW_OUT"; cat "$VMW_ERR"; }; }

# --- the plan
vmw_vmshadow backup --dry-run --json "${all[@]}" || lab_fail "backup --dry-run failed: $(tail -n 3 "$VMW_ERR" | tr '\n' ' ')"
plan=$LAB_WORK/plan.json
cp "$VMW_OUT" "$plan"
unchanged "backup --dry-run"
lab_assert_eq "dry_run" "$(jq -r .dry_run "$plan")" true
lab_assert_eq "components" "$(jq '.components | length' "$plan")" 4
lab_assert_eq "errors" "$(jq '.errors | length' "$plan")" 0
f() { jq -r --arg u "${U[$1]}" --arg k "$2" '.components[] | select(.component == $u) | .[$k] // empty | tostring' "$plan"; }
lab_assert_eq "method of $withagent" "$(f "$withagent" method)" online
lab_assert_eq "agent of $withagent" "$(f "$withagent" agent)" answers
lab_assert_eq "fallback_reason of $withagent" "$(f "$withagent" fallback_reason)" ""
lab_assert_eq "policy of $withagent" "$(f "$withagent" policy)" "method=auto fallback=crash-consistent"
lab_assert_eq "policy_source of $withagent" "$(f "$withagent" policy_source)" options
lab_assert_eq "method of $noagent" "$(f "$noagent" method)" crash-consistent
case $(f "$noagent" agent) in "does not answer: "*) ;; *) lab_fail "agent of $noagent: $(f "$noagent" agent)" ;; esac
case $(f "$noagent" fallback_reason) in *"guest agent does not answer"*) ;; *) lab_fail "fallback_reason of $noagent: $(f "$noagent" fallback_reason)" ;; esac
case $(f "$noagent" method_reason) in *"the fallback set by the options is crash-consistent"*) ;; *) lab_fail "method_reason of $noagent: $(f "$noagent" method_reason)" ;; esac
for d in "$stopped" "$iscsi"; do
    lab_assert_eq "method of $d" "$(f "$d" method)" offline
    lab_assert_eq "state of $d" "$(f "$d" state)" shut-off
    lab_assert_eq "scratch of $d" "$(f "$d" scratch_bytes)" 0
    lab_assert_eq "agent of $d" "$(f "$d" agent)" "not asked: the VM is shut-off"
done
lab_ok "methods: $withagent online, $noagent crash-consistent ($(f "$noagent" fallback_reason)), stopped VMs offline"

# Disks in and out, scratch space.
disk_of() { jq -r --arg u "${U[$1]}" '[.components[] | select(.component == $u) | .files[] | select(.kind == "disk") | "\(.path) \(.format)"] | join(",")' "$plan"; }
lab_assert_eq "disks of $withagent" "$(disk_of "$withagent")" "${LAB_DISK_FILE[$withagent/vda]} qcow2"
lab_assert_eq "disks of $noagent" "$(disk_of "$noagent")" "${LAB_DISK_FILE[$noagent/vda]} qcow2"
# R13 on KVM (issue 11): QEMU opens the iSCSI disk, so it is backed up.
lab_assert_eq "disks of $iscsi" "$(disk_of "$iscsi")" \
    "${LAB_DISK_FILE[$iscsi/vda]} qcow2,iscsi://192.0.2.1:3260/iqn.2024-01.org.vmshadow.lab:unreachable/0 raw"
lab_assert_eq "excluded of $iscsi" "$(jq -r --arg u "${U[$iscsi]}" '[.components[] | select(.component == $u) | .excluded[]?] | length' "$plan")" 0
lab_assert_eq "scratch of $withagent" "$(f "$withagent" scratch_bytes)" $((32 * 1048576))
lab_assert_eq "scratch of $noagent" "$(f "$noagent" scratch_bytes)" $((24 * 1048576))
lab_assert_eq "scratch dir of $withagent" "$(f "$withagent" scratch_dir)" "$VMSHADOW_VM_STATE_DIR/${U[$withagent]}"
lab_assert_eq "total scratch" "$(jq -r .scratch_bytes "$plan")" $((56 * 1048576))
lab_ok "disks: qcow2 included, the iSCSI disk included too (R13 on KVM); scratch 32 + 24 MiB in the state dir, 0 for stopped VMs"

# The text output says the same.
vmw_vmshadow backup --dry-run "${all[@]}" || lab_fail "backup --dry-run (text) failed: $(tail -n 3 "$VMW_ERR" | tr '\n' ' ')"
unchanged "backup --dry-run (text)"
for want in "VM $withagent (${U[$withagent]}), running: online" \
            "VM $noagent (${U[$noagent]}), running: crash-consistent" \
            "VM $stopped (${U[$stopped]}), shut-off: offline" \
            "guest agent: answers" \
            "scratch space: up to 32.0 MiB in $VMSHADOW_VM_STATE_DIR/${U[$withagent]}" \
            "Scratch space needed: up to 56.0 MiB." ; do
    grep -qF -- "$want" "$VMW_OUT" || lab_fail "the dry run's text does not say '$want': $(cat "$VMW_OUT")"
done
lab_ok "the text output names each VM's method, the agent and the scratch space"

# --- the per-VM policy in the metadata
setpol() {
    virsh -q metadata "$noagent" https://vmshadow.org/xmlns/1 --key vmshadow --live --config \
        --set "$1" >/dev/null || lab_fail "virsh metadata --set '$1' failed"
}
setpol '<policy fallback="saved-state"/>'
vmw_vmshadow backup --dry-run --json "$noagent" || lab_fail "dry run with a metadata policy failed: $(tail -n 3 "$VMW_ERR" | tr '\n' ' ')"
cp "$VMW_OUT" "$plan"
lab_assert_eq "method (metadata)" "$(f "$noagent" method)" saved-state
lab_assert_eq "policy (metadata)" "$(f "$noagent" policy)" "method=auto fallback=saved-state"
lab_assert_eq "policy_source (metadata)" "$(f "$noagent" policy_source)" "options and metadata"
lab_assert_eq "scratch with the memory" "$(f "$noagent" scratch_bytes)" $(((24 + 128) * 1048576))
# the command line is the default; the metadata wins
vmw_vmshadow backup --dry-run --json --fallback fail "$noagent" || lab_fail "dry run --fallback fail failed although the metadata says saved-state"
lab_assert_eq "method (metadata over --fallback fail)" "$(jq -r '.components[0].method' "$VMW_OUT")" saved-state
unchanged "the dry runs with a metadata policy"
lab_ok "metadata fallback=saved-state: saved-state, from the metadata, also over --fallback fail; scratch adds the 128 MiB of memory"

# --- bad policies and values: clear errors, nothing changed
for bad in '<policy method="pause"/>|method=\"pause\"' \
           '<policy method="online" when="always"/>|unknown attribute \"when\"' \
           '<policy fallback="fail"/>|its fallback is \"fail\"'; do
    pol=${bad%%|*} want=${bad#*|}
    want=${want//\\/}
    setpol "$pol"
    for mode in --dry-run ""; do
        rc=0
        vmw_vmshadow backup $mode --json "$withagent" "$noagent" || rc=$?
        [ $rc -eq 1 ] || lab_fail "backup $mode with policy $pol: exit $rc, want 1"
        said >"$LAB_WORK/said.txt"
        grep -qF "vm \"$noagent\"" "$LAB_WORK/said.txt" && grep -qF -- "$want" "$LAB_WORK/said.txt" ||
            lab_fail "backup $mode with policy $pol does not name the VM and '$want': $(head -c 600 "$LAB_WORK/said.txt")"
        unchanged "backup $mode with policy $pol"
    done
done
virsh -q metadata "$noagent" https://vmshadow.org/xmlns/1 --live --config --remove >/dev/null
for opt in "--method pause" "--method Online" "--fallback online" "--fallback auto" "--method"; do
    rc=0
    # shellcheck disable=SC2086
    vmw_vmshadow backup $opt "$withagent" || rc=$?
    [ $rc -eq 2 ] || lab_fail "backup $opt: exit $rc, want 2 (usage)"
    grep -q -- "${opt%% *}" "$VMW_ERR" || lab_fail "backup $opt: the message does not name the option: $(cat "$VMW_ERR")"
    unchanged "backup $opt"
done
lab_assert_eq "freeze status of $withagent" "$(lab_agent "$withagent" '{"execute":"guest-fsfreeze-status"}')" '"thawed"'
lab_ok "malformed policies, fallback=fail and bad option values: clear errors naming the VM or option; repository, state dir, VM states and checkpoints unchanged"
