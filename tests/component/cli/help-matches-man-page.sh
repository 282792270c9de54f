#!/usr/bin/env bash
# vmshadow --help and the man page (docs/vmshadow.1) list the same long
# options, so neither can fall behind the other.
set -euo pipefail
vmshadow=$1 man=$2
help_opts=$("$vmshadow" --help | grep -oE -- '--[a-z][a-z-]*' | sort -u)
man_opts=$(grep -oE -- '\\-\\-[a-z]([a-z]|\\-)*' "$man" | sed 's/\\//g' | sort -u)
if [ "$help_opts" != "$man_opts" ]; then
  echo "--help and the man page differ:"
  diff <(echo "$help_opts") <(echo "$man_opts") || true
  exit 1
fi
echo "same options: $(echo $help_opts)"
