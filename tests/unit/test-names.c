/* Unit tests of the names of events, failure kinds, writer states, restore
 * statuses and file kinds (names.c): they appear in documents, reports and
 * the exec writer protocol, so each must map back to what it names (R4,
 * R6).
 *
 * Usage: test-names [test-name]; output is TAP.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "vmshadow/coordinator.h"
#include "vmshadow/document.h"
#include "vmshadow/writer.h"

static void
every_event_name_maps_back_to_its_event (void **state)
{
  for (int e = 0; e < VMS_EVENT_COUNT; e++) {
    const char *name = vms_event_name ((enum vms_event) e);
    assert_non_null (name);
    assert_string_not_equal (name, "unknown-event");
    assert_int_equal (vms_event_from_name (name), e);
    for (int f = 0; f < e; f++)
      assert_string_not_equal (name, vms_event_name ((enum vms_event) f));
  }
}

static void
event_names_are_the_documented_ones (void **state)
{
  static const char *const names[VMS_EVENT_COUNT] = {
    [VMS_EVENT_IDENTIFY] = "identify",
    [VMS_EVENT_PREPARE_BACKUP] = "prepare-backup",
    [VMS_EVENT_PREPARE_SNAPSHOT] = "prepare-snapshot",
    [VMS_EVENT_FREEZE] = "freeze",
    [VMS_EVENT_THAW] = "thaw",
    [VMS_EVENT_POST_SNAPSHOT] = "post-snapshot",
    [VMS_EVENT_ABORT] = "abort",
    [VMS_EVENT_BACKUP_COMPLETE] = "backup-complete",
    [VMS_EVENT_BACKUP_SHUTDOWN] = "backup-shutdown",
    [VMS_EVENT_PRE_RESTORE] = "pre-restore",
    [VMS_EVENT_POST_RESTORE] = "post-restore",
    [VMS_EVENT_GATHER_STATUS] = "gather-status",
  };
  for (int e = 0; e < VMS_EVENT_COUNT; e++)
    assert_string_equal (vms_event_name ((enum vms_event) e), names[e]);
}

static void
unknown_event_names_are_refused (void **state)
{
  assert_int_equal (vms_event_from_name ("no-such-event"), -1);
  assert_int_equal (vms_event_from_name (""), -1);
  assert_int_equal (vms_event_from_name ("Freeze"), -1);
  assert_int_equal (vms_event_from_name ("unknown-event"), -1);
  assert_string_equal (vms_event_name (VMS_EVENT_COUNT), "unknown-event");
  assert_string_equal (vms_event_name ((enum vms_event) -1), "unknown-event");
}

static void
every_failure_name_maps_back_to_its_kind (void **state)
{
  static const struct { enum vms_failure f; const char *name; } kinds[] = {
    { VMS_FAILURE_NONE, "none" },
    { VMS_FAILURE_RETRYABLE, "retryable" },
    { VMS_FAILURE_NON_RETRYABLE, "non-retryable" },
    { VMS_FAILURE_TIMEOUT, "timeout" },
    { VMS_FAILURE_OUT_OF_RESOURCES, "out-of-resources" },
    { VMS_FAILURE_INCONSISTENT_SNAPSHOT, "inconsistent-snapshot" },
  };
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
    assert_string_equal (vms_failure_name (kinds[i].f), kinds[i].name);
    assert_int_equal (vms_failure_from_name (kinds[i].name), kinds[i].f);
  }
}

static void
unknown_failure_names_are_refused (void **state)
{
  assert_int_equal (vms_failure_from_name ("flaky"), -1);
  assert_int_equal (vms_failure_from_name (""), -1);
  assert_int_equal (vms_failure_from_name ("unknown-failure"), -1);
  assert_string_equal (vms_failure_name ((enum vms_failure) 99),
                       "unknown-failure");
}

static void
writer_state_names_are_the_documented_ones (void **state)
{
  assert_string_equal (vms_writer_state_name (VMS_WRITER_STABLE, 0), "stable");
  assert_string_equal (vms_writer_state_name (VMS_WRITER_WAITING_FOR_FREEZE, 0),
                       "waiting-for-freeze");
  assert_string_equal (vms_writer_state_name (VMS_WRITER_WAITING_FOR_THAW, 0),
                       "waiting-for-thaw");
  assert_string_equal (vms_writer_state_name (VMS_WRITER_WAITING_FOR_POST_SNAPSHOT, 0),
                       "waiting-for-post-snapshot");
  assert_string_equal (vms_writer_state_name (VMS_WRITER_WAITING_FOR_BACKUP_COMPLETE, 0),
                       "waiting-for-backup-complete");
  assert_string_equal (vms_writer_state_name ((enum vms_writer_state) 99, 0),
                       "unknown-state");
}

static void
failed_writer_state_names_the_event_it_failed_at (void **state)
{
  assert_string_equal (vms_writer_state_name (VMS_WRITER_FAILED,
                                              VMS_EVENT_FREEZE),
                       "failed-at-freeze");
  /* Every event: "failed-at-" and the event's own name. */
  for (int e = 0; e < VMS_EVENT_COUNT; e++) {
    char want[64];
    snprintf (want, sizeof want, "failed-at-%s",
              vms_event_name ((enum vms_event) e));
    assert_string_equal (vms_writer_state_name (VMS_WRITER_FAILED,
                                                (enum vms_event) e), want);
  }
  /* The failed-at event only matters for a failed writer. */
  assert_string_equal (vms_writer_state_name (VMS_WRITER_STABLE,
                                              VMS_EVENT_FREEZE), "stable");
  assert_string_equal (vms_writer_state_name (VMS_WRITER_FAILED,
                                              VMS_EVENT_COUNT), "failed");
}

