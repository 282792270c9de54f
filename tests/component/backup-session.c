/* Backup sessions driven with test-double writers and providers: the event
 * order of R2, a veto at every phase, a Freeze that overruns its budget,
 * a provider commit that times out, and the document rules of R5. Each
 * failure must leave the right writer states, send Abort and BackupShutdown
 * to every writer, and count nothing as backed up (R12). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "log.h"
#include "test-doubles.h"
#include "vmshadow/error.h"

#define ID_A "11111111-1111-4111-8111-111111111111"
#define ID_B "22222222-2222-4222-8222-222222222222"

struct fixture {
  struct event_log log;
  struct fake_writer a, b;
  struct fake_provider p;
  vms_coordinator *coord;
};

static int
setup (void **state)
{
  struct fixture *f = calloc (1, sizeof *f);
  event_log_init (&f->log);
  fake_writer_init (&f->a, "A", ID_A, &f->log);
  fake_writer_init (&f->b, "B", ID_B, &f->log);
  f->a.files[0] = "/srv/a/data.db";
  f->b.files[0] = "/srv/b/disk.img";
  f->b.files[1] = "/srv/b/vm.xml";
  fake_provider_init (&f->p, "P", &f->log);
  f->coord = vms_coordinator_new ();
  *state = f;
  return 0;
}

static int
teardown (void **state)
{
  struct fixture *f = *state;
  vms_coordinator_free (f->coord);
  event_log_free (&f->log);
  free (f);
  return 0;
}

static void
add_all (struct fixture *f)
{
  assert_int_equal (fake_writer_add (f->coord, &f->a), 0);
  assert_int_equal (fake_writer_add (f->coord, &f->b), 0);
  assert_int_equal (fake_provider_add (f->coord, &f->p), 0);
}

static void
assert_events (struct event_log *log, const char *who, const char *expected)
{
  char *got = event_log_of (log, who);
  if (strcmp (got, expected) != 0)
    fail_msg ("%s got events\n  \"%s\"\nexpected\n  \"%s\"", who, got, expected);
  free (got);
}

static void
assert_writer_state (vms_coordinator *coord, size_t i, const char *state,
                     enum vms_failure kind)
{
  struct vms_writer_status st;
  assert_int_equal (vms_coordinator_writer_status (coord, i, &st), 0);
  const char *name = vms_writer_state_name (st.state, st.failed_at);
  if (strcmp (name, state) != 0)
    fail_msg ("writer %s is %s, expected %s (%s)", st.name, name, state,
              st.message ? st.message : "no message");
  assert_int_equal (st.failure, kind);
  if (kind != VMS_FAILURE_NONE) {
    assert_non_null (st.message);
    /* R4: the message names the writer. */
    assert_non_null (strstr (st.message, st.name));
  }
}

/* Run a backup as far as it goes; returns the state it stopped in. */
static enum vms_session_state
run_backup (vms_coordinator *coord, vms_session *s)
{
  if (vms_session_identify (s) == -1 ||
      vms_session_prepare_backup (s) == -1 ||
      vms_session_do_snapshot_set (s) == -1 ||
      vms_session_backup_complete (s, 1) == -1)
    assert_non_null (vms_get_error ());
  return vms_session_state (s);
}

/* Issue 10, the writer <-> provider <-> requester contract: the requester
 * hands a component's previous checkpoint to its writer before
 * PrepareForSnapshot, and reads the provider's access whole (URI, changed
 * extents and the base they are relative to, the incremental flag). */
