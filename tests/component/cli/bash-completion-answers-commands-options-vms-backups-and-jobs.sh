#!/bin/bash
# Issue 19: the bash completion (cli/completion/vmshadow), run in bash as
# readline would run it, answers: the commands; each command's options (and
# only its own); the values of --method; VM names from virsh (a test double
# here: the VMs of the lab are the vm suite's); backup ids from the
# repository of --repo, else of the configuration's repositories; job names
# from the configuration (--config); run/check after job/config.
# Usage: bash-completion-...sh VMSHADOW COMPLETION-SCRIPT VIRSH-DOUBLE
source "$(dirname "$0")/cli-lib.sh"
completion=$(realpath "$2")
mkdir -p "$tmp/bin"
ln -s "$(realpath "$3")" "$tmp/bin/virsh"
export PATH=$tmp/bin:$PATH VIRSH_DOUBLE_VMS="web01 web02 db1" VIRSH_DOUBLE_ARGS=$tmp/virsh.args
unset VMSHADOW_REPO
source "$completion"
complete -p vmshadow | grep -q "_vmshadow" || fail "the script registers no completion for vmshadow"

# complete WORDS...: COMPREPLY for the last word (the one being typed),
# sorted, on one line.
complete_line () {
  COMP_WORDS=("$vmshadow" "$@")
  COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
  COMP_LINE="${COMP_WORDS[*]}" COMP_POINT=${#COMP_LINE}
  _vmshadow
  printf '%s\n' "${COMPREPLY[@]}" | sort | tr '\n' ' ' | sed 's/ $//'
}
expect () {   # WANT WORDS...
  local want=$1; shift
  local got; got=$(complete_line "$@")
  [ "$got" = "$want" ] || fail "completing 'vmshadow $*': got '$got', wanted '$want'"
}

# The first completion in a shell asks every command's help which options
# take a value and keeps the answer in that shell, as readline's shell does;
# each expect below runs in a subshell of this one, so ask it here once.
complete_line res >/dev/null
[ -n "${_vmshadow_valued:-}" ] || fail "the completion keeps no list of options that take a value"

# Commands, also after a global option.
expect "restore" res
expect "serve show status sync" s
expect "serve show status sync" -v s
[ "$(complete_line "" | wc -w)" = "$("$vmshadow" --help | awk '/^Commands:/ { on = 1; next } /^$/ { on = 0 } on' | wc -l)" ] \
  || fail "not every command is completed: $(complete_line "")"
# Options: the command's own, from its help.
expect "--keep-daily --keep-last --keep-monthly --keep-weekly" prune --keep
expect "--grace" gc --g
expect "" list --deep
expect "--dry-run" restore --dr
expect "--prometheus" status --p
# Option values.
expect "online" backup --method on
expect "crash-consistent" backup --fallback cr
expect "keep" restore x --existing k
# VM names after backup (and after --vm), from virsh list --all --name,
# over the URI of -c.
expect "web01 web02" backup web
expect "db1 web01 web02" backup -c qemu:///session --vm ""
grep -q -- "-c qemu:///session list --all --name" "$VIRSH_DOUBLE_ARGS" || fail "virsh was not asked over -c: $(cat "$VIRSH_DOUBLE_ARGS")"

# Backup ids: from --repo (options before or after the command).
app_writer
"$vmshadow" backup --repo "$tmp/r1" >/dev/null
"$vmshadow" backup --repo "$tmp/r1" >/dev/null
"$vmshadow" backup --repo "$tmp/r2" >/dev/null
ids1=$(ls "$tmp/r1/backups" | sort | tr '\n' ' ' | sed 's/ $//')
id2=$(ls "$tmp/r2/backups")
[ "$(wc -w <<<"$ids1")" = 2 ] || fail "two backups expected in r1: $ids1"
expect "$ids1" show --repo "$tmp/r1" ""
expect "$ids1" --repo "$tmp/r1" restore ""
expect "$id2" --repo="$tmp/r2" verify ""
expect "${ids1%% *}" show --repo "$tmp/r1" "${ids1:0:20}"
# ... else from the repositories of the configuration, and job names.
conf=$tmp/etc
mkdir -p "$conf/jobs.d"
cat > "$conf/vmshadow.conf" <<EOF2
[repository one]
path = $tmp/r1
[repository two]
path = $tmp/r2
[defaults]
repository = one
EOF2
printf '[job nightly]\nvms = all\n[job apps]\nrepository = two\n' > "$conf/jobs.d/a.conf"
"$vmshadow" config check --config "$conf" >/dev/null || fail "the configuration is bad"
expect "$(tr ' ' '\n' <<<"$ids1 $id2" | sort | tr '\n' ' ' | sed 's/ $//')" show --config "$conf" ""
expect "prune run timers verify" job ""
expect "apps nightly" job run --config "$conf" ""
expect "apps nightly" job verify --config "$conf" ""
expect "nightly" --config "$conf" job run n
expect "check" config ""
expect "backup" help bac
echo "completion answers commands, options, values, VMs, backup ids and jobs"
