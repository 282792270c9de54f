/* The storage backend contract (storage-contract.c) run against the S3
 * backend (storage-s3.c, issue 14) on the lab's RADOS Gateway: each test
 * gets a prefix of its own in the bucket $VMSLAB_S3_BUCKET (removed with
 * the bucket by tests/s3/with-s3.sh); plus what only this backend has: the
 * backend's own objects (clock/, lock) are never listed, the writer lock
 * excludes a second client, a listing of more than one page (1000 keys)
 * is whole, virtual-host addressing reaches the same objects, credentials
 * come from a file only its owner may read, and bad credentials, a
 * missing bucket, bad specs and plain HTTP to another host are refused
 * when the store is opened, saying why. Run through tests/s3/with-s3.sh,
 * which starts the gateway (or skips, exit 77, saying why). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "storage-contract.h"
#include "vmshadow/error.h"

static const char *bucket;
static unsigned counter;

static struct storage *
s3_open_fresh (void)
{
  char spec[256];
  snprintf (spec, sizeof spec, "%s/contract-%d-%u", bucket, (int) getpid (),
            counter++);
  struct storage *s = storage_s3_open (spec);
  if (s == NULL)
    fprintf (stderr, "# storage_s3_open %s: %s\n", spec, vms_get_error ());
  return s;
}

static void
s3_destroy (struct storage *s)
{
  storage_contract_empty_and_close (s);
}

static void
the_backends_own_objects_are_never_listed (void **state)
{
  (void) state;
  struct storage *s = s3_open_fresh ();
  int64_t t;
  int n = 0;
  assert_non_null (s);
  assert_int_equal (storage_now (s, &t), 0);          /* puts clock/... */
  assert_int_equal (storage_s3_lock (s, "lock", "test"), 0);
  assert_int_equal (storage_put (s, "config", "c", 1, 0), 0);
  assert_int_equal (storage_list (s, "", storage_contract_count, &n), 0);
  assert_int_equal (n, 1);
  s3_destroy (s);
}

static void
the_lock_excludes_a_second_client_until_released (void **state)
{
  (void) state;
  char spec[256], who[256];
  struct storage *a = s3_open_fresh ();
  assert_non_null (a);
  snprintf (spec, sizeof spec, "%s/contract-%d-%u", bucket, (int) getpid (),
            counter - 1);
  struct storage *a2 = storage_s3_open (spec);
  assert_non_null (a2);
  assert_int_equal (storage_s3_lock (a, "lock", "vmshadow pid 1"), 0);
  assert_int_equal (storage_s3_lock (a2, "lock", "vmshadow pid 2"), -1);
  assert_int_equal (errno, EBUSY);
  assert_int_equal (storage_s3_lock_holder (a2, "lock", who, sizeof who), 0);
  assert_non_null (strstr (who, "vmshadow pid 1 on "));
  storage_close (a);            /* releases the lock */
  assert_int_equal (storage_s3_lock (a2, "lock", "vmshadow pid 2"), 0);
  s3_destroy (a2);
}

static void
a_listing_of_more_than_one_page_is_whole (void **state)
{
  (void) state;
  struct storage *s = s3_open_fresh ();
  char name[64];
  int n = 0;
  assert_non_null (s);
  /* ListObjectsV2 gives at most 1000 keys a page. */
  for (int i = 0; i < 1003; i++) {
    snprintf (name, sizeof name, "index/%04d", i);
    assert_int_equal (storage_put (s, name, "", 0, 0), 0);
  }
  assert_int_equal (storage_put (s, "packs/00/p", "x", 1, 0), 0);
  assert_int_equal (storage_list (s, "index/", storage_contract_count, &n), 0);
  assert_int_equal (n, 1003);
  n = 0;
  assert_int_equal (storage_list (s, "", storage_contract_count, &n), 0);
  assert_int_equal (n, 1004);
  s3_destroy (s);
}

