#!/usr/bin/env bash
# cli/ only parses arguments and prints (issue 10): the sessions are
# lib/requester's. So no file of cli/ includes a header of writers/ or
# providers/, names one of their macros (VMS_VM_*, VMS_EXEC_*, …), or
# spells out an attribute a writer sets ("downtime_ms", "checkpoint", …);
# and lib/requester/restore.c does not name the VM writer.
set -euo pipefail
src=$1
fail () { echo "FAIL: $*"; exit 1; }
[ -d "$src/cli" ] && [ -d "$src/writers" ] || fail "no source tree at $src"

found=0
# Headers of writers and providers, by name.
while IFS= read -r h; do
  name=$(basename "$h")
  if grep -nE "^[[:space:]]*#[[:space:]]*include[[:space:]]*[<\"]([^>\"]*/)?$name[>\"]" "$src"/cli/*.[ch]; then
    echo "cli/ includes $name (of ${h#"$src"/})"; found=1
  fi
done < <(find "$src/writers" "$src/providers" -name '*.h')

# Their macros, and the attribute names writers set: every
# #define NAME "value" of those headers, and the generic attributes of
# include/vmshadow/writer.h (VMS_ATTR_*: cli/ may use the macro, as the
# public contract, but not spell out the name). Attribute names of one word
# ("method") are also ordinary words and options; those with a "_" or ":"
# are checked.
defines () {
  sed -nE 's/^#define[[:space:]]+(VMS_[A-Z0-9_]+)[[:space:]]+("[^"]*").*/\1 \2/p' "$@"
}
while read -r macro value; do
  if grep -nwF "$macro" "$src"/cli/*.[ch]; then
    echo "cli/ uses $macro"; found=1
  fi
done < <(defines $(find "$src/writers" "$src/providers" -name '*.h'))
while read -r macro value; do
  if [[ $macro == *ATTR* && $value == *[_:]* ]] && grep -nF "$value" "$src"/cli/*.[ch]; then
    echo "cli/ spells out the writer attribute $value ($macro)"; found=1
  fi
done < <(defines $(find "$src/writers" "$src/providers" -name '*.h') "$src/include/vmshadow/writer.h")

[ $found = 0 ] || fail "cli/ knows a writer or provider (see above)"

# The restore session is the same for every writer (issue 10): only
# lib/requester/host.c (the host's writers, the VM writer's restore hook)
# names the VM writer; restore.c includes none of its headers and uses none
# of its macros or functions.
r=$src/lib/requester/restore.c
[ -f "$r" ] || fail "no $r"
if grep -nE '#[[:space:]]*include[[:space:]]*"vm-[a-z-]*\.h"|VMS_VM_|vms_vm_|vms_libvirt_' "$r"; then
  fail "lib/requester/restore.c names the VM writer (see above)"
fi
# The check itself must see something: the VM writer's attributes are there.
# (grep reads the files itself: `cat … | grep -q` under pipefail fails
# with SIGPIPE once the headers outgrow the pipe's buffer.)
grep -q '"downtime_ms"' "$src"/writers/*/*.h "$src/include/vmshadow/writer.h" ||
  fail "no writer attribute found to check for: is $src the source tree?"
echo "ok"
