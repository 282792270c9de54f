# tests/s3/s3-lib.sh — source it: the lab's S3 endpoint (the RADOS Gateway
# on the lab's Ceph cluster, lab/ceph.sh rgw; issue 14) for a test.
#
#   s3_lab_start       start (or reuse) the cluster and its gateway, or exit
#                      77 saying why it cannot run; export VMSLAB_S3_* and
#                      VMSHADOW_S3_ENDPOINT/REGION/ACCESS_KEY_ID/
#                      SECRET_ACCESS_KEY (the test user's); every bucket
#                      made by s3_bucket is removed at exit (an EXIT trap
#                      set later replaces this one: call s3_lab_cleanup)
#   s3_bucket VAR NAME make a bucket unique to this run (NAME-PID-RANDOM,
#                      lower case) and set VAR to its name
#   s3_bucket_locked VAR NAME  the same, the bucket with Object Lock enabled
#   s3_curl ARGS...    curl signed as the test user (for what vmshadow does
#                      not do itself: making buckets, looking at objects)
#   s3_put FILE URL    put FILE there as the test user; fails on any answer
#                      but 200
#
# VMSLAB_LAB_DIR names lab/ (meson sets it; default: ../../lab from here).

s3_lab_dir=${VMSLAB_LAB_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../lab" && pwd)}
s3_lab_buckets=()

s3_lab_start () {
  local rc=0
  [ "$(id -u)" = 0 ] || { echo "SKIP: the lab's S3 gateway (RADOS Gateway on the lab's Ceph cluster) needs root" >&2; exit 77; }
  "$s3_lab_dir/ceph.sh" rgw -q || rc=$?
  case $rc in
    0) ;;
    77) exit 77 ;;      # lab/ceph.sh said why on stderr
    *) echo "FAIL: lab/ceph.sh rgw failed (exit $rc)" >&2; exit 1 ;;
  esac
  eval "$("$s3_lab_dir/ceph.sh" env)"
  [ -n "${VMSLAB_S3_ENDPOINT:-}" ] || { echo "FAIL: lab/ceph.sh env printed no VMSLAB_S3_ENDPOINT" >&2; exit 1; }
  unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_ENDPOINT_URL \
    AWS_ENDPOINT_URL_S3 AWS_PROFILE VMSHADOW_S3_SESSION_TOKEN VMSHADOW_S3_ADDRESSING
  export VMSHADOW_S3_ENDPOINT=$VMSLAB_S3_ENDPOINT VMSHADOW_S3_REGION=$VMSLAB_S3_REGION
  export VMSHADOW_S3_ACCESS_KEY_ID=$VMSLAB_S3_ACCESS_KEY_ID
  export VMSHADOW_S3_SECRET_ACCESS_KEY=$VMSLAB_S3_SECRET_ACCESS_KEY
  # No file of the host's own is read by a test: an empty one instead.
  s3_lab_conf=$(mktemp /tmp/vmshadow-s3-test.XXXXXX)
  export VMSHADOW_S3_CONFIG=$s3_lab_conf AWS_SHARED_CREDENTIALS_FILE=$s3_lab_conf
  local prev
  prev=$(trap -p EXIT)
  prev=${prev#trap -- \'}
  prev=${prev%\' EXIT}
  trap "s3_lab_cleanup${prev:+; $prev}" EXIT
}

s3_curl () {
  curl -sS --aws-sigv4 "aws:amz:$VMSLAB_S3_REGION:s3" \
    -u "$VMSLAB_S3_ACCESS_KEY_ID:$VMSLAB_S3_SECRET_ACCESS_KEY" \
    -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" "$@"
}

s3_put () {
  local code
  code=$(curl -sS -o /dev/null -w '%{http_code}' --aws-sigv4 "aws:amz:$VMSLAB_S3_REGION:s3" \
    -u "$VMSLAB_S3_ACCESS_KEY_ID:$VMSLAB_S3_SECRET_ACCESS_KEY" \
    -H "x-amz-content-sha256: $(sha256sum < "$1" | cut -c1-64)" -T "$1" "$2")
  [ "$code" = 200 ]
}

s3_bucket () {
  local s3_b_ code
  s3_b_=$2-$$-$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
  code=$(s3_curl -o /dev/null -w '%{http_code}' -X PUT "$VMSLAB_S3_ENDPOINT/$s3_b_")
  [ "$code" = 200 ] || { echo "FAIL: cannot make bucket $s3_b_ (HTTP $code)" >&2; exit 1; }
  s3_lab_buckets+=("$s3_b_")
  printf -v "$1" '%s' "$s3_b_"
}

# s3_bucket_locked VAR NAME: the same, with S3 Object Lock enabled (and so
# versioning; no default retention: vmshadow dates each object; issue 14).
s3_bucket_locked () {
  local s3_b_ code
  s3_b_=$2-$$-$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
  code=$(s3_curl -o /dev/null -w '%{http_code}' -X PUT \
    -H "x-amz-bucket-object-lock-enabled: true" "$VMSLAB_S3_ENDPOINT/$s3_b_")
  [ "$code" = 200 ] || { echo "FAIL: cannot make bucket $s3_b_ with Object Lock (HTTP $code)" >&2; exit 1; }
  s3_lab_buckets+=("$s3_b_")
  printf -v "$1" '%s' "$s3_b_"
}

# Remove the buckets this test made, with everything in them.
s3_lab_cleanup () {
  local b
  rm -f "$s3_lab_conf"
  for b in "${s3_lab_buckets[@]}"; do
    timeout 120 radosgw-admin --conf "$VMSLAB_CEPH_CONF" bucket rm --bucket="$b" \
      --purge-objects >/dev/null 2>&1
  done
}
