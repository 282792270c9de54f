/* A disk of a backup as a read-only NBD export (issue 16): nbdkit with
 * nbdkit-vmshadow-plugin (plugins/nbdkit), on a Unix socket in a private
 * session directory, under the same guard as our qemu-nbd servers, so it
 * never outlives us. The selection is checked here first, so that a wrong
 * backup, VM or disk is said before any process starts. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "log.h"
#include "str.h"
#include "subprocess.h"
#include "vmshadow/datapath.h"
#include "vmshadow/error.h"

#include "datapath-internal.h"

struct vms_repo_export {
  struct nbd_server server;
  uint64_t size;
  off_t log_read;               /* bytes of the server's log passed on */
};

/* The plugin: $VMSHADOW_NBDKIT_PLUGIN (tests run the build tree's), else
 * where the build installs it. */
static const char *
repo_export_plugin (void)
{
  const char *p = getenv ("VMSHADOW_NBDKIT_PLUGIN");
  return p && *p ? p : VMS_NBDKIT_PLUGIN;
}

/* Check the selection; fills *size and a description for messages, and
 * for an encrypted repository *key_fd: the read end of a pipe holding its
 * unlocked key (vms_repo_key_handoff), for nbdkit's descriptor 3, never
 * its environment or argv (R28). */
static int
repo_export_check (const struct vms_repo_export_options *o, uint64_t *size,
                   char *what, size_t len, int *key_fd)
{
  vms_repo *repo = vms_repo_open (o->repo_dir, 0);
  vms_manifest *m = NULL;
  struct vms_stored_file f;
  int i = -1;

  *key_fd = -1;
  if (repo && vms_repo_key_fingerprint (repo) != NULL &&
      (*key_fd = vms_repo_key_handoff (repo)) == -1) {
    vms_repo_close (repo);
    return -1;
  }
  if (repo && (m = vms_manifest_open (repo, o->backup_id)) != NULL &&
      (i = vms_manifest_select_file (m, &o->select)) >= 0 &&
      vms_manifest_file (m, (size_t) i, &f, size) == 0)
    snprintf (what, len, "%s of backup %s", f.path, o->backup_id);
  else
    i = -1;
  vms_manifest_free (m);
  vms_repo_close (repo);
  if (i < 0 && *key_fd >= 0) {
    close (*key_fd);
    *key_fd = -1;
  }
  return i < 0 ? -1 : 0;
}

/* nbdkit's arguments for the plugin: repo= (absolute: nbdkit opens the
 * repository from another working directory), backup=, the selection
 * and keyfd= into params (malloc'd; at most REPO_EXPORT_PARAMS), the
 * cache size into cache_opt. Their count, or -1 with the error set. */
#define REPO_EXPORT_PARAMS 7
static int
repo_export_params (const struct vms_repo_export_options *o, int key_fd,
                    char *params[REPO_EXPORT_PARAMS], char cache_opt[40])
{
  CLEANUP_FREE char *repo_abs = realpath (o->repo_dir, NULL);
  const struct { const char *key, *value; } p[] = {
    { "repo", repo_abs }, { "backup", o->backup_id },
    { "vm", o->select.vm }, { "disk", o->select.disk },
    { "component", o->select.component }, { "file", o->select.file },
    { "keyfd", key_fd >= 0 ? "3" : NULL },
  };
  int np = 0;

  if (repo_abs == NULL) {
    vms_set_error (errno, "cannot resolve %s: %s", o->repo_dir,
                   strerror (errno));
    return -1;
  }
  _Static_assert (sizeof p / sizeof p[0] == REPO_EXPORT_PARAMS, "params");
  for (size_t i = 0; i < REPO_EXPORT_PARAMS; i++) {
    if (p[i].value == NULL)
      continue;
    params[np] = vms_strdup_printf ("%s=%s", p[i].key, p[i].value);
    if (params[np] == NULL) {
      vms_set_error (ENOMEM, "out of memory");
      return -1;
    }
    np++;
  }
  snprintf (cache_opt, 40, "cache=%" PRIu64,
            o->cache_bytes ? o->cache_bytes : (uint64_t) 64 << 20);
  return np;
}

/* The cleanup of an array of them (CLEANUP_FREE would free only the
 * first). */
static void
repo_export_params_free (char *(*params)[REPO_EXPORT_PARAMS])
{
  for (size_t i = 0; i < REPO_EXPORT_PARAMS; i++)
    free ((*params)[i]);
}
#define CLEANUP_PARAMS __attribute__ ((cleanup (repo_export_params_free)))

