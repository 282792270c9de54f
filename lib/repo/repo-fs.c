/* File helpers of the repository: exact permissions whatever the umask,
 * whole-file reads, directory fsync, and the name rule that keeps every
 * path inside the repository. Every file and directory is opened through
 * vms_open_beneath (lib/util/fs-util.h): relative to a directory fd of the
 * repository, following no symbolic link, never blocking on a FIFO.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "fs-util.h"
#include "repo-internal.h"

int
repo_valid_name (const char *name)
{
  size_t n = 0;

  if (name == NULL || name[0] == '\0' || name[0] == '.')
    return 0;
  for (const char *p = name; *p; p++, n++) {
    char c = *p;
    if (n >= MAX_BACKUP_ID_LEN)
      return 0;
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
          (c >= '0' && c <= '9') || c == '.' || c == '_' || c == ':' ||
          c == '-'))
      return 0;
  }
  return 1;
}

const char *
repo_errstr (int errnum)
{
  /* The sealing layer's words (storage-crypt.c, R28). */
  if (errnum == EKEYREJECTED)
    return "failed authentication (altered, cut short, or moved here from "
      "another object or backup)";
  if (errnum == ENOKEY)
    return "it is sealed, and the repository was opened without its key";
  return vms_fs_errstr (errnum);
}

int
repo_mkdirat (int dirfd, const char *name)
{
  if (mkdirat (dirfd, name, 0700) == -1) {
    if (errno != EEXIST)
      return -1;
    struct stat st;
    if (fstatat (dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == -1)
      return -1;
    if (!S_ISDIR (st.st_mode)) {
      errno = ENOTDIR;
      return -1;
    }
    return 0;
  }
  /* The umask may have taken bits away; never adds any. */
  return fchmodat (dirfd, name, 0700, 0);
}

int
repo_write_new_file (int dirfd, const char *name, const void *buf, size_t len)
{
  /* Its directory walked once, without following links: the create and
   * the unlink on failure are relative to the same directory fd. */
  const char *slash = strrchr (name, '/');
  CLEANUP_CLOSE int parent = -1;
  if (slash != NULL) {
    char dir[PATH_MAX];
    snprintf (dir, sizeof dir, "%.*s", (int) (slash - name), name);
    if ((parent = vms_open_beneath (dirfd, dir, O_RDONLY | O_DIRECTORY,
                                    0)) == -1)
      return -1;
    dirfd = parent;
    name = slash + 1;
  }
  int fd = vms_open_beneath (dirfd, name, O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (fd == -1)
    return -1;
  if (fchmod (fd, 0600) == -1 || vms_write_all (fd, buf, len) == -1 ||
      fsync (fd) == -1) {
    int e = errno;
    close (fd);
    unlinkat (dirfd, name, 0);
    errno = e;
    return -1;
  }
  if (close (fd) == -1) {
    int e = errno;
    unlinkat (dirfd, name, 0);
    errno = e;
    return -1;
  }
  return 0;
}

int
repo_read_file (int dirfd, const char *name, size_t max, char **buf,
                size_t *len_out)
{
  CLEANUP_CLOSE int fd = vms_open_beneath (dirfd, name, O_RDONLY, 0);
  struct stat st;
  size_t len, got = 0;
  char *b;

  *buf = NULL;
  *len_out = 0;
  if (fd == -1)
    return -1;
  if (fstat (fd, &st) == -1)
    return -1;
  if (st.st_size < 0 || (uint64_t) st.st_size > max) {
    *len_out = st.st_size < 0 ? 0 : (size_t) st.st_size;
    errno = EFBIG;
    return -1;
  }
  len = (size_t) st.st_size;
  b = malloc (len + 1);
  if (b == NULL)
    return -1;
  while (got < len) {
    ssize_t r = read (fd, b + got, len - got);
    if (r == -1) {
      if (errno == EINTR)
        continue;
      int e = errno;
      free (b);
      errno = e;
      return -1;
    }
    if (r == 0)
      break;                    /* shrank while reading: take what is there */
    got += (size_t) r;
  }
  b[got] = '\0';
  *buf = b;
  *len_out = got;
  return 0;
}

int
repo_fsync_dir (int dirfd, const char *name)
{
  CLEANUP_CLOSE int fd = vms_open_beneath (dirfd, name,
                                           O_RDONLY | O_DIRECTORY, 0);
  if (fd == -1 || fsync (fd) == -1)
    return -1;
  return 0;
}

pid_t
repo_temp_pid (const char *name)
{
  const char *p = name;
  char *end;

  if (strncmp (p, ".tmp-", 5) == 0)
    p += 5;
  if (*p < '1' || *p > '9')
    return 0;
  errno = 0;
  long v = strtol (p, &end, 10);
  if (errno || (*end != '.' && *end != '-') || v <= 0 || v > INT32_MAX)
    return 0;
  return (pid_t) v;
}
