/* Unit tests of [repository] sections (issue 19, docs/configuration.md):
 * a repository is a directory, a RADOS pool or an S3 bucket, and its
 * credentials are named by reference (files, a client id), never written
 * in the configuration; a job's run points the backends at them. A job
 * may verify its repository and sync it into another after each run.
 *
 * Usage: test-config-repos [test-name]; output is TAP.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmshadow/config.h"

/* The configuration whose only file holds text. */
static struct vms_config *
load (const char *text)
{
  char dir[] = "/tmp/test-config-repos.XXXXXX", path[64];
  assert_non_null (mkdtemp (dir));
  snprintf (path, sizeof path, "%s/vmshadow.conf", dir);
  FILE *fp = fopen (path, "w");
  assert_non_null (fp);
  fputs (text, fp);
  fclose (fp);
  struct vms_config *c = vms_config_load (dir);
  unlink (path);
  rmdir (dir);
  assert_non_null (c);
  for (size_t i = 0; i < c->nr_errors; i++)
    fprintf (stderr, "# %s\n", c->errors[i]);
  return c;
}

/* Exactly n errors besides the extra ones expected, each of want[] among them. */
static void
assert_errors (const struct vms_config *c, const char *const *want, size_t nw,
               size_t extra)
{
  assert_int_equal (c->nr_errors, nw + extra);
  for (size_t w = 0; w < nw; w++) {
    int found = 0;
    for (size_t i = 0; i < c->nr_errors; i++)
      found |= strstr (c->errors[i], want[w]) != NULL;
    if (!found)
      fail_msg ("no error says '%s'", want[w]);
  }
}

static void
remote_repositories_name_their_credentials (void **state)
{
  (void) state;
  struct vms_config *c = load (
    "[repository ceph]\n"
    "path = rados:vmshadow/host1\n"
    "rados-conf = /etc/ceph/ceph.conf\n"
    "rados-id = backup.host1\n"
    "rados-keyring = /etc/ceph/ceph.client.backup.keyring\n"
    "[repository offsite]\n"
    "path = s3://backups/kvm1\n"
    "s3-config = /etc/vmshadow/s3-offsite.conf\n"
    "[repository local]\n"
    "path = /srv/vmshadow\n");
  assert_int_equal (c->nr_errors, 0);
  const struct vms_config_repository *ceph = vms_config_repository (c, "ceph");
  const struct vms_config_repository *off = vms_config_repository (c, "offsite");
  const struct vms_config_repository *local = vms_config_repository (c, "local");
  assert_string_equal (ceph->path, "rados:vmshadow/host1");
  assert_string_equal (ceph->rados_id, "backup.host1");
  assert_string_equal (off->path, "s3://backups/kvm1");
  assert_null (local->s3_config);

  /* Using one points the backends at its credentials; what it does not
   * set is left as it was. */
  unsetenv ("VMSHADOW_RADOS_CONF");
  setenv ("VMSHADOW_S3_CONFIG", "/from/the/environment", 1);
  assert_int_equal (vms_config_repository_use (ceph), 0);
  assert_string_equal (getenv ("VMSHADOW_RADOS_CONF"), "/etc/ceph/ceph.conf");
  assert_string_equal (getenv ("VMSHADOW_RADOS_ID"), "backup.host1");
  assert_string_equal (getenv ("VMSHADOW_RADOS_KEYRING"),
                       "/etc/ceph/ceph.client.backup.keyring");
  assert_string_equal (getenv ("VMSHADOW_S3_CONFIG"), "/from/the/environment");
  assert_int_equal (vms_config_repository_use (off), 0);
  assert_string_equal (getenv ("VMSHADOW_S3_CONFIG"), "/etc/vmshadow/s3-offsite.conf");
  assert_int_equal (vms_config_repository_use (local), 0);
  assert_string_equal (getenv ("VMSHADOW_S3_CONFIG"), "/etc/vmshadow/s3-offsite.conf");
  vms_config_free (c);
}

static void
bad_repositories_are_named_with_their_line (void **state)
{
  (void) state;
  struct vms_config *c = load (
    "[repository a]\n"
    "path = relative/dir\n"                     /* 2 */
    "[repository b]\n"
    "path = rados:\n"                           /* 4 */
    "[repository c]\n"
    "path = s3://b\n"
    "rados-id = two words\n"                    /* 7 */
    "s3-config = s3.conf\n"                     /* 8 */
    "secret = hunter2\n"                        /* 9 */
    "[repository d]\n"                          /* 10 */
    "path = /srv/d\n"
    "s3-config = /etc/vmshadow/s3.conf\n"
    "[repository e]\n"                          /* 13 */
    "path = s3://e\n"
    "rados-keyring = /etc/ceph/k\n");
  const char *want[] = {
    ":2: path must be an absolute directory, rados:POOL[/NAMESPACE] or s3://BUCKET[/PREFIX], not 'relative/dir'",
    ":4: path must be an absolute directory",
    ":7: rados-id must be a Ceph client id",
    ":8: s3-config must be an absolute path, not 's3.conf'",
    ":9: unknown key 'secret'",
    ":10: repository 'd': s3-config is for an s3:// path",
    ":13: repository 'e': rados-conf, rados-id and rados-keyring are for a rados: path",
  };
  /* a and b have no path: each is said once more, as "has no path" */
  assert_errors (c, want, sizeof want / sizeof want[0], 2);
  vms_config_free (c);
}

static void
jobs_verify_and_sync_after (void **state)
{
  (void) state;
  struct vms_config *c = load (
    "[repository here]\npath = /srv/here\n"
    "[repository offsite]\npath = s3://b/p\n"
    "[defaults]\nsync-to = offsite\nverify-after = yes\n"
    "[job a]\nrepository = here\n"
    "[job b]\nrepository = here\nverify-after = deep\nsync-to = here\n"  /* at 10 */
    "[job c]\nrepository = here\nverify-after = often\nsync-to = nowhere\n"); /* at 14 */
  const struct vms_config_job *a = vms_config_job (c, "a"), *b = vms_config_job (c, "b");
  assert_string_equal (a->sync_to, "offsite");
  assert_int_equal (a->verify_after, 1);
  assert_int_equal (b->verify_after, 2);
  const char *want[] = {
    ":10: job 'b': sync-to is the job's own repository 'here'",
    ":16: verify-after must be no, yes or deep, not 'often'",
    ":14: job 'c': sync-to names repository 'nowhere', which is not defined",
  };
  assert_errors (c, want, sizeof want / sizeof want[0], 0);
  vms_config_free (c);
}

int
main (int argc, char *argv[])
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (remote_repositories_name_their_credentials),
    cmocka_unit_test (bad_repositories_are_named_with_their_line),
    cmocka_unit_test (jobs_verify_and_sync_after),
  };
  cmocka_set_message_output (CM_OUTPUT_TAP);
  if (argc > 1)
    cmocka_set_test_filter (argv[1]);
  return cmocka_run_group_tests_name ("config-repos", tests, NULL, NULL);
}