static void
virtual_host_addressing_reaches_the_same_objects (void **state)
{
  (void) state;
  struct storage *s = s3_open_fresh ();
  char spec[256], ep[256], buf[5];
  const char *path_ep = getenv ("VMSHADOW_S3_ENDPOINT");
  assert_non_null (s);
  assert_int_equal (storage_put (s, "backups/2026-12-02T02:00:00Z/manifest",
                                 "hello", 5, 0), 0);
  /* http://127.0.0.1:PORT -> http://localhost:PORT: BUCKET.localhost
   * (the gateway's DNS name is localhost, lab/ceph.sh). */
  const char *port = strrchr (path_ep, ':');
  assert_non_null (port);
  snprintf (ep, sizeof ep, "http://localhost%s", port);
  setenv ("VMSHADOW_S3_ENDPOINT", ep, 1);
  setenv ("VMSHADOW_S3_ADDRESSING", "virtual", 1);
  snprintf (spec, sizeof spec, "%s/contract-%d-%u", bucket, (int) getpid (),
            counter - 1);
  struct storage *v = storage_s3_open (spec);
  setenv ("VMSHADOW_S3_ENDPOINT", path_ep, 1);
  unsetenv ("VMSHADOW_S3_ADDRESSING");
  assert_non_null (v);
  assert_int_equal (storage_get (v, "backups/2026-12-02T02:00:00Z/manifest",
                                 0, 5, buf), 0);
  assert_memory_equal (buf, "hello", 5);
  storage_close (v);
  s3_destroy (s);
}

/* storage_s3_open (spec) fails and its message holds want. */
static void
open_fails (const char *spec, const char *want)
{
  struct storage *s = storage_s3_open (spec);
  if (s)
    storage_close (s);
  assert_null (s);
  if (strstr (vms_get_error (), want) == NULL)
    fail_msg ("s3://%s: \"%s\" does not say \"%s\"", spec, vms_get_error (), want);
}

static void
bad_specs_credentials_and_buckets_are_refused_at_open (void **state)
{
  (void) state;
  char spec[256], *secret = strdup (getenv ("VMSHADOW_S3_SECRET_ACCESS_KEY"));
  const char *ep = getenv ("VMSHADOW_S3_ENDPOINT");
  char *ep_saved = strdup (ep);
  char *id = strdup (getenv ("VMSHADOW_S3_ACCESS_KEY_ID"));

  open_fails ("", "the form is s3://BUCKET");
  open_fails ("Upper_Case", "the form is s3://BUCKET");
  open_fails ("ab", "the form is s3://BUCKET");
  snprintf (spec, sizeof spec, "%s/a b", bucket);
  open_fails (spec, "a prefix is components");
  snprintf (spec, sizeof spec, "%s/../x", bucket);
  open_fails (spec, "a prefix is components");
  open_fails ("vmshadow-no-such-bucket-x1", "HTTP 404 NoSuchBucket (no such bucket");
  setenv ("VMSHADOW_S3_SECRET_ACCESS_KEY", "wrong", 1);
  open_fails (bucket, "HTTP 403 SignatureDoesNotMatch");
  setenv ("VMSHADOW_S3_SECRET_ACCESS_KEY", secret, 1);
  unsetenv ("VMSHADOW_S3_ACCESS_KEY_ID");
  open_fails (bucket, "set both VMSHADOW_S3_ACCESS_KEY_ID");
  unsetenv ("VMSHADOW_S3_SECRET_ACCESS_KEY");
  open_fails (bucket, "no credentials for s3://");
  setenv ("VMSHADOW_S3_ACCESS_KEY_ID", "AKIDEXAMPLE", 1);
  setenv ("VMSHADOW_S3_SECRET_ACCESS_KEY", secret, 1);
  setenv ("VMSHADOW_S3_ENDPOINT", "http://192.0.2.1:7480", 1);
  open_fails (bucket, "plain HTTP to another host");
  setenv ("VMSHADOW_S3_ENDPOINT", "ftp://127.0.0.1", 1);
  open_fails (bucket, "no http:// or https:// URL");
  setenv ("VMSHADOW_S3_ENDPOINT", "http://127.0.0.1:7480/path", 1);
  open_fails (bucket, "(no path)");
  /* Nothing listens on port 1: the connection is refused, after retries. */
  setenv ("VMSHADOW_S3_RETRIES", "2", 1);
  setenv ("VMSHADOW_S3_ENDPOINT", "http://127.0.0.1:1", 1);
  open_fails (bucket, "cannot reach http://127.0.0.1:1/");
  unsetenv ("VMSHADOW_S3_RETRIES");
  setenv ("VMSHADOW_S3_ENDPOINT", ep_saved, 1);
  open_fails (bucket, "HTTP 403 InvalidAccessKeyId");
  setenv ("VMSHADOW_S3_ACCESS_KEY_ID", id, 1);
  free (id);
  free (secret);
  free (ep_saved);
}

