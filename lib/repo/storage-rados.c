/* The Ceph RADOS backend of the storage interface (storage.h; issue 12,
 * docs/repository-format.md "Version 2"), through librados: a repository
 * is rados:POOL[/NAMESPACE], an object per name in that pool's namespace.
 *
 * put is one write op of write_full (atomic: the object is whole or absent), an
 * exclusive put one write op of create(LIBRADOS_CREATE_EXCLUSIVE) and
 * write_full (-EEXIST when the name is taken); get is a ranged read;
 * list walks the namespace's objects and keeps those with the prefix;
 * every put is durable when the OSDs acknowledge it, so there is no sync.
 * The store's clock is the mtime of clock/<random> (put, stat'ed, deleted
 * at close). Objects in the namespace whose names are no valid object
 * names (storage_valid_name) are someone else's and are never listed.
 *
 * Client options: $VMSHADOW_RADOS_CONF (a ceph.conf; default librados's
 * search: $CEPH_CONF, /etc/ceph/ceph.conf, ...), $VMSHADOW_RADOS_ID (the
 * client id, default "admin"), $VMSHADOW_RADOS_KEYRING (default: what
 * ceph.conf says). docs/vmshadow.1 ENVIRONMENT.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "storage.h"
#include "vmshadow/error.h"

#ifdef HAVE_LIBRADOS
#include <rados/librados.h>

/* RADOS refuses single writes over osd_max_write_size (90 MiB by
 * default); a pack stays well under it (docs: 32 MiB). */
#define RADOS_MAX_WRITE ((size_t) 90 << 20)

struct rados_store {
  struct storage s;
  rados_t cluster;
  rados_ioctx_t io;
  char clock_name[64];
  int clock_put;
};

static struct rados_store *
rs_of (struct storage *s)
{
  return (struct rados_store *) s;
}

static int
fail_errno (int r)
{
  errno = r < 0 ? -r : EIO;
  return -1;
}

static int
rados_put (struct storage *s, const char *name, const void *buf, size_t len,
           unsigned flags)
{
  struct rados_store *rs = rs_of (s);
  int r;

  if (len > RADOS_MAX_WRITE) {
    errno = EFBIG;
    return -1;
  }
  rados_write_op_t op = rados_create_write_op ();
  if (op == NULL) {
    errno = ENOMEM;
    return -1;
  }
  if (flags & STORAGE_PUT_EXCLUSIVE)
    rados_write_op_create (op, LIBRADOS_CREATE_EXCLUSIVE, NULL);
  rados_write_op_write_full (op, buf, len);
  /* FULL_TRY: on a full pool (quota or OSDs) fail with EDQUOT/ENOSPC
   * rather than wait, as librados does by default, until space comes. */
  r = rados_write_op_operate (op, rs->io, name, NULL,
                              LIBRADOS_OPERATION_FULL_TRY);
  rados_release_write_op (op);
  return r < 0 ? fail_errno (r) : 0;
}

static int
rados_get (struct storage *s, const char *name, uint64_t offset, size_t len,
           void *buf)
{
  struct rados_store *rs = rs_of (s);
  size_t done = 0;

  /* librados returns an int: read in pieces well under 2 GiB. */
  while (done < len) {
    size_t n = len - done > ((size_t) 64 << 20) ? (size_t) 64 << 20
      : len - done;
    int r = rados_read (rs->io, name, (char *) buf + done, n, offset + done);
    if (r < 0)
      return fail_errno (r);
    done += (size_t) r;
    if ((size_t) r < n) {
      errno = EBADMSG;          /* the object ends before the range */
      return -1;
    }
  }
  if (len == 0) {
    uint64_t size;
    time_t mtime;
    int r = rados_stat (rs->io, name, &size, &mtime);
    if (r < 0)
      return fail_errno (r);
    if (offset > size) {
      errno = EBADMSG;
      return -1;
    }
  }
  return 0;
}

