#!/bin/bash
# lab/setup.sh — make this host ready for vmshadow's VM test lab (issue 3).
#
# Idempotent; a second run takes well under a second.  It:
#   1. installs the Debian packages the lab needs (apt-get update only if an
#      install is needed),
#   2. starts virtlogd and libvirtd when they are not running (no systemd),
#   3. builds the guest — a Debian kernel plus a busybox initramfs running
#      qemu-guest-agent — into $VMSLAB_CACHE (default /var/cache/vmshadow-lab),
#      keyed by package versions and the guest files, and
#   4. writes $VMSLAB_CACHE/lab.env, which tests/vm/lib.sh sources.
#
# Exit status: 0 ready; 77 the lab cannot run on this machine (reason on
# stderr: not root, not Debian, installing forbidden); 1 the lab is broken
# here (one message on stderr saying what to do; details in setup.log).
#
# Environment: VMSLAB_CACHE (cache dir), VMSLAB_NO_INSTALL=1 (never run
# apt-get; skip instead), VMSLAB_NO_DAEMONS=1 (do not start libvirtd).

set -uo pipefail
umask 022
export LC_ALL=C

LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${VMSLAB_CACHE:-/var/cache/vmshadow-lab}
LOG=$CACHE/setup.log
QUIET=0
ONLY=all

usage() {
    cat <<EOF
usage: lab/setup.sh [--quiet] [--packages-only | --no-packages]
  Prepares packages, libvirtd and the cached test guest for 'meson test --suite vm'.
  --packages-only  install missing packages only (run before 'meson setup' in CI)
  --no-packages    do not check packages
EOF
}

while [ $# -gt 0 ]; do
    case $1 in
        -q|--quiet) QUIET=1 ;;
        --packages-only) ONLY=packages ;;
        --no-packages) ONLY=nopackages ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
    shift
done

say()  { [ "$QUIET" = 1 ] || echo "lab: $*" >&2; }
skip() { echo "SKIP: vmshadow lab cannot run here: $*" >&2; exit 77; }
die()  { echo "ERROR: vmshadow lab setup failed: $*" >&2; exit 1; }

# run DESCRIPTION CMD... — run a step with its output in setup.log; on
# failure show the step's last lines, so the reader sees one cause.
run() {
    local what=$1 out rc=0
    shift
    out=$(mktemp)
    "$@" >"$out" 2>&1 || rc=$?
    { echo "== $(date '+%F %T') $what: $*"; cat "$out"; } >>"$LOG"
    if [ $rc -ne 0 ]; then
        echo "---- $what: $* (exit $rc) ----" >&2
        tail -n 15 "$out" >&2
        echo "----" >&2
    fi
    rm -f "$out"
    return $rc
}

[ "$(id -u)" = 0 ] || skip "needs root (it starts libvirtd and VMs); run the vm suite as root"
mkdir -p "$CACHE" || die "cannot create $CACHE"
: >>"$LOG" || die "cannot write $LOG"

# Half-built directories never survive a failed run.
TMPDIRS=()
trap 'rm -rf "${TMPDIRS[@]}"' EXIT

# One setup at a time: tests run it in parallel.
exec 9>"$CACHE/.lock"
flock 9

# ---------------------------------------------------------------- packages
# Host packages.  The guest's qemu-ga, busybox and mke2fs are copied from the
# host's installed packages, so they are listed here too.
PACKAGES=(
    libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients
    qemu-system-x86 qemu-utils qemu-guest-agent
    busybox-static e2fsprogs jq iproute2 util-linux
    libnbd-dev libnbd-bin pkg-config
    gcc libc6-dev sqlite3
)

missing_packages() {
    local p st
    for p in "${PACKAGES[@]}"; do
        st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)
        [ "$st" = installed ] || echo "$p"
    done
}

apt_updated=0
apt_update() {
    [ $apt_updated = 1 ] && return 0
    say "apt-get update"
    run "apt-get update" apt-get -o DPkg::Lock::Timeout=600 update -q ||
        die "apt-get update failed; check the network and /etc/apt/sources.list (Debian 12 bookworm main), then rerun lab/setup.sh"
    apt_updated=1
}