static void
previous_checkpoint_and_incremental_access_pass_through_the_session (void **state)
{
  struct fixture *f = *state;
  struct vms_access a;
  f->p.incremental_base = "cp-1";
  add_all (f);
  vms_session *s = vms_backup_session_new (f->coord, "backup-1");
  assert_non_null (s);

  assert_int_equal (vms_session_identify (s), 0);
  /* Only between PrepareForBackup and the snapshot set. */
  assert_int_equal (vms_session_set_previous_checkpoint (s, ID_A, "data", "cp-0"), -1);
  assert_int_equal (vms_session_prepare_backup (s), 0);
  assert_int_equal (vms_session_set_previous_checkpoint (s, ID_A, "data", "cp-1"), 0);
  assert_int_equal (vms_session_set_previous_checkpoint (s, ID_A, "nothing", "cp-1"), -1);
  assert_int_equal (vms_session_do_snapshot_set (s), 0);
  assert_string_equal (f->a.previous_seen, "cp-1");
  assert_string_equal (f->b.previous_seen, "");
  assert_int_equal (vms_session_set_previous_checkpoint (s, ID_A, "data", "cp-2"), -1);

  assert_int_equal (vms_session_file_access_get (s, ID_B, "data", "/srv/b/vm.xml", &a), 0);
  assert_string_equal (a.uri, "nbd+unix:///data?socket=/run/test.sock");
  assert_null (a.path);
  assert_string_equal (a.changed_extents, "qemu:dirty-bitmap:test");
  assert_string_equal (a.base, "cp-1");
  assert_int_equal (a.flags, VMS_ACCESS_CHANGED_EXTENTS);
  assert_int_equal (vms_session_file_access_get (s, ID_B, "data", "/not/there", &a), -1);
  assert_int_equal (vms_session_backup_complete (s, 1), 0);
  vms_session_free (s);
}

static void
backup_runs_every_event_in_order (void **state)
{
  struct fixture *f = *state;
  add_all (f);
  vms_session *s = vms_backup_session_new (f->coord, "backup-1");
  assert_non_null (s);

  assert_int_equal (vms_session_identify (s), 0);
  assert_int_equal (vms_session_prepare_backup (s), 0);
  assert_int_equal (vms_session_do_snapshot_set (s), 0);
  assert_int_equal (vms_session_state (s), VMS_SESSION_SNAPSHOTTED);
  assert_writer_state (f->coord, 0, "waiting-for-backup-complete", VMS_FAILURE_NONE);

  /* The requester reads the shadow copies the provider handed out. */
  const char *access = vms_session_file_access (s, ID_B, "data", "/srv/b/vm.xml");
  assert_non_null (access);
  assert_string_equal (access, "snap:/srv/b/vm.xml");
  assert_null (vms_session_file_access (s, ID_B, "data", "/not/there"));

  assert_int_equal (vms_session_backup_complete (s, 1), 0);
  assert_int_equal (vms_session_state (s), VMS_SESSION_COMPLETED);
  assert_int_equal (vms_session_failure (s, &(struct vms_session_failure) {0}), -1);
  vms_session_free (s);

  const char *order = "identify prepare-backup prepare-snapshot freeze thaw "
    "post-snapshot backup-complete backup-shutdown";
  assert_events (&f->log, "A", order);
  assert_events (&f->log, "B", order);
  assert_events (&f->log, "P", "prepare commit release");
  /* The provider prepares after PrepareForSnapshot and commits between
   * every Freeze and every Thaw. */
  assert_true (event_log_find (&f->log, "P", "prepare") > event_log_find (&f->log, "A", "prepare-snapshot"));
  assert_true (event_log_find (&f->log, "P", "commit") > event_log_find (&f->log, "A", "freeze"));
  assert_true (event_log_find (&f->log, "P", "commit") > event_log_find (&f->log, "B", "freeze"));
  assert_true (event_log_find (&f->log, "P", "commit") < event_log_find (&f->log, "A", "thaw"));
  assert_true (event_log_find (&f->log, "P", "commit") < event_log_find (&f->log, "B", "thaw"));
  assert_writer_state (f->coord, 0, "stable", VMS_FAILURE_NONE);
  assert_writer_state (f->coord, 1, "stable", VMS_FAILURE_NONE);
}

/* One writer vetoes at the given event: the whole set is aborted. */
static void
veto_at (void **state, enum vms_event ev, const char *a_expected,
         const char *b_expected, const char *p_expected)
{
  struct fixture *f = *state;
  struct vms_session_failure fail;

  f->a.veto_at = ev;
  f->a.veto_kind = VMS_FAILURE_RETRYABLE;
  add_all (f);
  vms_session *s = vms_backup_session_new (f->coord, NULL);
  assert_non_null (s);
  assert_int_equal (run_backup (f->coord, s), VMS_SESSION_ABORTED);
  assert_int_equal (vms_session_failure (s, &fail), 0);
  assert_int_equal (fail.phase, ev);
  assert_int_equal (fail.kind, VMS_FAILURE_RETRYABLE);
  assert_string_equal (fail.culprit, "A");
  assert_false (fail.is_provider);
  /* Nothing counts as backed up: no shadow copy is readable any more. */
  assert_null (vms_session_file_access (s, ID_A, "data", "/srv/a/data.db"));
  vms_session_free (s);

  char expected_state[64];
  snprintf (expected_state, sizeof expected_state, "failed-at-%s",
            vms_event_name (ev));
  assert_writer_state (f->coord, 0, expected_state, VMS_FAILURE_RETRYABLE);
  assert_writer_state (f->coord, 1, "stable", VMS_FAILURE_NONE);
  assert_events (&f->log, "A", a_expected);
  assert_events (&f->log, "B", b_expected);
  assert_events (&f->log, "P", p_expected);
}

