#!/usr/bin/env bash
# Issue 19: the Debian packages. dpkg-buildpackage builds vmshadow,
# libvmshadow0, libvmshadow-dev, nbdkit-plugin-vmshadow and vmshadow-guest
# (issue 17's guest side); lintian finds no
# error or warning (the tags left are overridden with their reasons,
# debian/README); `apt-get install ./*.deb` installs them; vmshadow runs
# from /usr (writers, a configured job with an exec writer, status, the
# man page, the completion, the guest side from /usr/sbin, the README's
# demo on a lab VM); `apt-get purge` leaves none of the packages'
# files, no state of the runs (scratch, job locks, empty /etc/vmshadow), and
# keeps the repository. Not a meson suite (it takes minutes and installs
# into /usr): run-tests.sh runs it, and CI with it.
#
#   tests/package/debian-package-installs-runs-and-purges.sh
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
skip () { echo "SKIP: $*"; exit 77; }
fail () { echo "FAIL: $*"; exit 1; }
[ "$(id -u)" = 0 ] || skip "needs root (it installs the packages into /usr)"
pkgs=(vmshadow libvmshadow0 libvmshadow-dev nbdkit-plugin-vmshadow vmshadow-guest)
for p in "${pkgs[@]}"; do
  ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    skip "$p is installed on this host (setup.sh): this test installs and purges the packages, so it runs only where they are not"
done
for c in dpkg-buildpackage dh lintian; do
  command -v "$c" >/dev/null || fail "$c is missing (scripts/install-deps.sh installs it)"
done
exec 9> /var/lock/vmshadow-package-test
flock -w 1800 9 || fail "another run of the package test held /var/lock/vmshadow-package-test for 30 min"

