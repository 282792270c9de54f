# tests/vm/vm-writer-lib.sh — helpers for the end-to-end VM writer tests
# (tests/vm/vm-writer-*.sh, issue 5).  Sourced after lib.sh and lab_init;
# not a test itself.
#
#   vmw_init                       repository, state and scratch dirs in $LAB_WORK
#   vmw_backup [OPTION...] VM...   vmshadow backup --json; sets VMW_BID, VMW_SUMMARY
#   vmw_show BACKUP                show --json into $VMW_SHOW
#   vmw_attr UUID KEY              a VM component's attribute in $VMW_SHOW
#   vmw_extract BACKUP UUID PATH TO [FORMAT]
#   vmw_fsck_clean IMAGE WHAT      clean ext4 that needs no journal replay (R11)
#   vmw_encrypted_repo DIR         an encrypted repository; its key in $VMW_KEY_SECRET
#   vmw_assert_key_hidden WHAT PID...  that key in no environ/cmdline of PIDs
#
# Each vmshadow run's stdout/stderr are kept in $LAB_WORK/vmshadow-<command>-*.out/.err;
# the last backup's summary (--json) stays in $VMW_SUMMARY.

# vmw_init: the command under test, a repository of this test's own, and
# the VM writer's state dir on the file system of the disk images (R9: the
# scratch files of the online method must be there).  Exec writers of the
# host take no part: the writers dir is an empty dir.
vmw_init() {
    VMSHADOW=${VMSHADOW:-}
    [ -n "$VMSHADOW" ] && [ -x "$VMSHADOW" ] ||
        lab_skip "VMSHADOW does not name the built vmshadow command (run through meson test)"
    VMW_REPO=$LAB_WORK/repo
    mkdir -p "$LAB_WORK/state" "$LAB_WORK/scratch" "$LAB_WORK/writers.d"
    export VMSHADOW_VM_STATE_DIR=$LAB_WORK/state
    export VMSHADOW_SCRATCH_DIR=$LAB_WORK/scratch
    export VMSHADOW_WRITERS_DIR=$LAB_WORK/writers.d
}

# vmw_vmshadow ARG... — run vmshadow on the test's repository; its stdout
# goes to $VMW_OUT, stderr to $VMW_ERR; returns its exit status.
vmw_vmshadow() {
    # (a unique name also when called inside $(...), where a counter would not count)
    VMW_OUT=$(mktemp "$LAB_WORK/vmshadow-$1-XXXXXX.out")
    VMW_ERR=${VMW_OUT%.out}.err
    local rc=0
    "$VMSHADOW" --repo "$VMW_REPO" "$@" >"$VMW_OUT" 2>"$VMW_ERR" || rc=$?
    return $rc
}

# vmw_backup [OPTION...] VM... — vmshadow backup --json; its summary (or
# failure report) in $VMW_SUMMARY; when one set was stored (exit 0, or 3:
# stored with warnings, e.g. disks left out) sets VMW_BID to the new
# backup's id.  Returns vmshadow's exit status.
vmw_backup() {
    VMW_BID=
    local rc=0
    vmw_vmshadow backup --json "$@" || rc=$?
    VMW_SUMMARY=$VMW_OUT
    if [ $rc -eq 0 ] || { [ $rc -eq 3 ] && jq -e .backup_id "$VMW_OUT" >/dev/null 2>&1; }; then
        VMW_BID=$(jq -r '.backup_id // empty' "$VMW_OUT" 2>/dev/null)
        # (with --each: one backup per set, in .sets[].backup_id)
        [ -n "$VMW_BID" ] || jq -e .sets "$VMW_OUT" >/dev/null 2>&1 ||
            lab_fail "vmshadow backup succeeded but printed no backup_id: $(head -c 400 "$VMW_OUT")"
    fi
    return $rc
}

# vmw_backup_failure — one line: what the last failed backup reported.
vmw_backup_failure() {
    { jq -c '.failure // .' "$VMW_SUMMARY" 2>/dev/null; tail -n 5 "${VMW_SUMMARY%.out}.err"; } | tr '\n' ' '
}

# vmw_backup_count — the number of backups `vmshadow list` shows.
vmw_backup_count() {
    [ -d "$VMW_REPO" ] || { echo 0; return; }
    vmw_vmshadow list --json || lab_fail "vmshadow list failed: $(tail -n 3 "$VMW_ERR" | tr '\n' ' ')"
    jq '.backups | length' "$VMW_OUT"
}

# vmw_show BACKUP — `vmshadow show --json` into $VMW_SHOW.
vmw_show() {
    vmw_vmshadow show --json "$1" || lab_fail "vmshadow show $1 failed: $(tail -n 3 "$VMW_ERR" | tr '\n' ' ')"
    VMW_SHOW=$LAB_WORK/show-$1.json
    cp "$VMW_OUT" "$VMW_SHOW"
}

