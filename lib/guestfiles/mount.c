/* The view as a read-only FUSE mount (issue 16, R26), served by a child
 * process: libguestfs's mount_local turns each kernel request into a call
 * to the appliance, so the host kernel sees only FUSE, never a guest
 * filesystem. The child ends when the directory is unmounted, or unmounts
 * it itself on SIGTERM, SIGINT or SIGHUP; either way it then stops the
 * appliance and the exports. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <guestfs.h>

#include "cleanup.h"
#include "fs-util.h"
#include "vmshadow/error.h"

#include "guestfiles-internal.h"

/* The signal a child got, for the thread that unmounts. */
static int mount_signal_pipe[2] = { -1, -1 };
static char mount_dir[PATH_MAX];

static void
mount_on_signal (int sig)
{
  unsigned char b = (unsigned char) sig;
  int saved = errno;
  if (write (mount_signal_pipe[1], &b, 1) == -1) {
    /* nothing to do: a signal is already waiting */
  }
  errno = saved;
}

/* Waits for a stop signal, then unmounts the directory: the FUSE loop in
 * the main thread ends, and the child cleans up. */
static void *
mount_watch (void *arg)
{
  unsigned char b;
  ssize_t n;

  while ((n = read (mount_signal_pipe[0], &b, 1)) == -1 && errno == EINTR)
    ;
  if (n != 1)
    return NULL;
  if (umount2 (mount_dir, MNT_DETACH) == -1) {
    /* Not root: the FUSE helper may. */
    pid_t pid = fork ();
    if (pid == 0) {
      execlp ("fusermount3", "fusermount3", "-u", "-z", mount_dir, (char *) NULL);
      execlp ("fusermount", "fusermount", "-u", "-z", mount_dir, (char *) NULL);
      _exit (127);
    }
    if (pid > 0)
      waitpid (pid, NULL, 0);
  }
  return NULL;
}

/* Tell the parent: "ok\n", or the error. */
static void
mount_tell (int fd, const char *what)
{
  if (fd >= 0)
    (void) vms_write_all (fd, what, strlen (what));
}

static int
mount_child (const struct vms_guest_files_options *o, int report_fd)
{
  struct sigaction sa = { .sa_handler = mount_on_signal, .sa_flags = SA_RESTART };
  vms_guest_files *gf;
  pthread_t t;
  int devnull;

  if ((gf = vms_guest_files_open (o)) == NULL) {
    mount_tell (report_fd, vms_get_error ());
    return 1;
  }
  if (guestfs_mount_local (gf->g, mount_dir, GUESTFS_MOUNT_LOCAL_READONLY, 1,
                           -1) == -1) {
    guestfiles_fail (gf, mount_dir);
    mount_tell (report_fd, vms_get_error ());
    vms_guest_files_close (gf);
    return 1;
  }
  /* Handlers, not a blocked mask: QEMU and the servers we start later
   * inherit a mask but not handlers. */
  if (pipe2 (mount_signal_pipe, O_CLOEXEC) == -1 ||
      (errno = pthread_create (&t, NULL, mount_watch, NULL)) != 0) {
    vms_set_error (errno, "cannot watch for signals: %s", strerror (errno));
    mount_tell (report_fd, vms_get_error ());
    umount2 (mount_dir, MNT_DETACH);
    vms_guest_files_close (gf);
    return 1;
  }
  pthread_detach (t);
  sigemptyset (&sa.sa_mask);
  sigaction (SIGTERM, &sa, NULL);
  sigaction (SIGINT, &sa, NULL);
  sigaction (SIGHUP, &sa, NULL);

  /* Detached from the caller's terminal and files. */
  if ((devnull = open ("/dev/null", O_RDWR | O_CLOEXEC)) >= 0) {
    dup2 (devnull, 0);
    dup2 (devnull, 1);
    dup2 (devnull, 2);
    close (devnull);
  }
  mount_tell (report_fd, "ok\n");
  close (report_fd);

  guestfs_mount_local_run (gf->g);
  vms_guest_files_close (gf);
  return 0;
}

int
vms_guest_files_mount (const struct vms_guest_files_options *o, const char *dir,
                       pid_t *child)
{
  struct stat st;
  int p[2], status;
  char msg[8192];
  size_t len = 0;
  ssize_t n;
  pid_t pid;

  if (realpath (dir, mount_dir) == NULL) {
    vms_set_error (errno, "%s: %s", dir, strerror (errno));
    return -1;
  }
  if (stat (mount_dir, &st) == -1 || !S_ISDIR (st.st_mode)) {
    vms_set_error (ENOTDIR, "%s is not a directory", dir);
    return -1;
  }
  /* Bad input is said here, before anything starts. */
  if (vms_guest_files_check (o) == -1)
    return -1;
  if (pipe2 (p, O_CLOEXEC) == -1) {
    vms_set_error (errno, "pipe: %s", strerror (errno));
    return -1;
  }
  fflush (NULL);
  if ((pid = fork ()) == -1) {
    vms_set_error (errno, "fork: %s", strerror (errno));
    close (p[0]);
    close (p[1]);
    return -1;
  }
  if (pid == 0) {
    close (p[0]);
    setsid ();
    _exit (mount_child (o, p[1]));
  }
  close (p[1]);
  while (len < sizeof msg - 1 &&
         ((n = read (p[0], msg + len, sizeof msg - 1 - len)) > 0 ||
          (n == -1 && errno == EINTR)))
    if (n > 0)
      len += (size_t) n;
  close (p[0]);
  msg[len] = '\0';
  if (strcmp (msg, "ok\n") == 0) {
    *child = pid;
    return 0;
  }
  while (waitpid (pid, &status, 0) == -1 && errno == EINTR)
    ;
  vms_set_error (EIO, "%s", len ? msg : "the process serving the mount ended "
                 "before the mount was ready");
  return -1;
}
