/* vmshadow — the qemu provider (qemu-provider.h, docs/vm-writer.md).
 *
 * supports: every file whose info names provider "qemu" (it never stats
 *   them: the domain XML is written later, in PrepareForSnapshot).
 * prepare:  after the VM writer's PrepareForSnapshot, every file must have
 *   an entry in the registry — the writer published it — or the set fails.
 * commit:   hands each entry to the coordinator (no I/O: instant).
 * release:  forgets the session's snapshot data; the writer ends the jobs.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "vmshadow/error.h"
#include "vmshadow/provider.h"

#include "cleanup.h"
#include "log.h"
#include "qemu-provider.h"

struct qemu_export {
  char *component, *path, *access;
  char *changed_extents, *base;   /* incremental: qemu_exports_set_changes */
  int image;                      /* access is a block graph: _set_image */
  char *secret_file;              /* with image, or NULL */
};

struct qemu_exports {
  pthread_mutex_t lock;
  unsigned refs;
  size_t n, cap;
  struct qemu_export *e;
  char *name;                   /* provider name, for messages */
};

struct qemu_exports *
qemu_exports_new (void)
{
  struct qemu_exports *x = calloc (1, sizeof *x);

  if (x == NULL) {
    vms_set_error (ENOMEM, "qemu provider: out of memory");
    return NULL;
  }
  pthread_mutex_init (&x->lock, NULL);
  x->refs = 1;
  return x;
}

struct qemu_exports *
qemu_exports_ref (struct qemu_exports *x)
{
  pthread_mutex_lock (&x->lock);
  x->refs++;
  pthread_mutex_unlock (&x->lock);
  return x;
}

static void
export_clear (struct qemu_export *e)
{
  free (e->component); free (e->path); free (e->access);
  free (e->changed_extents); free (e->base); free (e->secret_file);
}

void
qemu_exports_unref (struct qemu_exports *x)
{
  unsigned left;

  if (x == NULL)
    return;
  pthread_mutex_lock (&x->lock);
  left = --x->refs;
  pthread_mutex_unlock (&x->lock);
  if (left)
    return;
  for (size_t i = 0; i < x->n; i++)
    export_clear (&x->e[i]);
  free (x->e);
  free (x->name);
  pthread_mutex_destroy (&x->lock);
  free (x);
}

static struct qemu_export *
find (struct qemu_exports *x, const char *component, const char *path)
{
  for (size_t i = 0; i < x->n; i++)
    if (strcmp (x->e[i].component, component) == 0 &&
        strcmp (x->e[i].path, path) == 0)
      return &x->e[i];
  return NULL;
}

int
qemu_exports_publish (struct qemu_exports *x, const char *component,
                      const char *path, const char *access)
{
  struct qemu_export *e;
  char *a = strdup (access);
  int r = -1;

  if (a == NULL)
    goto oom;
  pthread_mutex_lock (&x->lock);
  if ((e = find (x, component, path)) != NULL) {
    free (e->access);
    free (e->changed_extents);
    free (e->base);
    e->access = a;
    e->changed_extents = e->base = NULL;
    free (e->secret_file);
    e->secret_file = NULL;
    e->image = 0;
    r = 0;
  }
  else {
    if (x->n == x->cap) {
      size_t cap = x->cap ? x->cap * 2 : 16;
      struct qemu_export *p = realloc (x->e, cap * sizeof *p);
      if (p == NULL)
        goto unlock;
      x->e = p;
      x->cap = cap;
    }
    e = &x->e[x->n];
    e->component = strdup (component);
    e->path = strdup (path);
    e->access = a;
    e->changed_extents = e->base = NULL;
    e->image = 0;
    e->secret_file = NULL;
    if (e->component == NULL || e->path == NULL) {
      free (e->component);
      free (e->path);
      goto unlock;
    }
    x->n++;
    r = 0;
  }
 unlock:
  pthread_mutex_unlock (&x->lock);
  if (r == 0) {
    vms_debug ("qemu provider: %s %s -> %s", component, path, access);
    return 0;
  }
  free (a);
 oom:
  vms_set_error (ENOMEM, "qemu provider: out of memory");
  return -1;
}

int
qemu_exports_set_image (struct qemu_exports *x, const char *component,
                        const char *path, const char *secret_file)
{
  struct qemu_export *e;
  char *sf = secret_file ? strdup (secret_file) : NULL;

  if (secret_file && sf == NULL) {
    vms_set_error (ENOMEM, "qemu provider: out of memory");
    return -1;
  }
  pthread_mutex_lock (&x->lock);
  e = find (x, component, path);
  if (e) {
    free (e->secret_file);
    e->secret_file = sf;
    e->image = 1;
  }
  pthread_mutex_unlock (&x->lock);
  if (e == NULL) {
    free (sf);
    vms_set_error (ENOENT, "qemu provider: no export of %s (component %s) "
                   "to mark as a block graph", path, component);
    return -1;
  }
  return 0;
}

