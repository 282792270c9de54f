/* The coordinator object: the writers and providers it was given, writer
 * status (R4), and the one checked path through which every writer
 * callback is called (dispatch_event → call_run), as nbdkit's backend.c
 * does for plugins: it logs, enforces the budget, and makes sure a failure
 * always has a kind and a message. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cleanup.h"
#include "coordinator-internal.h"
#include "log.h"
#include "vmshadow/error.h"

/* How long vms_coordinator_free waits for a writer still inside a callback
 * before leaving it behind. */
#define CLOSE_GRACE_MS 5000

/* ---- session cores ---- */

struct session_core *
session_core_new (const char *id, int is_backup, vms_document *bcd)
{
  struct session_core *core = calloc (1, sizeof *core);
  if (core == NULL || (core->id = strdup (id)) == NULL) {
    free (core);
    vms_set_error (errno, "out of memory");
    return NULL;
  }
  core->refs = 1;
  core->is_backup = is_backup;
  core->bcd = bcd;
  return core;
}

static struct session_core *
session_core_ref (struct session_core *core)
{
  if (core)
    __atomic_add_fetch (&core->refs, 1, __ATOMIC_SEQ_CST);
  return core;
}

void
session_core_unref (struct session_core *core)
{
  if (core == NULL || __atomic_sub_fetch (&core->refs, 1, __ATOMIC_SEQ_CST) > 0)
    return;
  vms_document_free (core->bcd);
  for (size_t i = 0; i < core->nr_stored_metadata; i++)
    vms_document_free (core->stored_metadata[i]);
  free (core->stored_metadata);
  free (core->id);
  free (core);
}

/* ---- the coordinator ---- */

vms_coordinator *
vms_coordinator_new (void)
{
  vms_coordinator *coord = calloc (1, sizeof *coord);
  if (coord == NULL)
    vms_set_error (errno, "out of memory");
  return coord;
}

static int
wait_idle (struct worker *w, int64_t deadline)
{
  while (worker_busy (w)) {
    if (vms_now_ms () >= deadline)
      return -1;
    struct timespec ts = { 0, 10 * 1000000 };
    nanosleep (&ts, NULL);
  }
  return 0;
}

void
vms_coordinator_free (vms_coordinator *coord)
{
  if (coord == NULL)
    return;
  if (coord->active)
    vms_session_free (coord->active);

  int64_t deadline = vms_now_ms () + CLOSE_GRACE_MS;
  for (size_t i = 0; i < coord->nr_writers; i++) {
    struct writer_slot *slot = coord->writers[i];
    /* A writer still inside a callback owns its data: leave it be. */
    if (wait_idle (slot->worker, deadline) == -1) {
      vms_warn ("writer \"%s\" is still busy; not closing it", slot->name);
      worker_release (slot->worker);
      continue;
    }
    worker_release (slot->worker);
    if (slot->w.close)
      slot->w.close (slot->data);
    vms_document_free (slot->metadata);
    free (slot->name);
    free (slot->id);
    free (slot->message);
    free (slot);
  }
  for (size_t i = 0; i < coord->nr_providers; i++) {
    struct provider_slot *ps = coord->providers[i];
    if (wait_idle (ps->worker, deadline) == -1) {
      vms_warn ("provider \"%s\" is still busy; not closing it", ps->p.name);
      worker_release (ps->worker);
      continue;
    }
    worker_release (ps->worker);
    if (ps->p.close)
      ps->p.close (ps->data);
    free (ps);
  }
  free (coord->writers);
  free (coord->providers);
  free (coord);
}