static void
veto_at_identify_stops_before_anything_and_still_shuts_down (void **state)
{
  veto_at (state, VMS_EVENT_IDENTIFY,
           "identify backup-shutdown", "identify backup-shutdown", "");
}

static void
veto_at_prepare_backup_aborts_all (void **state)
{
  veto_at (state, VMS_EVENT_PREPARE_BACKUP,
           "identify prepare-backup abort backup-shutdown",
           "identify prepare-backup abort backup-shutdown", "");
}

static void
veto_at_prepare_snapshot_aborts_all (void **state)
{
  veto_at (state, VMS_EVENT_PREPARE_SNAPSHOT,
           "identify prepare-backup prepare-snapshot abort backup-shutdown",
           "identify prepare-backup prepare-snapshot abort backup-shutdown",
           "release");
}

static void
veto_at_freeze_aborts_all (void **state)
{
  veto_at (state, VMS_EVENT_FREEZE,
           "identify prepare-backup prepare-snapshot freeze abort backup-shutdown",
           "identify prepare-backup prepare-snapshot freeze abort backup-shutdown",
           "prepare release");
}

static void
veto_at_thaw_aborts_all (void **state)
{
  veto_at (state, VMS_EVENT_THAW,
           "identify prepare-backup prepare-snapshot freeze thaw abort backup-shutdown",
           "identify prepare-backup prepare-snapshot freeze thaw abort backup-shutdown",
           "prepare commit release");
}

static void
veto_at_post_snapshot_aborts_all (void **state)
{
  veto_at (state, VMS_EVENT_POST_SNAPSHOT,
           "identify prepare-backup prepare-snapshot freeze thaw post-snapshot abort backup-shutdown",
           "identify prepare-backup prepare-snapshot freeze thaw post-snapshot abort backup-shutdown",
           "prepare commit release");
}

/* Issue 10 (VSS's GatherWriterStatus): after the copy, before the commit,
 * a writer that says its capture is no longer good aborts the set, named
 * with its reason; BackupComplete never comes. */
static void
veto_at_gather_status_aborts_all_before_the_commit (void **state)
{
  struct fixture *f = *state;
  struct vms_session_failure fail;
  const char *order = "identify prepare-backup prepare-snapshot freeze thaw "
    "post-snapshot gather-status abort backup-shutdown";

  f->a.veto_at = VMS_EVENT_GATHER_STATUS;
  f->a.veto_kind = VMS_FAILURE_INCONSISTENT_SNAPSHOT;
  add_all (f);
  vms_session *s = vms_backup_session_new (f->coord, NULL);
  assert_int_equal (vms_session_identify (s), 0);
  assert_int_equal (vms_session_prepare_backup (s), 0);
  assert_int_equal (vms_session_do_snapshot_set (s), 0);
  assert_int_equal (vms_session_gather_status (s), -1);
  assert_int_equal (vms_session_state (s), VMS_SESSION_ABORTED);
  assert_int_equal (vms_session_failure (s, &fail), 0);
  assert_int_equal (fail.phase, VMS_EVENT_GATHER_STATUS);
  assert_int_equal (fail.kind, VMS_FAILURE_INCONSISTENT_SNAPSHOT);
  assert_string_equal (fail.culprit, "A");
  assert_non_null (strstr (fail.message, "A vetoes gather-status on purpose"));
  assert_int_equal (vms_session_backup_complete (s, 1), -1);
  vms_session_free (s);
  assert_writer_state (f->coord, 0, "failed-at-gather-status",
                       VMS_FAILURE_INCONSISTENT_SNAPSHOT);
  assert_events (&f->log, "A", order);
  assert_events (&f->log, "B", order);
}

