/* Restore sessions driven with test-double writers (R6, R16, R17): the
 * event order, the file restore status ALL / NONE / FAILED reaching each
 * writer in PostRestore, and no file restore after a failed PreRestore. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "test-doubles.h"
#include "vmshadow/error.h"

#define ID_A "11111111-1111-4111-8111-111111111111"

/* A backup components document as a backup of writer A would store it:
 * three components, made through a real backup session. */
static vms_document *
make_backup (void)
{
  struct event_log log;
  struct fake_writer a;
  struct fake_provider p;
  vms_coordinator *coord = vms_coordinator_new ();
  vms_document *bcd;

  event_log_init (&log);
  fake_writer_init (&a, "A", ID_A, &log);
  a.files[0] = "/srv/a/one";
  fake_provider_init (&p, "P", &log);
  assert_int_equal (fake_writer_add (coord, &a), 0);
  assert_int_equal (fake_provider_add (coord, &p), 0);
  vms_session *s = vms_backup_session_new (coord, "backup-r");
  assert_int_equal (vms_session_identify (s), 0);
  assert_int_equal (vms_session_prepare_backup (s), 0);
  assert_int_equal (vms_session_do_snapshot_set (s), 0);
  assert_int_equal (vms_session_backup_complete (s, 1), 0);
  bcd = vms_document_copy (vms_session_components (s));
  vms_session_free (s);
  vms_coordinator_free (coord);
  event_log_free (&log);
  assert_non_null (bcd);
  assert_int_equal (vms_document_component_count (bcd, ID_A), 2);
  return bcd;
}

/* Every restore test: a backup of writer A (make_backup) and a fresh
 * coordinator and fake writer A, which the test configures and adds. */
struct restore_fixture {
  vms_document *bcd;
  struct event_log log;
  struct fake_writer a;
  vms_coordinator *coord;
};

static int
setup (void **state)
{
  struct restore_fixture *f = calloc (1, sizeof *f);
  f->bcd = make_backup ();
  event_log_init (&f->log);
  fake_writer_init (&f->a, "A", ID_A, &f->log);
  f->coord = vms_coordinator_new ();
  *state = f;
  return 0;
}

static int
teardown (void **state)
{
  struct restore_fixture *f = *state;
  vms_coordinator_free (f->coord);
  vms_document_free (f->bcd);
  event_log_free (&f->log);
  free (f);
  return 0;
}

static void
restore_status_all_none_failed_reaches_post_restore (void **state)
{
  struct restore_fixture *f = *state;

  f->a.veto_post_restore_unless_all = 1;
  assert_int_equal (fake_writer_add (f->coord, &f->a), 0);

  vms_session *s = vms_restore_session_new (f->coord, f->bcd, NULL, 0);
  assert_non_null (s);
  /* R16: nothing may be written back before PreRestore finished. */
  assert_int_equal (vms_session_set_restore_status (s, ID_A, "data", VMS_RESTORE_ALL), -1);
  assert_int_equal (vms_session_pre_restore (s), 0);
  assert_int_equal (vms_session_set_restore_status (s, ID_A, "data", VMS_RESTORE_ALL), 0);
  assert_int_equal (vms_session_set_restore_status (s, ID_A, "logs", VMS_RESTORE_NONE), 0);
  assert_int_equal (vms_session_set_restore_status (s, ID_A, "missing", VMS_RESTORE_ALL), -1);
  assert_int_equal (vms_session_post_restore (s), -1);
  assert_int_equal (f->a.seen_status[0], VMS_RESTORE_ALL);
  assert_int_equal (f->a.seen_status[1], VMS_RESTORE_NONE);
  struct vms_writer_status st;
  assert_int_equal (vms_session_writer_status (s, 0, &st), 0);
  assert_string_equal (vms_writer_state_name (st.state, st.failed_at), "failed-at-post-restore");
  assert_int_equal (vms_session_state (s), VMS_SESSION_RESTORED);
  vms_session_free (s);

  char *got = event_log_of (&f->log, "A");
  assert_string_equal (got, "identify pre-restore post-restore");
  free (got);

  /* Once more with FAILED and ALL. */
  f->a.seen_status[0] = f->a.seen_status[1] = VMS_RESTORE_UNSET;
  s = vms_restore_session_new (f->coord, f->bcd, NULL, 0);
  assert_int_equal (vms_session_pre_restore (s), 0);
  assert_int_equal (vms_session_set_restore_status (s, ID_A, "data", VMS_RESTORE_FAILED), 0);
  assert_int_equal (vms_session_set_restore_status (s, ID_A, "logs", VMS_RESTORE_ALL), 0);
  assert_int_equal (vms_session_post_restore (s), -1);
  assert_int_equal (f->a.seen_status[0], VMS_RESTORE_FAILED);
  assert_int_equal (f->a.seen_status[1], VMS_RESTORE_ALL);
  vms_session_free (s);

  /* And everything ALL: PostRestore succeeds. */
  s = vms_restore_session_new (f->coord, f->bcd, NULL, 0);
  assert_int_equal (vms_session_pre_restore (s), 0);
  assert_int_equal (vms_session_set_restore_status (s, ID_A, "data", VMS_RESTORE_ALL), 0);
  assert_int_equal (vms_session_set_restore_status (s, ID_A, "logs", VMS_RESTORE_ALL), 0);
  assert_int_equal (vms_session_post_restore (s), 0);
  assert_int_equal (vms_session_writer_status (s, 0, &st), 0);
  assert_int_equal (st.state, VMS_WRITER_STABLE);
  vms_session_free (s);

}

