/* Test doubles for the coordinator's component tests: a writer and a
 * provider whose behaviour each test sets (veto at a phase, hang past a
 * budget), and which log every event they receive into one shared log so
 * that tests can assert the exact order of R2 and R6. Test code only. */
#ifndef VMS_TEST_DOUBLES_H
#define VMS_TEST_DOUBLES_H

#include <pthread.h>

#include "vmshadow/coordinator.h"

#define EVENT_LOG_MAX 256

/* One log for everything, in the order things happened. */
struct event_log {
  pthread_mutex_t lock;
  char *lines[EVENT_LOG_MAX];     /* "A:freeze", "P:commit" */
  size_t len;
};

extern void event_log_init (struct event_log *log);
extern void event_log_free (struct event_log *log);
extern void event_log_add (struct event_log *log, const char *who,
                           const char *what);
/* The events of one party, space-separated ("identify prepare-backup …"). */
extern char *event_log_of (struct event_log *log, const char *who);
/* Index of the first line equal to "who:what", or -1. */
extern int event_log_find (struct event_log *log, const char *who,
                           const char *what);

/* A fake writer with one component holding the files given. */
struct fake_writer {
  const char *name;               /* also the log label */
  const char *id;
  const char *files[4];           /* paths, NULL-terminated */
  struct event_log *log;
  int veto_at;                    /* event to veto, or -1 */
  enum vms_failure veto_kind;
  int veto_silently;              /* return -1 without vms_call_fail */
  int hang_at;                    /* event to sleep in, or -1 */
  int hang_ms;
  uint32_t freeze_budget_ms;
  uint32_t event_budget_ms;
  int veto_post_restore_unless_all; /* as the VM writer does (R17) */
  /* What it saw, and when (vms_now_ms). */
  int64_t event_at[VMS_EVENT_COUNT];
  int64_t hang_ended_at;
  const char *metadata_caption_seen; /* caption of "data" at PreRestore */
  enum vms_restore_status seen_status[4];
  int attr_set_in_post_snapshot;  /* result of setting an attribute */
  int attr_set_in_backup_complete;
  /* VMS_ATTR_PREVIOUS_CHECKPOINT of "data" at PrepareForSnapshot ("" none). */
  char previous_seen[64];
};

extern void fake_writer_init (struct fake_writer *fw, const char *name,
                              const char *id, struct event_log *log);
extern int fake_writer_add (vms_coordinator *coord, struct fake_writer *fw);

/* A fake provider that "images" files by handing back their own path
 * prefixed with "snap:". */
struct fake_provider {
  const char *name;
  struct event_log *log;
  int fail_at;                    /* 0 none, 1 prepare, 2 commit */
  int hang_commit_ms;
  uint32_t commit_budget_ms;
  int released;
  /* Non-NULL: hand out incremental access (an NBD URI with changed extents
   * relative to this base) instead of "snap:PATH". */
  const char *incremental_base;
};

extern void fake_provider_init (struct fake_provider *fp, const char *name,
                                struct event_log *log);
extern int fake_provider_add (vms_coordinator *coord, struct fake_provider *fp);

#endif /* VMS_TEST_DOUBLES_H */