static void
veto_at_backup_complete_aborts_all (void **state)
{
  veto_at (state, VMS_EVENT_BACKUP_COMPLETE,
           "identify prepare-backup prepare-snapshot freeze thaw post-snapshot backup-complete abort backup-shutdown",
           "identify prepare-backup prepare-snapshot freeze thaw post-snapshot backup-complete abort backup-shutdown",
           "prepare commit release");
}

static void
freeze_past_its_budget_times_out_and_aborts_all (void **state)
{
  struct fixture *f = *state;
  struct vms_session_failure fail;

  f->a.hang_at = VMS_EVENT_FREEZE;
  f->a.hang_ms = 1500;
  f->a.freeze_budget_ms = 200;
  add_all (f);
  vms_session *s = vms_backup_session_new (f->coord, NULL);
  assert_int_equal (run_backup (f->coord, s), VMS_SESSION_ABORTED);
  /* The coordinator stopped waiting at the budget, not at the hang's end:
   * B was told to abort while A still hung in Freeze. */
  assert_true (f->b.event_at[VMS_EVENT_ABORT] < f->a.hang_ended_at);
  assert_true (f->b.event_at[VMS_EVENT_ABORT] - f->a.event_at[VMS_EVENT_FREEZE] < 1000);
  assert_int_equal (vms_session_failure (s, &fail), 0);
  assert_int_equal (fail.phase, VMS_EVENT_FREEZE);
  assert_int_equal (fail.kind, VMS_FAILURE_TIMEOUT);
  assert_string_equal (fail.culprit, "A");
  vms_session_free (s);

  assert_writer_state (f->coord, 0, "failed-at-freeze", VMS_FAILURE_TIMEOUT);
  assert_writer_state (f->coord, 1, "stable", VMS_FAILURE_NONE);
  /* The hung writer still gets Abort and BackupShutdown, after its Freeze
   * returns; the provider never committed. */
  assert_events (&f->log, "A", "identify prepare-backup prepare-snapshot freeze abort backup-shutdown");
  assert_events (&f->log, "B", "identify prepare-backup prepare-snapshot freeze abort backup-shutdown");
  assert_events (&f->log, "P", "prepare release");
}

static void
provider_commit_past_its_budget_aborts_all (void **state)
{
  struct fixture *f = *state;
  struct vms_session_failure fail;

  f->p.hang_commit_ms = 1500;
  f->p.commit_budget_ms = 200;
  add_all (f);
  vms_session *s = vms_backup_session_new (f->coord, NULL);
  assert_int_equal (run_backup (f->coord, s), VMS_SESSION_ABORTED);
  assert_int_equal (vms_session_failure (s, &fail), 0);
  assert_int_equal (fail.kind, VMS_FAILURE_TIMEOUT);
  assert_true (fail.is_provider);
  assert_string_equal (fail.culprit, "P");
  assert_non_null (strstr (fail.message, "commit"));
  vms_session_free (s);

  /* The writers did nothing wrong; Abort undid their freeze. */
  assert_writer_state (f->coord, 0, "stable", VMS_FAILURE_NONE);
  assert_writer_state (f->coord, 1, "stable", VMS_FAILURE_NONE);
  assert_events (&f->log, "A", "identify prepare-backup prepare-snapshot freeze abort backup-shutdown");
  assert_events (&f->log, "B", "identify prepare-backup prepare-snapshot freeze abort backup-shutdown");
  /* Release waits for the hung commit to end: it runs after it. */
  assert_events (&f->log, "P", "prepare commit release");
}

static void
provider_prepare_failure_aborts_all (void **state)
{
  struct fixture *f = *state;
  struct vms_session_failure fail;

  f->p.fail_at = 1;
  add_all (f);
  vms_session *s = vms_backup_session_new (f->coord, NULL);
  assert_int_equal (run_backup (f->coord, s), VMS_SESSION_ABORTED);
  assert_int_equal (vms_session_failure (s, &fail), 0);
  assert_true (fail.is_provider);
  assert_non_null (strstr (fail.message, "cannot prepare"));
  vms_session_free (s);
  assert_events (&f->log, "A", "identify prepare-backup prepare-snapshot abort backup-shutdown");
  assert_events (&f->log, "P", "prepare release");
}

