#!/bin/bash
# crash-consistent-backup-never-stops-an-agentless-vm (issue 20; R8, R9): a
# running VM whose guest agent stops answering (qemu-ga SIGSTOPped in the
# guest: the channel is there, nothing answers) is backed up with no policy
# options at all:
#   - auto falls back to the default, crash-consistent: method
#     "crash-consistent", no downtime_ms and no freeze_window_ms, the agent
#     attribute and fallback_reason say the agent did not answer;
#   - the guest never stopped: a guest process prints its tick count and
#     its clock (/proc/uptime) every 100 ms on the serial console, and the
#     host stamps each line as it arrives.  Under TCG the guest's clock
#     stops while the VM is paused, so a pause shows as guest time falling
#     behind host time ("lag"); across the backup the lag stays under
#     400 ms and no tick is missing;
#   - the stored data disk is an ext4 that e2fsck can bring back (crash
#     consistent: at most a journal replay).
# Then the VM's libvirt metadata gets <vmshadow:policy method="saved-state"/>
# and the same command pauses it as before issue 20: method "saved-state",
# downtime_ms present, policy_source says the metadata, and the lag the
# ticker shows covers at least half of downtime_ms — the measurement sees a
# pause when there is one. Last, the VM paused (and its policy removed)
# is backed up crash-consistent by default and stays paused.
. "$(dirname "$0")/lib.sh"
lab_init
. "$LAB_TESTS_DIR/vm-writer-lib.sh"
vmw_init

lab_vm_create --data-disk 32M --memory 192 --name crashcons
dom=$LAB_DOM
uuid=$(virsh domuuid "$dom" | sed -n 1p)
lab_wait_agent "$dom"
lab_guest_run "$dom" 'vmslab-pattern write /data/file.bin seedC 0 262144' >/dev/null

# The ticker, and the host's stamps of what it prints.
ticks=$LAB_WORK/ticks
: >"$ticks"
(
    exec <"$LAB_WORK/$dom.console"
    buf=
    while :; do
        if IFS= read -r line; then
            line=$buf$line buf=
            case $line in *vmslab-tick*) echo "$EPOCHREALTIME $line" ;; esac
        else
            buf=$buf$line
            sleep 0.05
        fi
    done
) >>"$ticks" &
tailer=$!
lab__undo_push pid "$tailer" "$LAB_NAME"
lab_guest_run "$dom" 'n=0; (while :; do n=$((n+1)); echo "vmslab-tick $n $(cut -d" " -f1 /proc/uptime)"; usleep 100000; done) >/dev/console 2>&1 </dev/null &'
for i in $(seq 100); do [ "$(wc -l <"$ticks")" -ge 20 ] && break; sleep 0.2; done
[ "$(wc -l <"$ticks")" -ge 20 ] || lab_fail "the guest ticker printed $(wc -l <"$ticks") ticks in 20 s"

# The agent stops answering.
# (a second later, so that the guest-exec that asks for it gets its answer)
lab_guest_run "$dom" '(sleep 1; kill -STOP $(pidof qemu-ga)) </dev/null >/dev/null 2>&1 &'
sleep 3
if virsh qemu-agent-command --timeout 3 "$dom" '{"execute":"guest-ping"}' >/dev/null 2>&1; then
    lab_fail "the guest agent of $dom still answers after SIGSTOP"
fi
lab_ok "VM $dom: ticker running, guest agent stopped (does not answer)"

# lag FROM TO — guest time lost against host time between host times FROM
# and TO (ms): the smallest host-minus-guest offset of the 20 ticks after TO
# minus that of the 20 ticks before FROM (the smallest, as a tick can only
# arrive late).  Also checks no tick number is missing.
lag() {
    awk -v from="$1" -v to="$2" '
        { t = $1; n = $3; u = $4; off = t - u
          if (prev != "" && n != prev + 1) { printf "missing ticks between %d and %d\n", prev, n; bad = 1 }
          prev = n
          if (t < from) { b[nb++] = off }
          else if (t > to && na < 20) { a[na++] = off } }
        END { if (bad) exit 1
              if (nb < 10 || na < 10) { printf "too few ticks (%d before, %d after)\n", nb, na; exit 1 }
              mb = 1e18; for (i = nb - 20 < 0 ? 0 : nb - 20; i < nb; i++) if (b[i] < mb) mb = b[i]
              ma = 1e18; for (i = 0; i < na; i++) if (a[i] < ma) ma = a[i]
              printf "%d\n", (ma - mb) * 1000 }' "$ticks"
}
wait_ticks_after() {
    local t=$1 i
    for i in $(seq 100); do
        [ "$(awk -v t="$t" '$1 > t' "$ticks" | wc -l)" -ge 20 ] && return 0
        sleep 0.2
    done
    lab_fail "fewer than 20 ticks arrived after the backup"
}