ensure_packages() {
    command -v dpkg-query >/dev/null ||
        skip "not a Debian system (no dpkg); install libvirt, QEMU, qemu-guest-agent, busybox-static, e2fsprogs, jq and libnbd by hand"
    local missing
    missing=$(missing_packages | tr '\n' ' ')
    [ -z "$missing" ] && return 0
    [ "${VMSLAB_NO_INSTALL:-0}" = 1 ] &&
        skip "packages missing and VMSLAB_NO_INSTALL=1: $missing"
    command -v apt-get >/dev/null || skip "packages missing and no apt-get: $missing"
    apt_update
    say "installing: $missing"
    # shellcheck disable=SC2086
    run "apt-get install" env DEBIAN_FRONTEND=noninteractive \
        apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends $missing ||
        die "apt-get install of '$missing' failed (see above); fix apt, then rerun lab/setup.sh"
}

if [ "$ONLY" != nopackages ]; then
    ensure_packages
fi
[ "$ONLY" = packages ] && exit 0

for c in virsh virtlogd libvirtd qemu-system-x86_64 qemu-img busybox jq cc sqlite3; do
    command -v "$c" >/dev/null || skip "$c is not installed (package list: ${PACKAGES[*]})"
done

# ---------------------------------------------------------------- daemons
export LIBVIRT_DEFAULT_URI=qemu:///system

# The process of a pid file is alive and is that program: a pid file left by
# a killed daemon may name a pid that another process has since been given.
pid_alive() {   # PIDFILE PROGRAM
    local pid
    [ -s "$1" ] && pid=$(cat "$1") && [[ $pid =~ ^[0-9]+$ ]] &&
        [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]
}

libvirt_answers() { timeout 10 virsh -q version >/dev/null 2>&1; }

# The stock configuration (issue 20): QEMU runs as libvirt's compiled-in
# user and group (Debian: libvirt-qemu:libvirt-qemu) with dynamic ownership, and the
# security driver is whatever the host offers (none on a kernel without
# SELinux/AppArmor).  Older lab versions set user/group root and
# security_driver "none" in a marked block; undo exactly that block (and
# the lines it commented out).
configure_qemu_conf() {
    local conf=/etc/libvirt/qemu.conf tmp
    [ -f "$conf" ] || die "$conf is missing; reinstall libvirt-daemon-driver-qemu"
    grep -qE '^# BEGIN vmshadow-lab|^# \(vmshadow-lab\) ' "$conf" || return 0
    tmp=$(mktemp "$conf.vmshadow-lab.XXXXXX") || die "cannot write next to $conf"
    sed -e '/^# BEGIN vmshadow-lab/,/^# END vmshadow-lab/d' \
        -e 's/^# (vmshadow-lab) //' "$conf" >"$tmp" &&
        chmod --reference="$conf" "$tmp" && mv -f "$tmp" "$conf" ||
        { rm -f "$tmp"; die "cannot rewrite $conf"; }
    rm -f "$conf.vmshadow-lab.orig"
    say "$conf: back to libvirt's defaults (QEMU as libvirt-qemu)"
}

# The lab's QEMU must not run as root: a qemu.conf that still says so (set
# by hand) is reported, not rewritten.
check_qemu_conf() {
    local line
    line=$(grep -E '^\s*(user|group)\s*=\s*"(root|\+0)"' /etc/libvirt/qemu.conf | head -n 1)
    [ -z "$line" ] ||
        die "/etc/libvirt/qemu.conf says '$line': the lab runs QEMU as libvirt ships it (libvirt-qemu); remove that line and restart libvirtd"
}

# What the running daemon uses: its DAC label for QEMU processes
# (virsh capabilities, <secmodel> dac, baselabel of type kvm), "+0:+0"
# while it runs QEMU as root.
qemu_runs_as_root() {
    timeout 10 virsh -q capabilities 2>/dev/null |
        grep -q "<baselabel type='kvm'>+0:+0</baselabel>"
}

