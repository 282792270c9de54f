#!/bin/bash
# Issue 19: the command line as users expect it. `vmshadow COMMAND --help`
# (the same as `vmshadow help COMMAND`) lists exactly the options of the
# command's section of vmshadow(1), and `vmshadow --help` exactly its
# commands and global options, so neither can fall behind the other; an
# option a command does not list is refused for it (one table per command
# drives both); --quiet drops a command's report but not what it is for.
# Usage: every-commands-help-matches-its-man-page-section.sh VMSHADOW MAN-PAGE
source "$(dirname "$0")/cli-lib.sh"
man=$2
bad=0
differ () {   # WHAT HELP-LIST MAN-LIST
  if [ "$2" != "$3" ]; then
    echo "$1: --help and the man page differ (< help, > man):"
    diff <(tr ' ' '\n' <<<"$2") <(tr ' ' '\n' <<<"$3") | grep '^[<>]' || true
    bad=1
  fi
}
# The long options a help text lists: its lines "  --opt ..." or "  -c, --opt ...".
help_options () { { grep -oE '^  (-[a-zA-Z], )?--[a-z][a-z-]*' || true; } | grep -oE -- '--[a-z-]+' | sort | tr '\n' ' ' || true; }
# The long options a man page part defines: the line after each .TP.
man_options () { awk 'prev == ".TP" { print } { prev = $0 }' | { grep -oE -- '\\-\\-[a-z]([a-z]|\\-)*' || true; } \
                   | sed 's/\\//g' | sort -u | tr '\n' ' '; }
man_section () { awk -v want="$1" '/^\.S[SH] / { on = ($0 == ".SS " want) } on' "$man"; }

"$vmshadow" --help > "$tmp/help"
commands=$(awk '/^Commands:/ { on = 1; next } /^$/ { on = 0 } on { print $1 }' "$tmp/help" | tr '\n' ' ')
man_commands=$(grep '^\.SS ' "$man" | awk '{ print $2 }' | tr '\n' ' ')
[ -n "$commands" ] || fail "vmshadow --help lists no commands"
differ "the commands" "$commands" "$man_commands"
differ "the global options" \
  "$(sed -n '/^Global options/,/^$/p' "$tmp/help" | help_options)" \
  "$(awk '/^\.SH / { on = ($0 == ".SH OPTIONS") } on' "$man" | man_options)"

for c in $commands; do
  "$vmshadow" "$c" --help > "$tmp/$c.help" || fail "vmshadow $c --help exited $?"
  "$vmshadow" help "$c" > "$tmp/$c.help2" || fail "vmshadow help $c exited $?"
  cmp -s "$tmp/$c.help" "$tmp/$c.help2" || fail "vmshadow help $c and vmshadow $c --help differ"
  head -1 "$tmp/$c.help" | grep -q "^Usage: vmshadow $c " || fail "vmshadow $c --help: $(head -1 "$tmp/$c.help")"
  grep -q "^Exit status:" "$tmp/$c.help" || fail "vmshadow $c --help says no exit status"
  grep -q "^Exit status: " <<<"$(man_section "$c")" || fail "the man page's $c section says no exit status"
  differ "vmshadow $c" "$(help_options < "$tmp/$c.help")" "$(man_section "$c" | man_options)"
  done
[ $bad = 0 ] || exit 1

# Every option another command takes and this one does not list is refused
# for it, naming the option, before anything runs. A value of the kind its
# help names ("--keep-last N": 1; "--format raw|qcow2": raw; "--since TIME": 1d).
value_of () {   # the help line's metavariable
  case $1 in ""|"["*) ;; N|SECONDS|PERCENT) echo 1 ;; TIME) echo 1d ;; *"|"*) echo "${1%%|*}" ;; *) echo x ;; esac
}
declare -A value
while read -r o meta; do
  [ -n "${value[$o]+set}" ] || value[$o]=$(value_of "$meta")
done < <(cat "$tmp"/*.help | sed -nE 's/^  (-[a-zA-Z], )?(--[a-z-]+)( [^ ]+)?( .*)?$/\2\3/p')
for c in $commands; do
  for o in "${!value[@]}"; do
    grep -qE "^  (-[a-zA-Z], )?$o( |$)" "$tmp/$c.help" && continue
    val=${value[$o]}
    rc=0; "$vmshadow" "$c" "$o" ${val:+"$val"} > "$tmp/out" 2> "$tmp/err" || rc=$?
    [ $rc = 2 ] || fail "vmshadow $c $o $val exited $rc, not 2: $(cat "$tmp/err")"
    cat "$tmp/out" "$tmp/err" | grep -q "option $o does not apply to this command (see 'vmshadow help $c')" \
      || fail "vmshadow $c $o $val said: $(cat "$tmp/out" "$tmp/err")"
  done
done
rc=0; "$vmshadow" help nosuch 2> "$tmp/err" || rc=$?
[ $rc = 2 ] && grep -q "no command 'nosuch'" "$tmp/err" || fail "help nosuch: $rc $(cat "$tmp/err")"
rc=0; "$vmshadow" nosuch --help 2> "$tmp/err" || rc=$?
[ $rc = 2 ] || fail "nosuch --help exited $rc"

# --quiet: backup's report is dropped (the exit status says it stored),
# list still lists, errors still reach stderr.
app_writer
out=$("$vmshadow" --quiet backup) || fail "backup --quiet exited $?"
[ -z "$out" ] || fail "backup --quiet printed: $out"
[ "$("$vmshadow" -q list | grep -c .)" = 2 ] || fail "list -q: $("$vmshadow" -q list)"
rc=0; "$vmshadow" -q show nosuch > "$tmp/out" 2> "$tmp/err" || rc=$?
[ $rc = 1 ] && [ -s "$tmp/err" ] || fail "show -q of a missing backup: $rc, stderr '$(cat "$tmp/err")'"
"$vmshadow" -q backup --json | python3 -c 'import json,sys; assert json.load(sys.stdin)["outcome"] == "success"' \
  || fail "backup -q --json printed no report"
echo "$(wc -w <<<"$commands") commands: --help and the man page agree; options of others refused; --quiet"
