/* RBD snapshots and rbd diff of a stopped VM's RBD disks (vm-rbd.h; issue
 * 11, R7, R12). librbd/librados only: no rbd CLI. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmshadow/error.h"

#include "cleanup.h"
#include "fs-util.h"
#include "log.h"
#include "str.h"
#include "vm-rbd.h"
#include "vm-writer.h"

void
vm_rbd_diff_clear (struct vm_rbd_diff *r)
{
  free (r->base);
  free (r->how);
  free (r->full_reason);
  free (r->extents);
  memset (r, 0, sizeof *r);
}

int
vm_rbd_disk_eligible (const struct vm_disk *d, const char **why)
{
  *why = NULL;
  if (d->source != VM_DISK_NETWORK || d->protocol == NULL ||
      strcmp (d->protocol, "rbd") != 0) {
    *why = "not an RBD disk";
    return 0;
  }
  if (d->format && strcmp (d->format, "raw") != 0) {
    /* The diff names changes of the image, not of the disk a qcow2 in it
     * holds. */
    *why = "its format is not raw: an RBD diff names changed bytes of the "
      "image, not of the disk inside it";
    return 0;
  }
  if (d->source_name && strchr (d->source_name, '@')) {
    *why = "the disk is an RBD snapshot already";
    return 0;
  }
  return 1;
}