static int
rados_stat_ (struct storage *s, const char *name, struct storage_stat *st)
{
  uint64_t size;
  time_t mtime;
  int r = rados_stat (rs_of (s)->io, name, &size, &mtime);
  if (r < 0)
    return fail_errno (r);
  st->size = size;
  st->mtime = (int64_t) mtime;
  return 0;
}

static int
rados_list_ (struct storage *s, const char *prefix, storage_list_fn fn,
             void *opaque)
{
  rados_list_ctx_t ctx;
  const char *entry, *key, *nspace;
  size_t plen = strlen (prefix);
  int r = rados_nobjects_list_open (rs_of (s)->io, &ctx);
  if (r < 0)
    return fail_errno (r);
  for (;;) {
    r = rados_nobjects_list_next (ctx, &entry, &key, &nspace);
    if (r == -ENOENT) {
      r = 0;
      break;
    }
    if (r < 0) {
      rados_nobjects_list_close (ctx);
      return fail_errno (r);
    }
    if (strncmp (entry, prefix, plen) != 0 || !storage_valid_name (entry))
      continue;
    if (strcmp (entry, "lock") == 0 ||
        strncmp (entry, "clock/", 6) == 0)
      continue;                 /* the backend's own */
    r = fn (opaque, entry);
    if (r != 0)
      break;
  }
  rados_nobjects_list_close (ctx);
  return r;
}

static int
rados_del (struct storage *s, const char *name)
{
  /* A delete must go through on a full pool: it is how space comes back
   * (gc). */
  rados_write_op_t op = rados_create_write_op ();
  int r;
  if (op == NULL) {
    errno = ENOMEM;
    return -1;
  }
  rados_write_op_remove (op);
  r = rados_write_op_operate (op, rs_of (s)->io, name, NULL,
                              LIBRADOS_OPERATION_FULL_FORCE);
  rados_release_write_op (op);
  return r < 0 && r != -ENOENT ? fail_errno (r) : 0;
}

static int
rados_now (struct storage *s, int64_t *t)
{
  struct rados_store *rs = rs_of (s);
  uint64_t size;
  time_t mtime;
  if (rados_put (s, rs->clock_name, "t", 1, 0) == -1)
    return -1;
  rs->clock_put = 1;
  int r;
  r = rados_stat (rs->io, rs->clock_name, &size, &mtime);
  if (r < 0)
    return fail_errno (r);
  *t = (int64_t) mtime;
  return 0;
}

static void
rados_close_ (struct storage *s)
{
  struct rados_store *rs = rs_of (s);
  if (rs->clock_put)
    rados_del (s, rs->clock_name);
  rados_ioctx_destroy (rs->io);
  rados_shutdown (rs->cluster);
  free (rs);
}

static const struct storage_ops rados_ops = {
  .size = sizeof (struct storage_ops),
  .name = "rados",
  .put = rados_put,
  .get = rados_get,
  .stat = rados_stat_,
  .list = rados_list_,
  .del = rados_del,
  .now = rados_now,
  .sync = NULL,                 /* every put is durable when it returns */
  .close = rados_close_,
};

static int
random_hex (char *out, size_t bytes)
{
  uint8_t b[32];
  if (bytes > sizeof b || getrandom (b, bytes, 0) != (ssize_t) bytes)
    return -1;
  for (size_t i = 0; i < bytes; i++)
    snprintf (out + 2 * i, 3, "%02x", b[i]);
  return 0;
}