int
vms_coordinator_add_writer (vms_coordinator *coord,
                            const struct vms_writer *writer, void *data)
{
  CLEANUP_FREE struct writer_slot *slot = NULL;
  struct writer_slot **list;
  const char *label = writer && writer->name ? writer->name : "(unnamed)";

  if (writer == NULL || writer->api_version != VMS_WRITER_API_VERSION) {
    vms_set_error (EINVAL, "writer \"%s\": API version %u is not %u", label,
                   writer ? writer->api_version : 0, VMS_WRITER_API_VERSION);
    return -1;
  }
  if (writer->struct_size < offsetof (struct vms_writer, identify) +
      sizeof writer->identify || writer->identify == NULL) {
    vms_set_error (EINVAL, "writer \"%s\": it has no identify callback", label);
    return -1;
  }
  if (coord->active) {
    vms_set_error (EBUSY, "cannot add writer \"%s\" while a session runs", label);
    return -1;
  }
  slot = calloc (1, sizeof *slot);
  if (slot == NULL) {
    vms_set_error (errno, "out of memory");
    return -1;
  }
  /* A writer built against an older, smaller struct gets NULL (default)
   * for the callbacks it does not know. */
  memcpy (&slot->w, writer, writer->struct_size < sizeof slot->w
          ? writer->struct_size : sizeof slot->w);
  slot->data = data;
  slot->name = strdup (label);
  slot->id = writer->id ? strdup (writer->id) : NULL;
  if (slot->name == NULL || (writer->id && slot->id == NULL)) {
    vms_set_error (errno, "out of memory");
    free (slot->name);
    free (slot->id);
    return -1;
  }
  list = realloc (coord->writers, (coord->nr_writers + 1) * sizeof *list);
  if (list == NULL ||
      (slot->worker = worker_new (slot->name)) == NULL) {
    if (list) coord->writers = list;
    free (slot->name);
    free (slot->id);
    if (list == NULL) vms_set_error (errno, "out of memory");
    return -1;
  }
  coord->writers = list;
  coord->writers[coord->nr_writers++] = slot;
  slot = NULL;                  /* the coordinator owns it now */
  return 0;
}

int
vms_coordinator_add_provider (vms_coordinator *coord,
                              const struct vms_provider *provider, void *data)
{
  struct provider_slot *ps, **list;
  const char *label = provider && provider->name ? provider->name : "(unnamed)";

  if (provider == NULL || provider->api_version != VMS_PROVIDER_API_VERSION) {
    vms_set_error (EINVAL, "provider \"%s\": API version %u is not %u", label,
                   provider ? provider->api_version : 0,
                   VMS_PROVIDER_API_VERSION);
    return -1;
  }
  if (provider->name == NULL ||
      provider->struct_size < offsetof (struct vms_provider, commit) +
      sizeof provider->commit ||
      provider->supports == NULL || provider->commit == NULL) {
    vms_set_error (EINVAL, "provider \"%s\": it needs a name and the supports "
                   "and commit callbacks", label);
    return -1;
  }
  if (coord->active) {
    vms_set_error (EBUSY, "cannot add provider \"%s\" while a session runs", label);
    return -1;
  }
  ps = calloc (1, sizeof *ps);
  list = realloc (coord->providers, (coord->nr_providers + 1) * sizeof *list);
  if (list) coord->providers = list;
  if (ps == NULL || list == NULL) {
    free (ps);
    vms_set_error (errno, "out of memory");
    return -1;
  }
  memcpy (&ps->p, provider, provider->struct_size < sizeof ps->p
          ? provider->struct_size : sizeof ps->p);
  ps->data = data;
  if ((ps->worker = worker_new (label)) == NULL) {
    free (ps);
    return -1;
  }
  coord->providers[coord->nr_providers++] = ps;
  return 0;
}

size_t
vms_coordinator_writer_count (const vms_coordinator *coord)
{
  return coord->nr_writers;
}

static void
fill_status (const struct writer_slot *slot, struct vms_writer_status *st)
{
  st->name = slot->name;
  st->id = slot->id;
  st->state = slot->state;
  st->failed_at = slot->failed_at;
  st->failure = slot->failure;
  st->message = slot->message;
  st->metadata = slot->metadata;
}

int
vms_coordinator_writer_status (const vms_coordinator *coord, size_t i,
                               struct vms_writer_status *status)
{
  if (i >= coord->nr_writers) {
    vms_set_error (ERANGE, "there is no writer %zu", i);
    return -1;
  }
  fill_status (coord->writers[i], status);
  return 0;
}