vms_repo_export *
vms_repo_export_open (const struct vms_repo_export_options *o)
{
  const char *plugin = repo_export_plugin ();
  char what[4200], cache_opt[40];
  CLEANUP_FREE char *pidfile_opt = NULL;
  CLEANUP_PARAMS char *params[REPO_EXPORT_PARAMS] = { NULL };
  CLEANUP_CLOSE int key_fd = -1;
  const char *argv[20];
  size_t n = 0;
  int np;
  vms_repo_export *e;

  if (o->repo_dir == NULL || o->backup_id == NULL) {
    vms_set_error (EINVAL, "vms_repo_export_open: no repository or backup given");
    return NULL;
  }
  if (*plugin == '\0') {
    vms_set_error (ENOTSUP, "this vmshadow was built without nbdkit-plugin-dev: "
                   "it cannot serve backups");
    return NULL;
  }
  if ((e = calloc (1, sizeof *e)) == NULL) {
    vms_set_error (errno, "out of memory");
    return NULL;
  }
  if (repo_export_check (o, &e->size, what, sizeof what, &key_fd) == -1) {
    free (e);
    return NULL;
  }
  if ((np = repo_export_params (o, key_fd, params, cache_opt)) == -1
      || nbd_server_prepare (&e->server, what) == -1) {
    free (e);
    return NULL;
  }
  if ((pidfile_opt = vms_strdup_printf ("--pidfile=%s/pid",
                                        e->server.dir)) == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    nbd_server_stop (&e->server);
    free (e);
    return NULL;
  }
  argv[n++] = "nbdkit";
  argv[n++] = "--foreground";
  argv[n++] = "--readonly";
  argv[n++] = "--unix";
  argv[n++] = e->server.socket;
  argv[n++] = pidfile_opt;
  argv[n++] = plugin;
  for (int i = 0; i < np; i++)
    argv[n++] = params[i];
  argv[n++] = cache_opt;
  argv[n] = NULL;
  e->server.pass_fd = key_fd >= 0 ? key_fd : 0;
  int r = nbd_server_run (&e->server, argv, "nbdkit");
  e->server.pass_fd = 0;
  if (r == -1) {
    free (e);
    return NULL;
  }
  return e;
}

const char *
vms_repo_export_uri (const vms_repo_export *e)
{
  return e->server.uri;
}

const char *
vms_repo_export_socket (const vms_repo_export *e)
{
  return e->server.socket;
}

uint64_t
vms_repo_export_size (const vms_repo_export *e)
{
  return e->size;
}

int
vms_repo_export_ended (vms_repo_export *e)
{
  return nbd_server_ended (&e->server);
}

