/* Unit tests of a job's VM selection (issue 19, docs/configuration.md):
 * vms = names, UUIDs, globs or all, and exclude, read from a configuration
 * file and matched against a list of the host's VMs.
 *
 * Usage: test-config-vms [test-name]; output is TAP.
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

static const char *const host[] = {
  "web01", "web02", "web-test", "db1", "db2", "mail", "[odd]", NULL,
};

/* The configuration of a job "j" whose section holds body. */
static struct vms_config *
load (const char *body)
{
  char dir[] = "/tmp/test-config-vms.XXXXXX", path[64];
  assert_non_null (mkdtemp (dir));
  snprintf (path, sizeof path, "%s/vmshadow.conf", dir);
  FILE *fp = fopen (path, "w");
  assert_non_null (fp);
  fprintf (fp, "[repository r]\npath = /srv/r\n[job j]\nrepository = r\n%s\n", body);
  fclose (fp);
  struct vms_config *c = vms_config_load (dir);
  unlink (path);
  rmdir (dir);
  assert_non_null (c);
  return c;
}

/* The VMs job j takes of host, joined by blanks. */
static char *
selected (const struct vms_config *c)
{
  const struct vms_config_job *j = vms_config_job (c, "j");
  char **names, *out = calloc (1, 1024);
  size_t n;

  assert_non_null (j);
  assert_int_equal (vms_config_job_select_from (j, host, &names, &n), 0);
  for (size_t i = 0; i < n; i++) {
    strcat (out, i ? " " : "");
    strcat (out, names[i]);
    free (names[i]);
  }
  assert_null (names[n]);
  free (names);
  return out;
}

static void
check (const char *body, int needs_host, const char *want)
{
  struct vms_config *c = load (body);
  for (size_t i = 0; i < c->nr_errors; i++)
    fprintf (stderr, "# %s\n", c->errors[i]);
  assert_int_equal (c->nr_errors, 0);
  assert_int_equal (vms_config_job_needs_host_vms (vms_config_job (c, "j")), needs_host);
  char *got = selected (c);
  assert_string_equal (got, want);
  free (got);
  vms_config_free (c);
}

static void
names_are_taken_as_they_are (void **state)
{
  (void) state;
  /* A name the host does not have stays: the backup reports it. */
  check ("vms = db1 web02 gone", 0, "web02 db1 gone");
}

static void
globs_match_the_hosts_vms (void **state)
{
  (void) state;
  check ("vms = web0?", 1, "web01 web02");
  check ("vms = web* , db[12]", 1, "web01 web02 web-test db1 db2");
  check ("vms = nomatch*", 1, "");
}

static void
exclude_leaves_vms_out_of_all_and_of_globs (void **state)
{
  (void) state;
  check ("vms = all\nexclude = *-test mail", 1, "web01 web02 db1 db2 [odd]");
  check ("vms = web*\nexclude = web-test", 1, "web01 web02");
  /* An excluded name is never backed up, even when vms names it. */
  check ("vms = db1 db2\nexclude = db2", 1, "db1");
}

static void
exclude_in_defaults_reaches_every_job (void **state)
{
  (void) state;
  check ("vms = all\n[defaults]\nexclude = db* web*", 1, "mail [odd]");
}

static void
bad_selections_are_named_with_their_line (void **state)
{
  (void) state;
  struct vms_config *c = load ("vms = all web01\nexclude = a/b\n[job k]\nrepository = r\nexclude = x");
  const char *want[] = {
    ":5: vms: 'all' and VM names together",
    ":6: exclude: 'a/b' is not a VM name, UUID or glob",
    ":7: job 'k': exclude without vms",
  };
  for (size_t w = 0; w < sizeof want / sizeof want[0]; w++) {
    int found = 0;
    for (size_t i = 0; i < c->nr_errors && !found; i++)
      found = strstr (c->errors[i], want[w]) != NULL;
    if (!found)
      for (size_t i = 0; i < c->nr_errors; i++)
        fprintf (stderr, "# %s\n", c->errors[i]);
    assert_true (found);
  }
  vms_config_free (c);
  c = load ("vms = web[0");
  assert_int_equal (c->nr_errors, 1);
  assert_non_null (strstr (c->errors[0], "'web[0' is not a VM name, UUID or glob"));
  vms_config_free (c);
}