int
qemu_exports_set_changes (struct qemu_exports *x, const char *component,
                          const char *path, const char *changed_extents,
                          const char *base)
{
  struct qemu_export *e;
  char *ctx = strdup (changed_extents), *b = strdup (base);

  pthread_mutex_lock (&x->lock);
  e = find (x, component, path);
  if (e && ctx && b) {
    free (e->changed_extents);
    free (e->base);
    e->changed_extents = ctx;
    e->base = b;
    ctx = b = NULL;
  }
  pthread_mutex_unlock (&x->lock);
  if (ctx || b || e == NULL) {
    free (ctx);
    free (b);
    vms_set_error (e ? ENOMEM : ENOENT, "qemu provider: no export of %s "
                   "(component %s) to mark incremental", path, component);
    return -1;
  }
  return 0;
}

void
qemu_exports_withdraw (struct qemu_exports *x, const char *component)
{
  size_t j = 0;

  pthread_mutex_lock (&x->lock);
  for (size_t i = 0; i < x->n; i++) {
    if (component == NULL || strcmp (x->e[i].component, component) == 0)
      export_clear (&x->e[i]);
    else
      x->e[j++] = x->e[i];
  }
  x->n = j;
  pthread_mutex_unlock (&x->lock);
}

char *
qemu_exports_lookup (struct qemu_exports *x, const char *component,
                     const char *path)
{
  struct qemu_export *e;
  char *r = NULL;

  pthread_mutex_lock (&x->lock);
  if ((e = find (x, component, path)) != NULL)
    r = strdup (e->access);
  pthread_mutex_unlock (&x->lock);
  if (r == NULL)
    vms_set_error (e ? ENOMEM : ENOENT,
                   "qemu provider: the VM writer prepared no point-in-time "
                   "image of %s (component %s)", path, component);
  return r;
}

/* ---- the provider ---- */

static int
qemu_provider_supports (void *data, const struct vms_file_ref *ref)
{
  struct qemu_exports *x = data;

  return ref->file.provider != NULL &&
    strcmp (ref->file.provider, x->name) == 0;
}

static int
qemu_provider_prepare (void *data, vms_snapshot *snap)
{
  struct qemu_exports *x = data;
  size_t n = vms_snapshot_file_count (snap);

  for (size_t i = 0; i < n; i++) {
    const struct vms_file_ref *f = vms_snapshot_file (snap, i);
    CLEANUP_FREE char *a = qemu_exports_lookup (x, f->component,
                                                f->file.path);
    if (a == NULL)
      return -1;
  }
  return 0;
}

static int
qemu_provider_commit (void *data, vms_snapshot *snap)
{
  struct qemu_exports *x = data;
  size_t n = vms_snapshot_file_count (snap);

  for (size_t i = 0; i < n; i++) {
    const struct vms_file_ref *f = vms_snapshot_file (snap, i);
    int r = -1;
    pthread_mutex_lock (&x->lock);
    const struct qemu_export *e = find (x, f->component, f->file.path);
    if (e) {
      /* An NBD export of a backup job, or a path (a stopped VM's image, a
       * file the writer wrote), with the job's changed extents if any. */
      const int uri = !e->image && strncmp (e->access, "nbd", 3) == 0;
      const struct vms_access a = {
        .uri = uri ? e->access : NULL,
        .path = uri || e->image ? NULL : e->access,
        .image = e->image ? e->access : NULL,
        .secret_file = e->image ? e->secret_file : NULL,
        .changed_extents = e->changed_extents,
        .base = e->base,
        .flags = uri && e->changed_extents ? VMS_ACCESS_CHANGED_EXTENTS
          : e->image && e->changed_extents ? VMS_ACCESS_CHANGED_LIST : 0,
      };
      r = vms_snapshot_set_file_access (snap, i, &a);
    }
    pthread_mutex_unlock (&x->lock);
    if (e == NULL)
      vms_set_error (ENOENT, "qemu provider: the VM writer prepared no "
                     "point-in-time image of %s (component %s)",
                     f->file.path, f->component);
    if (r == -1)
      return -1;
  }
  return 0;
}

static void
qemu_provider_close (void *data)
{
  qemu_exports_unref (data);
}

int
qemu_provider_add (vms_coordinator *coord, struct qemu_exports *x,
                   const char *name, const char *id)
{
  const struct vms_provider p = {
    .api_version = VMS_PROVIDER_API_VERSION,
    .struct_size = sizeof (struct vms_provider),
    .name = name,
    .id = id,
    .supports = qemu_provider_supports,
    .prepare = qemu_provider_prepare,
    .commit = qemu_provider_commit,
    .close = qemu_provider_close,
  };

  pthread_mutex_lock (&x->lock);
  if (x->name == NULL)
    x->name = strdup (name);
  pthread_mutex_unlock (&x->lock);
  if (x->name == NULL) {
    vms_set_error (ENOMEM, "qemu provider: out of memory");
    return -1;
  }
  qemu_exports_ref (x);
  if (vms_coordinator_add_provider (coord, &p, x) == -1) {
    qemu_exports_unref (x);
    return -1;
  }
  return 0;
}
