/* The guard (issue 5): whatever happens to vmshadow, no guest stays frozen,
 * no VM stays paused by us, no backup job or uncommitted checkpoint of ours
 * stays behind.
 *
 * The writer starts the vmshadow-guard executable (vmshadow-guard.c, which
 * documents the protocol) before the first guest is frozen or VM paused,
 * and tells it through a pipe, before each step, what it is about to do:
 * "freeze", "pause", "job <socket> <checkpoint>", "file <path>"; and after,
 * "thaw", "resume", "disarm". Only vmshadow holds the pipe's write end
 * (O_CLOEXEC; children started with vms_spawn close every other
 * descriptor), so when vmshadow dies — even of SIGKILL — the guard reads
 * end of file and, through its own libvirt connection, undoes what is
 * still armed within seconds. Telling before acting means a step cut short
 * by the kill is undone too; the guard only ever acts on the VMs, the job
 * serving our socket and the checkpoint named after our session.
 *
 * The guard runs in a session of its own, so a ^C or a kill of vmshadow's
 * process group leaves it to do its work. Which executable: the
 * VMSHADOW_GUARD environment variable, else the one in the build tree next
 * to a vmshadow run from it, else VMS_GUARD_PATH (libexecdir).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vmshadow/error.h"

#include "cleanup.h"
#include "log.h"
#include "str.h"
#include "subprocess.h"
#include "vm-internal.h"

#ifndef VMS_GUARD_PATH
#define VMS_GUARD_PATH "/usr/local/libexec/vmshadow-guard"
#endif
#define GUARD_READY_WAIT_MS 10000
#define GUARD_EXIT_WAIT_MS 2000

struct vm_guard {
  pthread_mutex_t lock;         /* one message at a time */
  pid_t pid;
  int fd;                       /* write end of the message pipe; -1: dead */
  /* Started ahead (vm_guard_prestart) and not yet heard "ready" from: the
   * read end of its status pipe, else -1. */
  int st_fd;
  char *prog;
  int64_t spawned_us;
};

static pthread_mutex_t guard_start_lock = PTHREAD_MUTEX_INITIALIZER;

/* The guard executable to run (malloc'd). */
static char *
guard_program (void)
{
  const char *env = getenv ("VMSHADOW_GUARD");
  char exe[PATH_MAX];
  ssize_t n;

  if (env && *env)
    return strdup (env);
  n = readlink ("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    char *slash, *p;
    exe[n] = '\0';
    slash = strrchr (exe, '/');
    if (slash) {
      *slash = '\0';
      if (asprintf (&p, "%s/../writers/libvirt/vmshadow-guard", exe) != -1) {
        if (access (p, X_OK) == 0)
          return p;
        free (p);
      }
    }
  }
  return strdup (VMS_GUARD_PATH);
}

/* Write one whole line; never raise SIGPIPE in the caller. */
static int
guard_write (struct vm_guard *g, const char *line)
{
  sigset_t pipe_set, old;
  size_t len = strlen (line), off = 0;
  int r = 0;

  sigemptyset (&pipe_set);
  sigaddset (&pipe_set, SIGPIPE);
  pthread_mutex_lock (&g->lock);
  if (g->fd == -1) {
    pthread_mutex_unlock (&g->lock);
    vms_set_error (EPIPE, "the guard process is gone");
    return -1;
  }
  pthread_sigmask (SIG_BLOCK, &pipe_set, &old);
  while (off < len) {
    ssize_t w = write (g->fd, line + off, len - off);
    if (w == -1) {
      if (errno == EINTR)
        continue;
      if (errno == EPIPE) {
        struct timespec zero = { 0, 0 };
        sigtimedwait (&pipe_set, NULL, &zero);   /* consume it */
      }
      vms_set_error (errno, "cannot talk to the guard process %ld: %s",
                     (long) g->pid, strerror (errno));
      close (g->fd);
      g->fd = -1;
      r = -1;
      break;
    }
    off += (size_t) w;
  }
  pthread_sigmask (SIG_SETMASK, &old, NULL);
  pthread_mutex_unlock (&g->lock);
  return r;
}

