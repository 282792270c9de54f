/* Backup and restore sessions: the event order of R2 and R6, all or
 * nothing (any failure after PrepareForBackup aborts the whole set), the
 * Freeze→Thaw and commit budgets of R3, and the snapshot set made by the
 * providers. Which call is allowed in which state is one table
 * (call_rules), checked on entry to every public call. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "cleanup.h"
#include "coordinator-internal.h"
#include "document-internal.h"
#include "log.h"
#include "vmshadow/error.h"

/* How long the end of a session waits for a provider's release. */
#define RELEASE_BUDGET_MS 60000

/* ---- snapshots: the files one provider images in one session ---- */

struct snapshot_file {
  struct vms_file_ref ref;      /* strings below */
  char *writer_id, *component, *path, *format, *provider;
  char *access;                 /* the URI, the path or the image */
  int is_uri, is_image;
  char *secret_file;            /* with an image, or NULL */
  char *changed_extents, *base; /* incremental reads (struct vms_access) */
  unsigned flags;
};

struct vms_snapshot {
  int refs;                     /* atomic: the session's and queued jobs' */
  struct provider_slot *ps;
  char *session_id;
  struct snapshot_file *files;
  size_t nr_files;
  void *data;
  int64_t deadline_ms;          /* of the step running now */
  int prepared, committed;
};

enum provider_step { STEP_PREPARE, STEP_COMMIT, STEP_RELEASE };

static const char *const step_names[] = { "prepare", "commit", "release" };

struct provider_job {
  struct job job;
  vms_snapshot *snap;
  enum provider_step step;
  int64_t deadline_ms;
  int rc;
  int errnum;                   /* the provider's errno on failure */
  char *message;
};

/* A provider says what kind of failure it had through the errno it gives
 * vms_set_error (provider.h). */
static enum vms_failure
failure_of_errno (int errnum)
{
  switch (errnum) {
  case ENOSPC: case ENOMEM: case EDQUOT: case EMFILE: case ENFILE:
    return VMS_FAILURE_OUT_OF_RESOURCES;
  case ETIMEDOUT:
    return VMS_FAILURE_TIMEOUT;
  case EAGAIN: case EBUSY: case EINTR:
    return VMS_FAILURE_RETRYABLE;
  default:
    return VMS_FAILURE_NON_RETRYABLE;
  }
}

static void
snapshot_unref (vms_snapshot *snap)
{
  if (snap == NULL || __atomic_sub_fetch (&snap->refs, 1, __ATOMIC_SEQ_CST) > 0)
    return;
  for (size_t i = 0; i < snap->nr_files; i++) {
    struct snapshot_file *f = &snap->files[i];
    free (f->writer_id); free (f->component); free (f->path);
    free (f->format); free (f->provider); free (f->access);
    free (f->secret_file);
    free (f->changed_extents); free (f->base);
  }
  free (snap->files);
  free (snap->session_id);
  free (snap);
}

static void
provider_job_run (struct job *job)
{
  struct provider_job *pj = (struct provider_job *) job;
  vms_snapshot *snap = pj->snap;
  const struct vms_provider *p = &snap->ps->p;

  snap->deadline_ms = pj->deadline_ms;
  vms_debug ("provider \"%s\": %s", p->name, step_names[pj->step]);
  switch (pj->step) {
  case STEP_PREPARE:
    pj->rc = p->prepare ? p->prepare (snap->ps->data, snap) : 0;
    if (pj->rc == 0) snap->prepared = 1;
    break;
  case STEP_COMMIT:
    pj->rc = p->commit (snap->ps->data, snap);
    if (pj->rc == 0) snap->committed = 1;
    break;
  case STEP_RELEASE:
    pj->rc = p->release ? p->release (snap->ps->data, snap) : 0;
    break;
  }
  if (pj->rc != 0) {
    const char *err = vms_get_error ();
    pj->rc = -1;
    pj->errnum = vms_get_errno ();
    pj->message = strdup (err ? err : "the provider gave no reason");
  }
}

static void
provider_job_free (struct job *job)
{
  struct provider_job *pj = (struct provider_job *) job;
  snapshot_unref (pj->snap);
  free (pj->message);
  free (pj);
}

/* Run one step of one snapshot on its provider's thread, bounded by
 * budget_ms. Returns 0, or -1 with *message (caller frees) saying why. */
static int
provider_step (vms_snapshot *snap, enum provider_step step, int64_t budget_ms,
               enum vms_failure *kind, char **message)
{
  struct provider_job *pj = calloc (1, sizeof *pj);
  const char *name = snap->ps->p.name;

