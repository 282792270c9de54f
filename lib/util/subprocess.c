/* Child processes without a shell (subprocess.h): posix_spawn into a new
 * process group, one poll() loop over the child's stdin, stdout, stderr and
 * a pidfd (a short tick where pidfds are missing), a time-out that kills
 * the whole group, and waitid(WNOWAIT) so that the group leader stays a
 * zombie — keeping its process group ID from being reused — until we are
 * done signalling the group.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "log.h"
#include "subprocess.h"
#include "vmshadow/error.h"

extern char **environ;

/* glibc extensions, with what to do without them. */
#if defined (__GLIBC__) && defined (__GLIBC_PREREQ)
#if __GLIBC_PREREQ (2, 34)
#define HAVE_ADDCLOSEFROM_NP 1
#endif
#if __GLIBC_PREREQ (2, 32)
#define HAVE_SIGABBREV_NP 1
#endif
#if __GLIBC_PREREQ (2, 29)
#define HAVE_ADDCHDIR_NP 1
#endif
#endif

#define DEFAULT_MAX_OUTPUT (1024 * 1024)
#define DEFAULT_MAX_ERRORS (64 * 1024)
#define DEFAULT_KILL_GRACE_MS 1000
#define DEFAULT_LINGER_MS 200
#define TICK_MS 20              /* child polling when there is no pidfd */
#define IO_CHUNK 65536

/* A capped byte buffer: keeps the head (stdout) or the tail (stderr). */
struct subprocess_buf {
  char *data;
  size_t len, cap;              /* cap: the most we keep */
  int keep_tail;
  int truncated;
};

static int
subprocess_buf_init (struct subprocess_buf *b, size_t cap, int keep_tail)
{
  b->data = malloc (cap + 1);
  if (b->data == NULL) {
    vms_set_error (errno, "out of memory for a %zu byte output buffer", cap);
    return -1;
  }
  b->len = 0;
  b->cap = cap;
  b->keep_tail = keep_tail;
  b->truncated = 0;
  b->data[0] = '\0';
  return 0;
}

static void
subprocess_buf_add (struct subprocess_buf *b, const char *p, size_t n)
{
  if (!b->keep_tail) {
    size_t room = b->cap - b->len;
    if (n > room) {
      b->truncated = 1;
      n = room;
    }
    memcpy (b->data + b->len, p, n);
    b->len += n;
  }
  else if (n >= b->cap) {
    b->truncated |= n > b->cap || b->len > 0;
    memcpy (b->data, p + (n - b->cap), b->cap);
    b->len = b->cap;
  }
  else {
    if (b->len + n > b->cap) {
      size_t drop = b->len + n - b->cap;
      memmove (b->data, b->data + drop, b->len - drop);
      b->len -= drop;
      b->truncated = 1;
    }
    memcpy (b->data + b->len, p, n);
    b->len += n;
  }
  b->data[b->len] = '\0';
}

/* The caller's environment with the extra "NAME=value" entries added and
 * overriding. The strings are borrowed; only the array is allocated. */
static char **
subprocess_make_env (const char *const *extra)
{
  size_t n = 0, m = 0, k = 0;

  for (char **e = environ; e && *e; e++) n++;
  for (const char *const *x = extra; x && *x; x++) m++;
  char **env = calloc (n + m + 1, sizeof *env);
  if (env == NULL) {
    vms_set_error (errno, "out of memory building an environment");
    return NULL;
  }
  for (char **e = environ; e && *e; e++) {
    const char *eq = strchr (*e, '=');
    size_t namelen = eq ? (size_t) (eq - *e) : strlen (*e);
    int overridden = 0;
    for (size_t j = 0; j < m && !overridden; j++)
      overridden = strncmp (extra[j], *e, namelen) == 0 &&
                   extra[j][namelen] == '=';
    if (!overridden)
      env[k++] = *e;
  }
  for (size_t j = 0; j < m; j++)
    env[k++] = (char *) extra[j];
  env[k] = NULL;
  return env;
}

