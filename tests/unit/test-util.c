/* Unit tests of the one-of-each helpers of lib/util (issue 10): the process
 * spawner every child of vmshadow is started with, the atomic file writer
 * every crash-safe file goes through, the string-vector lookup and the
 * first-error recorder of the copy and extract pipelines.
 *
 * Usage: test-util [test-name]; output is TAP.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "cleanup.h"
#include "first-error.h"
#include "fs-util.h"
#include "subprocess.h"
#include "vector.h"
#include "vmshadow/error.h"

/* A fresh directory per test, removed (with what is in it) after. */
static int
make_dir (void **state)
{
  char *d = strdup ("/tmp/vms-test-util-XXXXXX");
  if (d == NULL || mkdtemp (d) == NULL)
    return -1;
  *state = d;
  return 0;
}

static int
remove_dir (void **state)
{
  char *d = *state;
  DIR *dp = opendir (d);
  struct dirent *e;

  while (dp && (e = readdir (dp)) != NULL) {
    char p[4096];
    if (strcmp (e->d_name, ".") == 0 || strcmp (e->d_name, "..") == 0)
      continue;
    snprintf (p, sizeof p, "%s/%s", d, e->d_name);
    unlink (p);
  }
  if (dp)
    closedir (dp);
  rmdir (d);
  free (d);
  return 0;
}

/* The whole content of a small file, or NULL. */
static char *
slurp (const char *path)
{
  static char buf[4096];
  CLEANUP_CLOSE int fd = open (path, O_RDONLY | O_CLOEXEC);
  ssize_t n;

  if (fd == -1 || (n = read (fd, buf, sizeof buf - 1)) < 0)
    return NULL;
  buf[n] = '\0';
  return buf;
}

/* Names in dir other than . and .., joined by spaces. */
static const char *
list_dir (const char *dir)
{
  static char out[4096];
  DIR *dp = opendir (dir);
  struct dirent *e;

  out[0] = '\0';
  while (dp && (e = readdir (dp)) != NULL)
    if (strcmp (e->d_name, ".") != 0 && strcmp (e->d_name, "..") != 0) {
      strcat (out, out[0] ? " " : "");
      strcat (out, e->d_name);
    }
  if (dp)
    closedir (dp);
  return out;
}

static int
wait_status (pid_t pid)
{
  int status;
  while (waitpid (pid, &status, 0) == -1)
    if (errno != EINTR)
      return -1;
  return WIFEXITED (status) ? WEXITSTATUS (status) : 128 + WTERMSIG (status);
}

