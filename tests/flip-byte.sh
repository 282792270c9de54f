# flip_byte FILE OFFSET: XOR the byte at OFFSET of FILE with 0xff, in place
# (issue 9, item 10). A test that damages data must change the byte
# whatever it was: writing a fixed value leaves a byte that already had
# it unchanged (1 time in 256). Sourced by tests that damage a chunk (bash).
flip_byte () {
    local file=$1 offset=$2 old
    old=$(od -An -tu1 -j "$offset" -N1 "$file" | tr -d ' ')
    [[ $old =~ ^[0-9]+$ ]] || { echo "flip_byte: no byte at $offset of $file" >&2; return 1; }
    printf "\\$(printf '%03o' $(( old ^ 0xff )))" |
        dd of="$file" bs=1 seek="$offset" conv=notrunc status=none
}