# Stop the libvirtd of /run/libvirtd.pid (the one lab/setup.sh starts) so
# that it is started again with the new qemu.conf.  Running lab VMs keep
# running (libvirtd reconnects to them).
stop_our_libvirtd() {
    local pid i
    pid_alive /run/libvirtd.pid libvirtd ||
        die "the running libvirtd runs QEMU as root (from an older qemu.conf) and was not started by lab/setup.sh (no live /run/libvirtd.pid); restart it yourself (systemctl restart libvirtd), then rerun lab/setup.sh"
    pid=$(cat /run/libvirtd.pid)
    say "restarting libvirtd (pid $pid) for the new qemu.conf"
    kill "$pid" 2>/dev/null
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    die "libvirtd (pid $pid) did not stop within 10 s after SIGTERM; stop it, then rerun lab/setup.sh"
}

# /dev/kvm as a stock Debian host has it (udev: root:kvm 0660, and
# libvirt-qemu is in group kvm).  Machines whose /dev/kvm is root-only
# (no udev) make libvirtd throw its QEMU capabilities away on every
# connection: it probes QEMU as root, where KVM works, then finds KVM unusable
# for libvirt-qemu and probes again - 5-20 s per virsh call.  The lab's
# domains stay TCG (type 'qemu') either way.
fix_dev_kvm() {
    [ -c /dev/kvm ] || return 0
    [ "$(stat -c '%G %a' /dev/kvm)" = "kvm 660" ] && return 0
    getent group kvm >/dev/null || run "groupadd" groupadd --system kvm ||
        die "cannot create group kvm"
    chgrp kvm /dev/kvm && chmod 0660 /dev/kvm ||
        die "cannot give /dev/kvm to group kvm (as udev does on Debian)"
    say "/dev/kvm: root:kvm 0660, as udev makes it on Debian"
}

start_daemons() {
    fix_dev_kvm
    [ "${VMSLAB_NO_DAEMONS:-0}" = 1 ] && {
        libvirt_answers && return 0
        die "libvirtd does not answer and VMSLAB_NO_DAEMONS=1; start libvirtd yourself"
    }
    configure_qemu_conf
    check_qemu_conf
    if libvirt_answers; then
        qemu_runs_as_root || return 0
        stop_our_libvirtd
    fi
    # libvirtd does not answer: start what is missing ourselves (the user
    # comes with libvirt-daemon-system; made here if it is missing).
    id libvirt-qemu >/dev/null 2>&1 ||
        run "useradd" useradd --system --no-create-home --user-group \
            --shell /usr/sbin/nologin libvirt-qemu ||
        die "cannot create user libvirt-qemu"
    mkdir -p /var/log/libvirt/qemu /var/lib/libvirt/qemu /var/cache/libvirt /run/libvirt
    if ! pid_alive /run/virtlogd.pid virtlogd; then
        say "starting virtlogd"
        run "virtlogd -d" "$LAB_DIR/detached" virtlogd -d ||
            die "virtlogd did not start (output above); run 'virtlogd -v' to see why, fix it, then rerun lab/setup.sh"
    fi
    if pid_alive /run/libvirtd.pid libvirtd; then
        die "libvirtd (pid $(cat /run/libvirtd.pid)) runs but does not answer on qemu:///system; stop it (kill $(cat /run/libvirtd.pid)) and rerun lab/setup.sh"
    fi
    say "starting libvirtd"
    LIBVIRT_LOG_OUTPUTS="3:file:/var/log/libvirt/libvirtd.log" \
        run "libvirtd -d" "$LAB_DIR/detached" libvirtd -d ||
        die "libvirtd did not start (output above); run 'libvirtd -v' to see why, fix it, then rerun lab/setup.sh"
    local i
    for i in $(seq 50); do
        libvirt_answers && return 0
        sleep 0.2
    done
    echo "---- last lines of /var/log/libvirt/libvirtd.log ----" >&2
    tail -n 10 /var/log/libvirt/libvirtd.log >&2 2>/dev/null
    die "libvirtd started but qemu:///system does not answer after 10 s; see /var/log/libvirt/libvirtd.log"
}
start_daemons

