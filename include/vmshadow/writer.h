/* vmshadow — the writer interface (R1–R5).
 *
 * A writer owns data (the VM writer, a host database, an application inside
 * a guest) and takes part in backup and restore sessions through events.
 * It is one struct of callbacks, filled with designated initialisers:
 *
 *   static const struct vms_writer my_writer = {
 *     .api_version = VMS_WRITER_API_VERSION,
 *     .struct_size = sizeof (struct vms_writer),
 *     .name = "my-writer",
 *     .id = "9c6c4f4e-…",
 *     .identify = my_identify,
 *     .freeze = my_freeze,
 *     .thaw = my_thaw,
 *   };
 *   vms_coordinator_add_writer (coord, &my_writer, my_data);
 *
 * Every callback but identify may be NULL: the default is success with
 * nothing done. Callbacks return 0 on success, or -1 to veto after calling
 * vms_call_fail (which sets the failure kind and message). Each writer's
 * callbacks run on a thread of their own, one event at a time and in the
 * order of R2/R6; different writers get an event in parallel.
 *
 * Abort may arrive more than once, and in any state after PrepareForBackup;
 * it must undo whatever the writer did (thaw, resume, end jobs) and be safe
 * to repeat. BackupShutdown always arrives at the end of a backup session.
 */
#ifndef VMSHADOW_WRITER_H
#define VMSHADOW_WRITER_H

#include "vmshadow/api.h"

#include <stdint.h>

#include "vmshadow/document.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VMS_WRITER_API_VERSION 1

/* Default budgets (R3). */
#define VMS_DEFAULT_FREEZE_BUDGET_MS 60000    /* Freeze → Thaw */
#define VMS_DEFAULT_EVENT_BUDGET_MS  600000   /* any other event */

enum vms_event {
  VMS_EVENT_IDENTIFY,
  VMS_EVENT_PREPARE_BACKUP,
  VMS_EVENT_PREPARE_SNAPSHOT,
  VMS_EVENT_FREEZE,
  VMS_EVENT_THAW,
  VMS_EVENT_POST_SNAPSHOT,
  VMS_EVENT_ABORT,
  VMS_EVENT_BACKUP_COMPLETE,
  VMS_EVENT_BACKUP_SHUTDOWN,
  VMS_EVENT_PRE_RESTORE,
  VMS_EVENT_POST_RESTORE,
  /* After the requester copied the data, before it commits the backup (VSS's
   * GatherWriterStatus): is the capture still good? Added last, so the
   * values above keep their meaning. */
  VMS_EVENT_GATHER_STATUS,
  VMS_EVENT_COUNT
};

/* R4: why a writer failed. */
enum vms_failure {
  VMS_FAILURE_NONE,
  VMS_FAILURE_RETRYABLE,          /* transient: the backup may be retried */
  VMS_FAILURE_NON_RETRYABLE,      /* give up until someone fixes it */
  VMS_FAILURE_TIMEOUT,            /* the writer overran its time budget */
  VMS_FAILURE_OUT_OF_RESOURCES,   /* memory, disk space, … */
  VMS_FAILURE_INCONSISTENT_SNAPSHOT, /* the image cannot be trusted */
};

/* R4: where a writer is in a session (as VSS_WRITER_STATE). */
enum vms_writer_state {
  VMS_WRITER_STABLE,
  VMS_WRITER_WAITING_FOR_FREEZE,        /* after PrepareForSnapshot */
  VMS_WRITER_WAITING_FOR_THAW,          /* after Freeze */
  VMS_WRITER_WAITING_FOR_POST_SNAPSHOT, /* after Thaw */
  VMS_WRITER_WAITING_FOR_BACKUP_COMPLETE, /* after PostSnapshot */
  VMS_WRITER_FAILED,                    /* see failed_at and failure */
};

/* The context of one callback: which event, which session, and the
 * session's documents. Borrowed for the duration of the callback. */
typedef struct vms_call vms_call;

