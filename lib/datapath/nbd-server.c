/* A private qemu-nbd server: the read-only NBD exports of image files
 * (vms_nbd_export_*, for disks of stopped VMs and shadow copies) and the
 * writable server through which extract writes qcow2 images.
 *
 * The server is started with vms_spawn under a guard shell that is our
 * child (stopped by the pid we started, and reaped) and that ends qemu-nbd
 * when a pipe from us closes, also when we are killed; its socket, pid
 * file and stderr log live in a private 0700 session directory
 * (lib/util/session-dir.h) removed on stop, and by the next server start
 * when we were killed. The
 * image is passed with --image-opts and an explicit driver: the format is
 * never probed and a file name is never parsed as a protocol ("nbd:...").
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "fs-util.h"
#include "log.h"
#include "session-dir.h"
#include "str.h"
#include "subprocess.h"
#include "vmshadow/datapath.h"
#include "vmshadow/error.h"
#include "vmshadow/provider.h"

#include "datapath-internal.h"

/* The session directories of the servers, in $TMPDIR or /tmp. */
#define NBD_SERVER_DIR_PREFIX "vmshadow-nbd-"

/* How long qemu-nbd may take to start serving, and to stop. */
#define NBD_SERVER_START_MS 30000
#define NBD_SERVER_STOP_MS 30000
#define NBD_SERVER_KILL_MS 5000

struct vms_nbd_export {
  struct nbd_server server;
};

unsigned
datapath_env_uint (const char *name, unsigned def, unsigned lo, unsigned hi)
{
  const char *s = getenv (name);
  char *end;
  unsigned long v;

  if (s == NULL || *s == '\0')
    return def;
  errno = 0;
  v = strtoul (s, &end, 10);
  if (errno != 0 || *end != '\0' || v < lo || v > hi) {
    vms_warn ("ignoring %s=%s: not a number from %u to %u", name, s, lo, hi);
    return def;
  }
  return (unsigned) v;
}

unsigned
datapath_workers (unsigned min)
{
  long n = sysconf (_SC_NPROCESSORS_ONLN);
  unsigned def = n < 1 ? 1 : n > 64 ? 64 : (unsigned) n;

  if (def < min)
    def = min;
  return datapath_env_uint ("VMSHADOW_WORKERS", def, 1, 64);
}

static void
nbd_server_sleep_ms (long ms)
{
  struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
  while (nanosleep (&ts, &ts) == -1 && errno == EINTR)
    ;
}

/* "driver=FMT,file.driver=file,file.filename=PATH" with commas in PATH
 * doubled (QEMU's option syntax). A host block device (an LV, a partition,
 * a loop device: issue 11) gets QEMU's host_device driver, which the file
 * driver refuses to stand in for.
 *
 * grow: a file that the writes make longer (an image being written from
 * empty, with O_DIRECT) gets QEMU's preallocate filter between the format
 * and the file: it extends the file ahead of the writes (128 MiB at a
 * time) and cuts it back to its data's end at close. ext4 takes the
 * inode's lock for a direct write past the end of the file and waits for
 * it, so without the filter the writers of a qcow2 extract queued behind
 * one another: 2.7-3.3 s instead of 2.0-2.3 s for the 4 GiB benchmark
 * disk (issue 15, docs/performance.md, session 15). */
static char *
nbd_server_image_opts (const char *image, const char *format, int grow)
{
  static const char prefix_fmt[] =
    "driver=%s,file.driver=%s%s,file.%sfilename=";
  struct stat st;
  int blk = stat (image, &st) == 0 && S_ISBLK (st.st_mode);
  const char *proto = blk ? "host_device" : "file";
  const char *filter = grow && !blk ? "preallocate,file.file.driver=" : "";
  const char *child = *filter ? "file." : "";
  size_t extra = 0, len, plen;
  char *s, *p;

  for (const char *c = image; *c; c++)
    extra += *c == ',';
  plen = (size_t) snprintf (NULL, 0, prefix_fmt, format, filter, proto, child);
  len = plen + strlen (image) + extra + 1;
  s = malloc (len);
  if (s == NULL) {
    vms_set_error (errno, "out of memory");
    return NULL;
  }
  snprintf (s, len, prefix_fmt, format, filter, proto, child);
  p = s + plen;
  for (const char *c = image; *c; c++) {
    *p++ = *c;
    if (*c == ',')
      *p++ = ',';
  }
  *p = '\0';
  return s;
}