/* Signal the child's process group; also the child itself, in case it
 * moved to a group of its own (then its group ID is no longer ours). */
static void
subprocess_kill_group (pid_t pid, int sig)
{
  if (kill (-pid, sig) == -1 && errno == ESRCH)
    kill (pid, sig);
}

static void
subprocess_close (int *fd)
{
  if (*fd >= 0) {
    close (*fd);
    *fd = -1;
  }
}

static int
subprocess_set_nonblock (int fd)
{
  int fl = fcntl (fd, F_GETFL);
  if (fl == -1 || fcntl (fd, F_SETFL, fl | O_NONBLOCK) == -1) {
    vms_set_error (errno, "cannot make a pipe non-blocking: %s",
                   strerror (errno));
    return -1;
  }
  return 0;
}

pid_t
vms_spawn (const struct vms_spawn_options *opts)
{
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  sigset_t none, all;
  pid_t pid = -1;
  int r;
  const char *prog = opts->argv[0];
  char *const *envp = opts->envp ? opts->envp : environ;

  posix_spawn_file_actions_init (&fa);
  posix_spawnattr_init (&attr);
  sigemptyset (&none);
  sigfillset (&all);

  r = opts->stdin_fd >= 0
    ? posix_spawn_file_actions_adddup2 (&fa, opts->stdin_fd, 0)
    : posix_spawn_file_actions_addopen (&fa, 0, "/dev/null", O_RDONLY, 0);
  if (r == 0)
    r = opts->stdout_fd >= 0
      ? posix_spawn_file_actions_adddup2 (&fa, opts->stdout_fd, 1)
      : posix_spawn_file_actions_addopen (&fa, 1, "/dev/null", O_WRONLY, 0);
  if (r == 0)
    r = opts->stderr_path
      ? posix_spawn_file_actions_addopen (&fa, 2, opts->stderr_path,
                                          O_WRONLY | O_CREAT | O_TRUNC, 0600)
      : opts->stderr_fd >= 0
      ? posix_spawn_file_actions_adddup2 (&fa, opts->stderr_fd, 2)
      : posix_spawn_file_actions_addopen (&fa, 2, "/dev/null", O_WRONLY, 0);
  /* (dup2 clears close-on-exec, also when the numbers are equal.) */
  if (r == 0 && opts->pass_fd > 0)
    r = posix_spawn_file_actions_adddup2 (&fa, opts->pass_fd, 3);
#ifdef HAVE_ADDCLOSEFROM_NP
  /* Our own descriptors are O_CLOEXEC, but those other threads or
   * libraries opened without it must not leak into the child either. */
  if (r == 0)
    r = posix_spawn_file_actions_addclosefrom_np (&fa, opts->pass_fd > 0 ? 4 : 3);
#endif
  if (r == 0 && opts->cwd) {
#ifdef HAVE_ADDCHDIR_NP
    r = posix_spawn_file_actions_addchdir_np (&fa, opts->cwd);
#else
    r = ENOSYS;
#endif
  }
  if (r == 0 && !opts->new_session) r = posix_spawnattr_setpgroup (&attr, 0);
  if (r == 0) r = posix_spawnattr_setsigmask (&attr, &none);
  /* Dispositions set to SIG_IGN (SIGPIPE, often) would survive exec. */
  if (r == 0) r = posix_spawnattr_setsigdefault (&attr, &all);
  if (r == 0)
    r = posix_spawnattr_setflags (&attr, POSIX_SPAWN_SETSIGMASK |
                                  POSIX_SPAWN_SETSIGDEF |
                                  (opts->new_session ? POSIX_SPAWN_SETSID
                                   : POSIX_SPAWN_SETPGROUP));
  if (r != 0) {
    vms_set_error (r, "cannot prepare to run %s: %s", prog, strerror (r));
    goto out;
  }

  /* Where exec failures cannot be reported by posix_spawn (under
   * valgrind, some libcs), the child would just exit 127: check first. */
  if (strchr (prog, '/') != NULL && access (prog, X_OK) == -1) {
    vms_set_error (errno, "cannot run %s: %s", prog, strerror (errno));
    goto out;
  }
  if (strchr (prog, '/') != NULL)
    r = posix_spawn (&pid, prog, &fa, &attr, (char *const *) opts->argv, envp);
  else
    r = posix_spawnp (&pid, prog, &fa, &attr, (char *const *) opts->argv, envp);
  if (r != 0) {
    pid = -1;
    vms_set_error (r, "cannot run %s: %s", prog, strerror (r));
  }

 out:
  posix_spawn_file_actions_destroy (&fa);
  posix_spawnattr_destroy (&attr);
  return pid;
}

