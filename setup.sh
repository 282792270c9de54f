#!/usr/bin/env bash
# Set up vmshadow on a fresh Debian 12 host (as root): install the
# dependencies, build, install to /usr/local, and run the main job: a VM
# backed up online, deleted and restored (scripts/demo.sh).
set -euo pipefail
cd "$(dirname "$0")"
./scripts/install-deps.sh
meson setup build --prefix=/usr/local --buildtype=release >/dev/null 2>&1 \
  || meson setup --reconfigure build --prefix=/usr/local --buildtype=release >/dev/null
ninja -C build
ninja -C build install >/dev/null
ldconfig
# libvirtd must answer before vmshadow can list its writers; on a host
# without systemd the lab starts it (lab/setup.sh; a running one is kept).
lab/setup.sh --quiet
# The main job, on a throw-away VM: back it up online, delete it, restore
# it, check its data (scripts/demo.sh; needs the VM lab, which it sets up).
vmshadow writers
scripts/demo.sh "$(command -v vmshadow)"
