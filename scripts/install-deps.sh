#!/usr/bin/env bash
# Install the Debian 12 packages vmshadow needs to build and test, if any
# are missing. Idempotent: with everything present it only checks.
# (The VM lab installs its own packages: lab/setup.sh.)
set -euo pipefail

packages=(
  # build
  gcc meson ninja-build pkg-config
  libjson-c-dev libinih-dev libcmocka-dev libvirt-dev libnbd-dev libxml2-dev
  libzstd-dev libssl-dev nbdkit nbdkit-plugin-dev
  libsodium-dev   # scrypt of key files' passphrases (issue 13)
  librados-dev   # the RADOS repository backend (issue 12)
  libxxhash-dev  # XXH3-128, the checksum of a pack's tail (issue 15)
  librbd-dev     # rbd diff incrementals of stopped VMs' RBD disks (issue 11)
  libcurl4-openssl-dev   # the S3 repository backend (issue 14; with libxml2-dev, inih)
  # files/mount (issue 16): libguestfs and its appliance, FUSE's fusermount
  libguestfs-dev libguestfs-xfs fuse3
  # tests: reflink filesystems, loop devices, example writers
  btrfs-progs xfsprogs e2fsprogs util-linux sqlite3 valgrind
  # tests: NBD clients of the exports (nbdcopy, nbdinfo, qemu-io)
  libnbd-bin qemu-utils
  # runtime: QEMU's iSCSI, RBD, … drivers for reading stopped VMs' network disks (issue 11)
  qemu-block-extra
  # the Debian packages (setup.sh, tests/package): build and check them
  dpkg-dev debhelper fakeroot lintian
  # tests: guest disks made without the host kernel mounting anything
  guestfish
  # tests: the guest writer kits against real servers (issue 17; each test
  # runs its own server in a temp dir). The -core packages: no system
  # instance of MariaDB is set up or started.
  postgresql mariadb-server-core mariadb-client-core
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "vmshadow: these packages are missing: ${missing[*]}" >&2
  echo "vmshadow: run this as root (or: apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "vmshadow: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Another install (unattended-upgrades, a second setup) may hold the
# dpkg lock: wait for it rather than fail.
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
  "${missing[@]}" >/dev/null
