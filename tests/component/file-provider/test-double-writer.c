/* The writer test double of the file provider tests (test-double-writer.h). */
#include <stdio.h>

#include "vmshadow/coordinator.h"
#include "vmshadow/writer.h"

#include "test-double-writer.h"

static int
test_double_event (void *data, vms_call *call)
{
  struct test_double_writer *w = data;
  enum vms_event ev = vms_call_event (call);

  __atomic_fetch_or (&w->events_seen, 1u << ev, __ATOMIC_SEQ_CST);
  if (w->hook)
    w->hook (w, ev);
  if ((int) ev == w->veto_at)
    return vms_call_fail (call, VMS_FAILURE_RETRYABLE,
                          "test double vetoes at %s", vms_event_name (ev));
  return 0;
}

static int
test_double_identify (void *data, vms_call *call)
{
  struct test_double_writer *w = data;
  vms_document *md = vms_call_metadata (call);
  vms_component *c;

  c = vms_metadata_add_component (md, TEST_DOUBLE_COMPONENT, "Test files");
  if (c == NULL)
    return vms_call_fail (call, VMS_FAILURE_NON_RETRYABLE,
                          "test double: cannot add component");
  for (size_t i = 0; i < w->nr_files; i++) {
    /* Alternate the kinds: the provider takes both. */
    enum vms_file_kind kind = i % 2 ? VMS_FILE_DISK : VMS_FILE_PLAIN;
    if (vms_component_add_file (c, w->paths[i], kind,
                                kind == VMS_FILE_DISK ? "raw" : NULL,
                                w->provider) == -1)
      return vms_call_fail (call, VMS_FAILURE_NON_RETRYABLE,
                            "test double: cannot add %s", w->paths[i]);
  }
  return test_double_event (data, call);
}

static const struct vms_writer test_double_writer = {
  .api_version = VMS_WRITER_API_VERSION,
  .struct_size = sizeof (struct vms_writer),
  .name = TEST_DOUBLE_WRITER_NAME,
  .id = TEST_DOUBLE_WRITER_ID,
  .identify = test_double_identify,
  .prepare_backup = test_double_event,
  .prepare_snapshot = test_double_event,
  .freeze = test_double_event,
  .thaw = test_double_event,
  .post_snapshot = test_double_event,
  .abort = test_double_event,
  .backup_complete = test_double_event,
  .backup_shutdown = test_double_event,
};

int
test_double_writer_add (vms_coordinator *coord, struct test_double_writer *w)
{
  return vms_coordinator_add_writer (coord, &test_double_writer, w);
}
