/* A restore session end to end, the same for every writer (R14–R21),
 * driven only by the documents stored with the backup (R5).
 *
 * Everything that can be checked is checked before the session starts, so
 * that bad input changes nothing: the backup and its manifest, what is
 * asked for (--vm, --component), that each writer involved is on this
 * host, the target directory, every restore target, every index and every
 * chunk's presence. Then: PreRestore (any writer can veto: nothing is
 * written) → each selected component's files written (vms_extract:
 * original format, holes kept, every chunk verified, temporary name until
 * complete, never through a symbolic link) → file restore status per
 * component (R6: all, none, failed) → PostRestore, which every writer gets
 * with the status of each of its components.
 *
 * Where a file goes: a writer with a restore hook (requester-internal.h;
 * the VM writer's is in host.c) says so itself; for every other writer it
 * is the component's VMS_ATTR_RESTORE_TARGET_PREFIX attribute for that file
 * in the session's backup components document (set at backup time, or by
 * an in-process writer in PreRestore), else the file's own path; with
 * --to, that path under the --to directory (docs/exec-writers.md).
 */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "exec-writer.h"
#include "fs-util.h"
#include "log.h"
#include "requester-internal.h"
#include "vmshadow/error.h"

/* --to DIR must be a directory we can write, or be creatable. */
static int
check_target_dir (const char *dir)
{
  char why[PATH_MAX + 200];
  if (vms_requester_check_dir (dir, why, sizeof why) == -1) {
    vms_set_error (EINVAL, "cannot restore to %s: %s; nothing was changed",
                   dir, why);
    return -1;
  }
  return 0;
}

/* One writer of the backup, and what of it is restored. */
struct rwriter {
  const char *id, *name;        /* borrowed from the backup's document */
  const struct req_restore_hook *hook;  /* NULL: the generic path */
  void *h;                      /* the hook's handle */
  int all;                      /* every component of it */
  const char **asked;           /* else these (NULL-terminated) */
  size_t nr_asked;
  int involved;                 /* something of it is restored */
};

/* What one restore run carries. */
struct restore_run {
  vms_repo *repo;
  const vms_manifest *m;
  const vms_document *bcd;      /* the backup's (borrowed from m) */
  vms_session *s;
  const struct vms_restore_request *rq;
  const char *to;               /* absolute --to, or NULL */
  const vms_document *work;     /* the document the session is given */
  int dry_run;                  /* plan only: nothing is written */
  struct rwriter *w;
  size_t nr_w;
  struct req_progress progress;
  /* Every component restored, with its files, in the report's making. */
  struct vms_restored_component *comps;
  size_t nr_comps;
  int oom;
  struct req_instant *inst;     /* restore --instant (issue 16) */
};

static const struct req_restore_hook *
hook_of (const char *writer_id)
{
  for (size_t i = 0; req_host_restore_hooks[i]; i++)
    if (strcasecmp (req_host_restore_hooks[i]->writer_id, writer_id) == 0)
      return req_host_restore_hooks[i];
  return NULL;
}

