/* Run a program as a child process, without a shell: feed it bytes on
 * stdin, capture its stdout (capped) and the tail of its stderr (capped,
 * for messages), and bound it by a time-out after which its whole process
 * group is killed (SIGTERM, then SIGKILL after a grace period). Used by
 * the exec writer and for qemu-img. Children that outlive the call (qemu-nbd,
 * the VM writer's guard) are started with vms_spawn.
 *
 * Safe to call from several threads at once: the child is started with
 * vms_spawn in a process group of its own. Writing to a child that does
 * not read its stdin never raises SIGPIPE in the caller (the signal is blocked on the calling thread while
 * writing and any pending instance is consumed); process-wide signal
 * dispositions are never changed. SIGCHLD must not be set to SIG_IGN by
 * the program (the child could not be waited for).
 */
#ifndef VMS_SUBPROCESS_H
#define VMS_SUBPROCESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* How vms_spawn starts a child: the one place where vmshadow sets up
 * posix_spawn. Every child gets every descriptor but 0, 1 and 2 closed,
 * (but 3, with pass_fd) closed, default signal dispositions, an empty
 * signal mask, and a process group (or a session) of its own. */
struct vms_spawn_options {
  /* The program and its arguments, NULL-terminated. argv[0] containing a
   * '/' is run as is, otherwise looked up in PATH. Required. */
  const char *const *argv;
  /* The whole environment, or NULL for ours. */
  char *const *envp;
  /* Working directory of the child, or NULL to inherit ours. */
  const char *cwd;
  /* Descriptors of ours that become the child's 0, 1 and 2 (a zeroed
   * struct passes ours on); -1 for /dev/null. */
  int stdin_fd, stdout_fd, stderr_fd;
  /* If set, the child's stderr is this file instead (created or
   * truncated, mode 0600). */
  const char *stderr_path;
  /* A descriptor of ours that becomes the child's descriptor 3 (0: none,
   * and the child has no descriptor 3): how a key reaches nbdkit (R28). */
  int pass_fd;
  /* 1: a session of its own (setsid; it keeps running when our terminal
   * or process group is signalled); 0: a process group of its own, with
   * the child as leader, so that kill (-pid) reaches its descendants. */
  int new_session;
};

/* Start a child. Returns its pid (the caller reaps it), or -1 with the
 * error set ("cannot run PROGRAM: REASON"). */
extern pid_t vms_spawn (const struct vms_spawn_options *opts);

struct vms_subprocess_options {
  /* The program and its arguments, NULL-terminated. argv[0] containing no
   * '/' is looked up in PATH. Required. */
  const char *const *argv;
  /* Extra environment variables ("NAME=value"), NULL-terminated, added to
   * (and overriding) the caller's environment. May be NULL. */
  const char *const *env;
  /* Working directory of the child, or NULL to inherit ours. */
  const char *cwd;
  /* Bytes written to the child's stdin, which is then closed. With input
   * NULL, the child's stdin is /dev/null. */
  const void *input;
  size_t input_len;
  /* Keep at most this many bytes of stdout (further output is read and
   * dropped, and out_truncated is set). 0 means 1 MiB. */
  size_t max_output;
  /* Keep the last this many bytes of stderr. 0 means 64 KiB. */
  size_t max_errors;
  /* Time-out in ms from the start; < 0 means none. When it passes, the
   * child's process group gets SIGTERM, then SIGKILL after kill_grace_ms
   * (0 means 1000 ms; < 0 means SIGKILL at once). */
  int64_t timeout_ms;
  int64_t kill_grace_ms;
  /* After the child exits, how long to keep reading output that processes
   * it left behind still write (they hold the pipes open); then the pipes
   * are closed and those processes are left alone. 0 means 200 ms. */
  int64_t linger_ms;
};

struct vms_subprocess_result {
  int exited;             /* 1: exited normally with exit_status */
  int exit_status;
  int term_signal;        /* > 0: killed by this signal */
  int timed_out;          /* 1: the time-out passed and the group was killed */
  char *out;              /* stdout, NUL-terminated (out_len excludes it) */
  size_t out_len;
  int out_truncated;
  char *err;              /* tail of stderr, NUL-terminated */
  size_t err_len;
  int err_truncated;
  int64_t elapsed_ms;     /* from start to the child's end */
};

/* Run the program to the end (or until it is killed at the time-out).
 * Returns 0 when the child ran, whatever its status (see *res), or -1 with
 * the error set when it could not be started (no such program, not
 * executable, out of resources). *res must be zero-initialised or reset;
 * release it with vms_subprocess_result_reset. */
extern int vms_subprocess_run (const struct vms_subprocess_options *opts,
                               struct vms_subprocess_result *res);

/* Free the buffers of a result and zero it. Accepts a zeroed result. */
extern void vms_subprocess_result_reset (struct vms_subprocess_result *res);

/* 1 if the child exited with status 0 (and was not timed out). */
extern int vms_subprocess_succeeded (const struct vms_subprocess_result *res);

/* How the child ended, in words: "exited with status 3", "killed by signal
 * 11 (SIGSEGV)", "timed out after 2000 ms and was killed". Writes into buf
 * (always NUL-terminated) and returns it. */
extern const char *vms_subprocess_describe (const struct vms_subprocess_result *res,
                                            char *buf, size_t len);

/* The last max_lines non-empty lines of the captured stderr, trimmed of
 * surrounding blank space, joined by "; " (control characters replaced by
 * '?'), as many of the newest as fit in buf (the newest alone cut if it
 * does not). Writes into buf and returns it; an empty string when there
 * was nothing. */
extern const char *vms_subprocess_error_tail (const struct vms_subprocess_result *res,
                                              unsigned max_lines,
                                              char *buf, size_t len);

#endif /* VMS_SUBPROCESS_H */
