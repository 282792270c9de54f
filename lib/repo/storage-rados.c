/* The Ceph RADOS backend of the storage interface (storage.h; issue 12,
 * docs/repository-format.md "Version 2"), through librados: a repository
 * is rados:POOL[/NAMESPACE], an object per name in that pool's namespace.
 *
 * put is one write op of write_full (atomic: the object is whole or absent), an
 * exclusive put one write op of create(LIBRADOS_CREATE_EXCLUSIVE) and
 * write_full (-EEXIST when the name is taken); get is a ranged read;
 * list walks the namespace's objects and keeps those with the prefix.
 *
 * Issue 12 (RADOS within 1.5x of local): one synchronous write_full per
 * pack left the OSD idle while the client filled the next pack, and one
 * rados_read round trip per 128 KiB chunk made a restore wait on the
 * OSD 8 000 times a GiB. So:
 *  - A lazy put (STORAGE_PUT_LAZY: packs, index segments, a backup's
 *    files before its manifest) is asynchronous (rados_aio_write_op_operate;
 *    librados copies the bytes, so the caller's buffer is free when put
 *    returns), with at most $VMSHADOW_RADOS_WRITE_AHEAD MiB in flight
 *    (default 64; 0: every put synchronous, as before). Lazy puts keep
 *    their order where it matters: an object outside packs/ (a segment
 *    naming a pack) is put only once every earlier lazy put completed, so
 *    no other client ever sees a segment whose pack is not there; after a
 *    failed put it is never put. sync waits for every lazy put and fails,
 *    naming the object (storage_failed_name), if any failed since the last
 *    sync; a later lazy put fails at once. Any get, stat, put or delete of
 *    a name with a lazy put pending waits for it first, and a listing for
 *    them all, so this client sees its own puts as a local directory
 *    would.
 *  - A ranged read of a packs/ object (write-once: never rewritten under
 *    its name) that continues where an earlier read of that object ended
 *    is served from read-ahead windows of 1 MiB read with rados_aio_read,
 *    $VMSHADOW_RADOS_READ_AHEAD MiB ahead (default 16; 0: none). A read
 *    that does not continue one (a random read: serve, verify --sample)
 *    stays one ranged read. A window that failed or ends short sends the
 *    read to a plain ranged read, which reports the error as before.
 * The store's clock is the mtime of clock/<random> (put, stat'ed, deleted
 * at close). Objects in the namespace whose names are no valid object
 * names (storage_valid_name) are someone else's and are never listed.
 *
 * Client options: $VMSHADOW_RADOS_CONF (a ceph.conf; default librados's
 * search: $CEPH_CONF, /etc/ceph/ceph.conf, ...), $VMSHADOW_RADOS_ID (the
 * client id, default "admin"), $VMSHADOW_RADOS_KEYRING (default: what
 * ceph.conf says), $VMSHADOW_RADOS_OP_TIMEOUT (seconds an operation may
 * wait on the cluster before it fails with ETIMEDOUT, default 60).
 * docs/vmshadow.1 ENVIRONMENT.
 */
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
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
 * default); a pack stays well under it (30 MiB by default). */
#define RADOS_MAX_WRITE ((size_t) 90 << 20)

/* Read-ahead (above): windows of RA_WINDOW bytes, and the recent
 * sequential readers ("streams") they serve. A read within RA_NEAR of
 * where a stream of the same object got to continues it (two workers
 * reading neighbouring chunks reach a pack out of order). Windows of 1
 * MiB rather than larger ones: a reader waits for a whole window before
 * it gets the first byte of it, at every start of a pack. There are
 * room for two streams' windows ahead (2 * read-ahead / RA_WINDOW + 2
 * slots), so a window read ahead is not reused for another before it was
 * read from; memory: at most that many windows. */