# ---------------------------------------------------------------- guest
# Fast path: nothing that decides the guest changed since the last build
# (apt's package lists, the installed packages, the lab's own files).
lab_files_digest() {
    # guest/: vmshadow's guest side (issue 17), compiled into the guest.
    { cat "$LAB_DIR/setup.sh"; find "$LAB_DIR/guest" "$LAB_DIR/../guest" -type f | sort | xargs cat; } |
        sha256sum | cut -c1-16
}
STAMP=$({ stat -c '%n %Y' /var/lib/apt/lists /var/lib/dpkg/status; lab_files_digest; } | sha256sum | cut -c1-16)
if [ -s "$CACHE/lab.env" ] && grep -qx "VMSLAB_STAMP=$STAMP" "$CACHE/lab.env"; then
    # shellcheck disable=SC1091
    . "$CACHE/lab.env"
    if [ -s "$VMSLAB_INITRD" ] && [ -s "$VMSLAB_KERNEL" ]; then
        say "ready (guest $VMSLAB_GUEST_KEY cached)"
        exit 0
    fi
fi

installed_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null; }
candidate_version() { apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { print $2 }'; }

# The kernel: whatever linux-image-amd64 depends on now.
kernel_package() {
    apt-cache depends linux-image-amd64 2>/dev/null |
        awk '/Depends: linux-image-[0-9].*-amd64/ { print $2; exit }'
}
KPKG=$(kernel_package)
if [ -z "$KPKG" ] || [ -z "$(candidate_version "$KPKG")" ] || [ "$(candidate_version "$KPKG")" = "(none)" ]; then
    if [ ! -s "$CACHE/lab.env" ] || [ "${VMSLAB_NO_INSTALL:-0}" != 1 ]; then
        apt_update
        KPKG=$(kernel_package)
    fi
fi
[ -n "$KPKG" ] || die "apt knows no Debian kernel package (linux-image-amd64); add 'deb http://deb.debian.org/debian bookworm main' to /etc/apt/sources.list, run apt-get update, then rerun lab/setup.sh"
KVERSION=$(candidate_version "$KPKG")
KREL=${KPKG#linux-image-}

QGA_BIN=$(dpkg -L qemu-guest-agent 2>/dev/null | grep -E '/s?bin/qemu-ga$' | head -n 1)
[ -x "$QGA_BIN" ] || die "qemu-ga binary not found in package qemu-guest-agent; reinstall it"
BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] || die "$BUSYBOX missing; reinstall busybox-static"
MKE2FS=$(command -v mke2fs) && E2FSCK=$(command -v e2fsck) ||
    die "mke2fs/e2fsck missing; reinstall e2fsprogs"

# The cache key: every input of the guest image.
guest_key() {
    {
        echo "kernel $KPKG $KVERSION"
        echo "qemu-guest-agent $(installed_version qemu-guest-agent)"
        echo "busybox-static $(installed_version busybox-static)"
        echo "e2fsprogs $(installed_version e2fsprogs)"
        echo "libc6 $(installed_version libc6)"
        echo "libglib2.0-0 $(installed_version libglib2.0-0)"
        echo "gcc $(installed_version gcc) libc6-dev $(installed_version libc6-dev)"
        echo "sqlite3 $(installed_version sqlite3)"
        lab_files_digest
    } | sha256sum | cut -c1-16
}
KEY=$(guest_key)
GUEST=$CACHE/guest-$KEY

# The guest's kernel command line (issue 16: boot time under TCG, measured
# with bench/lab-boot.sh and initcall_debug).
#   mitigations=off       the lab's throw-away guest needs no protection from
#                         itself; without it the kernel runs retpolines and
#                         fills the return stack buffer on every context
#                         switch (the qemu64 CPU), emulated work each time
#   no_timer_check        skips the IO-APIC timer check (ticks awaited at
#                         TCG speed)
#   tsc=reliable          no clocksource watchdog checking the TSC against
#                         the HPET; under TCG the TSC stops with a paused VM
#                         as the HPET does (crash-consistent-backup-never-
#                         stops-an-agentless-vm compares the guest's clock)
#   cryptomgr.notests     no self-tests of every crypto algorithm the kernel
#                         and its modules register: 2-3 s of the boot at TCG
#                         speed; the algorithms are the same
# Keep the console (ttyS0) and panic=0: tests read the console.
GUEST_CMDLINE="console=ttyS0 loglevel=4 panic=0 mitigations=off no_timer_check tsc=reliable cryptomgr.notests"

# The guest's kernel file: the ELF vmlinux when it could be unpacked (booted
# through its PVH entry), else the Debian bzImage.
guest_kernel() {
    if [ -s "$GUEST/vmlinux" ]; then echo "$GUEST/vmlinux"; else echo "$GUEST/vmlinuz"; fi
}

write_env() {
    local tmp=$CACHE/lab.env.tmp
    cat >"$tmp" <<EOF
# written by lab/setup.sh; sourced by tests/vm/lib.sh
VMSLAB_GUEST_DIR=$GUEST
VMSLAB_KERNEL=$(guest_kernel)
VMSLAB_INITRD=$GUEST/initrd.cpio
VMSLAB_CMDLINE="$GUEST_CMDLINE"
VMSLAB_GUEST_KERNEL_RELEASE=$KREL
VMSLAB_GUEST_KEY=$KEY
VMSLAB_STAMP=$STAMP
EOF
    mv -f "$tmp" "$CACHE/lab.env"
}

if [ -s "$GUEST/initrd.cpio" ] && [ -s "$(guest_kernel)" ]; then
    write_env
    say "ready (guest $KEY cached)"
    exit 0
fi

# --- kernel: download once per version, keep only vmlinuz and the modules we load.
KDIR=$CACHE/kernel-$KPKG-$KVERSION
# Modules the guest needs (dependencies are added from the .ko files).
# crc32c_generic is asked for by ext4 through the crypto API, not a symbol;
# vfat and its code pages (the EFI system partition's filesystem) let tests
# measure what guest-fsfreeze does with it (issue 20).
GUEST_MODULES="virtio_pci virtio_blk virtio_console virtio_net virtio_rng crc32c_generic ext4 loop vfat nls_cp437 nls_ascii nls_utf8"

extract_kernel() {
    local tmp=$CACHE/tmp-kernel.$$ deb
    TMPDIRS+=("$tmp")
    rm -rf "$tmp" && mkdir -p "$tmp/x"
    say "downloading kernel $KPKG $KVERSION"
    (cd "$tmp" && run "apt-get download" apt-get download "$KPKG=$KVERSION") || {
        apt_update
        (cd "$tmp" && run "apt-get download" apt-get download "$KPKG=$KVERSION")
    } || die "could not download $KPKG $KVERSION (see above); check apt sources and the network, then rerun lab/setup.sh"
    deb=$(ls "$tmp"/*.deb)
    run "dpkg-deb -x" dpkg-deb -x "$deb" "$tmp/x" || die "could not unpack $deb"
    local mroot="$tmp/x/lib/modules/$KREL"
    [ -d "$mroot" ] || die "$deb has no lib/modules/$KREL"
    mkdir -p "$tmp/out/modules"
    cp "$tmp/x/boot/vmlinuz-$KREL" "$tmp/out/vmlinuz" || die "$deb has no boot/vmlinuz-$KREL"
    # Resolve dependencies from each module's modinfo 'depends=' field and
    # write the load order (dependencies first).
    declare -A seen=()
    local order=()
    add_module() {
        local name=$1 file deps d
        name=${name//-/_}
        [ -n "${seen[$name]:-}" ] && return 0
        seen[$name]=1
        if grep -qE "/${name}\.ko" "$mroot/modules.builtin" 2>/dev/null; then return 0; fi
        file=$(find "$mroot/kernel" -name "$name.ko" -o -name "$(echo "$name" | tr _ -).ko" | head -n 1)
        [ -n "$file" ] || die "module $name not found in $deb"
        deps=$(tr '\0' '\n' <"$file" | sed -n 's/^depends=//p' | head -n 1)
        for d in ${deps//,/ }; do add_module "$d"; done
        cp "$file" "$tmp/out/modules/$name.ko"
        order+=("$name")
    }
    local m
    for m in $GUEST_MODULES; do add_module "$m"; done
    printf '%s\n' "${order[@]}" >"$tmp/out/modules/load-order"
    # what was asked for, and which of it the kernel has built in
    echo "$GUEST_MODULES" >"$tmp/out/modules/wanted"
    for m in "${!seen[@]}"; do
        printf '%s\n' "${order[@]}" | grep -qx "$m" || echo "$m"
    done >"$tmp/out/modules/builtin"
    rm -rf "$KDIR"
    mv "$tmp/out" "$KDIR"
    rm -rf "$tmp"
}
# The kernel dir is cached per kernel version, but what it holds depends on
# GUEST_MODULES too: a module added to the list (vfat, issue 20) must reach
# the guest, so the dir is extracted again unless it has every module asked
# for (in its load order or built into the kernel).
kdir_has_modules() {
    [ -s "$KDIR/vmlinuz" ] && [ -s "$KDIR/modules/load-order" ] || return 1
    local m
    for m in $GUEST_MODULES; do
        m=${m//-/_}
        grep -qx "$m" "$KDIR/modules/load-order" ||
            grep -qx "$m" "$KDIR/modules/builtin" 2>/dev/null || return 1
    done
}
kdir_has_modules || extract_kernel
kdir_has_modules || die "the kernel dir $KDIR lacks modules of GUEST_MODULES after extraction"

# --- kernel image: the bzImage decompresses itself (xz for Debian's amd64
# kernels) on the emulated CPU before the kernel's clock starts, seconds
# under TCG. QEMU boots an ELF vmlinux through its PVH entry note
# (CONFIG_PVH, set in Debian's kernels) with no decompression at all, so
# the lab unpacks it once, here, at host speed (issue 16). A kernel whose
# payload is not xz or whose vmlinux has no PVH entry keeps the bzImage.
unpack_vmlinux() {
    local bz=$1 out=$2 off
    off=$(grep -abo -m 1 $'\xfd7zXZ' "$bz" | head -n 1 | cut -d: -f1)
    if [ -z "$off" ] || ! command -v xz >/dev/null || ! command -v readelf >/dev/null; then
        say "kernel: no xz payload found (or xz/readelf missing): booting the bzImage"
        return 0
    fi
    # the payload is followed by the bzImage's trailer: one xz stream only
    tail -c "+$((off + 1))" "$bz" | xz -dc --single-stream >"$out.tmp" 2>>"$LOG"
    if [ "$(head -c 4 "$out.tmp" 2>/dev/null | od -An -c | tr -d ' ')" = 177ELF ] &&
        LC_ALL=C readelf -n "$out.tmp" 2>/dev/null | grep -q 'Xen.*(0x00000012)\|PHYS32_ENTRY'; then
        mv "$out.tmp" "$out" && rm -f "$bz"
    else
        rm -f "$out.tmp"
        say "kernel: the unpacked vmlinux has no PVH entry: booting the bzImage"
    fi
}

# --- initramfs
build_initramfs() {
    local tmp=$CACHE/tmp-guest.$$ root
    TMPDIRS+=("$tmp")
    rm -rf "$tmp" && mkdir -p "$tmp/root"
    root=$tmp/root
    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,run,tmp,data,root,var/log}
    mkdir -p "$root/lib/modules/$KREL" "$root/etc/qemu/fsfreeze-hook.d" "$root/usr/lib/vmslab"
    chmod 1777 "$root/tmp"

    # The staging tree must never hold a symlink while files are copied into
    # it: an absolute link (/bin/busybox) would send the copy to the host.
    # So copy first, and make busybox's applet links last.
    cp "$BUSYBOX" "$root/bin/busybox"
    local a

    # Binaries from Debian packages with the libraries ldd lists.
    copy_with_libs() {
        local bin=$1 dest=$2 lib
        cp --remove-destination "$bin" "$root$dest"
        for lib in $(ldd "$bin" | awk '/=> \// { print $3 } /^[ \t]*\// { print $1 }'); do
            [ -e "$root$lib" ] && continue
            mkdir -p "$root$(dirname "$lib")"
            cp --remove-destination -L "$lib" "$root$lib"
        done
    }
    copy_with_libs "$QGA_BIN" /usr/bin/qemu-ga
    copy_with_libs "$MKE2FS" /sbin/mke2fs
    copy_with_libs "$E2FSCK" /sbin/e2fsck
    # The SQLite guest writer kit's test (issue 17).
    copy_with_libs "$(command -v sqlite3)" /usr/bin/sqlite3
    ln -sf mke2fs "$root/sbin/mkfs.ext4"
    ln -sf e2fsck "$root/sbin/fsck.ext4"
    [ -f /etc/mke2fs.conf ] && cp /etc/mke2fs.conf "$root/etc/"
    # ld.so looks in /lib64 and the multiarch dirs; usrmerge layout not needed.
    [ -e "$root/lib64/ld-linux-x86-64.so.2" ] || die "ld-linux-x86-64.so.2 not copied into the guest"

    cp "$KDIR"/modules/*.ko "$KDIR/modules/load-order" "$root/lib/modules/$KREL/"

    # vmshadow's guest side (guest/, issue 17): static, libc only. Installed,
    # not enabled: tests link it into /etc/qemu/fsfreeze-hook.d when they
    # want guest writers.
    cc -static -O2 -std=gnu11 -D_GNU_SOURCE -o "$root/usr/sbin/vmshadow-guest" \
        "$LAB_DIR/../guest/vmshadow-guest.c" || die "could not compile guest/vmshadow-guest.c"
    mkdir -p "$root/etc/vmshadow/guest-writers.d" "$root/usr/lib/vmshadow/kits"
    cp "$LAB_DIR"/../guest/kits/* "$root/usr/lib/vmshadow/kits/"
    chmod 755 "$root"/usr/lib/vmshadow/kits/*

    # Guest side of the lab: init scripts, fsfreeze hook, workloads.
    cp -R "$LAB_DIR/guest/root/." "$root/"
    cp "$LAB_DIR"/guest/bin/* "$root/usr/lib/vmslab/"
    chmod 755 "$root"/usr/lib/vmslab/* "$root"/etc/vmslab/rc.* "$root"/etc/vmslab/run-* \
        "$root/etc/qemu/fsfreeze-hook" "$root/sbin/shutdown"
    for a in "$root"/usr/lib/vmslab/*; do
        ln -sf "/usr/lib/vmslab/$(basename "$a")" "$root/usr/bin/$(basename "$a")"
    done
    echo "$KREL" >"$root/etc/vmslab/kernel-release"
    echo "$KEY" >"$root/etc/vmslab/guest-key"

    for a in $("$BUSYBOX" --list-full); do
        [ -e "$root/$a" ] || [ -L "$root/$a" ] || ln -s /bin/busybox "$root/$a"
    done
    # busybox init as PID 1, configured by /etc/inittab.
    ln -s /bin/busybox "$root/init"

    # Not compressed (issue 16): QEMU hands the file to the guest at host
    # speed, while the guest kernel would inflate it at TCG speed.
    (cd "$root" && find . | "$BUSYBOX" cpio -o -H newc -R 0:0 2>/dev/null) \
        >"$tmp/initrd.cpio" || die "could not pack the initramfs"
    cp "$KDIR/vmlinuz" "$tmp/vmlinuz"
    unpack_vmlinux "$tmp/vmlinuz" "$tmp/vmlinux"
    rm -rf "$root"
    rm -rf "$GUEST"
    mv "$tmp" "$GUEST"
}
say "building guest $KEY (kernel $KREL)"
build_initramfs

# Drop other guest builds; keep the kernel dirs of the current version only.
for d in "$CACHE"/guest-*; do
    [ "$d" = "$GUEST" ] || rm -rf "$d"
done
for d in "$CACHE"/kernel-*; do
    [ "$d" = "$KDIR" ] || rm -rf "$d"
done
write_env
say "ready (guest $KEY built: $(basename "$(guest_kernel)") $(du -h "$(guest_kernel)" | cut -f1), initramfs $(du -h "$GUEST/initrd.cpio" | cut -f1))"
exit 0
