#!/usr/bin/env bash
# verify --resume (issue 12): a verify killed (SIGKILL) part-way is
# finished by 'verify --resume', which reads only the packs the killed one
# had not checked and still reports the damage the killed one found, and
# that found after; the progress record is on the host (never in the
# repository), is removed by a verify that ends, is refused when it is of
# another selection, malformed or a link, and a repository that changed
# since makes the resume start again, saying so. A sampled verify resumes
# with its sample. Run on the local directory and on RADOS.
set -euo pipefail
vmshadow=$1
tmp=$(mktemp -d /var/tmp/vmshadow-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail () { echo "FAIL: $*"; exit 1; }
. "$(dirname "$0")/../../flip-byte.sh"
export VMSHADOW_SCRATCH_DIR=$tmp/scratch VMSHADOW_REPO=$tmp/repo
export VMSHADOW_WRITERS_DIR=$tmp/writers.d VMSHADOW_STATE_DIR=$tmp/state
# Progress recorded after every pack (default: at most once a second).
export VMSHADOW_VERIFY_SAVE_MS=0
unset VMSHADOW_REPO_FORMAT VMSHADOW_TEST_ENCRYPTED
# Small packs: many of them to be part-way through.
export VMSHADOW_REPO_PACK_SIZE=$((1024 * 1024))
. "$(dirname "$0")/repo-backend-lib.sh"
repo_backend_setup

mkdir -p "$tmp/app" "$VMSHADOW_WRITERS_DIR"
head -c $((40 * 1024 * 1024)) /dev/urandom > "$tmp/app/blob.bin"
cat > "$VMSHADOW_WRITERS_DIR/app" <<W
#!/bin/sh
[ "\$1" = identify ] || exit 0
cat <<JSON
{"format": "vmshadow-writer-metadata", "version": 1,
 "writer": {"name": "app", "id": "3c1f0a2e-5b4d-4e6f-8a9b-0c1d2e3f4a5b"},
 "components": [{"name": "files", "files": [{"path": "$tmp/app/blob.bin", "kind": "plain"}]}]}
JSON
W
chmod 755 "$VMSHADOW_WRITERS_DIR/app"
"$vmshadow" init --format 2 > "$tmp/out" || fail "init: $(cat "$tmp/out")"
"$vmshadow" backup > "$tmp/out" || fail "backup: $(cat "$tmp/out")"
id=$(repo_cat config | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
record=$VMSHADOW_STATE_DIR/verify/$id.json
mapfile -t packs < <(repo_objects packs/ | sort)
n=${#packs[@]}
[ "$n" -ge 30 ] || fail "only $n packs"
objects_before=$(repo_objects '' | sort)

field () { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$@"; }

# 'verify ARGS' killed (SIGKILL, the CLI's test hook) once its record
# says 5 packs are done. The record then says how far it got.
interrupt () {
  local rc=0
  VMSHADOW_TEST_VERIFY_KILL_AFTER_PACKS=5 "$vmshadow" verify "$@" > "$tmp/killed.out" 2>&1 || rc=$?
  [ "$rc" = 137 ] || fail "verify $* was not killed (exit $rc): $(cat "$tmp/killed.out")"
  [ "$(field "$record" packs_done)" = 5 ] || fail "record after the kill: $(cat "$record")"
}

# A verify that ends removes its record; nothing is written into the
# repository.
"$vmshadow" verify --deep > "$tmp/out" || fail "verify --deep: $(cat "$tmp/out")"
[ -z "$(ls -A "$VMSHADOW_STATE_DIR/verify")" ] || fail "a verify that ended left: $(ls -A "$VMSHADOW_STATE_DIR/verify")"
[ -d "$VMSHADOW_STATE_DIR/verify" ] || fail "no $VMSHADOW_STATE_DIR/verify"
[ "$(stat -c %a "$VMSHADOW_STATE_DIR/verify")" = 700 ] || fail "verify/ is not 0700"

# Damage in the first pack (found before the interruption) and in the
# last (found after).
repo_flip "${packs[0]}" 100000
repo_flip "${packs[n - 1]}" 100000
interrupt --deep
[ -e "$record" ] || fail "the killed verify left no record"
[ "$(stat -c %a "$record")" = 600 ] || fail "the record is not 0600"
done_before=$(field "$record" packs_done)
[ "$(field "$record" packs)" = "$n" ] || fail "record: $(cat "$record")"
grep -q '"bad":\[{"chunk":"' "$record" || fail "the first pack's damage is not in the record: $(cat "$record")"
[ "$(repo_objects '' | sort)" = "$objects_before" ] || fail "verify wrote into the repository"
# A pack the killed verify found sound is damaged now: a resume does not
# read it again (a new verify, below, finds it).
repo_flip "${packs[1]}" 100000

# Another selection is refused, and leaves the record.
if "$vmshadow" verify --resume > "$tmp/out" 2> "$tmp/err"; then fail "a resume without --deep ran"; fi
grep -q "the interrupted verify of repository .* was 'verify --deep'" "$tmp/err" ||
  fail "bad message: $(cat "$tmp/err")"
if "$vmshadow" verify --deep --sample 50 --resume > "$tmp/out" 2> "$tmp/err"; then
  fail "a resume with --sample ran"
fi
grep -q "was 'verify --deep'" "$tmp/err" || fail "bad message: $(cat "$tmp/err")"
[ -e "$record" ] || fail "a refused resume removed the record"

rc=0
"$vmshadow" verify --deep --resume --json > "$tmp/resumed.json" 2> "$tmp/err" || rc=$?
[ "$rc" = 1 ] || fail "resume: exit $rc: $(cat "$tmp/resumed.json" "$tmp/err")"
python3 - "$tmp/resumed.json" "$n" "$done_before" <<'P' || fail "resume: $(cat "$tmp/resumed.json")"
import json, sys
o = json.load(open(sys.argv[1]))
n, before = int(sys.argv[2]), int(sys.argv[3])
assert o["resumed"] is True, o
assert o["packs"] == n, o
assert o["packs_checked_before"] == before, o
assert o["packs_checked"] == n - before, o
assert o["bad_chunks_found_before"] >= 1, o
p = o["problems"]
old = [l for l in p if l.endswith("(found before the interruption)")]
new = [l for l in p if not l.endswith("(found before the interruption)")]
# The first pack's bad chunk(s) again, the last pack's; not the second's.
assert len(old) == o["bad_chunks_found_before"], p
assert len(new) >= 1, p
assert all("offset" in l for l in p), p
P
[ ! -e "$record" ] || fail "a resumed verify that ended left its record"
offsets () { grep -o 'offset [0-9]*' "$1" | sort -u; }
# A new verify sees all three damaged packs: the second's damage was
# real, and the resume did not read it.
rc=0
"$vmshadow" verify --deep --json > "$tmp/all.json" || rc=$?
[ "$rc" = 1 ] || fail "verify --deep: exit $rc"
[ "$(offsets "$tmp/all.json" | wc -l)" -gt "$(offsets "$tmp/resumed.json" | wc -l)" ] ||
  fail "the resume read a pack done before: $(cat "$tmp/resumed.json") vs $(cat "$tmp/all.json")"

# Nothing to resume: the resume starts from the beginning, saying so.
rc=0
"$vmshadow" verify --resume > "$tmp/out" 2> "$tmp/err" || rc=$?
[ "$rc" = 0 ] || fail "verify --resume with nothing recorded: exit $rc $(cat "$tmp/out" "$tmp/err")"
grep -q "no interrupted verify of repository .* is recorded on this host: checking from the beginning" "$tmp/err" ||
  fail "bad message: $(cat "$tmp/err")"

# Repair the damage: a backup of the same data stores nothing again, so
# take a fresh repository state by a new backup of new data instead, and
# check the sample and the changed-repository cases on the sound packs.
# (The damaged packs stay damaged: those cases look at counts, not at
# problems.)
interrupt --sample 50
[ "$(field "$record" sample_percent)" = 50 ] || fail "record: $(cat "$record")"
done_before=$(field "$record" packs_done)
total=$(field "$record" packs)
"$vmshadow" verify --sample 50 --resume --json > "$tmp/s.json" 2> "$tmp/err" || true
python3 - "$tmp/s.json" "$total" "$done_before" <<'P' || fail "sampled resume: $(cat "$tmp/s.json" "$tmp/err")"
import json, sys
o = json.load(open(sys.argv[1]))
# The same sample (the same chunks to check): resumed where it stopped.
assert o["resumed"] is True and o["packs"] == int(sys.argv[2]), o
assert o["packs_checked"] == int(sys.argv[2]) - int(sys.argv[3]), o
P

# A backup committed meanwhile: the resume starts again, saying so.
interrupt
head -c $((3 * 1024 * 1024)) /dev/urandom | dd of="$tmp/app/blob.bin" conv=notrunc status=none
"$vmshadow" backup > "$tmp/out" || fail "second backup: $(cat "$tmp/out")"
"$vmshadow" verify --resume --json > "$tmp/c.json" 2> "$tmp/err" || true
grep -q "changed since the interrupted verify .*: checking from the beginning" "$tmp/err" ||
  fail "bad message: $(cat "$tmp/err")"
python3 - "$tmp/c.json" <<'P' || fail "changed: $(cat "$tmp/c.json")"
import json, sys
o = json.load(open(sys.argv[1]))
assert o["resumed"] is False and o["packs_checked"] == o["packs"] > 0, o
P

# A malformed record, and a link as the record: refused, clearly.
interrupt
printf '{"format": "vmshadow-verify-progress", "version": 1, "repository": "%s"' "$id" > "$record"
if "$vmshadow" verify --resume 2> "$tmp/err" > /dev/null; then fail "a malformed record was resumed"; fi
grep -q "the verify progress record .*/verify/$id.json is malformed (not a JSON object): remove it, or run verify without --resume" "$tmp/err" ||
  fail "bad message: $(cat "$tmp/err")"
python3 - "$record" <<'P'
import json, sys
json.dump({"format": "vmshadow-verify-progress", "version": 1}, open(sys.argv[1], "w"))
P
if "$vmshadow" verify --resume 2> "$tmp/err" > /dev/null; then fail "a record without repository was resumed"; fi
grep -q "is malformed (no repository)" "$tmp/err" || fail "bad message: $(cat "$tmp/err")"
echo '{}' > "$tmp/elsewhere.json"
rm -f "$record"
ln -s "$tmp/elsewhere.json" "$record"
if "$vmshadow" verify --resume 2> "$tmp/err" > /dev/null; then fail "a link was followed"; fi
grep -q "cannot open the verify progress record .*: .*link" "$tmp/err" || fail "bad message: $(cat "$tmp/err")"
[ "$(cat "$tmp/elsewhere.json")" = '{}' ] || fail "the link's target changed"
# A new verify (no --resume) replaces whatever was there.
"$vmshadow" verify > /dev/null 2>&1 || true
[ ! -e "$record" ] && [ ! -L "$record" ] || fail "a verify that ended left the record or link"
# job verify (what vmshadow-verify@JOB runs) resumes a killed one, and
# starts again over a record of another selection (its options changed).
mkdir -p "$tmp/etc"
printf '[repository main]\npath = %s\n[job j]\nrepository = main\n' "$VMSHADOW_REPO" > "$tmp/etc/vmshadow.conf"
export VMSHADOW_RUN_DIR=$tmp/run
rc=0; VMSHADOW_TEST_VERIFY_KILL_AFTER_PACKS=3 "$vmshadow" job verify j --config "$tmp/etc" > "$tmp/out" 2>&1 || rc=$?
[ $rc = 137 ] || fail "job verify was not killed after 3 packs (exit $rc): $(cat "$tmp/out")"
out=$("$vmshadow" job verify j --config "$tmp/etc" 2>&1) || fail "job verify after a kill exited $?: $out"
grep -q "^Resumed: 3 of [0-9]* packs were checked before the interruption" <<<"$out" ||
  fail "job verify did not resume the killed one: $out"
rc=0; VMSHADOW_TEST_VERIFY_KILL_AFTER_PACKS=3 "$vmshadow" verify --deep > "$tmp/out" 2>&1 || rc=$?
[ $rc = 137 ] || fail "verify --deep was not killed after 3 packs (exit $rc): $(cat "$tmp/out")"
out=$("$vmshadow" job verify j --config "$tmp/etc" 2>&1) || fail "job verify over another selection's record exited $?: $out"
{ grep -q "was 'verify --deep'.*checking from the beginning" <<<"$out" && ! grep -q "^Resumed" <<<"$out"; } ||
  fail "job verify did not start again over another selection's record: $out"
[ ! -e "$record" ] || fail "the job verify that ended left the record"
echo "ok - killed after $done_before of $n packs, the resume read only the rest; damage before and after reported; other selection, malformed record and link refused; a changed repository restarts"
