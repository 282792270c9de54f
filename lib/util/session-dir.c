/* Session directories (session-dir.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "fs-util.h"
#include "session-dir.h"

/* The start time of process pid (clock ticks after boot), or 0 if there
 * is no such process. */
static unsigned long long
session_dir_start_time (pid_t pid)
{
  char path[64], buf[1024];
  CLEANUP_CLOSE int fd = -1;
  ssize_t n;

  snprintf (path, sizeof path, "/proc/%d/stat", (int) pid);
  fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd == -1 || (n = read (fd, buf, sizeof buf - 1)) <= 0)
    return 0;
  buf[n] = '\0';
  /* Field 2 is "(comm)", which may hold spaces and parentheses: count the
   * fields after its last ')'. Field 22 is the start time. */
  char *p = strrchr (buf, ')');
  if (p == NULL)
    return 0;
  for (int field = 2; field < 22 && p; field++)
    p = strchr (p + 1, ' ');
  return p ? strtoull (p + 1, NULL, 10) : 0;
}

static int
session_dir_write_owner (int fd)
{
  char text[64];
  int n = snprintf (text, sizeof text, "%d %llu\n", (int) getpid (),
                    session_dir_start_time (getpid ()));
  CLEANUP_CLOSE int ofd = vms_open_beneath (fd, VMS_SESSION_OWNER_FILE,
                                            O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (ofd == -1 || write (ofd, text, (size_t) n) != n)
    return -1;
  return 0;
}

/* A directory is first made under a staging name that carries its owner,
 * ".vms-new-PID-START-XXXXXX", gets its owner file, and only then is
 * renamed to its own name: a run killed at any point leaves nothing whose
 * owner cannot be told (the kill may fall between mkdir and the owner
 * file). */
#define SESSION_DIR_STAGING ".vms-new-"

static void
session_dir_fill_random (char *tail)
{
  static const char letters[] =
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  unsigned char r[6];

  if (getrandom (r, sizeof r, 0) != sizeof r)
    memset (r, 0, sizeof r);    /* only a name: EEXIST makes us retry */
  for (size_t i = 0; i < 6; i++)
    tail[i] = letters[(r[i] + i * 7) % (sizeof letters - 1)];
}

int
vms_session_dir_make (int parentfd, const char *name, char **name_out)
{
  size_t len = strlen (name);
  int random_tail = len >= 6 && strcmp (name + len - 6, "XXXXXX") == 0;
  CLEANUP_FREE char *made = strdup (name);
  char staging[96];
  int n = snprintf (staging, sizeof staging, SESSION_DIR_STAGING "%d-%llu-XXXXXX",
                    (int) getpid (), session_dir_start_time (getpid ()));
  int tries;

  if (made == NULL)
    return -1;
  for (tries = 0; ; tries++) {
    session_dir_fill_random (staging + n - 6);
    if (mkdirat (parentfd, staging, 0700) == 0)
      break;
    if (errno != EEXIST || tries >= 100)
      return -1;
  }
  int fd = vms_open_beneath (parentfd, staging, O_RDONLY | O_DIRECTORY, 0);
  int ok = fd >= 0 && fchmod (fd, 0700) == 0 && session_dir_write_owner (fd) == 0;
  for (tries = 0; ok; tries++) {
    if (random_tail)
      session_dir_fill_random (made + len - 6);
    if (renameat2 (parentfd, staging, parentfd, made, RENAME_NOREPLACE) == 0)
      break;
    if (errno != EEXIST || !random_tail || tries >= 100)
      ok = 0;
  }
  if (!ok) {
    int e = errno;
    if (fd >= 0)
      vms_session_dir_remove (parentfd, staging, fd);
    errno = e;
    return -1;
  }
  if (name_out) {
    *name_out = made;
    made = NULL;
  }
  return fd;
}

int
vms_session_dir_remove (int parentfd, const char *name, int fd)
{
  int dfd = openat (fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *d = dfd >= 0 ? fdopendir (dfd) : NULL;
  struct dirent *e;
  int r = 0, saved = 0;

  if (d == NULL) {
    saved = errno;
    if (dfd >= 0)
      close (dfd);
    close (fd);
    errno = saved;
    return -1;
  }
  while ((e = readdir (d)) != NULL) {
    if (strcmp (e->d_name, ".") == 0 || strcmp (e->d_name, "..") == 0)
      continue;
    if (vms_rmtree_at (fd, e->d_name) == -1) {
      saved = errno;
      r = -1;
    }
  }
  closedir (d);
  close (fd);
  if (r == 0 && unlinkat (parentfd, name, AT_REMOVEDIR) == -1 &&
      errno != ENOENT) {
    saved = errno;
    r = -1;
  }
  errno = saved;
  return r;
}

/* 1 if directory name (fd) is a session directory whose owner is gone:
 * the owner named by its owner file, or else by its staging name. */
static int
session_dir_is_stale (const char *name, int fd)
{
  char buf[64] = "";
  CLEANUP_CLOSE int ofd = vms_open_beneath (fd, VMS_SESSION_OWNER_FILE,
                                            O_RDONLY, 0);
  const char *owner = buf;
  int pid;
  unsigned long long start;

  if (ofd == -1 || read (ofd, buf, sizeof buf - 1) <= 0) {
    if (strncmp (name, SESSION_DIR_STAGING, strlen (SESSION_DIR_STAGING)) != 0)
      return 0;                 /* no owner: not ours to judge */
    owner = name + strlen (SESSION_DIR_STAGING);
  }
  if (sscanf (owner, "%d%*[ -]%llu", &pid, &start) != 2 || pid <= 0)
    return 0;
  return session_dir_start_time (pid) != start || start == 0;
}

int
vms_session_dir_sweep (int parentfd, const char *prefix)
{
  int dfd = openat (parentfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *d = dfd >= 0 ? fdopendir (dfd) : NULL;
  struct dirent *e;
  size_t plen = strlen (prefix);
  int removed = 0;

  if (d == NULL) {
    int saved = errno;
    if (dfd >= 0)
      close (dfd);
    errno = saved;
    return -1;
  }
  while ((e = readdir (d)) != NULL) {
    struct stat st;
    if ((strncmp (e->d_name, prefix, plen) != 0 &&
         strncmp (e->d_name, SESSION_DIR_STAGING,
                  strlen (SESSION_DIR_STAGING)) != 0) ||
        strcmp (e->d_name, ".") == 0 || strcmp (e->d_name, "..") == 0)
      continue;
    int fd = vms_open_beneath (parentfd, e->d_name, O_RDONLY | O_DIRECTORY, 0);
    if (fd == -1)
      continue;                 /* not a directory, or a link: not ours */
    if (fstat (fd, &st) == -1 || st.st_uid != geteuid () ||
        !session_dir_is_stale (e->d_name, fd)) {
      close (fd);
      continue;
    }
    if (vms_session_dir_remove (parentfd, e->d_name, fd) == 0)
      removed++;
  }
  closedir (d);
  return removed;
}