int
vm_rbd_disk_at_snapshot (const struct vm_disk *d, const char *snap,
                         struct vm_disk *out)
{
  *out = *d;
  out->source_name = vms_strdup_printf ("%s@%s", d->source_name ? d->source_name : "",
                                        snap);
  if (out->source_name == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  return 0;
}

size_t
vm_rbd_merge_extents (struct vm_rbd_extent *e, size_t n)
{
  size_t j = 0;

  for (size_t i = 0; i < n; i++) {
    if (e[i].length == 0)
      continue;
    if (j > 0 && e[i].offset <= e[j - 1].offset + e[j - 1].length) {
      uint64_t end = e[i].offset + e[i].length;
      if (end > e[j - 1].offset + e[j - 1].length)
        e[j - 1].length = end - e[j - 1].offset;
      continue;
    }
    e[j++] = e[i];
  }
  return j;
}

int
vm_rbd_write_extents (const char *path, const struct vm_rbd_diff *r)
{
  size_t cap = r->nr_extents * 42 + 1, len = 0;
  CLEANUP_FREE char *buf = malloc (cap);

  if (buf == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  buf[0] = '\0';
  for (size_t i = 0; i < r->nr_extents; i++)
    len += (size_t) snprintf (buf + len, cap - len, "%" PRIu64 " %" PRIu64 "\n",
                              r->extents[i].offset, r->extents[i].length);
  return vms_write_file_atomic (AT_FDCWD, path, buf, len, 0600);
}

#ifdef HAVE_LIBRBD
#include <rados/librados.h>
#include <rbd/librbd.h>

/* librbd's bound on a call to the cluster, so that a monitor or OSD that
 * is gone fails the backup rather than hang it. */
#define VM_RBD_TIMEOUT_S "60"

struct rbd_conn {
  rados_t cluster;
  rados_ioctx_t io;
  rbd_image_t image;
  char *pool, *ns, *name;
  int connected;
};

static const char b64[] =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* RFC 4648 base64 of len bytes (the key Ceph wants as text). */
static char *
base64 (const unsigned char *p, size_t len)
{
  char *out = malloc ((len + 2) / 3 * 4 + 1), *o = out;

  if (out == NULL)
    return NULL;
  for (size_t i = 0; i < len; i += 3) {
    uint32_t v = (uint32_t) p[i] << 16;
    if (i + 1 < len)
      v |= (uint32_t) p[i + 1] << 8;
    if (i + 2 < len)
      v |= p[i + 2];
    *o++ = b64[(v >> 18) & 63];
    *o++ = b64[(v >> 12) & 63];
    *o++ = i + 1 < len ? b64[(v >> 6) & 63] : '=';
    *o++ = i + 2 < len ? b64[v & 63] : '=';
  }
  *o = '\0';
  return out;
}

/* The key in key_file (at most 4 KiB: a Ceph key is 16 bytes plus a
 * header), as base64 text. */
static char *
read_key (const char *key_file)
{
  unsigned char buf[4096];
  ssize_t n = 0, got;
  int fd = open (key_file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  char *k;

  if (fd == -1) {
    vms_set_error (errno, "cannot open the key file %s: %s", key_file,
                   strerror (errno));
    return NULL;
  }
  while ((got = read (fd, buf + n, sizeof buf - (size_t) n)) > 0)
    n += got;
  close (fd);
  if (got == -1 || n == 0 || n == (ssize_t) sizeof buf) {
    explicit_bzero (buf, sizeof buf);
    vms_set_error (EINVAL, "the key file %s is %s", key_file,
                   got == -1 ? "unreadable" : n == 0 ? "empty" : "too large");
    return NULL;
  }
  k = base64 (buf, (size_t) n);
  explicit_bzero (buf, sizeof buf);
  if (k == NULL)
    vms_set_error (ENOMEM, "out of memory");
  return k;
}

static void
conn_close (struct rbd_conn *c)
{
  if (c->image)
    rbd_close (c->image);
  if (c->io)
    rados_ioctx_destroy (c->io);
  if (c->cluster)
    rados_shutdown (c->cluster);
  free (c->pool); free (c->ns); free (c->name);
  memset (c, 0, sizeof *c);
}

/* Connect as QEMU's rbd driver would for this disk and open its image
 * (at snapshot snap, read-only, when snap is set). On failure c holds
 * whatever was made; conn_open closes it. */
static int
conn_open_1 (struct rbd_conn *c, const struct vm_disk *d, const char *key_file,
             const char *snap, int image)
{
  const char *name = d->source_name ? d->source_name : "";
  const char *s1 = strchr (name, '/'), *s2 = s1 ? strchr (s1 + 1, '/') : NULL;
  CLEANUP_FREE char *mons = NULL, *key = NULL;
  int r;

  memset (c, 0, sizeof *c);
  if (s1 == NULL || s1 == name || (s2 && strchr (s2 + 1, '/')) || strchr (name, '@')) {
    vms_set_error (EINVAL, "an RBD disk's name must be POOL/IMAGE or "
                   "POOL/NAMESPACE/IMAGE, not \"%s\"", name);
    return -1;
  }
  c->pool = strndup (name, (size_t) (s1 - name));
  c->ns = s2 ? strndup (s1 + 1, (size_t) (s2 - s1 - 1)) : NULL;
  c->name = strdup (s2 ? s2 + 1 : s1 + 1);
  if (c->pool == NULL || (s2 && c->ns == NULL) || c->name == NULL)
    goto oom;
  if (!*c->name) {
    vms_set_error (EINVAL, "the RBD disk %s names no image", name);
    return -1;
  }
  if (key_file && (key = read_key (key_file)) == NULL)
    return -1;
  for (size_t i = 0; i < d->nr_hosts; i++) {
    char *m;
    if (d->hosts[i].name == NULL)
      continue;
    m = vms_strdup_printf ("%s%s%s%s%s:%s", mons ? mons : "", mons ? "," : "",
                           strchr (d->hosts[i].name, ':') ? "[" : "",
                           d->hosts[i].name,
                           strchr (d->hosts[i].name, ':') ? "]" : "",
                           d->hosts[i].port ? d->hosts[i].port : "6789");
    if (m == NULL)
      goto oom;
    free (mons);
    mons = m;
  }
  if ((r = rados_create (&c->cluster, d->auth_user ? d->auth_user : "admin")) < 0) {
    c->cluster = NULL;
    vms_set_error (-r, "cannot set up a Ceph client: %s", strerror (-r));
    return -1;
  }
  /* As QEMU: the <config file>, else Ceph's default places (which may
   * hold none: the XML's monitors and key are enough). */
  r = rados_conf_read_file (c->cluster, d->rbd_conf);
  if (r < 0 && d->rbd_conf) {
    vms_set_error (-r, "cannot read the Ceph configuration %s: %s", d->rbd_conf,
                   strerror (-r));
    return -1;
  }
  if ((mons && (r = rados_conf_set (c->cluster, "mon_host", mons)) < 0) ||
      (key && (r = rados_conf_set (c->cluster, "key", key)) < 0) ||
      (key && (r = rados_conf_set (c->cluster, "auth_client_required", "cephx")) < 0) ||
      (r = rados_conf_set (c->cluster, "client_mount_timeout", VM_RBD_TIMEOUT_S)) < 0 ||
      (r = rados_conf_set (c->cluster, "rados_mon_op_timeout", VM_RBD_TIMEOUT_S)) < 0 ||
      (r = rados_conf_set (c->cluster, "rados_osd_op_timeout", VM_RBD_TIMEOUT_S)) < 0) {
    vms_set_error (-r, "cannot configure the Ceph client: %s", strerror (-r));
    return -1;
  }
  if (key)
    explicit_bzero (key, strlen (key));
  if ((r = rados_connect (c->cluster)) < 0) {
    vms_set_error (-r, "cannot connect to Ceph (monitors %s): %s",
                   mons ? mons : "from the configuration", strerror (-r));
    return -1;
  }
  c->connected = 1;
  if ((r = rados_ioctx_create (c->cluster, c->pool, &c->io)) < 0) {
    c->io = NULL;
    vms_set_error (-r, "cannot open the Ceph pool \"%s\": %s", c->pool,
                   strerror (-r));
    return -1;
  }
  if (c->ns)
    rados_ioctx_set_namespace (c->io, c->ns);
  if (!image)
    return 0;
  r = snap ? rbd_open_read_only (c->io, c->name, &c->image, snap)
    : rbd_open (c->io, c->name, &c->image, NULL);
  if (r < 0) {
    c->image = NULL;
    vms_set_error (-r, "cannot open the RBD image %s%s%s: %s", name,
                   snap ? "@" : "", snap ? snap : "", strerror (-r));
    return -1;
  }
  return 0;
 oom:
  vms_set_error (ENOMEM, "out of memory");
  return -1;
}

static int
conn_open (struct rbd_conn *c, const struct vm_disk *d, const char *key_file,
           const char *snap)
{
  if (conn_open_1 (c, d, key_file, snap, 1) == 0)
    return 0;
  conn_close (c);
  return -1;
}

int
vm_rbd_pool_check (const struct vm_disk *d, const char *key_file)
{
  struct rbd_conn c;
  int r = conn_open_1 (&c, d, key_file, NULL, 0);

  conn_close (&c);
  return r;
}

/* The image's snapshots (rbd_snap_list; *n of them, end with
 * rbd_snap_list_end and free). */
static rbd_snap_info_t *
list_snaps (rbd_image_t image, int *n, const char *what)
{
  int max = 16;

  for (;;) {
    rbd_snap_info_t *s = calloc ((size_t) max, sizeof *s);
    int r;
    if (s == NULL) {
      vms_set_error (ENOMEM, "out of memory");
      return NULL;
    }
    r = rbd_snap_list (image, s, &max);
    if (r >= 0) {
      *n = r;
      return s;
    }
    free (s);
    if (r != -ERANGE) {
      vms_set_error (-r, "cannot list the snapshots of %s: %s", what, strerror (-r));
      return NULL;
    }
  }
}

static int
ours (const char *name)
{
  return name && strncmp (name, VMS_VM_CHECKPOINT_PREFIX,
                          strlen (VMS_VM_CHECKPOINT_PREFIX)) == 0;
}

struct diff_acc {
  struct vm_rbd_extent *e;
  size_t n, cap;
  int oom;
};

static int
diff_cb (uint64_t offset, size_t len, int exists, void *arg)
{
  struct diff_acc *a = arg;

  (void) exists;                /* a discarded extent changed too */
  if (a->n == a->cap) {
    size_t cap = a->cap ? a->cap * 2 : 64;
    struct vm_rbd_extent *p = realloc (a->e, cap * sizeof *p);
    if (p == NULL) {
      a->oom = 1;
      return -ENOMEM;
    }
    a->e = p;
    a->cap = cap;
  }
  a->e[a->n++] = (struct vm_rbd_extent) { .offset = offset, .length = len };
  return 0;
}

static int
cmp_extent (const void *x, const void *y)
{
  const struct vm_rbd_extent *a = x, *b = y;
  return a->offset < b->offset ? -1 : a->offset > b->offset;
}

int
vm_rbd_snapshot (const struct vm_disk *d, const char *key_file,
                 const char *snap, const char *prefer, struct vm_rbd_diff *res)
{
  struct rbd_conn c, at;
  rbd_snap_info_t *snaps = NULL;
  const char *name = d->source_name ? d->source_name : "";
  const char *base = NULL;
  uint64_t base_id = 0, features = 0, flags = 0, obj = 0;
  rbd_image_info_t info;
  struct diff_acc acc = { 0 };
  int n = 0, r, made = 0, whole;

  memset (res, 0, sizeof *res);
  memset (&at, 0, sizeof at);
  if (conn_open (&c, d, key_file, NULL) == -1)
    return -1;
  if ((r = rbd_snap_create (c.image, snap)) < 0) {
    vms_set_error (-r, "cannot take the RBD snapshot %s@%s: %s", name, snap,
                   strerror (-r));
    goto fail;
  }
  made = 1;
  if ((snaps = list_snaps (c.image, &n, name)) == NULL)
    goto fail;
  for (int i = 0; i < n; i++) {
    if (!ours (snaps[i].name) || strcmp (snaps[i].name, snap) == 0)
      continue;
    if (prefer && strcmp (snaps[i].name, prefer) == 0) {
      base = snaps[i].name;
      break;
    }
    if (base == NULL || snaps[i].id > base_id) {
      base = snaps[i].name;
      base_id = snaps[i].id;
    }
  }
  if (base == NULL) {
    res->full_reason = strdup ("the image holds no earlier vmshadow snapshot "
                               "to diff from (its first backup while the VM "
                               "was stopped, or the last one was made while "
                               "it ran)");
    if (res->full_reason == NULL)
      goto oom;
  }
  else if ((res->base = strdup (base)) == NULL)
    goto oom;
  /* The diff from base to snap, read at snap. */
  if (conn_open (&at, d, key_file, snap) == -1)
    goto fail;
  if ((r = rbd_stat (at.image, &info, sizeof info)) < 0 ||
      (r = rbd_get_features (at.image, &features)) < 0 ||
      (r = rbd_get_flags (at.image, &flags)) < 0) {
    vms_set_error (-r, "cannot read the size and features of %s@%s: %s", name,
                   snap, strerror (-r));
    goto fail;
  }
  res->size = info.size;
  obj = info.obj_size;
  if (res->base) {
    whole = (features & RBD_FEATURE_FAST_DIFF) && (features & RBD_FEATURE_OBJECT_MAP) &&
      !(flags & (RBD_FLAG_FAST_DIFF_INVALID | RBD_FLAG_OBJECT_MAP_INVALID));
    if (whole)
      res->how = vms_strdup_printf ("fast-diff, whole objects of %" PRIu64 " KiB",
                                    obj / 1024);
    else
      res->how = vms_strdup_printf ("exact diff (%s)",
                                    !(features & RBD_FEATURE_FAST_DIFF)
                                    ? "the image has no fast-diff"
                                    : !(features & RBD_FEATURE_OBJECT_MAP)
                                    ? "the image has no object map"
                                    : "its object map is flagged invalid");
    if (res->how == NULL)
      goto oom;
    r = rbd_diff_iterate2 (at.image, res->base, 0, info.size, 1, (uint8_t) whole,
                           diff_cb, &acc);
    if (r < 0 || acc.oom) {
      vms_set_error (acc.oom ? ENOMEM : -r, "cannot diff %s from snapshot %s "
                     "to %s: %s", name, res->base, snap,
                     acc.oom ? "out of memory" : strerror (-r));
      goto fail;
    }
    qsort (acc.e, acc.n, sizeof *acc.e, cmp_extent);
    res->nr_extents = vm_rbd_merge_extents (acc.e, acc.n);
    res->extents = acc.e;
    acc.e = NULL;
    vms_debug ("vm writer: %s: %zu extents changed since %s (%s)", name,
               res->nr_extents, res->base, res->how);
  }
  if (snaps) {
    rbd_snap_list_end (snaps);
    free (snaps);
  }
  conn_close (&at);
  conn_close (&c);
  return 0;

 oom:
  vms_set_error (ENOMEM, "out of memory");
 fail:
  free (acc.e);
  if (snaps) {
    rbd_snap_list_end (snaps);
    free (snaps);
  }
  conn_close (&at);
  if (made && (r = rbd_snap_remove (c.image, snap)) < 0) {
    CLEANUP_FREE char *msg = strdup (vms_get_error ());
    vms_set_error (vms_get_errno (), "%s; and its snapshot %s@%s could not "
                   "be removed: %s (rbd snap rm)", msg ? msg : "?", name, snap,
                   strerror (-r));
  }
  conn_close (&c);
  vm_rbd_diff_clear (res);
  return -1;
}

int
vm_rbd_remove_snapshots (const struct vm_disk *d, const char *key_file,
                         const char *keep, const char *only)
{
  struct rbd_conn c;
  rbd_snap_info_t *snaps;
  const char *name = d->source_name ? d->source_name : "";
  CLEANUP_FREE char *left = NULL;
  int n = 0, r, err = 0;

  if (conn_open (&c, d, key_file, NULL) == -1)
    return -1;
  if ((snaps = list_snaps (c.image, &n, name)) == NULL) {
    conn_close (&c);
    return -1;
  }
  for (int i = 0; i < n; i++) {
    const char *s = snaps[i].name;
    if (!ours (s) || (keep && strcmp (s, keep) == 0) ||
        (!keep && (only == NULL || strcmp (s, only) != 0)))
      continue;
    if ((r = rbd_snap_remove (c.image, s)) < 0) {
      char *m = vms_strdup_printf ("%s%s%s (%s)", left ? left : "", left ? ", " : "",
                                   s, strerror (-r));
      free (left);
      left = m;
      err = -r;
      continue;
    }
    vms_debug ("vm writer: removed the RBD snapshot %s@%s", name, s);
  }
  rbd_snap_list_end (snaps);
  free (snaps);
  conn_close (&c);
  if (err) {
    vms_set_error (err, "cannot remove the RBD snapshots %s of %s",
                   left ? left : "?", name);
    return -1;
  }
  return 0;
}

#else /* !HAVE_LIBRBD */

int
vm_rbd_pool_check (const struct vm_disk *d, const char *key_file)
{
  (void) d; (void) key_file;
  vms_set_error (ENOTSUP, "vmshadow was built without librbd");
  return -1;
}

int
vm_rbd_snapshot (const struct vm_disk *d, const char *key_file,
                 const char *snap, const char *prefer, struct vm_rbd_diff *r)
{
  (void) d; (void) key_file; (void) snap; (void) prefer;
  memset (r, 0, sizeof *r);
  vms_set_error (ENOTSUP, "vmshadow was built without librbd");
  return -1;
}

int
vm_rbd_remove_snapshots (const struct vm_disk *d, const char *key_file,
                         const char *keep, const char *only)
{
  (void) d; (void) key_file; (void) keep; (void) only;
  return 0;
}

#endif
