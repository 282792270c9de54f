/* Unit tests of the storage interface (lib/repo/storage.h): the backend
 * contract (storage-contract.c) run against the local directory backend,
 * and what the local backend owes docs/security.md besides: a link or a
 * FIFO planted in the repository is never followed or opened, a failed put
 * leaves nothing behind, the backend's own names are out of reach, and a
 * read-only store refuses puts.
 *
 * Usage: test-storage [test-name]; output is TAP.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "storage-contract.h"

static char workdir[64];

static int
rm_one (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  return remove (path) == -1 && errno != ENOENT ? -1 : 0;
}

static void
rm_rf (const char *path)
{
  nftw (path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* The local backend on a new directory; its path is workdir/repo. */
static struct storage *
local_open_fresh (void)
{
  char repo[128];

  snprintf (workdir, sizeof workdir, "storage-test-XXXXXX");
  if (mkdtemp (workdir) == NULL)
    return NULL;
  snprintf (repo, sizeof repo, "%s/repo", workdir);
  if (mkdir (repo, 0700) == -1)
    return NULL;
  int fd = open (repo, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  struct storage *s = fd >= 0 ? storage_local_open (fd, repo, 1) : NULL;
  if (fd >= 0)
    close (fd);
  return s;
}

static void
local_destroy (struct storage *s)
{
  storage_close (s);
  rm_rf (workdir);
}

static char *
at (const char *rel)
{
  static char p[256];
  snprintf (p, sizeof p, "%s/repo/%s", workdir, rel);
  return p;
}

static char *
outside (const char *rel)
{
  static char p[256];
  snprintf (p, sizeof p, "%s/%s", workdir, rel);
  return p;
}

static void
write_file (const char *path, const char *text)
{
  FILE *f = fopen (path, "w");
  assert_non_null (f);
  fputs (text, f);
  assert_int_equal (fclose (f), 0);
}

static void
file_is (const char *path, const char *text)
{
  char buf[256] = "";
  FILE *f = fopen (path, "r");
  assert_non_null (f);
  size_t n = fread (buf, 1, sizeof buf - 1, f);
  fclose (f);
  buf[n] = '\0';
  assert_string_equal (buf, text);
}

static void
a_link_at_an_object_is_never_followed (void **state)
{
  struct storage *s = local_open_fresh ();
  struct storage_stat st;
  char c[6];
  int n = 0;

  assert_non_null (s);
  write_file (outside ("secret"), "secret");
  assert_int_equal (mkdir (at ("packs"), 0700), 0);
  assert_int_equal (symlink ("../../secret", at ("packs/evil")), 0);
  assert_int_equal (storage_get (s, "packs/evil", 0, 6, c), -1);
  assert_int_equal (errno, ELOOP);
  assert_int_equal (storage_stat (s, "packs/evil", &st), -1);
  assert_int_equal (errno, ELOOP);
  /* Listed as no object. */
  assert_int_equal (storage_list (s, "", storage_contract_count, &n), 0);
  assert_int_equal (n, 0);
  /* A put replaces the link; what it pointed to is untouched. */
  assert_int_equal (storage_put (s, "packs/evil", "mine", 4, 0), 0);
  file_is (outside ("secret"), "secret");
  file_is (at ("packs/evil"), "mine");
  /* An exclusive put over a link fails, and writes nothing through it. */
  assert_int_equal (symlink ("../../secret", at ("packs/evil2")), 0);
  assert_int_equal (storage_put (s, "packs/evil2", "mine", 4,
                                 STORAGE_PUT_EXCLUSIVE), -1);
  assert_int_equal (errno, EEXIST);
  file_is (outside ("secret"), "secret");
  /* delete removes the link, never its target. */
  assert_int_equal (storage_delete (s, "packs/evil2"), 0);
  file_is (outside ("secret"), "secret");
  local_destroy (s);
}

static void
a_link_at_a_directory_is_never_followed (void **state)
{
  struct storage *s = local_open_fresh ();
  char c;
  int n = 0;

  assert_non_null (s);
  assert_int_equal (mkdir (outside ("elsewhere"), 0700), 0);
  write_file (outside ("elsewhere/p1"), "theirs");
  assert_int_equal (symlink ("../elsewhere", at ("packs")), 0);
  assert_int_equal (storage_put (s, "packs/p2", "mine", 4, 0), -1);
  assert_int_equal (access (outside ("elsewhere/p2"), F_OK), -1);
  assert_int_equal (storage_get (s, "packs/p1", 0, 1, &c), -1);
  assert_int_equal (errno, ELOOP);
  assert_int_equal (storage_list (s, "packs/", storage_contract_count, &n), -1);
  assert_int_equal (errno, ELOOP);
  assert_int_equal (storage_list (s, "", storage_contract_count, &n), 0);
  assert_int_equal (n, 0);
  assert_int_equal (storage_delete (s, "packs/p1"), -1);
  file_is (outside ("elsewhere/p1"), "theirs");
  local_destroy (s);
}

static void
a_fifo_at_an_object_fails_instead_of_hanging (void **state)
{
  struct storage *s = local_open_fresh ();
  char c;

  assert_non_null (s);
  assert_int_equal (mkfifo (at ("index"), 0600), 0);
  assert_int_equal (storage_get (s, "index", 0, 1, &c), -1);
  assert_int_equal (errno, EINVAL);
  local_destroy (s);
}

static void
a_failed_put_leaves_no_temp_file (void **state)
{
  struct storage *s = local_open_fresh ();
  int n = 0;

  assert_non_null (s);
  assert_int_equal (storage_put (s, "config", "a", 1, STORAGE_PUT_EXCLUSIVE), 0);
  assert_int_equal (storage_put (s, "config", "b", 1, STORAGE_PUT_EXCLUSIVE), -1);
  /* A directory where the object should go. */
  assert_int_equal (mkdir (at ("index"), 0700), 0);
  assert_int_equal (mkdir (at ("index/seg"), 0700), 0);
  assert_int_equal (storage_put (s, "index/seg", "c", 1, 0), -1);
  char cmd[256];
  snprintf (cmd, sizeof cmd, "test -z \"$(ls -A %s)\"", at ("tmp"));
  assert_int_equal (system (cmd), 0);
  assert_int_equal (storage_list (s, "", storage_contract_count, &n), 0);
  assert_int_equal (n, 1);
  local_destroy (s);
}

static void
the_backends_own_names_are_out_of_reach (void **state)
{
  struct storage *s = local_open_fresh ();
  char c;
  int n = 0;

  assert_non_null (s);
  write_file (at ("lock"), "123\n");
  write_file (at ("tmp/1-1.put"), "partial");
  assert_int_equal (storage_put (s, "lock", "x", 1, 0), -1);
  assert_int_equal (errno, EINVAL);
  assert_int_equal (storage_put (s, "tmp/x", "x", 1, 0), -1);
  assert_int_equal (errno, EINVAL);
  assert_int_equal (storage_get (s, "tmp/1-1.put", 0, 1, &c), -1);
  assert_int_equal (storage_delete (s, "lock"), -1);
  assert_int_equal (storage_list (s, "", storage_contract_count, &n), 0);
  assert_int_equal (n, 0);
  assert_int_equal (storage_list (s, "tmp/", storage_contract_count, &n), 0);
  assert_int_equal (n, 0);
  file_is (at ("lock"), "123\n");
  local_destroy (s);
}

static void
objects_are_0600_and_directories_0700_whatever_the_umask (void **state)
{
  mode_t old = umask (0);
  struct storage *s = local_open_fresh ();
  struct stat st;

  assert_non_null (s);
  assert_int_equal (storage_put (s, "packs/ab/p", "x", 1, 0), 0);
  umask (old);
  assert_int_equal (stat (at ("packs/ab/p"), &st), 0);
  assert_int_equal (st.st_mode & 07777, 0600);
  assert_int_equal (stat (at ("packs/ab"), &st), 0);
  assert_int_equal (st.st_mode & 07777, 0700);
  assert_int_equal (stat (at ("packs"), &st), 0);
  assert_int_equal (st.st_mode & 07777, 0700);
  local_destroy (s);
}

static void
a_read_only_store_refuses_puts (void **state)
{
  struct storage *s = local_open_fresh ();
  char repo[128];
  char c;

  assert_non_null (s);
  assert_int_equal (storage_put (s, "config", "x", 1, 0), 0);
  snprintf (repo, sizeof repo, "%s/repo", workdir);
  int fd = open (repo, O_RDONLY | O_DIRECTORY);
  struct storage *ro = storage_local_open (fd, repo, 0);
  close (fd);
  assert_non_null (ro);
  assert_int_equal (storage_get (ro, "config", 0, 1, &c), 0);
  assert_int_equal (storage_put (ro, "other", "x", 1, 0), -1);
  assert_int_equal (errno, EROFS);
  storage_close (ro);
  local_destroy (s);
}

/* Issue 15: an object written in pieces (writer_open) is absent until its
 * commit, reads back to its writer meanwhile, appears whole; an aborted
 * one leaves nothing, not even in tmp/; a read-only store, a bad or
 * reserved name get no writer. */
static void
a_writer_object_appears_whole_at_commit_and_never_after_abort (void **state)
{
  struct storage *s = local_open_fresh ();
  struct storage_stat st;
  char buf[16], cmd[256];

  assert_non_null (s);
  struct storage_writer *w = storage_writer_open (s, "packs/ab/p1",
                                                  STORAGE_PUT_LAZY);
  assert_non_null (w);
  assert_int_equal (w->append (w, "hello ", 6), 0);
  assert_int_equal (w->append (w, "world", 5), 0);
  assert_int_equal (storage_stat (s, "packs/ab/p1", &st), -1);
  assert_int_equal (errno, ENOENT);
  assert_int_equal (w->read (w, 3, 5, buf), 0);
  assert_memory_equal (buf, "lo wo", 5);
  assert_int_equal (w->read (w, 8, 5, buf), -1);   /* past its end */
  assert_int_equal (w->commit (w), 0);
  assert_int_equal (storage_stat (s, "packs/ab/p1", &st), 0);
  assert_int_equal (st.size, 11);
  assert_int_equal (storage_get (s, "packs/ab/p1", 0, 11, buf), 0);
  assert_memory_equal (buf, "hello world", 11);
  file_is (at ("packs/ab/p1"), "hello world");

  w = storage_writer_open (s, "packs/ab/p2", 0);
  assert_non_null (w);
  assert_int_equal (w->append (w, "gone", 4), 0);
  w->abort (w);
  assert_int_equal (storage_stat (s, "packs/ab/p2", &st), -1);
  snprintf (cmd, sizeof cmd, "test -z \"$(ls -A %s)\"", at ("tmp"));
  assert_int_equal (system (cmd), 0);

  /* An exclusive one over a taken name fails at commit, leaving both. */
  w = storage_writer_open (s, "packs/ab/p1", STORAGE_PUT_EXCLUSIVE);
  assert_non_null (w);
  assert_int_equal (w->append (w, "other", 5), 0);
  assert_int_equal (w->commit (w), -1);
  assert_int_equal (errno, EEXIST);
  file_is (at ("packs/ab/p1"), "hello world");
  assert_int_equal (system (cmd), 0);

  assert_null (storage_writer_open (s, "tmp/x", 0));
  assert_int_equal (errno, EINVAL);
  assert_null (storage_writer_open (s, "../x", 0));
  assert_int_equal (errno, EINVAL);
  char repo[128];
  snprintf (repo, sizeof repo, "%s/repo", workdir);
  int fd = open (repo, O_RDONLY | O_DIRECTORY);
  struct storage *ro = storage_local_open (fd, repo, 0);
  close (fd);
  assert_non_null (ro);
  assert_null (storage_writer_open (ro, "packs/ab/p3", 0));
  assert_int_equal (errno, EROFS);
  storage_close (ro);
  local_destroy (s);
}

/* Issue 14: a local directory keeps no retention, so extending one is
 * refused (ENOTSUP), never faked as done; a bad name fails first. */
static void
a_store_without_retention_refuses_to_extend_one (void **state)
{
  struct storage *s = local_open_fresh ();
  int64_t was = 7;

  assert_non_null (s);
  assert_int_equal (storage_put (s, "packs/ab/p1", "x", 1, 0), 0);
  assert_int_equal (storage_extend_retention (s, "packs/ab/p1", &was), -1);
  assert_int_equal (errno, ENOTSUP);
  assert_int_equal (was, 0);
  assert_int_equal (storage_extend_retention (s, "../x", NULL), -1);
  assert_int_equal (errno, EINVAL);
  local_destroy (s);
}

int
main (int argc, char *argv[])
{
  const struct CMUnitTest local[] = {
    cmocka_unit_test (a_link_at_an_object_is_never_followed),
    cmocka_unit_test (a_link_at_a_directory_is_never_followed),
    cmocka_unit_test (a_fifo_at_an_object_fails_instead_of_hanging),
    cmocka_unit_test (a_failed_put_leaves_no_temp_file),
    cmocka_unit_test (the_backends_own_names_are_out_of_reach),
    cmocka_unit_test (objects_are_0600_and_directories_0700_whatever_the_umask),
    cmocka_unit_test (a_read_only_store_refuses_puts),
    cmocka_unit_test (a_writer_object_appears_whole_at_commit_and_never_after_abort),
    cmocka_unit_test (a_store_without_retention_refuses_to_extend_one),
  };

  storage_contract.open = local_open_fresh;
  storage_contract.destroy = local_destroy;
  return storage_contract_run ("storage-local", local, sizeof local / sizeof local[0],
                               argc, argv);
}
