#!/usr/bin/env bash
# writer-text-reaches-terminals-escaped-and-json-valid (issue 9, item 7):
# what a writer says — names, captions, paths, reasons, messages, stderr —
# is checked as UTF-8 where it enters and escaped where it reaches a
# terminal:
#  - ESC/CSI/OSC sequences, C1 controls and CR in a writer's document and
#    in a file's path are printed escaped by writers, backup and show, and
#    come back exactly in their JSON output;
#  - a document that is not UTF-8, or has an integer beyond int64, fails
#    the writer (named) instead of being stored mangled or clamped;
#  - a veto whose message and stderr are not UTF-8 still gives valid JSON.
. "$(dirname "$0")/cli-lib.sh"

# no_controls FILE: no byte of a terminal control in FILE (C0 but \n and
# \t, DEL, and C1 in UTF-8), and valid UTF-8.
no_controls () {
  python3 - "$1" <<'PY' || fail "raw control in output: $(od -c "$1" | head -20)"
import re, sys
b = open(sys.argv[1], "rb").read()
b.decode("utf-8")
assert not re.search(rb"[\x00-\x08\x0b-\x1f\x7f]|\xc2[\x80-\x9f]", b), b
PY
}
# valid_json FILE: strict UTF-8 JSON.
valid_json () {
  python3 -c 'import json,sys; json.loads(open(sys.argv[1],"rb").read().decode("utf-8"))' "$1" \
    || fail "not valid JSON: $(head -c 2000 "$1")"
}

# A file whose name holds an escape sequence, and a writer whose document
# holds every kind of control, all as JSON escapes (so valid JSON, UTF-8).
evil=$'\e[2J\e]0;owned\a'
echo data > "$tmp/app/$evil"
cat > "$VMSHADOW_WRITERS_DIR/10-app" <<W
#!/bin/sh
[ "\$1" = identify ] || exit 0
cat <<'JSON'
{"format": "vmshadow-writer-metadata", "version": 1,
 "writer": {"name": "app\u001b[31m", "id": "0d9f3c1e-2b4a-4c5d-8e6f-7a8b9c0d1e2f"},
 "components": [{"name": "c\u009b2J", "caption": "cap\u001b]8;;http://x\u0007tion\r",
   "files": [{"path": "$tmp/app/\u001b[2J\u001b]0;owned\u0007", "kind": "plain"}],
   "excluded": [{"path": "/x\u001bP", "reason": "because\u001b[1A"}]}]}
JSON
W
chmod 755 "$VMSHADOW_WRITERS_DIR/10-app"

"$vmshadow" writers > "$tmp/out" 2>&1 || fail "writers: $(cat "$tmp/out")"
no_controls "$tmp/out"
grep -qF 'app\x1b[31m' "$tmp/out" || fail "writer name not shown escaped: $(cat "$tmp/out")"
grep -qF 'c\u009b2J' "$tmp/out" || fail "C1 control not shown escaped: $(cat "$tmp/out")"
grep -qF 'cap\x1b]8;;http://x\x07tion\r' "$tmp/out" || fail "caption not escaped: $(cat "$tmp/out")"
"$vmshadow" writers --json > "$tmp/json"
valid_json "$tmp/json"

# The writer leaves a file out (R13): stored with warnings, exit 3 (issue 20).
rc=0
"$vmshadow" backup > "$tmp/out" 2>&1 || rc=$?
[ $rc -eq 3 ] || fail "backup exited $rc, not 3: $(cat "$tmp/out")"
no_controls "$tmp/out"
id=$(ls "$VMSHADOW_REPO/backups")
"$vmshadow" show "$id" > "$tmp/out" 2>&1 || fail "show: $(cat "$tmp/out")"
no_controls "$tmp/out"
grep -qF '\x1b[2J\x1b]0;owned\x07' "$tmp/out" || fail "path not shown escaped: $(cat "$tmp/out")"
"$vmshadow" show --json "$id" > "$tmp/json"
valid_json "$tmp/json"
python3 - "$tmp/json" "$tmp/app/$evil" <<'PY' || fail "show --json does not give the path back exactly"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["files"][0]["path"] == sys.argv[2], j["files"][0]["path"]
PY
# The bytes come back too.
"$vmshadow" extract "$id" $'c\xc2\x9b2J' "$tmp/app/$evil" --to "$tmp/back"
cmp "$tmp/back" "$tmp/app/$evil" || fail "extract of the escaped path"
rm "$VMSHADOW_WRITERS_DIR/10-app"

# Not UTF-8, or an integer beyond int64: the writer fails, named.
printf '#!/bin/sh\n[ "$1" = identify ] || exit 0\nprintf %s\n' \
  "'{\"format\": \"vmshadow-writer-metadata\", \"version\": 1, \"writer\": {\"name\": \"bad\"}, \"components\": [{\"name\": \"c\", \"caption\": \"\\377\\033[31m\"}]}'" \
  > "$VMSHADOW_WRITERS_DIR/20-latin1"
cat > "$VMSHADOW_WRITERS_DIR/30-big" <<'W'
#!/bin/sh
[ "$1" = identify ] || exit 0
echo '{"format": "vmshadow-writer-metadata", "version": 1, "writer": {"name": "big"},
 "components": [{"name": "c", "attributes": {"n": 12345678901234567890}}]}'
W
chmod 755 "$VMSHADOW_WRITERS_DIR"/*
if "$vmshadow" writers > "$tmp/out" 2>&1; then fail "writers with broken documents exited 0"; fi
no_controls "$tmp/out"
grep -q "20-latin1.*not UTF-8" "$tmp/out" || fail "the non-UTF-8 document: $(cat "$tmp/out")"
grep -q "30-big.*12345678901234567890.*out of range" "$tmp/out" || fail "the big integer: $(cat "$tmp/out")"
if "$vmshadow" writers --json > "$tmp/json" 2>/dev/null; then fail "writers --json exited 0"; fi
valid_json "$tmp/json"
rm "$VMSHADOW_WRITERS_DIR"/*

# A veto whose reply and stderr are neither UTF-8 nor free of escapes.
cat > "$VMSHADOW_WRITERS_DIR/40-veto" <<W
#!/bin/sh
case "\$1" in
identify) cat <<'JSON'
{"format": "vmshadow-writer-metadata", "version": 1,
 "writer": {"name": "veto", "id": "7f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b"},
 "components": [{"name": "c", "files": [{"path": "$tmp/app/$evil", "kind": "plain"}]}]}
JSON
;;
freeze) printf '\033]0;pwned\007\377\n' >&2
        printf '{"failure": "retryable", "message": "busy \377\\\\u001b[31m"}\n'
        exit 1 ;;
esac
exit 0
W
chmod 755 "$VMSHADOW_WRITERS_DIR/40-veto"
if "$vmshadow" backup > "$tmp/out" 2>&1; then fail "a vetoed backup succeeded"; fi
no_controls "$tmp/out"
grep -q "busy" "$tmp/out" || fail "the veto message is lost: $(cat "$tmp/out")"
if "$vmshadow" backup --json > "$tmp/json" 2>/dev/null; then fail "a vetoed backup succeeded"; fi
valid_json "$tmp/json"
echo "ok: writer text is escaped on terminals, checked on entry, JSON stays valid"
