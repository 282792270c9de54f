#!/bin/bash
# verify-boot-proves-a-backup-and-records-it (issue 16; R27): a running VM
# on a libvirt network, with the lab's pattern on its data disk, is backed
# up online into an encrypted repository (R28) and into a plain one, and
# keeps running.  `vmshadow verify --boot` of the encrypted backup (the
# passphrase on a descriptor; the key reaches the exports on a pipe, in no
# environment or command line) boots a throw-away copy of the backup (the
# original untouched: same QEMU process), the copy's guest agent answers
# and a probe that reads the pattern back in the guest exits 0: passed,
# recorded beside the backup (show and list display it).
# The copy never had the original's name, UUID or MAC, nor any interface
# (libvirt's log of its command line has no -netdev).  In the plain
# repository, a probe that exits 3 fails the check with that status, and a
# backup with one damaged chunk fails before anything boots, naming the
# chunk; each result replaces the recorded one.  A check stopped by SIGTERM
# removes its copy and records nothing.  After each run: no domain,
# overlay, export or state left.
. "$(dirname "$0")/lib.sh"
lab_init
. "$LAB_TESTS_DIR/vm-writer-lib.sh"
. "$LAB_TESTS_DIR/restore-lib.sh"
vmw_init
# Format 1, asked for (new repositories are format 2): it damages a chunk's own file (the encrypted repository is format 2, made by init).
export VMSHADOW_REPO_FORMAT=1
. "$LAB_TESTS_DIR/instant-lib.sh"
inst_init
. "$LAB_TESTS_DIR/../flip-byte.sh"

lab_vm_create --disk raw:16M --nic network --memory 160 --name vb
dom=$LAB_DOM
uuid=$(virsh domuuid "$dom")
mac=$(virsh -q domiflist "$dom" | awk '{print $5}' | head -n 1)
lab_wait_agent "$dom"
lab_guest_run "$dom" 'vmslab-pattern write /dev/vda 77 0 1048576' >/dev/null
vmw_backup "$dom" || lab_fail "backup of $dom failed: $(vmw_backup_failure)"
bid=$VMW_BID
plain_repo=$VMW_REPO
VMW_REPO=$LAB_WORK/repo-encrypted
vmw_encrypted_repo "$VMW_REPO"
VMSHADOW_PASSPHRASE=$VMW_PASSPHRASE vmw_backup "$dom" || lab_fail "backup of $dom into an encrypted repository failed: $(vmw_backup_failure)"
ebid=$VMW_BID
qemu_pid=$(cat "/run/libvirt/qemu/$dom.pid")
lab_ok "online backups $bid (plain) and $ebid (encrypted) of running $dom (MAC $mac on a libvirt network)"

# nothing_left — no copy, overlay, export or instant state after a check.
nothing_left() {
    local left
    left=$(inst_leftovers; virsh -q list --all --name | grep '^vmshadow-boot-' || true)
    [ -z "$left" ] || lab_fail "left behind after verify --boot: $left"
    lab_assert_eq "the original after verify --boot" \
        "$(virsh domuuid "$dom") $(virsh domstate "$dom") $(cat "/run/libvirt/qemu/$dom.pid")" \
        "$uuid running $qemu_pid"
}

printf '%s\n' "$VMW_PASSPHRASE" >"$LAB_WORK/passphrase"
inst_watch_exports "$VMW_KEY_SECRET" >"$LAB_WORK/boot-export" &
watcher=$!
vmw_vmshadow verify --boot --json --passphrase-fd 3 --probe 'vmslab-pattern check /dev/vda 77 0 1048576' "$ebid" 3<"$LAB_WORK/passphrase" ||
    lab_fail "verify --boot of a good backup exited $?: $(cat "$VMW_ERR") $(head -c 600 "$VMW_OUT")"
wait "$watcher" || lab_fail "no export of the encrypted backup was seen while the copy booted"
read -r _ how leak <"$LAB_WORK/boot-export"
lab_assert_eq "the export of the encrypted backup: its key" "$how $leak" "keyfd clean"

lab_assert_eq "ok" "$(jq -r .ok "$VMW_OUT")" true
lab_assert_eq "recorded" "$(jq -r .recorded "$VMW_OUT")" true
lab_assert_eq "probe status" "$(jq -r '.vms[0].probe_status' "$VMW_OUT")" 0
agent_ms=$(jq -r '.vms[0].agent_ms' "$VMW_OUT")
[[ $agent_ms =~ ^[0-9]+$ ]] || lab_fail "no agent time: $(cat "$VMW_OUT")"
nothing_left
# The copy's command line, as libvirt logged it: its own name, no network.
log=$(grep -l "guest=vmshadow-boot-" /var/log/libvirt/qemu/vmshadow-boot-*.log 2>/dev/null | xargs -r ls -t | head -n 1)
[ -n "$log" ] || lab_fail "no libvirt log of the throw-away copy"
# (each copy has a new name, so its log is its own)
grep -q -- "-netdev\|$mac\|$uuid" "$log" && lab_fail "the copy had a network device, the original's MAC or UUID: $log"
lab_ok "verify --boot of the encrypted backup passed: its export got the key on descriptor 3 (in no environment or command line); agent after $agent_ms ms, probe exit 0; the copy had no interface, another name and UUID; nothing left, $dom untouched"

