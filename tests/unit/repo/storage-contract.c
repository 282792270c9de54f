/* The storage backend contract (storage-contract.h, storage.h): what the
 * version 2 repository logic relies on, checked against any backend. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "storage-contract.h"

struct storage_contract_factory storage_contract;

static struct storage *
fresh (void)
{
  struct storage *s = storage_contract.open ();
  assert_non_null (s);
  return s;
}

static void
get_is (struct storage *s, const char *name, const char *want)
{
  void *buf;
  size_t len;
  assert_int_equal (storage_get_all (s, name, 1 << 20, &buf, &len), 0);
  assert_int_equal (len, strlen (want));
  assert_memory_equal (buf, want, len);
  free (buf);
}

static void
an_object_reads_back_whole_and_by_range (void **state)
{
  struct storage *s = fresh ();
  char buf[16];
  struct storage_stat st;

  assert_int_equal (storage_put (s, "packs/ab/one", "0123456789", 10, 0), 0);
  get_is (s, "packs/ab/one", "0123456789");
  assert_int_equal (storage_get (s, "packs/ab/one", 3, 4, buf), 0);
  assert_memory_equal (buf, "3456", 4);
  assert_int_equal (storage_get (s, "packs/ab/one", 10, 0, buf), 0);
  /* A range past the end is an error, never a short read. */
  assert_int_equal (storage_get (s, "packs/ab/one", 8, 4, buf), -1);
  assert_int_equal (errno, EBADMSG);
  assert_int_equal (storage_stat (s, "packs/ab/one", &st), 0);
  assert_int_equal (st.size, 10);
  /* An empty object is an object. */
  assert_int_equal (storage_put (s, "empty", "", 0, 0), 0);
  assert_int_equal (storage_stat (s, "empty", &st), 0);
  assert_int_equal (st.size, 0);
  storage_contract.destroy (s);
}

static void
a_large_object_reads_back_at_any_offset (void **state)
{
  struct storage *s = fresh ();
  size_t n = 5u << 20;
  uint8_t *data = malloc (n), got[4096];

  assert_non_null (data);
  for (size_t i = 0; i < n; i++)
    data[i] = (uint8_t) (i * 2654435761u >> 13);
  assert_int_equal (storage_put (s, "packs/00/big", data, n, 0), 0);
  for (size_t off = 0; off + sizeof got <= n; off += 1234567) {
    assert_int_equal (storage_get (s, "packs/00/big", off, sizeof got, got), 0);
    assert_memory_equal (got, data + off, sizeof got);
  }
  free (data);
  storage_contract.destroy (s);
}

static void
an_absent_object_is_enoent (void **state)
{
  struct storage *s = fresh ();
  char buf[4];
  struct storage_stat st;

  assert_int_equal (storage_get (s, "nothing/here", 0, 1, buf), -1);
  assert_int_equal (errno, ENOENT);
  assert_int_equal (storage_stat (s, "nothing", &st), -1);
  assert_int_equal (errno, ENOENT);
  storage_contract.destroy (s);
}

static void
an_exclusive_put_never_replaces (void **state)
{
  struct storage *s = fresh ();

  assert_int_equal (storage_put (s, "backups/b1/manifest", "first", 5,
                                 STORAGE_PUT_EXCLUSIVE), 0);
  assert_int_equal (storage_put (s, "backups/b1/manifest", "second", 6,
                                 STORAGE_PUT_EXCLUSIVE), -1);
  assert_int_equal (errno, EEXIST);
  get_is (s, "backups/b1/manifest", "first");
  /* A plain put replaces whole. */
  assert_int_equal (storage_put (s, "sessions/x", "a", 1, 0), 0);
  assert_int_equal (storage_put (s, "sessions/x", "bbb", 3, 0), 0);
  get_is (s, "sessions/x", "bbb");
  storage_contract.destroy (s);
}

static void
a_lazy_put_is_whole_at_once_and_sync_makes_it_durable (void **state)
{
  struct storage *s = fresh ();

  assert_int_equal (storage_put (s, "packs/ab/lazy", "abc", 3,
                                 STORAGE_PUT_LAZY), 0);
  get_is (s, "packs/ab/lazy", "abc");
  assert_int_equal (storage_put (s, "packs/ab/lazy", "x", 1,
                                 STORAGE_PUT_LAZY | STORAGE_PUT_EXCLUSIVE), -1);
  assert_int_equal (errno, EEXIST);
  assert_int_equal (storage_sync (s), 0);
  get_is (s, "packs/ab/lazy", "abc");
  storage_contract.destroy (s);
}