#define RA_WINDOW ((size_t) 1 << 20)
#define RA_STREAMS 4
#define RA_NEAR ((uint64_t) 1 << 20)
/* Lazy puts in flight (bytes) and read-ahead (bytes), by default. */
#define WRITE_AHEAD_DEFAULT_MIB 64
#define READ_AHEAD_DEFAULT_MIB 16
/* Seconds an operation on a monitor or an OSD may take, by default. */
#define OP_TIMEOUT_DEFAULT_S 60

struct rados_store;

enum { RA_FREE, RA_READING, RA_READY, RA_FAILED };

struct ra_window {
  struct rados_store *rs;
  char name[STORAGE_NAME_MAX + 1];      /* "" when forgotten */
  uint64_t off;
  char *buf;                    /* RA_WINDOW bytes */
  rados_completion_t c;
  int state;
  int ret;                      /* bytes read, or -errno */
  unsigned users;               /* threads waiting on or copying from it */
  uint64_t stamp;               /* last use, for replacement */
};

struct ra_stream {
  char name[STORAGE_NAME_MAX + 1];
  uint64_t end;
  uint64_t stamp;
};

enum { PUT_QUEUED, PUT_FLYING };

/* A lazy put not yet known complete, in the order of the calls. */
struct lazy_put {
  struct lazy_put *next;
  struct rados_store *rs;
  char name[STORAGE_NAME_MAX + 1];
  int state;
  int barrier;                  /* outside packs/: after every earlier put */
  void *copy;                   /* queued: its bytes */
  size_t len;
  rados_write_op_t op;
  rados_completion_t c;
  int complete;                 /* set by the completion callback */
  int ret;
};

struct rados_store {
  struct storage s;
  rados_t cluster;
  rados_ioctx_t io;
  char clock_name[64];
  int clock_put;

