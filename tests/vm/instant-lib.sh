# tests/vm/instant-lib.sh — helpers for the instant recovery and boot check
# tests (tests/vm/instant-*.sh, verify-boot-*.sh; issue 16).  Sourced after
# lib.sh, lab_init, vm-writer-lib.sh (vmw_init) and restore-lib.sh.
#
#   inst_init                    instant-recovery state dir in $LAB_WORK
#   inst_fill_disks DOM          6 MiB of random data at the start of vda
#                                (qcow2) and vdb (raw); the expected content
#                                of each kept as raw in $LAB_WORK/DOM-vdX.expected
#   inst_start BACKUP [ARG...]   vmshadow restore --instant --json in the
#                                background: $INST_PID, $INST_OUT, $INST_ERR
#   inst_wait_running DOM        until the restore has started DOM
#   inst_wait_copy DOM DEV       until libvirt's copy job of DEV runs
#   inst_release_move DOM DEV    that job at full speed
#   inst_guest_write DOM DEV MIB SEED  the guest writes 1 MiB of the lab's
#                                pattern (vmslab-pattern) at MIB MiB of
#                                /dev/DEV (and the expected file gets it too)
#   inst_guest_check DOM DEV MIB SEED  the guest reads those bytes back
#   inst_assert_final DOM        the VM runs from its final images; nothing
#                                of the instant restore is left
#   inst_assert_images DOM       (VM off) each image is its expected content
#   inst_leftovers               what of instant recovery is left (empty: none)
#   inst_watch_exports SECRET    (in the background) waits for an export of
#                                the instant dir and prints "PID keyfd|no-keyfd
#                                clean|LEAK": given its key on a descriptor,
#                                SECRET in its environ or cmdline or not

inst_init() {
    [ -n "${VMSHADOW_NBDKIT_PLUGIN:-}" ] && [ -f "$VMSHADOW_NBDKIT_PLUGIN" ] ||
        lab_skip "nbdkit-vmshadow-plugin was not built (nbdkit-plugin-dev missing, or a sanitizer build: nbdkit cannot load an ASan module)"
    export VMSHADOW_INSTANT_DIR=$LAB_WORK/instant
    lab__undo_push pidfiles "$VMSHADOW_INSTANT_DIR"
}

inst_fill_disks() {
    local dom=$1 dev f exp size
    for dev in vda vdb; do
        size=$(stat -c %s "${LAB_DISK_FILE[$dom/$dev]}")
        [ "${LAB_DISK_FMT[$dom/$dev]}" = qcow2 ] &&
            size=$(qemu-img info --output=json "${LAB_DISK_FILE[$dom/$dev]}" | jq -r '.["virtual-size"]')
        f=${LAB_DISK_FILE[$dom/$dev]}
        exp=$LAB_WORK/$dom-$dev.expected
        truncate -s "$size" "$exp"
        head -c $((6 * 1024 * 1024)) /dev/urandom | dd of="$exp" conv=notrunc status=none
        if [ "${LAB_DISK_FMT[$dom/$dev]}" = qcow2 ]; then
            rm -f "$f"
            qemu-img convert -q -f raw -O qcow2 "$exp" "$f" || lab_fail "qemu-img convert to $f failed"
        else
            cp --sparse=always "$exp" "$f"
        fi
    done
}

inst_start() {
    local bid=$1
    shift
    INST_OUT=$(mktemp "$LAB_WORK/instant-XXXXXX.out")
    INST_ERR=${INST_OUT%.out}.err
    "$VMSHADOW" --repo "$VMW_REPO" restore --instant --json "$@" "$bid" \
        >"$INST_OUT" 2>"$INST_ERR" &
    INST_PID=$!
    lab__undo_push pid "$INST_PID" restore
}

# inst_wait_running DOM — until the instant restore has started DOM (fails
# when the restore ends first).
inst_wait_running() {
    local i
    for i in $(seq 1 600); do
        [ "$(virsh -q domstate "$1" 2>/dev/null | head -n 1)" = running ] && return 0
        kill -0 "$INST_PID" 2>/dev/null ||
            lab_fail "restore --instant ended before $1 ran: $(tail -n 5 "$INST_ERR") $(head -c 800 "$INST_OUT")"
        sleep 0.1
    done
    lab_fail "$1 did not run within 60 s of restore --instant"
}

# inst_wait_copy DOM DEV — until libvirt's copy job of DEV runs (fails when
# the restore ends first).
inst_wait_copy() {
    local i out=
    for i in $(seq 1 1200); do
        out=$(virsh blockjob "$1" "$2" --info 2>&1 || true)
        grep -qi copy <<<"$out" && return 0
        kill -0 "$INST_PID" 2>/dev/null ||
            lab_fail "restore --instant ended before the copy of $2 ran (virsh: $out): $(tail -n 3 "$INST_ERR") $(head -c 600 "$INST_OUT")"
        sleep 0.1
    done
    lab_fail "no copy job on $2 of $1 within 120 s (virsh: $out)"
}