static int
ask (struct rwriter *w, const char *component)
{
  const char **v = realloc (w->asked, (w->nr_asked + 2) * sizeof *v);
  if (v == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  w->asked = v;
  v[w->nr_asked++] = component;
  v[w->nr_asked] = NULL;
  return 0;
}

/* The writers of the backup, by ID or by name (NULL and the error set if
 * none or several). */
static struct rwriter *
find_writer (struct restore_run *rr, const char *who, size_t len)
{
  struct rwriter *found = NULL;
  size_t by_name = 0;

  for (size_t i = 0; i < rr->nr_w; i++)
    if (strlen (rr->w[i].id) == len && strncasecmp (rr->w[i].id, who, len) == 0)
      return &rr->w[i];
  for (size_t i = 0; i < rr->nr_w; i++)
    if (rr->w[i].name && strlen (rr->w[i].name) == len &&
        strncmp (rr->w[i].name, who, len) == 0) {
      found = &rr->w[i];
      by_name++;
    }
  if (by_name == 1)
    return found;

  char list[2048] = "";
  for (size_t i = 0; i < rr->nr_w; i++) {
    size_t l = strlen (list);
    snprintf (list + l, sizeof list - l, "%s%s (%s)", i ? ", " : "",
              rr->w[i].name ? rr->w[i].name : "?", rr->w[i].id);
  }
  if (by_name > 1)
    vms_set_error (EINVAL, "--component %.*s: several writers of backup %s "
                   "have that name; give the writer ID (%s)", (int) len, who,
                   vms_components_backup_id (rr->bcd), list);
  else
    vms_set_error (ENOENT, "--component %.*s: backup %s has no writer of that "
                   "ID or name; its writers: %s", (int) len, who,
                   vms_components_backup_id (rr->bcd),
                   rr->nr_w ? list : "none");
  return NULL;
}

/* Which writers and components are restored: --vm goes to the writers
 * with a hook (the VM writer), --component picks "WRITER[:COMPONENT]";
 * neither: everything in the backup. */
static int
plan_selection (struct restore_run *rr)
{
  const struct vms_restore_request *rq = rr->rq;
  size_t n = vms_components_writer_count (rr->bcd);
  int any = (rq->vms && rq->vms[0]) || (rq->components && rq->components[0]);

  if ((rr->w = calloc (n ? n : 1, sizeof *rr->w)) == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  for (size_t i = 0; i < n; i++) {
    struct rwriter *w = &rr->w[rr->nr_w++];
    w->id = vms_components_writer_id (rr->bcd, i);
    w->name = vms_components_writer_name (rr->bcd, i);
    w->hook = rq->coord ? NULL : hook_of (w->id);
    w->all = !any;
  }
  for (size_t i = 0; rq->vms && rq->vms[i]; i++) {
    /* The VMs are the hook writers' (their add says when none is there). */
    if (rq->coord) {
      vms_set_error (EINVAL, "--vm %s: VMs are restored by the host's VM "
                     "writer, not by a coordinator the caller gives",
                     rq->vms[i]);
      return -1;
    }
    for (size_t k = 0; req_host_restore_hooks[k]; k++) {
      struct rwriter *w = find_writer (rr, req_host_restore_hooks[k]->writer_id,
                                       strlen (req_host_restore_hooks[k]->writer_id));
      if (w == NULL) {
        vms_set_error (ENOENT, "--vm %s: backup %s holds no VMs",
                       rq->vms[i], vms_components_backup_id (rr->bcd));
        return -1;
      }
      if (ask (w, rq->vms[i]) == -1)
        return -1;
    }
  }
  for (size_t i = 0; rq->components && rq->components[i]; i++) {
    const char *arg = rq->components[i];
    const char *colon = strchr (arg, ':');
    size_t len = colon ? (size_t) (colon - arg) : strlen (arg);
    struct rwriter *w = find_writer (rr, arg, len);

    if (w == NULL)
      return -1;
    if (colon == NULL || colon[1] == '\0') {
      w->all = 1;
      continue;
    }
    if (w->hook == NULL &&
        vms_document_find_component (rr->bcd, w->id, colon + 1) == NULL) {
      char list[2048] = "";
      size_t nc = vms_document_component_count (rr->bcd, w->id);
      for (size_t c = 0; c < nc; c++) {
        size_t l = strlen (list);
        snprintf (list + l, sizeof list - l, "%s\"%s\"", c ? ", " : "",
                  vms_component_name (vms_document_component (rr->bcd, w->id, c)));
      }
      vms_set_error (ENOENT, "--component %s: writer %s has no component "
                     "\"%s\" in backup %s; it has: %s", arg,
                     w->name ? w->name : w->id, colon + 1,
                     vms_components_backup_id (rr->bcd), nc ? list : "none");
      return -1;
    }
    if (ask (w, colon + 1) == -1)
      return -1;
  }
  for (size_t i = 0; i < rr->nr_w; i++) {
    struct rwriter *w = &rr->w[i];
    w->involved = w->nr_asked > 0 ||
      (w->all && vms_document_component_count (rr->bcd, w->id) > 0);
  }
  return 0;
}

/* Is component c of writer w restored? */
static int
is_restored (const struct rwriter *w, const char *component)
{
  if (!w->involved)
    return 0;
  if (w->hook)
    return w->hook->selected (w->h, component);
  if (w->all)
    return 1;
  for (size_t i = 0; i < w->nr_asked; i++)
    if (strcmp (w->asked[i], component) == 0)
      return 1;
  return 0;
}

static struct rwriter *
writer_of (struct restore_run *rr, const char *writer_id)
{
  for (size_t i = 0; writer_id && i < rr->nr_w; i++)
    if (strcmp (rr->w[i].id, writer_id) == 0)
      return &rr->w[i];
  return NULL;
}

/* A restore target from a document: an absolute path with no empty, "."
 * or ".." part. NULL if it is one, else why not. */
static const char *
bad_target (const char *t)
{
  if (t[0] != '/')
    return "it is not an absolute path";
  if (strlen (t) >= PATH_MAX)
    return "it is too long";
  for (const char *p = t; *p; ) {
    const char *e = strchr (p + 1, '/');
    size_t l = e ? (size_t) (e - p - 1) : strlen (p + 1);
    if (l == 0 || (l == 1 && p[1] == '.') ||
        (l == 2 && p[1] == '.' && p[2] == '.'))
      return "it has an empty, \".\" or \"..\" part";
    p = e ? e : p + 1 + l;
  }
  return NULL;
}

/* Where file path of component c goes (generic path), as the document doc
 * says: its restore target, else its own path. NULL (why set) when the
 * document's target is not a clean absolute path. */
static const char *
document_target (const vms_document *doc, const char *writer_id,
                 const char *component, const char *path, char *why,
                 size_t len)
{
  const vms_component *c = vms_document_find_component (doc, writer_id,
                                                        component);
  CLEANUP_FREE char *key = NULL;
  const char *t = NULL, *bad;

  if (asprintf (&key, "%s%s", VMS_ATTR_RESTORE_TARGET_PREFIX, path) == -1) {
    snprintf (why, len, "out of memory");
    return NULL;
  }
  if (c)
    t = vms_component_get_string (c, key);
  if (t == NULL)
    t = path;
  if ((bad = bad_target (t)) != NULL) {
    snprintf (why, len, "its restore target \"%.200s\" cannot be used: %s",
              t, bad);
    return NULL;
  }
  return t;
}

/* Every file of what is restored: a usable target, an index that loads,
 * and (issue 20) every chunk read and re-hashed (vms_repo_chunk_get with
 * verify) before any writer is told anything, so a damaged backup changes
 * nothing. */
static int
preflight (struct restore_run *rr)
{
  CLEANUP_FREE void *buf = malloc (VMS_CHUNK_SIZE);

  if (buf == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  for (size_t i = 0; i < vms_manifest_file_count (rr->m); i++) {
    struct vms_stored_file f;
    uint64_t size;
    char why[400];
    if (vms_manifest_file (rr->m, i, &f, &size) == -1)
      return -1;
    struct rwriter *w = writer_of (rr, f.writer_id);
    if (w == NULL || !is_restored (w, f.component))
      continue;
    if (w->hook == NULL &&
        document_target (rr->bcd, w->id, f.component, f.path, why,
                         sizeof why) == NULL) {
      vms_set_error (EINVAL, "backup %s cannot be restored: file %s of "
                     "component \"%s\": %s", vms_manifest_backup_id (rr->m),
                     f.path, f.component, why);
      return -1;
    }
    vms_index *idx = vms_manifest_load_index (rr->repo, rr->m, i);
    if (idx == NULL) {
      vms_set_error (vms_get_errno (), "backup %s cannot be restored: the "
                     "index of %s is damaged: %s", vms_manifest_backup_id (rr->m),
                     f.path, vms_get_error ());
      return -1;
    }
    /* Instant recovery reads a disk as the guest and the mover need it:
     * every chunk is verified by the export before it is served, and a
     * bad one stops the move (docs/instant-recovery.md). Reading all of
     * it first would take what instant recovery saves. */
    for (uint64_t c = 0; !(rr->rq->instant && f.kind == VMS_FILE_DISK) &&
         c < vms_index_chunk_count (idx); c++) {
      const struct vms_digest *d = vms_index_get (idx, c);
      if (vms_digest_is_zero (d))
        continue;
      if (vms_repo_chunk_get (rr->repo, d, buf, vms_index_chunk_len (idx, c),
                              1) == -1) {
        char hex[65];
        int e = vms_get_errno ();
        vms_digest_hex (d, hex);
        vms_set_error (e, "backup %s cannot be restored: chunk %s of %s (at "
                       "offset %" PRIu64 ") is %s: %s; run 'vmshadow verify'",
                       vms_manifest_backup_id (rr->m), hex, f.path,
                       c * (uint64_t) VMS_CHUNK_SIZE,
                       e == ENOENT ? "missing from the repository" : "damaged",
                       vms_get_error ());
        vms_index_free (idx);
        return -1;
      }
    }
    vms_index_free (idx);
  }
  return 0;
}

/* Leftovers of an interrupted extract to target (".NAME.vms-XXXXXX"). */
static void
remove_leftovers (const char *target)
{
  CLEANUP_FREE char *pat = NULL;
  const char *slash = strrchr (target, '/');
  glob_t g;

  if (slash == NULL ||
      asprintf (&pat, "%.*s/.%s.vms-??????", (int) (slash - target), target,
                slash + 1) == -1)
    return;
  if (glob (pat, GLOB_NOSORT, NULL, &g) == 0) {
    for (size_t i = 0; i < g.gl_pathc; i++)
      unlink (g.gl_pathv[i]);
    globfree (&g);
  }
}

/* The directory of target (absolute, clean), opened without following
 * any symbolic link: from "/", or, when target is under the --to
 * directory, from that directory, making what is missing below it (0700).
 * Returns the fd and the file's name in *base, or -1 with the error set. */
static int
open_target_dir (const char *target, const char *to, const char **base)
{
  const char *slash = strrchr (target, '/');
  size_t tl = to ? strlen (to) : 0;
  int under = to && strncmp (target, to, tl) == 0 && target[tl] == '/';
  const char *rel = under ? target + tl + 1 : target + 1;
  CLEANUP_FREE char *dir = strndup (rel, (size_t) (slash - rel > 0 ? slash - rel : 0));
  int fd;

  *base = slash + 1;
  if (dir == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  fd = open (under ? to : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  /* --to DIR is made when missing (checked before the session). */
  if (fd == -1 && under && errno == ENOENT && vms_mkdir_p (to, 0700) == 0)
    fd = open (to, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd == -1) {
    vms_set_error (errno, "cannot open %s: %s", under ? to : "/",
                   strerror (errno));
    return -1;
  }
  if (dir[0] == '\0')
    return fd;
  if (!under) {
    int d = vms_open_beneath (fd, dir, O_RDONLY | O_DIRECTORY, 0);
    int e = errno;
    close (fd);
    if (d == -1)
      vms_set_error (e, "cannot open its directory /%s: %s", dir,
                     vms_fs_errstr (e));
    return d;
  }
  /* Under --to: one part at a time, made when missing. */
  for (char *p = dir, *e; p; p = e) {
    if ((e = strchr (p, '/')) != NULL)
      *e++ = '\0';
    if (mkdirat (fd, p, 0700) == -1 && errno != EEXIST) {
      vms_set_error (errno, "cannot make directory %s under %s: %s", p, to,
                     strerror (errno));
      close (fd);
      return -1;
    }
    int d = vms_open_beneath (fd, p, O_RDONLY | O_DIRECTORY, 0);
    int err = errno;
    close (fd);
    if (d == -1) {
      vms_set_error (err, "cannot open directory %s under %s: %s", p, to,
                     vms_fs_errstr (err));
      return -1;
    }
    fd = d;
  }
  return fd;
}

/* Write one file of the generic path to target. */
static int
write_file (struct restore_run *rr, const vms_index *idx, const char *target,
            const char *format)
{
  const char *base;
  int dirfd = open_target_dir (target, rr->to, &base);
  int r;

  if (dirfd == -1) {
    vms_set_error (vms_get_errno (), "cannot write %s: %s", target,
                   vms_get_error ());
    return -1;
  }
  r = vms_extract_at (rr->repo, idx, dirfd, base, target, format, 1,
                      req_progress_bytes, &rr->progress);
  close (dirfd);
  return r;
}

static void
add_change (struct restore_run *rr, struct vms_restored_component *c,
            const char *action, const char *object, const char *detail)
{
  struct vms_restore_change *v = realloc (c->changes,
                                          (c->nr_changes + 1) * sizeof *v);
  if (v == NULL) {
    rr->oom = 1;
    return;
  }
  c->changes = v;
  v[c->nr_changes].action = req_strdup (action, &rr->oom);
  v[c->nr_changes].object = req_strdup (object, &rr->oom);
  v[c->nr_changes].detail = req_strdup (detail, &rr->oom);
  c->nr_changes++;
}

static struct vms_restored_component *
new_component (struct restore_run *rr, const struct rwriter *w,
               const char *component)
{
  struct vms_restored_component *c = &rr->comps[rr->nr_comps++];
  c->writer_id = req_strdup (w->id, &rr->oom);
  c->writer = req_strdup (w->name, &rr->oom);
  c->component = req_strdup (component, &rr->oom);
  c->files = calloc (vms_manifest_file_count (rr->m) + 1, sizeof *c->files);
  if (c->files == NULL)
    rr->oom = 1;
  return c;
}

/* Write every file of one component; returns its file restore status (R6).
 * The first file that fails stops the component (R17). */
static enum vms_restore_status
restore_component (struct restore_run *rr, struct rwriter *w,
                   const char *component)
{
  struct vms_restored_component *rc = new_component (rr, w, component);
  const vms_document *doc = rr->s ? vms_session_components (rr->s) : rr->work;
  size_t written = 0, failed = 0;

  for (size_t i = 0; rc->files && i < vms_manifest_file_count (rr->m); i++) {
    struct vms_stored_file f;
    uint64_t size;
    char why[400];

    if (vms_manifest_file (rr->m, i, &f, &size) == -1 ||
        f.writer_id == NULL || strcmp (f.writer_id, w->id) != 0 ||
        strcmp (f.component, component) != 0)
      continue;
    struct vms_restored_file *d = &rc->files[rc->nr_files++];
    const char *target = w->hook
      ? w->hook->target (w->h, component, f.path)
      : document_target (doc, w->id, component, f.path, why, sizeof why);
    d->path = req_strdup (f.path, &rr->oom);
    d->size = size;
    d->format = req_strdup (f.kind == VMS_FILE_DISK && f.format ? f.format : "raw",
                            &rr->oom);
    d->target = req_strdup (target, &rr->oom);
    d->outcome = VMS_FILE_NOT_WRITTEN;
    if (rr->dry_run) {
      /* The plan of a writer without a hook: each file written. */
      if (w->hook == NULL && target) {
        char from[PATH_MAX + 40];
        snprintf (from, sizeof from, "the backup's %s", f.path);
        add_change (rr, rc, "write", target,
                    strcmp (target, f.path) != 0 ? from : NULL);
      }
      continue;
    }
    if (failed)
      continue;               /* this component is not put back anyway (R17) */
    if (rr->inst && w->hook && f.kind == VMS_FILE_DISK && target) {
      /* Instant recovery: it runs from the backup; the mover writes it
       * after PostRestore. */
      d->outcome = VMS_FILE_WRITTEN;
      written++;
      continue;
    }
    if (target == NULL) {
      d->outcome = VMS_FILE_FAILED;
      d->error = req_strdup (w->hook ? "the writer gives no place for this file"
                             : why, &rr->oom);
      failed++;
      continue;
    }
    vms_index *idx = vms_manifest_load_index (rr->repo, rr->m, i);
    req_progress_start (&rr->progress, w->id, component, target);
    int r;
    if (idx == NULL)
      r = -1;
    else if (w->hook && rr->inst && req_instant_keep_file (rr->inst, target) == -1)
      r = -1;                   /* (a rollback removes it, or puts back what was there) */
    else if (w->hook) {
      char *graph = NULL, *secret = NULL;
      if (w->hook->into &&
          w->hook->into (w->h, component, f.path, &graph, &secret) == -1)
        r = -1;
      else if (graph) {
        /* Into the device itself (issue 11): never a file renamed there. */
        r = vms_extract_into (rr->repo, idx, graph, secret, target,
                              req_progress_bytes, &rr->progress);
        if (secret && unlink (secret) == -1 && errno != ENOENT)
          vms_warn ("restore: cannot remove the secret file %s: %s", secret,
                    strerror (errno));
      }
      else {
        remove_leftovers (target);
        r = vms_extract (rr->repo, idx, target, d->format ? d->format : "raw", 1,
                         req_progress_bytes, &rr->progress);
      }
      free (graph);
      free (secret);
    }
    else
      r = write_file (rr, idx, target, d->format ? d->format : "raw");
    if (r == -1) {
      d->outcome = VMS_FILE_FAILED;
      d->error = req_strdup (vms_get_error (), &rr->oom);
      failed++;
    }
    else {
      d->outcome = VMS_FILE_WRITTEN;
      written++;
    }
    req_progress_end (&rr->progress);
    vms_index_free (idx);
  }
  rc->status = failed == 0 ? VMS_RESTORE_ALL
    : written == 0 ? VMS_RESTORE_NONE : VMS_RESTORE_FAILED;
  return rc->status;
}

/* Write every file of what is restored; set each component's status. */
static void
restore_files (struct restore_run *rr)
{
  for (size_t k = 0; k < rr->nr_w; k++) {
    struct rwriter *w = &rr->w[k];
    size_t nc = vms_document_component_count (rr->bcd, w->id);
    for (size_t c = 0; c < nc; c++) {
      const char *name = vms_component_name (vms_document_component
                                             (rr->bcd, w->id, c));
      if (!is_restored (w, name))
        continue;
      enum vms_restore_status st = restore_component (rr, w, name);
      if (rr->s && vms_session_set_restore_status (rr->s, w->id, name, st) == -1)
        vms_warn ("restore: %s", vms_get_error ());
    }
  }
}

/* --to for the generic path: every restored file goes to DIR/<where it
 * would go>, said in the document the session is given (so the writer
 * knows it from PreRestore on). */
static int
retarget_under (struct restore_run *rr, vms_document *doc)
{
  for (size_t i = 0; i < vms_manifest_file_count (rr->m); i++) {
    struct vms_stored_file f;
    uint64_t size;
    char why[400];
    CLEANUP_FREE char *key = NULL, *t = NULL;

    if (vms_manifest_file (rr->m, i, &f, &size) == -1)
      return -1;
    struct rwriter *w = writer_of (rr, f.writer_id);
    if (w == NULL || w->hook || !is_restored (w, f.component))
      continue;
    const char *was = document_target (doc, w->id, f.component, f.path, why,
                                       sizeof why);
    vms_component *c = vms_document_find_component (doc, w->id, f.component);
    if (was == NULL || c == NULL)
      continue;                 /* preflight said why */
    if (asprintf (&key, "%s%s", VMS_ATTR_RESTORE_TARGET_PREFIX, f.path) == -1 ||
        asprintf (&t, "%s%s", rr->to, was) == -1 ||
        vms_component_set_string (c, key, t) == -1) {
      vms_set_error (ENOMEM, "out of memory");
      return -1;
    }
  }
  return 0;
}

/* The components of the report: each hook writer's in its own order, with
 * what it says of them; the others as written. */
static void
report_components (struct restore_run *rr, struct vms_restore_report *rep)
{
  rep->components = rr->comps;
  rep->nr_components = rr->nr_comps;
  rr->comps = NULL;
  rr->nr_comps = 0;

  for (size_t i = 0; i < rep->nr_components; i++) {
    struct vms_restored_component *c = &rep->components[i];
    struct rwriter *w = writer_of (rr, c->writer_id);
    if (w && w->hook)
      continue;
    c->kind = req_strdup ("component", &rr->oom);
    c->name = req_strdup (c->component, &rr->oom);
    c->ok = c->status == VMS_RESTORE_ALL;
    if (rr->dry_run) {
      c->status = VMS_RESTORE_UNSET;
      continue;
    }
    for (size_t k = 0; c->error == NULL && k < c->nr_files; k++)
      if (c->files[k].outcome == VMS_FILE_FAILED &&
          asprintf (&c->error, "file %s: %s", c->files[k].path,
                    c->files[k].error ? c->files[k].error : "not written") == -1) {
        c->error = NULL;
        rr->oom = 1;
      }
    /* A writer that failed at PostRestore did not take its files up. */
    for (size_t k = 0; k < vms_session_writer_count (rr->s); k++) {
      struct vms_writer_status ws;
      if (vms_session_writer_status (rr->s, k, &ws) == 0 && ws.id &&
          strcasecmp (ws.id, c->writer_id) == 0 &&
          ws.state == VMS_WRITER_FAILED && ws.failed_at == VMS_EVENT_POST_RESTORE) {
        c->ok = 0;
        if (c->error == NULL &&
            asprintf (&c->error, "writer \"%s\" failed at post-restore: %s",
                      ws.name ? ws.name : "?", ws.message ? ws.message : "?") == -1) {
          c->error = NULL;
          rr->oom = 1;
        }
      }
    }
  }

  /* Hook writers: reorder as the writer lists them and ask it. */
  for (size_t k = 0; k < rr->nr_w; k++) {
    struct rwriter *w = &rr->w[k];
    if (w->hook == NULL || w->h == NULL)
      continue;
    size_t at = 0;
    while (at < rep->nr_components &&
           strcmp (rep->components[at].writer_id, w->id) != 0)
      at++;
    for (size_t i = 0; i < w->hook->count (w->h); i++) {
      const char *name = w->hook->component (w->h, i);
      for (size_t j = at; name && j < rep->nr_components; j++) {
        struct vms_restored_component *c = &rep->components[j];
        if (strcmp (c->writer_id, w->id) != 0 ||
            strcasecmp (c->component, name) != 0)
          continue;
        struct vms_restored_component tmp = *c;
        *c = rep->components[at];
        rep->components[at] = tmp;
        w->hook->result (w->h, i, &rep->components[at], &rr->oom);
        at++;
        break;
      }
    }
  }
}

/* A relative --to is relative to the working directory. */
static int
absolute_dir (const char *dir, char out[PATH_MAX])
{
  char cwd[PATH_MAX];

  if (dir[0] == '/') {
    if (snprintf (out, PATH_MAX, "%s", dir) < PATH_MAX)
      return 0;
  }
  else if (getcwd (cwd, sizeof cwd) != NULL &&
           snprintf (out, PATH_MAX, "%s/%s", cwd, dir) < PATH_MAX)
    return 0;
  vms_set_error (ENAMETOOLONG, "--to %s: path too long", dir);
  return -1;
}

/* A writer with a hook does what cannot be undone in PreRestore (the VM
 * writer turns VMs off and undefines them), and a veto of another writer
 * in the same PreRestore would leave that done with nothing restored
 * (R16: no PostRestore follows). So the two kinds are restored in
 * separate runs. */
static int
refuse_mixed (struct restore_run *rr)
{
  const struct rwriter *hook = NULL, *other = NULL;

  for (size_t i = 0; i < rr->nr_w; i++) {
    if (!rr->w[i].involved)
      continue;
    if (rr->w[i].hook)
      hook = &rr->w[i];
    else
      other = &rr->w[i];
  }
  if (hook == NULL || other == NULL)
    return 0;
  vms_set_error (EINVAL, "backup %s: the components of writer \"%s\" (the "
                 "VMs) and of writer \"%s\" are restored in separate runs "
                 "(a veto of one writer at PreRestore would leave the VMs "
                 "turned off and undefined): choose with --vm or "
                 "--component %s", vms_components_backup_id (rr->bcd),
                 hook->name ? hook->name : hook->id,
                 other->name ? other->name : other->id,
                 other->name ? other->name : other->id);
  return -1;
}

/* The writers without a hook are this host's exec writers: each one
 * involved must be here and answer Identify. */
static int
add_exec_writers (struct restore_run *rr, vms_coordinator *coord)
{
  int need = 0;

  for (size_t i = 0; i < rr->nr_w; i++)
    need |= rr->w[i].involved && rr->w[i].hook == NULL;
  if (!need)
    return 0;
  if (rr->rq->coord == NULL &&
      vms_exec_writers_load (coord, rr->rq->writers_dir) == -1)
    return -1;
  vms_coordinator_gather_metadata (coord);
  for (size_t i = 0; i < rr->nr_w; i++) {
    const struct rwriter *w = &rr->w[i];
    int here = 0;
    if (!w->involved || w->hook)
      continue;
    for (size_t k = 0; !here && k < vms_coordinator_writer_count (coord); k++) {
      struct vms_writer_status ws;
      if (vms_coordinator_writer_status (coord, k, &ws) == -1 || ws.id == NULL ||
          strcasecmp (ws.id, w->id) != 0)
        continue;
      if (ws.state == VMS_WRITER_FAILED) {
        vms_set_error (EIO, "writer \"%s\" (%s) failed at identify: %s",
                       ws.name ? ws.name : "?", w->id,
                       ws.message ? ws.message : "?");
        return -1;
      }
      here = 1;
    }
    if (!here) {
      if (rr->rq->coord) {
        vms_set_error (ENOENT, "the backup's writer \"%s\" (%s) is not in "
                       "the coordinator given: its components cannot be "
                       "restored without it", w->name ? w->name : "?", w->id);
        return -1;
      }
      vms_set_error (ENOENT, "the backup's writer \"%s\" (%s) is not on this "
                     "host (no exec writer in %s answers with that ID): its "
                     "components cannot be restored without it (leave them "
                     "out with --vm or --component)",
                     w->name ? w->name : "?", w->id,
                     rr->rq->writers_dir ? rr->rq->writers_dir
                     : getenv (VMS_EXEC_WRITERS_DIR_ENV) &&
                       *getenv (VMS_EXEC_WRITERS_DIR_ENV)
                     ? getenv (VMS_EXEC_WRITERS_DIR_ENV)
                     : vms_default_writers_dir ());
      return -1;
    }
  }
  return 0;
}

/* How the restore ended (issue 20's exit codes): every component
 * restored is success, with an interface left disconnected (R21) success
 * with warnings; some restored and some not is partial; none is failure. */
static enum vms_outcome
restore_outcome (const struct vms_restore_report *rep)
{
  size_t ok = 0, disconnected = 0;

  if (rep->dry_run || rep->nr_components == 0)  /* only a plan, or nothing */
    return rep->error ? VMS_OUTCOME_FAILURE : VMS_OUTCOME_SUCCESS;
  for (size_t i = 0; i < rep->nr_components; i++) {
    ok += rep->components[i].ok != 0;
    disconnected += rep->components[i].nr_disconnected;
  }
  if (ok == 0)
    return VMS_OUTCOME_FAILURE;
  if (ok < rep->nr_components)
    return VMS_OUTCOME_PARTIAL;
  if (rep->error)
    return VMS_OUTCOME_FAILURE;
  return disconnected ? VMS_OUTCOME_WARNINGS : VMS_OUTCOME_SUCCESS;
}

/* restore --instant (issue 16): one VM, no other writer's components. */
static struct rwriter *
instant_check (struct restore_run *rr, const char **component)
{
  struct rwriter *vmw = NULL;
  size_t n = 0;

  for (size_t i = 0; i < rr->nr_w; i++) {
    struct rwriter *w = &rr->w[i];
    if (!w->involved)
      continue;
    if (w->hook == NULL || w->hook->set_instant == NULL) {
      vms_set_error (EINVAL, "--instant restores VMs only, not the "
                     "components of writer \"%s\"", w->name ? w->name : w->id);
      return NULL;
    }
    size_t nc = vms_document_component_count (rr->bcd, w->id);
    for (size_t c = 0; c < nc; c++) {
      const char *name = vms_component_name (vms_document_component (rr->bcd, w->id, c));
      if (is_restored (w, name)) {
        n++;
        *component = name;
        vmw = w;
      }
    }
  }
  if (n != 1) {
    vms_set_error (EINVAL, "--instant restores one VM at a time; backup %s "
                   "holds %zu: choose one with --vm", rr->rq->backup_id, n);
    return NULL;
  }
  return vmw;
}

/* Before PreRestore: the exports and overlays the VM will run from. */
static int
instant_begin (struct restore_run *rr, struct rwriter *w, const char *comp)
{
  const char *name = w->hook->define_name (w->h, comp);
  const char *uuid = w->hook->define_uuid (w->h, comp);
  const struct req_instant_disk *d;
  size_t n;

  if (name == NULL || uuid == NULL) {
    vms_set_error (EINVAL, "the VM writer did not plan VM %s", comp);
    return -1;
  }
  rr->inst = req_instant_new (vms_repo_path (rr->repo), rr->rq->backup_id,
                              rr->rq->libvirt_uri, name, uuid);
  if (rr->inst == NULL)
    return -1;
  /* --replace (R15): PreRestore turns the VM of this UUID off and
   * undefines it; a rollback defines it again. */
  if (rr->rq->replace && req_instant_keep_replaced (rr->inst) == -1)
    goto fail;
  for (size_t i = 0; i < vms_manifest_file_count (rr->m); i++) {
    struct vms_stored_file f;
    uint64_t size;
    const char *target;
    if (vms_manifest_file (rr->m, i, &f, &size) == -1)
      goto fail;
    if (f.writer_id == NULL || strcmp (f.writer_id, w->id) != 0 ||
        strcmp (f.component, comp) != 0 || f.kind != VMS_FILE_DISK)
      continue;
    if ((target = w->hook->target (w->h, comp, f.path)) == NULL) {
      vms_set_error (EINVAL, "the VM writer gives no place for %s", f.path);
      goto fail;
    }
    if (req_instant_add_disk (rr->inst, comp, f.path, size, f.format,
                              target) == -1)
      goto fail;
  }
  d = req_instant_disks (rr->inst, &n);
  if (n == 0) {
    vms_set_error (EINVAL, "VM %s has no disk in backup %s: nothing to run "
                   "from; restore it without --instant", comp, rr->rq->backup_id);
    goto fail;
  }
  if (w->hook->set_instant (w->h, comp, d, n, req_instant_final_xml (rr->inst)) == -1)
    goto fail;
  return 0;
 fail:
  {
    int e = vms_get_errno ();
    CLEANUP_FREE char *msg = strdup (vms_get_error () ? vms_get_error () : "?");
    req_instant_rollback (rr->inst);
    req_instant_free (rr->inst);
    rr->inst = NULL;
    vms_set_error (e, "%s", msg ? msg : "out of memory");
  }
  return -1;
}

/* How long the move waits for the guest's agent before it starts anyway:
 * $VMSHADOW_INSTANT_AGENT_WAIT seconds (0: not at all), default 60. */
static int64_t
instant_agent_wait_ms (void)
{
  const char *e = getenv ("VMSHADOW_INSTANT_AGENT_WAIT");
  char *end;
  long v;

  if (e == NULL || *e == '\0')
    return 60000;
  errno = 0;
  v = strtol (e, &end, 10);
  if (errno || *end != '\0' || v < 0 || v > 86400) {
    vms_warn ("VMSHADOW_INSTANT_AGENT_WAIT=\"%s\" is not a number of seconds "
              "(0-86400): waiting 60 s", e);
    return 60000;
  }
  return (int64_t) v * 1000;
}

/* After PostRestore: the VM runs from the backup; move its disks. */
static void
instant_finish (struct restore_run *rr, struct vms_restore_report *rep,
                int64_t t0)
{
  rep->instant = 1;
  if (req_host_instant_running (rr->rq->libvirt_uri, req_instant_uuid (rr->inst)) != 1) {
    /* Not defined or not started: nothing of it stays (R17). */
    if (req_instant_rollback (rr->inst) == -1)
      vms_warn ("restore --instant: %s", vms_get_error ());
    return;
  }
  rep->running_ms = vms_now_ms () - t0;
  int ok = req_instant_ran (rr->inst, 0) == 0;
  if (ok) {
    /* The guest boots first, alone (issue 16): the copy would take CPU
     * time, QEMU's main loop and the exports from it while it boots. The
     * move starts when the guest's agent answers; at once without an agent
     * channel, after instant_agent_wait_ms () without an answer. A vmshadow
     * killed meanwhile leaves a VM that runs: --resume moves it. */
    int64_t wait_ms = instant_agent_wait_ms ();
    int ag = wait_ms == 0 ? 0 :
      req_host_instant_await_agent (rr->rq->libvirt_uri,
                                    req_instant_uuid (rr->inst), wait_ms);
    if (ag == 1)
      rep->agent_ms = vms_now_ms () - t0;
    else if (ag == -1)
      vms_debug ("instant: not waiting for the guest agent: %s", vms_get_error ());
    ok = req_instant_move (rr->inst, rr->rq->instant_bandwidth, &rr->progress,
                           &rep->move_ms) == 0;
  }
  if (!ok) {
    if (asprintf (&rep->error, "VM \"%s\" runs from the backup, but its "
                  "disks did not move: %s; finish with 'vmshadow restore "
                  "--resume %s' or undo with 'vmshadow restore --rollback %s'",
                  req_instant_name (rr->inst), vms_get_error (),
                  req_instant_name (rr->inst), req_instant_name (rr->inst)) == -1)
      rep->error = NULL;
    return;
  }
  rep->moved = 1;
}

struct vms_restore_report *
vms_requester_restore (vms_repo *repo, const struct vms_restore_request *rq)
{
  int64_t t0 = vms_now_ms ();
  char to[PATH_MAX];
  vms_manifest *m = NULL;
  vms_coordinator *coord = NULL, *own = NULL;
  vms_document *work = NULL;
  const vms_document **md = NULL;
  struct vms_restore_report *rep = NULL;
  struct restore_run rr = {
    .repo = repo,
    .rq = rq,
    .progress = { .fn = rq->progress, .opaque = rq->progress_opaque },
  };
  size_t nr_restored = 0;

  if (rq->to && (absolute_dir (rq->to, to) == -1 || check_target_dir (to) == -1))
    return NULL;
  rr.to = rq->to ? to : NULL;
  m = vms_manifest_open (repo, rq->backup_id);
  if (m == NULL) {
    vms_set_error (vms_get_errno (), "cannot restore backup %s: %s; nothing "
                   "was changed (see 'vmshadow list')", rq->backup_id,
                   vms_get_error ());
    goto out;
  }
  rr.m = m;
  rr.bcd = vms_manifest_components (m);
  if (rr.bcd == NULL) {
    vms_set_error (EINVAL, "backup %s has no backup components document: it "
                   "cannot be restored (R5)", rq->backup_id);
    goto out;
  }
  size_t nm = vms_manifest_metadata_count (m);
  size_t ncomp = 0;
  for (size_t i = 0; i < vms_components_writer_count (rr.bcd); i++)
    ncomp += vms_document_component_count (rr.bcd,
                                           vms_components_writer_id (rr.bcd, i));
  if ((md = calloc (nm ? nm : 1, sizeof *md)) == NULL ||
      (rr.comps = calloc (ncomp + 1, sizeof *rr.comps)) == NULL ||
      (rep = calloc (1, sizeof *rep)) == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    goto out;
  }
  for (size_t i = 0; i < nm; i++)
    md[i] = vms_manifest_metadata (m, i);

  if (plan_selection (&rr) == -1 || refuse_mixed (&rr) == -1 ||
      (coord = rq->coord ? rq->coord : (own = vms_coordinator_new ())) == NULL ||
      add_exec_writers (&rr, coord) == -1)
    goto unchanged;
  for (size_t i = 0; i < rr.nr_w; i++) {
    struct rwriter *w = &rr.w[i];
    if (w->hook == NULL || !w->involved)
      continue;
    w->h = w->hook->add (coord, rq, w->all ? NULL : w->asked, rr.to, rr.bcd,
                         md, nm);
    /* Issue 20: every change planned (and refused if need be) first. */
    if (w->h == NULL ||
        (w->hook->prepare && w->hook->prepare (w->h, repo, m) == -1) ||
        (w->hook->plan && w->hook->plan (w->h) == -1))
      goto unchanged;
  }
  for (size_t i = 0; i < rr.nr_w; i++) {
    size_t nc = vms_document_component_count (rr.bcd, rr.w[i].id);
    for (size_t c = 0; c < nc; c++)
      nr_restored += is_restored (&rr.w[i], vms_component_name (
        vms_document_component (rr.bcd, rr.w[i].id, c)));
  }
  if (nr_restored == 0) {
    vms_set_error (ENOENT, "backup %s holds nothing that was asked for",
                   rq->backup_id);
    goto unchanged;
  }
  struct rwriter *instant_w = NULL;
  const char *instant_comp = NULL;
  if (rq->instant && (instant_w = instant_check (&rr, &instant_comp)) == NULL)
    goto unchanged;
  if (preflight (&rr) == -1)
    goto unchanged;
  /* The session's document: the components restored only, and with --to
   * where their files go. */
  if ((work = vms_document_copy (rr.bcd)) == NULL ||
      (rr.to && retarget_under (&rr, work) == -1))
    goto out;
  rr.work = work;
  if (rq->dry_run) {
    /* The plan: what each component would become, nothing changed. */
    rr.dry_run = rep->dry_run = 1;
    restore_files (&rr);
    goto report;
  }
  if ((rr.s = vms_restore_session_new (coord, work, md, nm)) == NULL)
    goto out;
  for (size_t i = 0; i < rr.nr_w; i++) {
    size_t nc = vms_document_component_count (rr.bcd, rr.w[i].id);
    for (size_t c = 0; c < nc; c++) {
      const char *name = vms_component_name (vms_document_component
                                             (rr.bcd, rr.w[i].id, c));
      if (is_restored (&rr.w[i], name) &&
          vms_session_select (rr.s, rr.w[i].id, name) == -1)
        goto out;
    }
  }
  if (instant_w && instant_begin (&rr, instant_w, instant_comp) == -1)
    goto unchanged;
  if (vms_session_pre_restore (rr.s) == -1) {
    if (rr.inst)
      req_instant_rollback (rr.inst);
    struct vms_session_failure f;
    if (vms_session_failure (rr.s, &f) == 0)
      vms_set_error (EPERM, "%s; nothing was written", f.message);
    goto out;
  }
  /* R16: PreRestore finished everywhere; now the files. */
  restore_files (&rr);
  if (vms_session_post_restore (rr.s) == -1) {
    struct vms_session_failure f;
    if (vms_session_failure (rr.s, &f) == 0)
      rep->error = req_strdup (f.message, &rr.oom);
  }
  if (rr.inst)
    instant_finish (&rr, rep, t0);
 report:
  report_components (&rr, rep);
  rep->backup_id = req_strdup (vms_manifest_backup_id (m), &rr.oom);
  if (rr.oom) {
    vms_set_error (ENOMEM, "out of memory writing the report of the restore");
    goto out;
  }
  rep->outcome = restore_outcome (rep);
  rep->elapsed_ms = vms_now_ms () - t0;
  goto done;

 unchanged:
  vms_set_error (vms_get_errno (), "%s; nothing was changed", vms_get_error ());
 out:
  vms_restore_report_free (rep);
  rep = NULL;
 done:
  req_restored_components_free (rr.comps, rr.nr_comps);
  for (size_t i = 0; i < rr.nr_w; i++)
    free (rr.w[i].asked);
  free (rr.w);
  vms_session_free (rr.s);
  req_instant_free (rr.inst);
  vms_coordinator_free (own);
  vms_document_free (work);
  free (md);
  vms_manifest_free (m);
  return rep;
}
