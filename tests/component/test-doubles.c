/* Test doubles: a fake writer and a fake provider (test-doubles.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "test-doubles.h"
#include "vmshadow/error.h"

void
event_log_init (struct event_log *log)
{
  memset (log, 0, sizeof *log);
  pthread_mutex_init (&log->lock, NULL);
}

void
event_log_free (struct event_log *log)
{
  for (size_t i = 0; i < log->len; i++)
    free (log->lines[i]);
  pthread_mutex_destroy (&log->lock);
}

void
event_log_add (struct event_log *log, const char *who, const char *what)
{
  char *line;
  if (asprintf (&line, "%s:%s", who, what) == -1)
    abort ();
  pthread_mutex_lock (&log->lock);
  if (log->len < EVENT_LOG_MAX)
    log->lines[log->len++] = line;
  else
    free (line);
  pthread_mutex_unlock (&log->lock);
}

char *
event_log_of (struct event_log *log, const char *who)
{
  size_t wlen = strlen (who);
  char *out = calloc (1, 4096);
  pthread_mutex_lock (&log->lock);
  for (size_t i = 0; i < log->len; i++)
    if (strncmp (log->lines[i], who, wlen) == 0 && log->lines[i][wlen] == ':') {
      if (out[0]) strcat (out, " ");
      strcat (out, log->lines[i] + wlen + 1);
    }
  pthread_mutex_unlock (&log->lock);
  return out;
}

int
event_log_find (struct event_log *log, const char *who, const char *what)
{
  char want[256];
  int found = -1;
  snprintf (want, sizeof want, "%s:%s", who, what);
  pthread_mutex_lock (&log->lock);
  for (size_t i = 0; i < log->len && found == -1; i++)
    if (strcmp (log->lines[i], want) == 0)
      found = (int) i;
  pthread_mutex_unlock (&log->lock);
  return found;
}

static void
sleep_ms (int ms)
{
  struct timespec ts = { ms / 1000, (long) (ms % 1000) * 1000000 };
  while (nanosleep (&ts, &ts) == -1)
    ;
}

/* ---- the fake writer ---- */

void
fake_writer_init (struct fake_writer *fw, const char *name, const char *id,
                  struct event_log *log)
{
  memset (fw, 0, sizeof *fw);
  fw->name = name;
  fw->id = id;
  fw->log = log;
  fw->veto_at = -1;
  fw->hang_at = -1;
  fw->veto_kind = VMS_FAILURE_RETRYABLE;
}

/* Everything every event does: log, maybe hang, maybe veto. */
static int
fake_event (void *data, vms_call *call)
{
  struct fake_writer *fw = data;
  enum vms_event ev = vms_call_event (call);

  event_log_add (fw->log, fw->name, vms_event_name (ev));
  fw->event_at[ev] = vms_now_ms ();
  if (ev == VMS_EVENT_PREPARE_SNAPSHOT) {
    vms_component *c = vms_call_component (call, "data");
    const char *p = c ? vms_component_get_string (c, VMS_ATTR_PREVIOUS_CHECKPOINT) : NULL;
    snprintf (fw->previous_seen, sizeof fw->previous_seen, "%s", p ? p : "");
  }
  if (ev == VMS_EVENT_PRE_RESTORE) {
    vms_component *c = vms_document_find_component (vms_call_metadata (call),
                                                    NULL, "data");
    fw->metadata_caption_seen = c ? vms_component_caption (c) : NULL;
  }
  if ((int) ev == fw->hang_at) {
    sleep_ms (fw->hang_ms);
    fw->hang_ended_at = vms_now_ms ();
  }
  if ((int) ev == fw->veto_at) {
    if (fw->veto_silently)
      return -1;
    return vms_call_fail (call, fw->veto_kind, "%s vetoes %s on purpose",
                          fw->name, vms_event_name (ev));
  }
  return 0;
}

static int
fake_identify (void *data, vms_call *call)
{
  struct fake_writer *fw = data;
  vms_component *c = vms_metadata_add_component (vms_call_metadata (call),
                                                 "data", "Test\\data");
  if (c == NULL)
    return -1;
  for (size_t i = 0; fw->files[i]; i++)
    if (vms_component_add_file (c, fw->files[i], VMS_FILE_PLAIN, NULL, NULL) == -1)
      return -1;
  if (vms_metadata_add_component (vms_call_metadata (call), "logs",
                                  "Test\\logs") == NULL)
    return -1;
  return fake_event (data, call);
}

static int
fake_post_snapshot (void *data, vms_call *call)
{
  struct fake_writer *fw = data;
  vms_component *c = vms_call_component (call, "data");
  fw->attr_set_in_post_snapshot =
    c ? vms_component_set_int (c, "stamp", 42) : -2;
  return fake_event (data, call);
}