/* Start the child of vms_subprocess_run. The pipe ends for the child are
 * closed by the caller. */
static pid_t
subprocess_spawn (const struct vms_subprocess_options *opts,
                  int child_in, int child_out, int child_err)
{
  CLEANUP_FREE char **env = subprocess_make_env (opts->env);

  if (env == NULL)
    return -1;
  struct vms_spawn_options so = {
    .argv = opts->argv, .envp = env, .cwd = opts->cwd,
    .stdin_fd = child_in, .stdout_fd = child_out, .stderr_fd = child_err,
  };
  return vms_spawn (&so);
}

static int
subprocess_pidfd_open (pid_t pid)
{
#ifdef SYS_pidfd_open
  int fd = (int) syscall (SYS_pidfd_open, pid, 0);
  if (fd >= 0)
    fcntl (fd, F_SETFD, FD_CLOEXEC);   /* pidfds are close-on-exec anyway */
  return fd;
#else
  return -1;
#endif
}

/* 1 if the child has ended (it is left a zombie, not reaped). */
static int
subprocess_child_ended (pid_t pid)
{
  siginfo_t si;
  memset (&si, 0, sizeof si);
  if (waitid (P_PID, (id_t) pid, &si, WEXITED | WNOHANG | WNOWAIT) == -1)
    return errno == ECHILD;       /* reaped by someone else: it has ended */
  return si.si_pid == pid;
}

static int64_t
subprocess_min (int64_t a, int64_t b)
{
  return a < b ? a : b;
}

int
vms_subprocess_run (const struct vms_subprocess_options *opts,
                    struct vms_subprocess_result *res)
{
  int in_pipe[2] = { -1, -1 }, out_pipe[2] = { -1, -1 }, err_pipe[2] = { -1, -1 };
  CLEANUP_CLOSE int in_fd = -1;
  CLEANUP_CLOSE int out_fd = -1;
  CLEANUP_CLOSE int err_fd = -1;
  CLEANUP_CLOSE int pidfd = -1;
  struct subprocess_buf out = { 0 }, err = { 0 };
  sigset_t pipe_set, old_mask, pending;
  int sigpipe_was_pending;
  const char *input = opts->input;
  size_t input_off = 0;
  pid_t pid;
  int status = 0;

  memset (res, 0, sizeof *res);
  if (opts->argv == NULL || opts->argv[0] == NULL) {
    vms_set_error (EINVAL, "subprocess: no program to run");
    return -1;
  }
  const char *prog = opts->argv[0];
  size_t max_out = opts->max_output ? opts->max_output : DEFAULT_MAX_OUTPUT;
  size_t max_err = opts->max_errors ? opts->max_errors : DEFAULT_MAX_ERRORS;
  int64_t grace = opts->kill_grace_ms == 0 ? DEFAULT_KILL_GRACE_MS
    : opts->kill_grace_ms;
  int64_t linger = opts->linger_ms > 0 ? opts->linger_ms : DEFAULT_LINGER_MS;

