#!/bin/bash
# lab-runs-qemu-as-an-unprivileged-user: the lab's libvirt is configured as
# Debian ships it (issue 20): QEMU runs as libvirt-qemu (group libvirt-qemu,
# libvirt's compiled-in default), not root, with
# dynamic ownership (libvirt hands the VM's images to that user while it
# runs).  Every other vm test therefore proves vmshadow works on a stock
# host.
. "$(dirname "$0")/lib.sh"
lab_init

uid=$(id -u libvirt-qemu) || lab_fail "no user libvirt-qemu (libvirt-daemon-system makes it)"
# libvirt's compiled-in defaults on Debian: user libvirt-qemu, its group
lab_assert_eq "libvirt's DAC label for QEMU (virsh capabilities)" "$LAB_QEMU_UID" "$uid"
[ "$LAB_QEMU_GID" != 0 ] || lab_fail "libvirt labels QEMU with group root"
gname=$(getent group "$LAB_QEMU_GID" | cut -d: -f1)
[ -n "$gname" ] || lab_fail "QEMU's group $LAB_QEMU_GID has no name"

lab_vm_create --disk qcow2:16M --no-agent
pidfile=/run/libvirt/qemu/$LAB_DOM.pid
[ -s "$pidfile" ] || lab_fail "$pidfile missing: is the domain running?"
pid=$(cat "$pidfile")
user=$(ps -o user= -p "$pid" | tr -d ' ')
lab_assert_eq "user of the VM's QEMU process (pid $pid)" "$user" libvirt-qemu
group=$(ps -o group= -p "$pid" | tr -d ' ')
lab_assert_eq "group of the VM's QEMU process" "$group" "$gname"
others=$(ps -o user= -C qemu-system-x86_64 | tr -d ' ' | sort -u | tr '\n' ' ')
case " $others" in
    *" root "*) lab_fail "a QEMU process runs as root: $others" ;;
esac
lab_ok "QEMU runs as $user:$group (all QEMU processes: $others)"

label=$(virsh dumpxml "$LAB_DOM" | tr -d '\n' |
    sed -n "s|.*<seclabel type='dynamic' model='dac' relabel='yes'>\s*<label>\([^<]*\)</label>.*|\1|p")
lab_assert_eq "the domain's dynamic DAC label" "$label" "+$uid:+$LAB_QEMU_GID"
img=${LAB_DISK_FILE[$LAB_DOM/vda]}
lab_assert_eq "owner of the running VM's image (dynamic ownership)" "$(stat -c %u:%g "$img")" "$uid:$LAB_QEMU_GID"
lab_ok "dynamic ownership: $img is $(stat -c %U:%G "$img") while the VM runs"
