/* A test double of a writer for the file provider's component tests: it
 * names a list of files in one component, can veto one chosen event, and
 * calls a hook of the test at every event, so that a test can change the
 * files at the moment it wants (before Freeze, inside the freeze window,
 * after Thaw). Not a real writer: it freezes nothing. */
#ifndef VMS_TEST_DOUBLE_WRITER_H
#define VMS_TEST_DOUBLE_WRITER_H

#include <stddef.h>

#include "vmshadow/coordinator.h"

#define TEST_DOUBLE_WRITER_NAME "test-double-writer"
#define TEST_DOUBLE_WRITER_ID   "0d0b1e00-7e57-4d0b-8e00-00000000f11e"
#define TEST_DOUBLE_COMPONENT   "files"
#define TEST_DOUBLE_MAX_FILES   8

struct test_double_writer {
  size_t nr_files;
  const char *paths[TEST_DOUBLE_MAX_FILES];
  const char *provider;         /* the provider the files ask for, or NULL */
  int veto_at;                  /* an enum vms_event to veto, or -1 */
  /* Called at every event before the veto (if any); may be NULL. */
  void (*hook) (struct test_double_writer *w, enum vms_event ev);
  void *hook_data;
  unsigned events_seen;         /* bit (1 << event) for each event seen */
};

/* Add the test double to coord (w must outlive coord). */
extern int test_double_writer_add (vms_coordinator *coord,
                                   struct test_double_writer *w);

#endif /* VMS_TEST_DOUBLE_WRITER_H */