  pthread_mutex_t lock;         /* everything below */
  pthread_cond_t cond;          /* broadcast by every completion */
  size_t write_ahead, read_ahead;       /* bytes; 0: off */
  struct lazy_put *head, *tail;
  size_t flying;                /* bytes of lazy puts in flight */
  int failed;                   /* errno of a lazy put failed since sync */
  char failed_name[STORAGE_NAME_MAX + 1];
  char reported[STORAGE_NAME_MAX + 1];  /* for failed_name (), "" none */
  struct ra_window *win;        /* nslots of them */
  size_t nslots;
  struct ra_stream streams[RA_STREAMS];
  uint64_t clock;
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
is_pack (const char *name)
{
  return strncmp (name, "packs/", 6) == 0;
}

/* ---- lazy puts ---- */

static void
lazy_done (rados_completion_t c, void *arg)
{
  struct lazy_put *p = arg;
  struct rados_store *rs = p->rs;

  pthread_mutex_lock (&rs->lock);
  p->ret = rados_aio_get_return_value (c);
  p->complete = 1;
  pthread_cond_broadcast (&rs->cond);
  pthread_mutex_unlock (&rs->lock);
}

static void
lazy_fail (struct rados_store *rs, const char *name, int err)
{
  if (!rs->failed) {
    rs->failed = err;
    snprintf (rs->failed_name, sizeof rs->failed_name, "%s", name);
  }
}

/* Send p (lock held): 0, or -1 with errno. */
static int
lazy_submit (struct rados_store *rs, struct lazy_put *p, const void *buf)
{
  int r;

  p->op = rados_create_write_op ();
  if (p->op == NULL) {
    errno = ENOMEM;
    return -1;
  }
  if ((r = rados_aio_create_completion2 (p, lazy_done, &p->c)) < 0) {
    rados_release_write_op (p->op);
    p->op = NULL;
    return fail_errno (r);
  }
  /* librados copies buf into the op here. */
  rados_write_op_write_full (p->op, buf, p->len);
  r = rados_aio_write_op_operate (p->op, rs->io, p->c, p->name, NULL,
                                  LIBRADOS_OPERATION_FULL_TRY);
  if (r < 0) {
    rados_aio_release (p->c);
    rados_release_write_op (p->op);
    p->c = NULL;
    p->op = NULL;
    return fail_errno (r);
  }
  p->state = PUT_FLYING;
  rs->flying += p->len;
  return 0;
}

static void
lazy_unlink (struct rados_store *rs, struct lazy_put *p)
{
  struct lazy_put **pp = &rs->head, *prev = NULL;

  while (*pp != p) {
    prev = *pp;
    pp = &(*pp)->next;
  }
  *pp = p->next;
  if (rs->tail == p)
    rs->tail = prev;
  if (p->state == PUT_FLYING)
    rs->flying -= p->len;
  if (p->c)
    rados_aio_release (p->c);
  if (p->op)
    rados_release_write_op (p->op);
  free (p->copy);
  free (p);
}

/* Reap what completed and send the queued puts whose turn came (lock
 * held). */
static void
lazy_progress (struct rados_store *rs)
{
  struct lazy_put *p, *next;

  for (p = rs->head; p; p = next) {
    next = p->next;
    if (p->state == PUT_FLYING && p->complete) {
      if (p->ret < 0)
        lazy_fail (rs, p->name, -p->ret);
      lazy_unlink (rs, p);
    }
  }
  /* A queued put goes once every earlier one is done: at the head. */
  while ((p = rs->head) && p->state == PUT_QUEUED) {
    if (rs->failed || lazy_submit (rs, p, p->copy) == -1) {
      if (!rs->failed)
        lazy_fail (rs, p->name, errno);
      lazy_unlink (rs, p);      /* never put after a failure */
      continue;
    }
    free (p->copy);
    p->copy = NULL;
  }
}

static int
lazy_pending (struct rados_store *rs, const char *name)
{
  for (struct lazy_put *p = rs->head; p; p = p->next)
    if (name == NULL || strcmp (p->name, name) == 0)
      return 1;
  return 0;
}

/* Wait until no lazy put of name (NULL: none at all) is pending (lock
 * held). */
static void
lazy_wait (struct rados_store *rs, const char *name)
{
  for (;;) {
    lazy_progress (rs);
    if (!lazy_pending (rs, name))
      return;
    pthread_cond_wait (&rs->cond, &rs->lock);
  }
}

/* The failure of an earlier lazy put, as the return of the call now
 * (lock held); clear: sync, which reports it once. */
static int
lazy_report (struct rados_store *rs, int clear)
{
  snprintf (rs->reported, sizeof rs->reported, "%s", rs->failed_name);
  errno = rs->failed;
  if (clear) {
    rs->failed = 0;
    rs->failed_name[0] = '\0';
  }
  return -1;
}

/* A lazy put (lock held; no put of name pending). */
static int
lazy_put (struct rados_store *rs, const char *name, const void *buf,
          size_t len)
{
  struct lazy_put *p;
  int barrier = !is_pack (name);

  for (;;) {
    lazy_progress (rs);
    if (rs->failed)
      return lazy_report (rs, 0);
    /* A pack waits for room (one always goes); a barrier put is small
     * and waits in the queue instead. */
    if (barrier || rs->flying == 0 || rs->flying + len <= rs->write_ahead)
      break;
    pthread_cond_wait (&rs->cond, &rs->lock);
  }
  p = calloc (1, sizeof *p);
  if (p == NULL) {
    errno = ENOMEM;
    return -1;
  }
  p->rs = rs;
  snprintf (p->name, sizeof p->name, "%s", name);
  p->len = len;
  p->barrier = barrier;
  p->state = PUT_QUEUED;
  if (barrier && rs->head) {
    p->copy = malloc (len ? len : 1);
    if (p->copy == NULL) {
      free (p);
      errno = ENOMEM;
      return -1;
    }
    memcpy (p->copy, buf, len);
  }
  else if (lazy_submit (rs, p, buf) == -1) {
    int e = errno;
    free (p);
    errno = e;                  /* this put's own failure */
    return -1;
  }
  if (rs->tail)
    rs->tail->next = p;
  else
    rs->head = p;
  rs->tail = p;
  return 0;
}

/* ---- read-ahead ---- */

static void
ra_done (rados_completion_t c, void *arg)
{
  struct ra_window *w = arg;
  struct rados_store *rs = w->rs;

  pthread_mutex_lock (&rs->lock);
  w->ret = rados_aio_get_return_value (c);
  w->state = w->ret >= 0 ? RA_READY : RA_FAILED;
  pthread_cond_broadcast (&rs->cond);
  pthread_mutex_unlock (&rs->lock);
}

/* Forget every window of name (lock held): a put or delete of it. */
static void
ra_forget (struct rados_store *rs, const char *name)
{
  for (size_t i = 0; i < rs->nslots; i++)
    if (strcmp (rs->win[i].name, name) == 0)
      rs->win[i].name[0] = '\0';
  for (size_t i = 0; i < RA_STREAMS; i++)
    if (strcmp (rs->streams[i].name, name) == 0)
      rs->streams[i].name[0] = '\0';
}

/* Whether a read of [off, off + len) continues a stream of name; it
 * becomes one (lock held). */
static int
ra_stream_note (struct rados_store *rs, const char *name, uint64_t off,
                size_t len)
{
  struct ra_stream *old = &rs->streams[0];

  for (size_t i = 0; i < RA_STREAMS; i++) {
    struct ra_stream *st = &rs->streams[i];
    if (strcmp (st->name, name) == 0 && off <= st->end + RA_NEAR &&
        off + len + RA_NEAR >= st->end) {
      if (off + len > st->end)
        st->end = off + len;
      st->stamp = ++rs->clock;
      return 1;
    }
    if (st->stamp < old->stamp)
      old = st;
  }
  snprintf (old->name, sizeof old->name, "%s", name);
  old->end = off + len;
  old->stamp = ++rs->clock;
  return 0;
}

static struct ra_window *
ra_find (struct rados_store *rs, const char *name, uint64_t off)
{
  for (size_t i = 0; i < rs->nslots; i++) {
    struct ra_window *w = &rs->win[i];
    if (w->state != RA_FREE && w->state != RA_FAILED && w->name[0] &&
        strcmp (w->name, name) == 0 && off >= w->off &&
        off < w->off + RA_WINDOW)
      return w;
  }
  return NULL;
}

/* Start reading a window of name at off (lock held): NULL when no slot is
 * free (all read or in use) or the read cannot start. */
static struct ra_window *
ra_start (struct rados_store *rs, const char *name, uint64_t off)
{
  struct ra_window *w = NULL;

  for (size_t i = 0; i < rs->nslots; i++) {
    struct ra_window *c = &rs->win[i];
    if (c->state == RA_READING || c->users)
      continue;
    if (w == NULL || c->state == RA_FREE ||
        (w->state != RA_FREE && c->stamp < w->stamp))
      w = c;
  }
  if (w == NULL)
    return NULL;
  if (w->c) {
    rados_aio_release (w->c);
    w->c = NULL;
  }
  w->state = RA_FREE;
  w->name[0] = '\0';
  if (w->buf == NULL && (w->buf = malloc (RA_WINDOW)) == NULL)
    return NULL;
  w->rs = rs;
  if (rados_aio_create_completion2 (w, ra_done, &w->c) < 0) {
    w->c = NULL;
    return NULL;
  }
  snprintf (w->name, sizeof w->name, "%s", name);
  w->off = off;
  w->state = RA_READING;
  w->stamp = ++rs->clock;
  if (rados_aio_read (rs->io, name, w->c, w->buf, RA_WINDOW, off) < 0) {
    rados_aio_release (w->c);
    w->c = NULL;
    w->state = RA_FREE;
    w->name[0] = '\0';
    return NULL;
  }
  return w;
}

/* The windows after w, up to the read-ahead (lock held). */
static void
ra_ahead (struct rados_store *rs, const struct ra_window *w)
{
  uint64_t next = w->off + RA_WINDOW;
  char name[STORAGE_NAME_MAX + 1];

  snprintf (name, sizeof name, "%s", w->name);
  for (size_t ahead = RA_WINDOW; ahead <= rs->read_ahead;
       ahead += RA_WINDOW) {
    struct ra_window *n = ra_find (rs, name, next);
    /* A window that ended short ends the object. */
    if (w->state == RA_READY && (size_t) w->ret < RA_WINDOW)
      return;
    if (n == NULL && (n = ra_start (rs, name, next)) == NULL)
      return;
    n->stamp = ++rs->clock;
    w = n;
    next = w->off + RA_WINDOW;
  }
}

/* Serve [off, off + len) of name from read-ahead windows as far as they
 * go (lock held, released while waiting and copying): the bytes served
 * from the start; the caller reads the rest. */
static size_t
ra_get (struct rados_store *rs, const char *name, uint64_t off, size_t len,
        char *buf)
{
  int seq = ra_stream_note (rs, name, off, len);
  size_t done = 0;

  while (done < len) {
    uint64_t pos = off + done;
    struct ra_window *w = ra_find (rs, name, pos);

    if (w == NULL && (!seq || (w = ra_start (rs, name, pos)) == NULL))
      break;
    /* In use: not replaced by the windows started after it. */
    w->users++;
    w->stamp = ++rs->clock;
    if (seq)
      ra_ahead (rs, w);
    while (w->state == RA_READING)
      pthread_cond_wait (&rs->cond, &rs->lock);
    if (w->state != RA_READY || pos >= w->off + (uint64_t) w->ret) {
      w->users--;
      break;                    /* the plain read says what is wrong */
    }
    size_t n = (size_t) (w->off + (uint64_t) w->ret - pos);
    if (n > len - done)
      n = len - done;
    pthread_mutex_unlock (&rs->lock);
    memcpy (buf + done, w->buf + (pos - w->off), n);
    pthread_mutex_lock (&rs->lock);
    w->users--;
    done += n;
  }
  return done;
}

/* ---- the operations ---- */

static int
put_now (struct rados_store *rs, const char *name, const void *buf,
         size_t len, unsigned flags)
{
  int r;

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
rados_put (struct storage *s, const char *name, const void *buf, size_t len,
           unsigned flags)
{
  struct rados_store *rs = rs_of (s);
  int r;

  if (len > RADOS_MAX_WRITE) {
    errno = EFBIG;
    return -1;
  }
  pthread_mutex_lock (&rs->lock);
  rs->reported[0] = '\0';
  lazy_wait (rs, name);         /* puts of one name stay in order */
  ra_forget (rs, name);
  if ((flags & STORAGE_PUT_LAZY) && !(flags & STORAGE_PUT_EXCLUSIVE) &&
      rs->write_ahead > 0) {
    r = lazy_put (rs, name, buf, len);
    pthread_mutex_unlock (&rs->lock);
    return r;
  }
  pthread_mutex_unlock (&rs->lock);
  return put_now (rs, name, buf, len, flags);
}

static int
rados_get (struct storage *s, const char *name, uint64_t offset, size_t len,
           void *buf)
{
  struct rados_store *rs = rs_of (s);
  size_t done = 0;

  pthread_mutex_lock (&rs->lock);
  lazy_wait (rs, name);
  if (rs->read_ahead > 0 && len > 0 && len <= RA_WINDOW && is_pack (name))
    done = ra_get (rs, name, offset, len, buf);
  pthread_mutex_unlock (&rs->lock);

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
  struct rados_store *rs = rs_of (s);
  uint64_t size;
  time_t mtime;

  pthread_mutex_lock (&rs->lock);
  lazy_wait (rs, name);
  pthread_mutex_unlock (&rs->lock);
  int r = rados_stat (rs->io, name, &size, &mtime);
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
  struct rados_store *rs = rs_of (s);
  rados_list_ctx_t ctx;
  const char *entry, *key, *nspace;
  size_t plen = strlen (prefix);

  /* Every put that returned is listed. */
  pthread_mutex_lock (&rs->lock);
  lazy_wait (rs, NULL);
  pthread_mutex_unlock (&rs->lock);
  int r = rados_nobjects_list_open (rs->io, &ctx);
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
  struct rados_store *rs = rs_of (s);

  pthread_mutex_lock (&rs->lock);
  lazy_wait (rs, name);
  ra_forget (rs, name);
  pthread_mutex_unlock (&rs->lock);
  /* A delete must go through on a full pool: it is how space comes back
   * (gc). */
  rados_write_op_t op = rados_create_write_op ();
  int r;
  if (op == NULL) {
    errno = ENOMEM;
    return -1;
  }
  rados_write_op_remove (op);
  r = rados_write_op_operate (op, rs->io, name, NULL,
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
  if (put_now (rs, rs->clock_name, "t", 1, 0) == -1)
    return -1;
  rs->clock_put = 1;
  int r;
  r = rados_stat (rs->io, rs->clock_name, &size, &mtime);
  if (r < 0)
    return fail_errno (r);
  *t = (int64_t) mtime;
  return 0;
}

static int
rados_sync (struct storage *s)
{
  struct rados_store *rs = rs_of (s);
  int r = 0;

  pthread_mutex_lock (&rs->lock);
  rs->reported[0] = '\0';
  lazy_wait (rs, NULL);
  if (rs->failed)
    r = lazy_report (rs, 1);
  pthread_mutex_unlock (&rs->lock);
  return r;
}

static int
rados_failed_name (struct storage *s, char *buf, size_t size)
{
  struct rados_store *rs = rs_of (s);
  int r = -1;

  pthread_mutex_lock (&rs->lock);
  if (rs->reported[0]) {
    snprintf (buf, size, "%s", rs->reported);
    r = 0;
  }
  pthread_mutex_unlock (&rs->lock);
  return r;
}

/* Free the store (the cluster handle shut down: no callback runs any
 * more). */
static void
rs_free (struct rados_store *rs)
{
  while (rs->head) {
    struct lazy_put *p = rs->head;
    rs->head = p->next;
    if (p->c)
      rados_aio_release (p->c);
    if (p->op)
      rados_release_write_op (p->op);
    free (p->copy);
    free (p);
  }
  for (size_t i = 0; i < rs->nslots; i++) {
    if (rs->win[i].c)
      rados_aio_release (rs->win[i].c);
    free (rs->win[i].buf);
  }
  free (rs->win);
  pthread_cond_destroy (&rs->cond);
  pthread_mutex_destroy (&rs->lock);
  free (rs);
}

static void
rados_close_ (struct storage *s)
{
  struct rados_store *rs = rs_of (s);

  /* Lazy puts not synced: what is in flight finishes (whole or absent);
   * what is queued is never put. */
  pthread_mutex_lock (&rs->lock);
  rs->failed = rs->failed ? rs->failed : ECANCELED;
  lazy_wait (rs, NULL);
  /* Read-ahead still in flight completes before the io context goes:
   * rados_aio_flush waits for writes only, and librados holds a
   * reference on the io context for writes only, so a read completing
   * after rados_ioctx_destroy runs on the freed context (the SIGSEGVs of
   * verify --deep that read-ahead was off for until session 8: verify
   * closes with windows still in flight beyond its last read) and into
   * a window rs_free freed. */
  for (;;) {
    int reading = 0;
    for (size_t i = 0; i < rs->nslots; i++)
      reading |= rs->win[i].state == RA_READING;
    if (!reading)
      break;
    pthread_cond_wait (&rs->cond, &rs->lock);
  }
  pthread_mutex_unlock (&rs->lock);
  if (rs->clock_put)
    rados_del (s, rs->clock_name);
  rados_aio_flush (rs->io);
  rados_ioctx_destroy (rs->io);
  rados_shutdown (rs->cluster);
  rs_free (rs);
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
  .sync = rados_sync,
  .close = rados_close_,
  .failed_name = rados_failed_name,
};

/* $name, a whole number of unit from min to max, into *n, else def: 0, or
 * -1 with the error set. */
static int
env_number (const char *name, const char *unit, unsigned long min,
            unsigned long max, unsigned long def, unsigned long *n)
{
  const char *v = getenv (name);
  char *end;

  *n = def;
  if (v == NULL || *v == '\0')
    return 0;
  errno = 0;
  *n = strtoul (v, &end, 10);
  if (errno || *end || *v < '0' || *v > '9' || *n < min || *n > max) {
    vms_set_error (EINVAL, "RADOS: %s=%s is not a number of %s from %lu to "
                   "%lu", name, v, unit, min, max);
    return -1;
  }
  return 0;
}

/* $name in MiB (0 to 1024) into *bytes, else def. */
static int
env_mib (const char *name, unsigned def, size_t *bytes)
{
  unsigned long n;

  if (env_number (name, "MiB", 0, 1024, def, &n) == -1)
    return -1;
  *bytes = (size_t) n << 20;
  return 0;
}

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

/* librados copies every pack it writes into a buffer of its own (the C
 * API has no zero-copy write), freed once sent. At glibc's default
 * thresholds each such copy of a 30 MiB pack is a fresh mmap, faulted in a
 * page at a time, zeroed and unmapped again, or heap memory trimmed back
 * to the kernel and faulted in again: a third of a RADOS backup's CPU in
 * vmshadow (perf; issue 12). Copies up to glibc's largest mmap threshold
 * (32 MiB) now come from the heap, and up to 256 MiB of freed heap stays
 * for the next ones. This is the whole process's malloc: done once, and
 * not where whoever runs us chose these thresholds themselves. */
static pthread_once_t heap_tuned = PTHREAD_ONCE_INIT;

static void
tune_heap_for_librados (void)
{
  const char *tunables = getenv ("GLIBC_TUNABLES");

  if (getenv ("MALLOC_MMAP_THRESHOLD_") == NULL &&
      (tunables == NULL || strstr (tunables, "mmap_threshold") == NULL))
    mallopt (M_MMAP_THRESHOLD, 32 << 20);
  if (getenv ("MALLOC_TRIM_THRESHOLD_") == NULL &&
      (tunables == NULL || strstr (tunables, "trim_threshold") == NULL))
    mallopt (M_TRIM_THRESHOLD, 256 << 20);
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
  unsigned long op_timeout;
  char timeout[32];
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
  pthread_once (&heap_tuned, tune_heap_for_librados);
  pthread_mutex_init (&rs->lock, NULL);
  pthread_cond_init (&rs->cond, NULL);
  if (env_mib ("VMSHADOW_RADOS_WRITE_AHEAD", WRITE_AHEAD_DEFAULT_MIB,
               &rs->write_ahead) == -1 ||
      env_mib ("VMSHADOW_RADOS_READ_AHEAD", READ_AHEAD_DEFAULT_MIB,
               &rs->read_ahead) == -1 ||
      env_number ("VMSHADOW_RADOS_OP_TIMEOUT", "seconds", 1, 3600,
                  OP_TIMEOUT_DEFAULT_S, &op_timeout) == -1)
    goto fail_free;
  if (rs->read_ahead > 0) {
    rs->nslots = 2 * (rs->read_ahead / RA_WINDOW) + 2;
    if ((rs->win = calloc (rs->nslots, sizeof *rs->win)) == NULL) {
      vms_set_error (ENOMEM, "out of memory");
      goto fail_free;
    }
  }
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
  /* Never wait for ever on an OSD: ops that cannot carry FULL_TRY (the
   * writer lock's) would otherwise wait as long as a pool stays full,
   * and a cluster out of reach must end a verify (ETIMEDOUT: stopped,
   * not damaged) rather than hang it. */
  snprintf (timeout, sizeof timeout, "%lu", op_timeout);
  rados_conf_set (rs->cluster, "rados_mon_op_timeout", timeout);
  rados_conf_set (rs->cluster, "rados_osd_op_timeout", timeout);
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
  rs_free (rs);
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
