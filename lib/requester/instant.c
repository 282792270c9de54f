/* Instant recovery (issue 16, R25; docs/instant-recovery.md): a VM runs
 * from its backup within seconds while its disks move to their final
 * place.
 *
 * Per disk: the backup's disk served read-only by a detached nbdkit
 * (vms_repo_export_start_detached: it outlives us, the VM reads from it)
 * on a Unix socket, and a qcow2 overlay over it that takes the guest's
 * writes. The VM writer defines and starts the VM on the overlays (its
 * PostRestore), and the mover (libvirt block copy + pivot, in
 * writers/libvirt/vm-instant.c) moves each disk to its final image while
 * the guest runs. Everything needed to finish or undo it is in
 * <root>/<uuid>/state.json, written atomically before each step that
 * makes something, so that after a kill `restore --resume` finishes it
 * and `restore --rollback` removes it (vms_requester_instant_finish).
 *
 * <root> is $VMSHADOW_INSTANT_DIR or VMS_INSTANT_DEFAULT_DIR; each VM's
 * directory is root's, group QEMU's (which must reach the sockets and
 * overlays: QEMU does not run as root on a stock host), mode 0710.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cleanup.h"
#include "fs-util.h"
#include "log.h"
#include "requester-internal.h"
#include "str.h"
#include "subprocess.h"
#include "vmshadow/error.h"

struct inst_disk {
  char *path, *format, *final;
  char *overlay, *socket, *pidfile, *log;
  char *aside;                  /* a file that was at final, kept here */
  uint64_t size;
  int pid;                      /* the nbdkit serving it */
  int made_final;               /* final is ours (made by the mover) */
};

struct req_instant {
  char *dir;                    /* <root>/<uuid> */
  char *repo_dir, *backup_id, *uri, *name, *uuid, *vm;
  char *phase;                  /* "starting", "running", "moving" */
  struct inst_disk *d;
  size_t n;
  struct req_instant_disk *view;    /* for the VM writer and the mover */
  char *final_xml;              /* <dir>/final.xml */
  char **files;                 /* other files the restore wrote (XML, NVRAM) */
  size_t nr_files;
  char **kept;                  /* files it wrote over: target, aside, ... */
  size_t nr_kept;               /* (pairs) */
  int replaced;                 /* --replace turned off a VM of this UUID */
  int replaced_running;         /* ... that ran */
  char *replaced_xml;           /* <dir>/replaced.xml: its definition */
  unsigned qemu_uid, qemu_gid;
};

static const char *
instant_root (void)
{
  const char *e = getenv ("VMSHADOW_INSTANT_DIR");
  return e && *e ? e : VMS_INSTANT_DEFAULT_DIR;
}

void
req_instant_free (struct req_instant *in)
{
  if (in == NULL)
    return;
  for (size_t i = 0; i < in->n; i++) {
    struct inst_disk *d = &in->d[i];
    free (d->path); free (d->format); free (d->final); free (d->overlay);
    free (d->socket); free (d->pidfile); free (d->log); free (d->aside);
  }
  free (in->d); free (in->view);
  free (in->dir); free (in->repo_dir); free (in->backup_id); free (in->uri);
  free (in->name); free (in->uuid); free (in->vm); free (in->phase);
  free (in->final_xml);
  for (size_t i = 0; i < in->nr_files; i++)
    free (in->files[i]);
  free (in->files);
  for (size_t i = 0; i < 2 * in->nr_kept; i++)
    free (in->kept[i]);
  free (in->kept);
  free (in->replaced_xml);
  free (in);
}

/* ---- the state file ---- */

static void
jadd (json_object *o, const char *k, const char *v)
{
  json_object_object_add (o, k, v ? json_object_new_string (v) : NULL);
}

