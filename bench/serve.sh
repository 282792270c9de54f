#!/bin/bash
# bench/serve.sh — random reads through `vmshadow serve` (nbdkit-vmshadow-
# plugin, issue 16) against the raw limit measured in the same run: the
# same reads through qemu-nbd from the image file itself.
#
#   bench/serve.sh [BUILD-DIR [COUNT]]        (default: build 2000)
#
# The image: 1 GiB of random data in a 2 GiB raw file, backed up by an exec
# writer into a fresh repository (format 1, and format 2 with packs).
# Random 4 KiB reads at fixed offsets (one seed), one at a time:
#   cold   page cache dropped, a fresh server (empty chunk cache): every
#          read fetches, decompresses and re-hashes a 128 KiB chunk
#   warm   the same offsets again through the same server
# over a 32 MiB span (256 chunks: they fit the 64 MiB chunk cache) and over
# the whole GiB (they do not). The raw line is qemu-nbd on the image file,
# page cache dropped first. Needs root (drop_caches).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(realpath "${1:-$ROOT/build}")
COUNT=${2:-2000}
V=$BUILD/cli/vmshadow DRV=$BUILD/lib/datapath/vms-bench-randread
export VMSHADOW_NBDKIT_PLUGIN=$BUILD/plugins/nbdkit/nbdkit-vmshadow-plugin.so
WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/vmshadow-bench-serve.XXXXXX")
pid=
trap '[ -z "$pid" ] || kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
export VMSHADOW_WRITERS_DIR=$WORK/w VMSHADOW_SCRATCH_DIR=$WORK/scratch TMPDIR=$WORK
mkdir -p "$VMSHADOW_WRITERS_DIR"
GiB=$((1 << 30))
head -c $GiB /dev/urandom > "$WORK/disk.raw"
truncate -s $((2 * GiB)) "$WORK/disk.raw"
cat > "$VMSHADOW_WRITERS_DIR/app" <<W
#!/bin/sh
[ "\$1" = identify ] || exit 0
cat <<JSON
{"format": "vmshadow-writer-metadata", "version": 1,
 "writer": {"name": "bench", "id": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"},
 "components": [{"name": "disk", "files": [{"path": "$WORK/disk.raw", "kind": "disk", "format": "raw"}]}]}
JSON
W
chmod 755 "$VMSHADOW_WRITERS_DIR/app"

# reads NAME URI SPAN: one line of figures.
reads() {
  printf '  %-22s %s\n' "$1" "$("$DRV" "$2" "$COUNT" "$3" 7 | tr '\n' ' ')"
}
# serve_start REPO ID: $uri of a fresh server.
serve_start() {
  "$V" --repo "$1" serve "$2" disk > "$WORK/uri" 2>/dev/null &
  pid=$!
  for _ in $(seq 200); do [ -s "$WORK/uri" ] && break; sleep 0.05; done
  uri=$(cat "$WORK/uri")
}
serve_stop() { kill "$pid"; wait "$pid" || true; pid=; rm -f "$WORK/uri"; }

echo "random 4 KiB reads, $COUNT per line, one at a time; $(nproc) CPUs; load $(cut -d' ' -f1-3 /proc/loadavg)"
for span in $((32 << 20)) $GiB; do
  echo "== span $((span >> 20)) MiB"
  drop
  qemu-nbd --read-only --persistent --socket="$WORK/raw.sock" -f raw "$WORK/disk.raw" &
  q=$!
  for _ in $(seq 100); do [ -S "$WORK/raw.sock" ] && break; sleep 0.05; done
  reads "raw (qemu-nbd), cold" "nbd+unix:///?socket=$WORK/raw.sock" "$span"
  kill "$q"; wait "$q" 2>/dev/null || true; rm -f "$WORK/raw.sock"
  for fmt in 1 2; do
    repo=$WORK/repo$fmt
    if [ ! -d "$repo" ]; then
      "$V" --repo "$repo" init --format $fmt >/dev/null
      "$V" --repo "$repo" backup >/dev/null
    fi
    id=$("$V" --repo "$repo" list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["backups"][-1]["backup_id"])')
    drop
    serve_start "$repo" "$id"
    reads "format $fmt, cold" "$uri" "$span"
    reads "format $fmt, warm" "$uri" "$span"
    serve_stop
  done
done
