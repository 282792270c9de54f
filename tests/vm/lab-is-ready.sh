#!/bin/bash
# lab-is-ready: lab/setup.sh installs what is missing, starts virtlogd and
# libvirtd, builds (or finds cached) the guest kernel and initramfs; libvirt
# then answers on qemu:///system and offers TCG ('qemu') x86_64 domains.
# Runs first and alone in the suite, so a first-time guest build happens here.
. "$(dirname "$0")/lib.sh"
lab_init

[ -s "$VMSLAB_KERNEL" ] || lab_fail "guest kernel $VMSLAB_KERNEL missing after setup"
[ -s "$VMSLAB_INITRD" ] || lab_fail "guest initramfs $VMSLAB_INITRD missing after setup"
lab_ok "guest $VMSLAB_GUEST_KEY: kernel $VMSLAB_GUEST_KERNEL_RELEASE, initramfs $(du -h "$VMSLAB_INITRD" | cut -f1)"

virsh -q version >/dev/null || lab_fail "libvirtd does not answer on $LIBVIRT_DEFAULT_URI"
virsh -q capabilities | grep >/dev/null "<domain type='qemu'" ||
    lab_fail "libvirt offers no 'qemu' (TCG) domain type; is qemu-system-x86 installed?"
lab_ok "libvirtd answers and offers TCG domains"

# The second run must find everything cached: it builds and downloads
# nothing, so the guest's files and the cache's entries are the very same
# (inode and time) afterwards.  Checked by what changed, not by a time, which
# says nothing on a loaded machine; the time is printed for the reader.
cache=$(dirname "$(dirname "$VMSLAB_KERNEL")")
cached_state() {
    stat -c '%n %i %Y' "$VMSLAB_KERNEL" "$VMSLAB_INITRD" "$VMSLAB_GUEST_DIR" "$cache"/kernel-* 2>&1
}
before=$(cached_state)
t0=$(date +%s%N)
"$LAB_DIR/setup.sh" --quiet || lab_fail "second lab/setup.sh run failed"
ms=$((($(date +%s%N) - t0) / 1000000))
after=$(cached_state)
[ "$before" = "$after" ] ||
    lab_fail "a second lab/setup.sh run rebuilt or downloaded something; the cache does not work: $(diff <(echo "$before") <(echo "$after") | grep '^[<>]' | head -5 | tr '\n' ' ')"
lab_ok "second setup run changed nothing in $cache ($ms ms)"