static void
writer_failing_without_a_reason_still_gets_a_message (void **state)
{
  struct fixture *f = *state;
  f->b.veto_at = VMS_EVENT_FREEZE;
  f->b.veto_silently = 1;
  add_all (f);
  vms_session *s = vms_backup_session_new (f->coord, NULL);
  assert_int_equal (run_backup (f->coord, s), VMS_SESSION_ABORTED);
  vms_session_free (s);
  assert_writer_state (f->coord, 1, "failed-at-freeze", VMS_FAILURE_NON_RETRYABLE);
}

static void
requester_failure_after_snapshot_aborts_all (void **state)
{
  struct fixture *f = *state;
  add_all (f);
  vms_session *s = vms_backup_session_new (f->coord, NULL);
  assert_int_equal (vms_session_identify (s), 0);
  assert_int_equal (vms_session_prepare_backup (s), 0);
  assert_int_equal (vms_session_do_snapshot_set (s), 0);
  assert_int_equal (vms_session_abort (s, "the repository is full"), 0);
  assert_int_equal (vms_session_abort (s, "again"), 0);   /* safe to repeat */
  assert_int_equal (vms_session_state (s), VMS_SESSION_ABORTED);
  vms_session_free (s);
  assert_events (&f->log, "A", "identify prepare-backup prepare-snapshot freeze thaw post-snapshot abort backup-shutdown");
}

static void
session_freed_midway_aborts_and_shuts_down (void **state)
{
  struct fixture *f = *state;
  add_all (f);
  vms_session *s = vms_backup_session_new (f->coord, NULL);
  assert_int_equal (vms_session_identify (s), 0);
  assert_int_equal (vms_session_prepare_backup (s), 0);
  vms_session_free (s);          /* e.g. the requester bailed out */
  assert_events (&f->log, "A", "identify prepare-backup abort backup-shutdown");
  assert_events (&f->log, "B", "identify prepare-backup abort backup-shutdown");
}

static void
calls_in_the_wrong_state_name_the_state_needed (void **state)
{
  struct fixture *f = *state;
  add_all (f);
  vms_session *s = vms_backup_session_new (f->coord, NULL);
  assert_int_equal (vms_session_do_snapshot_set (s), -1);
  assert_non_null (strstr (vms_get_error (), "needs it prepared"));
  assert_non_null (strstr (vms_get_error (), "is created"));
  assert_int_equal (vms_session_pre_restore (s), -1);
  assert_non_null (strstr (vms_get_error (), "backup session"));
  /* A second session on the same coordinator is refused. */
  assert_null (vms_backup_session_new (f->coord, NULL));
  vms_session_free (s);
  assert_events (&f->log, "A", "backup-shutdown");
}

static void
writers_may_add_to_the_document_until_post_snapshot_ends (void **state)
{
  struct fixture *f = *state;
  add_all (f);
  vms_session *s = vms_backup_session_new (f->coord, "backup-doc");
  assert_int_equal (run_backup (f->coord, s), VMS_SESSION_COMPLETED);
  assert_int_equal (f->a.attr_set_in_post_snapshot, 0);
  assert_int_equal (f->a.attr_set_in_backup_complete, -1);

  const vms_document *bcd = vms_session_components (s);
  assert_string_equal (vms_components_backup_id (bcd), "backup-doc");
  assert_int_equal (vms_components_writer_count (bcd), 2);
  vms_component *c = vms_document_find_component (bcd, ID_A, "data");
  assert_non_null (c);
  assert_int_equal (vms_component_get_int (c, "stamp", -1), 42);
  assert_int_equal (vms_component_get_int (c, "late", -1), -1);
  /* The document survives a format/parse round trip (it is stored, R5). */
  char *text = vms_document_format (bcd);
  vms_document *back = vms_document_parse (text, strlen (text));
  assert_non_null (back);
  assert_int_equal (vms_document_component_count (back, ID_B), 2);
  vms_document_free (back);
  free (text);
  assert_int_equal (vms_session_metadata_count (s), 2);
  vms_session_free (s);
}

