#!/bin/bash
# with-s3.sh CMD ARG...: start (or reuse) the lab's S3 gateway through
# s3-lib.sh, make a bucket of this run's own (VMSLAB_S3_BUCKET), run CMD
# with the VMSHADOW_S3_* of the lab's test user, then remove the bucket
# (issue 14: the storage contract against the S3 backend). Exits 77 with
# the reason where the gateway cannot run.
set -uo pipefail
. "$(dirname "$0")/s3-lib.sh"
s3_lab_start
s3_bucket VMSLAB_S3_BUCKET vmshadow-test
export VMSLAB_S3_BUCKET
"$@"
