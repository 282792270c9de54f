#!/usr/bin/env bash
# The tree `meson install` makes, as a program outside vmshadow sees it
# (issue 10): installed in a temporary DESTDIR, every public header
# compiles alone (as C, and as C++ where a C++ compiler is installed), the
# man page vmshadow(3) is there, and the example of that page builds with
# nothing but `pkg-config --cflags --libs vmshadow`, links the installed
# libvmshadow.so and backs up and restores a file.
set -euo pipefail
src=$1
: "${MESON_BUILD_ROOT:?}" "${CC:=cc}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail () { echo "FAIL: $*"; exit 1; }
san=()
if [ -n "${VMS_SANITIZE:-}" ] && [ "$VMS_SANITIZE" != none ]; then
  san=(-fsanitize="$VMS_SANITIZE")
fi

root=$tmp/root
meson install -C "$MESON_BUILD_ROOT" --no-rebuild --destdir "$root" \
  > "$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; fail "meson install failed"; }
pc=$(find "$root" -name vmshadow.pc)
[ -n "$pc" ] || fail "no vmshadow.pc installed"
prefix=$(sed -n 's/^prefix=//p' "$pc")
export PKG_CONFIG_PATH=${pc%/*}
pkgconf=(pkg-config --define-variable=prefix="$root$prefix")
incdir=$("${pkgconf[@]}" --variable=includedir vmshadow)
libdir=$("${pkgconf[@]}" --variable=libdir vmshadow)
[ -f "$root$prefix/share/man/man3/vmshadow.3" ] || fail "vmshadow(3) not installed"

n=0
for h in "$incdir"/vmshadow/*.h; do
  printf '#include <vmshadow/%s>\nint vms_header_check;\n' "${h##*/}" |
    $CC -std=c11 -Wall -Wextra -Werror -pedantic -fsyntax-only -I"$incdir" -x c - \
    || fail "${h##*/} does not compile alone as C"
  if command -v c++ >/dev/null; then
    printf '#include <vmshadow/%s>\nint vms_header_check;\n' "${h##*/}" |
      c++ -std=c++11 -Wall -Wextra -Werror -fsyntax-only -I"$incdir" -x c++ - \
      || fail "${h##*/} does not compile alone as C++"
  fi
  n=$((n + 1))
done
[ "$n" -ge 8 ] || fail "only $n headers installed"

# shellcheck disable=SC2046
$CC "${san[@]}" -o "$tmp/backup-a-file" "$src" $("${pkgconf[@]}" --cflags --libs vmshadow) \
  || fail "the example does not build with pkg-config's flags"
libs=$(LD_LIBRARY_PATH=$libdir ldd "$tmp/backup-a-file")
grep -q "=> $libdir/libvmshadow.so.0 " <<<"$libs" \
  || fail "the example does not link the installed library: $libs"

head -c 200000 /dev/urandom > "$tmp/file"
LD_LIBRARY_PATH=$libdir "$tmp/backup-a-file" "$tmp/repo" "$tmp/file" "$tmp/restored" \
  || fail "the installed example failed"
cmp "$tmp/file" "$tmp/restored" || fail "the restored file differs"
echo "ok - $n headers compile alone; the example built with pkg-config from $libdir backed up and restored a file"