  *kind = VMS_FAILURE_NON_RETRYABLE;
  if (pj == NULL) {
    *kind = VMS_FAILURE_OUT_OF_RESOURCES;
    *message = strdup ("out of memory");
    return -1;
  }
  pj->job.run = provider_job_run;
  pj->job.free = provider_job_free;
  pj->snap = snap;
  __atomic_add_fetch (&snap->refs, 1, __ATOMIC_SEQ_CST);
  pj->step = step;
  pj->deadline_ms = vms_now_ms () + budget_ms;
  worker_post (snap->ps->worker, &pj->job);
  if (worker_wait (snap->ps->worker, &pj->job, pj->deadline_ms) == -1) {
    *kind = VMS_FAILURE_TIMEOUT;
    if (asprintf (message, "provider \"%s\" did not finish %s within its "
                  "budget (%lld ms)", name, step_names[step],
                  (long long) budget_ms) == -1)
      *message = NULL;
    return -1;
  }
  int rc = pj->rc;
  if (rc == -1)
    *kind = failure_of_errno (pj->errnum);
  if (rc == -1 &&
      asprintf (message, "provider \"%s\" failed at %s: %s", name,
                step_names[step], pj->message) == -1)
    *message = NULL;
  provider_job_free (&pj->job);
  return rc;
}

const char *
vms_snapshot_session_id (const vms_snapshot *snap)
{
  return snap->session_id;
}

size_t
vms_snapshot_file_count (const vms_snapshot *snap)
{
  return snap->nr_files;
}

const struct vms_file_ref *
vms_snapshot_file (const vms_snapshot *snap, size_t i)
{
  return i < snap->nr_files ? &snap->files[i].ref : NULL;
}

int
vms_snapshot_set_file_access (vms_snapshot *snap, size_t i,
                              const struct vms_access *a)
{
  const char *where = a ? (a->uri ? a->uri : a->path ? a->path : a->image)
    : NULL;
  char *copy, *ctx = NULL, *base = NULL, *secret = NULL;

  if (i >= snap->nr_files || where == NULL ||
      (!!a->uri + !!a->path + !!a->image) != 1 ||
      (a->secret_file && a->image == NULL)) {
    vms_set_error (EINVAL, "no file %zu in this snapshot, or not exactly one "
                   "of a URI, a path and an image (a secret file goes only "
                   "with an image)", i);
    return -1;
  }
  if ((a->flags & VMS_ACCESS_CHANGED_EXTENTS) &&
      (a->uri == NULL || a->changed_extents == NULL || a->base == NULL)) {
    vms_set_error (EINVAL, "incremental access to %s needs a URI, the changed "
                   "extents' context and the base", snap->files[i].path);
    return -1;
  }
  if ((a->flags & VMS_ACCESS_CHANGED_LIST) &&
      (a->image == NULL || a->changed_extents == NULL || a->base == NULL)) {
    vms_set_error (EINVAL, "incremental access to %s by a list of changed "
                   "extents needs an image, the list's file and the base",
                   snap->files[i].path);
    return -1;
  }
  if ((copy = strdup (where)) == NULL ||
      (a->changed_extents && (ctx = strdup (a->changed_extents)) == NULL) ||
      (a->base && (base = strdup (a->base)) == NULL) ||
      (a->secret_file && (secret = strdup (a->secret_file)) == NULL)) {
    free (copy);
    free (ctx);
    free (base);
    vms_set_error (errno, "out of memory");
    return -1;
  }
  struct snapshot_file *f = &snap->files[i];
  free (f->access);
  free (f->changed_extents);
  free (f->base);
  free (f->secret_file);
  f->access = copy;
  f->is_uri = a->uri != NULL;
  f->is_image = a->image != NULL;
  f->secret_file = secret;
  f->changed_extents = ctx;
  f->base = base;
  f->flags = a->flags;
  return 0;
}

int
vms_snapshot_set_access (vms_snapshot *snap, size_t i, const char *access)
{
  /* A URI has a scheme ("nbd+unix://…"); a path starts with '/'. */
  const int uri = access && access[0] != '/' && strstr (access, "://") != NULL;
  const struct vms_access a = {
    .uri = uri ? access : NULL, .path = uri ? NULL : access,
  };
  return vms_snapshot_set_file_access (snap, i, &a);
}

const char *
vms_snapshot_access (const vms_snapshot *snap, size_t i)
{
  return i < snap->nr_files ? snap->files[i].access : NULL;
}

void
vms_snapshot_set_data (vms_snapshot *snap, void *data)
{
  snap->data = data;
}

void *
vms_snapshot_data (const vms_snapshot *snap)
{
  return snap->data;
}

int64_t
vms_snapshot_ms_left (const vms_snapshot *snap)
{
  int64_t left = snap->deadline_ms - vms_now_ms ();
  return left > 0 ? left : 0;
}

/* ---- sessions ---- */

struct selection {
  char *writer_id;
  char *component;
};

struct vms_session {
  vms_coordinator *coord;
  struct session_core *core;
  enum vms_session_state state;
  int is_backup;
  vms_snapshot **snaps;
  size_t nr_snaps;
  struct selection *selected;
  size_t nr_selected;
  vms_document **metadata;      /* gathered (backup) or stored (restore) */
  size_t nr_metadata;
  int failed;
  struct vms_session_failure failure;
  char *failure_culprit, *failure_message;
};