struct vms_writer {
  uint32_t api_version;         /* VMS_WRITER_API_VERSION */
  uint32_t struct_size;         /* sizeof (struct vms_writer) */

  /* Name and writer ID (a UUID), fixed for a writer (R7). May be NULL when
   * only Identify can tell them (exec writers): the metadata document's
   * values are then used. */
  const char *name;
  const char *id;

  /* Budgets in ms; 0 means the default. */
  uint32_t freeze_budget_ms;    /* from Freeze sent to Thaw answered (R3) */
  uint32_t event_budget_ms;     /* any other single event */

  /* Fill vms_call_metadata (call) with this writer's components. Required. */
  int (*identify) (void *data, vms_call *call);

  int (*prepare_backup) (void *data, vms_call *call);
  int (*prepare_snapshot) (void *data, vms_call *call);
  int (*freeze) (void *data, vms_call *call);
  int (*thaw) (void *data, vms_call *call);
  int (*post_snapshot) (void *data, vms_call *call);
  int (*abort) (void *data, vms_call *call);
  int (*backup_complete) (void *data, vms_call *call);
  int (*backup_shutdown) (void *data, vms_call *call);
  int (*pre_restore) (void *data, vms_call *call);
  int (*post_restore) (void *data, vms_call *call);

  /* Called once when the coordinator is freed. May be NULL. */
  void (*close) (void *data);
  /* After the copy, before the commit: veto (VMS_FAILURE_INCONSISTENT_
   * SNAPSHOT, saying why) when something happened during the copy that
   * makes the capture untrustworthy; the backup then never becomes
   * visible. May be NULL. (Last, for writers built with a smaller
   * struct_size.) */
  int (*gather_status) (void *data, vms_call *call);
};

/* ---- What a callback can ask of its call ---- */

extern VMS_API enum vms_event vms_call_event (const vms_call *call);
extern VMS_API const char *vms_call_session_id (const vms_call *call);
/* 1 for a backup session, 0 for a restore session. */
extern VMS_API int vms_call_is_backup (const vms_call *call);

/* This writer's metadata document: filled by identify, read by the other
 * events. */
extern VMS_API vms_document *vms_call_metadata (vms_call *call);

/* This writer's component in the session's backup components document, or
 * NULL if it is not part of the session. Writers may add attributes to it
 * until PostSnapshot ends (R5). */
extern VMS_API vms_component *vms_call_component (vms_call *call, const char *name);
/* Number of this writer's components in the session, and each one. */
extern VMS_API size_t vms_call_component_count (vms_call *call);
extern VMS_API vms_component *vms_call_component_at (vms_call *call, size_t i);

/* Veto: record the failure kind and message, and return -1, so that a
 * callback can end with `return vms_call_fail (call, …);`. */
extern VMS_API int vms_call_fail (vms_call *call, enum vms_failure kind,
                                  const char *fmt, ...)
  __attribute__ ((format (printf, 3, 4)));

/* Milliseconds left before this event's budget runs out (never negative):
 * a writer that waits on something should wait no longer than this. */
extern VMS_API int64_t vms_call_ms_left (const vms_call *call);

/* ---- What a writer may tell the requester of a capture ----
 * Attributes a writer may set on its component in the backup components
 * document (until PostSnapshot ends); the requester's report carries them
 * (vmshadow/requester.h, struct vms_component_report). */
#define VMS_ATTR_METHOD           "method"            /* how it was captured */
#define VMS_ATTR_FREEZE_WINDOW_MS "freeze_window_ms"  /* int: frozen this long */
#define VMS_ATTR_DOWNTIME_MS      "downtime_ms"       /* int: stopped this long */
/* R22: the component is managed by a cluster; in words, e.g. "pacemaker
 * resource web (VirtualDomain, config /etc/vm/web.xml) running on node n1".
 * May be set at Identify; `vmshadow writers` and `show` print it. */