static void
only_selected_components_are_backed_up (void **state)
{
  struct fixture *f = *state;
  add_all (f);
  vms_session *s = vms_backup_session_new (f->coord, NULL);
  assert_int_equal (vms_session_identify (s), 0);
  assert_int_equal (vms_session_select (s, ID_A, "data"), 0);
  assert_int_equal (vms_session_select (s, ID_A, "nope"), -1);
  assert_int_equal (vms_session_prepare_backup (s), 0);
  const vms_document *bcd = vms_session_components (s);
  assert_int_equal (vms_document_component_count (bcd, ID_A), 1);
  assert_int_equal (vms_document_component_count (bcd, ID_B), 0);
  assert_int_equal (vms_session_do_snapshot_set (s), 0);
  assert_null (vms_session_file_access (s, ID_B, "data", "/srv/b/vm.xml"));
  assert_non_null (vms_session_file_access (s, ID_A, "data", "/srv/a/data.db"));
  assert_int_equal (vms_session_backup_complete (s, 1), 0);
  vms_session_free (s);
}

static void
a_file_no_provider_supports_fails_the_set (void **state)
{
  struct fixture *f = *state;
  assert_int_equal (fake_writer_add (f->coord, &f->a), 0);   /* no provider */
  vms_session *s = vms_backup_session_new (f->coord, NULL);
  assert_int_equal (run_backup (f->coord, s), VMS_SESSION_ABORTED);
  struct vms_session_failure fail;
  assert_int_equal (vms_session_failure (s, &fail), 0);
  assert_non_null (strstr (fail.message, "/srv/a/data.db"));
  assert_non_null (strstr (fail.message, "no provider"));
  vms_session_free (s);
  assert_events (&f->log, "A", "identify prepare-backup abort backup-shutdown");
}

static void
writers_with_the_same_id_are_refused (void **state)
{
  struct fixture *f = *state;
  f->b.id = ID_A;
  add_all (f);
  vms_session *s = vms_backup_session_new (f->coord, NULL);
  assert_int_equal (vms_session_identify (s), -1);
  assert_non_null (strstr (vms_get_error (), "same writer id"));
  vms_session_free (s);
}

static void
bad_plugin_structs_are_refused (void **state)
{
  struct fixture *f = *state;
  struct vms_writer w = { .api_version = 99, .struct_size = sizeof w,
                          .name = "future" };
  assert_int_equal (vms_coordinator_add_writer (f->coord, &w, NULL), -1);
  assert_non_null (strstr (vms_get_error (), "future"));
  w.api_version = VMS_WRITER_API_VERSION;   /* but no identify */
  assert_int_equal (vms_coordinator_add_writer (f->coord, &w, NULL), -1);
  struct vms_provider p = { .api_version = VMS_PROVIDER_API_VERSION,
                            .struct_size = sizeof p, .name = "half" };
  assert_int_equal (vms_coordinator_add_provider (f->coord, &p, NULL), -1);
  assert_int_equal (vms_coordinator_writer_count (f->coord), 0);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown (fn, setup, teardown)
    T (previous_checkpoint_and_incremental_access_pass_through_the_session),
    T (veto_at_gather_status_aborts_all_before_the_commit),
    T (backup_runs_every_event_in_order),
    T (veto_at_identify_stops_before_anything_and_still_shuts_down),
    T (veto_at_prepare_backup_aborts_all),
    T (veto_at_prepare_snapshot_aborts_all),
    T (veto_at_freeze_aborts_all),
    T (veto_at_thaw_aborts_all),
    T (veto_at_post_snapshot_aborts_all),
    T (veto_at_backup_complete_aborts_all),
    T (freeze_past_its_budget_times_out_and_aborts_all),
    T (provider_commit_past_its_budget_aborts_all),
    T (provider_prepare_failure_aborts_all),
    T (writer_failing_without_a_reason_still_gets_a_message),
    T (requester_failure_after_snapshot_aborts_all),
    T (session_freed_midway_aborts_and_shuts_down),
    T (calls_in_the_wrong_state_name_the_state_needed),
    T (writers_may_add_to_the_document_until_post_snapshot_ends),
    T (only_selected_components_are_backed_up),
    T (a_file_no_provider_supports_fails_the_set),
    T (writers_with_the_same_id_are_refused),
    T (bad_plugin_structs_are_refused),
#undef T
  };
  return cmocka_run_group_tests_name ("backup-session", tests, NULL, NULL);
}
