#!/bin/bash
# vm-writer-backs-up-a-stopped-vm-from-its-images (issue 5; R7, R8): a
# defined, shut-off VM with a qcow2 data disk (ext4) and a raw disk holding
# the lab pattern is backed up from its images: the component's caption is
# Offline\<name> and its method "offline"; its configuration (the inactive
# domain XML, exactly as libvirt gives it) and both disks are stored; each
# disk extracted from the backup equals its image (qemu-img compare); the
# VM is never started (still shut off, no checkpoint), and the images are
# left untouched.
. "$(dirname "$0")/lib.sh"
lab_init
. "$LAB_TESTS_DIR/vm-writer-lib.sh"
vmw_init

lab_vm_create --no-start --data-disk 32M --disk raw:16M
dom=$LAB_DOM
uuid=$(virsh domuuid "$dom")
qcow=${LAB_DISK_FILE[$dom/vda]} raw=${LAB_DISK_FILE[$dom/vdb]}
MiB=$((1024 * 1024))
sh "$LAB_DIR/guest/bin/vmslab-pattern" write "$raw" seedS $MiB $((2 * MiB)) >/dev/null
sh "$LAB_DIR/guest/bin/vmslab-pattern" write "$raw" seedS $((12 * MiB)) 65536 >/dev/null
sum0=$(sha256sum "$qcow" "$raw" | cut -d' ' -f1 | tr '\n' ' ')
lab_assert_eq "state before" "$(virsh domstate "$dom")" "shut off"
lab_ok "shut-off VM $dom: vda qcow2 with ext4, vdb raw with pattern seedS"

vmw_backup "$dom" || lab_fail "vmshadow backup $dom failed: $(vmw_backup_failure)"
bid=$VMW_BID
lab_ok "vmshadow backup $dom: backup $bid"

lab_assert_eq "state after" "$(virsh domstate "$dom")" "shut off"
lab_assert_eq "vmshadow checkpoints of $dom" "$(vmw_checkpoints "$dom")" ""
lab_assert_eq "images after the backup (sha256)" "$(sha256sum "$qcow" "$raw" | cut -d' ' -f1 | tr '\n' ' ')" "$sum0"
lab_ok "VM still shut off, no checkpoint made, images untouched"

vmw_show "$bid"
lab_assert_eq "method" "$(vmw_attr "$uuid" method)" offline
lab_assert_eq "caption" "$(vmw_caption "$uuid")" "Offline\\$dom"
lab_assert_eq "state_before" "$(vmw_attr "$uuid" state_before)" shut-off
lab_assert_eq "method in the summary" \
    "$(jq -r --arg u "$uuid" '.components[] | select(.component == $u) | .method' "$VMW_SUMMARY")" offline
[ -z "$(vmw_attr "$uuid" freeze_window_ms)" ] || lab_fail "an offline VM has a freeze window"
lab_ok "component $uuid: Offline\\$dom, method offline ($(vmw_attr "$uuid" method_reason))"

files=$(vmw_component "$uuid" | jq -r '.files[] | "\(.kind) \(.path)"' | sort)
grep -qxF "disk $qcow" <<<"$files" && grep -qxF "disk $raw" <<<"$files" ||
    lab_fail "the component lacks a disk image: $(tr '\n' ';' <<<"$files")"
xml=$(awk '$1 == "plain" && $2 ~ /\/domain\.xml$/ { print $2 }' <<<"$files")
[ -n "$xml" ] || lab_fail "the component has no domain.xml: $(tr '\n' ';' <<<"$files")"
[ -z "$(awk '$2 ~ /domain-live\.xml$/' <<<"$files")" ] || lab_fail "a shut-off VM has a live XML file"
lab_ok "component files: both disk images and the domain XML"

vmw_extract "$bid" "$uuid" "$xml" "$LAB_WORK/domain.xml"
# (virsh prints one blank line after the document)
virsh dumpxml --inactive --security-info "$dom" | sed '${/^$/d}' >"$LAB_WORK/domain.want.xml"
cmp -s "$LAB_WORK/domain.xml" "$LAB_WORK/domain.want.xml" ||
    lab_fail "stored domain XML differs from virsh dumpxml --inactive: $(diff "$LAB_WORK/domain.want.xml" "$LAB_WORK/domain.xml" | head -n 6 | tr '\n' ' ')"
lab_ok "stored configuration is the VM's inactive domain XML"

for img in "$qcow" "$raw"; do
    fmt=${img##*.}
    vmw_extract "$bid" "$uuid" "$img" "$LAB_WORK/out.$fmt"
    lab_assert_eq "format of the extracted $(basename "$img")" \
        "$(qemu-img info --output=json "$LAB_WORK/out.$fmt" | jq -r .format)" "$fmt"
    out=$(qemu-img compare -f "$fmt" -F "$fmt" "$img" "$LAB_WORK/out.$fmt" 2>&1) ||
        lab_fail "extracted $(basename "$img") differs from the image: $out"
    rm -f "$LAB_WORK/out.$fmt"
done
lab_ok "each extracted disk equals its image (qemu-img compare: $out)"

vmw_extract "$bid" "$uuid" "$raw" "$LAB_WORK/vdb.raw" raw
sh "$LAB_DIR/guest/bin/vmslab-pattern" check "$LAB_WORK/vdb.raw" seedS $((12 * MiB)) 65536 >/dev/null ||
    lab_fail "extracted raw disk lacks the pattern at 12 MiB"
lab_ok "extracted raw disk holds the pattern"