static int
instant_save (struct req_instant *in)
{
  json_object *o = json_object_new_object (), *disks = json_object_new_array ();
  const char *text;
  char path[PATH_MAX];
  int r;

  jadd (o, "format", "vmshadow-instant-restore");
  json_object_object_add (o, "version", json_object_new_int (1));
  jadd (o, "phase", in->phase);
  jadd (o, "repo", in->repo_dir);
  jadd (o, "backup_id", in->backup_id);
  jadd (o, "uri", in->uri);
  jadd (o, "name", in->name);
  jadd (o, "uuid", in->uuid);
  jadd (o, "vm", in->vm);
  for (size_t i = 0; i < in->n; i++) {
    struct inst_disk *d = &in->d[i];
    json_object *j = json_object_new_object ();
    jadd (j, "path", d->path);
    jadd (j, "format", d->format);
    jadd (j, "final", d->final);
    jadd (j, "overlay", d->overlay);
    jadd (j, "socket", d->socket);
    jadd (j, "pidfile", d->pidfile);
    jadd (j, "log", d->log);
    jadd (j, "aside", d->aside);
    json_object_object_add (j, "size", json_object_new_int64 ((int64_t) d->size));
    json_object_object_add (j, "pid", json_object_new_int (d->pid));
    json_object_object_add (j, "made_final", json_object_new_boolean (d->made_final));
    json_object_array_add (disks, j);
  }
  json_object_object_add (o, "disks", disks);
  json_object *files = json_object_new_array ();
  for (size_t i = 0; i < in->nr_files; i++)
    json_object_array_add (files, json_object_new_string (in->files[i]));
  json_object_object_add (o, "files", files);
  json_object *kept = json_object_new_array ();
  for (size_t i = 0; i < in->nr_kept; i++) {
    json_object *k = json_object_new_object ();
    jadd (k, "target", in->kept[2 * i]);
    jadd (k, "aside", in->kept[2 * i + 1]);
    json_object_array_add (kept, k);
  }
  json_object_object_add (o, "kept", kept);
  json_object_object_add (o, "replaced", json_object_new_boolean (in->replaced));
  json_object_object_add (o, "replaced_running",
                          json_object_new_boolean (in->replaced_running));
  text = json_object_to_json_string_ext (o, JSON_C_TO_STRING_PRETTY);
  snprintf (path, sizeof path, "%s/state.json", in->dir);
  r = vms_write_file_atomic (AT_FDCWD, path, text, strlen (text), 0600);
  json_object_put (o);
  return r;
}

static char *
jstr (json_object *o, const char *k)
{
  json_object *v;
  if (!json_object_object_get_ex (o, k, &v) || !json_object_is_type (v, json_type_string))
    return NULL;
  return strdup (json_object_get_string (v));
}

