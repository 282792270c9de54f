/* What the repository's unit tests (test-repo.c: version 1, test-repo-v2.c:
 * version 2) share: a fresh work directory per test, a small tmpfs for
 * the full-file-system tests, deterministic data, chunks stored as one
 * file's index, byte flips and collected report lines. Include after
 * <cmocka.h> and vmshadow/repo.h. */
#ifndef VMS_REPO_TEST_LIB_H
#define VMS_REPO_TEST_LIB_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CS ((size_t) VMS_CHUNK_SIZE)

/* This test's work directory and the repository in it (workdir/repo). */
extern char workdir[64];
extern char repo_dir[128];

/* A new work directory named prefix-XXXXXX in the current directory (the
 * build directory), repo_dir inside it, no error set. 0 or -1 (cmocka
 * setup functions return it). */
extern int repo_test_setup (const char *prefix);
/* The test's tmpfs unmounted (if any) and its work directory removed. */
extern int repo_test_teardown (void);

/* A tmpfs of size bytes mounted at mnt in a mount namespace of this
 * process only, so the kernel drops it however the process ends; it is
 * unmounted by repo_test_teardown (and repo_test_unmount, for atexit).
 * 0, or -1 with errno set (not root). */
extern int mount_small_fs (const char *mnt, size_t size);
extern void repo_test_unmount (void);
/* Bytes free for unprivileged writers on the file system of path. */
extern uint64_t free_bytes (const char *path);

/* Fails the test unless the error message contains expect. */
extern void assert_error_contains (const char *expect);
/* Deterministic pseudo-random bytes (xorshift64*) of seed. */
extern void fill_random (uint8_t *p, size_t len, uint64_t seed);
extern uint8_t *xmalloc (size_t n);
/* data stored as one file, chunk by chunk; its index. */
extern vms_index *store_file (vms_repo *r, const uint8_t *data, size_t size);
/* The bits of mask flipped in the byte at off of path. */
extern void flip_byte (const char *path, off_t off, uint8_t mask);

/* Report lines, collected by a vms_repo_*'s line callback. */
struct lines {
  char *v[64];
  int n;
};
extern void collect (void *opaque, const char *line);
extern int lines_contain (const struct lines *l, const char *s);
extern void lines_free (struct lines *l);

#endif