  if (subprocess_buf_init (&out, max_out, 0) == -1)
    return -1;
  if (subprocess_buf_init (&err, max_err, 1) == -1) {
    free (out.data);
    return -1;
  }
  if ((input && pipe2 (in_pipe, O_CLOEXEC) == -1) ||
      pipe2 (out_pipe, O_CLOEXEC) == -1 ||
      pipe2 (err_pipe, O_CLOEXEC) == -1) {
    vms_set_error (errno, "cannot run %s: cannot make a pipe: %s", prog,
                   strerror (errno));
    goto fail;
  }
  in_fd = in_pipe[1];
  out_fd = out_pipe[0];
  err_fd = err_pipe[0];
  if ((in_fd >= 0 && subprocess_set_nonblock (in_fd) == -1) ||
      subprocess_set_nonblock (out_fd) == -1 ||
      subprocess_set_nonblock (err_fd) == -1)
    goto fail;

  int64_t start = vms_now_ms ();
  pid = subprocess_spawn (opts, in_pipe[0], out_pipe[1], err_pipe[1]);
  subprocess_close (&in_pipe[0]);
  subprocess_close (&out_pipe[1]);
  subprocess_close (&err_pipe[1]);
  if (pid == -1)
    goto fail;
  vms_debug ("subprocess: started %s as pid %d", prog, (int) pid);
  pidfd = subprocess_pidfd_open (pid);
  if (input && opts->input_len == 0)
    subprocess_close (&in_fd);

  /* A write to a child that quit raises SIGPIPE on this thread: block it
   * here (not process-wide) and swallow what our writes raised. */
  sigemptyset (&pipe_set);
  sigaddset (&pipe_set, SIGPIPE);
  pthread_sigmask (SIG_BLOCK, &pipe_set, &old_mask);
  sigpending (&pending);
  sigpipe_was_pending = sigismember (&pending, SIGPIPE);

  int64_t deadline = opts->timeout_ms >= 0 ? start + opts->timeout_ms : INT64_MAX;
  int64_t kill_at = INT64_MAX, linger_end = INT64_MAX;
  int ended = 0, sent_kill = 0;