void
reset_writer_states (vms_coordinator *coord)
{
  for (size_t i = 0; i < coord->nr_writers; i++) {
    struct writer_slot *slot = coord->writers[i];
    slot->state = VMS_WRITER_STABLE;
    slot->failure = VMS_FAILURE_NONE;
    free (slot->message);
    slot->message = NULL;
  }
}

int
vms_coordinator_gather_metadata (vms_coordinator *coord)
{
  if (coord->active) {
    vms_set_error (EBUSY, "cannot gather writer metadata while a session runs");
    return -1;
  }
  reset_writer_states (coord);
  size_t failed = dispatch_event (coord, NULL, VMS_EVENT_IDENTIFY, NULL);
  if (failed) {
    vms_set_error (EIO, "%zu of %zu writers failed to identify themselves",
                   failed, coord->nr_writers);
    return -1;
  }
  return 0;
}

int64_t
writer_event_budget_ms (const struct writer_slot *slot)
{
  return slot->w.event_budget_ms ? slot->w.event_budget_ms
    : VMS_DEFAULT_EVENT_BUDGET_MS;
}

int64_t
writer_freeze_budget_ms (const struct writer_slot *slot)
{
  return slot->w.freeze_budget_ms ? slot->w.freeze_budget_ms
    : VMS_DEFAULT_FREEZE_BUDGET_MS;
}

/* ---- calls: one event to one writer ---- */

struct vms_call {
  struct job job;               /* first: a vms_call is a job */
  struct writer_slot *slot;
  struct session_core *core;    /* NULL outside sessions (gather_metadata) */
  enum vms_event event;
  int64_t deadline_ms;
  vms_document *identified;     /* Identify fills this one */
  int rc;
  enum vms_failure kind;
  char *message;
};

static int
call_callback (struct vms_call *call)
{
  const struct vms_writer *w = &call->slot->w;
  int (*fn) (void *, vms_call *) = NULL;

  switch (call->event) {
  case VMS_EVENT_IDENTIFY: fn = w->identify; break;
  case VMS_EVENT_PREPARE_BACKUP: fn = w->prepare_backup; break;
  case VMS_EVENT_PREPARE_SNAPSHOT: fn = w->prepare_snapshot; break;
  case VMS_EVENT_FREEZE: fn = w->freeze; break;
  case VMS_EVENT_THAW: fn = w->thaw; break;
  case VMS_EVENT_POST_SNAPSHOT: fn = w->post_snapshot; break;
  case VMS_EVENT_ABORT: fn = w->abort; break;
  case VMS_EVENT_BACKUP_COMPLETE: fn = w->backup_complete; break;
  case VMS_EVENT_BACKUP_SHUTDOWN: fn = w->backup_shutdown; break;
  case VMS_EVENT_PRE_RESTORE: fn = w->pre_restore; break;
  case VMS_EVENT_POST_RESTORE: fn = w->post_restore; break;
  case VMS_EVENT_GATHER_STATUS: fn = w->gather_status; break;
  case VMS_EVENT_COUNT: break;
  }
  return fn ? fn (call->slot->data, call) : 0;
}

static void
call_run (struct job *job)
{
  struct vms_call *call = (struct vms_call *) job;
  const char *name = call->slot->name;

  vms_debug ("writer \"%s\": %s", name, vms_event_name (call->event));
  call->rc = call_callback (call);
  if (call->rc == -1) {
    if (call->kind == VMS_FAILURE_NONE)
      call->kind = VMS_FAILURE_NON_RETRYABLE;
    if (call->message == NULL) {
      const char *err = vms_get_error ();
      call->message = strdup (err ? err : "the writer gave no reason");
    }
  }
  else if (call->rc != 0) {
    call->rc = -1;
    call->kind = VMS_FAILURE_NON_RETRYABLE;
    free (call->message);
    call->message = strdup ("the writer's callback returned neither 0 nor -1");
  }
  vms_debug ("writer \"%s\": %s %s", name, vms_event_name (call->event),
             call->rc == 0 ? "done" : "failed");
}

