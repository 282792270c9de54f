/* vmshadow — the coordinator: backup and restore sessions (R1–R6).
 *
 * The requester (the vmshadow command, or a backup product) makes a
 * coordinator, adds writers and providers to it, and runs sessions:
 *
 *   backup:  identify → prepare_backup → do_snapshot_set
 *            (PrepareForSnapshot, provider prepare, Freeze, provider
 *             commit, Thaw, PostSnapshot) → [requester copies data from
 *            the shadow copies] → gather_status → [requester commits]
 *            → backup_complete → free (BackupShutdown)
 *   restore: pre_restore → [requester restores files] →
 *            set_restore_status per component → post_restore → free
 *
 * Each call is allowed only in some session states and fails with a message
 * naming the state it needed. Any failure after PrepareForBackup aborts the
 * whole set: every writer gets Abort, nothing counts as backed up, and
 * BackupShutdown still arrives (when the session is freed).
 *
 * The coordinator never knows which writers or providers exist: they are
 * handed to it through the interfaces in writer.h and provider.h.
 */
#ifndef VMSHADOW_COORDINATOR_H
#define VMSHADOW_COORDINATOR_H

#include "vmshadow/api.h"

#include <stddef.h>
#include <stdint.h>

#include "vmshadow/document.h"
#include "vmshadow/provider.h"
#include "vmshadow/writer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vms_coordinator vms_coordinator;
typedef struct vms_session vms_session;

extern VMS_API vms_coordinator *vms_coordinator_new (void);
/* Closes every writer and provider. Accepts NULL. */
extern VMS_API void vms_coordinator_free (vms_coordinator *coord);

/* The struct is copied (up to its struct_size); data is passed to every
 * callback. Fails on a wrong api_version or a missing required callback. */
extern VMS_API int vms_coordinator_add_writer (vms_coordinator *coord,
                                               const struct vms_writer *writer,
                                               void *data);
extern VMS_API int vms_coordinator_add_provider (vms_coordinator *coord,
                                                 const struct vms_provider *provider,
                                                 void *data);

/* ---- Writer status (R4), as `vmshadow writers` shows it ---- */

struct vms_writer_status {
  const char *name;             /* borrowed */
  const char *id;               /* borrowed; may be NULL before Identify */
  enum vms_writer_state state;
  enum vms_event failed_at;     /* meaningful when state is FAILED */
  enum vms_failure failure;
  const char *message;          /* borrowed; last failure message or NULL */
  const vms_document *metadata; /* borrowed; NULL before Identify */
};

extern VMS_API size_t vms_coordinator_writer_count (const vms_coordinator *coord);
extern VMS_API int vms_coordinator_writer_status (const vms_coordinator *coord,
                                                  size_t i,
                                                  struct vms_writer_status *status);
/* Send Identify to every writer (in parallel) and keep their metadata
 * documents. Returns 0 if every writer answered, -1 if any failed (their
 * status says why; the others still have their metadata). */
extern VMS_API int vms_coordinator_gather_metadata (vms_coordinator *coord);

/* ---- Sessions ---- */

enum vms_session_state {
  VMS_SESSION_CREATED,
  VMS_SESSION_IDENTIFIED,       /* backup: metadata gathered */
  VMS_SESSION_PREPARED,         /* backup: PrepareForBackup done */
  VMS_SESSION_SNAPSHOTTED,      /* backup: shadow copies readable */
  VMS_SESSION_COMPLETED,        /* backup: BackupComplete done */
  VMS_SESSION_RESTORING,        /* restore: PreRestore done */
  VMS_SESSION_RESTORED,         /* restore: PostRestore done */
  VMS_SESSION_ABORTED,          /* a failure aborted the set */
  VMS_SESSION_SHUT_DOWN,        /* BackupShutdown sent / restore ended */
};

/* Where a session failed, if it did: the phase, the kind, who, and why. */
struct vms_session_failure {
  enum vms_event phase;         /* event (or VMS_EVENT_FREEZE for commit) */
  enum vms_failure kind;
  const char *culprit;          /* writer or provider name; borrowed */
  const char *message;          /* borrowed */
  int is_provider;              /* 1 if a provider failed, not a writer */
};

/* A backup session over every writer of the coordinator. backup_id may be
 * NULL (one is made from the time). Only one session at a time may run on
 * a coordinator. */
