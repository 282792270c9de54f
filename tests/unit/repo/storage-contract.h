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

#endif