static void
call_free (struct job *job)
{
  struct vms_call *call = (struct vms_call *) job;
  session_core_unref (call->core);
  vms_document_free (call->identified);
  free (call->message);
  free (call);
}

/* Record a failure unless the writer already failed in this session: the
 * first failure is the one that explains the others. */
static void
writer_fail (struct writer_slot *slot, enum vms_event ev,
             enum vms_failure kind, const char *message)
{
  if (slot->state == VMS_WRITER_FAILED)
    return;
  slot->state = VMS_WRITER_FAILED;
  slot->failed_at = ev;
  slot->failure = kind;
  free (slot->message);
  slot->message = strdup (message ? message : "unknown failure");
  vms_debug ("writer \"%s\" failed at %s (%s): %s", slot->name,
             vms_event_name (ev), vms_failure_name (kind), slot->message);
}

/* The state a writer reaches when it handled ev (R4). */
static void
writer_advance (struct writer_slot *slot, enum vms_event ev)
{
  if (slot->state == VMS_WRITER_FAILED)
    return;
  switch (ev) {
  case VMS_EVENT_PREPARE_SNAPSHOT: slot->state = VMS_WRITER_WAITING_FOR_FREEZE; break;
  case VMS_EVENT_FREEZE: slot->state = VMS_WRITER_WAITING_FOR_THAW; break;
  case VMS_EVENT_THAW: slot->state = VMS_WRITER_WAITING_FOR_POST_SNAPSHOT; break;
  case VMS_EVENT_POST_SNAPSHOT:
    slot->state = VMS_WRITER_WAITING_FOR_BACKUP_COMPLETE; break;
  case VMS_EVENT_BACKUP_SHUTDOWN: break;
  case VMS_EVENT_GATHER_STATUS: break;  /* still waiting for BackupComplete */
  default: slot->state = VMS_WRITER_STABLE; break;
  }
}

/* Identify succeeded: check the document and keep it. */
static int
take_metadata (struct writer_slot *slot, struct vms_call *call)
{
  vms_document *md = call->identified;
  const char *name = vms_metadata_writer_name (md);
  const char *id = vms_metadata_writer_id (md);

  if (id == NULL || *id == '\0') {
    if (slot->id == NULL) {
      writer_fail (slot, VMS_EVENT_IDENTIFY, VMS_FAILURE_NON_RETRYABLE,
                   "its metadata document has no writer id");
      return -1;
    }
    id = slot->id;
  }
  char *newname = strdup (name && *name ? name : slot->name);
  char *newid = strdup (id);
  if (newname == NULL || newid == NULL) {
    free (newname);
    free (newid);
    writer_fail (slot, VMS_EVENT_IDENTIFY, VMS_FAILURE_OUT_OF_RESOURCES,
                 "out of memory");
    return -1;
  }
  free (slot->name);
  free (slot->id);
  slot->name = newname;
  slot->id = newid;
  vms_document_free (slot->metadata);
  slot->metadata = call->identified;
  call->identified = NULL;
  return 0;
}

size_t
dispatch_event (vms_coordinator *coord, struct session_core *core,
                enum vms_event ev, const int64_t *deadlines)
{
  size_t n = coord->nr_writers, failed = 0;
  CLEANUP_FREE struct vms_call **calls = calloc (n ? n : 1, sizeof *calls);
  int64_t now = vms_now_ms ();

