/* Reading the view (issue 16, R26): listing, a file's bytes to a file
 * descriptor, and copying files and trees out into a directory the caller
 * trusts, never following a link and never overwriting anything. Every
 * name and link target here is guest-controlled: it is checked before it
 * becomes a host path, and callers escape it before it reaches a
 * terminal. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <guestfs.h>

#include "cleanup.h"
#include "fs-util.h"
#include "text.h"
#include "vmshadow/error.h"

#include "guestfiles-internal.h"

/* How deep get descends (each level holds a directory fd). */
#define GET_MAX_DEPTH 256
/* Names per lstatnslist call: its reply must fit one message. */
#define LS_BATCH 256
/* A line escaped for a terminal is cut at this length. */
#define ESCAPE_LINE_MAX 65536

/* ---- a download into a file descriptor ---- */

/* libguestfs downloads into a file it opens by name: we give it the
 * write end of a pipe (/dev/fd/N) and copy from the read end to fd here,
 * so that fd is never reopened (no truncation of a redirected stdout, no
 * path lookup at all). */
struct pump {
  int in, out, escape;
  int err;                      /* first write error */
  uint64_t bytes;
  char line[ESCAPE_LINE_MAX + 1];
  size_t line_len;
};

static void
pump_write (struct pump *p, const char *buf, size_t len)
{
  if (p->err == 0 && vms_write_all (p->out, buf, len) == -1)
    p->err = errno ? errno : EIO;
}

/* One line (or a cut piece) for a terminal: escaped, NUL bytes too. */
static void
pump_flush_line (struct pump *p)
{
  size_t i = 0;
  p->line[p->line_len] = '\0';
  while (i < p->line_len) {
    if (p->line[i] == '\0') {
      pump_write (p, "\\x00", 4);
      i++;
      continue;
    }
    CLEANUP_FREE char *esc = vms_term_escape (p->line + i, VMS_ESCAPE_KEEP_NEWLINE);
    if (esc == NULL) {
      p->err = ENOMEM;
      break;
    }
    pump_write (p, esc, strlen (esc));
    i += strlen (p->line + i);
  }
  p->line_len = 0;
}

static void *
pump_run (void *arg)
{
  struct pump *p = arg;
  char buf[65536];
  ssize_t n;

  while ((n = read (p->in, buf, sizeof buf)) != 0) {
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (p->err == 0)
        p->err = errno;
      break;
    }
    p->bytes += (uint64_t) n;
    if (!p->escape) {
      pump_write (p, buf, (size_t) n);
      continue;
    }
    for (ssize_t i = 0; i < n; i++) {
      p->line[p->line_len++] = buf[i];
      if (buf[i] == '\n' || p->line_len == ESCAPE_LINE_MAX)
        pump_flush_line (p);
    }
  }
  if (p->escape && p->line_len)
    pump_flush_line (p);
  return NULL;
}

/* Download the guest file path (a regular file: checked by the caller)
 * into fd. -1 with the error set when libguestfs or the write fails. */
static int
guestfiles_download (vms_guest_files *gf, const char *path, int fd, int escape,
                     uint64_t *bytes)
{
  int pipefd[2], r;
  char dev[64];
  pthread_t t;
  struct pump *p;

  if ((p = calloc (1, sizeof *p)) == NULL) {
    vms_set_error (errno, "out of memory");
    return -1;
  }
  if (pipe2 (pipefd, O_CLOEXEC) == -1) {
    vms_set_error (errno, "pipe: %s", strerror (errno));
    free (p);
    return -1;
  }
  p->in = pipefd[0];
  p->out = fd;
  p->escape = escape;
  if ((errno = pthread_create (&t, NULL, pump_run, p)) != 0) {
    vms_set_error (errno, "cannot start a thread: %s", strerror (errno));
    close (pipefd[0]);
    close (pipefd[1]);
    free (p);
    return -1;
  }
  snprintf (dev, sizeof dev, "/dev/fd/%d", pipefd[1]);
  r = guestfs_download (gf->g, path, dev);
  if (r == -1)
    guestfiles_fail (gf, path);
  close (pipefd[1]);
  pthread_join (t, NULL);
  close (pipefd[0]);
  if (r == 0 && p->err) {
    vms_set_error (p->err, "writing %s out: %s", path, strerror (p->err));
    r = -1;
  }
  if (bytes)
    *bytes = p->bytes;
  free (p);
  return r;
}

/* The stat of path: lstat (follow 0) or stat. */
static struct guestfs_statns *
guestfiles_stat (vms_guest_files *gf, const char *path, int follow)
{
  struct guestfs_statns *st = follow ? guestfs_statns (gf->g, path)
    : guestfs_lstatns (gf->g, path);
  if (st == NULL)
    guestfiles_fail (gf, path);
  return st;
}