# vmw_component UUID — the VM writer's component of that VM in $VMW_SHOW (JSON).
vmw_component() {
    jq -c --arg u "$1" '[.components_document.writers[] | select(.name == "libvirt-vm")
        | .components[] | select(.name == $u)] | first // empty' "$VMW_SHOW"
}

# vmw_attr UUID KEY — the attribute's value (raw), empty when absent.
vmw_attr() {
    vmw_component "$1" | jq -r --arg k "$2" '.attributes[$k] // empty'
}

# vmw_caption UUID
vmw_caption() {
    vmw_component "$1" | jq -r '.caption // empty'
}

# vmw_file_field UUID PATH FIELD — a field (bytes_read, bytes_stored, size)
# of one stored file in $VMW_SHOW.
vmw_file_field() {
    jq -r --arg u "$1" --arg p "$2" --arg f "$3" \
        '[.files[] | select(.component == $u and .path == $p) | .[$f]] | first // empty' "$VMW_SHOW"
}

# vmw_extract BACKUP UUID PATH TO [FORMAT] — extract one file, failing the test.
vmw_extract() {
    vmw_vmshadow extract "$1" "$2" "$3" --to "$4" ${5:+--format "$5"} ||
        lab_fail "vmshadow extract $1 $2 $3 failed: $(tail -n 3 "$VMW_ERR" | tr '\n' ' ')"
}

# vmw_fsck_clean IMAGE WHAT — the ext4 in IMAGE (raw) is clean as it is:
# no journal recovery pending (R11) and e2fsck -fn finds nothing.
vmw_fsck_clean() {
    local img=$1 what=$2 out=$LAB_WORK/fsck-$RANDOM.out
    if dumpe2fs -h "$img" 2>/dev/null | grep -E '^Filesystem features:' | grep -w needs_recovery >/dev/null; then
        lab_fail "$what: the ext4 needs journal recovery (needs_recovery set): not auto-recovered (R11)"
    fi
    e2fsck -fn "$img" >"$out" 2>&1 ||
        lab_fail "$what: e2fsck -fn finds problems: $(tail -n 5 "$out" | tr '\n' ' ')"
    if grep -qiE 'recover|journal' "$out"; then
        lab_fail "$what: e2fsck -fn talks of journal recovery: $(grep -iE 'recover|journal' "$out" | tr '\n' ' ')"
    fi
}

# vmw_wait_records DOM FILE N — until FILE in the guest holds at least N
# records (64 bytes each); prints the count.
vmw_wait_records() {
    local dom=$1 f=$2 want=$3 n=0 i
    for i in $(seq 150); do
        n=$(lab_guest_run "$dom" "echo \$((\$(wc -c <$f) / 64))")
        [ "$n" -ge "$want" ] && break
        sleep 0.2
    done
    [ "$n" -ge "$want" ] || lab_fail "busy writer in $dom wrote only $n records"
    echo "$n"
}

# vmw_checkpoints DOM — vmshadow's checkpoints of DOM, sorted, one line.
vmw_checkpoints() {
    virsh -q checkpoint-list "$1" --name 2>/dev/null | grep '^vmshadow-' | sort | tr '\n' ' '
}

# vmw_encrypted_repo DIR — an encrypted repository (R28; issue 13) at DIR,
# its key in $LAB_WORK/keys (a cheap scrypt: tests), passphrase
# $VMW_PASSPHRASE; sets $VMW_KEY_SECRET to the key's 64 hex digits (read
# back from the paper key) so a test can look for it where it must not be.
# Commands then get the passphrase from $VMSHADOW_PASSPHRASE or
# --passphrase-fd.
VMW_PASSPHRASE=vm-test-passphrase
vmw_encrypted_repo() {
    export VMSHADOW_KEY_DIR=$LAB_WORK/keys VMSHADOW_SCRYPT_LOG2N=14
    VMSHADOW_PASSPHRASE=$VMW_PASSPHRASE "$VMSHADOW" --repo "$1" init --encrypt >/dev/null ||
        lab_fail "vmshadow init --encrypt $1 failed"
    VMW_KEY_SECRET=$(VMSHADOW_PASSPHRASE=$VMW_PASSPHRASE "$VMSHADOW" --repo "$1" key export --paper |
        awk '/^[1-4]: /{printf "%s%s%s%s", $2, $3, $4, $5}')
    [ ${#VMW_KEY_SECRET} = 64 ] || lab_fail "cannot read the key of $1 back from its paper form"
}

# vmw_assert_key_hidden WHAT PID... — the key of vmw_encrypted_repo is in
# no environment or command line of these processes (nbdkit gets it on a
# pipe: docs/encryption.md).
vmw_assert_key_hidden() {
    local what=$1 p f
    shift
    for p in "$@"; do
        for f in environ cmdline; do
            if tr '\0' '\n' <"/proc/$p/$f" 2>/dev/null | grep -qi "$VMW_KEY_SECRET"; then
                lab_fail "$what: the key is in the $f of process $p ($(tr '\0' ' ' <"/proc/$p/cmdline" | head -c 100))"
            fi
        done
    done
}