void
vms_repo_export_messages (vms_repo_export *e, vms_repo_report_fn fn, void *opaque)
{
  char path[4096], buf[8192];
  CLEANUP_CLOSE int fd = -1;
  ssize_t n;

  if (e->server.dir == NULL)
    return;
  snprintf (path, sizeof path, "%s/log", e->server.dir);
  if ((fd = open (path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) == -1)
    return;
  /* Whole lines only: a partial last line waits for the next call. */
  while ((n = pread (fd, buf, sizeof buf - 1, e->log_read)) > 0) {
    char *end = memrchr (buf, '\n', (size_t) n);
    if (end == NULL) {
      if ((size_t) n < sizeof buf - 1)
        break;
      end = buf + n - 1;        /* a line longer than the buffer: cut */
    }
    *end = '\0';
    e->log_read += end - buf + 1;
    for (char *line = strtok (buf, "\n"); line; line = strtok (NULL, "\n"))
      if (*line)
        fn (opaque, line);
  }
}

void
vms_repo_export_close (vms_repo_export *e)
{
  if (e == NULL)
    return;
  if (nbd_server_stop (&e->server) == -1)
    vms_warn ("%s", vms_get_error ());
  free (e);
}

/* ---- detached servers (instant recovery, boot checks) ---- */

static void
detached_sleep_ms (long ms)
{
  struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
  while (nanosleep (&ts, &ts) == -1 && errno == EINTR)
    ;
}

int
vms_repo_export_detached_alive (int pid, const char *socket)
{
  char path[64], buf[8192];
  CLEANUP_CLOSE int fd = -1;
  ssize_t n;

  if (pid <= 0)
    return 0;
  snprintf (path, sizeof path, "/proc/%d/cmdline", pid);
  if ((fd = open (path, O_RDONLY | O_CLOEXEC)) == -1 ||
      (n = read (fd, buf, sizeof buf - 1)) <= 0)
    return 0;
  buf[n] = '\0';
  /* argv: nbdkit ... --unix SOCKET ... (NUL-separated) */
  if (strstr (buf, "nbdkit") == NULL)
    return 0;
  for (ssize_t i = 0; i < n; i += (ssize_t) strlen (buf + i) + 1)
    if (strcmp (buf + i, socket) == 0)
      return 1;
  return 0;
}

int
vms_repo_export_stop_detached (int pid, const char *socket)
{
  if (!vms_repo_export_detached_alive (pid, socket))
    return 0;
  kill (pid, SIGTERM);
  for (int i = 0; i < 100; i++) {
    /* Our child (same process that started it) or not: reap if we can. */
    waitpid (pid, NULL, WNOHANG);
    if (!vms_repo_export_detached_alive (pid, socket))
      return 0;
    detached_sleep_ms (100);
  }
  kill (pid, SIGKILL);
  waitpid (pid, NULL, 0);
  return 0;
}

static pid_t detached_run (const struct vms_repo_export_options *o,
                           const char *socket, const char *pidfile,
                           const char *logfile, const char *plugin,
                           const char *what, int key_fd);

int
vms_repo_export_start_detached (const struct vms_repo_export_options *o,
                                const char *socket, const char *pidfile,
                                const char *logfile, unsigned gid)
{
  const char *plugin = repo_export_plugin ();
  char what[4200];
  uint64_t size;
  pid_t pid;

  if (*plugin == '\0') {
    vms_set_error (ENOTSUP, "this vmshadow was built without nbdkit-plugin-dev: "
                   "it cannot serve backups");
    return -1;
  }
  CLEANUP_CLOSE int key_fd = -1;
  if (repo_export_check (o, &size, what, sizeof what, &key_fd) == -1)
    return -1;
  pid = detached_run (o, socket, pidfile, logfile, plugin, what, key_fd);
  if (pid == -1)
    return -1;
  if ((gid && chown (socket, 0, (gid_t) gid) == -1) ||
      chmod (socket, gid ? 0660 : 0600) == -1) {
    vms_set_error (errno, "cannot open socket %s to QEMU's group %u: %s",
                   socket, gid, strerror (errno));
    vms_repo_export_stop_detached (pid, socket);
    return -1;
  }
  vms_debug ("nbdkit pid %d serves %s at %s (detached)", (int) pid, what, socket);
  return (int) pid;
}

/* Start nbdkit in the background for vms_repo_export_start_detached:
 * its pid once it serves, or -1 with the error set. */
static pid_t
detached_run (const struct vms_repo_export_options *o, const char *socket,
              const char *pidfile, const char *logfile, const char *plugin,
              const char *what, int key_fd)
{
  char cache_opt[40];
  CLEANUP_FREE char *pidfile_opt = NULL;
  CLEANUP_PARAMS char *params[REPO_EXPORT_PARAMS] = { NULL };
  const char *argv[24];
  size_t n = 0;
  int np;
  pid_t pid;
  int64_t deadline;
  struct stat st;

  if ((np = repo_export_params (o, key_fd, params, cache_opt)) == -1)
    return -1;
  if ((pidfile_opt = vms_strdup_printf ("--pidfile=%s", pidfile)) == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  unlink (pidfile);
  /* Not --foreground: nbdkit's foreground process asks for SIGTERM when
   * its parent dies (PR_SET_PDEATHSIG), which is what we must not have.
   * In the background it forks once it listens, in a session of its own,
   * and writes its pid file. */
  argv[n++] = "nbdkit";
  argv[n++] = "--readonly";
  argv[n++] = "--log=stderr";
  argv[n++] = "--unix";
  argv[n++] = socket;
  argv[n++] = pidfile_opt;
  argv[n++] = plugin;
  for (int i = 0; i < np; i++)
    argv[n++] = params[i];
  argv[n++] = cache_opt;
  argv[n] = NULL;
  const struct vms_spawn_options so = {
    .argv = argv, .stdin_fd = -1, .stdout_fd = -1, .stderr_path = logfile,
    .new_session = 1, .pass_fd = key_fd >= 0 ? key_fd : 0,
  };
  int status;
  if ((pid = vms_spawn (&so)) == -1)
    return -1;
  if (waitpid (pid, &status, 0) == -1 || !WIFEXITED (status) ||
      WEXITSTATUS (status) != 0) {
    vms_set_error (EIO, "cannot serve %s: nbdkit %s %d (see %s)", what,
                   WIFEXITED (status) ? "exited with status" : "was killed by signal",
                   WIFEXITED (status) ? WEXITSTATUS (status) : WTERMSIG (status),
                   logfile);
    return -1;
  }
  pid = 0;
  deadline = vms_now_ms () + 30000;
  for (;;) {
    char buf[32] = "";
    CLEANUP_CLOSE int fd = open (pidfile, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    ssize_t got = fd >= 0 ? read (fd, buf, sizeof buf - 1) : -1;
    if (got > 0 && buf[got - 1] == '\n' && (pid = (pid_t) atoi (buf)) > 0 &&
        stat (socket, &st) == 0)
      break;
    if (vms_now_ms () >= deadline) {
      vms_set_error (ETIMEDOUT, "cannot serve %s: nbdkit did not start "
                     "serving within 30 s (see %s)", what, logfile);
      if (pid > 0)
        vms_repo_export_stop_detached (pid, socket);
      return -1;
    }
    detached_sleep_ms (5);
  }
  return pid;
}