/* A valid path in a mounted filesystem (or "/" when root_ok). */
static int
guestfiles_path_ok (vms_guest_files *gf, const char *path, int root_ok)
{
  if (vms_guest_path_check (path) == -1)
    return -1;
  if (path[strspn (path, "/")] == '\0') {
    if (root_ok)
      return 0;
    vms_set_error (EINVAL, "%s: name a filesystem or a path in one", path);
    return -1;
  }
  return guestfiles_path_fs (gf, path) ? 0 : -1;
}

static const char *
file_type_word (uint32_t mode)
{
  switch (mode & S_IFMT) {
  case S_IFDIR: return "a directory";
  case S_IFLNK: return "a symbolic link";
  case S_IFCHR: return "a character device";
  case S_IFBLK: return "a block device";
  case S_IFIFO: return "a FIFO";
  case S_IFSOCK: return "a socket";
  default: return "not a regular file";
  }
}

/* ---- ls ---- */

static void
entry_from_stat (struct vms_guest_entry *e, const struct guestfs_statns *st)
{
  e->mode = (uint32_t) st->st_mode;
  e->size = st->st_size > 0 ? (uint64_t) st->st_size : 0;
  e->mtime = st->st_mtime_sec;
  e->uid = st->st_uid;
  e->gid = st->st_gid;
}

void
vms_guest_entries_free (struct vms_guest_entry *entries, size_t n)
{
  if (entries == NULL)
    return;
  for (size_t i = 0; i < n; i++) {
    free (entries[i].name);
    free (entries[i].link);
  }
  free (entries);
}

/* The stats of names in dir, filled into e[0..n). */
static int
guestfiles_ls_stats (vms_guest_files *gf, const char *dir, char **names,
                     struct vms_guest_entry *e, size_t n)
{
  for (size_t b = 0; b < n; b += LS_BATCH) {
    size_t k = n - b < LS_BATCH ? n - b : LS_BATCH;
    char *batch[LS_BATCH + 1];
    struct guestfs_statns_list *sl;
    memcpy (batch, names + b, k * sizeof *batch);
    batch[k] = NULL;
    if ((sl = guestfs_lstatnslist (gf->g, dir, batch)) == NULL)
      return guestfiles_fail (gf, dir);
    for (size_t i = 0; i < k && i < sl->len; i++)
      entry_from_stat (&e[b + i], &sl->val[i]);
    guestfs_free_statns_list (sl);
    /* The links' targets, in one call for the batch's links. */
    char *links[LS_BATCH + 1];
    size_t nl = 0, idx[LS_BATCH];
    for (size_t i = 0; i < k; i++)
      if (S_ISLNK (e[b + i].mode))
        idx[nl] = b + i, links[nl++] = names[b + i];
    links[nl] = NULL;
    if (nl) {
      CLEANUP_FREE_STRINGS char **t = guestfs_readlinklist (gf->g, dir, links);
      if (t == NULL)
        return guestfiles_fail (gf, dir);
      for (size_t i = 0; i < nl && t[i]; i++)
        e[idx[i]].link = strdup (t[i]);
    }
  }
  return 0;
}

ssize_t
vms_guest_files_ls (vms_guest_files *gf, const char *path,
                    struct vms_guest_entry **entries)
{
  struct vms_guest_entry *e = NULL;
  size_t n = 0;

  *entries = NULL;
  if (guestfiles_path_ok (gf, path, 1) == -1)
    return -1;

  if (path[strspn (path, "/")] == '\0') {
    /* The top: one directory per mounted filesystem. */
    CLEANUP_FREE char **names = calloc (gf->nr_fs + 1, sizeof *names);
    if (names == NULL || (e = calloc (gf->nr_fs + 1, sizeof *e)) == NULL) {
      vms_set_error (ENOMEM, "out of memory");
      return -1;
    }
    for (size_t i = 0; i < gf->nr_fs; i++)
      if (gf->fs[i].error == NULL) {
        names[n] = (char *) gf->fs[i].name;
        if ((e[n].name = strdup (gf->fs[i].name)) == NULL) {
          vms_guest_entries_free (e, n);
          vms_set_error (ENOMEM, "out of memory");
          return -1;
        }
        n++;
      }
    if (guestfiles_ls_stats (gf, "/", names, e, n) == -1) {
      vms_guest_entries_free (e, n);
      return -1;
    }
    *entries = e;
    return (ssize_t) n;
  }