static int
instant_view (struct req_instant *in)
{
  free (in->view);
  if ((in->view = calloc (in->n + 1, sizeof *in->view)) == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  for (size_t i = 0; i < in->n; i++)
    in->view[i] = (struct req_instant_disk) {
      .path = in->d[i].path, .overlay = in->d[i].overlay,
      .socket = in->d[i].socket, .final = in->d[i].final,
      .format = in->d[i].format,
    };
  return 0;
}

/* Everything in a state file is ours, but checked all the same: paths
 * absolute, the formats ours. */
static struct req_instant *
instant_load (const char *dir)
{
  char path[PATH_MAX];
  CLEANUP_FREE char *text = NULL;
  json_object *o = NULL, *disks;
  struct req_instant *in = calloc (1, sizeof *in);
  CLEANUP_CLOSE int fd = -1;
  struct stat st;
  ssize_t got;

  snprintf (path, sizeof path, "%s/state.json", dir);
  if (in == NULL || (in->dir = strdup (dir)) == NULL)
    goto oom;
  if ((fd = open (path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) == -1 ||
      fstat (fd, &st) == -1 || !S_ISREG (st.st_mode) || st.st_uid != 0 ||
      st.st_size > 1 << 20 || (text = malloc ((size_t) st.st_size + 1)) == NULL ||
      (got = read (fd, text, (size_t) st.st_size)) != st.st_size) {
    vms_set_error (errno ? errno : EINVAL, "cannot read %s: %s", path,
                   errno ? strerror (errno) : "not a file of root's");
    req_instant_free (in);
    return NULL;
  }
  text[got] = '\0';
  if ((o = json_tokener_parse (text)) == NULL ||
      !json_object_object_get_ex (o, "disks", &disks) ||
      !json_object_is_type (disks, json_type_array))
    goto bad;
  in->phase = jstr (o, "phase");
  in->repo_dir = jstr (o, "repo");
  in->backup_id = jstr (o, "backup_id");
  in->uri = jstr (o, "uri");
  in->name = jstr (o, "name");
  in->uuid = jstr (o, "uuid");
  in->vm = jstr (o, "vm");
  if (!in->phase || !in->repo_dir || !in->backup_id || !in->name || !in->uuid)
    goto bad;
  in->n = json_object_array_length (disks);
  if (in->n > 256 || (in->d = calloc (in->n + 1, sizeof *in->d)) == NULL)
    goto bad;
  for (size_t i = 0; i < in->n; i++) {
    json_object *j = json_object_array_get_idx (disks, i), *v;
    struct inst_disk *d = &in->d[i];
    d->path = jstr (j, "path");
    d->format = jstr (j, "format");
    d->final = jstr (j, "final");
    d->overlay = jstr (j, "overlay");
    d->socket = jstr (j, "socket");
    d->pidfile = jstr (j, "pidfile");
    d->log = jstr (j, "log");
    d->aside = jstr (j, "aside");
    if (json_object_object_get_ex (j, "size", &v))
      d->size = (uint64_t) json_object_get_int64 (v);
    if (json_object_object_get_ex (j, "pid", &v))
      d->pid = json_object_get_int (v);
    if (json_object_object_get_ex (j, "made_final", &v))
      d->made_final = json_object_get_boolean (v);
    if (!d->path || !d->format || !d->final || !d->overlay || !d->socket ||
        d->final[0] != '/' || d->overlay[0] != '/' || d->socket[0] != '/' ||
        (strcmp (d->format, "raw") != 0 && strcmp (d->format, "qcow2") != 0))
      goto bad;
  }
  json_object *files;
  if (json_object_object_get_ex (o, "files", &files) &&
      json_object_is_type (files, json_type_array) &&
      json_object_array_length (files) < 256) {
    size_t nf = json_object_array_length (files);
    if ((in->files = calloc (nf + 1, sizeof *in->files)) == NULL) {
      json_object_put (o);
      goto oom;
    }
    for (size_t i = 0; i < nf; i++) {
      json_object *f = json_object_array_get_idx (files, i);
      if (json_object_is_type (f, json_type_string) &&
          json_object_get_string (f)[0] == '/')
        in->files[in->nr_files++] = strdup (json_object_get_string (f));
    }
  }
  json_object *kept, *v;
  if (json_object_object_get_ex (o, "kept", &kept) &&
      json_object_is_type (kept, json_type_array) &&
      json_object_array_length (kept) < 256) {
    size_t nk = json_object_array_length (kept);
    if ((in->kept = calloc (2 * nk + 1, sizeof *in->kept)) == NULL) {
      json_object_put (o);
      goto oom;
    }
    for (size_t i = 0; i < nk; i++) {
      json_object *k = json_object_array_get_idx (kept, i);
      char *t = jstr (k, "target"), *a = jstr (k, "aside");
      if (t && a && t[0] == '/' && a[0] == '/') {
        in->kept[2 * in->nr_kept] = t;
        in->kept[2 * in->nr_kept++ + 1] = a;
      }
      else {
        free (t);
        free (a);
      }
    }
  }
  if (json_object_object_get_ex (o, "replaced", &v))
    in->replaced = json_object_get_boolean (v);
  if (json_object_object_get_ex (o, "replaced_running", &v))
    in->replaced_running = json_object_get_boolean (v);
  json_object_put (o);
  if (asprintf (&in->final_xml, "%s/final.xml", dir) == -1 ||
      asprintf (&in->replaced_xml, "%s/replaced.xml", dir) == -1 ||
      instant_view (in) == -1)
    goto oom;
  return in;
 bad:
  json_object_put (o);
  vms_set_error (EINVAL, "%s is not the state of an instant restore", path);
  req_instant_free (in);
  return NULL;
 oom:
  vms_set_error (ENOMEM, "out of memory");
  req_instant_free (in);
  return NULL;
}

/* ---- making one ---- */

/* Can uid:gid pass through every directory above dir? */
static int
instant_reachable (const char *dir, unsigned uid, unsigned gid)
{
  CLEANUP_FREE char *p = strdup (dir);
  char *slash;
  struct stat st;

  if (p == NULL || uid == 0)
    return 0;
  while ((slash = strrchr (p, '/')) != NULL && slash != p) {
    *slash = '\0';
    if (stat (p, &st) == -1)
      return -1;
    mode_t bit = st.st_uid == uid ? S_IXUSR : st.st_gid == gid ? S_IXGRP : S_IXOTH;
    if (!(st.st_mode & bit)) {
      vms_set_error (EACCES, "QEMU runs as %u:%u and cannot pass through %s "
                     "(owner %u:%u, mode %04o) to reach the backup's "
                     "exports in %s; give that directory search permission "
                     "(chmod o+x) or set VMSHADOW_INSTANT_DIR", uid, gid, p,
                     (unsigned) st.st_uid, (unsigned) st.st_gid,
                     (unsigned) (st.st_mode & 07777), dir);
      return -1;
    }
  }
  return 0;
}

struct req_instant *
req_instant_new (const char *repo_dir, const char *backup_id, const char *uri,
                 const char *name, const char *uuid)
{
  const char *root = instant_root ();
  struct req_instant *in = calloc (1, sizeof *in);
  CLEANUP_FREE char *repo_abs = NULL;

  if (in == NULL)
    goto oom;
  if ((repo_abs = realpath (repo_dir, NULL)) == NULL) {
    vms_set_error (errno, "cannot resolve %s: %s", repo_dir, strerror (errno));
    free (in);
    return NULL;
  }
  if ((in->dir = vms_strdup_printf ("%s/%s", root, uuid)) == NULL ||
      (in->repo_dir = strdup (repo_abs)) == NULL ||
      (in->backup_id = strdup (backup_id)) == NULL ||
      (uri && (in->uri = strdup (uri)) == NULL) ||
      (in->name = strdup (name)) == NULL || (in->uuid = strdup (uuid)) == NULL ||
      (in->phase = strdup ("starting")) == NULL ||
      asprintf (&in->final_xml, "%s/final.xml", in->dir) == -1 ||
      asprintf (&in->replaced_xml, "%s/replaced.xml", in->dir) == -1)
    goto oom;
  if (req_host_qemu_ids (uri, &in->qemu_uid, &in->qemu_gid) == -1)
    goto fail;
  if (vms_mkdir_p (root, 0711) == -1) {
    vms_set_error (errno, "cannot make %s: %s", root, strerror (errno));
    goto fail;
  }
  if (mkdir (in->dir, 0700) == -1) {
    if (errno == EEXIST)
      vms_set_error (EEXIST, "an instant restore of VM \"%s\" (%s) is "
                     "pending (%s): finish it with 'vmshadow restore "
                     "--resume %s' or undo it with --rollback", name, uuid,
                     in->dir, name);
    else
      vms_set_error (errno, "cannot make %s: %s", in->dir, strerror (errno));
    free (in->dir);
    in->dir = NULL;             /* not ours: never removed */
    goto fail;
  }
  if (chown (in->dir, 0, (gid_t) in->qemu_gid) == -1 ||
      chmod (in->dir, in->qemu_gid ? 0710 : 0700) == -1 ||
      instant_reachable (in->dir, in->qemu_uid, in->qemu_gid) == -1 ||
      instant_save (in) == -1) {
    if (vms_get_error () == NULL)
      vms_set_error (errno, "cannot prepare %s: %s", in->dir, strerror (errno));
    goto fail;
  }
  return in;
 oom:
  vms_set_error (ENOMEM, "out of memory");
 fail:
  if (in && in->dir) {
    int e = vms_get_errno ();
    CLEANUP_FREE char *msg = strdup (vms_get_error () ? vms_get_error () : "?");
    req_instant_rollback (in);
    vms_set_error (e, "%s", msg ? msg : "out of memory");
  }
  req_instant_free (in);
  return NULL;
}

static int
instant_overlay (const char *overlay, const char *socket, uint64_t size)
{
  char sz[32], why[512], how[128];
  CLEANUP_FREE char *backing = vms_strdup_printf ("nbd+unix:///?socket=%s", socket);
  struct vms_subprocess_result res = { 0 };
  int ok;

  snprintf (sz, sizeof sz, "%" PRIu64, size);
  /* -u: the size is given, the backing is not opened now. */
  const char *argv[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw",
                         "-b", backing, "-u", overlay, sz, NULL };
  const struct vms_subprocess_options o = {
    .argv = argv, .timeout_ms = 60000, .max_output = 4096, .max_errors = 4096,
  };
  if (backing == NULL || vms_subprocess_run (&o, &res) == -1)
    return -1;
  ok = vms_subprocess_succeeded (&res);
  if (!ok)
    vms_set_error (EIO, "qemu-img create %s: %s: %s", overlay,
                   vms_subprocess_describe (&res, how, sizeof how),
                   vms_subprocess_error_tail (&res, 3, why, sizeof why));
  vms_subprocess_result_reset (&res);
  if (ok && chmod (overlay, 0600) == -1) {
    vms_set_error (errno, "cannot set the mode of %s: %s", overlay, strerror (errno));
    return -1;
  }
  return ok ? 0 : -1;
}

int
req_instant_add_disk (struct req_instant *in, const char *vm, const char *path,
                      uint64_t size, const char *format, const char *final)
{
  struct inst_disk *v = realloc (in->d, (in->n + 1) * sizeof *v), *d;
  size_t k = in->n;

  if (v == NULL)
    goto oom;
  in->d = v;
  d = memset (&v[k], 0, sizeof *d);
  if ((!in->vm && (in->vm = strdup (vm)) == NULL) ||
      (d->path = strdup (path)) == NULL ||
      (d->format = strdup (format && strcmp (format, "qcow2") == 0 ? "qcow2" : "raw")) == NULL ||
      (d->final = strdup (final)) == NULL ||
      (d->overlay = vms_strdup_printf ("%s/d%zu.qcow2", in->dir, k)) == NULL ||
      (d->socket = vms_strdup_printf ("%s/d%zu.sock", in->dir, k)) == NULL ||
      (d->pidfile = vms_strdup_printf ("%s/d%zu.pid", in->dir, k)) == NULL ||
      (d->log = vms_strdup_printf ("%s/d%zu.log", in->dir, k)) == NULL)
    goto oom;
  d->size = size;
  in->n++;
  if (strlen (d->socket) >= sizeof ((struct sockaddr_un *) 0)->sun_path) {
    vms_set_error (ENAMETOOLONG, "the socket path %s is too long for a Unix "
                   "socket; set VMSHADOW_INSTANT_DIR to a shorter directory",
                   d->socket);
    return -1;
  }
  /* Saved before each thing is made, so a kill leaves nothing unknown. */
  if (instant_save (in) == -1)
    return -1;
  const struct vms_repo_export_options eo = {
    .repo_dir = in->repo_dir, .backup_id = in->backup_id,
    .select = { .component = vm, .file = path },
  };
  if ((d->pid = vms_repo_export_start_detached (&eo, d->socket, d->pidfile,
                                                d->log, in->qemu_gid)) == -1) {
    d->pid = 0;
    return -1;
  }
  if (instant_save (in) == -1 || instant_overlay (d->overlay, d->socket, size) == -1)
    return -1;
  return instant_view (in);
 oom:
  vms_set_error (ENOMEM, "out of memory");
  return -1;
}

int
req_instant_keep_file (struct req_instant *in, const char *target)
{
  struct stat st;

  if (lstat (target, &st) == -1) {
    if (errno != ENOENT) {
      vms_set_error (errno, "cannot look at %s: %s", target, strerror (errno));
      return -1;
    }
    /* Nothing there: a rollback removes what the restore writes. */
    char **v = realloc (in->files, (in->nr_files + 2) * sizeof *v);
    if (v == NULL || (v[in->nr_files] = strdup (target)) == NULL) {
      if (v)
        in->files = v;
      vms_set_error (ENOMEM, "out of memory");
      return -1;
    }
    in->files = v;
    in->nr_files++;
    return instant_save (in);
  }
  /* A file there (the replaced VM's NVRAM or stored definition): kept
   * aside for a rollback; saved in the state before it moves. */
  char **v = realloc (in->kept, (2 * in->nr_kept + 3) * sizeof *v);
  if (v == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  in->kept = v;
  if ((v[2 * in->nr_kept] = strdup (target)) == NULL ||
      (v[2 * in->nr_kept + 1] = vms_strdup_printf ("%s.vmshadow-instant-%" PRId64,
                                                   target, (int64_t) time (NULL))) == NULL) {
    free (v[2 * in->nr_kept]);
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  in->nr_kept++;
  if (instant_save (in) == -1)
    return -1;
  if (rename (target, v[2 * in->nr_kept - 1]) == -1) {
    vms_set_error (errno, "cannot keep %s aside: %s", target, strerror (errno));
    in->nr_kept--;
    free (v[2 * in->nr_kept]);
    free (v[2 * in->nr_kept + 1]);
    instant_save (in);
    return -1;
  }
  return 0;
}

int
req_instant_keep_replaced (struct req_instant *in)
{
  CLEANUP_FREE char *xml = NULL;
  int running, r;

  if ((r = req_host_instant_existing (in->uri, in->uuid, &xml, &running)) <= 0)
    return r;
  if (xml && vms_write_file_atomic (AT_FDCWD, in->replaced_xml, xml,
                                    strlen (xml), 0600) == -1)
    return -1;
  in->replaced = xml != NULL;
  in->replaced_running = running;
  return instant_save (in);
}

const struct req_instant_disk *
req_instant_disks (const struct req_instant *in, size_t *n)
{
  *n = in->n;
  return in->view;
}

const char *
req_instant_final_xml (const struct req_instant *in)
{
  return in->final_xml;
}

const char *
req_instant_name (const struct req_instant *in)
{
  return in->name;
}

const char *
req_instant_uuid (const struct req_instant *in)
{
  return in->uuid;
}

int
req_instant_ran (struct req_instant *in, int boot_check)
{
  free (in->phase);
  /* A boot check's copy is never moved (its "final" paths are the
   * original VM's): only a rollback may touch it. */
  if ((in->phase = strdup (boot_check ? "boot-check" : "running")) == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  return instant_save (in);
}

/* ---- moving, finishing, undoing ---- */

/* Remove what instant recovery made in its directory, and it. */
static void
instant_remove_dir (struct req_instant *in)
{
  char path[PATH_MAX];

  for (size_t i = 0; i < in->n; i++) {
    struct inst_disk *d = &in->d[i];
    vms_repo_export_stop_detached (d->pid, d->socket);
    unlink (d->overlay); unlink (d->socket); unlink (d->pidfile); unlink (d->log);
  }
  unlink (in->final_xml);
  snprintf (path, sizeof path, "%s/state.json", in->dir);
  unlink (path);
  if (rmdir (in->dir) == -1 && errno != ENOENT)
    vms_warn ("instant restore: cannot remove %s: %s", in->dir, strerror (errno));
}

struct move_progress {
  struct req_instant *in;
  struct req_progress *rp;
  size_t disk;
  int started;
};

static void
move_progress (void *opaque, size_t disk, uint64_t done, uint64_t total)
{
  struct move_progress *mp = opaque;
  if (mp->rp == NULL)
    return;
  if (!mp->started || disk != mp->disk) {
    if (mp->started)
      req_progress_end (mp->rp);
    req_progress_start (mp->rp, NULL, mp->in->uuid, mp->in->d[disk].final);
    mp->started = 1;
    mp->disk = disk;
  }
  req_progress_bytes (mp->rp, done, total);
}

/* A disk's nbdkit died (the host rebooted): serve it again on the same
 * socket, where QEMU's NBD client finds it. */
static int
instant_revive (struct req_instant *in, struct inst_disk *d)
{
  if (vms_repo_export_detached_alive (d->pid, d->socket))
    return 0;
  unlink (d->socket);
  const struct vms_repo_export_options eo = {
    .repo_dir = in->repo_dir, .backup_id = in->backup_id,
    .select = { .component = in->vm, .file = d->path },
  };
  if (req_host_qemu_ids (in->uri, &in->qemu_uid, &in->qemu_gid) == -1 ||
      (d->pid = vms_repo_export_start_detached (&eo, d->socket, d->pidfile,
                                                d->log, in->qemu_gid)) == -1) {
    d->pid = 0;
    return -1;
  }
  return instant_save (in);
}

int
req_instant_move (struct req_instant *in, uint64_t bandwidth,
                  struct req_progress *rp, int64_t *move_ms)
{
  struct move_progress mp = { .in = in, .rp = rp };
  CLEANUP_FREE char *xml = NULL;
  int64_t t0 = vms_now_ms ();
  size_t len;
  int r;

  if (strcmp (in->phase, "boot-check") == 0) {
    vms_set_error (EINVAL, "\"%s\" is the throw-away copy of a boot check: "
                   "it is never moved; remove it with --rollback", in->name);
    return -1;
  }

  for (size_t i = 0; i < in->n; i++) {
    struct inst_disk *d = &in->d[i];
    struct stat st;
    if (instant_revive (in, d) == -1)
      return -1;
    /* A file at the final place that is not ours is kept aside (and
     * put back by a rollback); ours is reused by a resume. */
    if (!d->made_final && lstat (d->final, &st) == 0) {
      free (d->aside);
      if ((d->aside = vms_strdup_printf ("%s.vmshadow-instant-%" PRId64,
                                         d->final, (int64_t) time (NULL))) == NULL ||
          rename (d->final, d->aside) == -1) {
        vms_set_error (errno, "cannot keep %s aside: %s", d->final,
                       strerror (errno));
        free (d->aside);
        d->aside = NULL;
        return -1;
      }
    }
    d->made_final = 1;
  }
  free (in->phase);
  in->phase = strdup ("moving");
  if (in->phase == NULL || instant_save (in) == -1)
    return -1;
  {
    CLEANUP_CLOSE int fd = open (in->final_xml, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (fd == -1 || fstat (fd, &st) == -1 || st.st_size > (1 << 22) ||
        (xml = calloc (1, (size_t) st.st_size + 1)) == NULL ||
        (len = (size_t) read (fd, xml, (size_t) st.st_size)) != (size_t) st.st_size) {
      vms_set_error (errno ? errno : EIO, "cannot read the final definition "
                     "%s: %s", in->final_xml, strerror (errno ? errno : EIO));
      return -1;
    }
  }
  r = req_host_instant_move (in->uri, in->uuid, in->view, in->n, bandwidth,
                             xml, move_progress, &mp);
  if (mp.started)
    req_progress_end (rp);
  if (r == -1)
    return -1;
  if (move_ms)
    *move_ms = vms_now_ms () - t0;
  /* The VM runs from its final disks: nothing of the backup is used. */
  for (size_t i = 0; i < in->n; i++)
    if (in->d[i].aside && unlink (in->d[i].aside) == -1 && errno != ENOENT)
      vms_warn ("instant restore: cannot remove %s: %s", in->d[i].aside,
                strerror (errno));
  for (size_t i = 0; i < in->nr_kept; i++)
    if (unlink (in->kept[2 * i + 1]) == -1 && errno != ENOENT)
      vms_warn ("instant restore: cannot remove %s: %s", in->kept[2 * i + 1],
                strerror (errno));
  instant_remove_dir (in);
  return 0;
}

int
req_instant_rollback (struct req_instant *in)
{
  int still_there = 0;

  if (in->n && req_host_instant_remove (in->uri, in->uuid, in->view, in->n) == -1) {
    /* The VM of that UUID is not ours: with --replace, before the VM ran,
     * the one to be replaced, still there (the restore stopped before
     * PreRestore turned it off). It stays as it is. */
    if (!in->replaced || vms_get_errno () != EEXIST ||
        strcmp (in->phase, "starting") != 0)
      return -1;
    still_there = 1;
  }
  for (size_t i = 0; i < in->n; i++) {
    struct inst_disk *d = &in->d[i];
    if (d->made_final) {
      unlink (d->final);
      d->made_final = 0;
    }
    if (d->aside && rename (d->aside, d->final) == -1)
      vms_warn ("instant restore: cannot put %s back at %s: %s", d->aside,
                d->final, strerror (errno));
  }
  /* The other files it wrote (domain XML, NVRAM), and their directory
   * when that is left empty (<state_dir>/<uuid>/restore). */
  for (size_t i = 0; i < in->nr_files; i++) {
    CLEANUP_FREE char *dir = strdup (in->files[i]);
    char *slash = dir ? strrchr (dir, '/') : NULL;
    unlink (in->files[i]);
    if (slash && slash != dir) {
      *slash = '\0';
      rmdir (dir);
    }
  }
  for (size_t i = 0; i < in->nr_kept; i++)
    if (rename (in->kept[2 * i + 1], in->kept[2 * i]) == -1 && errno != ENOENT)
      vms_warn ("instant restore: cannot put %s back at %s: %s",
                in->kept[2 * i + 1], in->kept[2 * i], strerror (errno));
  /* --replace (R15): the VM it replaced, defined again (and started if it
   * ran) on its own disks, which are back at their places. Kept in the
   * state when that fails: a second rollback tries again. */
  if (in->replaced && !still_there) {
    CLEANUP_FREE char *xml = NULL;
    CLEANUP_CLOSE int fd = open (in->replaced_xml, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (fd == -1 || fstat (fd, &st) == -1 || st.st_size > (1 << 22) ||
        (xml = calloc (1, (size_t) st.st_size + 1)) == NULL ||
        read (fd, xml, (size_t) st.st_size) != st.st_size) {
      vms_set_error (errno ? errno : EIO, "cannot read the replaced VM's "
                     "definition %s: %s", in->replaced_xml,
                     strerror (errno ? errno : EIO));
      return -1;
    }
    if (req_host_instant_put_back (in->uri, xml, in->replaced_running) == -1) {
      int e = vms_get_errno ();
      CLEANUP_FREE char *msg = strdup (vms_get_error () ? vms_get_error () : "?");
      vms_set_error (e, "%s (its definition is kept in %s)", msg ? msg : "?",
                     in->replaced_xml);
      return -1;
    }
  }
  unlink (in->replaced_xml);
  instant_remove_dir (in);
  return 0;
}

/* ---- pending ones (public: vmshadow restore --resume / --rollback) ---- */

int
vms_requester_instant_finish (const char *which, int rollback, uint64_t bandwidth,
                              vms_requester_progress_fn progress, void *opaque,
                              char ***done, size_t *nr_done)
{
  const char *root = instant_root ();
  DIR *dir = opendir (root);
  struct dirent *e;
  struct req_progress rp = { .fn = progress, .opaque = opaque };
  size_t found = 0;
  int rc = 0;
  char **names = NULL;

  *done = NULL;
  *nr_done = 0;
  if (dir == NULL && errno != ENOENT) {
    vms_set_error (errno, "cannot read %s: %s", root, strerror (errno));
    return -1;
  }
  while (dir && rc == 0 && (e = readdir (dir)) != NULL) {
    char path[PATH_MAX];
    struct req_instant *in;
    if (e->d_name[0] == '.')
      continue;
    snprintf (path, sizeof path, "%s/%s", root, e->d_name);
    if ((in = instant_load (path)) == NULL) {
      vms_warn ("%s", vms_get_error ());
      continue;
    }
    if (which && strcmp (which, in->name) != 0 && strcasecmp (which, in->uuid) != 0) {
      req_instant_free (in);
      continue;
    }
    found++;
    if (rollback)
      rc = req_instant_rollback (in);
    else if (strcmp (in->phase, "boot-check") == 0) {
      vms_set_error (EINVAL, "\"%s\" is the throw-away copy of an "
                     "interrupted boot check: remove it with --rollback",
                     in->name);
      rc = -1;
    }
    else if (strcmp (in->phase, "starting") == 0) {
      vms_set_error (EINVAL, "the instant restore of VM \"%s\" was "
                     "interrupted before the VM ran: it cannot be resumed; "
                     "roll it back (--rollback)", in->name);
      rc = -1;
    }
    else if (req_host_instant_running (in->uri, in->uuid) != 1) {
      vms_set_error (EINVAL, "VM \"%s\" does not run: its disks cannot move "
                     "while it is off; start it (it runs from the backup) "
                     "and resume, or roll back (--rollback)", in->name);
      rc = -1;
    }
    else
      rc = req_instant_move (in, bandwidth, &rp, NULL);
    if (rc == 0) {
      char **v = realloc (names, (*nr_done + 2) * sizeof *v);
      if (v) {
        names = v;
        names[(*nr_done)++] = strdup (in->name);
        names[*nr_done] = NULL;
      }
    }
    else
      vms_set_error (vms_get_errno (), "%s of the instant restore of VM "
                     "\"%s\": %s", rollback ? "rollback" : "resume", in->name,
                     vms_get_error ());
    req_instant_free (in);
  }
  if (dir)
    closedir (dir);
  *done = names;
  if (rc == 0 && found == 0) {
    vms_set_error (ENOENT, "no instant restore %s%s%sis pending (in %s)",
                   which ? "of VM \"" : "", which ? which : "",
                   which ? "\" " : "", root);
    return -1;
  }
  return rc;
}