tmp=$(mktemp -d /var/tmp/vmshadow-package.XXXXXX)
installed=0
repo=/var/lib/vmshadow/package-test-repo.$$
etc_before=$([ -e /etc/vmshadow ] && echo yes || echo no)
cleanup () {
  if [ $installed = 1 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 purge -y -qq \
      "${pkgs[@]}" >/dev/null 2>&1 || true
  fi
  rm -rf "$tmp" "$repo"
  rmdir /var/lib/vmshadow 2>/dev/null || true
}
trap cleanup EXIT
apt_get () { DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -y -qq "$@"; }

# 1. Build.
t0=$(date +%s)
changes=$("$src/scripts/build-debs.sh" "$tmp/out") || fail "the packages did not build"
echo "built in $(( $(date +%s) - t0 )) s: $(cd "$tmp/out" && ls *.deb | tr '\n' ' ')"
debs=()
for p in "${pkgs[@]}"; do
  f=$(ls "$tmp/out/${p}_"*.deb 2>/dev/null) || fail "no package $p was built"
  debs+=("$f")
done
plugin=$(dpkg-deb -c "$tmp/out/"nbdkit-plugin-vmshadow_*.deb)   # (not piped into grep -q: pipefail)
grep -q "nbdkit/plugins/nbdkit-vmshadow-plugin.so" <<<"$plugin" \
  || fail "nbdkit-plugin-vmshadow holds no plugin"

# 2. Lintian: nothing at warning level or above that is not overridden.
lintian --fail-on error,warning "$changes" > "$tmp/lintian" 2>&1 \
  || fail "lintian: $(cat "$tmp/lintian")"
echo "lintian: $(grep -c . "$tmp/lintian" || true) tags below warning"

# 3. Install, as an administrator would.
touch "$tmp/marker"
sleep 1
installed=1
apt_get install --no-install-recommends "${debs[@]}" > "$tmp/apt.log" 2>&1 \
  || fail "apt-get install: $(tail -20 "$tmp/apt.log")"
dpkg -L "${pkgs[@]}" > "$tmp/files"

# 4. It runs from /usr, with no variable of a test environment.
run () { env -u VMSHADOW_REPO -u VMSHADOW_WRITERS_DIR -u VMSHADOW_CONFIG_DIR \
           -u VMSHADOW_SCRATCH_DIR -u VMSHADOW_RUN_DIR -u VMSHADOW_NBDKIT_PLUGIN "$@"; }
[ "$(run /usr/bin/vmshadow --version)" = "vmshadow $(dpkg-parsechangelog -l "$src/debian/changelog" -S Version)" ] \
  || fail "/usr/bin/vmshadow --version: $(run /usr/bin/vmshadow --version)"
run /usr/bin/vmshadow writers > "$tmp/writers" 2>&1 || fail "vmshadow writers from /usr: $(cat "$tmp/writers")"
# A configured job (an exec writer; the VMs are the demo's and the vm
# suite's), its status, and the scratch space and lock it uses by default.
mkdir -p "$tmp/etc/jobs.d" "$tmp/writers.d" "$tmp/app"
echo "data" > "$tmp/app/app.conf"
cat > "$tmp/writers.d/app" <<W
#!/bin/sh
[ "\$1" = identify ] || exit 0
echo '{"format": "vmshadow-writer-metadata", "version": 1, "writer": {"name": "app", "id": "7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"}, "components": [{"name": "config", "files": [{"path": "$tmp/app/app.conf", "kind": "plain"}]}]}'
W
chmod 755 "$tmp/writers.d/app"
printf '[repository r]\npath = %s\n[job package-test]\nrepository = r\nkeep-last = 1\n' "$repo" > "$tmp/etc/jobs.d/p.conf"
run /usr/bin/vmshadow job run package-test --config "$tmp/etc" --writers-dir "$tmp/writers.d" > "$tmp/job" 2>&1 \
  || fail "job run from /usr: $(cat "$tmp/job")"
run /usr/bin/vmshadow status --config "$tmp/etc" --json > "$tmp/status" || fail "status: $(cat "$tmp/status")"
grep -q '"health": "ok"' "$tmp/status" || fail "status: $(cat "$tmp/status")"
[ -d /var/lib/vmshadow/scratch ] || fail "the job used no default scratch directory"
[ -e /run/vmshadow/job-package-test.lock ] || fail "the job took no lock in /run/vmshadow"
# The documentation and completion are where they are looked for.
MANPATH=/usr/share/man man -w vmshadow | grep -q "^/usr/share/man/man1/vmshadow.1" || fail "man vmshadow: $(MANPATH=/usr/share/man man -w vmshadow 2>&1)"
bash -c 'source /usr/share/bash-completion/completions/vmshadow
         COMP_WORDS=(/usr/bin/vmshadow sta); COMP_CWORD=1; _vmshadow; echo "${COMPREPLY[*]}"' \
  | grep -qx "status" || fail "the installed completion does not complete 'sta'"
[ -x /usr/libexec/vmshadow/notify-mail ] || fail "no notify-mail example"
pkg-config --exists vmshadow || fail "libvmshadow-dev: pkg-config knows no vmshadow"
# The guest side: the command the host runs through guest-exec, the
# fsfreeze hook the guest agent runs, and the copy `guest install` pushes.
[[ $(/usr/sbin/vmshadow-guest version) == '{"protocol":'* ]] || fail "/usr/sbin/vmshadow-guest version: $(/usr/sbin/vmshadow-guest version 2>&1)"
[ "$(readlink -f /etc/qemu/fsfreeze-hook.d/50-vmshadow-guest)" = /usr/libexec/vmshadow/vmshadow-guest ] \
  || fail "the fsfreeze hook link: $(ls -l /etc/qemu/fsfreeze-hook.d 2>&1)"
[ -d /etc/vmshadow/guest-writers.d ] || fail "no /etc/vmshadow/guest-writers.d"
gw=$(MANPATH=/usr/share/man man -w vmshadow-guest 2>&1) || fail "man vmshadow-guest: $gw"
for k in sqlite postgresql mariadb; do
  [ -x /usr/share/vmshadow-guest/kits/$k ] || fail "no $k kit in /usr/share/vmshadow-guest/kits"
done

# The README's main job from the installed package: scripts/demo.sh with
# /usr/bin/vmshadow backs up a lab VM online through a configured job,
# deletes it and restores it (a VM: under the VM suite's lock).
demo_repo=$tmp/demo-repo
flock /var/lock/vmshadow-vm-suite env VMSHADOW_DEMO_REPO="$demo_repo" \
  "$src/scripts/demo.sh" /usr/bin/vmshadow > "$tmp/demo.log" 2>&1 \
  || fail "the demo from /usr/bin/vmshadow: $(tail -20 "$tmp/demo.log")"
grep -q "^Done: backed up online, restored from the repository" "$tmp/demo.log" \
  || fail "the demo did not finish: $(tail -20 "$tmp/demo.log")"
echo "demo from /usr/bin/vmshadow: $(grep -c . "$tmp/demo.log") lines, done"

# 5. Purge: no file of the packages, no state of the runs, the repository
# kept.
apt_get purge "${pkgs[@]}" > "$tmp/apt.log" 2>&1 \
  || fail "apt-get purge: $(tail -20 "$tmp/apt.log")"
installed=0
left=$(dpkg -l "${pkgs[@]}" 2>/dev/null | grep '^[a-z][a-z] ' | grep -v '^un' || true)
[ -z "$left" ] || fail "dpkg still knows: $left"
while read -r f; do
  [ -d "$f" ] || [ ! -e "$f" ] || fail "purge left $f"
done < "$tmp/files"
for d in /var/lib/vmshadow/scratch /run/vmshadow; do
  [ ! -e "$d" ] || fail "purge left $d"
done
[ $etc_before = yes ] || [ ! -e /etc/vmshadow ] || fail "purge left /etc/vmshadow: $(find /etc/vmshadow)"
# (Not /run or /var: on a shared lab host other tests' files live there.)
new=$(find /usr /etc /lib -xdev -newer "$tmp/marker" -name '*vmshadow*' 2>/dev/null || true)
[ -z "$new" ] || fail "purge left files made since the install: $new"
[ -f "$repo/config" ] && [ -n "$(ls "$repo/backups")" ] || fail "purge touched the repository $repo"
echo "built, lintian-clean, installed, ran from /usr, purged leaving only the repository"
