/* Helpers of the repository's unit tests (repo-test-lib.h). */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmshadow/error.h"
#include "vmshadow/repo.h"

#include "repo-test-lib.h"

char workdir[64];
char repo_dir[128];
static char mounted[128];       /* the tmpfs of this test, while mounted */

int
repo_test_setup (const char *prefix)
{
  snprintf (workdir, sizeof workdir, "%s-XXXXXX", prefix);
  if (mkdtemp (workdir) == NULL)
    return -1;
  snprintf (repo_dir, sizeof repo_dir, "%s/repo", workdir);
  vms_clear_error ();
  return 0;
}

static int
rm_one (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  return remove (path) == -1 && errno != ENOENT ? -1 : 0;
}

void
repo_test_unmount (void)
{
  if (mounted[0] != '\0') {
    if (umount2 (mounted, MNT_DETACH) == -1)
      fprintf (stderr, "# cannot unmount %s: %s\n", mounted, strerror (errno));
    mounted[0] = '\0';
  }
}

int
repo_test_teardown (void)
{
  repo_test_unmount ();
  nftw (workdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
  return 0;
}

int
mount_small_fs (const char *mnt, size_t size)
{
  char opts[64];

  if (unshare (CLONE_NEWNS) == -1
      /* fstype is ignored for a propagation change, but valgrind wants one */
      || mount ("none", "/", "none", MS_REC | MS_PRIVATE, NULL) == -1)
    return -1;
  snprintf (opts, sizeof opts, "size=%zuk,mode=0700", size / 1024);
  if (mount ("tmpfs", mnt, "tmpfs", 0, opts) == -1)
    return -1;
  snprintf (mounted, sizeof mounted, "%s", mnt);
  return 0;
}

uint64_t
free_bytes (const char *path)
{
  struct statvfs sv;
  assert_int_equal (statvfs (path, &sv), 0);
  return (uint64_t) sv.f_bavail * sv.f_frsize;
}

void
assert_error_contains (const char *expect)
{
  const char *msg = vms_get_error ();
  if (msg == NULL)
    fail_msg ("no error message was set (expected one containing \"%s\")",
              expect);
  if (strstr (msg, expect) == NULL)
    fail_msg ("error message \"%s\" does not contain \"%s\"", msg, expect);
}

void
fill_random (uint8_t *p, size_t len, uint64_t seed)
{
  uint64_t x = seed * 2654435761u + 88172645463325252ull;
  for (size_t i = 0; i < len; i++) {
    x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
    p[i] = (uint8_t) ((x * 2685821657736338717ull) >> 56);
  }
}

uint8_t *
xmalloc (size_t n)
{
  uint8_t *p = malloc (n ? n : 1);
  assert_non_null (p);
  return p;
}

vms_index *
store_file (vms_repo *r, const uint8_t *data, size_t size)
{
  vms_index *idx = vms_index_new (size);
  assert_non_null (idx);
  for (uint64_t c = 0; c < vms_index_chunk_count (idx); c++) {
    struct vms_digest d;
    if (vms_repo_chunk_put (r, data + c * CS, vms_index_chunk_len (idx, c),
                            &d, NULL) == -1)
      fail_msg ("chunk_put: %s", vms_get_error ());
    assert_int_equal (vms_index_set (idx, c, &d), 0);
  }
  return idx;
}

void
flip_byte (const char *path, off_t off, uint8_t mask)
{
  int fd = open (path, O_RDWR);
  uint8_t b;
  assert_true (fd >= 0);
  assert_int_equal (pread (fd, &b, 1, off), 1);
  b ^= mask;
  assert_int_equal (pwrite (fd, &b, 1, off), 1);
  close (fd);
}

void
collect (void *opaque, const char *line)
{
  struct lines *l = opaque;
  if (l->n < 64)
    l->v[l->n++] = strdup (line);
}

int
lines_contain (const struct lines *l, const char *s)
{
  for (int i = 0; i < l->n; i++)
    if (strstr (l->v[i], s))
      return 1;
  return 0;
}

void
lines_free (struct lines *l)
{
  for (int i = 0; i < l->n; i++)
    free (l->v[i]);
  l->n = 0;
}
