# tests/verify-stopped.sh — source it (bash) after defining fail, $vmshadow
# and $tmp, with VMSHADOW_STATE_DIR=$tmp/state: the checks shared by the
# tests of a verify --deep whose storage went out of reach (issue 12: an S3
# endpoint gone, a RADOS OSD stopped). The verify ran with its stdout in
# $tmp/v.out and its stderr in $tmp/v.err.
#
#   verify_stopped_unreachable REPO RC   it exited 5 (EXIT_UNREACHABLE) saying
#                                        why, called nothing damaged and kept
#                                        its record; sets done_before (packs)
#   verify_resumed REPO                  verify --deep --resume checks only the
#                                        other packs, finds nothing and removes
#                                        the record; sets resumed_packs ("N of M")
verify_stopped_unreachable () {
  local f
  [ "$2" = 5 ] || fail "verify without its storage: exit $2: $(cat "$tmp/v.out" "$tmp/v.err")"
  grep -q "verify stopped: repository $1 could not be read (.*); nothing was counted damaged for it, and 'verify --resume' with the same options continues where it stopped" "$tmp/v.err" ||
    fail "the stop does not say why: $(cat "$tmp/v.out" "$tmp/v.err")"
  ! grep -qi "corrupt\|missing\|unreadable\|problem" "$tmp/v.out" ||
    fail "storage out of reach was reported as damage: $(cat "$tmp/v.out")"
  f=$(ls "$tmp"/state/verify/*.json 2>/dev/null | head -1)
  [ -n "$f" ] || fail "the stopped verify left no record"
  done_before=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["packs_done"])' "$f")
}

verify_resumed () {
  "$vmshadow" --repo "$1" verify --deep --resume --json > "$tmp/r.json" 2> "$tmp/r.err" ||
    fail "resume: $(cat "$tmp/r.json" "$tmp/r.err")"
  python3 - "$tmp/r.json" "$done_before" <<'P' || fail "resume: $(cat "$tmp/r.json")"
import json, sys
o = json.load(open(sys.argv[1]))
before = int(sys.argv[2])
assert o["resumed"] is True and o["problems"] == [], o
assert o["packs_checked_before"] == before >= 3, o
assert o["packs_checked"] == o["packs"] - before > 0, o
P
  [ -z "$(ls -A "$tmp/state/verify")" ] || fail "the resumed verify left $(ls -A "$tmp/state/verify")"
  resumed_packs=$(python3 -c 'import json,sys; o=json.load(open(sys.argv[1])); print(o["packs_checked"], "of", o["packs"])' "$tmp/r.json")
}