static void
restore_status_and_file_kind_names_are_the_document_ones (void **state)
{
  assert_string_equal (vms_restore_status_name (VMS_RESTORE_UNSET), "unset");
  assert_string_equal (vms_restore_status_name (VMS_RESTORE_ALL), "all");
  assert_string_equal (vms_restore_status_name (VMS_RESTORE_NONE), "none");
  assert_string_equal (vms_restore_status_name (VMS_RESTORE_FAILED), "failed");
  assert_string_equal (vms_restore_status_name ((enum vms_restore_status) 9),
                       "unknown");
  assert_string_equal (vms_file_kind_name (VMS_FILE_PLAIN), "plain");
  assert_string_equal (vms_file_kind_name (VMS_FILE_DISK), "disk");
}

#define TEST(name, fn) { name, fn, NULL, NULL, NULL }

static const struct CMUnitTest tests[] = {
  TEST ("every-event-name-maps-back-to-its-event",
        every_event_name_maps_back_to_its_event),
  TEST ("event-names-are-the-documented-ones",
        event_names_are_the_documented_ones),
  TEST ("unknown-event-names-are-refused", unknown_event_names_are_refused),
  TEST ("every-failure-name-maps-back-to-its-kind",
        every_failure_name_maps_back_to_its_kind),
  TEST ("unknown-failure-names-are-refused", unknown_failure_names_are_refused),
  TEST ("writer-state-names-are-the-documented-ones",
        writer_state_names_are_the_documented_ones),
  TEST ("failed-writer-state-names-the-event-it-failed-at",
        failed_writer_state_names_the_event_it_failed_at),
  TEST ("restore-status-and-file-kind-names-are-the-document-ones",
        restore_status_and_file_kind_names_are_the_document_ones),
};

int
main (int argc, char *argv[])
{
  cmocka_set_message_output (CM_OUTPUT_TAP);
  if (argc > 1)
    cmocka_set_test_filter (argv[1]);
  return cmocka_run_group_tests_name ("names", tests, NULL, NULL);
}