/* The states each public call is allowed in (libnbd's permitted states). */
#define ST(x) (1u << VMS_SESSION_##x)
enum { FOR_BACKUP = 1, FOR_RESTORE = 2 };
static const struct call_rule {
  const char *call;
  unsigned states;
  int kind;
} call_rules[] = {
  { "vms_session_identify", ST (CREATED), FOR_BACKUP },
  { "vms_session_select", ST (IDENTIFIED), FOR_BACKUP },
  { "vms_session_select", ST (CREATED), FOR_RESTORE },
  { "vms_session_prepare_backup", ST (IDENTIFIED), FOR_BACKUP },
  { "vms_session_do_snapshot_set", ST (PREPARED), FOR_BACKUP },
  { "vms_session_gather_status", ST (SNAPSHOTTED), FOR_BACKUP },
  { "vms_session_backup_complete", ST (SNAPSHOTTED), FOR_BACKUP },
  { "vms_session_abort", ST (CREATED) | ST (IDENTIFIED) | ST (PREPARED) |
    ST (SNAPSHOTTED) | ST (ABORTED), FOR_BACKUP },
  { "vms_session_pre_restore", ST (CREATED), FOR_RESTORE },
  { "vms_session_set_restore_status", ST (RESTORING), FOR_RESTORE },
  { "vms_session_post_restore", ST (RESTORING), FOR_RESTORE },
};

static int
check_state (const vms_session *s, const char *call)
{
  for (size_t i = 0; i < sizeof call_rules / sizeof call_rules[0]; i++) {
    const struct call_rule *r = &call_rules[i];
    if (strcmp (r->call, call) != 0)
      continue;
    if (r->kind != (s->is_backup ? FOR_BACKUP : FOR_RESTORE)) {
      /* The same call may have a rule of the other kind further on. */
      int other = 0;
      for (size_t k = i + 1; k < sizeof call_rules / sizeof call_rules[0]; k++)
        other |= strcmp (call_rules[k].call, call) == 0;
      if (other)
        continue;
      vms_set_error (EINVAL, "%s: not allowed in a %s session", call,
                     s->is_backup ? "backup" : "restore");
      return -1;
    }
    if (!(r->states & (1u << s->state))) {
      char needed[256] = "";
      for (int st = 0; st <= VMS_SESSION_SHUT_DOWN; st++)
        if (r->states & (1u << st)) {
          if (needed[0]) strncat (needed, " or ", sizeof needed - strlen (needed) - 1);
          strncat (needed, vms_session_state_name (st),
                   sizeof needed - strlen (needed) - 1);
        }
      vms_set_error (EINVAL, "%s: the session is %s; this call needs it %s",
                     call, vms_session_state_name (s->state), needed);
      return -1;
    }
    return 0;
  }
  abort ();                     /* every public call has a rule */
}
#define CHECK_STATE(s) do { if (check_state ((s), __func__) == -1) return -1; } while (0)

/* Record why the session failed; the first failure is the cause. */
static void
session_fail (vms_session *s, enum vms_event phase, enum vms_failure kind,
              const char *culprit, int is_provider, const char *message)
{
  if (s->failed)
    return;
  s->failed = 1;
  s->failure_culprit = strdup (culprit ? culprit : "requester");
  s->failure_message = strdup (message ? message : "unknown failure");
  s->failure.phase = phase;
  s->failure.kind = kind;
  s->failure.is_provider = is_provider;
  s->failure.culprit = s->failure_culprit;
  s->failure.message = s->failure_message;
}

/* After dispatch_event reported failures: take the first failed writer as
 * the session's cause and set the error. */
static void
session_fail_from_writers (vms_session *s, enum vms_event ev)
{
  for (size_t i = 0; i < s->coord->nr_writers; i++) {
    struct writer_slot *slot = s->coord->writers[i];
    if (slot->state == VMS_WRITER_FAILED) {
      session_fail (s, slot->failed_at, slot->failure, slot->name, 0,
                    slot->message);
      break;
    }
  }
  if (!s->failed)
    session_fail (s, ev, VMS_FAILURE_NON_RETRYABLE, NULL, 0,
                  "a writer failed");
  vms_set_error (EIO, "%s", s->failure_message);
}

/* Write each writer's state into the backup components document. */
static void
record_writer_results (vms_session *s)
{
  if (s->core->bcd == NULL)
    return;
  for (size_t i = 0; i < s->coord->nr_writers; i++) {
    struct writer_slot *slot = s->coord->writers[i];
    if (slot->id)
      document_components_set_writer_result (
        s->core->bcd, slot->id,
        vms_writer_state_name (slot->state, slot->failed_at),
        vms_failure_name (slot->failure), slot->message);
  }
}

static void
release_snapshots (vms_session *s)
{
  for (size_t i = 0; i < s->nr_snaps; i++) {
    enum vms_failure kind;
    CLEANUP_FREE char *msg = NULL;
    if (provider_step (s->snaps[i], STEP_RELEASE, RELEASE_BUDGET_MS,
                       &kind, &msg) == -1)
      vms_warn ("%s", msg ? msg : "a provider failed to release its snapshot");
    snapshot_unref (s->snaps[i]);
  }
  free (s->snaps);
  s->snaps = NULL;
  s->nr_snaps = 0;
}

