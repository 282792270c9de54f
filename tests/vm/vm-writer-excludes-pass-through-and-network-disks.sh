#!/bin/bash
# vm-writer-excludes-pass-through-and-network-disks (issue 5; R13, R9): a
# running VM with an ext4 data disk (qcow2), a pass-through disk (a host
# loop device, <disk type='block'>) and a network disk (NBD served by
# qemu-nbd) is backed up: the pass-through and the network disk are not
# backed up, and the backup components document (`show --json`) and the
# `show` report name each one with a reason saying to back it up from
# inside the guest; the data disk is backed up (online: no guest volume
# lies on an excluded disk) and extracts as a clean ext4 with the guest's
# file; nothing of the excluded disks' backing files is stored.
. "$(dirname "$0")/lib.sh"
lab_init
. "$LAB_TESTS_DIR/vm-writer-lib.sh"
vmw_init

lab_vm_create --data-disk 32M --disk block:16M --disk nbd:16M --name excl
dom=$LAB_DOM
uuid=$(virsh domuuid "$dom")
data=${LAB_DISK_FILE[$dom/vda]} loopdev=${LAB_DISK_DEV[$dom/vdb]}
lab_wait_agent "$dom"
fsum=$(lab_guest_run "$dom" 'vmslab-pattern write /data/file.bin seedX 0 262144')
# Something on the excluded disks too, so that storing them would show.
lab_guest_run "$dom" 'vmslab-pattern write /dev/vdb seedL 0 1048576 && vmslab-pattern write /dev/vdc seedN 0 1048576' >/dev/null
lab_ok "VM $dom: vda data (qcow2), vdb loop device $loopdev, vdc NBD network disk"

rc=0
vmw_backup "$dom" || rc=$?
# Stored, but disks were left out: exit 3, "success with warnings" (issue 20).
[ $rc -eq 3 ] || lab_fail "vmshadow backup $dom exited $rc, not 3 (stored with disks left out): $(vmw_backup_failure)"
lab_assert_eq "outcome in the report" "$(jq -r .outcome "$VMW_SUMMARY")" warnings
bid=$VMW_BID
lab_ok "vmshadow backup $dom: backup $bid, exit 3 (warnings: disks left out)"
# R13: the backup's own report names both, with the reason.
lab_assert_eq "excluded disks in the backup report" \
    "$(jq '[.components[] | select(.component == "'"$uuid"'") | .excluded[]
            | select(.reason | test("inside the guest"))] | length' "$VMW_SUMMARY")" 2
jq -e --arg p "$loopdev" '[.components[].excluded[].path] | index($p)' "$VMW_SUMMARY" >/dev/null ||
    lab_fail "the backup report does not name $loopdev"
rc=0
vmw_vmshadow backup "$dom" || rc=$?
[ $rc -eq 3 ] || lab_fail "second backup (text report) exited $rc, not 3: $(tail -n 5 "$VMW_ERR" | tr '\n' ' ')"
grep -F "not backed up: $loopdev:" "$VMW_OUT" | grep -i 'inside the guest' >/dev/null ||
    lab_fail "the text report does not name $loopdev: $(tr '\n' ';' <"$VMW_OUT")"
lab_ok "the backup report (JSON and text) names both excluded disks"

vmw_show "$bid"
comp=$(vmw_component "$uuid")
[ -n "$comp" ] || lab_fail "backup $bid has no component $uuid"
lab_assert_eq "method" "$(vmw_attr "$uuid" method)" online

excl=$(jq -r '.excluded[] | "\(.path)\t\(.reason)"' <<<"$comp")
lab_assert_eq "number of excluded disks" "$(grep -c . <<<"$excl" || true)" 2
loop_reason=$(awk -F'\t' -v p="$loopdev" '$1 == p { print $2 }' <<<"$excl")
[ -n "$loop_reason" ] || lab_fail "pass-through disk $loopdev is not named as excluded: $(tr '\n\t' '; ' <<<"$excl")"
nbd_line=$(grep -E '^nbd' <<<"$excl" || true)
[ -n "$nbd_line" ] || lab_fail "network disk is not named as excluded: $(tr '\n\t' '; ' <<<"$excl")"
grep -qF "nbd-" <<<"${nbd_line%%$'\t'*}" || lab_fail "network disk path does not name its socket: $nbd_line"
for r in "$loop_reason" "${nbd_line#*$'\t'}"; do
    grep -qi 'inside the guest' <<<"$r" || lab_fail "exclusion reason does not say to back up from inside the guest: $r"
done
lab_ok "excluded: $loopdev ($loop_reason)"
lab_ok "excluded: ${nbd_line%%$'\t'*} (${nbd_line#*$'\t'})"

# The human report names them too.
vmw_vmshadow show "$bid" || lab_fail "vmshadow show $bid failed"
grep -F "excluded $loopdev:" "$VMW_OUT" | grep -i 'inside the guest' >/dev/null ||
    lab_fail "vmshadow show does not name $loopdev as excluded: $(tr '\n' ';' <"$VMW_OUT")"
grep -E "excluded nbd[^ ]*:" "$VMW_OUT" | grep -i 'inside the guest' >/dev/null ||
    lab_fail "vmshadow show does not name the network disk as excluded: $(tr '\n' ';' <"$VMW_OUT")"
lab_ok "vmshadow show names both excluded disks with the reason"

disks=$(jq -r '.files[] | select(.kind == "disk") | .path' <<<"$comp")
lab_assert_eq "disk files of the component" "$disks" "$data"
stored=$(jq -r --arg u "$uuid" '.files[] | select(.component == $u) | .path' "$VMW_SHOW")
grep -qF -e "$loopdev" -e "${LAB_DISK_FILE[$dom/vdb]}" -e "${LAB_DISK_FILE[$dom/vdc]}" <<<"$stored" &&
    lab_fail "an excluded disk was stored: $(tr '\n' ';' <<<"$stored")"
lab_ok "only the data disk (and the configuration) is stored"

vmw_extract "$bid" "$uuid" "$data" "$LAB_WORK/data.img" raw
vmw_fsck_clean "$LAB_WORK/data.img" "data disk"
got=$(debugfs -R 'cat /file.bin' "$LAB_WORK/data.img" 2>/dev/null | sha256sum | cut -d' ' -f1)
lab_assert_eq "sha256 of /data/file.bin in the backup" "$got" "$fsum"
lab_ok "data disk backed up: clean ext4 whose file.bin has the guest's checksum"
lab_assert_eq "state after" "$(virsh domstate "$dom")" running
