/* The local directory backend of the storage interface (storage.h): an
 * object is a regular file, its name a path under the repository
 * directory. Every path is opened relative to the repository's directory
 * fd, one component at a time, never following a symbolic link
 * (vms_open_beneath), and a put is a temp file in tmp/ (O_CREAT|O_EXCL|
 * O_NOFOLLOW), written, fsynced, renamed into place (renameat2
 * RENAME_NOREPLACE for an exclusive put) and its directory fsynced, so an
 * object is there whole and durable or not at all (docs/security.md,
 * docs/repository-format.md "Version 2").
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "fs-util.h"
#include "repo-internal.h"
#include "storage.h"
#include "vmshadow/error.h"

/* Open packs, kept for the ranged reads of a restore (one chunk, one
 * read: without the cache each would walk packs/ab/ and open the file). */
#define FD_CACHE_SIZE 16
struct fd_cache_entry {
  char name[STORAGE_NAME_MAX + 1];
  int fd;                       /* -1: empty */
  struct stat st;
  unsigned refs;                /* readers using fd now */
  int stale;                    /* dropped from the cache: close at refs 0 */
  unsigned long used;
};

struct local {
  struct storage s;
  int dirfd;                    /* the repository directory (ours) */
  int tmpfd;                    /* tmp/, -1 when read-only */
  unsigned counter;             /* temp names of this process */
  pthread_mutex_t lock;         /* the cache */
  struct fd_cache_entry cache[FD_CACHE_SIZE];
  unsigned long tick;
};

#define LOCAL(s) ((struct local *) (s))

/* The first component of name is reserved to the backend (tmp/) or to the
 * repository's writer lock. */
static int
local_reserved (const char *name)
{
  size_t n = strcspn (name, "/");
  return (n == 3 && strncmp (name, "tmp", 3) == 0) ||
    (n == 4 && strncmp (name, "lock", 4) == 0);
}

/* The fd of the directory that holds name (made 0700 on the way when
 * create), with *base set to name's last component. -1 with errno. */
static int
local_parent (struct local *l, const char *name, int create, const char **base)
{
  const char *slash = strrchr (name, '/');
  char dir[STORAGE_NAME_MAX + 1];
  int fd;

  *base = slash ? slash + 1 : name;
  if (slash == NULL)
    return fcntl (l->dirfd, F_DUPFD_CLOEXEC, 0);
  snprintf (dir, sizeof dir, "%.*s", (int) (slash - name), name);
  if (!create)
    return vms_open_beneath (l->dirfd, dir, O_RDONLY | O_DIRECTORY, 0);
  fd = fcntl (l->dirfd, F_DUPFD_CLOEXEC, 0);
  for (char *p = dir, *next; fd >= 0 && p; p = next) {
    next = strchr (p, '/');
    if (next)
      *next++ = '\0';
    /* repo_mkdirat: exactly 0700; an existing non-directory (a link
     * included) is ENOTDIR, and vms_open_beneath follows no link. */
    int sub = repo_mkdirat (fd, p) == -1 ? -1
      : vms_open_beneath (fd, p, O_RDONLY | O_DIRECTORY, 0);
    int e = errno;
    close (fd);
    errno = e;
    fd = sub;
  }
  return fd;
}

/* Forget name in the cache (a put or delete of it). */
static void
cache_drop (struct local *l, const char *name)
{
  pthread_mutex_lock (&l->lock);
  for (size_t i = 0; i < FD_CACHE_SIZE; i++) {
    struct fd_cache_entry *e = &l->cache[i];
    if (e->fd >= 0 && !e->stale && strcmp (e->name, name) == 0) {
      if (e->refs == 0) {
        close (e->fd);
        e->fd = -1;
      }
      else
        e->stale = 1;
    }
  }
  pthread_mutex_unlock (&l->lock);
}