  struct guestfs_statns *st = guestfiles_stat (gf, path, 0);
  if (st == NULL)
    return -1;
  if (!S_ISDIR (st->st_mode)) {
    const char *base = strrchr (path, '/') + 1;
    if ((e = calloc (1, sizeof *e)) == NULL || (e->name = strdup (base)) == NULL) {
      free (e);
      guestfs_free_statns (st);
      vms_set_error (ENOMEM, "out of memory");
      return -1;
    }
    entry_from_stat (e, st);
    guestfs_free_statns (st);
    if (S_ISLNK (e->mode) && (e->link = guestfs_readlink (gf->g, path)) == NULL) {
      vms_guest_entries_free (e, 1);
      return guestfiles_fail (gf, path);
    }
    *entries = e;
    return 1;
  }
  guestfs_free_statns (st);

  CLEANUP_FREE_STRINGS char **names = guestfs_ls (gf->g, path);
  if (names == NULL)
    return guestfiles_fail (gf, path);
  while (names[n])
    n++;
  if ((e = calloc (n + 1, sizeof *e)) == NULL) {
    vms_set_error (errno, "out of memory");
    return -1;
  }
  for (size_t i = 0; i < n; i++)
    if ((e[i].name = strdup (names[i])) == NULL) {
      vms_guest_entries_free (e, n);
      vms_set_error (ENOMEM, "out of memory");
      return -1;
    }
  if (guestfiles_ls_stats (gf, path, names, e, n) == -1) {
    vms_guest_entries_free (e, n);
    return -1;
  }
  *entries = e;
  return (ssize_t) n;
}

/* ---- cat ---- */

int
vms_guest_files_cat (vms_guest_files *gf, const char *path, int fd, int escape)
{
  struct guestfs_statns *st;
  int regular;

  if (guestfiles_path_ok (gf, path, 0) == -1 ||
      (st = guestfiles_stat (gf, path, 1)) == NULL)
    return -1;
  regular = S_ISREG (st->st_mode);
  if (!regular)
    vms_set_error (EINVAL, "%s is %s: cat reads regular files only", path,
                   file_type_word ((uint32_t) st->st_mode));
  guestfs_free_statns (st);
  if (!regular)
    return -1;
  return guestfiles_download (gf, path, fd, escape, NULL);
}

/* ---- get ---- */

struct get_ctx {
  vms_guest_files *gf;
  struct vms_guest_get_stats *stats;
  vms_guest_get_report_fn report;
  void *opaque;
};

static void
get_refuse (struct get_ctx *c, const char *path, const char *fmt, ...)
  __attribute__ ((format (printf, 3, 4)));

static void
get_refuse (struct get_ctx *c, const char *path, const char *fmt, ...)
{
  va_list ap;
  char why[4096];

  va_start (ap, fmt);
  vsnprintf (why, sizeof why, fmt, ap);
  va_end (ap);
  c->stats->refused++;
  if (c->report)
    c->report (c->opaque, path, why);
}

/* A name from a guest directory that can be a host name: not empty, not
 * "." or "..", no '/', at most NAME_MAX bytes. */
static int
get_name_ok (const char *name)
{
  size_t len = strlen (name);
  return len > 0 && len <= 255 && strchr (name, '/') == NULL &&
    strcmp (name, ".") != 0 && strcmp (name, "..") != 0;
}

/* The permission bits and times of st onto fd; set-id bits dropped (the
 * files are the caller's now, not the guest's users'). */
static void
get_set_attrs (int fd, const struct guestfs_statns *st)
{
  struct timespec ts[2] = {
    { .tv_sec = st->st_atime_sec, .tv_nsec = st->st_atime_nsec },
    { .tv_sec = st->st_mtime_sec, .tv_nsec = st->st_mtime_nsec },
  };
  (void) fchmod (fd, (mode_t) st->st_mode & 01777 & ~(mode_t) S_ISVTX);
  (void) futimens (fd, ts);
}

static int get_one (struct get_ctx *c, const char *path, int dirfd,
                    const char *name, const struct guestfs_statns *st, int depth);