static int
fake_backup_complete (void *data, vms_call *call)
{
  struct fake_writer *fw = data;
  vms_component *c = vms_call_component (call, "data");
  fw->attr_set_in_backup_complete =
    c ? vms_component_set_int (c, "late", 1) : -2;
  return fake_event (data, call);
}

static int
fake_post_restore (void *data, vms_call *call)
{
  struct fake_writer *fw = data;
  size_t n = vms_call_component_count (call);
  int bad = 0;

  for (size_t i = 0; i < n && i < 4; i++) {
    fw->seen_status[i] = vms_component_restore_status (vms_call_component_at (call, i));
    if (fw->seen_status[i] != VMS_RESTORE_ALL)
      bad = 1;
  }
  if (fake_event (data, call) == -1)
    return -1;
  if (fw->veto_post_restore_unless_all && bad)
    return vms_call_fail (call, VMS_FAILURE_NON_RETRYABLE,
                          "a component was not fully restored");
  return 0;
}

int
fake_writer_add (vms_coordinator *coord, struct fake_writer *fw)
{
  const struct vms_writer w = {
    .api_version = VMS_WRITER_API_VERSION,
    .struct_size = sizeof (struct vms_writer),
    .name = fw->name,
    .id = fw->id,
    .freeze_budget_ms = fw->freeze_budget_ms,
    .event_budget_ms = fw->event_budget_ms,
    .identify = fake_identify,
    .prepare_backup = fake_event,
    .prepare_snapshot = fake_event,
    .freeze = fake_event,
    .thaw = fake_event,
    .post_snapshot = fake_post_snapshot,
    .abort = fake_event,
    .backup_complete = fake_backup_complete,
    .backup_shutdown = fake_event,
    .gather_status = fake_event,
    .pre_restore = fake_event,
    .post_restore = fake_post_restore,
  };
  return vms_coordinator_add_writer (coord, &w, fw);
}

/* ---- the fake provider ---- */

void
fake_provider_init (struct fake_provider *fp, const char *name,
                    struct event_log *log)
{
  memset (fp, 0, sizeof *fp);
  fp->name = name;
  fp->log = log;
}

static int
fake_supports (void *data, const struct vms_file_ref *ref)
{
  return 1;
}

static int
fake_prepare (void *data, vms_snapshot *snap)
{
  struct fake_provider *fp = data;
  event_log_add (fp->log, fp->name, "prepare");
  if (fp->fail_at == 1) {
    vms_set_error (0, "%s cannot prepare, on purpose", fp->name);
    return -1;
  }
  return 0;
}

static int
fake_commit (void *data, vms_snapshot *snap)
{
  struct fake_provider *fp = data;
  event_log_add (fp->log, fp->name, "commit");
  if (fp->hang_commit_ms)
    sleep_ms (fp->hang_commit_ms);
  if (fp->fail_at == 2) {
    vms_set_error (0, "%s cannot commit, on purpose", fp->name);
    return -1;
  }
  for (size_t i = 0; i < vms_snapshot_file_count (snap); i++) {
    char access[4200];
    if (fp->incremental_base) {
      const struct vms_access a = {
        .uri = "nbd+unix:///data?socket=/run/test.sock",
        .changed_extents = "qemu:dirty-bitmap:test",
        .base = fp->incremental_base,
        .flags = VMS_ACCESS_CHANGED_EXTENTS,
      };
      if (vms_snapshot_set_file_access (snap, i, &a) == -1)
        return -1;
      continue;
    }
    snprintf (access, sizeof access, "snap:%s",
              vms_snapshot_file (snap, i)->file.path);
    if (vms_snapshot_set_access (snap, i, access) == -1)
      return -1;
  }
  return 0;
}

static int
fake_release (void *data, vms_snapshot *snap)
{
  struct fake_provider *fp = data;
  event_log_add (fp->log, fp->name, "release");
  fp->released++;
  return 0;
}

int
fake_provider_add (vms_coordinator *coord, struct fake_provider *fp)
{
  const struct vms_provider p = {
    .api_version = VMS_PROVIDER_API_VERSION,
    .struct_size = sizeof (struct vms_provider),
    .name = fp->name,
    .id = "00000000-0000-4000-8000-00000000f00d",
    .commit_budget_ms = fp->commit_budget_ms,
    .supports = fake_supports,
    .prepare = fake_prepare,
    .commit = fake_commit,
    .release = fake_release,
  };
  return vms_coordinator_add_provider (coord, &p, fp);
}
