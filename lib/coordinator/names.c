/* Names of events, failure kinds, writer states and restore statuses, as
 * they appear in documents, reports and the exec writer protocol. */
#include <string.h>

#include "vmshadow/coordinator.h"

static const char *const event_names[VMS_EVENT_COUNT] = {
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

static const char *const failure_names[] = {
  [VMS_FAILURE_NONE] = "none",
  [VMS_FAILURE_RETRYABLE] = "retryable",
  [VMS_FAILURE_NON_RETRYABLE] = "non-retryable",
  [VMS_FAILURE_TIMEOUT] = "timeout",
  [VMS_FAILURE_OUT_OF_RESOURCES] = "out-of-resources",
  [VMS_FAILURE_INCONSISTENT_SNAPSHOT] = "inconsistent-snapshot",
};
#define NR_FAILURES (sizeof failure_names / sizeof failure_names[0])

static const char *const failed_at_names[VMS_EVENT_COUNT] = {
  [VMS_EVENT_IDENTIFY] = "failed-at-identify",
  [VMS_EVENT_PREPARE_BACKUP] = "failed-at-prepare-backup",
  [VMS_EVENT_PREPARE_SNAPSHOT] = "failed-at-prepare-snapshot",
  [VMS_EVENT_FREEZE] = "failed-at-freeze",
  [VMS_EVENT_THAW] = "failed-at-thaw",
  [VMS_EVENT_POST_SNAPSHOT] = "failed-at-post-snapshot",
  [VMS_EVENT_ABORT] = "failed-at-abort",
  [VMS_EVENT_BACKUP_COMPLETE] = "failed-at-backup-complete",
  [VMS_EVENT_BACKUP_SHUTDOWN] = "failed-at-backup-shutdown",
  [VMS_EVENT_PRE_RESTORE] = "failed-at-pre-restore",
  [VMS_EVENT_POST_RESTORE] = "failed-at-post-restore",
  [VMS_EVENT_GATHER_STATUS] = "failed-at-gather-status",
};

const char *
vms_event_name (enum vms_event e)
{
  return (unsigned) e < VMS_EVENT_COUNT ? event_names[e] : "unknown-event";
}

int
vms_event_from_name (const char *name)
{
  for (int i = 0; i < VMS_EVENT_COUNT; i++)
    if (strcmp (event_names[i], name) == 0)
      return i;
  return -1;
}

const char *
vms_failure_name (enum vms_failure f)
{
  return (unsigned) f < NR_FAILURES ? failure_names[f] : "unknown-failure";
}

int
vms_failure_from_name (const char *name)
{
  for (size_t i = 0; i < NR_FAILURES; i++)
    if (strcmp (failure_names[i], name) == 0)
      return (int) i;
  return -1;
}

const char *
vms_writer_state_name (enum vms_writer_state s, enum vms_event failed_at)
{
  switch (s) {
  case VMS_WRITER_STABLE: return "stable";
  case VMS_WRITER_WAITING_FOR_FREEZE: return "waiting-for-freeze";
  case VMS_WRITER_WAITING_FOR_THAW: return "waiting-for-thaw";
  case VMS_WRITER_WAITING_FOR_POST_SNAPSHOT: return "waiting-for-post-snapshot";
  case VMS_WRITER_WAITING_FOR_BACKUP_COMPLETE:
    return "waiting-for-backup-complete";
  case VMS_WRITER_FAILED:
    return (unsigned) failed_at < VMS_EVENT_COUNT
      ? failed_at_names[failed_at] : "failed";
  }
  return "unknown-state";
}

const char *
vms_restore_status_name (enum vms_restore_status s)
{
  switch (s) {
  case VMS_RESTORE_UNSET: return "unset";
  case VMS_RESTORE_ALL: return "all";
  case VMS_RESTORE_NONE: return "none";
  case VMS_RESTORE_FAILED: return "failed";
  }
  return "unknown";
}

const char *
vms_file_kind_name (enum vms_file_kind k)
{
  return k == VMS_FILE_DISK ? "disk" : "plain";
}

const char *
vms_session_state_name (enum vms_session_state st)
{
  switch (st) {
  case VMS_SESSION_CREATED: return "created";
  case VMS_SESSION_IDENTIFIED: return "identified";
  case VMS_SESSION_PREPARED: return "prepared";
  case VMS_SESSION_SNAPSHOTTED: return "snapshotted";
  case VMS_SESSION_COMPLETED: return "completed";
  case VMS_SESSION_RESTORING: return "restoring";
  case VMS_SESSION_RESTORED: return "restored";
  case VMS_SESSION_ABORTED: return "aborted";
  case VMS_SESSION_SHUT_DOWN: return "shut-down";
  }
  return "unknown";
}
