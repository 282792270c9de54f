#!/usr/bin/env bash
# guestfs-appliance.sh — build the libguestfs appliance that `vmshadow
# files` and `vmshadow mount` boot (issue 16, R26; docs/file-restore.md),
# once, as a fixed appliance in $VMSHADOW_APPLIANCE (default
# /var/cache/vmshadow/appliance), where vmshadow looks for it.
#
# libguestfs normally makes its appliance itself on first use, from the
# host's kernel (/boot/vmlinuz-*, /lib/modules). A host without one — a
# container, a minimal VM, a machine whose kernel is not Debian's — cannot:
# this script then takes Debian's kernel package (apt-get download; the
# kernel never boots the host, only the appliance). With a usable host
# kernel it builds from that one, so the first `vmshadow files` does not
# pay for it.
#
# Idempotent: the appliance is keyed by the libguestfs, supermin and
# kernel versions; when they match it does nothing (a few seconds: apt is
# asked for the kernel's version).
# A rebuild goes to a new directory renamed into place, under a lock.
# Needs root (or write access to the directory) and, for the kernel
# download, apt sources with linux-image-amd64.
#
# Exit status: 0 ready; 1 failed (one line saying why; details before it);
# 77 cannot run here (not Debian/apt, libguestfs not installed).
set -euo pipefail
export LC_ALL=C
umask 022

DIR=${VMSHADOW_APPLIANCE:-/var/cache/vmshadow/appliance}
SUPERMIN_D=/usr/lib/x86_64-linux-gnu/guestfs/supermin.d
QUIET=0
[ "${1:-}" = "-q" ] && QUIET=1

say()  { [ "$QUIET" = 1 ] || echo "guestfs-appliance: $*" >&2; }
die()  { echo "ERROR: guestfs-appliance: $*" >&2; exit 1; }
skip() { echo "SKIP: guestfs-appliance: $*" >&2; exit 77; }

command -v supermin >/dev/null || skip "supermin is not installed (apt-get install libguestfs0)"
[ -d "$SUPERMIN_D" ] || skip "no $SUPERMIN_D (apt-get install libguestfs0)"
command -v dpkg-query >/dev/null || skip "not a Debian system (no dpkg-query)"

version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null; }
GUESTFS_VERSION=$(version libguestfs0)
[ -n "$GUESTFS_VERSION" ] || skip "libguestfs0 is not installed"
# "1:1.48.6-2" -> "1.48.6": what guestfs_version() says (vmshadow checks it)
GUESTFS_UPSTREAM=$(sed 's/^[0-9]*://; s/-[^-]*$//; s/[+~].*$//' <<<"$GUESTFS_VERSION")

mkdir -p "$(dirname "$DIR")"
exec 9>"$DIR.lock"
flock 9

# The kernel: the host's own when libguestfs could use it, else Debian's
# package (downloaded once per version, into the appliance's cache dir).
HOST_KREL=$(uname -r)
if [ -r "/boot/vmlinuz-$HOST_KREL" ] && [ -d "/lib/modules/$HOST_KREL/kernel" ]; then
    KERNEL_KIND=host KREL=$HOST_KREL
    KVERSION=$(stat -c %Y "/boot/vmlinuz-$HOST_KREL")