static int
get_dir (struct get_ctx *c, const char *path, int dirfd, const char *name,
         const struct guestfs_statns *st, int depth)
{
  CLEANUP_CLOSE int fd = -1;
  CLEANUP_FREE_STRINGS char **names = NULL;
  size_t n = 0;

  if (depth >= GET_MAX_DEPTH) {
    get_refuse (c, path, "more than %d directories deep: not restored", GET_MAX_DEPTH);
    return 0;
  }
  if (mkdirat (dirfd, name, 0700) == -1) {
    get_refuse (c, path, "cannot make a directory for it: %s", strerror (errno));
    return 0;
  }
  if ((fd = openat (dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) == -1) {
    get_refuse (c, path, "cannot open the directory made for it: %s", strerror (errno));
    return 0;
  }
  c->stats->dirs++;
  if ((names = guestfs_ls (c->gf->g, path)) == NULL) {
    get_refuse (c, path, "cannot list it: %s", guestfs_last_error (c->gf->g));
    return 0;
  }
  while (names[n])
    n++;
  for (size_t b = 0; b < n; b += LS_BATCH) {
    size_t k = n - b < LS_BATCH ? n - b : LS_BATCH;
    char *batch[LS_BATCH + 1];
    struct guestfs_statns_list *sl;
    memcpy (batch, names + b, k * sizeof *batch);
    batch[k] = NULL;
    if ((sl = guestfs_lstatnslist (c->gf->g, path, batch)) == NULL) {
      get_refuse (c, path, "cannot read its entries: %s", guestfs_last_error (c->gf->g));
      return 0;
    }
    for (size_t i = 0; i < k && i < sl->len; i++) {
      CLEANUP_FREE char *child = NULL;
      if (asprintf (&child, "%s/%s", path, batch[i]) == -1) {
        guestfs_free_statns_list (sl);
        vms_set_error (ENOMEM, "out of memory");
        return -1;
      }
      if (get_one (c, child, fd, batch[i], &sl->val[i], depth + 1) == -1) {
        guestfs_free_statns_list (sl);
        return -1;
      }
    }
    guestfs_free_statns_list (sl);
  }
  get_set_attrs (fd, st);
  return 0;
}

static int
get_file (struct get_ctx *c, const char *path, int dirfd, const char *name,
          const struct guestfs_statns *st)
{
  CLEANUP_CLOSE int fd = -1;
  uint64_t bytes = 0;

  fd = openat (dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd == -1) {
    get_refuse (c, path, "cannot create it: %s", strerror (errno));
    return 0;
  }
  if (guestfiles_download (c->gf, path, fd, 0, &bytes) == -1 ||
      (st->st_size >= 0 && bytes != (uint64_t) st->st_size &&
       (vms_set_error (EIO, "%s: read %llu bytes of %lld", path,
                       (unsigned long long) bytes, (long long) st->st_size), 1))) {
    /* Never a partial file left looking like a restored one. */
    unlinkat (dirfd, name, 0);
    get_refuse (c, path, "not restored: %s", vms_get_error ());
    return 0;
  }
  get_set_attrs (fd, st);
  c->stats->files++;
  c->stats->bytes += bytes;
  return 0;
}

static int
get_one (struct get_ctx *c, const char *path, int dirfd, const char *name,
         const struct guestfs_statns *st, int depth)
{
  if (!get_name_ok (name)) {
    get_refuse (c, path, "its name cannot be a file name here: not restored");
    return 0;
  }
  switch (st->st_mode & S_IFMT) {
  case S_IFREG:
    return get_file (c, path, dirfd, name, st);
  case S_IFDIR:
    return get_dir (c, path, dirfd, name, st, depth);
  case S_IFLNK: {
    CLEANUP_FREE char *target = guestfs_readlink (c->gf->g, path);
    if (target == NULL)
      get_refuse (c, path, "cannot read the link: %s", guestfs_last_error (c->gf->g));
    else if (symlinkat (target, dirfd, name) == -1)
      get_refuse (c, path, "cannot make the link: %s", strerror (errno));
    else
      c->stats->links++;
    return 0;
  }
  default:
    get_refuse (c, path, "is %s: refused (only files, directories and links "
                "are restored)", file_type_word ((uint32_t) st->st_mode));
    return 0;
  }
}

int
vms_guest_files_get (vms_guest_files *gf, const char *path, int dirfd,
                     struct vms_guest_get_stats *stats,
                     vms_guest_get_report_fn report, void *opaque)
{
  struct get_ctx c = { .gf = gf, .stats = stats, .report = report, .opaque = opaque };
  CLEANUP_FREE char *clean = NULL;
  struct guestfs_statns *st;
  const char *name;
  struct stat hst;
  uint64_t before;
  int r;

  memset (stats, 0, sizeof *stats);
  if (guestfiles_path_ok (gf, path, 0) == -1)
    return -1;
  /* Without trailing slashes, so that the last component is the name. */
  if ((clean = strdup (path)) == NULL) {
    vms_set_error (errno, "out of memory");
    return -1;
  }
  for (size_t len = strlen (clean); len > 1 && clean[len - 1] == '/'; len--)
    clean[len - 1] = '\0';
  name = strrchr (clean, '/') + 1;
  if (fstatat (dirfd, name, &hst, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT) {
    vms_set_error (EEXIST, "%s: %s is there already in the target directory; "
                   "nothing is overwritten", path, name);
    return -1;
  }
  if ((st = guestfiles_stat (gf, clean, 0)) == NULL)
    return -1;
  before = stats->refused;
  r = get_one (&c, clean, dirfd, name, st, 0);
  guestfs_free_statns (st);
  if (r == -1)
    return -1;
  return stats->refused > before ? 1 : 0;
}