/* R2/R12: every writer gets Abort, shadow copies are dropped, nothing
 * counts as backed up. Abort goes only to sessions that got as far as
 * PrepareForBackup. */
static void
abort_set (vms_session *s)
{
  if (s->state == VMS_SESSION_PREPARED || s->state == VMS_SESSION_SNAPSHOTTED) {
    vms_debug ("session %s: aborting the set", s->core->id);
    dispatch_event (s->coord, s->core, VMS_EVENT_ABORT, NULL);
    /* A writer that had not failed is back where it started. */
    for (size_t i = 0; i < s->coord->nr_writers; i++)
      if (s->coord->writers[i]->state != VMS_WRITER_FAILED)
        s->coord->writers[i]->state = VMS_WRITER_STABLE;
  }
  release_snapshots (s);
  s->state = VMS_SESSION_ABORTED;
  record_writer_results (s);
}

static char *
make_backup_id (void)
{
  char buf[64];
  unsigned char rnd[3] = { 0 };
  struct timespec ts;
  struct tm tm;

  clock_gettime (CLOCK_REALTIME, &ts);
  gmtime_r (&ts.tv_sec, &tm);
  if (getrandom (rnd, sizeof rnd, 0) != (ssize_t) sizeof rnd)
    rnd[0] = (unsigned char) ts.tv_nsec;
  snprintf (buf, sizeof buf, "%04d%02d%02dT%02d%02d%02dZ-%02x%02x%02x",
            tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
            tm.tm_min, tm.tm_sec, rnd[0], rnd[1], rnd[2]);
  return strdup (buf);
}

static vms_session *
session_new (vms_coordinator *coord, const char *id, int is_backup,
             vms_document *bcd)
{
  vms_session *s;

  if (coord->active) {
    vms_document_free (bcd);
    vms_set_error (EBUSY, "a session is already running on this coordinator");
    return NULL;
  }
  s = calloc (1, sizeof *s);
  if (s == NULL || (s->core = session_core_new (id, is_backup, bcd)) == NULL) {
    vms_document_free (bcd);
    free (s);
    vms_set_error (ENOMEM, "out of memory");
    return NULL;
  }
  s->coord = coord;
  s->is_backup = is_backup;
  s->state = VMS_SESSION_CREATED;
  coord->active = s;
  reset_writer_states (coord);
  return s;
}

vms_session *
vms_backup_session_new (vms_coordinator *coord, const char *backup_id)
{
  CLEANUP_FREE char *id = backup_id ? strdup (backup_id) : make_backup_id ();
  if (id == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return NULL;
  }
  vms_document *bcd = vms_components_new (id);
  if (bcd == NULL)
    return NULL;
  return session_new (coord, id, 1, bcd);
}

vms_session *
vms_restore_session_new (vms_coordinator *coord,
                         const vms_document *components,
                         const vms_document *const *metadata,
                         size_t nr_metadata)
{
  vms_document *bcd;
  vms_session *s;

  if (components == NULL || vms_document_kind (components) != VMS_DOC_COMPONENTS) {
    vms_set_error (EINVAL, "a restore needs the backup components document");
    return NULL;
  }
  if ((bcd = vms_document_copy (components)) == NULL)
    return NULL;
  s = session_new (coord, vms_components_backup_id (components), 0, bcd);
  if (s == NULL)
    return NULL;
  s->metadata = calloc (nr_metadata ? nr_metadata : 1, sizeof *s->metadata);
  s->core->stored_metadata = calloc (nr_metadata ? nr_metadata : 1,
                                     sizeof *s->core->stored_metadata);
  if (s->metadata == NULL || s->core->stored_metadata == NULL) {
    vms_session_free (s);
    vms_set_error (ENOMEM, "out of memory");
    return NULL;
  }
  for (size_t i = 0; i < nr_metadata; i++) {
    if ((s->metadata[i] = vms_document_copy (metadata[i])) == NULL) {
      vms_session_free (s);
      return NULL;
    }
    s->nr_metadata++;
    if ((s->core->stored_metadata[i] = vms_document_copy (metadata[i])) == NULL) {
      vms_session_free (s);
      return NULL;
    }
    s->core->nr_stored_metadata++;
  }
  return s;
}

void
vms_session_free (vms_session *s)
{
  if (s == NULL)
    return;
  if (s->is_backup && s->state != VMS_SESSION_SHUT_DOWN) {
    if (s->state != VMS_SESSION_COMPLETED && s->state != VMS_SESSION_ABORTED) {
      session_fail (s, VMS_EVENT_BACKUP_SHUTDOWN, VMS_FAILURE_NON_RETRYABLE,
                    NULL, 0, "the session ended before the backup completed");
      abort_set (s);
    }
    /* R2: BackupShutdown always arrives, also after an abort. */
    dispatch_event (s->coord, s->core, VMS_EVENT_BACKUP_SHUTDOWN, NULL);
  }
  release_snapshots (s);
  s->state = VMS_SESSION_SHUT_DOWN;
  if (s->coord->active == s)
    s->coord->active = NULL;
  for (size_t i = 0; i < s->nr_selected; i++) {
    free (s->selected[i].writer_id);
    free (s->selected[i].component);
  }
  free (s->selected);
  for (size_t i = 0; i < s->nr_metadata; i++)
    vms_document_free (s->metadata[i]);
  free (s->metadata);
  free (s->failure_culprit);
  free (s->failure_message);
  session_core_unref (s->core);
  free (s);
}

