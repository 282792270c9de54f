/* The coordinator's own structures, shared by coordinator.c (writers,
 * providers, event dispatch) and session.c (the session state machines). */
#ifndef VMS_COORDINATOR_INTERNAL_H
#define VMS_COORDINATOR_INTERNAL_H

#include <stdint.h>

#include "vmshadow/coordinator.h"
#include "worker.h"

/* What every job of a session shares; kept alive by reference counts
 * because a job that overran its budget may still be running after the
 * session is gone. */
struct session_core {
  int refs;                     /* atomic */
  char *id;
  int is_backup;
  vms_document *bcd;            /* backup components document */
  /* Restore: the metadata documents stored with the backup (R5), which
   * writers see instead of what Identify says today. */
  vms_document **stored_metadata;
  size_t nr_stored_metadata;
};

struct writer_slot {
  struct vms_writer w;          /* copy of the writer's struct */
  void *data;
  char *name;                   /* from the struct, then from Identify */
  char *id;
  struct worker *worker;
  vms_document *metadata;       /* from the last Identify, or NULL */
  enum vms_writer_state state;  /* R4 */
  enum vms_event failed_at;
  enum vms_failure failure;
  char *message;
};

struct provider_slot {
  struct vms_provider p;
  void *data;
  struct worker *worker;
};

struct vms_coordinator {
  struct writer_slot **writers;
  size_t nr_writers;
  struct provider_slot **providers;
  size_t nr_providers;
  vms_session *active;          /* one session at a time */
};

extern struct session_core *session_core_new (const char *id, int is_backup,
                                              vms_document *bcd);
extern void session_core_unref (struct session_core *core);

/* Send an event to every writer in parallel and wait for each until its
 * deadline (deadlines[i]; NULL = each writer's event budget from now).
 * Failures and time-outs set the writer's state; a failure never replaces
 * an earlier one. Returns the number of writers that failed. */
extern size_t dispatch_event (vms_coordinator *coord, struct session_core *core,
                              enum vms_event ev, const int64_t *deadlines);

extern int64_t writer_event_budget_ms (const struct writer_slot *slot);
extern int64_t writer_freeze_budget_ms (const struct writer_slot *slot);

/* Reset every writer to stable with no failure, for a new session. */
extern void reset_writer_states (vms_coordinator *coord);

#endif /* VMS_COORDINATOR_INTERNAL_H */