static void
credentials_come_from_a_file_only_its_owner_may_read (void **state)
{
  (void) state;
  char path[] = "/tmp/vmshadow-s3-conf.XXXXXX";
  int fd = mkstemp (path);
  FILE *f;
  char *id = strdup (getenv ("VMSHADOW_S3_ACCESS_KEY_ID"));
  char *secret = strdup (getenv ("VMSHADOW_S3_SECRET_ACCESS_KEY"));
  char *ep = strdup (getenv ("VMSHADOW_S3_ENDPOINT"));
  char *saved_conf = strdup (getenv ("VMSHADOW_S3_CONFIG"));

  assert_true (fd >= 0);
  f = fdopen (fd, "w");
  assert_non_null (f);
  fprintf (f, "[default]\nendpoint = http://127.0.0.1:1\nregion = us-east-1\n"
           "access_key_id = %s\nsecret_access_key = wrong\n\n[%s]\n"
           "endpoint = %s\nsecret_access_key = %s\n", id, bucket, ep, secret);
  fclose (f);
  unsetenv ("VMSHADOW_S3_ACCESS_KEY_ID");
  unsetenv ("VMSHADOW_S3_SECRET_ACCESS_KEY");
  unsetenv ("VMSHADOW_S3_ENDPOINT");
  setenv ("VMSHADOW_S3_CONFIG", path, 1);
  /* The bucket's section wins over [default]. */
  struct storage *s = storage_s3_open (bucket);
  if (s == NULL)
    fail_msg ("open with %s: %s", path, vms_get_error ());
  storage_close (s);
  chmod (path, 0640);
  open_fails (bucket, "no group or other may access");
  chmod (path, 0600);
  f = fopen (path, "a");
  fprintf (f, "secret_key = x\n");
  fclose (f);
  open_fails (bucket, "unknown key at line 10");
  unlink (path);
  setenv ("VMSHADOW_S3_CONFIG", saved_conf, 1);
  setenv ("VMSHADOW_S3_ACCESS_KEY_ID", id, 1);
  setenv ("VMSHADOW_S3_SECRET_ACCESS_KEY", secret, 1);
  setenv ("VMSHADOW_S3_ENDPOINT", ep, 1);
  free (id);
  free (secret);
  free (ep);
  free (saved_conf);
}

int
main (int argc, char *argv[])
{
  const struct CMUnitTest own[] = {
    cmocka_unit_test (the_backends_own_objects_are_never_listed),
    cmocka_unit_test (the_lock_excludes_a_second_client_until_released),
    cmocka_unit_test (a_listing_of_more_than_one_page_is_whole),
    cmocka_unit_test (virtual_host_addressing_reaches_the_same_objects),
    cmocka_unit_test (bad_specs_credentials_and_buckets_are_refused_at_open),
    cmocka_unit_test (credentials_come_from_a_file_only_its_owner_may_read),
  };

  bucket = getenv ("VMSLAB_S3_BUCKET");
  if (bucket == NULL || getenv ("VMSHADOW_S3_ENDPOINT") == NULL) {
    fprintf (stderr, "SKIP: no lab S3 gateway (run through "
             "tests/s3/with-s3.sh, which sets VMSLAB_S3_BUCKET and "
             "VMSHADOW_S3_*)\n");
    return 77;
  }
  storage_contract.open = s3_open_fresh;
  storage_contract.destroy = s3_destroy;
  return storage_contract_run ("storage-s3", own, sizeof own / sizeof own[0],
                               argc, argv);
}