/* Issue 19: tag:NAME takes (vms) or leaves out (exclude) the VMs whose
 * libvirt metadata has the tag; host_tags[i] are host[i]'s tags. */
static const char *const t_web01[] = { "web", "nightly", NULL };
static const char *const t_web02[] = { "web", NULL };
static const char *const t_db1[] = { "db", "nightly", NULL };
static const char *const t_db2[] = { "db", "nightly", "no-backup", NULL };
static const char *const *const host_tags[] = {
  t_web01, t_web02, NULL, t_db1, t_db2, NULL, NULL,
};

static void
check_tagged (const char *body, const char *want)
{
  struct vms_config *c = load (body);
  const struct vms_config_job *j = vms_config_job (c, "j");
  char **names, got[1024] = "";
  size_t n;

  for (size_t i = 0; i < c->nr_errors; i++)
    fprintf (stderr, "# %s\n", c->errors[i]);
  assert_int_equal (c->nr_errors, 0);
  assert_int_equal (vms_config_job_needs_host_vms (j), 1);
  assert_int_equal (vms_config_job_select_tagged (j, host, host_tags, &names, &n), 0);
  for (size_t i = 0; i < n; i++) {
    strcat (got, i ? " " : "");
    strcat (got, names[i]);
    free (names[i]);
  }
  free (names);
  assert_string_equal (got, want);
  vms_config_free (c);
}

static void
tags_select_and_exclude_by_libvirt_metadata (void **state)
{
  (void) state;
  check_tagged ("vms = tag:nightly", "web01 db1 db2");
  check_tagged ("vms = tag:nightly\nexclude = tag:no-backup", "web01 db1");
  check_tagged ("vms = tag:db mail", "db1 db2 mail");
  check_tagged ("vms = all\nexclude = tag:web tag:db", "web-test mail [odd]");
  check_tagged ("vms = tag:nosuch", "");
  /* Without the host's tags a tag: entry takes nothing and is never
   * taken as a VM's name. */
  struct vms_config *c = load ("vms = tag:db");
  char *got = selected (c);
  assert_string_equal (got, "");
  free (got);
  vms_config_free (c);
}

static void
bad_tags_are_named_with_their_line (void **state)
{
  (void) state;
  struct vms_config *c = load ("vms = tag: tag:a/b tag:web* db1\n"
                               "exclude = tag:-x tag:ok");
  const char *want[] = {
    ":5: vms: 'tag:' names no tag",
    ":5: vms: 'tag:a/b' names no tag",
    ":5: vms: 'tag:web*' names no tag",   /* tags have no globs */
    ":6: exclude: 'tag:-x' names no tag",
  };
  for (size_t i = 0; i < c->nr_errors; i++)
    fprintf (stderr, "# %s\n", c->errors[i]);
  assert_int_equal (c->nr_errors, 4);
  for (size_t w = 0; w < sizeof want / sizeof want[0]; w++)
    assert_non_null (strstr (c->errors[w], want[w]));
  vms_config_free (c);
}

int
main (int argc, char *argv[])
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (names_are_taken_as_they_are),
    cmocka_unit_test (globs_match_the_hosts_vms),
    cmocka_unit_test (exclude_leaves_vms_out_of_all_and_of_globs),
    cmocka_unit_test (exclude_in_defaults_reaches_every_job),
    cmocka_unit_test (bad_selections_are_named_with_their_line),
    cmocka_unit_test (tags_select_and_exclude_by_libvirt_metadata),
    cmocka_unit_test (bad_tags_are_named_with_their_line),
  };
  cmocka_set_message_output (CM_OUTPUT_TAP);
  if (argc > 1)
    cmocka_set_test_filter (argv[1]);
  return cmocka_run_group_tests_name ("config-vms", tests, NULL, NULL);
}