/* The last lines qemu-nbd wrote to its log, joined by "; ", into buf. */
static const char *
nbd_server_log_tail (const struct nbd_server *s, char *buf, size_t len)
{
  char path[4096];
  char text[2048];
  CLEANUP_CLOSE int fd = -1;
  ssize_t n;
  off_t size;
  size_t o = 0;

  buf[0] = '\0';
  snprintf (path, sizeof path, "%s/log", s->dir);
  fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd == -1)
    return buf;
  size = lseek (fd, 0, SEEK_END);
  if (size < 0)
    return buf;
  n = pread (fd, text, sizeof text - 1,
             size > (off_t) sizeof text - 1 ? size - (off_t) (sizeof text - 1) : 0);
  if (n <= 0)
    return buf;
  text[n] = '\0';
  for (char *line = strtok (text, "\n"); line; line = strtok (NULL, "\n")) {
    if (*line == '\0')
      continue;
    for (char *c = line; *c; c++)
      if ((unsigned char) *c < 0x20)
        *c = '?';
    /* Keep the latest lines: restart when out of room. */
    if (o + strlen (line) + 3 >= len)
      o = 0;
    o += (size_t) snprintf (buf + o, len - o, "%s%s", o ? "; " : "", line);
  }
  return buf;
}

static void
nbd_server_remove_dir (struct nbd_server *s)
{
  static const char *const names[] = { "sock", "pid", "log",
                                       VMS_SESSION_OWNER_FILE };
  char path[4096];

  if (s->dir == NULL)
    return;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    snprintf (path, sizeof path, "%s/%s", s->dir, names[i]);
    unlink (path);
  }
  if (rmdir (s->dir) == -1)
    vms_warn ("cannot remove %s: %s", s->dir, strerror (errno));
}

static void
nbd_server_free (struct nbd_server *s)
{
  if (s->own_envp) {
    for (size_t i = 0; s->own_envp[i]; i++)
      if (strncmp (s->own_envp[i], "GLIBC_TUNABLES=", 15) == 0)
        free (s->own_envp[i]);
    free (s->own_envp);
  }
  free (s->dir);
  free (s->socket);
  free (s->uri);
  free (s->image);
  memset (s, 0, sizeof *s);
  s->guard_fd = -1;
}

/* Wait for the child to end, up to ms. Returns 1 and fills *status if it
 * did, 0 if it is still running. */
static int
nbd_server_wait (pid_t pid, int64_t ms, int *status)
{
  int64_t deadline = vms_now_ms () + ms;

  for (;;) {
    pid_t r = waitpid (pid, status, WNOHANG);
    if (r == pid || (r == -1 && errno == ECHILD))
      return 1;
    if (vms_now_ms () >= deadline)
      return 0;
    nbd_server_sleep_ms (10);
  }
}

/* The guard: run the server ("$@") in the background; a watcher reads our
 * pipe (stdin, moved to fd 4: an asynchronous list's stdin would be
 * /dev/null) and at its end of file sends the server SIGTERM, again every
 * 0.1 s while it is there: qemu-nbd drops a SIGTERM that arrives while it
 * starts (it marks itself running after installing its handler; seen
 * leaking 2 servers of 70 whose owner died within 10 ms). SIGKILL after
 * 60 s, beyond nbd_server_stop's own wait. The shell exits with the
 * server's status (143 after SIGTERM). Descriptor 3, where nbdkit may get
 * a key (pass_fd), is the server's alone: the shell closes its copy once
 * the server started. */
