/* Filesystem helpers (fs-util.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "fs-util.h"
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