  for (;;) {
    int64_t now = vms_now_ms ();

    if (!ended && !res->timed_out && now >= deadline) {
      res->timed_out = 1;
      vms_debug ("subprocess: %s (pid %d) timed out after %lld ms: killing its process group",
                 prog, (int) pid, (long long) (now - start));
      if (grace < 0) {
        subprocess_kill_group (pid, SIGKILL);
        sent_kill = 1;
      }
      else {
        subprocess_kill_group (pid, SIGTERM);
        kill_at = now + grace;
      }
    }
    if (res->timed_out && !sent_kill && (now >= kill_at || ended)) {
      /* After the grace, or as soon as the leader is gone: nothing of a
       * timed-out group may survive it. */
      subprocess_kill_group (pid, SIGKILL);
      sent_kill = 1;
    }
    if (ended && ((out_fd < 0 && err_fd < 0) || now >= linger_end))
      break;

    struct pollfd pfd[4];
    int nfds = 0, i_in = -1, i_out = -1, i_err = -1, i_pid = -1;
    if (in_fd >= 0) {
      pfd[nfds] = (struct pollfd) { .fd = in_fd, .events = POLLOUT };
      i_in = nfds++;
    }
    if (out_fd >= 0) {
      pfd[nfds] = (struct pollfd) { .fd = out_fd, .events = POLLIN };
      i_out = nfds++;
    }
    if (err_fd >= 0) {
      pfd[nfds] = (struct pollfd) { .fd = err_fd, .events = POLLIN };
      i_err = nfds++;
    }
    if (!ended && pidfd >= 0) {
      pfd[nfds] = (struct pollfd) { .fd = pidfd, .events = POLLIN };
      i_pid = nfds++;
    }

    int64_t wake = INT64_MAX;
    if (!ended && !res->timed_out) wake = subprocess_min (wake, deadline);
    if (res->timed_out && !sent_kill) wake = subprocess_min (wake, kill_at);
    if (ended) wake = subprocess_min (wake, linger_end);
    if (!ended && pidfd < 0) wake = subprocess_min (wake, now + TICK_MS);
    int timeout = wake == INT64_MAX ? -1
      : (int) subprocess_min (wake > now ? wake - now : 0, 60000);

    int r = poll (pfd, (nfds_t) nfds, timeout);
    if (r == -1) {
      if (errno == EINTR)
        continue;
      /* Cannot happen with valid descriptors; do not leave a child behind. */
      vms_warn ("subprocess: poll: %s; killing %s", strerror (errno), prog);
      subprocess_kill_group (pid, SIGKILL);
      sent_kill = 1;
      break;
    }

    if (i_in >= 0 && pfd[i_in].revents) {
      if (pfd[i_in].revents & (POLLERR | POLLHUP))
        subprocess_close (&in_fd);
      else {
        size_t n = subprocess_min ((int64_t) (opts->input_len - input_off),
                                   IO_CHUNK);
        ssize_t w = write (in_fd, input + input_off, n);
        if (w > 0) {
          input_off += (size_t) w;
          if (input_off == opts->input_len)
            subprocess_close (&in_fd);
        }
        else if (w == -1 && errno != EAGAIN && errno != EINTR) {
          /* EPIPE: the child does not read its input; that is its right. */
          vms_debug ("subprocess: %s did not read all of its input (%s)",
                     prog, strerror (errno));
          subprocess_close (&in_fd);
        }
      }
    }
    for (int k = 0; k < 2; k++) {
      int idx = k == 0 ? i_out : i_err;
      int *fd = k == 0 ? &out_fd : &err_fd;
      struct subprocess_buf *b = k == 0 ? &out : &err;
      if (idx < 0 || pfd[idx].revents == 0)
        continue;
      char chunk[IO_CHUNK];
      ssize_t n = read (*fd, chunk, sizeof chunk);
      if (n > 0)
        subprocess_buf_add (b, chunk, (size_t) n);
      else if (n == 0 || (errno != EAGAIN && errno != EINTR))
        subprocess_close (fd);
    }
    if (!ended && (i_pid < 0 || pfd[i_pid].revents) &&
        subprocess_child_ended (pid)) {
      ended = 1;
      res->elapsed_ms = vms_now_ms () - start;
      linger_end = vms_now_ms () + linger;
      /* Nobody reads what we would still write. */
      subprocess_close (&in_fd);
    }
  }

  /* Reap; the child has ended (or was just sent SIGKILL after poll failed). */
  while (waitpid (pid, &status, 0) == -1) {
    if (errno == EINTR)
      continue;
    status = -1;
    break;
  }
  if (!ended)
    res->elapsed_ms = vms_now_ms () - start;
  if (out_fd >= 0 || err_fd >= 0)
    vms_debug ("subprocess: %s left processes behind that keep its output open",
               prog);

  subprocess_close (&in_fd);
  sigpending (&pending);
  if (!sigpipe_was_pending && sigismember (&pending, SIGPIPE)) {
    struct timespec zero = { 0, 0 };
    while (sigtimedwait (&pipe_set, NULL, &zero) == -1 && errno == EINTR)
      ;
  }
  pthread_sigmask (SIG_SETMASK, &old_mask, NULL);

  if (status != -1 && WIFEXITED (status)) {
    res->exited = 1;
    res->exit_status = WEXITSTATUS (status);
  }
  else if (status != -1 && WIFSIGNALED (status))
    res->term_signal = WTERMSIG (status);
  res->out = out.data;
  res->out_len = out.len;
  res->out_truncated = out.truncated;
  res->err = err.data;
  res->err_len = err.len;
  res->err_truncated = err.truncated;
  vms_debug ("subprocess: %s (pid %d) ended after %lld ms: status 0x%x%s",
             prog, (int) pid, (long long) res->elapsed_ms, (unsigned) status,
             res->timed_out ? ", timed out" : "");
  return 0;