static const char nbd_server_guard[] =
  "exec 4<&0 </dev/null\n"
  "\"$@\" 4<&- &\n"
  "q=$!\n"
  "exec 3<&-\n"
  "( while read -r _; do :; done <&4\n"
  "  n=0\n"
  "  while kill -TERM $q 2>/dev/null && [ $n -lt 600 ]; do sleep 0.1; n=$((n + 1)); done\n"
  "  kill -KILL $q 2>/dev/null ) &\n"
  "w=$!\n"
  "exec 4<&-\n"
  "wait $q; s=$?\n"
  "kill $w 2>/dev/null\n"
  "exit $s\n";

static pid_t
nbd_server_spawn (struct nbd_server *s, const char *const *argv)
{
  char log_path[4096];
  pid_t pid;
  int guard[2];

  snprintf (log_path, sizeof log_path, "%s/log", s->dir);
  if (pipe2 (guard, O_CLOEXEC) == -1) {
    vms_set_error (errno, "cannot make a pipe: %s", strerror (errno));
    return -1;
  }
  struct vms_spawn_options o = {
    .argv = argv, .envp = s->own_envp, .pass_fd = s->pass_fd,
    .stdin_fd = guard[0], .stdout_fd = -1,
    .stderr_path = log_path,
  };
  pid = vms_spawn (&o);
  if (pid == -1)
    vms_set_error (vms_get_errno (), "cannot run qemu-nbd to serve %s: %s",
                   s->image, vms_get_error ());
  close (guard[0]);
  if (pid == -1)
    close (guard[1]);
  else
    s->guard_fd = guard[1];
  return pid;
}

/* $TMPDIR, or /tmp. */
static const char *
nbd_server_tmpdir (void)
{
  const char *tmp = getenv ("TMPDIR");
  return tmp == NULL || *tmp == '\0' ? "/tmp" : tmp;
}

/* Directories of servers whose owner was killed. */
static int
nbd_server_sweep_at (int tmpfd, const char *tmp)
{
  int swept = vms_session_dir_sweep (tmpfd, NBD_SERVER_DIR_PREFIX);
  if (swept > 0)
    vms_debug ("removed the directories of %d killed NBD server%s in %s",
               swept, swept == 1 ? "" : "s", tmp);
  return swept;
}