/* A put in pieces (storage_ops.writer_open): a temp file in tmp/ that
 * commit renames into place, as local_put does with one piece. */
struct local_writer {
  struct storage_writer w;
  struct local *l;
  int fd;
  unsigned flags;
  char tmp[64];
  char name[STORAGE_NAME_MAX + 1];
};

#define LWRITER(w) ((struct local_writer *) (w))

static int
lw_append (struct storage_writer *w, const void *buf, size_t len)
{
  struct local_writer *lw = LWRITER (w);

  if (vms_write_all (lw->fd, buf, len) == -1)
    return -1;
  /* A lazy put is made durable by the next sync: start writing it back
   * now, so that the sync (a backup's commit) does not wait for all of
   * it (issue 15). Advice only: errors show at the sync. */
  if (lw->flags & STORAGE_PUT_LAZY)
    sync_file_range (lw->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
  return 0;
}

static int
lw_read (struct storage_writer *w, uint64_t offset, size_t len, void *buf)
{
  uint8_t *p = buf;
  while (len > 0) {
    ssize_t n = pread (LWRITER (w)->fd, p, len, (off_t) offset);
    if (n == -1 && errno == EINTR)
      continue;
    if (n == -1)
      return -1;
    if (n == 0) {
      errno = EBADMSG;
      return -1;
    }
    p += n;
    len -= (size_t) n;
    offset += (uint64_t) n;
  }
  return 0;
}

static void
lw_abort (struct storage_writer *w)
{
  struct local_writer *lw = LWRITER (w);
  int e = errno;
  if (lw->fd >= 0)
    close (lw->fd);
  unlinkat (lw->l->tmpfd, lw->tmp, 0);
  free (lw);
  errno = e;
}

static int
lw_commit (struct storage_writer *w)
{
  struct local_writer *lw = LWRITER (w);
  struct local *l = lw->l;
  const char *base;
  int fd = lw->fd;

  lw->fd = -1;
  if (!(lw->flags & STORAGE_PUT_LAZY) && fsync (fd) == -1) {
    close (fd);
    goto fail;
  }
  if (close (fd) == -1)
    goto fail;
  for (int attempt = 0; ; attempt++) {
    CLEANUP_CLOSE int pfd = local_parent (l, lw->name, 1, &base);
    if (pfd == -1)
      goto fail;
    int r = lw->flags & STORAGE_PUT_EXCLUSIVE
      ? vms_rename_noreplace (l->tmpfd, lw->tmp, pfd, base)
      : renameat (l->tmpfd, lw->tmp, pfd, base);
    if (r == -1) {
      /* A delete of the directory's last object removed it meanwhile. */
      if (errno == ENOENT && attempt == 0)
        continue;
      goto fail;
    }
    if (!(lw->flags & STORAGE_PUT_LAZY) && fsync (pfd) == -1) {
      free (lw);                /* in place, its name maybe not durable */
      return -1;
    }
    free (lw);
    return 0;
  }
 fail:
  lw_abort (w);
  return -1;
}

static struct storage_writer *
local_writer_open (struct storage *s, const char *name, unsigned flags)
{
  struct local *l = LOCAL (s);
  struct local_writer *lw;

  if (local_reserved (name)) {
    errno = EINVAL;
    return NULL;
  }
  if (l->tmpfd < 0) {
    errno = EROFS;
    return NULL;
  }
  if ((lw = calloc (1, sizeof *lw)) == NULL)
    return NULL;
  lw->w = (struct storage_writer) {
    .append = lw_append, .read = lw_read, .commit = lw_commit,
    .abort = lw_abort,
  };
  lw->l = l;
  lw->flags = flags;
  snprintf (lw->name, sizeof lw->name, "%s", name);
  cache_drop (l, name);
  snprintf (lw->tmp, sizeof lw->tmp, "%d-%u.put", (int) getpid (),
            __atomic_fetch_add (&l->counter, 1, __ATOMIC_RELAXED));
  lw->fd = openat (l->tmpfd, lw->tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW |
                   O_CLOEXEC, 0600);
  if (lw->fd == -1) {
    int e = errno;
    free (lw);
    errno = e;
    return NULL;
  }
  if (fchmod (lw->fd, 0600) == -1) {
    lw_abort (&lw->w);
    return NULL;
  }
  return &lw->w;
}

static int
local_put (struct storage *s, const char *name, const void *buf, size_t len,
           unsigned flags)
{
  struct storage_writer *w = local_writer_open (s, name, flags);

  if (w == NULL)
    return -1;
  if (lw_append (w, buf, len) == -1) {
    lw_abort (w);
    return -1;
  }
  return lw_commit (w);
}

static int
local_open_object (struct local *l, const char *name, struct stat *st)
{
  if (local_reserved (name)) {
    errno = ENOENT;
    return -1;
  }
  int fd = vms_open_beneath (l->dirfd, name, O_RDONLY, 0);
  if (fd >= 0 && fstat (fd, st) == -1) {
    int e = errno;
    close (fd);
    errno = e;
    return -1;
  }
  return fd;
}

/* A cached fd of pack name (refs taken), or -1 after opening it (cached
 * when a slot is free of readers). */
static struct fd_cache_entry *
cache_get (struct local *l, const char *name)
{
  struct fd_cache_entry *e, *victim = NULL;
  struct stat st;

  pthread_mutex_lock (&l->lock);
  for (size_t i = 0; i < FD_CACHE_SIZE; i++) {
    e = &l->cache[i];
    if (e->fd >= 0 && !e->stale && strcmp (e->name, name) == 0) {
      e->refs++;
      e->used = ++l->tick;
      pthread_mutex_unlock (&l->lock);
      return e;
    }
  }
  pthread_mutex_unlock (&l->lock);
  int fd = local_open_object (l, name, &st);
  if (fd == -1)
    return NULL;
  pthread_mutex_lock (&l->lock);
  for (size_t i = 0; i < FD_CACHE_SIZE; i++) {
    e = &l->cache[i];
    if (e->fd < 0) {
      victim = e;
      break;
    }
    if (e->refs == 0 && (victim == NULL || e->used < victim->used))
      victim = e;
  }
  if (victim == NULL) {         /* every slot busy: this read only */
    pthread_mutex_unlock (&l->lock);
    close (fd);
    errno = EAGAIN;
    return NULL;
  }
  if (victim->fd >= 0)
    close (victim->fd);
  snprintf (victim->name, sizeof victim->name, "%s", name);
  victim->fd = fd;
  victim->st = st;
  victim->refs = 1;
  victim->stale = 0;
  victim->used = ++l->tick;
  pthread_mutex_unlock (&l->lock);
  return victim;
}

static void
cache_put (struct local *l, struct fd_cache_entry *e)
{
  pthread_mutex_lock (&l->lock);
  if (--e->refs == 0 && e->stale) {
    close (e->fd);
    e->fd = -1;
    e->stale = 0;
  }
  pthread_mutex_unlock (&l->lock);
}

static int
pread_range (int fd, const struct stat *st, uint64_t offset, size_t len,
             void *buf)
{
  uint8_t *p = buf;

  if (offset > (uint64_t) st->st_size || len > (uint64_t) st->st_size - offset ||
      offset > (uint64_t) INT64_MAX) {
    errno = EBADMSG;
    return -1;
  }
  while (len > 0) {
    ssize_t r = pread (fd, p, len, (off_t) offset);
    if (r == -1 && errno == EINTR)
      continue;
    if (r == -1)
      return -1;
    if (r == 0) {
      errno = EBADMSG;          /* shrank under us */
      return -1;
    }
    p += r;
    len -= (size_t) r;
    offset += (uint64_t) r;
  }
  return 0;
}

static int
local_get (struct storage *s, const char *name, uint64_t offset, size_t len,
           void *buf)
{
  struct local *l = LOCAL (s);
  struct stat st;

  if (strncmp (name, "packs/", 6) == 0) {
    struct fd_cache_entry *e = cache_get (l, name);
    if (e) {
      int r = pread_range (e->fd, &e->st, offset, len, buf);
      int err = errno;
      cache_put (l, e);
      errno = err;
      return r;
    }
    if (errno != EAGAIN)
      return -1;
  }
  CLEANUP_CLOSE int fd = local_open_object (l, name, &st);
  if (fd == -1)
    return -1;
  return pread_range (fd, &st, offset, len, buf);
}

static int
local_stat (struct storage *s, const char *name, struct storage_stat *out)
{
  struct stat st;
  CLEANUP_CLOSE int fd = local_open_object (LOCAL (s), name, &st);

  if (fd == -1)
    return -1;
  out->size = (uint64_t) st.st_size;
  out->mtime = (int64_t) st.st_mtime;
  return 0;
}

/* Walk the directory fd (whose objects are named dir + entry), calling fn
 * for every regular file whose name starts with prefix. Links and other
 * non-files are skipped, never followed. */
static int
local_walk (int fd, char *dir, size_t dlen, const char *prefix,
            storage_list_fn fn, void *opaque)
{
  int dfd = fcntl (fd, F_DUPFD_CLOEXEC, 0);
  DIR *d = dfd >= 0 ? fdopendir (dfd) : NULL;
  struct dirent *e;
  size_t plen = strlen (prefix);
  int r = 0;

  if (d == NULL) {
    if (dfd >= 0)
      close (dfd);
    return -1;
  }
  while (r == 0 && (e = readdir (d)) != NULL) {
    size_t n = strlen (e->d_name);
    struct stat st;
    if (dlen + n > STORAGE_NAME_MAX)
      continue;
    memcpy (dir + dlen, e->d_name, n + 1);
    if (!storage_valid_name (dir) || (dlen == 0 && local_reserved (dir)))
      continue;
    /* Only what could still match the prefix. */
    size_t m = dlen + n < plen ? dlen + n : plen;
    if (strncmp (dir, prefix, m) != 0)
      continue;
    if (fstatat (dirfd (d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == -1)
      continue;                 /* deleted meanwhile */
    if (S_ISREG (st.st_mode)) {
      if (dlen + n >= plen)
        r = fn (opaque, dir);
    }
    else if (S_ISDIR (st.st_mode)) {
      int sub = vms_open_beneath (dirfd (d), e->d_name,
                                  O_RDONLY | O_DIRECTORY, 0);
      if (sub == -1)
        continue;
      dir[dlen + n] = '/';
      dir[dlen + n + 1] = '\0';
      r = local_walk (sub, dir, dlen + n + 1, prefix, fn, opaque);
      close (sub);
    }
  }
  closedir (d);
  return r;
}

static int
local_list (struct storage *s, const char *prefix, storage_list_fn fn,
            void *opaque)
{
  struct local *l = LOCAL (s);
  char name[STORAGE_NAME_MAX + 2];
  const char *slash = strrchr (prefix, '/');
  size_t dlen = slash ? (size_t) (slash - prefix) + 1 : 0;

  /* Start at the deepest directory the prefix names. */
  memcpy (name, prefix, dlen);
  name[dlen] = '\0';
  if (dlen > 0 && local_reserved (name))
    return 0;
  int fd = dlen == 0 ? fcntl (l->dirfd, F_DUPFD_CLOEXEC, 0)
    : (name[dlen - 1] = '\0',
       vms_open_beneath (l->dirfd, name, O_RDONLY | O_DIRECTORY, 0));
  if (fd == -1)
    return errno == ENOENT ? 0 : -1;
  if (dlen > 0)
    name[dlen - 1] = '/';
  int r = local_walk (fd, name, dlen, prefix, fn, opaque);
  close (fd);
  return r;
}

static int
local_del (struct storage *s, const char *name)
{
  struct local *l = LOCAL (s);
  const char *base;

  if (local_reserved (name)) {
    errno = EINVAL;
    return -1;
  }
  cache_drop (l, name);
  CLEANUP_CLOSE int pfd = local_parent (l, name, 0, &base);
  if (pfd == -1)
    return errno == ENOENT ? 0 : -1;
  if (unlinkat (pfd, base, 0) == -1 && errno != ENOENT)
    return -1;
  /* The directories it leaves empty (backups/<id>/ after a prune): each
   * rmdir fails harmlessly while the directory holds anything. */
  char dir[STORAGE_NAME_MAX + 1];
  snprintf (dir, sizeof dir, "%s", name);
  for (char *slash = strrchr (dir, '/'); slash; slash = strrchr (dir, '/')) {
    *slash = '\0';
    if (unlinkat (l->dirfd, dir, AT_REMOVEDIR) == -1)
      break;
  }
  return 0;
}

static int
local_now (struct storage *s, int64_t *t)
{
  struct local *l = LOCAL (s);
  struct stat st;
  char tmp[64];

  /* The file system's clock, as the mtimes gc compares it with show it. */
  if (l->tmpfd >= 0) {
    snprintf (tmp, sizeof tmp, "%d-%u.clock", (int) getpid (),
              __atomic_fetch_add (&l->counter, 1, __ATOMIC_RELAXED));
    int fd = openat (l->tmpfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
                     O_CLOEXEC, 0600);
    if (fd >= 0) {
      int r = fstat (fd, &st);
      close (fd);
      unlinkat (l->tmpfd, tmp, 0);
      if (r == 0) {
        *t = (int64_t) st.st_mtime;
        return 0;
      }
    }
  }
  *t = (int64_t) time (NULL);
  return 0;
}

/* One flush of the file system for every lazy put: syncfs writes back
 * every dirty page and inode, renames included, and (Linux >= 5.8)
 * reports writeback errors. */
static int
local_sync (struct storage *s)
{
  return syncfs (LOCAL (s)->dirfd);
}

static void
local_close (struct storage *s)
{
  struct local *l = LOCAL (s);
  for (size_t i = 0; i < FD_CACHE_SIZE; i++)
    if (l->cache[i].fd >= 0)
      close (l->cache[i].fd);
  pthread_mutex_destroy (&l->lock);
  if (l->tmpfd >= 0)
    close (l->tmpfd);
  if (l->dirfd >= 0)
    close (l->dirfd);
  free (l);
}

static const struct storage_ops local_ops = {
  .size = sizeof (struct storage_ops),
  .name = "local",
  .put = local_put,
  .get = local_get,
  .stat = local_stat,
  .list = local_list,
  .del = local_del,
  .now = local_now,
  .sync = local_sync,
  .close = local_close,
  .writer_open = local_writer_open,
};

struct storage *
storage_local_open (int dirfd, const char *path, int writable)
{
  struct local *l = calloc (1, sizeof *l);

  if (l == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return NULL;
  }
  l->s.ops = &local_ops;
  l->tmpfd = -1;
  pthread_mutex_init (&l->lock, NULL);
  for (size_t i = 0; i < FD_CACHE_SIZE; i++)
    l->cache[i].fd = -1;
  l->dirfd = fcntl (dirfd, F_DUPFD_CLOEXEC, 0);
  if (l->dirfd == -1 ||
      (writable && (l->tmpfd = vms_mkdir_private_at (l->dirfd, "tmp")) == -1)) {
    vms_set_error (errno, "repository %s: cannot open %s: %s", path,
                   l->dirfd == -1 ? "its directory" : "tmp/",
                   repo_errstr (errno));
    local_close (&l->s);
    return NULL;
  }
  return &l->s;
}
