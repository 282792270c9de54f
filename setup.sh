#!/usr/bin/env bash
# Set up vmshadow on a fresh Debian 12 host (as root): install the
# dependencies, build vmshadow's Debian packages and install them (vmshadow,
# libvmshadow0, libvmshadow-dev, nbdkit-plugin-vmshadow, vmshadow-guest: debian/), and run
# the main job from /usr: a configured job backs up a VM online, the VM is
# deleted and restored (scripts/demo.sh).
set -euo pipefail
cd "$(dirname "$0")"
./scripts/install-deps.sh
# An install of an earlier setup.sh (ninja install into /usr/local) would
# shadow the package's command and library: it goes first.
if [ -f build/meson-logs/install-log.txt ]; then
  grep -v '^#' build/meson-logs/install-log.txt | grep '^/usr/local/' | xargs -r rm -f
  rm -rf /usr/local/include/vmshadow /usr/local/libexec/vmshadow
  ldconfig
fi
changes=$(scripts/build-debs.sh build/debs)
debs=()
for p in vmshadow libvmshadow0 libvmshadow-dev nbdkit-plugin-vmshadow vmshadow-guest; do
  debs+=("$(ls "$(dirname "$changes")/${p}_"*.deb)")
done
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
  --reinstall --no-install-recommends "${debs[@]}" >/dev/null
echo "Installed: $(dpkg-query -W -f='${Package} ${Version}  ' vmshadow libvmshadow0 libvmshadow-dev nbdkit-plugin-vmshadow vmshadow-guest)"
# libvirtd must answer before vmshadow can list its writers; on a host
# without systemd the lab starts it (lab/setup.sh; a running one is kept).
lab/setup.sh --quiet
# The main job, on a throw-away VM, from the installed package: a
# configured job backs it up online, it is deleted and restored, its data
# checked (scripts/demo.sh; needs the VM lab, which it sets up).
/usr/bin/vmshadow writers
scripts/demo.sh /usr/bin/vmshadow
