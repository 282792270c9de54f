/* Unit test of lib/util/subprocess.c: exit status, signals, stdin that the
 * child does not read (no SIGPIPE for us), capped stdout and stderr, the
 * time-out that kills the whole process group including grandchildren and
 * children that ignore SIGTERM, no descriptor leaks, environment and
 * working directory. TAP output. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "subprocess.h"
#include "vmshadow/error.h"
#include "tap.h"



static int
run (struct vms_subprocess_result *r, const char *const *argv,
     const char *input, size_t input_len, int64_t timeout_ms)
{
  struct vms_subprocess_options o = {
    .argv = argv, .input = input, .input_len = input_len,
    .timeout_ms = timeout_ms,
  };
  return vms_subprocess_run (&o, r);
}

/* 1 if pid is gone (or a zombie that is no longer ours to wait for). */
static int
process_gone (pid_t pid)
{
  for (int i = 0; i < 200; i++) {
    char path[64], buf[256];
    snprintf (path, sizeof path, "/proc/%d/stat", (int) pid);
    FILE *fp = fopen (path, "r");
    if (fp == NULL)
      return 1;
    size_t n = fread (buf, 1, sizeof buf - 1, fp);
    fclose (fp);
    buf[n] = '\0';
    const char *rp = strrchr (buf, ')');
    if (rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X'))
      return 1;
    usleep (10000);
  }
  return 0;
}

static void
test_exit_status (void)
{
  struct vms_subprocess_result r = { 0 };
  const char *argv[] = { "/bin/sh", "-c", "exit 3", NULL };
  char d[128];
  ok (run (&r, argv, NULL, 0, 5000) == 0 && r.exited && r.exit_status == 3 &&
      !r.timed_out && r.term_signal == 0 && !vms_subprocess_succeeded (&r),
      "exit status 3 is reported");
  ok (strcmp (vms_subprocess_describe (&r, d, sizeof d), "exited with status 3") == 0,
      "describe says \"%s\"", d);
  vms_subprocess_result_reset (&r);

  const char *argv0[] = { "true", NULL };   /* looked up in PATH */
  ok (run (&r, argv0, NULL, 0, 5000) == 0 && vms_subprocess_succeeded (&r),
      "a program without a slash is found in PATH and succeeds");
  vms_subprocess_result_reset (&r);
}

static void
test_stdin_stdout (void)
{
  struct vms_subprocess_result r = { 0 };
  const char *argv[] = { "cat", NULL };
  ok (run (&r, argv, "hello\nworld", 11, 5000) == 0 && r.exited &&
      r.exit_status == 0 && r.out_len == 11 &&
      strcmp (r.out, "hello\nworld") == 0 && !r.out_truncated,
      "stdin bytes reach the child and its stdout is captured");
  vms_subprocess_result_reset (&r);

  /* 4 MiB through cat: both directions must flow at once. */
  size_t big = 4u << 20;
  char *in = malloc (big);
  for (size_t i = 0; i < big; i++) in[i] = (char) ('a' + i % 26);
  struct vms_subprocess_options o = {
    .argv = argv, .input = in, .input_len = big, .timeout_ms = 20000,
    .max_output = big,
  };
  ok (vms_subprocess_run (&o, &r) == 0 && r.exited && r.exit_status == 0 &&
      r.out_len == big && memcmp (r.out, in, big) == 0,
      "4 MiB piped through cat come back unchanged (no deadlock)");
  vms_subprocess_result_reset (&r);
  free (in);
}

static void
test_unread_stdin (void)
{
  struct vms_subprocess_result r = { 0 };
  size_t big = 1u << 20;
  char *in = calloc (1, big);
  const char *argv[] = { "/bin/sh", "-c", "exit 0", NULL };
  /* SIGPIPE has its default disposition here: if it reached us, we die. */
  signal (SIGPIPE, SIG_DFL);
  ok (run (&r, argv, in, big, 5000) == 0 && vms_subprocess_succeeded (&r),
      "a child that does not read 1 MiB of stdin does not raise SIGPIPE in us");
  sigset_t pending;
  sigpending (&pending);
  ok (!sigismember (&pending, SIGPIPE), "no SIGPIPE is left pending");
  sigset_t mask;
  pthread_sigmask (SIG_SETMASK, NULL, &mask);
  ok (!sigismember (&mask, SIGPIPE), "the caller's signal mask is restored");
  vms_subprocess_result_reset (&r);
  free (in);
}

static void
test_output_caps (void)
{
  struct vms_subprocess_result r = { 0 };
  const char *argv[] = { "head", "-c", "3000000", "/dev/zero", NULL };
  struct vms_subprocess_options o = {
    .argv = argv, .timeout_ms = 10000, .max_output = 1000,
  };
  ok (vms_subprocess_run (&o, &r) == 0 && vms_subprocess_succeeded (&r) &&
      r.out_len == 1000 && r.out_truncated,
      "stdout is capped at max_output, the rest is drained, and the child ends normally");
  vms_subprocess_result_reset (&r);

  const char *argv2[] = {
    "/bin/sh", "-c",
    "i=1; while [ $i -le 1000 ]; do echo \"line$i\" >&2; i=$((i+1)); done; "
    "echo '   ' >&2; exit 1", NULL };
  struct vms_subprocess_options o2 = {
    .argv = argv2, .timeout_ms = 10000, .max_errors = 100,
  };
  char tail[256];
  ok (vms_subprocess_run (&o2, &r) == 0 && r.exited && r.exit_status == 1 &&
      r.err_len == 100 && r.err_truncated &&
      strstr (r.err, "line1000\n") != NULL,
      "stderr keeps its last max_errors bytes");
  vms_subprocess_error_tail (&r, 3, tail, sizeof tail);
  ok (strcmp (tail, "line998; line999; line1000") == 0,
      "the error tail is the last 3 non-blank lines: \"%s\"", tail);
  vms_subprocess_error_tail (&r, 3, tail, 10);
  ok (strcmp (tail, "line1000") == 0,
      "a tail cut to the buffer keeps the newest line, not the oldest: \"%s\"", tail);
  vms_subprocess_error_tail (&r, 3, tail, 20);
  ok (strcmp (tail, "line999; line1000") == 0,
      "a tail cut to the buffer keeps the newest lines that fit: \"%s\"", tail);
  vms_subprocess_error_tail (&r, 3, tail, 6);
  ok (strcmp (tail, "line1") == 0,
      "a newest line longer than the buffer is cut: \"%s\"", tail);
  vms_subprocess_result_reset (&r);
}

static void
test_signal (void)
{
  struct vms_subprocess_result r = { 0 };
  const char *argv[] = { "/bin/sh", "-c", "kill -SEGV $$", NULL };
  char d[128];
  ok (run (&r, argv, NULL, 0, 5000) == 0 && !r.exited && r.term_signal == SIGSEGV &&
      !r.timed_out, "a child killed by SIGSEGV is reported as such");
  vms_subprocess_describe (&r, d, sizeof d);
  ok (strstr (d, "signal 11") != NULL && strstr (d, "SEGV") != NULL,
      "describe says \"%s\"", d);
  vms_subprocess_result_reset (&r);
}

static void
test_timeout_kills_group (const char *tmp)
{
  struct vms_subprocess_result r = { 0 };
  char script[512], pidfile[256], d[128];
  snprintf (pidfile, sizeof pidfile, "%s/grandchild.pid", tmp);
  /* The grandchild holds our stdout open and would outlive its parent. */
  snprintf (script, sizeof script,
            "sleep 1000 & echo $! > %s; echo started; sleep 1000", pidfile);
  const char *argv[] = { "/bin/sh", "-c", script, NULL };
  int64_t t0 = vms_now_ms ();
  int rc = run (&r, argv, NULL, 0, 300);
  int64_t took = vms_now_ms () - t0;
  ok (rc == 0 && r.timed_out && !vms_subprocess_succeeded (&r),
      "a child that overruns its time-out is reported as timed out");
  ok (took >= 300 && took < 2500, "it is killed soon after the time-out (%lld ms)",
      (long long) took);
  ok (r.out && strcmp (r.out, "started\n") == 0,
      "output written before the time-out is kept");
  vms_subprocess_describe (&r, d, sizeof d);
  ok (strstr (d, "timed out") != NULL, "describe says \"%s\"", d);

  FILE *fp = fopen (pidfile, "r");
  int gpid = 0;
  if (fp) {
    if (fscanf (fp, "%d", &gpid) != 1) gpid = 0;
    fclose (fp);
  }
  ok (gpid > 0 && process_gone (gpid),
      "the grandchild (pid %d) was killed with the group", gpid);
  if (gpid > 0) kill (gpid, SIGKILL);
  unlink (pidfile);
  vms_subprocess_result_reset (&r);
}

static void
test_sigterm_ignored (void)
{
  struct vms_subprocess_result r = { 0 };
  const char *argv[] = {
    "/bin/sh", "-c", "trap '' TERM; sleep 1000; sleep 1000", NULL };
  struct vms_subprocess_options o = {
    .argv = argv, .timeout_ms = 200, .kill_grace_ms = 300,
  };
  int64_t t0 = vms_now_ms ();
  int rc = vms_subprocess_run (&o, &r);
  int64_t took = vms_now_ms () - t0;
  ok (rc == 0 && r.timed_out && r.term_signal == SIGKILL,
      "a child that ignores SIGTERM gets SIGKILL after the grace period");
  ok (took >= 450 && took < 2500, "after time-out + grace (%lld ms)",
      (long long) took);
  vms_subprocess_result_reset (&r);
}

static void
test_not_found (void)
{
  struct vms_subprocess_result r = { 0 };
  const char *argv[] = { "/nonexistent/vmshadow-test-program", NULL };
  vms_clear_error ();
  int rc = run (&r, argv, "x", 1, 1000);
  ok (rc == -1 && vms_get_error () &&
      strstr (vms_get_error (), "/nonexistent/vmshadow-test-program") &&
      vms_get_errno () == ENOENT,
      "a missing program fails to start with a message naming it: %s",
      vms_get_error () ? vms_get_error () : "(none)");
  vms_subprocess_result_reset (&r);
}

static void
test_no_fd_leak (void)
{
  struct vms_subprocess_result r = { 0 };
  /* A descriptor without O_CLOEXEC, as a careless library might leave. */
  int fd = open ("/dev/null", O_RDONLY);
  int high = fd >= 0 ? dup2 (fd, 100) : -1;
  const char *argv[] = {
    "/bin/sh", "-c",
    "for n in 0 1 2 3 4 5 6 7 8 9 100; do "
    "  [ -e /proc/$$/fd/$n ] && printf '%s ' $n; done; :", NULL };
  int rc = run (&r, argv, NULL, 0, 5000);
  ok (high == 100 && rc == 0 && vms_subprocess_succeeded (&r) &&
      strcmp (r.out, "0 1 2 ") == 0,
      "the child has only descriptors 0, 1, 2 (got \"%s\")", r.out ? r.out : "");
  close (fd);
  close (high);
  vms_subprocess_result_reset (&r);
}

static void
test_env_cwd_linger (const char *tmp)
{
  struct vms_subprocess_result r = { 0 };
  const char *argv[] = { "/bin/sh", "-c", "echo \"$FOO $HOME_X\"; pwd", NULL };
  const char *env[] = { "FOO=bar", "HOME_X=y", NULL };
  setenv ("FOO", "old", 1);
  struct vms_subprocess_options o = {
    .argv = argv, .env = env, .cwd = tmp, .timeout_ms = 5000,
  };
  char want[512];
  snprintf (want, sizeof want, "bar y\n%s\n", tmp);
  int rc0 = vms_subprocess_run (&o, &r);
  ok (rc0 == 0 && vms_subprocess_succeeded (&r) && strcmp (r.out, want) == 0,
      "extra environment overrides ours, and cwd is set");
  vms_subprocess_result_reset (&r);

  /* A background process left holding stdout must not hold us up. */
  const char *argv2[] = { "/bin/sh", "-c", "sleep 5 & echo $!", NULL };
  int64_t t0 = vms_now_ms ();
  int rc = run (&r, argv2, NULL, 0, 10000);
  int64_t took = vms_now_ms () - t0;
  ok (rc == 0 && vms_subprocess_succeeded (&r) && !r.timed_out && took < 2000,
      "a process left behind holding stdout does not delay the result (%lld ms)",
      (long long) took);
  if (rc == 0 && r.out && atoi (r.out) > 0)
    kill (atoi (r.out), SIGKILL);
  vms_subprocess_result_reset (&r);
}

int
main (void)
{
  char tmp[] = "/tmp/vmshadow-subprocess-XXXXXX";
  if (mkdtemp (tmp) == NULL) {
    perror ("mkdtemp");
    return 1;
  }
  test_exit_status ();
  test_stdin_stdout ();
  test_unread_stdin ();
  test_output_caps ();
  test_signal ();
  test_timeout_kills_group (tmp);
  test_sigterm_ignored ();
  test_not_found ();
  test_no_fd_leak ();
  test_env_cwd_linger (tmp);
  rmdir (tmp);
  return tap_done ();
}