  if (calls == NULL) {
    for (size_t i = 0; i < n; i++)
      writer_fail (coord->writers[i], ev, VMS_FAILURE_OUT_OF_RESOURCES,
                   "out of memory");
    return n;
  }
  for (size_t i = 0; i < n; i++) {
    struct writer_slot *slot = coord->writers[i];
    struct vms_call *call = calloc (1, sizeof *call);
    if (call == NULL ||
        (ev == VMS_EVENT_IDENTIFY &&
         (call->identified = vms_metadata_new (slot->name, slot->id)) == NULL)) {
      free (call);
      writer_fail (slot, ev, VMS_FAILURE_OUT_OF_RESOURCES, "out of memory");
      continue;
    }
    call->job.run = call_run;
    call->job.free = call_free;
    call->slot = slot;
    call->core = session_core_ref (core);
    call->event = ev;
    call->deadline_ms = deadlines ? deadlines[i]
      : now + writer_event_budget_ms (slot);
    calls[i] = call;
    worker_post (slot->worker, &call->job);
  }

  for (size_t i = 0; i < n; i++) {
    struct writer_slot *slot = coord->writers[i];
    struct vms_call *call = calls[i];
    char msg[1200];

    if (call == NULL) {
      failed++;
      continue;
    }
    if (worker_wait (slot->worker, &call->job, call->deadline_ms) == -1) {
      /* The job still runs; the worker frees it when it returns. */
      snprintf (msg, sizeof msg, "writer \"%s\" did not finish %s within its "
                "budget (%lld ms)", slot->name, vms_event_name (ev),
                (long long) (call->deadline_ms - now));
      writer_fail (slot, ev, VMS_FAILURE_TIMEOUT, msg);
      failed++;
      continue;
    }
    if (call->rc == 0 && ev == VMS_EVENT_IDENTIFY)
      call->rc = take_metadata (slot, call);
    if (call->rc == 0)
      writer_advance (slot, ev);
    else {
      if (call->message) {
        snprintf (msg, sizeof msg, "writer \"%s\" failed at %s: %s",
                  slot->name, vms_event_name (ev), call->message);
        writer_fail (slot, ev, call->kind, msg);
      }
      failed++;
    }
    call_free (&call->job);
  }
  return failed;
}

/* ---- what a callback can ask of its call ---- */

enum vms_event
vms_call_event (const vms_call *call)
{
  return call->event;
}

const char *
vms_call_session_id (const vms_call *call)
{
  return call->core ? call->core->id : NULL;
}

int
vms_call_is_backup (const vms_call *call)
{
  return call->core ? call->core->is_backup : 1;
}

vms_document *
vms_call_metadata (vms_call *call)
{
  if (call->event == VMS_EVENT_IDENTIFY)
    return call->identified;
  /* A restore is driven by the documents stored with the backup (R5). */
  if (call->core && call->slot->id)
    for (size_t i = 0; i < call->core->nr_stored_metadata; i++) {
      const char *id = vms_metadata_writer_id (call->core->stored_metadata[i]);
      if (id && strcmp (id, call->slot->id) == 0)
        return call->core->stored_metadata[i];
    }
  return call->slot->metadata;
}

vms_component *
vms_call_component (vms_call *call, const char *name)
{
  if (call->core == NULL || call->core->bcd == NULL || call->slot->id == NULL)
    return NULL;
  return vms_document_find_component (call->core->bcd, call->slot->id, name);
}

size_t
vms_call_component_count (vms_call *call)
{
  if (call->core == NULL || call->core->bcd == NULL || call->slot->id == NULL)
    return 0;
  return vms_document_component_count (call->core->bcd, call->slot->id);
}

vms_component *
vms_call_component_at (vms_call *call, size_t i)
{
  if (call->core == NULL || call->core->bcd == NULL || call->slot->id == NULL)
    return NULL;
  return vms_document_component (call->core->bcd, call->slot->id, i);
}

int
vms_call_fail (vms_call *call, enum vms_failure kind, const char *fmt, ...)
{
  char buf[1024];
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (buf, sizeof buf, fmt, ap);
  va_end (ap);
  call->kind = kind == VMS_FAILURE_NONE ? VMS_FAILURE_NON_RETRYABLE : kind;
  free (call->message);
  call->message = strdup (buf);
  vms_set_error (0, "%s", buf);
  return -1;
}

int64_t
vms_call_ms_left (const vms_call *call)
{
  int64_t left = call->deadline_ms - vms_now_ms ();
  return left > 0 ? left : 0;
}
