#!/usr/bin/env bash
# Run the whole test suite on a fresh Debian 12 host (as root): unit,
# component, fuzz-corpus and VM tests in a -Werror build; the unit tests and
# the coordinator's component tests once more under valgrind; then unit,
# component and fuzz again under AddressSanitizer + UBSan; between them the
# Debian packages are built, installed, run and purged (tests/package). Ends with one
# line "N passed, N failed, N skipped" counted from meson's own results,
# and exits non-zero if anything failed.
set -uo pipefail
cd "$(dirname "$0")"
./scripts/install-deps.sh || exit 1

status=0
# The VM suite holds the lab lock that developers' single VM tests and the
# package test's demo take too, so two runs on one host never share the lab
# (-o: the tests and the daemons they start do not inherit the lock).
vm_lock=(flock -o /var/lock/vmshadow-vm-suite)
run_suites () {   # build-dir meson-setup-args... -- suites...
  local dir=$1; shift
  local setup=() suites=()
  while [ "$1" != "--" ]; do setup+=("$1"); shift; done; shift
  for s in "$@"; do suites+=(--suite "$s"); done
  rm -f "$dir/meson-logs/testlog.json"
  if ! { meson setup "$dir" "${setup[@]}" >/dev/null 2>&1 \
         || meson setup --wipe "$dir" "${setup[@]}"; } ||
     ! ninja -C "$dir"; then
    echo "run-tests: the build in $dir failed" >&2
    status=1
    return
  fi
  local lock=()
  case " $* " in *" vm "*) lock=("${vm_lock[@]}") ;; esac
  "${lock[@]}" meson test -C "$dir" --print-errorlogs "${suites[@]}" || status=1
}

run_suites build-test -Dwerror=true -- unit component fuzz vm
rm -f build-test/meson-logs/testlog-valgrind.json
meson test -C build-test --setup valgrind --print-errorlogs --suite unit \
  --suite coordinator || status=1
# The Debian packages (issue 19): built, checked with lintian, installed,
# run from /usr and purged. Not a meson suite: it takes minutes and
# installs into /usr. Its result is counted below.
rm -f build-test/meson-logs/testlog-package.json
pkg_rc=0
tests/package/debian-package-installs-runs-and-purges.sh || pkg_rc=$?
python3 -c 'import json, sys; rc = int(sys.argv[1]); print(json.dumps({"name": "debian-package-installs-runs-and-purges", "result": "OK" if rc == 0 else "SKIP" if rc == 77 else "FAIL"}))' \
  "$pkg_rc" > build-test/meson-logs/testlog-package.json
run_suites build-asan -Dwerror=true -Db_sanitize=address,undefined \
  -Db_lundef=false -- unit component fuzz

# Count the results of both runs from meson's JSON logs. Each failure's
# last lines are repeated here, at the end, where a reader of only the tail
# of a long log (CI's summary) sees why it failed.
failures=$(mktemp)
read -r passed failed skipped < <(
  cat build-test/meson-logs/testlog.json build-test/meson-logs/testlog-valgrind.json \
      build-test/meson-logs/testlog-package.json \
      build-asan/meson-logs/testlog.json 2>/dev/null |
  python3 -c '
import json, sys
p = f = s = 0
with open(sys.argv[1], "w") as out:
    for line in sys.stdin:
        t = json.loads(line)
        r = t["result"]
        if r in ("OK", "EXPECTEDFAIL"): p += 1
        elif r == "SKIP": s += 1
        else:
            f += 1
            tail = (t.get("stdout", "") + t.get("stderr", "")).splitlines()[-12:]
            out.write("---- %s: %s ----\n" % (r, t["name"]))
            out.writelines("  " + l + "\n" for l in tail)
print(p, f, s)' "$failures")
cat "$failures"; rm -f "$failures"
passed=${passed:-0}; failed=${failed:-0}; skipped=${skipped:-0}
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  failed=1          # a build failed, so tests that should have run did not
fi
echo "${passed} passed, ${failed} failed, ${skipped} skipped"
[ "$failed" -eq 0 ] && [ "$status" -eq 0 ]
