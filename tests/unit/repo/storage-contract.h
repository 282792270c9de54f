/* The contract every storage backend (lib/repo/storage.h) must keep, as
 * cmocka tests that take the backend from a factory: test-storage.c runs
 * them against the local directory backend; a RADOS or S3 backend's test
 * runs the same list against its own factory.
 */
#ifndef VMS_STORAGE_CONTRACT_H
#define VMS_STORAGE_CONTRACT_H

#include <stddef.h>

#include "storage.h"

/* Set by the backend's test before the tests run: a new, empty, writable
 * store for each test (and its cleanup). */
struct storage_contract_factory {
  struct storage *(*open) (void);
  void (*destroy) (struct storage *s);
};
extern struct storage_contract_factory storage_contract;

/* The contract's tests, to put in a cmocka group. */
extern const struct CMUnitTest storage_contract_tests[];
extern const size_t storage_contract_nr_tests;

/* A backend test's main: the contract's tests through storage_contract
 * (set it first), then the backend's own, as one TAP plan named group;
 * argv[1], when given, picks tests by name. Returns the exit status. */
extern int storage_contract_run (const char *group,
                                 const struct CMUnitTest *own, size_t nr_own,
                                 int argc, char **argv);

/* A storage_list callback that counts the names (opaque: an int). */
extern int storage_contract_count (void *opaque, const char *name);

/* A remote store (RADOS, S3) emptied and closed: every listed object
 * deleted, then the names backends keep out of listings (the writer lock
 * and the contract's clock/x). */
extern void storage_contract_empty_and_close (struct storage *s);

#endif