else
    KERNEL_KIND=debian
    KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null |
        awk '/Depends: linux-image-[0-9].*-amd64/ { print $2; exit }')
    if [ -z "$KPKG" ]; then
        apt-get -o DPkg::Lock::Timeout=600 update -qq >&2 || true
        KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null |
            awk '/Depends: linux-image-[0-9].*-amd64/ { print $2; exit }')
    fi
    [ -n "$KPKG" ] || die "apt knows no linux-image-amd64: add Debian's main archive to the apt sources, or install a kernel"
    KREL=${KPKG#linux-image-}
    KVERSION=$(apt-cache policy "$KPKG" | awk '/Candidate:/ { print $2 }')
fi
# (supermin.d: libguestfs-xfs and the like add a packages-* file there)
KEY="libguestfs $GUESTFS_VERSION supermin $(version supermin) kernel $KERNEL_KIND $KREL $KVERSION supermin.d $(ls "$SUPERMIN_D" | tr '\n' ' ')"

# The kernel as an ELF vmlinux (issue 16), as the VM lab's guest boots
# (lab/setup.sh): a bzImage decompresses itself (xz in Debian's amd64
# kernels) on the appliance's CPU before the kernel starts, seconds under
# TCG; QEMU boots a vmlinux through its PVH entry note (CONFIG_PVH, set in
# Debian's kernels; QEMU >= 4.0, with KVM or TCG) with nothing to unpack.
# Unpacked once here, at host speed. A kernel whose payload is not xz, or
# whose vmlinux has no PVH entry, stays a bzImage (it boots as before).
# Idempotent: an appliance made before this step gets it on the next run.
unpack_kernel() {
    local a=$1 off
    [ "$(head -c 4 "$a/kernel" | od -An -c | tr -d ' ')" = 177ELF ] && return 0
    off=$(grep -abo -m 1 $'\xfd7zXZ' "$a/kernel" | head -n 1 | cut -d: -f1) || true
    if [ -z "$off" ] || ! command -v xz >/dev/null || ! command -v readelf >/dev/null; then
        say "kernel: no xz payload (or no xz/readelf): the appliance boots the bzImage"
        return 0
    fi
    # the payload is followed by the bzImage's trailer: one xz stream only
    # (xz stops reading there: tail's SIGPIPE is no failure)
    if xz -dc --single-stream < <(tail -c "+$((off + 1))" "$a/kernel") >"$a/kernel.vmlinux.tmp" 2>/dev/null &&
        [ "$(head -c 4 "$a/kernel.vmlinux.tmp" | od -An -c | tr -d ' ')" = 177ELF ] &&
        grep -q 'Xen.*(0x00000012)\|PHYS32_ENTRY' <<<"$(LC_ALL=C readelf -n "$a/kernel.vmlinux.tmp" 2>/dev/null)"; then
        mv "$a/kernel.vmlinux.tmp" "$a/kernel"
        say "kernel: unpacked to a vmlinux (PVH entry)"
    else
        rm -f "$a/kernel.vmlinux.tmp"
        say "kernel: the unpacked vmlinux has no PVH entry: the appliance boots the bzImage"
    fi
}

if [ -f "$DIR/README.fixed" ] && [ "$(cat "$DIR/vmshadow-key" 2>/dev/null)" = "$KEY" ]; then
    unpack_kernel "$DIR"
    say "ready ($DIR)"
    exit 0
fi

TMP=$(mktemp -d "$DIR.new.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
say "building the appliance in $DIR ($KEY)"

if [ "$KERNEL_KIND" = host ]; then
    export SUPERMIN_KERNEL=/boot/vmlinuz-$KREL SUPERMIN_MODULES=/lib/modules/$KREL
else
    say "downloading $KPKG $KVERSION"
    (cd "$TMP" && apt-get download "$KPKG=$KVERSION" >/dev/null 2>"$TMP/apt.err") ||
        { cat "$TMP/apt.err" >&2; die "could not download $KPKG $KVERSION"; }
    mkdir "$TMP/k"
    dpkg-deb -x "$TMP"/*.deb "$TMP/k"
    rm -f "$TMP"/*.deb
    M=$TMP/k/lib/modules/$KREL
    [ -d "$M" ] && [ -f "$TMP/k/boot/vmlinuz-$KREL" ] || die "$KPKG has no kernel or modules for $KREL"
    # The appliance reads disks and filesystems: sound, networking, GPUs,
    # USB and the like only make it bigger.
    rm -rf "$M/kernel/sound" "$M/kernel/net" "$M/kernel/drivers/"{gpu,net,media,infiniband,usb,iio,staging,hid,bluetooth,isdn,comedi,hwmon,mmc,video,mtd}
    depmod -b "$TMP/k" "$KREL"
    export SUPERMIN_KERNEL=$TMP/k/boot/vmlinuz-$KREL SUPERMIN_MODULES=$M
fi
export SUPERMIN_KERNEL_VERSION=$KREL

build() {
    supermin --build --format ext2 --copy-kernel -o "$TMP/appliance" "$SUPERMIN_D" >"$TMP/build.log" 2>&1
}
if [ -d /lib/modules ]; then
    build || { tail -n 20 "$TMP/build.log" >&2; die "supermin failed"; }
else
    # supermin 5.2 copies the modules under the host's /lib/modules and
    # fails where there is none: give it an empty one in a private mount
    # namespace (nothing changes on the host).
    # (/lib is usr/lib on a merged-/usr Debian: the overlay goes on that.)
    LIBDIR=$(readlink -f /lib)
    mkdir -p "$TMP/ov/upper" "$TMP/ov/work"
    export -f build
    export TMP SUPERMIN_D LIBDIR
    unshare -m --propagation private bash -c '
        mount -t overlay overlay -o "lowerdir=$LIBDIR,upperdir=$TMP/ov/upper,workdir=$TMP/ov/work" "$LIBDIR" &&
        mkdir -p "$LIBDIR/modules" && build' ||
        { tail -n 20 "$TMP/build.log" >&2; die "supermin failed (or the private mount for it)"; }
fi
A=$TMP/appliance
for f in kernel initrd root; do [ -s "$A/$f" ] || die "supermin made no $f"; done
unpack_kernel "$A"
echo "Made by vmshadow's guestfs-appliance.sh; a libguestfs fixed appliance." >"$A/README.fixed"
echo "$GUESTFS_UPSTREAM" >"$A/libguestfs-version"
echo "$KEY" >"$A/vmshadow-key"

# Into place: the old one aside, the new one in, the old one gone.
if [ -e "$DIR" ]; then
    mv "$DIR" "$TMP/old"
fi
mv "$A" "$DIR"
say "ready ($DIR)"