struct storage *
storage_rados_open (const char *spec)
{
  const char *conf = getenv ("VMSHADOW_RADOS_CONF");
  const char *id = getenv ("VMSHADOW_RADOS_ID");
  const char *keyring = getenv ("VMSHADOW_RADOS_KEYRING");
  char pool[256], ns[256] = "";
  const char *slash = strchr (spec, '/');
  size_t plen = slash ? (size_t) (slash - spec) : strlen (spec);
  struct rados_store *rs;
  int r;

  if (plen == 0 || plen >= sizeof pool ||
      (slash && (slash[1] == '\0' || strlen (slash + 1) >= sizeof ns ||
                 strchr (slash + 1, '/')))) {
    vms_set_error (EINVAL, "rados:%s is not a RADOS repository: the form is "
                   "rados:POOL or rados:POOL/NAMESPACE", spec);
    return NULL;
  }
  for (const char *c = spec; *c; c++)
    if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
          (*c >= '0' && *c <= '9') || strchr ("._-/", *c))) {
      vms_set_error (EINVAL, "rados:%s: a pool or namespace name may hold "
                     "only letters, digits, '.', '_' and '-'", spec);
      return NULL;
    }
  memcpy (pool, spec, plen);
  pool[plen] = '\0';
  if (slash)
    snprintf (ns, sizeof ns, "%s", slash + 1);
  if (id == NULL || *id == '\0')
    id = "admin";

  rs = calloc (1, sizeof *rs);
  if (rs == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return NULL;
  }
  rs->s.ops = &rados_ops;
  if ((r = rados_create (&rs->cluster, id)) < 0) {
    vms_set_error (-r, "RADOS: cannot make a client %s: %s", id,
                   strerror (-r));
    goto fail_free;
  }
  if ((r = rados_conf_read_file (rs->cluster, conf && *conf ? conf : NULL)) < 0) {
    vms_set_error (-r, "RADOS: cannot read the Ceph configuration %s: %s "
                   "(set VMSHADOW_RADOS_CONF or CEPH_CONF)",
                   conf && *conf ? conf : "(default search: $CEPH_CONF, "
                   "/etc/ceph/ceph.conf)", strerror (-r));
    goto fail_shutdown;
  }
  if (keyring && *keyring &&
      (r = rados_conf_set (rs->cluster, "keyring", keyring)) < 0) {
    vms_set_error (-r, "RADOS: bad keyring %s: %s", keyring, strerror (-r));
    goto fail_shutdown;
  }
  /* Fail in seconds, not after librados's default of 300 s. */
  rados_conf_set (rs->cluster, "client_mount_timeout", "30");
  rados_conf_set (rs->cluster, "rados_mon_op_timeout", "60");
  /* Never wait for ever on an OSD: ops that cannot carry FULL_TRY (the
   * writer lock's) would otherwise wait as long as a pool stays full. */
  rados_conf_set (rs->cluster, "rados_osd_op_timeout", "60");
  if ((r = rados_connect (rs->cluster)) < 0) {
    vms_set_error (-r, "RADOS: cannot connect to the cluster as client.%s: "
                   "%s (check the monitors in the Ceph configuration and "
                   "the keyring)", id, strerror (-r));
    goto fail_shutdown;
  }
  if ((r = rados_ioctx_create (rs->cluster, pool, &rs->io)) < 0) {
    vms_set_error (-r, "RADOS: cannot open pool %s: %s", pool,
                   r == -ENOENT ? "no such pool" : strerror (-r));
    goto fail_shutdown;
  }
  rados_ioctx_set_namespace (rs->io, ns);
  strcpy (rs->clock_name, "clock/");
  if (random_hex (rs->clock_name + 6, 16) == -1) {
    vms_set_error (errno, "cannot get random bytes: %s", strerror (errno));
    rados_ioctx_destroy (rs->io);
    goto fail_shutdown;
  }
  return &rs->s;

 fail_shutdown:
  rados_shutdown (rs->cluster);
 fail_free:
  free (rs);
  return NULL;
}

#else /* !HAVE_LIBRADOS */

struct storage *
storage_rados_open (const char *spec)
{
  vms_set_error (ENOTSUP, "rados:%s: this vmshadow was built without "
                 "librados (install librados-dev and rebuild)", spec);
  return NULL;
}

#endif