int
vms_nbd_sweep (void)
{
  const char *tmp = nbd_server_tmpdir ();
  CLEANUP_CLOSE int tmpfd = open (tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int swept;

  if (tmpfd == -1 || (swept = nbd_server_sweep_at (tmpfd, tmp)) == -1) {
    vms_set_error (errno, "cannot clean NBD server directories in %s: %s",
                   tmp, strerror (errno));
    return -1;
  }
  return swept;
}

int
nbd_server_prepare (struct nbd_server *s, const char *image)
{
  const char *tmp = nbd_server_tmpdir ();
  char tmpl[4096];
  CLEANUP_FREE char *made = NULL;
  CLEANUP_CLOSE int tmpfd = -1, dirfd = -1;

  memset (s, 0, sizeof *s);
  s->guard_fd = -1;
  snprintf (tmpl, sizeof tmpl, "%s/" NBD_SERVER_DIR_PREFIX "XXXXXX", tmp);
  /* The socket path must fit in sun_path. */
  if (strlen (tmpl) + sizeof "/sock" > sizeof ((struct sockaddr_un *) 0)->sun_path) {
    vms_set_error (ENAMETOOLONG, "cannot export %s: temporary directory %s "
                   "is too long for a Unix socket path; set TMPDIR to a "
                   "shorter one", image, tmp);
    return -1;
  }
  s->image = strdup (image);
  tmpfd = open (tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (tmpfd >= 0)
    nbd_server_sweep_at (tmpfd, tmp);
  if (s->image == NULL || tmpfd == -1 ||
      (dirfd = vms_session_dir_make (tmpfd, NBD_SERVER_DIR_PREFIX "XXXXXX",
                                     &made)) == -1) {
    vms_set_error (errno, "cannot export %s: cannot make a private directory "
                   "in %s: %s", image, tmp, vms_fs_errstr (errno));
    nbd_server_free (s);
    return -1;
  }
  snprintf (tmpl, sizeof tmpl, "%s/%s", tmp, made);
  if ((s->dir = strdup (tmpl)) == NULL
      || asprintf (&s->socket, "%s/sock", tmpl) == -1
      || asprintf (&s->uri, "nbd+unix:///?socket=%s", s->socket) == -1) {
    vms_set_error (ENOMEM, "out of memory");
    if (s->dir == NULL)
      vms_rmtree_at (tmpfd, made);
    else
      nbd_server_remove_dir (s);
    nbd_server_free (s);
    return -1;
  }
  return 0;
}

int
nbd_server_run (struct nbd_server *s, const char *const *program,
                const char *package)
{
  const char *argv[40];
  char pid_path[4096], errs[1024];
  size_t n = 0;
  int64_t deadline;
  int status;

  argv[n++] = "/bin/sh";
  argv[n++] = "-c";
  argv[n++] = nbd_server_guard;
  argv[n++] = "vmshadow-nbd-guard";
  for (size_t i = 0; program[i] && n < sizeof argv / sizeof argv[0] - 1; i++)
    argv[n++] = program[i];
  argv[n] = NULL;

  s->pid = nbd_server_spawn (s, argv);
  if (s->pid == -1) {
    s->pid = 0;
    goto fail;
  }

  /* The server writes its pid file once it listens. */
  snprintf (pid_path, sizeof pid_path, "%s/pid", s->dir);
  deadline = vms_now_ms () + NBD_SERVER_START_MS;
  for (;;) {
    struct stat st;
    if (stat (pid_path, &st) == 0 && st.st_size > 0
        && stat (s->socket, &st) == 0)
      break;
    if (waitpid (s->pid, &status, WNOHANG) == s->pid) {
      s->pid = 0;
      if (WIFEXITED (status) && WEXITSTATUS (status) == 127)
        vms_set_error (ENOENT, "cannot export %s: %s cannot be run (is "
                       "%s installed?): %s", s->image, program[0], package,
                       nbd_server_log_tail (s, errs, sizeof errs));
      else
        vms_set_error (EIO, "cannot export %s: %s %s %d: %s", s->image, program[0],
                       WIFEXITED (status) ? "exited with status" : "was killed by signal",
                       WIFEXITED (status) ? WEXITSTATUS (status) : WTERMSIG (status),
                       nbd_server_log_tail (s, errs, sizeof errs));
      goto fail;
    }
    if (vms_now_ms () >= deadline) {
      vms_set_error (ETIMEDOUT, "cannot export %s: %s did not start "
                     "serving within %d s: %s", s->image, program[0],
                     NBD_SERVER_START_MS / 1000,
                     nbd_server_log_tail (s, errs, sizeof errs));
      goto fail;
    }
    nbd_server_sleep_ms (5);
  }
  vms_debug ("%s pid %d serves %s at %s", program[0], (int) s->pid, s->image,
             s->uri);
  return 0;

 fail:
  if (s->pid > 0) {
    kill (-s->pid, SIGKILL);
    nbd_server_wait (s->pid, NBD_SERVER_KILL_MS, &status);
  }
  if (s->guard_fd >= 0)
    close (s->guard_fd);
  nbd_server_remove_dir (s);
  nbd_server_free (s);
  return -1;
}

/* glibc's malloc gives each of qemu-nbd's request buffers of 128 KiB and
 * more its own mmap, and unmaps it when the request ends: every byte
 * written through the server (extract to qcow2) was a fresh page fault
 * and each request a munmap with its TLB flush. Measured (issue 15,
 * docs/performance.md): extract of 2 GiB of data to qcow2, 544 000 minor
 * page faults and 5.6 s system time; with these, 4 900 and 3.8 s. The
 * buffers of requests up to 4 MiB (reads of a backup are 256 KiB at most,
 * writes of an extract 2 MiB) then come
 * from the heap and are reused, and up to 64 MiB of free heap is kept
 * rather than given back after each request. A setting of the caller's
 * own (in GLIBC_TUNABLES or glibc's older MALLOC_* variable) is left as
 * it is, key by key. */
static const struct nbd_server_tunable {
  const char *key, *value, *old_env;
  int writable_only;
} nbd_server_tunables[] = {
  { "glibc.malloc.mmap_threshold", "4194304", "MALLOC_MMAP_THRESHOLD_", 0 },
  { "glibc.malloc.trim_threshold", "67108864", "MALLOC_TRIM_THRESHOLD_", 0 },
  /* A server that extract writes a qcow2 image through gets requests of
   * 2 MiB (extract.c): with glibc's arenas per thread, qemu-nbd's resident
   * memory grew to 83–85 MiB writing the 4 GiB benchmark disk; in one
   * arena 36 MiB, as fast (issue 15, docs/performance.md). Any writable
   * server, so also extract-into's (not measured there). */
  { "glibc.malloc.arena_max", "1", "MALLOC_ARENA_MAX", 1 },
};

/* s->own_envp for qemu-nbd: ours, with GLIBC_TUNABLES holding the
 * caller's tunables and those of nbd_server_tunables the caller did not
 * set; left NULL (the environment as it is) when there is nothing to add. */
static int
nbd_server_qemu_env (struct nbd_server *s, int writable)
{
  extern char **environ;
  const char *theirs = getenv ("GLIBC_TUNABLES");
  CLEANUP_FREE char *ours = NULL;
  size_t n = 0, k = 0;

  for (size_t i = 0; i < sizeof nbd_server_tunables / sizeof nbd_server_tunables[0]; i++) {
    const struct nbd_server_tunable *t = &nbd_server_tunables[i];
    char *next;
    if ((t->writable_only && !writable) || getenv (t->old_env) != NULL ||
        (theirs && strstr (theirs, t->key) != NULL))
      continue;
    next = vms_strdup_printf ("%s%s%s=%s", ours ? ours : "", ours ? ":" : "",
                              t->key, t->value);
    if (next == NULL)
      goto oom;
    free (ours);
    ours = next;
  }
  if (ours == NULL)
    return 0;
  while (environ[n])
    n++;
  s->own_envp = calloc (n + 2, sizeof *s->own_envp);
  if (s->own_envp == NULL)
    goto oom;
  for (size_t i = 0; i < n; i++)
    if (strncmp (environ[i], "GLIBC_TUNABLES=", 15) != 0)
      s->own_envp[k++] = environ[i];
  s->own_envp[k] = vms_strdup_printf ("GLIBC_TUNABLES=%s%s%s",
                                      theirs ? theirs : "",
                                      theirs && *theirs ? ":" : "", ours);
  if (s->own_envp[k] == NULL)
    goto oom;
  return 0;
 oom:
  vms_set_error (ENOMEM, "out of memory");
  return -1;
}

/* A qemu-nbd command line being built, and the strings it points into. */
struct qemu_nbd_cmd {
  const char *argv[20];
  size_t n;
  char shared[32];
  char *socket, *pidfile, *extra[2];
};

static void
qemu_nbd_cmd_free (struct qemu_nbd_cmd *c)
{
  free (c->socket);
  free (c->pidfile);
  free (c->extra[0]);
  free (c->extra[1]);
}

/* Undo qemu_nbd_cmd_begin and what followed; the error is already set. */
static int
qemu_nbd_cmd_fail (struct nbd_server *s, struct qemu_nbd_cmd *c)
{
  qemu_nbd_cmd_free (c);
  nbd_server_remove_dir (s);
  nbd_server_free (s);
  return -1;
}

/* Make s's directory and environment for exporting name, and begin c
 * with what every export says: read-only unless writable, persistent,
 * how many connections, the socket and the pid file. -1 with the error
 * set and s freed. */
static int
qemu_nbd_cmd_begin (struct nbd_server *s, struct qemu_nbd_cmd *c,
                    const char *name, int writable, unsigned shared)
{
  memset (c, 0, sizeof *c);
  if (nbd_server_prepare (s, name) == -1)
    return -1;
  if (nbd_server_qemu_env (s, writable) == -1)
    return qemu_nbd_cmd_fail (s, c);
  /* asprintf leaves its pointer undefined when it fails. */
  if (asprintf (&c->socket, "--socket=%s", s->socket) == -1)
    c->socket = NULL;
  if (asprintf (&c->pidfile, "--pid-file=%s/pid", s->dir) == -1)
    c->pidfile = NULL;
  if (c->socket == NULL || c->pidfile == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return qemu_nbd_cmd_fail (s, c);
  }
  snprintf (c->shared, sizeof c->shared, "--shared=%u", shared ? shared : 1);
  c->argv[c->n++] = "qemu-nbd";
  if (!writable)
    c->argv[c->n++] = "--read-only";
  c->argv[c->n++] = "--persistent";
  c->argv[c->n++] = c->shared;
  c->argv[c->n++] = c->socket;
  c->argv[c->n++] = c->pidfile;
  return 0;
}

/* Run the command (c->argv ends with what the caller added); c is freed. */
static int
qemu_nbd_cmd_run (struct nbd_server *s, struct qemu_nbd_cmd *c,
                  const char *packages)
{
  int r;

  assert (c->n < sizeof c->argv / sizeof c->argv[0]);
  c->argv[c->n] = NULL;
  r = nbd_server_run (s, c->argv, packages);
  qemu_nbd_cmd_free (c);
  return r;
}

int
nbd_server_start (struct nbd_server *s, const char *image, const char *format,
                  const char *bitmap, int writable, unsigned shared)
{
  struct qemu_nbd_cmd c;

  if (format == NULL)
    format = "raw";
  if (strcmp (format, "raw") != 0 && strcmp (format, "qcow2") != 0) {
    vms_set_error (EINVAL, "cannot export %s: unknown image format \"%s\" "
                   "(raw or qcow2)", image, format);
    return -1;
  }
  if (bitmap && strcmp (format, "qcow2") != 0) {
    vms_set_error (EINVAL, "cannot export %s with dirty bitmap \"%s\": "
                   "only qcow2 images have persistent bitmaps", image, bitmap);
    return -1;
  }
  if (qemu_nbd_cmd_begin (s, &c, image, writable, shared) == -1)
    return -1;
  if (bitmap && asprintf (&c.extra[0], "--bitmap=%s", bitmap) == -1)
    c.extra[0] = NULL;
  c.extra[1] = nbd_server_image_opts (image, format,
                                      writable == NBD_SERVER_WRITABLE_DIRECT);
  if ((bitmap && c.extra[0] == NULL) || c.extra[1] == NULL) {
    vms_set_error (ENOMEM, "out of memory");
    return qemu_nbd_cmd_fail (s, &c);
  }
  if (c.extra[0])
    c.argv[c.n++] = c.extra[0];
  if (writable == NBD_SERVER_WRITABLE_DIRECT) {
    /* Data straight from qemu-nbd's buffers to the disk: copying every
     * byte into the page cache cost it as much CPU as the rest of a qcow2
     * extract (issue 15). */
    c.argv[c.n++] = "--cache=none";
    c.argv[c.n++] = "--aio=native";
  }
  c.argv[c.n++] = "--image-opts";
  c.argv[c.n++] = c.extra[1];
  if (qemu_nbd_cmd_run (s, &c, "qemu-utils") == -1)
    return -1;
  vms_debug ("qemu-nbd serves %s (%s%s%s)", image, format,
             writable ? ", writable" : "", bitmap ? ", bitmap" : "");
  return 0;
}

int
nbd_server_start_graph (struct nbd_server *s, const char *graph,
                        const char *secret_file, const char *name,
                        int writable, unsigned shared)
{
  struct qemu_nbd_cmd c;

  if (strncmp (graph, "json:{", 6) != 0) {
    vms_set_error (EINVAL, "cannot export %s: its block graph is not "
                   "\"json:{…}\"", name);
    return -1;
  }
  if (secret_file && strchr (secret_file, ',')) {
    vms_set_error (EINVAL, "cannot export %s: the secret file's path %s has "
                   "a comma", name, secret_file);
    return -1;
  }
  if (qemu_nbd_cmd_begin (s, &c, name, writable, shared) == -1)
    return -1;
  if (secret_file) {
    if (asprintf (&c.extra[0], "secret,id=" VMS_ACCESS_SECRET_ID ",file=%s",
                  secret_file) == -1) {
      c.extra[0] = NULL;
      vms_set_error (ENOMEM, "out of memory");
      return qemu_nbd_cmd_fail (s, &c);
    }
    c.argv[c.n++] = "--object";
    c.argv[c.n++] = c.extra[0];
  }
  /* A json: filename names its drivers: nothing is probed. */
  c.argv[c.n++] = graph;
  if (qemu_nbd_cmd_run (s, &c, "qemu-utils qemu-block-extra") == -1)
    return -1;
  vms_debug ("qemu-nbd serves %s", name);
  return 0;
}

int
nbd_server_ended (struct nbd_server *s)
{
  char errs[1024];
  int status;

  if (s->pid <= 0 || waitpid (s->pid, &status, WNOHANG) != s->pid)
    return 0;
  s->pid = 0;
  vms_set_error (EIO, "the server of %s %s %d: %s", s->image,
                 WIFEXITED (status) ? "exited with status" : "was killed by signal",
                 WIFEXITED (status) ? WEXITSTATUS (status) : WTERMSIG (status),
                 nbd_server_log_tail (s, errs, sizeof errs));
  return 1;
}

int
nbd_server_stop (struct nbd_server *s)
{
  char errs[1024];
  int status = 0, r = 0;

  if (s->pid > 0) {
    /* At the end of the pipe the guard sends qemu-nbd SIGTERM: it flushes
     * and closes the image. */
    close (s->guard_fd);
    s->guard_fd = -1;
    if (!nbd_server_wait (s->pid, NBD_SERVER_STOP_MS, &status)) {
      kill (-s->pid, SIGKILL);
      nbd_server_wait (s->pid, NBD_SERVER_KILL_MS, &status);
      vms_set_error (ETIMEDOUT, "qemu-nbd serving %s did not stop within %d s "
                     "and was killed", s->image, NBD_SERVER_STOP_MS / 1000);
      r = -1;
    }
    else if (!(WIFEXITED (status) && (WEXITSTATUS (status) == 0
                                       || WEXITSTATUS (status) == 128 + SIGTERM))) {
      vms_set_error (EIO, "qemu-nbd serving %s ended badly (%s %d): %s",
                     s->image,
                     WIFEXITED (status) ? "exit status" : "signal",
                     WIFEXITED (status) ? WEXITSTATUS (status) : WTERMSIG (status),
                     nbd_server_log_tail (s, errs, sizeof errs));
      r = -1;
    }
    s->pid = 0;
  }
  nbd_server_remove_dir (s);
  nbd_server_free (s);
  return r;
}

vms_nbd_export *
vms_nbd_export_open (const char *image, const char *format, const char *bitmap)
{
  vms_nbd_export *e;

  if (image == NULL || *image == '\0') {
    vms_set_error (EINVAL, "vms_nbd_export_open: no image given");
    return NULL;
  }
  e = calloc (1, sizeof *e);
  if (e == NULL) {
    vms_set_error (errno, "out of memory");
    return NULL;
  }
  if (nbd_server_start (&e->server, image, format, bitmap, 0, 8) == -1) {
    free (e);
    return NULL;
  }
  return e;
}

vms_nbd_export *
vms_nbd_export_open_graph (const char *graph, const char *secret_file,
                           const char *name)
{
  vms_nbd_export *e;

  if (graph == NULL || name == NULL) {
    vms_set_error (EINVAL, "vms_nbd_export_open_graph: no graph or name given");
    return NULL;
  }
  e = calloc (1, sizeof *e);
  if (e == NULL) {
    vms_set_error (errno, "out of memory");
    return NULL;
  }
  if (nbd_server_start_graph (&e->server, graph, secret_file, name, 0, 8) == -1) {
    free (e);
    return NULL;
  }
  return e;
}

const char *
vms_nbd_export_uri (const vms_nbd_export *e)
{
  return e->server.uri;
}

void
vms_nbd_export_close (vms_nbd_export *e)
{
  if (e == NULL)
    return;
  if (nbd_server_stop (&e->server) == -1)
    vms_warn ("%s", vms_get_error ());
  free (e);
}