extern VMS_API vms_session *vms_backup_session_new (vms_coordinator *coord,
                                                    const char *backup_id);
/* A restore session driven by a stored backup components document and the
 * stored metadata documents (R5). The documents are copied. Writers are
 * matched to the document by writer ID. */
extern VMS_API vms_session *vms_restore_session_new (vms_coordinator *coord,
                                                     const vms_document *components,
                                                     const vms_document *const *metadata,
                                                     size_t nr_metadata);

/* Ends the session: a backup session that has not yet done so sends
 * BackupShutdown (after Abort if it was not completed); every shadow copy is
 * released. Accepts NULL. */
extern VMS_API void vms_session_free (vms_session *s);

extern VMS_API enum vms_session_state vms_session_state (const vms_session *s);
extern VMS_API const char *vms_session_state_name (enum vms_session_state st);
extern VMS_API const char *vms_session_id (const vms_session *s);
/* 0 and fills *f if the session failed, -1 if it did not. */
extern VMS_API int vms_session_failure (const vms_session *s,
                                        struct vms_session_failure *f);

/* Backup. */
extern VMS_API int vms_session_identify (vms_session *s);
/* By default every component of every writer is in the backup; after the
 * first select, only those selected are. In a restore session (before
 * pre_restore) it picks from the backup components document: every
 * writer still gets PreRestore and PostRestore, but sees only its
 * selected components. */
extern VMS_API int vms_session_select (vms_session *s, const char *writer_id,
                                       const char *component);
extern VMS_API int vms_session_prepare_backup (vms_session *s);
extern VMS_API int vms_session_do_snapshot_set (vms_session *s);
/* After the copy, before the commit (VSS's GatherWriterStatus): every
 * writer is asked whether the capture is still good. -1 when one says no:
 * the set is aborted, and vms_session_failure names the writer and why. */
extern VMS_API int vms_session_gather_status (vms_session *s);
/* The requester says the data is safely stored (ok=1) or not (ok=0, which
 * aborts the set). */
extern VMS_API int vms_session_backup_complete (vms_session *s, int ok);
/* Abort the set now (e.g. the requester's copy failed). Safe to repeat. */
extern VMS_API int vms_session_abort (vms_session *s, const char *why);

/* Where to read the point-in-time image of a file (a path or NBD URI),
 * valid while the session is SNAPSHOTTED. Borrowed. */
extern VMS_API const char *vms_session_file_access (const vms_session *s,
                                                    const char *writer_id,
                                                    const char *component,
                                                    const char *path);
/* How to read it (struct vms_access of provider.h): strings borrowed,
 * valid while the session is SNAPSHOTTED. 0, or -1 with the error set. */
extern VMS_API int vms_session_file_access_get (const vms_session *s,
                                                const char *writer_id,
                                                const char *component,
                                                const char *path,
                                                struct vms_access *access);
/* The requester hands each writer the checkpoint its component's next
 * incremental may start from (VSS's previous backup stamp): set after
 * prepare_backup, before do_snapshot_set, as the component's
 * VMS_ATTR_PREVIOUS_CHECKPOINT in the backup components document, which
 * the writer reads in PrepareForSnapshot. */
extern VMS_API int vms_session_set_previous_checkpoint (vms_session *s,
                                                        const char *writer_id,
                                                        const char *component,
                                                        const char *checkpoint);

/* The session's backup components document. Borrowed. */
extern VMS_API const vms_document *vms_session_components (const vms_session *s);
/* The metadata documents gathered in this session, one per writer that
 * answered Identify. Borrowed. */
extern VMS_API size_t vms_session_metadata_count (const vms_session *s);
extern VMS_API const vms_document *vms_session_metadata (const vms_session *s,
                                                         size_t i);

/* Restore. */
extern VMS_API int vms_session_pre_restore (vms_session *s);
extern VMS_API int vms_session_set_restore_status (vms_session *s,
                                                   const char *writer_id,
                                                   const char *component,
                                                   enum vms_restore_status status);
extern VMS_API int vms_session_post_restore (vms_session *s);

/* Writers in this session (a snapshot of their status). */
extern VMS_API size_t vms_session_writer_count (const vms_session *s);
extern VMS_API int vms_session_writer_status (const vms_session *s, size_t i,
                                              struct vms_writer_status *status);

#ifdef __cplusplus
}
#endif
#endif /* VMSHADOW_COORDINATOR_H */