static void
unset_status_counts_as_not_restored (void **state)
{
  struct restore_fixture *f = *state;

  f->a.veto_post_restore_unless_all = 1;
  assert_int_equal (fake_writer_add (f->coord, &f->a), 0);
  vms_session *s = vms_restore_session_new (f->coord, f->bcd, NULL, 0);
  assert_int_equal (vms_session_pre_restore (s), 0);
  assert_int_equal (vms_session_post_restore (s), -1);
  assert_int_equal (f->a.seen_status[0], VMS_RESTORE_UNSET);
  vms_session_free (s);
}

static void
veto_at_pre_restore_stops_the_restore (void **state)
{
  struct restore_fixture *f = *state;
  struct vms_session_failure fail;

  f->a.veto_at = VMS_EVENT_PRE_RESTORE;
  f->a.veto_kind = VMS_FAILURE_NON_RETRYABLE;
  assert_int_equal (fake_writer_add (f->coord, &f->a), 0);
  vms_session *s = vms_restore_session_new (f->coord, f->bcd, NULL, 0);
  assert_int_equal (vms_session_pre_restore (s), -1);
  assert_int_equal (vms_session_failure (s, &fail), 0);
  assert_int_equal (fail.phase, VMS_EVENT_PRE_RESTORE);
  /* R16: no file may be restored, and PostRestore does not come. */
  assert_int_equal (vms_session_set_restore_status (s, ID_A, "data", VMS_RESTORE_ALL), -1);
  assert_int_equal (vms_session_post_restore (s), -1);
  vms_session_free (s);
  char *got = event_log_of (&f->log, "A");
  assert_string_equal (got, "identify pre-restore");
  free (got);
}

static void
restore_writers_see_the_stored_metadata_not_todays (void **state)
{
  struct restore_fixture *f = *state;

  /* What the writer said at backup time differs from what it says now. */
  vms_document *stored = vms_metadata_new ("A", ID_A);
  assert_non_null (vms_metadata_add_component (stored, "data", "as backed up"));
  const vms_document *mds[] = { stored };

  assert_int_equal (fake_writer_add (f->coord, &f->a), 0);
  vms_session *s = vms_restore_session_new (f->coord, f->bcd, mds, 1);
  assert_non_null (s);
  vms_document_free (stored);     /* the session keeps its own copy */
  assert_int_equal (vms_session_pre_restore (s), 0);
  assert_non_null (f->a.metadata_caption_seen);
  assert_string_equal (f->a.metadata_caption_seen, "as backed up");
  vms_session_free (s);
}

static void
restore_needs_a_components_document (void **state)
{
  vms_coordinator *coord = vms_coordinator_new ();
  vms_document *md = vms_metadata_new ("w", ID_A);
  assert_null (vms_restore_session_new (coord, md, NULL, 0));
  assert_non_null (strstr (vms_get_error (), "components document"));
  vms_document_free (md);
  vms_coordinator_free (coord);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown (restore_status_all_none_failed_reaches_post_restore, setup, teardown),
    cmocka_unit_test_setup_teardown (unset_status_counts_as_not_restored, setup, teardown),
    cmocka_unit_test_setup_teardown (veto_at_pre_restore_stops_the_restore, setup, teardown),
    cmocka_unit_test_setup_teardown (restore_writers_see_the_stored_metadata_not_todays, setup, teardown),
    cmocka_unit_test (restore_needs_a_components_document),
  };
  return cmocka_run_group_tests_name ("restore-session", tests, NULL, NULL);
}