export VMSHADOW_PASSPHRASE=$VMW_PASSPHRASE
vmw_vmshadow show "$ebid" || lab_fail "show failed: $(cat "$VMW_ERR")"
grep -q "^Boot check: passed" "$VMW_OUT" || lab_fail "show does not say the boot check passed: $(grep -i boot "$VMW_OUT")"
vmw_vmshadow list || lab_fail "list failed: $(cat "$VMW_ERR")"
grep "^$ebid " "$VMW_OUT" | awk '{print $(NF-1)}' | grep -qx ok || lab_fail "list does not say ok: $(cat "$VMW_OUT")"
vmw_vmshadow list --json || lab_fail "list --json failed"
lab_assert_eq "list --json boot_check.ok" "$(jq -r --arg b "$ebid" '.backups[] | select(.backup_id == $b) | .boot_check.ok' "$VMW_OUT")" true
unset VMSHADOW_PASSPHRASE
lab_ok "show and list display the boot check (sealed in the encrypted repository)"

VMW_REPO=$plain_repo

rc=0
vmw_vmshadow verify --boot --json --probe 'exit 3' "$bid" || rc=$?
lab_assert_eq "verify --boot with a failing probe: exit" "$rc" 1
lab_assert_eq "probe status" "$(jq -r '.vms[0].probe_status' "$VMW_OUT")" 3
jq -r '.vms[0].error' "$VMW_OUT" | grep -q "the probe 'exit 3' exited with status 3" || lab_fail "reason: $(cat "$VMW_OUT")"
nothing_left
vmw_vmshadow list || lab_fail "list failed"
grep "^$bid " "$VMW_OUT" | awk '{print $(NF-1)}' | grep -qx FAILED || lab_fail "list does not say FAILED: $(cat "$VMW_OUT")"
lab_ok "a probe exiting 3 fails the check (status 3 recorded, list says FAILED); nothing left"

# SIGTERM (systemctl stop, a timeout) while the copy boots or runs its
# probe: the copy is turned off and its exports removed before vmshadow
# ends with 143, and the check recorded before (the probe that exited 3) stays.
out=$LAB_WORK/boot-term.out err=$LAB_WORK/boot-term.err
"$VMSHADOW" --repo "$VMW_REPO" verify --boot --json --probe 'sleep 600' "$bid" >"$out" 2>"$err" &
vpid=$!
lab__undo_push pid "$vpid" "verify --boot"
for ((i = 0; i < 1800; i++)); do
    copy=$(virsh -q list --name | grep '^vmshadow-boot-' || true)
    [ -n "$copy" ] && { lab__undo_push domain "$copy"; break; }
    kill -0 "$vpid" 2>/dev/null || lab_fail "verify --boot ended before its copy ran: $(cat "$err")"
    sleep 0.1
done
[ "$i" -lt 1800 ] || { kill -TERM "$vpid"; lab_fail "no throw-away copy ran within 180 s"; }
sleep 2
kill -TERM "$vpid"
rc=0
wait "$vpid" || rc=$?
lab_assert_eq "verify --boot after SIGTERM: exit" "$rc" 143
lab_assert_eq "interrupted" "$(jq -r .interrupted "$out")" 15
lab_assert_eq "recorded" "$(jq -r .recorded "$out")" false
nothing_left
vmw_vmshadow list --json || lab_fail "list --json failed"
lab_assert_eq "the recorded check after SIGTERM: its probe" \
    "$(jq -r --arg b "$bid" '.backups[] | select(.backup_id == $b) | .boot_check.vms[0].probe' "$VMW_OUT")" "exit 3"
lab_ok "SIGTERM during the probe: exit 143, the copy and its exports removed, the earlier check still recorded"

# One damaged chunk of the data disk.
cs=$(jq -r .chunk_size "$VMW_REPO/config")
img=${LAB_DISK_FILE[$dom/vda]}
d=$(lab_guest_run "$dom" "dd if=/dev/vda bs=$cs count=1 2>/dev/null | sha256sum" | cut -c1-64)
# (stored compressed, the pattern being text: <digest>.zst)
chunk=$VMW_REPO/chunks/${d:0:2}/$d
[ -f "$chunk" ] || chunk=$chunk.zst
[ -f "$chunk" ] || lab_fail "chunk $d of $img not in the repository"
flip_byte "$chunk" $(($(stat -c %s "$chunk") / 2))
rc=0
vmw_vmshadow verify --boot "$bid" || rc=$?
lab_assert_eq "verify --boot of a damaged backup: exit" "$rc" 1
grep -q "FAILED: chunk $d of $img (at offset 0) is damaged" "$VMW_OUT" || lab_fail "reason: $(cat "$VMW_OUT" "$VMW_ERR")"
nothing_left
vmw_vmshadow show "$bid" || lab_fail "show failed"
grep -q "^Boot check: FAILED" "$VMW_OUT" && grep -q "chunk $d" "$VMW_OUT" || lab_fail "show: $(grep -A2 "Boot check" "$VMW_OUT")"
lab_ok "a damaged chunk fails the check before anything boots, naming the chunk; show says so; nothing left"
