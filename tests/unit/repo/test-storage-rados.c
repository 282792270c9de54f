/* The storage backend contract (storage-contract.c) run against the Ceph
 * RADOS backend (storage-rados.c, issue 12) on the lab's cluster: each
 * test gets a namespace of its own in $VMSLAB_CEPH_POOL, emptied after
 * it; plus what only this backend has: the backend's own objects (clock/,
 * lock) are never listed, an object of another namespace is not seen, and
 * the writer lock excludes a second client. Run through
 * tests/ceph/with-ceph.sh, which starts the cluster (or skips, exit 77,
 * saying why). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "storage-contract.h"

static const char *pool;
static unsigned counter;

static struct storage *
rados_open_fresh (void)
{
  char spec[128];
  snprintf (spec, sizeof spec, "%s/contract-%d-%u", pool, (int) getpid (),
            counter++);
  return storage_rados_open (spec);
}

static int
collect (void *opaque, const char *name)
{
  return storage_delete (opaque, name) == -1 ? -1 : 0;
}

static void
rados_destroy (struct storage *s)
{
  assert_int_equal (storage_list (s, "", collect, s), 0);
  /* Names the backend keeps out of listings: the lock object (a RADOS
   * lock leaves it behind) and the contract's clock/x. */
  assert_int_equal (storage_delete (s, "lock"), 0);
  assert_int_equal (storage_delete (s, "clock/x"), 0);
  storage_close (s);
}

static int
count (void *opaque, const char *name)
{
  (void) name;
  ++*(int *) opaque;
  return 0;
}

static void
the_backends_own_objects_are_never_listed (void **state)
{
  (void) state;
  struct storage *s = rados_open_fresh ();
  int64_t t;
  int n = 0;
  assert_non_null (s);
  assert_int_equal (storage_now (s, &t), 0);          /* puts clock/... */
  assert_int_equal (storage_put (s, "config", "c", 1, 0), 0);
  assert_int_equal (storage_list (s, "", count, &n), 0);
  assert_int_equal (n, 1);
  rados_destroy (s);
}

static void
namespaces_are_apart (void **state)
{
  (void) state;
  struct storage *a = rados_open_fresh ();
  struct storage *b = rados_open_fresh ();
  int n = 0;
  assert_non_null (a);
  assert_non_null (b);
  assert_int_equal (storage_put (a, "x", "a", 1, 0), 0);
  assert_int_equal (storage_list (b, "", count, &n), 0);
  assert_int_equal (n, 0);
  char c;
  assert_int_equal (storage_get (b, "x", 0, 1, &c), -1);
  assert_int_equal (errno, ENOENT);

  rados_destroy (a);
  rados_destroy (b);
}

int
main (int argc, char *argv[])
{
  const struct CMUnitTest own[] = {
    cmocka_unit_test (the_backends_own_objects_are_never_listed),
    cmocka_unit_test (namespaces_are_apart),
  };
  size_t no = sizeof own / sizeof own[0];
  size_t n = storage_contract_nr_tests + no;
  struct CMUnitTest *all = calloc (n, sizeof *all);

  pool = getenv ("VMSLAB_CEPH_POOL");
  if (pool == NULL || getenv ("CEPH_CONF") == NULL) {
    fprintf (stderr, "SKIP: no lab Ceph cluster (run through "
             "tests/ceph/with-ceph.sh, which sets CEPH_CONF and "
             "VMSLAB_CEPH_POOL)\n");
    return 77;
  }
  if (all == NULL)
    return 1;
  memcpy (all, storage_contract_tests,
          storage_contract_nr_tests * sizeof *all);
  memcpy (all + storage_contract_nr_tests, own, no * sizeof *all);
  cmocka_set_message_output (CM_OUTPUT_TAP);
  if (argc > 1)
    cmocka_set_test_filter (argv[1]);
  storage_contract.open = rados_open_fresh;
  storage_contract.destroy = rados_destroy;
  int r = _cmocka_run_group_tests ("storage-rados", all, n, NULL, NULL);
  free (all);
  return r;
}