static int
guard_say3 (struct vm_guard *g, const char *verb, const char *uuid,
            const char *a, const char *b, const char *c)
{
  CLEANUP_FREE char *line = NULL;

  if (g == NULL)
    return 0;
  if (asprintf (&line, "%s\t%s%s%s%s%s%s%s\n", verb, uuid, a ? "\t" : "",
                a ? a : "", b ? "\t" : "", b ? b : "", c ? "\t" : "",
                c ? c : "") == -1) {
    line = NULL;
    vms_set_error (ENOMEM, "out of memory");
    return -1;
  }
  return guard_write (g, line);
}

static int
guard_say (struct vm_guard *g, const char *verb, const char *uuid,
           const char *a, const char *b)
{
  return guard_say3 (g, verb, uuid, a, b, NULL);
}

static void
guard_free (struct vm_guard *g)
{
  if (g->fd != -1)
    close (g->fd);
  if (g->st_fd != -1)
    close (g->st_fd);
  free (g->prog);
  pthread_mutex_destroy (&g->lock);
  free (g);
}

/* Start the guard; it connects to libvirt meanwhile (guard_wait_ready
 * waits for that). */
static struct vm_guard *
guard_spawn (struct vm_writer *w)
{
  int msg[2] = { -1, -1 }, st[2] = { -1, -1 };
  struct vm_guard *g;
  pid_t pid;

  if ((g = calloc (1, sizeof *g)) == NULL ||
      (g->prog = guard_program ()) == NULL) {
    free (g);
    vms_set_error (ENOMEM, "out of memory");
    return NULL;
  }
  g->fd = g->st_fd = -1;
  pthread_mutex_init (&g->lock, NULL);
  if (pipe2 (msg, O_CLOEXEC) == -1 || pipe2 (st, O_CLOEXEC) == -1) {
    vms_set_error (errno, "cannot make the guard's pipes: %s",
                   strerror (errno));
    goto fail;
  }
  const char *const argv[] = { g->prog, w->uri, NULL };
  struct vms_spawn_options o = {
    .argv = argv, .stdin_fd = msg[0], .stdout_fd = st[1], .stderr_fd = 2,
    .new_session = 1,
  };
  g->spawned_us = vms_now_us ();
  pid = vms_spawn (&o);
  if (pid == -1) {
    vms_set_error (vms_get_errno (), "cannot start the guard: %s (set "
                   "VMSHADOW_GUARD to the vmshadow-guard executable)",
                   vms_get_error ());
    goto fail;
  }
  close (msg[0]);
  close (st[1]);
  g->pid = pid;
  g->fd = msg[1];
  g->st_fd = st[0];
  return g;

 fail:
  for (int i = 0; i < 2; i++) {
    if (msg[i] != -1) close (msg[i]);
    if (st[i] != -1) close (st[i]);
  }
  guard_free (g);
  return NULL;
}

/* Wait until the guard's libvirt connection is open ("ready"); on failure
 * the guard is killed and reaped and g freed. */
