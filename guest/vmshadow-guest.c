/* vmshadow-guest — the guest side of vmshadow's writer contract (issue 17;
 * R2, R3, R4, R5; docs/guest-writers.md).
 *
 * Runs inside a VM; C with only libc, linked statically, so one binary runs
 * on any x86-64 Linux guest. It is both
 *   - qemu-ga's fsfreeze hook ("vmshadow-guest freeze" / "thaw", argv[1] as
 *     qemu-ga and its fsfreeze-hook.d dispatcher pass it), and
 *   - the command the host runs through the agent's guest-exec
 *     ("identify", "run EVENT", "status").
 * Guest writers are the executables in /etc/vmshadow/guest-writers.d
 * ($VMSHADOW_GUEST_WRITERS_DIR overrides, for tests), run in name order as
 * "EXE EVENT" with the exec writers' conventions where they fit: own process
 * group, stdin /dev/null, VMSHADOW_PROTOCOL/EVENT/BUDGET_MS in the
 * environment, a time budget (SIGTERM, then SIGKILL 1 s later), exit 0 for
 * success, 75 a retryable veto, other non-zero a non-retryable veto; a veto's
 * reason is the reply's "message" or the last lines of stderr, its kind the
 * reply's "failure" or the exit status.
 *
 * Everything it prints is one JSON object on stdout (what the host reads);
 * every byte from a writer is escaped. The results of the hook's freeze and
 * thaw go to /run/vmshadow-guest (VMSHADOW_GUEST_STATE_DIR) for "status",
 * with the record of the writers that froze (each gets one thaw).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define GUEST_PROTOCOL 1
#define DEFAULT_WRITERS_DIR "/etc/vmshadow/guest-writers.d"
#define DEFAULT_STATE_DIR "/run/vmshadow-guest"
#define MAX_WRITERS 64
#define MAX_OUT (256 * 1024)    /* a writer's stdout kept (identify) */
#define MAX_ERR 4096            /* the end of its stderr kept */
#define MAX_MESSAGE 400

/* Default budgets (ms); prepare-backup may set the freeze budget for the
 * hook (the host passes --freeze-budget-ms). */
#define BUDGET_IDENTIFY 10000
#define BUDGET_PREPARE 60000
#define BUDGET_FREEZE 10000
#define BUDGET_THAW 10000
#define BUDGET_COMPLETE 60000
#define BUDGET_ABORT 30000

struct result {
  char name[256];
  const char *event;
  const char *result;           /* ok, veto, timeout, crashed, not-run */
  const char *failure;          /* NULL on ok */
  int status;                   /* exit status, or -signal */
  char message[MAX_MESSAGE + 1];
  long ms;
  char *out;                    /* stdout (malloc'd), NUL-terminated */
};

static const char *writers_dir, *state_dir;

/* ---- output: JSON with every byte escaped ---- */

static void
json_string (FILE *f, const char *s)
{
  fputc ('"', f);
  for (const unsigned char *p = (const unsigned char *) (s ? s : ""); *p; p++) {
    if (*p == '"' || *p == '\\')
      fprintf (f, "\\%c", *p);
    else if (*p == '\n')
      fputs ("\\n", f);
    else if (*p < 0x20 || *p >= 0x7f)
      fprintf (f, "\\u%04x", *p);  /* bytes above 0x7f as Latin-1 */
    else
      fputc (*p, f);
  }
  fputc ('"', f);
}

static void
json_result (FILE *f, const struct result *r, int with_out)
{
  fputs ("{\"writer\":", f);
  json_string (f, r->name);
  fputs (",\"event\":", f);
  json_string (f, r->event);
  fputs (",\"result\":", f);
  json_string (f, r->result);
  if (r->failure) {
    fputs (",\"failure\":", f);
    json_string (f, r->failure);
    fputs (",\"message\":", f);
    json_string (f, r->message);
  }
  fprintf (f, ",\"status\":%d,\"ms\":%ld", r->status, r->ms);
  if (with_out) {
    fputs (",\"output\":", f);
    json_string (f, r->out);
  }
  fputc ('}', f);
}

/* ---- the writers ---- */

