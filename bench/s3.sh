#!/bin/bash
# bench/s3.sh — a backup straight to S3 (the lab's RADOS Gateway on
# loopback: lab/ceph.sh rgw) against the same backup into a local version 2
# repository, in one run, as ratios against the raw read of the data
# measured in the same run; and the S3 requests per GiB stored (backup)
# and per GiB verified (verify --deep), counted by tests/s3/fault-proxy.py
# in pass-through mode in a second, untimed pass (issue 14).
#
#   bench/s3.sh [BUILD-DIR] [MiB]     (default: build 1024)
#
# The data: MiB/2 of random bytes, then the same again (half deduplicates),
# one file backed up by an exec writer. Page cache dropped before each
# timed step (needs root); the gateway's and the OSD's own caches are not
# (client, gateway, monitor and OSD share this machine's CPUs). Packs are
# the default 32 MiB: on S3 each goes as one PUT (multipart uploads are off
# unless VMSHADOW_S3_PART_SIZE is set, which this script passes through).
# Run it under the lab lock (flock /var/lock/vmshadow-vm-suite) this
# session; once.
set -euo pipefail
BUILD=${1:-build}
MIB=${2:-1024}
VMS=$(realpath "$BUILD")/cli/vmshadow
[ -x "$VMS" ] || { echo "no $VMS: build first" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "needs root (to drop the page cache)" >&2; exit 1; }
VMSLAB_LAB_DIR=$(cd "$(dirname "$0")/../lab" && pwd)
export VMSLAB_LAB_DIR
. "$(dirname "$0")/../tests/s3/s3-lib.sh"
WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/vms-bench-s3-XXXXXX")
proxy_pid=
trap '[ -n "$proxy_pid" ] && kill "$proxy_pid" 2>/dev/null; rm -rf "$WORK"; s3_lab_cleanup' EXIT
s3_lab_start
trap '[ -n "$proxy_pid" ] && kill "$proxy_pid" 2>/dev/null; rm -rf "$WORK"; s3_lab_cleanup' EXIT
s3_bucket bucket vmshadow-bench
export VMSHADOW_SCRATCH_DIR=$WORK/scratch VMSHADOW_WRITERS_DIR=$WORK/writers.d
unset VMSHADOW_REPO VMSHADOW_REPO_FORMAT VMSHADOW_REPO_PACK_SIZE
mkdir -p "$VMSHADOW_WRITERS_DIR"
echo "$(nproc) CPUs; load average $(cut -d' ' -f1-3 /proc/loadavg); $MIB MiB of data"
head -c $((MIB / 2 * 1048576)) /dev/urandom > "$WORK/half"
cat "$WORK/half" "$WORK/half" > "$WORK/data"
rm "$WORK/half"
cat > "$VMSHADOW_WRITERS_DIR/bench" <<W
#!/bin/sh
[ "\$1" = identify ] || exit 0
cat <<JSON
{"format": "vmshadow-writer-metadata", "version": 1,
 "writer": {"name": "bench", "id": "0d9f3c1e-2b4a-4c5d-8e6f-7a8b9c0d1e2f"},
 "components": [{"name": "data", "files": [{"path": "$WORK/data", "kind": "plain"}]}]}
JSON
W
chmod 755 "$VMSHADOW_WRITERS_DIR/bench"

drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
declare -A T=()
run() {   # NAME CMD...: timed, page cache dropped first
  local name=$1 t0 t1; shift
  drop
  t0=$(date +%s.%N)
  "$@" > "$WORK/$name.out" 2>&1 || { echo "$name failed: $(cat "$WORK/$name.out")" >&2; exit 1; }
  t1=$(date +%s.%N)
  T[$name]=$(echo "$t1 - $t0" | bc -l)
}
ratio() { echo "scale=2; $1 / $2" | bc -l; }

run raw cat "$WORK/data"
"$VMS" --repo "$WORK/local" init > /dev/null
run local_backup "$VMS" --repo "$WORK/local" backup
run local_verify "$VMS" --repo "$WORK/local" verify --deep
"$VMS" --repo "s3://$bucket/timed" init > /dev/null
run s3_backup "$VMS" --repo "s3://$bucket/timed" backup
run s3_verify "$VMS" --repo "s3://$bucket/timed" verify --deep
stored=$(du -sb "$WORK/local/packs" | cut -f1)

# The requests, through the pass-through proxy (not timed).
gateway=$VMSHADOW_S3_ENDPOINT
python3 "$(dirname "$0")/../tests/s3/fault-proxy.py" "${gateway##*:}" ok "$WORK/port" "$WORK/proxy.log" &
proxy_pid=$!
for _ in $(seq 1 50); do [ -s "$WORK/port" ] && break; sleep 0.1; done
export VMSHADOW_S3_ENDPOINT=http://127.0.0.1:$(cat "$WORK/port")
"$VMS" --repo "s3://$bucket/counted" init > /dev/null
: > "$WORK/proxy.log"
"$VMS" --repo "s3://$bucket/counted" backup > /dev/null
nb=$(wc -l < "$WORK/proxy.log")
cp "$WORK/proxy.log" "$WORK/backup.requests"
: > "$WORK/proxy.log"
"$VMS" --repo "s3://$bucket/counted" verify --deep > /dev/null
nv=$(wc -l < "$WORK/proxy.log")
npg=$(grep -c "^GET /$bucket/counted/packs/" "$WORK/proxy.log" || true)
cp "$WORK/proxy.log" "$WORK/verify.requests"
kill "$proxy_pid"; wait "$proxy_pid" 2>/dev/null || true; proxy_pid=

gib=$(echo "scale=6; $stored / 1073741824" | bc -l)
echo
echo "| step | seconds | vs raw read | S3 vs local |"
echo "|---|---|---|---|"
echo "| raw read (cat) of $MIB MiB | $(printf %.2f "${T[raw]}") | 1 | |"
echo "| backup, local v2 | $(printf %.2f "${T[local_backup]}") | $(ratio "${T[local_backup]}" "${T[raw]}") | |"
echo "| backup, S3 (RGW) | $(printf %.2f "${T[s3_backup]}") | $(ratio "${T[s3_backup]}" "${T[raw]}") | $(ratio "${T[s3_backup]}" "${T[local_backup]}") |"
echo "| verify --deep, local | $(printf %.2f "${T[local_verify]}") | $(ratio "${T[local_verify]}" "${T[raw]}") | |"
echo "| verify --deep, S3 | $(printf %.2f "${T[s3_verify]}") | $(ratio "${T[s3_verify]}" "${T[raw]}") | $(ratio "${T[s3_verify]}" "${T[local_verify]}") |"
echo
echo "stored: $stored bytes of packs ($(printf %.3f "$gib") GiB)"
echo "backup: $nb requests, $(printf %.0f "$(echo "$nb / $gib" | bc -l)") per GiB stored ($(awk '{print $1}' "$WORK/backup.requests" | sort | uniq -c | tr '\n' ' '))"
echo "verify --deep: $nv requests, $(printf %.0f "$(echo "$nv / $gib" | bc -l)") per GiB verified ($(awk '{print $1}' "$WORK/verify.requests" | sort | uniq -c | tr '\n' ' ')); of them $npg GETs of packs, $(printf %.0f "$(echo "$npg / $gib" | bc -l)") per GiB"