static int
guard_wait_ready (struct vm_guard *g, const char *uri)
{
  char buf[16];
  size_t got = 0;
  int64_t t0 = vms_now_us ();
  int64_t deadline = vms_now_ms () + GUARD_READY_WAIT_MS;

  if (g->st_fd == -1)
    return 0;
  /* "ready\n", or end of file when it could not connect. */
  while (got < 6) {
    struct pollfd p = { .fd = g->st_fd, .events = POLLIN };
    int64_t left = deadline - vms_now_ms ();
    ssize_t n;
    if (left <= 0 || poll (&p, 1, (int) left) == 0) {
      vms_set_error (ETIMEDOUT, "the guard %s did not connect to %s within "
                     "%d s", g->prog, uri, GUARD_READY_WAIT_MS / 1000);
      kill (g->pid, SIGKILL);
      waitpid (g->pid, NULL, 0);
      goto fail;
    }
    n = read (g->st_fd, buf + got, sizeof buf - got);
    if (n == -1 && errno == EINTR)
      continue;
    if (n <= 0) {
      vms_set_error (EIO, "the guard %s exited before it was ready (its "
                     "message is above)", g->prog);
      waitpid (g->pid, NULL, 0);
      goto fail;
    }
    got += (size_t) n;
  }
  if (memcmp (buf, "ready\n", 6) != 0) {
    vms_set_error (EIO, "the guard %s said something unexpected", g->prog);
    kill (g->pid, SIGKILL);
    waitpid (g->pid, NULL, 0);
    goto fail;
  }
  close (g->st_fd);
  g->st_fd = -1;
  /* Issue 15: started ahead, its connection overlaps the preparation;
   * what is left of it is the wait here. */
  vms_debug ("vm writer: guard %s ready (pid %ld), %" PRId64 " ms after it "
             "was started, %" PRId64 " ms waited for", g->prog, (long) g->pid,
             (vms_now_us () - g->spawned_us) / 1000,
             (vms_now_us () - t0) / 1000);
  return 0;

 fail:
  guard_free (g);
  return -1;
}

void
vm_guard_prestart (struct vm_writer *w)
{
  pthread_mutex_lock (&guard_start_lock);
  if (w->guard == NULL) {
    w->guard = guard_spawn (w);
    /* Not started: the first step that needs it tries again and fails
     * with the reason. */
    if (w->guard == NULL)
      vms_debug ("vm writer: %s", vms_get_error ());
  }
  pthread_mutex_unlock (&guard_start_lock);
}

static int
guard_get (struct vm_writer *w, struct vm_entry *vm)
{
  pthread_mutex_lock (&guard_start_lock);
  if (w->guard == NULL)
    w->guard = guard_spawn (w);
  if (w->guard && guard_wait_ready (w->guard, w->uri) == -1)
    w->guard = NULL;
  pthread_mutex_unlock (&guard_start_lock);
  vm->guard = w->guard;
  return w->guard ? 0 : -1;
}

static int
safe_field (const char *s)
{
  return s == NULL || strpbrk (s, "\t\n") == NULL;
}

int
vm_guard_arm (struct vm_writer *w, struct vm_entry *vm)
{
  if (!safe_field (vm->socket) || !safe_field (vm->checkpoint) ||
      !safe_field (vm->scratch_dir)) {
    vms_set_error (EINVAL, "the socket path, scratch directory or "
                   "checkpoint name holds a tab or newline");
    return -1;
  }
  if (guard_get (w, vm) == -1)
    return -1;
  if (vm->socket &&
      guard_say (vm->guard, "job", vm->uuid, vm->socket,
                 vm->checkpoint ? vm->checkpoint : "-") == -1)
    return -1;
  if (vm->scratch_dir &&
      guard_say (vm->guard, "scratch", vm->uuid, vm->scratch_dir, NULL) == -1)
    return -1;
  if (vm->method == VM_METHOD_ONLINE &&
      guard_say (vm->guard, "freeze", vm->uuid, NULL, NULL) == -1)
    return -1;
  return 0;
}

void
vm_guard_job_started (struct vm_writer *w, struct vm_entry *vm)
{
  /* Announced by vm_guard_arm before the begin: nothing new to say. */
}

void
vm_guard_thawed (struct vm_entry *vm)
{
  if (guard_say (vm->guard, "thaw", vm->uuid, NULL, NULL) == -1)
    vms_debug ("vm writer: %s", vms_get_error ());
}

int
vm_guard_pausing (struct vm_writer *w, struct vm_entry *vm)
{
  if (guard_get (w, vm) == -1)
    return -1;
  return guard_say (vm->guard, "pause", vm->uuid, NULL, NULL);
}

void
vm_guard_resumed (struct vm_entry *vm)
{
  if (guard_say (vm->guard, "resume", vm->uuid, NULL, NULL) == -1)
    vms_debug ("vm writer: %s", vms_get_error ());
}