static int
ignored_name (const char *n)
{
  static const char *const suffixes[] = {
    "~", ".dpkg-old", ".dpkg-new", ".dpkg-dist", ".dpkg-tmp", ".dpkg-bak",
    ".rpmsave", ".rpmnew", ".rpmorig", ".swp",
  };
  size_t len = strlen (n);
  if (n[0] == '.')
    return 1;
  for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
    size_t sl = strlen (suffixes[i]);
    if (len >= sl && strcmp (n + len - sl, suffixes[i]) == 0)
      return 1;
  }
  return 0;
}

static int
cmp_names (const void *a, const void *b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

/* The writers, in byte order of their names. A missing directory: none.
 * Only executable regular files (links followed) that not everyone may
 * write (we run as root). */
static size_t
list_writers (char **names)
{
  DIR *d = opendir (writers_dir);
  struct dirent *e;
  size_t n = 0;

  if (d == NULL)
    return 0;
  while ((e = readdir (d)) != NULL && n < MAX_WRITERS) {
    char path[4096];
    struct stat st;
    if (ignored_name (e->d_name))
      continue;
    snprintf (path, sizeof path, "%s/%s", writers_dir, e->d_name);
    if (stat (path, &st) == -1 || !S_ISREG (st.st_mode) ||
        !(st.st_mode & S_IXUSR))
      continue;
    if (st.st_mode & S_IWOTH) {
      fprintf (stderr, "vmshadow-guest: skipping %s: writable by everyone\n",
               path);
      continue;
    }
    if ((names[n] = strdup (e->d_name)) == NULL) {
      fprintf (stderr, "vmshadow-guest: skipping %s: out of memory\n", path);
      continue;
    }
    n++;
  }
  closedir (d);
  qsort (names, n, sizeof *names, cmp_names);
  return n;
}

static void
free_names (char **names, size_t n)
{
  for (size_t i = 0; i < n; i++)
    free (names[i]);
}

static long
now_ms (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* A string member of a flat JSON reply ("failure", "message"), unescaped
 * simply (\" \\ \n; other escapes kept as they are). */
static int
reply_string (const char *json, const char *key, char *out, size_t len)
{
  char pat[64];
  const char *p;
  size_t o = 0;

  if (json == NULL)
    return 0;
  snprintf (pat, sizeof pat, "\"%s\"", key);
  if ((p = strstr (json, pat)) == NULL)
    return 0;
  p += strlen (pat);
  while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
    p++;
  if (*p++ != ':')
    return 0;
  while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
    p++;
  if (*p++ != '"')
    return 0;
  for (; *p && *p != '"' && o + 1 < len; p++) {
    if (*p == '\\' && p[1]) {
      p++;
      out[o++] = *p == 'n' ? ' ' : *p;
    }
    else
      out[o++] = *p;
  }
  out[o] = '\0';
  return 1;
}

static const char *
known_failure (const char *s)
{
  static const char *const kinds[] = {
    "retryable", "non-retryable", "timeout", "out-of-resources",
    "inconsistent-snapshot",
  };
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
    if (strcmp (s, kinds[i]) == 0)
      return kinds[i];
  return NULL;
}

/* The last non-blank lines of stderr, joined by "; ", at most MAX_MESSAGE. */
static void
stderr_tail (const char *err, char *out)
{
  const char *lines[5];
  size_t nl = 0, o = 0;
  const char *p = err;

  out[0] = '\0';
  while (*p) {
    const char *e = strchr (p, '\n');
    size_t l = e ? (size_t) (e - p) : strlen (p);
    int blank = 1;
    for (size_t i = 0; i < l; i++)
      if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
        blank = 0;
    if (!blank) {
      if (nl == 5) {
        memmove (lines, lines + 1, 4 * sizeof *lines);
        nl = 4;
      }
      lines[nl++] = p;
    }
    p += l + (e ? 1 : 0);
  }
  for (size_t i = 0; i < nl && o < MAX_MESSAGE; i++) {
    const char *e = strchr (lines[i], '\n');
    size_t l = e ? (size_t) (e - lines[i]) : strlen (lines[i]);
    if (i && o + 2 < MAX_MESSAGE) {
      memcpy (out + o, "; ", 2);
      o += 2;
    }
    if (l > MAX_MESSAGE - o)
      l = MAX_MESSAGE - o;
    memcpy (out + o, lines[i], l);
    o += l;
  }
  out[o] = '\0';
}

/* A descriptor that becomes readable when process pid ends (pidfd_open,
 * Linux 5.3); -1 when the kernel has none. */
static int
open_pidfd (pid_t pid)
{
#ifdef SYS_pidfd_open
  long fd = syscall (SYS_pidfd_open, pid, 0);
  if (fd >= 0) {
    fcntl ((int) fd, F_SETFD, FD_CLOEXEC);
    return (int) fd;
  }
#endif
  (void) pid;
  return -1;
}

/* A writer's time budget (R3): SIGTERM to its process group at the deadline,
 * SIGKILL a second later (killed: 0, 1, 2); wait (ms, how long the caller
 * means to sleep) shortened to the next of those moments. */
static void
enforce_budget (pid_t pid, long now, long deadline, int *killed,
                long *kill_at, long *wait)
{
  if (!*killed && now >= deadline) {
    kill (-pid, SIGTERM);
    *killed = 1;
    *kill_at = now + 1000;
  }
  else if (*killed == 1 && now >= *kill_at) {
    kill (-pid, SIGKILL);
    *killed = 2;
  }
  if (!*killed && deadline - now < *wait)
    *wait = deadline - now;
  if (*killed == 1 && *kill_at - now < *wait)
    *wait = *kill_at - now;
}

/* Run "EXE EVENT" within budget_ms; fill r. */
static void
run_writer (const char *name, const char *event, long budget_ms,
            struct result *r)
{
  char path[4096], budget[32], *out = calloc (1, MAX_OUT + 1);
  char err[MAX_ERR + 1];
  size_t olen = 0, elen = 0;
  int po[2], pe[2], status = 0, killed = 0;
  long t0 = now_ms (), deadline = t0 + budget_ms, kill_at = 0;
  pid_t pid;

  memset (r, 0, sizeof *r);
  snprintf (r->name, sizeof r->name, "%s", name);
  r->event = event;
  r->out = out;
  err[0] = '\0';
  snprintf (path, sizeof path, "%s/%s", writers_dir, name);
  snprintf (budget, sizeof budget, "%ld", budget_ms);
  if (out == NULL || pipe2 (po, O_CLOEXEC) == -1 ||
      pipe2 (pe, O_CLOEXEC) == -1) {
    r->result = "veto";
    r->failure = "out-of-resources";
    snprintf (r->message, sizeof r->message, "cannot run it: %s",
              strerror (errno));
    return;
  }
  pid = fork ();
  if (pid == 0) {
    int null = open ("/dev/null", O_RDONLY);
    sigset_t none;
    setpgid (0, 0);
    dup2 (null, 0);
    dup2 (po[1], 1);
    dup2 (pe[1], 2);
    sigemptyset (&none);
    sigprocmask (SIG_SETMASK, &none, NULL);
    signal (SIGPIPE, SIG_DFL);
    if (chdir ("/") == -1)
      _exit (127);
    setenv ("VMSHADOW_PROTOCOL", "1", 1);
    setenv ("VMSHADOW_EVENT", event, 1);
    setenv ("VMSHADOW_BUDGET_MS", budget, 1);
    setenv ("VMSHADOW_WRITER_NAME", name, 1);
    setenv ("VMSHADOW_GUEST", "1", 1);
    execl (path, path, event, (char *) NULL);
    fprintf (stderr, "cannot execute %s: %s\n", path, strerror (errno));
    _exit (127);
  }
  close (po[1]);
  close (pe[1]);
  if (pid == -1) {
    close (po[0]);
    close (pe[0]);
    r->result = "veto";
    r->failure = "out-of-resources";
    snprintf (r->message, sizeof r->message, "cannot fork: %s",
              strerror (errno));
    return;
  }
  setpgid (pid, pid);
  /* Issue 15/17: the writer's exit is seen the moment it happens (a pidfd
   * in the poll set), not at the next 100 ms poll or 10 ms sleep: inside
   * the freeze window every writer's end was late by up to that much. A
   * kernel without pidfd_open (before 5.3) gets 5 ms polls instead. */
  int pidfd = open_pidfd (pid);
  struct pollfd pf[3] = { { po[0], POLLIN, 0 }, { pe[0], POLLIN, 0 },
                          { pidfd, POLLIN, 0 } };
  int open_fds = 2, exited = 0;
  while (open_fds > 0) {
    long now = now_ms (), wait = pidfd >= 0 ? 1000 : 5;
    /* A writer that exited but left a helper holding its stdout/stderr
     * (a lock kept across the freeze) is done: read what is there, stop. */
    if (!exited && waitpid (pid, &status, WNOHANG) == pid) {
      exited = 1;
      pf[2].fd = -1;
    }
    if (exited)
      wait = 0;
    enforce_budget (pid, now, deadline, &killed, &kill_at, &wait);
    int ready = poll (pf, 3, (int) (wait > 0 ? wait : 0));
    if (ready < 0 && errno != EINTR)
      break;
    if (exited && ready == 0)
      break;
    for (int i = 0; i < 2; i++) {
      char buf[4096];
      ssize_t n;
      if (pf[i].fd < 0 || !(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
        continue;
      n = read (pf[i].fd, buf, sizeof buf);
      if (n <= 0) {
        close (pf[i].fd);
        pf[i].fd = -1;
        open_fds--;
        continue;
      }
      if (i == 0) {
        size_t k = (size_t) n;
        if (olen + k > MAX_OUT)
          k = MAX_OUT - olen;
        memcpy (out + olen, buf, k);
        olen += k;
      }
      else {
        /* keep the end */
        if ((size_t) n >= MAX_ERR) {
          memcpy (err, buf + n - MAX_ERR, MAX_ERR);
          elen = MAX_ERR;
        }
        else {
          if (elen + (size_t) n > MAX_ERR) {
            size_t drop = elen + (size_t) n - MAX_ERR;
            memmove (err, err + drop, elen - drop);
            elen -= drop;
          }
          memcpy (err + elen, buf, (size_t) n);
          elen += (size_t) n;
        }
      }
    }
  }
  err[elen] = '\0';
  for (int i = 0; i < 2; i++)
    if (pf[i].fd >= 0)
      close (pf[i].fd);
  /* The pipes closed (the files of a process close just before it becomes
   * a zombie): wait for the process, still within the budget. */
  while (!exited && waitpid (pid, &status, WNOHANG) == 0) {
    long now = now_ms (), wait = pidfd >= 0 ? 1000 : 5;
    enforce_budget (pid, now, deadline, &killed, &kill_at, &wait);
    if (pidfd >= 0) {
      struct pollfd p = { pidfd, POLLIN, 0 };
      poll (&p, 1, (int) (wait > 0 ? wait : 0));
    }
    else
      usleep ((useconds_t) (wait > 0 ? wait : 0) * 1000);
  }
  if (pidfd >= 0)
    close (pidfd);
  if (killed)
    kill (-pid, SIGKILL);       /* anything left of its group */
  r->ms = now_ms () - t0;
  out[olen] = '\0';
  if (killed) {
    r->result = "timeout";
    r->failure = "timeout";
    r->status = WIFSIGNALED (status) ? -WTERMSIG (status) : WEXITSTATUS (status);
    char tail[MAX_MESSAGE + 1];
    stderr_tail (err, tail);
    snprintf (r->message, sizeof r->message, "still running after its "
              "budget of %ld ms; killed%s%s", budget_ms, *tail ? " (stderr: " : "",
              *tail ? tail : "");
    if (*tail && strlen (r->message) < MAX_MESSAGE)
      strcat (r->message, ")");
    return;
  }
  if (WIFSIGNALED (status)) {
    r->result = "crashed";
    r->failure = "non-retryable";
    r->status = -WTERMSIG (status);
    snprintf (r->message, sizeof r->message, "crashed (signal %d, %s)",
              WTERMSIG (status), strsignal (WTERMSIG (status)));
    return;
  }
  r->status = WEXITSTATUS (status);
  if (r->status == 0) {
    r->result = "ok";
    return;
  }
  char kind[64] = "";
  r->result = "veto";
  r->failure = r->status == 75 ? "retryable" : "non-retryable";
  if (reply_string (out, "failure", kind, sizeof kind) && known_failure (kind))
    r->failure = known_failure (kind);
  if (!reply_string (out, "message", r->message, sizeof r->message) ||
      r->message[0] == '\0')
    stderr_tail (err, r->message);
  if (r->message[0] == '\0')
    snprintf (r->message, sizeof r->message, "exited with status %d",
              r->status);
}

/* ---- state kept between the host's calls and the hook ---- */

static void
state_path (char *buf, size_t len, const char *file)
{
  snprintf (buf, len, "%s/%s", state_dir, file);
}

/* Write the results of the hook's event to state_dir/<event>.json. */
static void
save_results (const char *event, const struct result *rs, size_t n,
              int vetoed)
{
  char path[4096], tmp[4200];
  FILE *f;
  mkdir (state_dir, 0700);
  state_path (path, sizeof path, event);
  strncat (path, ".json", sizeof path - strlen (path) - 1);
  snprintf (tmp, sizeof tmp, "%s.tmp", path);
  if ((f = fopen (tmp, "w")) == NULL)
    return;
  fprintf (f, "{\"event\":\"%s\",\"vetoed\":%s,\"writers\":[", event,
           vetoed ? "true" : "false");
  for (size_t i = 0; i < n; i++) {
    if (i)
      fputc (',', f);
    json_result (f, &rs[i], 0);
  }
  fputs ("]}\n", f);
  if (fclose (f) == 0)
    rename (tmp, path);
}

static long
freeze_budget (void)
{
  char path[4096], buf[32] = "";
  FILE *f;
  long v;
  state_path (path, sizeof path, "freeze-budget-ms");
  if ((f = fopen (path, "r")) == NULL)
    return BUDGET_FREEZE;
  if (fgets (buf, sizeof buf, f) == NULL)
    buf[0] = '\0';
  fclose (f);
  v = strtol (buf, NULL, 10);
  return v > 0 && v <= 600000 ? v : BUDGET_FREEZE;
}

/* The writers that froze and are owed a thaw, one name a line, in freeze
 * order (state_dir/frozen): written after each writer's successful freeze,
 * removed when they were thawed. qemu-ga runs the thaw hook on every
 * guest-fsfreeze-thaw, also the one the host sends after a refused freeze
 * (writers/libvirt/vm-online.c thaws whatever happened, as qemu-ga may
 * have frozen some filesystems): the hook's veto path has thawed those
 * writers already, and without this record they got a second thaw, and
 * the vetoing writer one it was not owed. Returns -1 if it cannot be
 * written (the freeze is then refused: a writer must not stay frozen). */
static int
save_frozen (char **names, size_t n)
{
  char path[4096], tmp[4200];
  FILE *f;
  mkdir (state_dir, 0700);
  state_path (path, sizeof path, "frozen");
  if (n == 0)
    return unlink (path) == -1 && errno != ENOENT ? -1 : 0;
  snprintf (tmp, sizeof tmp, "%s.tmp", path);
  if ((f = fopen (tmp, "w")) == NULL)
    return -1;
  for (size_t i = 0; i < n; i++)
    fprintf (f, "%s\n", names[i]);
  if (fflush (f) != 0 || fsync (fileno (f)) != 0) {
    fclose (f);
    unlink (tmp);
    return -1;
  }
  if (fclose (f) != 0 || rename (tmp, path) == -1) {
    unlink (tmp);
    return -1;
  }
  return 0;
}

/* The record's names (strdup'd), checked: a plain file name each. None
 * when there is no record: nothing is frozen. */
static size_t
load_frozen (char **names)
{
  char path[4096], line[512];
  FILE *f;
  size_t n = 0;
  state_path (path, sizeof path, "frozen");
  if ((f = fopen (path, "r")) == NULL)
    return 0;
  while (n < MAX_WRITERS && fgets (line, sizeof line, f) != NULL) {
    size_t l = strcspn (line, "\n");
    line[l] = '\0';
    if (l == 0 || l > 255 || strchr (line, '/') || ignored_name (line))
      continue;
    if ((names[n] = strdup (line)) != NULL)
      n++;
  }
  fclose (f);
  return n;
}

/* ---- the commands ---- */

/* The hook: freeze in name order, recording each writer that froze; the
 * first veto thaws those already frozen (qemu-ga sends no thaw after a
 * refused freeze, and the thaw the host sends all the same finds nobody
 * recorded) and refuses; thaw, in reverse order, exactly the writers
 * recorded as frozen: each writer that froze gets one thaw. */
static int
hook (const char *event)
{
  char *names[MAX_WRITERS];
  size_t n, done = 0;
  struct result rs[MAX_WRITERS * 2];
  int freeze = strcmp (event, "freeze") == 0, vetoed = 0;
  long budget = freeze ? freeze_budget () : BUDGET_THAW;

  if (freeze) {
    n = list_writers (names);
    for (size_t i = 0; i < n; i++) {
      size_t frozen = i;        /* the writers before it froze */
      struct result *r = &rs[done++];
      run_writer (names[i], "freeze", budget, r);
      if (strcmp (r->result, "ok") == 0) {
        if (save_frozen (names, i + 1) == 0)
          continue;
        r->result = "veto";
        r->failure = "out-of-resources";
        snprintf (r->message, sizeof r->message, "froze, but the record of "
                  "it could not be written in %s: %s", state_dir,
                  strerror (errno));
        frozen = i + 1;         /* it froze: it is thawed too */
      }
      vetoed = 1;
      for (size_t k = frozen; k-- > 0;)
        run_writer (names[k], "thaw", BUDGET_THAW, &rs[done++]);
      save_frozen (names, 0);
      break;
    }
    save_results ("freeze", rs, done, vetoed);
  }
  else {
    n = load_frozen (names);
    for (size_t i = n; i-- > 0;)
      run_writer (names[i], "thaw", budget, &rs[done++]);
    save_frozen (names, 0);
    /* A thaw with nobody frozen (after a veto) keeps the freeze's
     * record, whose thaws are there. */
    if (n > 0)
      save_results ("thaw", rs, done, 0);
  }
  for (size_t i = 0; i < done; i++) {
    if (strcmp (rs[i].result, "ok") != 0)
      fprintf (stderr, "vmshadow-guest: writer %s %s: %s\n", rs[i].name,
               rs[i].event, rs[i].message);
    free (rs[i].out);
  }
  free_names (names, n);
  return vetoed ? 1 : 0;
}

static int
identify (void)
{
  char *names[MAX_WRITERS];
  size_t n = list_writers (names);

  printf ("{\"protocol\":%d,\"writers_dir\":", GUEST_PROTOCOL);
  json_string (stdout, writers_dir);
  printf (",\"writers\":[");
  for (size_t i = 0; i < n; i++) {
    struct result r;
    run_writer (names[i], "identify", BUDGET_IDENTIFY, &r);
    if (i)
      putchar (',');
    json_result (stdout, &r, 1);
    free (r.out);
  }
  printf ("]}\n");
  free_names (names, n);
  return 0;
}

/* run EVENT [--budget-ms N] [--freeze-budget-ms N]: prepare-backup stops
 * at the first veto (the host then sends abort to all); backup-complete
 * and abort reach every writer. */
static int
run_event (int argc, char **argv)
{
  const char *event = argv[0];
  char *names[MAX_WRITERS];
  size_t n;
  long budget = 0, fbudget = 0;
  int prepare = strcmp (event, "prepare-backup") == 0, vetoed = 0;

  if (!prepare && strcmp (event, "backup-complete") != 0 &&
      strcmp (event, "abort") != 0) {
    fprintf (stderr, "vmshadow-guest: run: unknown event %s "
             "(prepare-backup, backup-complete, abort)\n", event);
    return 2;
  }
  for (int i = 1; i + 1 < argc; i += 2) {
    long v = strtol (argv[i + 1], NULL, 10);
    if (v <= 0 || v > 3600000) {
      fprintf (stderr, "vmshadow-guest: %s must be 1..3600000\n", argv[i]);
      return 2;
    }
    if (strcmp (argv[i], "--budget-ms") == 0)
      budget = v;
    else if (strcmp (argv[i], "--freeze-budget-ms") == 0)
      fbudget = v;
    else {
      fprintf (stderr, "vmshadow-guest: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  if (budget == 0)
    budget = prepare ? BUDGET_PREPARE
      : strcmp (event, "abort") == 0 ? BUDGET_ABORT : BUDGET_COMPLETE;
  if (prepare) {
    /* A new session: forget the last one's freeze and thaw. */
    char path[4096];
    FILE *f;
    mkdir (state_dir, 0700);
    state_path (path, sizeof path, "freeze.json");
    unlink (path);
    state_path (path, sizeof path, "thaw.json");
    unlink (path);
    state_path (path, sizeof path, "freeze-budget-ms");
    if (fbudget == 0)
      unlink (path);
    else if ((f = fopen (path, "w")) != NULL) {
      fprintf (f, "%ld\n", fbudget);
      fclose (f);
    }
  }
  n = list_writers (names);
  printf ("{\"protocol\":%d,\"event\":", GUEST_PROTOCOL);
  json_string (stdout, event);
  printf (",\"writers\":[");
  for (size_t i = 0; i < n; i++) {
    struct result r;
    if (vetoed) {
      memset (&r, 0, sizeof r);
      snprintf (r.name, sizeof r.name, "%s", names[i]);
      r.event = event;
      r.result = "not-run";
    }
    else
      run_writer (names[i], event, budget, &r);
    if (i)
      putchar (',');
    json_result (stdout, &r, 0);
    if (prepare && strcmp (r.result, "ok") != 0 && strcmp (r.result, "not-run") != 0)
      vetoed = 1;
    free (r.out);
  }
  printf ("],\"vetoed\":%s}\n", vetoed ? "true" : "false");
  free_names (names, n);
  return 0;
}

static void
print_file (const char *file)
{
  char path[4096], buf[8192];
  FILE *f;
  size_t n;
  state_path (path, sizeof path, file);
  if ((f = fopen (path, "r")) == NULL) {
    fputs ("null", stdout);
    return;
  }
  n = fread (buf, 1, sizeof buf - 1, f);
  fclose (f);
  buf[n] = '\0';
  while (n && (buf[n - 1] == '\n'))
    buf[--n] = '\0';
  /* Written by us, but check it is an object before passing it on. */
  if (n == 0 || buf[0] != '{' || buf[n - 1] != '}')
    fputs ("null", stdout);
  else
    fputs (buf, stdout);
}

static int
status (void)
{
  printf ("{\"protocol\":%d,\"freeze\":", GUEST_PROTOCOL);
  print_file ("freeze.json");
  printf (",\"thaw\":");
  print_file ("thaw.json");
  printf ("}\n");
  return 0;
}

static void
usage (FILE *f)
{
  fprintf (f,
           "Usage: vmshadow-guest freeze|thaw   (qemu-ga's fsfreeze hook)\n"
           "       vmshadow-guest identify\n"
           "       vmshadow-guest run prepare-backup|backup-complete|abort\n"
           "                      [--budget-ms N] [--freeze-budget-ms N]\n"
           "       vmshadow-guest status\n"
           "       vmshadow-guest version\n"
           "Guest writers: the executables in %s.\n", DEFAULT_WRITERS_DIR);
}

int
main (int argc, char **argv)
{
  const char *e;

  writers_dir = (e = getenv ("VMSHADOW_GUEST_WRITERS_DIR")) && *e ? e
    : DEFAULT_WRITERS_DIR;
  state_dir = (e = getenv ("VMSHADOW_GUEST_STATE_DIR")) && *e ? e
    : DEFAULT_STATE_DIR;
  signal (SIGPIPE, SIG_IGN);
  if (argc < 2) {
    usage (stderr);
    return 2;
  }
  if (strcmp (argv[1], "freeze") == 0 || strcmp (argv[1], "thaw") == 0)
    return hook (argv[1]);
  if (strcmp (argv[1], "identify") == 0)
    return identify ();
  if (strcmp (argv[1], "run") == 0 && argc >= 3)
    return run_event (argc - 2, argv + 2);
  if (strcmp (argv[1], "status") == 0)
    return status ();
  if (strcmp (argv[1], "version") == 0) {
    printf ("{\"protocol\":%d}\n", GUEST_PROTOCOL);
    return 0;
  }
  if (strcmp (argv[1], "--help") == 0 || strcmp (argv[1], "-h") == 0) {
    usage (stdout);
    return 0;
  }
  usage (stderr);
  return 2;
}