enum vms_session_state
vms_session_state (const vms_session *s)
{
  return s->state;
}

const char *
vms_session_id (const vms_session *s)
{
  return s->core->id;
}

int
vms_session_failure (const vms_session *s, struct vms_session_failure *f)
{
  if (!s->failed)
    return -1;
  *f = s->failure;
  return 0;
}

/* ---- backup ---- */

int
vms_session_identify (vms_session *s)
{
  CHECK_STATE (s);
  if (dispatch_event (s->coord, s->core, VMS_EVENT_IDENTIFY, NULL) > 0) {
    /* Before PrepareForBackup: nothing to abort, but nothing to back up
     * either (R12) — one writer's components cannot be left out silently. */
    session_fail_from_writers (s, VMS_EVENT_IDENTIFY);
    s->state = VMS_SESSION_ABORTED;
    return -1;
  }
  s->metadata = calloc (s->coord->nr_writers + 1, sizeof *s->metadata);
  if (s->metadata == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  for (size_t i = 0; i < s->coord->nr_writers; i++) {
    struct writer_slot *slot = s->coord->writers[i];
    for (size_t j = 0; j < i; j++)
      if (strcmp (s->coord->writers[j]->id, slot->id) == 0) {
        char msg[512];
        snprintf (msg, sizeof msg, "writers \"%s\" and \"%s\" have the same "
                  "writer id %s", s->coord->writers[j]->name, slot->name,
                  slot->id);
        session_fail (s, VMS_EVENT_IDENTIFY, VMS_FAILURE_NON_RETRYABLE,
                      slot->name, 0, msg);
        vms_set_error (EINVAL, "%s", msg);
        s->state = VMS_SESSION_ABORTED;
        return -1;
      }
    if ((s->metadata[i] = vms_document_copy (slot->metadata)) == NULL ||
        document_components_add_writer (s->core->bcd, slot->name, slot->id) == -1)
      return -1;
    s->nr_metadata++;
  }
  s->state = VMS_SESSION_IDENTIFIED;
  return 0;
}

int
vms_session_select (vms_session *s, const char *writer_id,
                    const char *component)
{
  struct selection *list;
  int found = 0;

  CHECK_STATE (s);
  if (!s->is_backup)
    /* A restore picks from the backup's own document. */
    found = vms_document_find_component (s->core->bcd, writer_id, component)
      != NULL;
  for (size_t i = 0; s->is_backup && i < s->coord->nr_writers; i++) {
    struct writer_slot *slot = s->coord->writers[i];
    if (strcmp (slot->id, writer_id) == 0 &&
        vms_document_find_component (slot->metadata, NULL, component))
      found = 1;
  }
  if (!found) {
    vms_set_error (ENOENT, s->is_backup
                   ? "no writer with id %s has a component \"%s\""
                   : "the backup's writer %s has no component \"%s\"",
                   writer_id, component);
    return -1;
  }
  list = realloc (s->selected, (s->nr_selected + 1) * sizeof *list);
  if (list == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  s->selected = list;
  list[s->nr_selected].writer_id = strdup (writer_id);
  list[s->nr_selected].component = strdup (component);
  if (!list[s->nr_selected].writer_id || !list[s->nr_selected].component) {
    free (list[s->nr_selected].writer_id);
    free (list[s->nr_selected].component);
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  s->nr_selected++;
  return 0;
}

static int
is_selected (const vms_session *s, const char *writer_id, const char *component)
{
  if (s->nr_selected == 0)
    return 1;
  for (size_t i = 0; i < s->nr_selected; i++)
    if (strcmp (s->selected[i].writer_id, writer_id) == 0 &&
        strcmp (s->selected[i].component, component) == 0)
      return 1;
  return 0;
}

/* The snapshot of provider ps in this session, made if needed. */
static vms_snapshot *
snapshot_for (vms_session *s, struct provider_slot *ps)
{
  for (size_t i = 0; i < s->nr_snaps; i++)
    if (s->snaps[i]->ps == ps)
      return s->snaps[i];
  vms_snapshot **list = realloc (s->snaps, (s->nr_snaps + 1) * sizeof *list);
  vms_snapshot *snap = calloc (1, sizeof *snap);
  if (list) s->snaps = list;
  if (list == NULL || snap == NULL ||
      (snap->session_id = strdup (s->core->id)) == NULL) {
    free (snap);
    vms_set_error (ENOMEM, "out of memory");
    return NULL;
  }
  snap->refs = 1;
  snap->ps = ps;
  s->snaps[s->nr_snaps++] = snap;
  return snap;
}

static int
snapshot_add_file (vms_snapshot *snap, const char *writer_id,
                   const char *component, const struct vms_file_info *info)
{
  struct snapshot_file *list, *f;

  list = realloc (snap->files, (snap->nr_files + 1) * sizeof *list);
  if (list == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  snap->files = list;
  f = &list[snap->nr_files];
  memset (f, 0, sizeof *f);
  f->writer_id = strdup (writer_id);
  f->component = strdup (component);
  f->path = strdup (info->path);
  f->format = info->format ? strdup (info->format) : NULL;
  f->provider = info->provider ? strdup (info->provider) : NULL;
  f->ref = (struct vms_file_ref) {
    .writer_id = f->writer_id, .component = f->component,
    .file = { .path = f->path, .kind = info->kind, .format = f->format,
              .provider = f->provider },
  };
  snap->nr_files++;             /* counted now so that unref frees it all */
  if (!f->writer_id || !f->component || !f->path ||
      (info->format && !f->format) || (info->provider && !f->provider)) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  return 0;
}

/* Give every file of every component in the set to a provider. On failure
 * *culprit is the provider that failed, or NULL when none took a file. */
static int
assign_providers (vms_session *s, char *msg, size_t msglen,
                  const char **culprit)
{
  for (size_t w = 0; w < s->coord->nr_writers; w++) {
    const char *wid = s->coord->writers[w]->id;
    size_t nc = vms_document_component_count (s->core->bcd, wid);
    for (size_t c = 0; c < nc; c++) {
      vms_component *comp = vms_document_component (s->core->bcd, wid, c);
      for (size_t f = 0; f < vms_component_file_count (comp); f++) {
        struct vms_file_info info;
        struct provider_slot *chosen = NULL;
        vms_component_file (comp, f, &info);
        struct vms_file_ref ref = {
          .writer_id = wid, .component = vms_component_name (comp), .file = info
        };
        for (size_t p = 0; p < s->coord->nr_providers && !chosen; p++) {
          struct provider_slot *ps = s->coord->providers[p];
          if (info.provider && strcmp (info.provider, ps->p.name) != 0)
            continue;
          int r = ps->p.supports (ps->data, &ref);
          if (r == -1) {
            *culprit = ps->p.name;
            snprintf (msg, msglen, "provider \"%s\" failed on %s: %s",
                      ps->p.name, info.path,
                      vms_get_error () ? vms_get_error () : "no reason given");
            return -1;
          }
          if (r == 1)
            chosen = ps;
        }
        if (chosen == NULL) {
          snprintf (msg, msglen, "no provider can make a point-in-time image "
                    "of %s (component \"%s\" of writer \"%s\")%s%s", info.path,
                    ref.component, s->coord->writers[w]->name,
                    info.provider ? "; the writer asks for provider " : "",
                    info.provider ? info.provider : "");
          return -1;
        }
        vms_snapshot *snap = snapshot_for (s, chosen);
        if (snap == NULL ||
            snapshot_add_file (snap, wid, ref.component, &info) == -1) {
          snprintf (msg, msglen, "%s", vms_get_error ());
          return -1;
        }
      }
    }
  }
  return 0;
}

int
vms_session_prepare_backup (vms_session *s)
{
  char msg[1024];

  CHECK_STATE (s);
  /* The backup components document gets the selected components first, so
   * that writers see them from PrepareForBackup on. */
  for (size_t i = 0; i < s->coord->nr_writers; i++) {
    struct writer_slot *slot = s->coord->writers[i];
    size_t n = vms_document_component_count (slot->metadata, NULL);
    for (size_t j = 0; j < n; j++) {
      vms_component *c = vms_document_component (slot->metadata, NULL, j);
      if (is_selected (s, slot->id, vms_component_name (c)) &&
          document_components_add_copy (s->core->bcd, slot->id, c) == NULL)
        return -1;
    }
  }
  s->state = VMS_SESSION_PREPARED;
  if (dispatch_event (s->coord, s->core, VMS_EVENT_PREPARE_BACKUP, NULL) > 0) {
    session_fail_from_writers (s, VMS_EVENT_PREPARE_BACKUP);
    abort_set (s);
    return -1;
  }
  const char *culprit = NULL;
  if (assign_providers (s, msg, sizeof msg, &culprit) == -1) {
    session_fail (s, VMS_EVENT_PREPARE_BACKUP, VMS_FAILURE_NON_RETRYABLE,
                  culprit, culprit != NULL, msg);
    abort_set (s);
    vms_set_error (EINVAL, "%s", msg);
    return -1;
  }
  return 0;
}

/* Run one provider step over every snapshot; on failure record it. */
static int
providers_step (vms_session *s, enum provider_step step, enum vms_event phase)
{
  for (size_t i = 0; i < s->nr_snaps; i++) {
    vms_snapshot *snap = s->snaps[i];
    int64_t budget = step == STEP_COMMIT
      ? (snap->ps->p.commit_budget_ms ? snap->ps->p.commit_budget_ms
         : VMS_DEFAULT_COMMIT_BUDGET_MS)
      : VMS_DEFAULT_EVENT_BUDGET_MS;
    enum vms_failure kind;
    CLEANUP_FREE char *msg = NULL;

    if (provider_step (snap, step, budget, &kind, &msg) == -1) {
      session_fail (s, phase, kind, snap->ps->p.name, 1,
                    msg ? msg : "a provider failed");
      vms_set_error (EIO, "%s", s->failure_message);
      return -1;
    }
  }
  return 0;
}

int
vms_session_do_snapshot_set (vms_session *s)
{
  size_t n = s->coord->nr_writers;
  CLEANUP_FREE int64_t *deadlines = NULL;

  CHECK_STATE (s);
  if ((deadlines = calloc (n ? n : 1, sizeof *deadlines)) == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }

  /* Slow work (guest freezes of online VMs, saved states, R10) happens in
   * PrepareForSnapshot, and the providers' preparation after it. */
  if (dispatch_event (s->coord, s->core, VMS_EVENT_PREPARE_SNAPSHOT, NULL) > 0) {
    session_fail_from_writers (s, VMS_EVENT_PREPARE_SNAPSHOT);
    goto abort;
  }
  if (providers_step (s, STEP_PREPARE, VMS_EVENT_PREPARE_SNAPSHOT) == -1)
    goto abort;

  /* R3: each writer's budget runs from Freeze sent to Thaw answered. */
  int64_t t0 = vms_now_ms ();
  for (size_t i = 0; i < n; i++)
    deadlines[i] = t0 + writer_freeze_budget_ms (s->coord->writers[i]);
  if (dispatch_event (s->coord, s->core, VMS_EVENT_FREEZE, deadlines) > 0) {
    session_fail_from_writers (s, VMS_EVENT_FREEZE);
    goto abort;
  }
  if (providers_step (s, STEP_COMMIT, VMS_EVENT_FREEZE) == -1)
    goto abort;
  if (dispatch_event (s->coord, s->core, VMS_EVENT_THAW, deadlines) > 0) {
    session_fail_from_writers (s, VMS_EVENT_THAW);
    goto abort;
  }
  vms_debug ("session %s: freeze to thaw took %lld ms", s->core->id,
             (long long) (vms_now_ms () - t0));

  /* R5/R11: writers fix up and add to the document until PostSnapshot
   * ends; then it is sealed. */
  if (dispatch_event (s->coord, s->core, VMS_EVENT_POST_SNAPSHOT, NULL) > 0) {
    session_fail_from_writers (s, VMS_EVENT_POST_SNAPSHOT);
    goto abort;
  }
  document_seal (s->core->bcd, 1);
  s->state = VMS_SESSION_SNAPSHOTTED;
  return 0;

 abort:
  abort_set (s);
  return -1;
}

int
vms_session_set_previous_checkpoint (vms_session *s, const char *writer_id,
                                     const char *component,
                                     const char *checkpoint)
{
  vms_component *c;

  if (s->state != VMS_SESSION_PREPARED) {
    vms_set_error (EINVAL, "vms_session_set_previous_checkpoint: the session "
                   "is %s; this call needs it prepared (after "
                   "PrepareForBackup, before the snapshot set)",
                   vms_session_state_name (s->state));
    return -1;
  }
  c = vms_document_find_component (s->core->bcd, writer_id, component);
  if (c == NULL) {
    vms_set_error (ENOENT, "component \"%s\" is not in this backup", component);
    return -1;
  }
  return vms_component_set_string (c, VMS_ATTR_PREVIOUS_CHECKPOINT, checkpoint);
}

int
vms_session_file_access_get (const vms_session *s, const char *writer_id,
                             const char *component, const char *path,
                             struct vms_access *a)
{
  if (s->state != VMS_SESSION_SNAPSHOTTED) {
    vms_set_error (EINVAL, "vms_session_file_access: the session is %s; "
                   "this call needs it snapshotted",
                   vms_session_state_name (s->state));
    return -1;
  }
  for (size_t i = 0; i < s->nr_snaps; i++)
    for (size_t j = 0; j < s->snaps[i]->nr_files; j++) {
      const struct snapshot_file *f = &s->snaps[i]->files[j];
      if (strcmp (f->writer_id, writer_id) == 0 &&
          strcmp (f->component, component) == 0 &&
          strcmp (f->path, path) == 0) {
        if (f->access == NULL) {
          vms_set_error (ENOENT, "provider \"%s\" gave no access to %s",
                         s->snaps[i]->ps->p.name, path);
          return -1;
        }
        *a = (struct vms_access) {
          .uri = f->is_uri ? f->access : NULL,
          .path = f->is_uri || f->is_image ? NULL : f->access,
          .image = f->is_image ? f->access : NULL,
          .secret_file = f->secret_file,
          .changed_extents = f->changed_extents,
          .base = f->base,
          .flags = f->flags,
        };
        return 0;
      }
    }
  vms_set_error (ENOENT, "%s is not a file of component \"%s\" in this backup",
                 path, component);
  return -1;
}

const char *
vms_session_file_access (const vms_session *s, const char *writer_id,
                         const char *component, const char *path)
{
  struct vms_access a;
  if (vms_session_file_access_get (s, writer_id, component, path, &a) == -1)
    return NULL;
  return a.uri ? a.uri : a.path ? a.path : a.image;
}

int
vms_session_gather_status (vms_session *s)
{
  CHECK_STATE (s);
  if (dispatch_event (s->coord, s->core, VMS_EVENT_GATHER_STATUS, NULL) > 0) {
    /* The capture cannot be trusted: nothing may be committed (R12). */
    session_fail_from_writers (s, VMS_EVENT_GATHER_STATUS);
    abort_set (s);
    return -1;
  }
  return 0;
}

int
vms_session_backup_complete (vms_session *s, int ok)
{
  CHECK_STATE (s);
  if (!ok) {
    session_fail (s, VMS_EVENT_BACKUP_COMPLETE, VMS_FAILURE_NON_RETRYABLE,
                  NULL, 0, "the requester could not store the data");
    abort_set (s);
    vms_set_error (EIO, "%s", s->failure_message);
    return -1;
  }
  if (dispatch_event (s->coord, s->core, VMS_EVENT_BACKUP_COMPLETE, NULL) > 0) {
    session_fail_from_writers (s, VMS_EVENT_BACKUP_COMPLETE);
    abort_set (s);
    return -1;
  }
  release_snapshots (s);
  s->state = VMS_SESSION_COMPLETED;
  record_writer_results (s);
  return 0;
}

int
vms_session_abort (vms_session *s, const char *why)
{
  CHECK_STATE (s);
  if (s->state == VMS_SESSION_ABORTED)
    return 0;
  session_fail (s, VMS_EVENT_ABORT, VMS_FAILURE_NON_RETRYABLE, NULL, 0,
                why ? why : "the requester aborted the backup");
  abort_set (s);
  return 0;
}

const vms_document *
vms_session_components (const vms_session *s)
{
  return s->core->bcd;
}

size_t
vms_session_metadata_count (const vms_session *s)
{
  return s->nr_metadata;
}

const vms_document *
vms_session_metadata (const vms_session *s, size_t i)
{
  return i < s->nr_metadata ? s->metadata[i] : NULL;
}

/* ---- restore ---- */

/* After a select, writers see only the components selected: the session's
 * document keeps every writer, with its selected components only. */
static int
restore_keep_selected (vms_session *s)
{
  const vms_document *old = s->core->bcd;
  vms_document *bcd = vms_components_new (vms_components_backup_id (old));

  if (bcd == NULL)
    return -1;
  for (size_t w = 0; w < vms_components_writer_count (old); w++) {
    const char *id = vms_components_writer_id (old, w);
    if (document_components_add_writer (bcd, vms_components_writer_name (old, w),
                                        id) == -1)
      goto fail;
    for (size_t i = 0; i < vms_document_component_count (old, id); i++) {
      const vms_component *c = vms_document_component (old, id, i);
      if (is_selected (s, id, vms_component_name (c)) &&
          document_components_add_copy (bcd, id, c) == NULL)
        goto fail;
    }
  }
  vms_document_free (s->core->bcd);
  s->core->bcd = bcd;
  return 0;
 fail:
  vms_document_free (bcd);
  return -1;
}

int
vms_session_pre_restore (vms_session *s)
{
  CHECK_STATE (s);
  if (s->nr_selected > 0 && restore_keep_selected (s) == -1)
    return -1;
  if (dispatch_event (s->coord, s->core, VMS_EVENT_IDENTIFY, NULL) > 0 ||
      dispatch_event (s->coord, s->core, VMS_EVENT_PRE_RESTORE, NULL) > 0) {
    /* R16: no file may be restored unless every writer finished PreRestore. */
    session_fail_from_writers (s, VMS_EVENT_PRE_RESTORE);
    s->state = VMS_SESSION_ABORTED;
    record_writer_results (s);
    return -1;
  }
  s->state = VMS_SESSION_RESTORING;
  return 0;
}

int
vms_session_set_restore_status (vms_session *s, const char *writer_id,
                                const char *component,
                                enum vms_restore_status status)
{
  CHECK_STATE (s);
  vms_component *c = vms_document_find_component (s->core->bcd, writer_id,
                                                  component);
  if (c == NULL) {
    vms_set_error (ENOENT, "the backup has no component \"%s\" of writer %s",
                   component, writer_id);
    return -1;
  }
  document_component_set_restore_status (c, status);
  return 0;
}

int
vms_session_post_restore (vms_session *s)
{
  CHECK_STATE (s);
  size_t failed = dispatch_event (s->coord, s->core, VMS_EVENT_POST_RESTORE,
                                  NULL);
  s->state = VMS_SESSION_RESTORED;
  record_writer_results (s);
  if (failed > 0) {
    session_fail_from_writers (s, VMS_EVENT_POST_RESTORE);
    return -1;
  }
  return 0;
}

size_t
vms_session_writer_count (const vms_session *s)
{
  return s->coord->nr_writers;
}

int
vms_session_writer_status (const vms_session *s, size_t i,
                           struct vms_writer_status *status)
{
  return vms_coordinator_writer_status (s->coord, i, status);
}