t0=$EPOCHREALTIME
vmw_backup "$dom" || lab_fail "vmshadow backup $dom (default policy) failed: $(vmw_backup_failure)"
t1=$EPOCHREALTIME
wait_ticks_after "$t1"
cc_lag=$(lag "$t0" "$t1") || lab_fail "ticker across the crash-consistent backup: $cc_lag"
vmw_show "$VMW_BID"
lab_assert_eq "method" "$(vmw_attr "$uuid" method)" crash-consistent
lab_assert_eq "method in the summary" "$(jq -r '.components[0].method' "$VMW_SUMMARY")" crash-consistent
lab_assert_eq "downtime_ms" "$(vmw_attr "$uuid" downtime_ms)" ""
lab_assert_eq "downtime_ms in the summary" "$(jq -r '.components[0].downtime_ms // empty' "$VMW_SUMMARY")" ""
lab_assert_eq "freeze_window_ms" "$(vmw_attr "$uuid" freeze_window_ms)" ""
lab_assert_eq "policy" "$(vmw_attr "$uuid" policy)" "method=auto fallback=crash-consistent"
lab_assert_eq "policy_source" "$(vmw_attr "$uuid" policy_source)" options
case $(vmw_attr "$uuid" agent) in "does not answer: "*) ;; *) lab_fail "agent attribute: $(vmw_attr "$uuid" agent)" ;; esac
case $(vmw_attr "$uuid" fallback_reason) in *"guest agent does not answer"*) ;;
    *) lab_fail "fallback_reason: $(vmw_attr "$uuid" fallback_reason)" ;; esac
lab_assert_eq "state after" "$(virsh -q domstate "$dom")" running
[ "$cc_lag" -lt 400 ] || lab_fail "the guest lost $cc_lag ms against the host across the crash-consistent backup: it was stopped"
lab_ok "default policy: crash-consistent, no downtime_ms, guest clock lag $cc_lag ms over $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s of backup, no tick missing"

vmw_extract "$VMW_BID" "$uuid" "${LAB_DISK_FILE[$dom/vda]}" "$LAB_WORK/vda.raw" raw
rc=0
e2fsck -fy "$LAB_WORK/vda.raw" >"$LAB_WORK/fsck.out" 2>&1 || rc=$?
[ $rc -le 1 ] || lab_fail "the stored data disk is not a recoverable ext4 (e2fsck exit $rc): $(tail -n 3 "$LAB_WORK/fsck.out" | tr '\n' ' ')"
lab_ok "stored data disk: e2fsck -fy exit $rc (crash consistent)"

# The per-VM policy in the domain's metadata: saved state, paused as before.
virsh -q metadata "$dom" https://vmshadow.org/xmlns/1 --key vmshadow --live \
    --set '<policy method="saved-state"/>' >/dev/null || lab_fail "virsh metadata --set failed"
t0=$EPOCHREALTIME
vmw_backup "$dom" || lab_fail "vmshadow backup $dom (metadata saved-state) failed: $(vmw_backup_failure)"
t1=$EPOCHREALTIME
wait_ticks_after "$t1"
ss_lag=$(lag "$t0" "$t1") || lab_fail "ticker across the saved-state backup: $ss_lag"
vmw_show "$VMW_BID"
lab_assert_eq "method (metadata)" "$(vmw_attr "$uuid" method)" saved-state
lab_assert_eq "policy (metadata)" "$(vmw_attr "$uuid" policy)" "method=saved-state fallback=crash-consistent"
lab_assert_eq "policy_source (metadata)" "$(vmw_attr "$uuid" policy_source)" "options and metadata"
downtime=$(vmw_attr "$uuid" downtime_ms)
[[ $downtime =~ ^[0-9]+$ ]] && [ "$downtime" -gt 0 ] || lab_fail "downtime_ms of the saved-state backup: '$downtime'"
lab_assert_eq "state after" "$(virsh -q domstate "$dom")" running
[ $((ss_lag * 2)) -ge "$downtime" ] ||
    lab_fail "the ticker shows a lag of $ss_lag ms, downtime_ms is $downtime: the lag measure misses pauses"
lab_ok "metadata method=saved-state: paused, downtime_ms $downtime, guest clock lag $ss_lag ms"

# A paused VM under the default policy: crash-consistent too (R9 fails:
# it is not running), left paused, its disks read as they are.
virsh -q metadata "$dom" https://vmshadow.org/xmlns/1 --live --remove >/dev/null ||
    lab_fail "virsh metadata --remove failed"
virsh -q suspend "$dom" >/dev/null || lab_fail "virsh suspend $dom failed"
vmw_backup "$dom" || lab_fail "vmshadow backup of the paused $dom failed: $(vmw_backup_failure)"
vmw_show "$VMW_BID"
lab_assert_eq "method (paused)" "$(vmw_attr "$uuid" method)" crash-consistent
lab_assert_eq "state_before (paused)" "$(vmw_attr "$uuid" state_before)" paused
lab_assert_eq "downtime_ms (paused)" "$(vmw_attr "$uuid" downtime_ms)" ""
lab_assert_eq "state after (paused)" "$(virsh -q domstate "$dom")" paused
virsh -q domjobinfo "$dom" | grep -q 'Job type: *None' || lab_fail "a job is left on the paused $dom"
virsh -q resume "$dom" >/dev/null || lab_fail "virsh resume $dom failed"
lab_ok "a paused VM under the default policy: crash-consistent, still paused after, no job left"