 fail:
  for (int i = 0; i < 2; i++) {
    subprocess_close (&in_pipe[i]);
    subprocess_close (&out_pipe[i]);
    subprocess_close (&err_pipe[i]);
  }
  in_fd = out_fd = err_fd = -1;   /* closed just above */
  free (out.data);
  free (err.data);
  return -1;
}

void
vms_subprocess_result_reset (struct vms_subprocess_result *res)
{
  if (res == NULL)
    return;
  free (res->out);
  free (res->err);
  memset (res, 0, sizeof *res);
}

int
vms_subprocess_succeeded (const struct vms_subprocess_result *res)
{
  return res->exited && res->exit_status == 0 && !res->timed_out;
}

const char *
vms_subprocess_describe (const struct vms_subprocess_result *res,
                         char *buf, size_t len)
{
  if (len == 0)
    return buf;
  if (res->timed_out)
    snprintf (buf, len, "timed out after %lld ms and was killed",
              (long long) res->elapsed_ms);
  else if (res->exited)
    snprintf (buf, len, "exited with status %d", res->exit_status);
  else if (res->term_signal > 0) {
#ifdef HAVE_SIGABBREV_NP
    const char *abbrev = sigabbrev_np (res->term_signal);
#else
    const char *abbrev = NULL;
#endif
    snprintf (buf, len, "crashed (signal %d%s%s)", res->term_signal,
              abbrev ? ", SIG" : "", abbrev ? abbrev : "");
  }
  else
    snprintf (buf, len, "ended in an unknown way");
  return buf;
}

const char *
vms_subprocess_error_tail (const struct vms_subprocess_result *res,
                           unsigned max_lines, char *buf, size_t len)
{
  const char *e = res->err ? res->err : "";
  size_t end = res->err_len;
  /* Start of each kept line, found walking backwards. */
  size_t starts[64], ends[64];
  unsigned n = 0;

  if (len == 0)
    return buf;
  buf[0] = '\0';
  if (max_lines > 64) max_lines = 64;
  while (end > 0 && n < max_lines) {
    size_t s = end;
    while (s > 0 && e[s - 1] != '\n') s--;
    size_t a = s, b = end;
    while (a < b && (e[a] == ' ' || e[a] == '\t' || e[a] == '\r')) a++;
    while (b > a && (e[b - 1] == ' ' || e[b - 1] == '\t' || e[b - 1] == '\r')) b--;
    if (b > a) {
      starts[n] = a;
      ends[n] = b;
      n++;
    }
    end = s > 0 ? s - 1 : 0;
  }

  /* When they do not all fit, the newest lines are the ones kept: the
   * last thing a failing program says is usually why (issue 9, item 9).
   * Lines 0..k-1 (newest first) fit with their "; " separators; the
   * newest is kept, cut, even when it alone is too long. */
  unsigned k = 0;
  size_t need = 0;
  while (k < n) {
    size_t add = ends[k] - starts[k] + (k > 0 ? 2 : 0);
    if (k > 0 && need + add + 1 > len)
      break;
    need += add;
    k++;
  }
  n = k;

  size_t o = 0;
  for (unsigned i = n; i-- > 0; ) {
    if (o > 0) {
      if (o + 2 >= len) break;
      buf[o++] = ';';
      buf[o++] = ' ';
    }
    for (size_t j = starts[i]; j < ends[i] && o + 1 < len; j++) {
      unsigned char c = (unsigned char) e[j];
      buf[o++] = c < 0x20 || c == 0x7f ? '?' : (char) c;
    }
  }
  buf[o < len ? o : len - 1] = '\0';
  return buf;
}