static void
spawned_child_has_only_its_three_descriptors (void **state)
{
  const char *dir = *state;
  char out[4096];
  /* A descriptor of ours without O_CLOEXEC must not reach the child. */
  int leak = open ("/dev/null", O_RDONLY);
  snprintf (out, sizeof out, "%s/out", dir);
  CLEANUP_CLOSE int ofd = open (out, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  /* ls itself, listing its own descriptors: a shell pipeline would show
   * its pipes for as long as the shell holds them (a race, seen failing). */
  const char *argv[] = { "/bin/ls", "/proc/self/fd", NULL };
  struct vms_spawn_options o = { .argv = argv, .stdin_fd = -1,
                                 .stdout_fd = ofd, .stderr_fd = -1 };

  assert_true (leak > 2 && ofd > 2);
  pid_t pid = vms_spawn (&o);
  assert_true (pid > 0);
  assert_int_equal (wait_status (pid), 0);
  close (leak);
  /* 0, 1, 2 and 3, the directory ls reads: nothing else. */
  assert_string_equal (slurp (out), "0\n1\n2\n3\n");
}

static void
spawned_child_leads_its_own_process_group_or_session (void **state)
{
  const char *dir = *state;
  char out[4096];
  const char *argv[] = { "/bin/sh", "-c",
                         "set -- $(cut -d' ' -f5,6 /proc/$$/stat); "
                         "echo \"$$ $1 $2\"", NULL };

  snprintf (out, sizeof out, "%s/ids", dir);
  for (int session = 0; session <= 1; session++) {
    CLEANUP_CLOSE int ofd = open (out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                                  0600);
    struct vms_spawn_options o = { .argv = argv, .stdin_fd = -1,
                                   .stdout_fd = ofd, .stderr_fd = -1,
                                   .new_session = session };
    pid_t pid = vms_spawn (&o);
    long p = 0, pgrp = 0, sid = 0;
    assert_true (pid > 0);
    assert_int_equal (wait_status (pid), 0);
    assert_int_equal (sscanf (slurp (out), "%ld %ld %ld", &p, &pgrp, &sid), 3);
    assert_int_equal (p, pid);
    assert_int_equal (pgrp, pid);         /* group leader either way */
    if (session)
      assert_int_equal (sid, pid);
    else
      assert_int_equal (sid, (long) getsid (0));
  }
}

static void
spawned_child_stderr_goes_to_the_file_named (void **state)
{
  const char *dir = *state;
  char log[4096];
  const char *argv[] = { "sh", "-c", "echo oops >&2", NULL };   /* via PATH */
  struct vms_spawn_options o = { .argv = argv, .stdin_fd = -1,
                                 .stdout_fd = -1, .stderr_path = log };
  struct stat st;

  snprintf (log, sizeof log, "%s/log", dir);
  pid_t pid = vms_spawn (&o);
  assert_true (pid > 0);
  assert_int_equal (wait_status (pid), 0);
  assert_string_equal (slurp (log), "oops\n");
  assert_int_equal (stat (log, &st), 0);
  assert_int_equal (st.st_mode & 0777, 0600);
}

static void
spawning_a_missing_program_fails_naming_it (void **state)
{
  const char *argv[] = { "/nonexistent/vms-no-such-program", NULL };
  struct vms_spawn_options o = { .argv = argv, .stdin_fd = -1,
                                 .stdout_fd = -1, .stderr_fd = -1 };

  assert_int_equal (vms_spawn (&o), -1);
  assert_int_equal (vms_get_errno (), ENOENT);
  assert_non_null (strstr (vms_get_error (), "vms-no-such-program"));
}

static void
atomic_write_replaces_the_whole_file_with_the_mode_asked (void **state)
{
  const char *dir = *state;
  CLEANUP_CLOSE int dfd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  char path[4096];
  struct stat st;
  mode_t old_umask = umask (077);

  snprintf (path, sizeof path, "%s/config", dir);
  assert_int_equal (vms_write_file_atomic (dfd, "config", "old\n", 4, 0600), 0);
  assert_int_equal (vms_write_file_atomic (dfd, "config", "new text\n", 9, 0644), 0);
  umask (old_umask);
  assert_string_equal (slurp (path), "new text\n");
  assert_int_equal (stat (path, &st), 0);
  assert_int_equal (st.st_mode & 0777, 0644);     /* not cut by the umask */
  assert_string_equal (list_dir (dir), "config"); /* no temporary left */
}

static void
atomic_write_by_path_replaces_a_symlink_instead_of_following_it (void **state)
{
  const char *dir = *state;
  char path[4096], victim[4096];

  snprintf (victim, sizeof victim, "%s/victim", dir);
  snprintf (path, sizeof path, "%s/doc", dir);
  assert_int_equal (vms_write_file_atomic (AT_FDCWD, victim, "keep\n", 5, 0600), 0);
  assert_int_equal (symlink ("victim", path), 0);
  assert_int_equal (vms_write_file_atomic (AT_FDCWD, path, "doc\n", 4, 0600), 0);
  assert_string_equal (slurp (victim), "keep\n");
  struct stat st;
  assert_int_equal (lstat (path, &st), 0);
  assert_true (S_ISREG (st.st_mode));
  assert_string_equal (slurp (path), "doc\n");
}

static void
atomic_file_noreplace_refuses_an_existing_file_and_leaves_nothing (void **state)
{
  const char *dir = *state;
  CLEANUP_CLOSE int dfd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  struct vms_atomic_file af;
  char path[4096];

  snprintf (path, sizeof path, "%s/disk", dir);
  assert_int_equal (vms_write_file_atomic (dfd, "disk", "first\n", 6, 0600), 0);
  assert_int_equal (vms_atomic_file_open (&af, dfd, "disk", 0600), 0);
  assert_int_equal (write (af.fd, "second\n", 7), 7);
  assert_int_equal (vms_atomic_file_commit (&af, 1), -1);
  assert_int_equal (vms_get_errno (), EEXIST);
  assert_non_null (strstr (vms_get_error (), "disk"));
  assert_string_equal (slurp (path), "first\n");
  assert_string_equal (list_dir (dir), "disk");
}

static void
atomic_file_discarded_leaves_the_old_file_unchanged (void **state)
{
  const char *dir = *state;
  struct vms_atomic_file af;
  char path[4096];

  snprintf (path, sizeof path, "%s/state", dir);
  assert_int_equal (vms_write_file_atomic (AT_FDCWD, path, "v1\n", 3, 0600), 0);
  assert_int_equal (vms_atomic_file_open (&af, AT_FDCWD, path, 0600), 0);
  /* The temporary is beside the target and reachable by its path. */
  assert_int_equal (strncmp (af.tmp_path, dir, strlen (dir)), 0);
  assert_int_equal (access (af.tmp_path, F_OK), 0);
  assert_int_equal (write (af.fd, "half", 4), 4);
  vms_atomic_file_discard (&af);
  vms_atomic_file_discard (&af);          /* twice is harmless */
  assert_string_equal (slurp (path), "v1\n");
  assert_string_equal (list_dir (dir), "state");
}

static void
atomic_write_into_a_missing_directory_fails_naming_it (void **state)
{
  const char *dir = *state;
  char path[4096];

  snprintf (path, sizeof path, "%s/no-such-dir/file", dir);
  assert_int_equal (vms_write_file_atomic (AT_FDCWD, path, "x", 1, 0600), -1);
  assert_int_equal (vms_get_errno (), ENOENT);
  assert_non_null (strstr (vms_get_error (), "no-such-dir/file"));
  assert_string_equal (list_dir (dir), "");
}

static void
string_vector_contains_finds_equal_strings_only (void **state)
{
  string_vector v = empty_vector;
  char a[] = "vda", b[] = "vdb";

  assert_false (string_vector_contains (&v, "vda"));
  assert_int_equal (string_vector_append (&v, a), 0);
  assert_int_equal (string_vector_append (&v, b), 0);
  assert_true (string_vector_contains (&v, "vdb"));
  assert_false (string_vector_contains (&v, "vd"));
  assert_false (string_vector_contains (&v, "vdbx"));
  string_vector_reset (&v);
}

static void __attribute__ ((format (printf, 3, 4)))
record (struct vms_first_error *fe, int errnum, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  vms_first_error_record (fe, errnum, fmt, ap);
  va_end (ap);
}

static void
first_error_keeps_the_cause_and_drops_its_consequences (void **state)
{
  struct vms_first_error fe = { 0 };

  vms_clear_error ();
  assert_int_equal (vms_first_error_raise (&fe), 0);
  assert_null (vms_get_error ());
  record (&fe, EIO, "reading %s failed", "disk0");
  record (&fe, ECANCELED, "worker %d stopped", 3);
  assert_int_equal (vms_first_error_raise (&fe), -1);
  assert_int_equal (vms_get_errno (), EIO);
  assert_string_equal (vms_get_error (), "reading disk0 failed");
}

#define TEST(name, fn) { name, fn, make_dir, remove_dir, NULL }

static const struct CMUnitTest tests[] = {
  TEST ("spawned-child-has-only-its-three-descriptors",
        spawned_child_has_only_its_three_descriptors),
  TEST ("spawned-child-leads-its-own-process-group-or-session",
        spawned_child_leads_its_own_process_group_or_session),
  TEST ("spawned-child-stderr-goes-to-the-file-named",
        spawned_child_stderr_goes_to_the_file_named),
  TEST ("spawning-a-missing-program-fails-naming-it",
        spawning_a_missing_program_fails_naming_it),
  TEST ("atomic-write-replaces-the-whole-file-with-the-mode-asked",
        atomic_write_replaces_the_whole_file_with_the_mode_asked),
  TEST ("atomic-write-by-path-replaces-a-symlink-instead-of-following-it",
        atomic_write_by_path_replaces_a_symlink_instead_of_following_it),
  TEST ("atomic-file-noreplace-refuses-an-existing-file-and-leaves-nothing",
        atomic_file_noreplace_refuses_an_existing_file_and_leaves_nothing),
  TEST ("atomic-file-discarded-leaves-the-old-file-unchanged",
        atomic_file_discarded_leaves_the_old_file_unchanged),
  TEST ("atomic-write-into-a-missing-directory-fails-naming-it",
        atomic_write_into_a_missing_directory_fails_naming_it),
  TEST ("string-vector-contains-finds-equal-strings-only",
        string_vector_contains_finds_equal_strings_only),
  TEST ("first-error-keeps-the-cause-and-drops-its-consequences",
        first_error_keeps_the_cause_and_drops_its_consequences),
};

int
main (int argc, char *argv[])
{
  cmocka_set_message_output (CM_OUTPUT_TAP);
  if (argc > 1)
    cmocka_set_test_filter (argv[1]);
  return cmocka_run_group_tests_name ("util", tests, NULL, NULL);
}
