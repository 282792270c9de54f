#!/usr/bin/env bash
# Build vmshadow's Debian packages (debian/, issue 19) from this source
# tree into OUTDIR: a copy of the tree (tracked and new files, no build
# directories) is built there with `dpkg-buildpackage -b -us -uc`, so the
# tree itself is left alone. Prints the .changes file's path.
#
#   scripts/build-debs.sh OUTDIR
set -euo pipefail
out=$(realpath -m "${1:?usage: build-debs.sh OUTDIR}")
src=$(cd "$(dirname "$0")/.." && pwd)
version=$(dpkg-parsechangelog -l "$src/debian/changelog" -S Version)
tree=$out/vmshadow-$version
rm -rf "$tree"
mkdir -p "$tree"
if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
  git -C "$src" ls-files -co --exclude-standard -z |
    (cd "$src" && xargs -0 cp -a --parents -t "$tree" 2>/dev/null || true)
else
  (cd "$src" && tar --exclude='./build*' --exclude='./.git' -cf - .) | tar -C "$tree" -xf -
fi
[ -f "$tree/debian/control" ] || { echo "build-debs: copying the tree failed" >&2; exit 1; }
# The test suites run from the source tree (run-tests.sh), not in the build.
(cd "$tree" && DEB_BUILD_OPTIONS="nocheck parallel=$(nproc)" \
   dpkg-buildpackage -b -us -uc > "$out/build.log" 2>&1) || {
  tail -40 "$out/build.log" >&2
  echo "build-debs: dpkg-buildpackage failed (log: $out/build.log)" >&2
  exit 1
}
rm -rf "$tree"
echo "$out/vmshadow_${version}_$(dpkg --print-architecture).changes"
