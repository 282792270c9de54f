# tests/vm/restore-lib.sh — helpers for the restore tests
# (tests/vm/restore-*.sh, issue 6).  Sourced after lib.sh, lab_init and
# vm-writer-lib.sh (vmw_init); not a test itself.
#
#   rst_restore ARG...        vmshadow restore --json ARG...; JSON in $RST_OUT,
#                             stderr (and a JSON error's message) in $RST_ERR;
#                             returns its exit status
#   rst_vm_field NAME FIELD   a field of one VM in the last restore's JSON
#   rst_forget DOM            destroy and undefine DOM, delete its disk images
#   rst_host_state DOM... -- FILE...  one line per domain (UUID, state) and
#                             file, to show that a refused restore changed nothing

rst_restore() {
    local rc=0
    vmw_vmshadow restore --json "$@" || rc=$?
    RST_OUT=$VMW_OUT
    RST_ERR=$VMW_ERR
    # A refusal under --json is one JSON object on stdout, {"error",
    # "exit_code"} (issue 20): its exit_code must be the exit status, and
    # its message goes to $RST_ERR too, where the tests read messages.
    if [ $rc -ne 0 ] && jq -e 'has("error") and has("exit_code") and (has("vms") | not)' "$RST_OUT" >/dev/null 2>&1; then
        [ "$(jq .exit_code "$RST_OUT")" = "$rc" ] ||
            lab_fail "restore exited $rc but its JSON error says $(jq -c .exit_code "$RST_OUT")"
        jq -r .error "$RST_OUT" >>"$RST_ERR"
    fi
    return $rc
}

rst_vm_field() {
    jq -r --arg n "$1" --arg f "$2" \
        '[.vms[] | select(.name == $n or .uuid == $n) | .[$f]] | first // empty
         | if type == "array" then join("\n") else . end' "$RST_OUT"
}

rst_forget() {
    local dom=$1 f
    virsh -q destroy "$dom" >/dev/null 2>&1 || true
    virsh -q undefine "$dom" --nvram --checkpoints-metadata --snapshots-metadata >/dev/null || lab_fail "cannot undefine $dom"
    for f in "${!LAB_DISK_FILE[@]}"; do
        [[ $f == "$dom/"* ]] && rm -f "${LAB_DISK_FILE[$f]}"
    done
    return 0
}

# rst_host_state DOM... -- FILE... — the fingerprint of what a restore may
# change: each domain's UUID and state (or "absent"), each file's size,
# mtime and type.  (Only the test's own domains: other tests run beside.)
rst_host_state() {
    local d f
    while [ $# -gt 0 ] && [ "$1" != -- ]; do
        d=$1
        shift
        echo "$d $(virsh -q domuuid "$d" 2>/dev/null || echo absent) $(virsh -q domstate "$d" 2>/dev/null | sed -n 1p)"
    done
    [ $# -gt 0 ] && shift
    for f in "$@"; do
        stat -c '%n %s %Y %F' "$f" 2>/dev/null || echo "$f absent"
    done
}
