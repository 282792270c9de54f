/* Filesystem helpers (fs-util.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "fs-util.h"
#include "log.h"
#include "vmshadow/error.h"

int
vms_mkdir_p (const char *path, mode_t mode)
{
  CLEANUP_FREE char *p = strdup (path);
  size_t len;

  if (p == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  len = strlen (p);
  for (size_t i = 1; i <= len; i++) {
    if (p[i] != '/' && p[i] != '\0')
      continue;
    p[i] = '\0';
    if (mkdir (p, mode) == -1 && errno != EEXIST) {
      vms_set_error (errno, "cannot create directory %s: %s", p,
                     strerror (errno));
      return -1;
    }
    if (i < len)
      p[i] = '/';
  }
  return 0;
}

/* ENOTDIR from an O_DIRECTORY|O_NOFOLLOW open of a symlink: say ELOOP, as
 * for a file, so that every refused link reads the same. */
static int
link_errno (int dirfd, const char *name, int e)
{
  struct stat st;

  if (e == ENOTDIR && fstatat (dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
      S_ISLNK (st.st_mode))
    return ELOOP;
  return e;
}

int
vms_open_beneath (int dirfd, const char *path, int flags, mode_t mode)
{
  char comp[NAME_MAX + 1];
  int cur = dirfd;              /* not ours to close while == dirfd */
  const char *p = path;

  for (;;) {
    const char *slash = strchr (p, '/');
    size_t n = slash ? (size_t) (slash - p) : strlen (p);
    if (n == 0 || n > NAME_MAX || (n == 2 && p[0] == '.' && p[1] == '.')) {
      if (cur != dirfd)
        close (cur);
      errno = EINVAL;
      return -1;
    }
    memcpy (comp, p, n);
    comp[n] = '\0';
    if (slash == NULL)
      break;
    int next = openat (cur, comp,
                       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int e = next == -1 ? link_errno (cur, comp, errno) : 0;
    if (cur != dirfd)
      close (cur);
    if (next == -1) {
      errno = e;
      return -1;
    }
    cur = next;
    p = slash + 1;
  }

  int fd = openat (cur, comp, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC,
                   mode);
  int e = fd == -1 ? link_errno (cur, comp, errno) : 0;
  struct stat st;
  if (fd >= 0 && fstat (fd, &st) == -1)
    e = errno;
  else if (fd >= 0 && !((flags & O_DIRECTORY) ? S_ISDIR (st.st_mode)
                        : S_ISREG (st.st_mode)))
    e = EINVAL;
  else if (fd >= 0 && !(flags & O_NONBLOCK)) {
    int fl = fcntl (fd, F_GETFL);
    if (fl == -1 || fcntl (fd, F_SETFL, fl & ~O_NONBLOCK) == -1)
      e = errno;
  }
  if (cur != dirfd)
    close (cur);
  if (e != 0) {
    if (fd >= 0)
      close (fd);
    errno = e;
    return -1;
  }
  return fd;
}

const char *
vms_fs_errstr (int errnum)
{
  switch (errnum) {
  case ENOSPC: return "no space left on device";
  case EDQUOT: return "disk quota exceeded";
  case EROFS: return "read-only file system";
  case EIO: return "input/output error";
  case EACCES: return "permission denied";
  case ENOENT: return "no such file or directory";
  case ELOOP: return "it is a symbolic link, which vmshadow does not follow "
      "here (remove it)";
  case EINVAL: return "it is not a regular file or directory (remove it)";
  default: return strerror (errnum);
  }
}

int
vms_mkdir_private_at (int dirfd, const char *name)
{
  if (mkdirat (dirfd, name, 0700) == -1 && errno != EEXIST)
    return -1;
  int fd = vms_open_beneath (dirfd, name, O_RDONLY | O_DIRECTORY, 0);
  if (fd >= 0 && fchmod (fd, 0700) == -1) {
    int e = errno;
    close (fd);
    errno = e;
    return -1;
  }
  return fd;
}

int
vms_rmtree_at (int parent, const char *name)
{
  struct stat st;

  if (fstatat (parent, name, &st, AT_SYMLINK_NOFOLLOW) == -1)
    return errno == ENOENT ? 0 : -1;
  if (!S_ISDIR (st.st_mode))
    return unlinkat (parent, name, 0) == -1 && errno != ENOENT ? -1 : 0;

  /* Swapped for a link since the fstatat: O_NOFOLLOW refuses it. */
  int fd = openat (parent, name,
                   O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd == -1)
    return -1;
  DIR *d = fdopendir (fd);
  if (d == NULL) {
    close (fd);
    return -1;
  }
  int r = 0;
  struct dirent *e;
  while ((e = readdir (d)) != NULL) {
    if (strcmp (e->d_name, ".") == 0 || strcmp (e->d_name, "..") == 0)
      continue;
    if (vms_rmtree_at (dirfd (d), e->d_name) == -1)
      r = -1;
  }
  int saved = errno;
  closedir (d);
  if (r == -1) {
    errno = saved;
    return -1;
  }
  if (unlinkat (parent, name, AT_REMOVEDIR) == -1 && errno != ENOENT)
    return -1;
  return 0;
}
int
vms_write_all (int fd, const void *buf, size_t len)
{
  const char *p = buf;

  while (len > 0) {
    ssize_t w = write (fd, p, len);
    if (w == -1) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    p += w;
    len -= (size_t) w;
  }
  return 0;
}

static void
atomic_file_release (struct vms_atomic_file *af)
{
  if (af->fd >= 0)
    close (af->fd);
  if (af->dirfd >= 0)
    close (af->dirfd);
  free (af->tmp_path);
  free (af->tmp);
  free (af->name);
  free (af->what);
  *af = (struct vms_atomic_file) { .fd = -1, .dirfd = -1 };
}

/* Create a temporary file ".NAME.vms-XXXXXX" (6 random letters or digits)
 * in af->dirfd; a taken name is retried. */
static int
atomic_file_create_temp (struct vms_atomic_file *af, mode_t mode)
{
  static const char letters[] =
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

  for (int attempt = 0; attempt < 100; attempt++) {
    unsigned char rnd[6];
    char *x = af->tmp + strlen (af->tmp) - 6;

    if (getrandom (rnd, sizeof rnd, 0) != (ssize_t) sizeof rnd)
      return -1;
    for (size_t i = 0; i < sizeof rnd; i++)
      x[i] = letters[rnd[i] % (sizeof letters - 1)];
    af->fd = openat (af->dirfd, af->tmp, O_WRONLY | O_CREAT | O_EXCL |
                     O_NOFOLLOW | O_CLOEXEC, mode);
    if (af->fd >= 0 || errno != EEXIST)
      return af->fd;
  }
  return -1;
}

int
vms_atomic_file_open (struct vms_atomic_file *af, int dirfd, const char *name,
                      mode_t mode)
{
  const char *slash = strrchr (name, '/');
  const char *base = slash ? slash + 1 : name;
  CLEANUP_FREE char *dir = NULL;
  int dirlen = slash ? (int) (slash - name + 1) : 0;

  *af = (struct vms_atomic_file) { .fd = -1, .dirfd = -1 };
  if (*base == '\0' || strcmp (base, ".") == 0 || strcmp (base, "..") == 0) {
    vms_set_error (EINVAL, "cannot write %s: not a file name", name);
    return -1;
  }
  if (slash == name)
    dir = strdup ("/");
  else if (slash)
    dir = strndup (name, (size_t) (slash - name));
  else
    dir = strdup (".");
  af->what = strdup (name);
  af->name = strdup (base);
  if (dir == NULL || af->what == NULL || af->name == NULL ||
      asprintf (&af->tmp, ".%s.vms-XXXXXX", base) == -1) {
    af->tmp = NULL;
    vms_set_error (ENOMEM, "out of memory");
    goto fail;
  }
  af->dirfd = openat (dirfd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (af->dirfd == -1) {
    vms_set_error (errno, "cannot write %s: cannot open its directory: %s",
                   name, strerror (errno));
    goto fail;
  }
  if (atomic_file_create_temp (af, mode) == -1) {
    vms_set_error (errno, "cannot write %s: cannot create a file beside it: "
                   "%s", name, strerror (errno));
    goto fail;
  }
  if (asprintf (&af->tmp_path, "%.*s%s", dirlen, name, af->tmp) == -1) {
    af->tmp_path = NULL;
    vms_set_error (ENOMEM, "out of memory");
    unlinkat (af->dirfd, af->tmp, 0);
    goto fail;
  }
  /* Exactly mode, whatever the umask. */
  if (fchmod (af->fd, mode) == -1) {
    vms_set_error (errno, "cannot write %s: cannot set mode %o: %s", name,
                   (unsigned) mode, strerror (errno));
    unlinkat (af->dirfd, af->tmp, 0);
    goto fail;
  }
  return 0;

 fail:
  atomic_file_release (af);
  return -1;
}

int
vms_rename_noreplace (int fromfd, const char *from, int tofd, const char *to)
{
  if (renameat2 (fromfd, from, tofd, to, RENAME_NOREPLACE) == 0)
    return 0;
  if (errno != EINVAL && errno != ENOSYS)
    return -1;
  if (linkat (fromfd, from, tofd, to, 0) == -1)
    return -1;
  unlinkat (fromfd, from, 0);
  return 0;
}

int
vms_atomic_file_commit (struct vms_atomic_file *af, int noreplace)
{
  int fd = af->fd;

  af->fd = -1;
  if (fsync (fd) == -1 || close (fd) == -1) {
    vms_set_error (errno, "cannot write %s: %s", af->what, strerror (errno));
    goto fail;
  }
  if ((noreplace ? vms_rename_noreplace (af->dirfd, af->tmp, af->dirfd, af->name)
       : renameat (af->dirfd, af->tmp, af->dirfd, af->name)) == -1) {
    vms_set_error (errno, "cannot write %s: renaming %s into place: %s",
                   af->what, af->tmp, strerror (errno));
    goto fail;
  }
  if (fsync (af->dirfd) == -1)
    /* The file is in place; only whether its name survives a crash is
     * unknown. */
    vms_warn ("%s: cannot sync its directory: %s", af->what, strerror (errno));
  atomic_file_release (af);
  return 0;

 fail:
  vms_atomic_file_discard (af);
  return -1;
}

void
vms_atomic_file_discard (struct vms_atomic_file *af)
{
  if (af->dirfd >= 0 && af->tmp)
    unlinkat (af->dirfd, af->tmp, 0);
  atomic_file_release (af);
}

int
vms_write_file_atomic (int dirfd, const char *name, const void *buf,
                       size_t len, mode_t mode)
{
  struct vms_atomic_file af;

  if (vms_atomic_file_open (&af, dirfd, name, mode) == -1)
    return -1;
  if (vms_write_all (af.fd, buf, len) == -1) {
    vms_set_error (errno, "cannot write %s: %s", name, strerror (errno));
    vms_atomic_file_discard (&af);
    return -1;
  }
  return vms_atomic_file_commit (&af, 0);
}

int
vms_hook_name_ignored (const char *name)
{
  static const char *const suffixes[] = {
    "~", ".dpkg-old", ".dpkg-new", ".dpkg-dist", ".dpkg-tmp", ".dpkg-bak",
    ".rpmsave", ".rpmnew", ".rpmorig", ".swp",
  };
  size_t len = strlen (name);

  if (name[0] == '.')
    return 1;
  for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
    size_t sl = strlen (suffixes[i]);
    if (len > sl && strcmp (name + len - sl, suffixes[i]) == 0)
      return 1;
  }
  return 0;
}