#define VMS_ATTR_CLUSTER          "cluster"
/* Issue 17: the interval the component was surely frozen (ints, µs since
 * the epoch): from when the freeze returned to when the thaw was called;
 * and VMS_ATTR_GROUP 1 when it was captured in a consistency group (every
 * component of the set so marked was frozen at one common instant). */
#define VMS_ATTR_FROZEN_FROM_US   "frozen_from_us"
#define VMS_ATTR_FROZEN_UNTIL_US  "frozen_until_us"
#define VMS_ATTR_GROUP            "group"
/* Issue 17: what the applications inside the component took part as, in
 * words (e.g. "required: 2 guest writers took part: app (prepare-backup
 * ok, freeze ok, thaw ok), …" or "tried: fell back to crash-consistent:
 * …"); the report carries it. */
#define VMS_ATTR_GUEST_PROCESSING "guest_processing"
/* Incremental backups: the writer sets VMS_ATTR_CHECKPOINT, the point the
 * component's next incremental may start from (recorded per file in the
 * repository's catalogue); at that next backup the requester hands it back
 * as VMS_ATTR_PREVIOUS_CHECKPOINT before PrepareForSnapshot, and the
 * provider's access names it as the base of the changed extents. */
#define VMS_ATTR_CHECKPOINT          "checkpoint"
#define VMS_ATTR_PREVIOUS_CHECKPOINT "previous_checkpoint"
/* Per file, the key being prefix + the file's path (issue 11):
 * - VMS_ATTR_FILE_CHECKPOINT_PREFIX: the file's own checkpoint, recorded
 *   in the catalogue instead of the component's (a stopped VM's RBD disk:
 *   the image's snapshot of this backup);
 * - VMS_ATTR_FILE_CHANGES_PREFIX: how the file's changed extents were
 *   found, in words ("fast-diff, whole objects of 4096 KiB");
 * - VMS_ATTR_FILE_FULL_REASON_PREFIX: why the writer offers no changed
 *   extents for it, so that it is read in full.
 * The requester's report says per disk how it was read and why. */
#define VMS_ATTR_FILE_CHECKPOINT_PREFIX  "checkpoint:"
#define VMS_ATTR_FILE_CHANGES_PREFIX     "changes:"
#define VMS_ATTR_FILE_FULL_REASON_PREFIX "full_reason:"
/* Restore: where the requester writes a file of a component: key
 * VMS_ATTR_RESTORE_TARGET_PREFIX + the file's path (exactly as in the
 * component's file list), value the target, an absolute path with no
 * empty, "." or ".." part. Read after PreRestore from the session's
 * backup components document, so a writer may set it at Identify (its
 * metadata document), during the backup (until PostSnapshot ends), or in
 * PreRestore; with --to DIR the requester sets it to DIR + the path before
 * PreRestore. Without one a file goes back to its own path. A writer with
 * a restore of its own (the VM writer) places its files itself
 * (docs/documents.md, docs/restore.md). */
#define VMS_ATTR_RESTORE_TARGET_PREFIX "restore_target:"

/* ---- Names ---- */

/* "identify", "prepare-backup", "prepare-snapshot", "freeze", "thaw",
 * "post-snapshot", "abort", "backup-complete", "backup-shutdown",
 * "pre-restore", "post-restore", "gather-status". */
extern VMS_API const char *vms_event_name (enum vms_event e);
/* Returns -1 for an unknown name. */
extern VMS_API int vms_event_from_name (const char *name);
/* "none", "retryable", "non-retryable", "timeout", "out-of-resources",
 * "inconsistent-snapshot". */
extern VMS_API const char *vms_failure_name (enum vms_failure f);
extern VMS_API int vms_failure_from_name (const char *name);
/* "stable", "waiting-for-freeze", …, and for a failed writer
 * "failed-at-<event>" (static storage). */
extern VMS_API const char *vms_writer_state_name (enum vms_writer_state s,
                                                  enum vms_event failed_at);

#ifdef __cplusplus
}
#endif
#endif /* VMSHADOW_WRITER_H */