int
vm_guard_file (struct vm_writer *w, struct vm_entry *vm, const char *path)
{
  if (!safe_field (path)) {
    vms_set_error (EINVAL, "the path %s holds a tab or newline", path);
    return -1;
  }
  if (guard_get (w, vm) == -1)
    return -1;
  return guard_say (vm->guard, "file", vm->uuid, path, NULL);
}

void
vm_guard_disarm (struct vm_writer *w, struct vm_entry *vm)
{
  if (vm->guard &&
      guard_say (vm->guard, "disarm", vm->uuid, NULL, NULL) == -1)
    vms_debug ("vm writer: %s", vms_get_error ());
}

/* Issue 18 (R22): the cluster changes the guard undoes, through
 * vm-cluster.c, after the VM is resumed. */
int
vm_guard_cluster_maint (struct vm_writer *w, struct vm_entry *vm)
{
  const struct vm_cluster_meta_prev *p = &vm->cl_maint_prev;
  CLEANUP_FREE char *old = NULL;

  if (p->nvpair_id && p->value &&
      (old = vms_strdup_printf ("=%s", p->value)) == NULL)
    return -1;
  if (!safe_field (vm->cl_id) || !safe_field (p->nvpair_id) ||
      !safe_field (old)) {
    vms_set_error (EINVAL, "the resource's maintenance attribute holds a tab "
                   "or newline; it is left alone");
    return -1;
  }
  if (guard_get (w, vm) == -1)
    return -1;
  return guard_say3 (vm->guard, "maint", vm->uuid, vm->cl_id,
                     p->nvpair_id ? p->nvpair_id : "-", old ? old : "-");
}

void
vm_guard_cluster_unmaint (struct vm_entry *vm)
{
  if (guard_say (vm->guard, "unmaint", vm->uuid, NULL, NULL) == -1)
    vms_debug ("vm writer: %s", vms_get_error ());
}

int
vm_guard_cluster_pin (struct vm_writer *w, struct vm_entry *vm)
{
  if (!safe_field (vm->cl_id)) {
    vms_set_error (EINVAL, "the resource id holds a tab or newline");
    return -1;
  }
  if (guard_get (w, vm) == -1)
    return -1;
  return guard_say (vm->guard, "pin", vm->uuid, vm->cl_id, NULL);
}

void
vm_guard_cluster_unpin (struct vm_entry *vm)
{
  if (guard_say (vm->guard, "unpin", vm->uuid, NULL, NULL) == -1)
    vms_debug ("vm writer: %s", vms_get_error ());
}

void
vm_guard_close (struct vm_writer *w)
{
  struct vm_guard *g = w->guard;
  int64_t deadline;

  if (g == NULL)
    return;
  /* No "exit": whatever is still armed (an undo that failed) is left to
   * the guard, which sees end of file and retries on its own; with nothing
   * armed it just leaves. */
  if (g->fd != -1)
    close (g->fd);
  g->fd = -1;
  deadline = vms_now_ms () + GUARD_EXIT_WAIT_MS;
#ifdef SYS_pidfd_open
  {
    /* Woken by its exit (issue 15: a 5 ms poll was part of the fixed cost
     * of every run); the poll below stays for kernels without pidfds. */
    int pfd = (int) syscall (SYS_pidfd_open, g->pid, 0);
    if (pfd != -1) {
      struct pollfd p = { .fd = pfd, .events = POLLIN };
      int64_t left;
      while ((left = deadline - vms_now_ms ()) > 0 &&
             poll (&p, 1, (int) left) == -1 && errno == EINTR)
        ;
      close (pfd);
    }
  }
#endif
  while (waitpid (g->pid, NULL, WNOHANG) == 0 && vms_now_ms () < deadline) {
    struct timespec ts = { 0, 5 * 1000 * 1000 };
    nanosleep (&ts, NULL);
  }
  guard_free (g);
  w->guard = NULL;
  for (size_t i = 0; i < w->nr_vms; i++)
    w->vms[i]->guard = NULL;
}