# inst_release_move DOM DEV — let the copy of DEV go at full speed (the
# tests start the restore with --bandwidth 1 and a disk large enough that
# its copy outlasts a TCG boot on a loaded machine; QEMU's rate limit lets
# at least one chunk through per slice, so a lower speed would hold no
# better).
inst_release_move() {
    virsh -q blockjob "$1" "$2" --bandwidth 0 >/dev/null ||
        lab_fail "cannot let the copy of $2 of $1 go"
}

inst_guest_write() {
    local dom=$1 dev=$2 mib=$3 seed=$4
    lab_guest_run "$dom" "vmslab-pattern write /dev/$dev $seed $((mib * 1048576)) 1048576" >/dev/null
    "$LAB_DIR/guest/bin/vmslab-pattern" gen "$seed" $((mib * 1048576)) 1048576 |
        dd of="$LAB_WORK/$dom-$dev.expected" bs=1048576 seek="$mib" conv=notrunc status=none
}

inst_guest_check() {
    local dom=$1 dev=$2 mib=$3 seed=$4
    lab_guest_exec "$dom" "vmslab-pattern check /dev/$dev $seed $((mib * 1048576)) 1048576" >/dev/null ||
        lab_fail "the guest does not read back what it wrote at $mib MiB of $dev"
}

# Everything instant recovery makes: its directory's content, nbdkit
# processes serving from it (this test's: the directory is its own).
inst_leftovers() {
    local p
    ls -A "$VMSHADOW_INSTANT_DIR" 2>/dev/null | sed 's/^/instant dir: /'
    for p in $(pgrep -x nbdkit || true); do
        tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -F -- "$VMSHADOW_INSTANT_DIR" | sed "s/^/nbdkit $p: /"
    done
    return 0                    # (what it printed is the answer)
}

inst_assert_final() {
    local dom=$1 left live inactive
    lab_assert_eq "vda of $dom" "$(virsh -q domblklist "$dom" | awk '$1 == "vda" {print $2}')" "${LAB_DISK_FILE[$dom/vda]}"
    lab_assert_eq "vdb of $dom" "$(virsh -q domblklist "$dom" | awk '$1 == "vdb" {print $2}')" "${LAB_DISK_FILE[$dom/vdb]}"
    live=$(virsh dumpxml "$dom")
    inactive=$(virsh dumpxml --inactive "$dom")
    if grep -q "protocol='nbd'\|$VMSHADOW_INSTANT_DIR" <<<"$live$inactive"; then
        lab_fail "the definition of $dom still names an overlay or export: $(grep "nbd\|$VMSHADOW_INSTANT_DIR" <<<"$live$inactive" | head -n 3)"
    fi
    left=$(inst_leftovers)
    [ -z "$left" ] || lab_fail "left behind: $left"
}

inst_assert_images() {
    local dom=$1 vda=${LAB_DISK_FILE[$dom/vda]} vdb=${LAB_DISK_FILE[$dom/vdb]}
    lab_assert_eq "format of vda" "$(qemu-img info --output=json "$vda" | jq -r .format)" qcow2
    lab_assert_eq "format of vdb" "$(qemu-img info --output=json -f raw "$vdb" | jq -r .format)" raw
    qemu-img convert -q -f qcow2 -O raw "$vda" "$LAB_WORK/vda.now" || lab_fail "cannot read $vda"
    cmp "$LAB_WORK/vda.now" "$LAB_WORK/$dom-vda.expected" ||
        lab_fail "vda of $dom is not the backup plus the guest's writes"
    cmp "$vdb" "$LAB_WORK/$dom-vdb.expected" ||
        lab_fail "vdb of $dom is not the backup plus the guest's writes"
    rm -f "$LAB_WORK/vda.now"
}

# inst_watch_exports SECRET — for exports that live only while a command
# runs (verify --boot): looks at the first one while it serves. No lab_*
# calls: it runs in a background subshell.
inst_watch_exports() {
    local secret=$1 p cmd env
    for _ in $(seq 1200); do
        for p in $(pgrep -x nbdkit || true); do
            cmd=$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null) || continue
            [[ $cmd == *"$VMSHADOW_INSTANT_DIR"* ]] || continue
            env=$(tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null) || continue
            printf '%s %s %s\n' "$p" \
                "$([[ " $cmd " == *" keyfd=3 "* ]] && echo keyfd || echo no-keyfd)" \
                "$(grep -qi "$secret" <<<"$cmd $env" && echo LEAK || echo clean)"
            return 0
        done
        sleep 0.1
    done
    return 1
}