struct names {
  char *v[64];
  size_t n;
};

static int
collect (void *opaque, const char *name)
{
  struct names *ns = opaque;
  assert_true (ns->n < 64);
  ns->v[ns->n++] = strdup (name);
  return 0;
}

static int
cmp (const void *a, const void *b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

static void
list_is (struct storage *s, const char *prefix, const char *const *want)
{
  struct names ns = { .n = 0 };
  size_t n = 0;

  assert_int_equal (storage_list (s, prefix, collect, &ns), 0);
  qsort (ns.v, ns.n, sizeof *ns.v, cmp);
  while (want[n])
    n++;
  for (size_t i = 0; i < ns.n && i < n; i++)
    assert_string_equal (ns.v[i], want[i]);
  assert_int_equal (ns.n, n);
  for (size_t i = 0; i < ns.n; i++)
    free (ns.v[i]);
}

static void
list_gives_every_name_under_a_prefix (void **state)
{
  struct storage *s = fresh ();
  static const char *const all[] = {
    "backups/b1/file-0.idx", "backups/b1/manifest", "backups/b2/manifest",
    "config", "index/seg1", "packs/00/p1", "packs/ff/p2", NULL,
  };

  for (size_t i = 0; all[i]; i++)
    assert_int_equal (storage_put (s, all[i], "x", 1, 0), 0);
  list_is (s, "", all);
  list_is (s, "packs/", (const char *const[]) { "packs/00/p1", "packs/ff/p2", NULL });
  list_is (s, "backups/b1/", (const char *const[]) { "backups/b1/file-0.idx",
                                                       "backups/b1/manifest", NULL });
  list_is (s, "backups/b", (const char *const[]) { "backups/b1/file-0.idx",
      "backups/b1/manifest", "backups/b2/manifest", NULL });
  list_is (s, "nothing/", (const char *const[]) { NULL });
  storage_contract.destroy (s);
}

static int
stop_at_first (void *opaque, const char *name)
{
  (*(int *) opaque)++;
  return 7;
}

static void
a_listing_stops_when_the_callback_says_so (void **state)
{
  struct storage *s = fresh ();
  int calls = 0;

  assert_int_equal (storage_put (s, "index/a", "x", 1, 0), 0);
  assert_int_equal (storage_put (s, "index/b", "x", 1, 0), 0);
  assert_int_equal (storage_list (s, "index/", stop_at_first, &calls), 7);
  assert_int_equal (calls, 1);
  storage_contract.destroy (s);
}

static void
delete_removes_and_absent_is_success (void **state)
{
  struct storage *s = fresh ();
  char c;

  assert_int_equal (storage_put (s, "backups/b1/manifest", "m", 1, 0), 0);
  assert_int_equal (storage_delete (s, "backups/b1/manifest"), 0);
  assert_int_equal (storage_get (s, "backups/b1/manifest", 0, 1, &c), -1);
  assert_int_equal (errno, ENOENT);
  list_is (s, "", (const char *const[]) { NULL });
  assert_int_equal (storage_delete (s, "backups/b1/manifest"), 0);
  assert_int_equal (storage_delete (s, "never/was"), 0);
  /* A name can be put again after its delete (the directory it was in
   * may have gone with it). */
  assert_int_equal (storage_put (s, "backups/b1/manifest", "n", 1,
                                 STORAGE_PUT_EXCLUSIVE), 0);
  get_is (s, "backups/b1/manifest", "n");
  storage_contract.destroy (s);
}

static void
the_store_has_a_clock_that_object_times_agree_with (void **state)
{
  struct storage *s = fresh ();
  int64_t t0, t1;
  struct storage_stat st;

  assert_int_equal (storage_now (s, &t0), 0);
  assert_int_equal (storage_put (s, "clock/x", "", 0, 0), 0);
  assert_int_equal (storage_stat (s, "clock/x", &st), 0);
  assert_int_equal (storage_now (s, &t1), 0);
  assert_true (t0 <= st.mtime && st.mtime <= t1);
  storage_contract.destroy (s);
}

static void
bad_names_are_refused_before_the_backend_sees_them (void **state)
{
  struct storage *s = fresh ();
  char long_ok[STORAGE_NAME_MAX + 1], too_long[STORAGE_NAME_MAX + 2], c;
  char long_comp[STORAGE_COMPONENT_MAX + 2];
  struct storage_stat st;
  static const char *const bad[] = {
    "", "/abs", "a//b", "a/", ".", "..", "./a", "a/./b", "a/../b", "../up",
    "a b", "a\nb", "a\\b", "caf\xc3\xa9", "a*", "a\x1b[0m", NULL,
  };

  memset (long_ok, 'a', STORAGE_NAME_MAX);
  long_ok[STORAGE_NAME_MAX] = '\0';
  long_ok[100] = '/';           /* components of 100 and 155 bytes */
  memset (long_comp, 'b', STORAGE_COMPONENT_MAX + 1);
  long_comp[STORAGE_COMPONENT_MAX + 1] = '\0';
  memset (too_long, 'a', STORAGE_NAME_MAX + 1);
  too_long[STORAGE_NAME_MAX + 1] = '\0';
  for (size_t i = 0; bad[i]; i++) {
    assert_false (storage_valid_name (bad[i]));
    errno = 0;
    assert_int_equal (storage_put (s, bad[i], "x", 1, 0), -1);
    assert_int_equal (errno, EINVAL);
    errno = 0;
    assert_int_equal (storage_get (s, bad[i], 0, 1, &c), -1);
    assert_int_equal (errno, EINVAL);
    assert_int_equal (storage_stat (s, bad[i], &st), -1);
    assert_int_equal (storage_delete (s, bad[i]), -1);
    assert_int_equal (errno, EINVAL);
  }
  assert_false (storage_valid_name (too_long));
  assert_false (storage_valid_name (long_comp));
  long_comp[STORAGE_COMPONENT_MAX] = '\0';
  assert_true (storage_valid_name (long_comp));
  assert_int_equal (storage_put (s, too_long, "x", 1, 0), -1);
  assert_int_equal (errno, EINVAL);
  assert_int_equal (storage_list (s, "../", collect, NULL), -1);
  assert_int_equal (errno, EINVAL);
  /* The longest name, and a backup id with its capitals and colons. */
  assert_true (storage_valid_name (long_ok));
  assert_int_equal (storage_put (s, long_ok, "x", 1, 0), 0);
  assert_int_equal (storage_put (s, "backups/2026-12-02T02:00:00Z-h1-0a9f/"
                                 "manifest", "x", 1, 0), 0);
  list_is (s, "", (const char *const[]) {
      long_ok, "backups/2026-12-02T02:00:00Z-h1-0a9f/manifest", NULL });
  storage_contract.destroy (s);
}

const struct CMUnitTest storage_contract_tests[] = {
  cmocka_unit_test (an_object_reads_back_whole_and_by_range),
  cmocka_unit_test (a_large_object_reads_back_at_any_offset),
  cmocka_unit_test (an_absent_object_is_enoent),
  cmocka_unit_test (an_exclusive_put_never_replaces),
  cmocka_unit_test (a_lazy_put_is_whole_at_once_and_sync_makes_it_durable),
  cmocka_unit_test (list_gives_every_name_under_a_prefix),
  cmocka_unit_test (a_listing_stops_when_the_callback_says_so),
  cmocka_unit_test (delete_removes_and_absent_is_success),
  cmocka_unit_test (the_store_has_a_clock_that_object_times_agree_with),
  cmocka_unit_test (bad_names_are_refused_before_the_backend_sees_them),
};
const size_t storage_contract_nr_tests =
  sizeof storage_contract_tests / sizeof storage_contract_tests[0];

int
storage_contract_run (const char *group, const struct CMUnitTest *own,
                      size_t nr_own, int argc, char **argv)
{
  size_t n = storage_contract_nr_tests + nr_own;
  struct CMUnitTest *all = calloc (n, sizeof *all);
  int r;

  if (all == NULL)
    return 1;
  memcpy (all, storage_contract_tests,
          storage_contract_nr_tests * sizeof *all);
  memcpy (all + storage_contract_nr_tests, own, nr_own * sizeof *all);
  cmocka_set_message_output (CM_OUTPUT_TAP);
  if (argc > 1)
    cmocka_set_test_filter (argv[1]);
  r = _cmocka_run_group_tests (group, all, n, NULL, NULL);
  free (all);
  return r;
}

int
storage_contract_count (void *opaque, const char *name)
{
  (void) name;
  ++*(int *) opaque;
  return 0;
}

static int
delete_one (void *opaque, const char *name)
{
  return storage_delete (opaque, name) == -1 ? -1 : 0;
}

void
storage_contract_empty_and_close (struct storage *s)
{
  assert_int_equal (storage_list (s, "", delete_one, s), 0);
  assert_int_equal (storage_delete (s, "lock"), 0);
  assert_int_equal (storage_delete (s, "clock/x"), 0);
  storage_close (s);
}
