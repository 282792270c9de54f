/* Unit tests of repository format version 2 (docs/repository-format.md
 * "Version 2"): chunks go into packs of the configured size with an index
 * segment per pack, one chunk reads back with one ranged read, a backup
 * exists once its manifest (put last, exclusively) does, verify finds a
 * damaged or missing pack, prune and gc drop, repack and compact exactly
 * what they should, and a version 1 repository stays version 1; packs of
 * both pack format versions (their tails' checksums) are read and checked.
 *
 * Each test gets a fresh repository under the build directory.
 * Usage: test-repo-v2 [test-name]; output is TAP.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glob.h>
#include <pthread.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <signal.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <xxhash.h>

#include "vmshadow/document.h"
#include "vmshadow/error.h"
#include "vmshadow/repo.h"

#include "crypt.h"
#include "repo-internal.h"
#include "repo-test-lib.h"
#include "storage.h"

static int
setup (void **state)
{
  /* Small packs, so that a few MiB of chunks make several. */
  setenv ("VMSHADOW_REPO_PACK_SIZE", "1048576", 1);
  unsetenv (REPO_FORMAT_ENV);
  return repo_test_setup ("repo-v2-test");
}

static int
teardown (void **state)
{
  return repo_test_teardown ();
}

static vms_repo *
open_v2 (void)
{
  vms_repo *r = vms_repo_open (repo_dir, VMS_REPO_CREATE | VMS_REPO_WRITE |
                               VMS_REPO_FORMAT_2);
  if (r == NULL)
    fail_msg ("cannot open %s: %s", repo_dir, vms_get_error ());
  return r;
}

static void
make_backup (vms_repo *r, const char *id, const uint8_t *data, size_t size)
{
  vms_index *idx = store_file (r, data, size);
  vms_repo_txn *txn = vms_repo_txn_begin (r, id);
  if (txn == NULL)
    fail_msg ("txn_begin: %s", vms_get_error ());
  struct vms_stored_file f = {
    .writer_id = "6c0a5e43-2b8e-4c39-9d59-4b8b2b6a1f00", .component = "web01",
    .path = "/var/lib/libvirt/images/web01.img", .kind = VMS_FILE_DISK,
    .format = "raw", .bytes_read = size, .checkpoint = "cp1",
  };
  assert_int_equal (vms_repo_txn_add_file (txn, &f, idx), 0);
  vms_document *bcd = vms_components_new (id);
  assert_non_null (bcd);
  if (vms_repo_txn_commit (txn, bcd, NULL, 0, "{\"type\": \"full\"}") == -1)
    fail_msg ("commit: %s", vms_get_error ());
  vms_document_free (bcd);
  vms_repo_txn_free (txn);
  vms_index_free (idx);
}

/* Regular files under repo_dir/sub, recursively. */
/* Regular files under repo_dir/sub smaller than below bytes (0: all). */
static int
count_files_below (const char *sub, off_t below)
{
  char path[512];
  int n = 0;
  snprintf (path, sizeof path, "%s/%s", repo_dir, sub);
  DIR *d = opendir (path);
  if (d == NULL)
    return 0;
  struct dirent *e;
  while ((e = readdir (d)) != NULL) {
    char s[512];
    struct stat st;
    if (e->d_name[0] == '.')
      continue;
    snprintf (s, sizeof s, "%s/%s", sub, e->d_name);
    snprintf (path, sizeof path, "%s/%s", repo_dir, s);
    if (lstat (path, &st) == 0 && S_ISDIR (st.st_mode))
      n += count_files_below (s, below);
    else if (S_ISREG (st.st_mode) && (below == 0 || st.st_size < below))
      n++;
  }
  closedir (d);
  return n;
}

static int
count_files (const char *sub)
{
  return count_files_below (sub, 0);
}

/* The path of the first (or only) file under repo_dir/sub. */
static int
first_file (const char *sub, char *out, size_t len)
{
  char path[512];
  snprintf (path, sizeof path, "%s/%s", repo_dir, sub);
  DIR *d = opendir (path);
  if (d == NULL)
    return -1;
  struct dirent *e;
  int r = -1;
  while (r == -1 && (e = readdir (d)) != NULL) {
    struct stat st;
    char s[512];
    if (e->d_name[0] == '.')
      continue;
    snprintf (s, sizeof s, "%s/%s", sub, e->d_name);
    snprintf (path, sizeof path, "%s/%s", repo_dir, s);
    if (lstat (path, &st) == -1)
      continue;
    if (S_ISDIR (st.st_mode))
      r = first_file (s, out, len);
    else {
      snprintf (out, len, "%s", path);
      r = 0;
    }
  }
  closedir (d);
  return r;
}

static int
exists (const char *rel)
{
  char path[512];
  struct stat st;
  snprintf (path, sizeof path, "%s/%s", repo_dir, rel);
  return lstat (path, &st) == 0;
}

/* The whole file at path, in a new buffer. */
static uint8_t *
file_read (const char *path, size_t *len)
{
  struct stat st;
  int fd = open (path, O_RDONLY);
  assert_true (fd >= 0);
  assert_int_equal (fstat (fd, &st), 0);
  *len = (size_t) st.st_size;
  uint8_t *p = xmalloc (*len ? *len : 1);
  assert_int_equal (pread (fd, p, *len, 0), (ssize_t) *len);
  close (fd);
  return p;
}

/* The pack at path is of pack format version 2: its tail holds the
 * XXH3-128 of every byte before it, big endian, then 16 zero bytes. */
static void
assert_tail_is_xxh3 (const char *path)
{
  size_t len;
  uint8_t *p = file_read (path, &len);
  const uint8_t *tail = p + len - PACK_TAIL_SIZE;
  static const uint8_t zero[16];
  XXH128_canonical_t c;

  assert_true (len > PACK_HEADER_SIZE + PACK_TAIL_SIZE);
  assert_memory_equal (p, PACK_MAGIC, 8);
  assert_int_equal (repo_get_le32 (p + 8), 2);
  XXH128_canonicalFromHash (&c, XXH3_128bits (p, len - PACK_TAIL_SIZE));
  assert_memory_equal (c.digest, tail + 16, 16);
  assert_memory_equal (zero, tail + 32, 16);
  free (p);
}

/* Make the pack at path what vmshadow wrote before issue 15: pack format
 * version 1, whose tail holds the SHA-256 of every byte before it (the
 * rest of the pack is laid out alike). */
static void
pack_make_version_1 (const char *path)
{
  size_t len;
  uint8_t *p = file_read (path, &len);
  repo_put_le32 (p + 8, 1);
  assert_int_equal (repo_sha256 (p, len - PACK_TAIL_SIZE,
                                 p + len - PACK_TAIL_SIZE + 16), 0);
  int fd = open (path, O_WRONLY);
  assert_true (fd >= 0);
  assert_int_equal (pwrite (fd, p, len, 0), (ssize_t) len);
  close (fd);
  free (p);
}

/* ---- tests ---- */

static void
chunks_go_into_packs_of_the_configured_size (void **state)
{
  vms_repo *r = open_v2 ();
  size_t n = 8 << 20;             /* 8 MiB of incompressible data */
  uint8_t *data = xmalloc (n);
  char cfg[4096];

  fill_random (data, n, 1);
  vms_index *idx = store_file (r, data, n);
  vms_repo_close (r);           /* puts nothing more: the open pack is lost */
  r = open_v2 ();
  vms_index_free (idx);
  idx = store_file (r, data, n);
  struct vms_repo_txn *txn = vms_repo_txn_begin (r, "b1");
  assert_non_null (txn);
  struct vms_stored_file f = { .writer_id = "w", .component = "c",
                               .path = "/p", .kind = VMS_FILE_PLAIN };
  assert_int_equal (vms_repo_txn_add_file (txn, &f, idx), 0);
  assert_int_equal (vms_repo_txn_commit (txn, NULL, NULL, 0, NULL), 0);
  vms_repo_txn_free (txn);

  FILE *fp = fopen ((snprintf (cfg, sizeof cfg, "%s/config", repo_dir), cfg),
                    "r");
  assert_non_null (fp);
  size_t got = fread (cfg, 1, sizeof cfg - 1, fp);
  cfg[got] = '\0';
  fclose (fp);
  assert_non_null (strstr (cfg, "\"version\": 2"));
  assert_non_null (strstr (cfg, "\"pack_size\": 1048576"));
  /* No chunk files: 64 chunks in packs of about 1 MiB (8 chunks each)
   * from the first handle and the second. */
  assert_false (exists ("chunks"));
  int packs = count_files ("packs"), segments = count_files ("index");
  print_message ("# %d packs, %d segments for 8 MiB\n", packs, segments);
  assert_true (packs >= 8 && packs <= 16);
  assert_int_equal (segments, packs);
  /* Every pack ends with its tail: trailer offset and length, SHA-256. */
  char pack[512];
  assert_int_equal (first_file ("packs", pack, sizeof pack), 0);
  struct stat st;
  assert_int_equal (stat (pack, &st), 0);
  assert_true (st.st_size >= 1048576 && st.st_size < 1048576 + 2 * (long) CS);
  assert_true (exists ("backups/b1/manifest"));
  assert_true (exists ("backups/b1/file-0.idx"));

  /* A reader finds every chunk through the segments. */
  vms_repo *rd = vms_repo_open (repo_dir, 0);
  assert_non_null (rd);
  uint8_t *back = xmalloc (n);
  assert_int_equal (vms_repo_read (rd, idx, back, n, 0), 0);
  assert_memory_equal (back, data, n);
  assert_int_equal (vms_repo_read (rd, idx, back, 1000, 3 * CS - 500), 0);
  assert_memory_equal (back, data + 3 * CS - 500, 1000);
  vms_repo_close (rd);
  free (back);
  vms_index_free (idx);
  free (data);
  vms_repo_close (r);
}

static void
identical_chunks_are_stored_once_and_zero_chunks_never (void **state)
{
  vms_repo *r = open_v2 ();
  uint8_t *a = xmalloc (CS), *z = calloc (1, CS), *back = xmalloc (CS);
  struct vms_digest d1, d2, dz;
  uint64_t s1, s2, sz;

  memset (a, 'x', CS);          /* compressible: stored as zstd */
  assert_int_equal (vms_repo_chunk_put (r, a, CS, &d1, &s1), 0);
  assert_true (s1 > 0 && s1 < CS);
  assert_int_equal (vms_repo_chunk_put (r, a, CS, &d2, &s2), 0);
  assert_int_equal (s2, 0);
  assert_memory_equal (&d1, &d2, sizeof d1);
  assert_int_equal (vms_repo_chunk_put (r, z, CS, &dz, &sz), 0);
  assert_int_equal (sz, 0);
  assert_true (vms_digest_is_zero (&dz));
  /* Readable before its pack is put (still in memory) ... */
  assert_int_equal (vms_repo_chunk_get (r, &d1, back, CS, 1), 0);
  assert_memory_equal (back, a, CS);
  assert_int_equal (vms_repo_chunk_exists (r, &d1), 1);
  /* ... and after, by another handle. */
  struct vms_repo_txn *txn = vms_repo_txn_begin (r, "b1");
  assert_int_equal (vms_repo_txn_commit (txn, NULL, NULL, 0, NULL), 0);
  vms_repo_txn_free (txn);
  vms_repo *rd = vms_repo_open (repo_dir, 0);
  assert_int_equal (vms_repo_chunk_get (rd, &d1, back, CS, 1), 0);
  assert_memory_equal (back, a, CS);
  /* The wrong length is a clear error, not a short read. */
  assert_int_equal (vms_repo_chunk_get (rd, &d1, back, CS - 1, 1), -1);
  assert_error_contains ("expected 131071");
  a[0] = 'y';
  struct vms_digest other;
  memset (&other, 7, sizeof other);
  assert_int_equal (vms_repo_chunk_get (rd, &other, back, CS, 1), -1);
  assert_int_equal (vms_get_errno (), ENOENT);
  assert_error_contains ("is missing");
  assert_int_equal (vms_repo_chunk_exists (rd, &other), 0);
  vms_repo_close (rd);
  vms_repo_close (r);
  free (a);
  free (z);
  free (back);
}

static void
a_backup_exists_once_its_manifest_is_put (void **state)
{
  vms_repo *r = open_v2 ();
  uint8_t data[5000];
  char **ids;
  size_t n;

  fill_random (data, sizeof data, 3);
  vms_index *idx = store_file (r, data, sizeof data);
  vms_repo_txn *txn = vms_repo_txn_begin (r, "2026-12-02T02:00:00Z");
  assert_non_null (txn);
  struct vms_stored_file f = { .writer_id = "w", .component = "c",
                               .path = "/p", .kind = VMS_FILE_PLAIN };
  assert_int_equal (vms_repo_txn_add_file (txn, &f, idx), 0);
  assert_true (exists ("backups/2026-12-02T02:00:00Z/file-0.idx"));
  assert_int_equal (vms_repo_list (r, &ids, &n), 0);
  assert_int_equal (n, 0);
  free (ids);
  assert_null (vms_manifest_open (r, "2026-12-02T02:00:00Z"));
  assert_error_contains ("no backup");
  vms_repo_txn_free (txn);      /* dropped: its objects go */
  assert_false (exists ("backups/2026-12-02T02:00:00Z/file-0.idx"));
  vms_index_free (idx);

  make_backup (r, "b1", data, sizeof data);
  assert_null (vms_repo_txn_begin (r, "b1"));
  assert_int_equal (vms_get_errno (), EEXIST);
  assert_int_equal (vms_repo_list (r, &ids, &n), 0);
  assert_int_equal (n, 1);
  assert_string_equal (ids[0], "b1");
  free (ids[0]);
  free (ids);
  vms_manifest *m = vms_manifest_open (r, "b1");
  assert_non_null (m);
  assert_non_null (vms_manifest_components (m));
  assert_string_equal (vms_manifest_attrs (m), "{\"type\":\"full\"}");
  vms_index *back = vms_manifest_load_index (r, m, 0);
  assert_non_null (back);
  assert_int_equal (vms_index_size (back), sizeof data);
  vms_index_free (back);
  vms_manifest_free (m);
  char *cp, *bid;
  assert_int_equal (vms_repo_last_checkpoint (r, "6c0a5e43-2b8e-4c39-9d59-4b8b2b6a1f00",
                                              "web01", NULL, &cp, &bid), 1);
  assert_string_equal (cp, "cp1");
  assert_string_equal (bid, "b1");
  free (cp);
  free (bid);
  /* The manifest says version 2; a version 1 manifest is refused here. */
  char path[512], text[8192];
  snprintf (path, sizeof path, "%s/backups/b1/manifest", repo_dir);
  FILE *fp = fopen (path, "r+");
  size_t len = fread (text, 1, sizeof text - 1, fp);
  text[len] = '\0';
  assert_non_null (strstr (text, "\"version\": 2"));
  char *v = strstr (text, "\"version\": 2");
  v[11] = '1';
  rewind (fp);
  fwrite (text, 1, len, fp);
  fclose (fp);
  assert_null (vms_manifest_open (r, "b1"));
  assert_error_contains ("manifests are version 2");
  vms_repo_close (r);
}

static void
a_version_1_repository_stays_version_1 (void **state)
{
  setenv (REPO_FORMAT_ENV, "1", 1);
  vms_repo *r = vms_repo_open (repo_dir, VMS_REPO_CREATE | VMS_REPO_WRITE);
  assert_non_null (r);
  uint8_t data[3000] = { 9 };
  make_backup (r, "b1", data, sizeof data);
  vms_repo_close (r);
  assert_true (exists ("chunks"));
  assert_true (exists ("backups/b1/manifest.json"));
  /* The config decides, not the flag or the environment. */
  setenv (REPO_FORMAT_ENV, "2", 1);
  r = open_v2 ();
  make_backup (r, "b2", data, sizeof data);
  vms_repo_close (r);
  assert_true (exists ("backups/b2/manifest.json"));
  assert_false (exists ("packs"));
  /* A bad value is refused when creating. */
  snprintf (repo_dir, sizeof repo_dir, "%s/other", workdir);
  setenv (REPO_FORMAT_ENV, "3", 1);
  assert_null (vms_repo_open (repo_dir, VMS_REPO_CREATE | VMS_REPO_WRITE));
  assert_error_contains ("VMSHADOW_REPO_FORMAT=3");
  unsetenv (REPO_FORMAT_ENV);
}

static void
verify_names_a_damaged_blob_and_a_missing_pack (void **state)
{
  vms_repo *r = open_v2 ();
  size_t n = 3 * CS;
  uint8_t *data = xmalloc (n);
  struct lines l = { .n = 0 };
  char pack[512];

  fill_random (data, n, 4);
  make_backup (r, "b1", data, n);
  assert_int_equal (vms_repo_verify (r, NULL, 1, collect, &l), 0);
  assert_int_equal (first_file ("packs", pack, sizeof pack), 0);
  /* A byte of the second blob (raw, 4 KiB aligned after the header). */
  flip_byte (pack, 4096 + CS + 10, 0x40);
  vms_repo *rd = vms_repo_open (repo_dir, 0);
  assert_int_equal (vms_repo_verify (rd, NULL, 0, collect, &l), 0);
  assert_int_equal (vms_repo_verify (rd, NULL, 1, collect, &l), 1);
  assert_true (lines_contain (&l, "backup b1, component web01"));
  assert_true (lines_contain (&l, "offset 131072: chunk"));
  assert_true (lines_contain (&l, "is corrupt (hash mismatch)"));
  lines_free (&l);
  /* Checked a pack at a time (issue 14), a bad chunk is still said at
   * every place that uses it: b2 holds the same data. */
  make_backup (r, "b2", data, n);
  assert_int_equal (vms_repo_verify (rd, NULL, 1, collect, &l), 2);
  assert_true (lines_contain (&l, "backup b1, component web01"));
  assert_true (lines_contain (&l, "backup b2, component web01"));
  lines_free (&l);
  /* Cut short in the second blob: the pack's one read fails, and each of
   * its chunks is then read alone, so the first still passes and the
   * other two are named, in both backups. */
  assert_int_equal (truncate (pack, 4096 + CS + 100), 0);
  vms_repo_close (rd);
  rd = vms_repo_open (repo_dir, 0);
  assert_int_equal (vms_repo_verify (rd, NULL, 1, collect, &l), 4);
  assert_true (lines_contain (&l, "shorter than the index says"));
  assert_false (lines_contain (&l, "offset 0: chunk"));
  assert_true (lines_contain (&l, "offset 262144: chunk"));
  lines_free (&l);
  assert_int_equal (vms_repo_verify (rd, NULL, 0, collect, &l), 4);
  assert_true (lines_contain (&l, "shorter than the index says"));
  assert_false (lines_contain (&l, "offset 0: chunk"));
  lines_free (&l);
  assert_int_equal (unlink (pack), 0);
  vms_repo_close (rd);
  rd = vms_repo_open (repo_dir, 0);
  assert_int_equal (vms_repo_verify (rd, NULL, 0, collect, &l), 6);
  assert_true (lines_contain (&l, "is missing (its pack packs/"));
  lines_free (&l);
  vms_repo_close (rd);
  vms_repo_close (r);
  free (data);
}

static void
a_damaged_index_segment_is_refused_and_gc_removes_nothing (void **state)
{
  vms_repo *r = open_v2 ();
  uint8_t data[4000];
  char seg[512];
  uint64_t removed = 0, freed = 0;

  fill_random (data, sizeof data, 5);
  make_backup (r, "b1", data, sizeof data);
  vms_repo_close (r);
  assert_int_equal (first_file ("index", seg, sizeof seg), 0);
  flip_byte (seg, 20, 0x40);
  int packs = count_files ("packs");
  r = open_v2 ();
  struct vms_digest d;
  assert_int_equal (vms_repo_chunk_put (r, data, 100, &d, NULL), -1);
  assert_error_contains ("is corrupt (checksum mismatch)");
  assert_int_equal (vms_repo_gc (r, 0, &removed, &freed), -1);
  assert_error_contains ("index/");
  assert_int_equal (count_files ("packs"), packs);
  vms_repo_close (r);
}

static void
prune_then_gc_drop_dead_packs_and_repack_mostly_dead_ones (void **state)
{
  vms_repo *r = open_v2 ();
  size_t n = 16 * CS;           /* 2 MiB: two packs of 8 chunks */
  uint8_t *a = xmalloc (n), *b = xmalloc (n);
  uint64_t removed = 0, freed = 0;
  struct lines l = { .n = 0 };
  struct vms_prune_policy keep = { .keep_last = 1 };

  fill_random (a, n, 6);
  make_backup (r, "b1", a, n);
  /* b2 shares a's first two chunks (in a's first pack) and has 14 of its
   * own. */
  fill_random (b, n, 7);
  memcpy (b, a, 2 * CS);
  sleep (1);                    /* b2 newer than b1 by its time */
  make_backup (r, "b2", b, n);
  int before = count_files ("packs");
  assert_true (before >= 4);
  assert_int_equal (vms_repo_prune (r, &keep, 0, collect, &l), 1);
  assert_true (lines_contain (&l, "remove b1"));
  lines_free (&l);
  assert_false (exists ("backups/b1"));
  /* With a grace period, young packs stay. */
  assert_int_equal (vms_repo_gc (r, 3600, &removed, &freed), 0);
  assert_int_equal (removed, 0);
  assert_int_equal (count_files ("packs"), before);
  /* A reader that loaded the index before the gc below ... */
  vms_repo *early = vms_repo_open (repo_dir, 0);
  vms_manifest *em = vms_manifest_open (early, "b2");
  vms_index *eidx = vms_manifest_load_index (early, em, 0);
  assert_int_equal (vms_repo_read (early, eidx, a, CS, 10 * CS), 0);
  /* Without: a's second pack (nothing live) goes, a's first (2 of 8
   * live) is repacked, b2's stay. */
  assert_int_equal (vms_repo_gc (r, 0, &removed, &freed), 0);
  /* ... finds the repacked chunks through the index again. */
  assert_int_equal (vms_repo_read (early, eidx, a, n, 0), 0);
  assert_memory_equal (a, b, n);
  vms_index_free (eidx);
  vms_manifest_free (em);
  vms_repo_close (early);
  print_message ("# packs %d -> %d, %" PRIu64 " chunks removed, %" PRIu64
                 " bytes freed\n", before, count_files ("packs"), removed, freed);
  assert_int_equal (removed, 14);
  assert_true (freed >= 14 * CS);
  assert_int_equal (count_files ("packs"), before - 1);
  /* One compacted segment (and the repack's own). */
  assert_true (count_files ("index") <= 2);
  assert_int_equal (vms_repo_verify (r, NULL, 1, collect, &l), 0);
  vms_repo_close (r);
  /* A reader from scratch, through the compacted index. */
  r = vms_repo_open (repo_dir, 0);
  vms_manifest *m = vms_manifest_open (r, "b2");
  vms_index *idx = vms_manifest_load_index (r, m, 0);
  assert_int_equal (vms_repo_read (r, idx, a, n, 0), 0);
  assert_memory_equal (a, b, n);
  assert_int_equal (vms_repo_verify (r, NULL, 1, collect, &l), 0);
  vms_index_free (idx);
  vms_manifest_free (m);
  vms_repo_close (r);
  /* gc again: nothing more to do. */
  r = open_v2 ();
  int packs = count_files ("packs");
  assert_int_equal (vms_repo_gc (r, 0, &removed, &freed), 0);
  assert_int_equal (removed, 0);
  assert_int_equal (count_files ("packs"), packs);
  vms_repo_close (r);
  free (a);
  free (b);
}

static void
gc_removes_leftovers_of_a_killed_backup_after_the_grace_period (void **state)
{
  vms_repo *r = open_v2 ();
  uint8_t data[CS];
  uint64_t removed = 0, freed = 0;

  fill_random (data, sizeof data, 8);
  make_backup (r, "b1", data, 1000);
  vms_repo_close (r);
  /* A backup killed (SIGKILL) after its pack, its segment and a file
   * index were put, before its manifest. */
  pid_t pid = fork ();
  assert_true (pid >= 0);
  if (pid == 0) {
    /* Its session lease lapses 6 s after its last renewal (issue 12). */
    setenv ("VMSHADOW_LEASE_SECONDS", "6", 1);
    vms_repo *c = open_v2 ();
    vms_index *idx = store_file (c, data, sizeof data);
    vms_repo_txn *txn = vms_repo_txn_begin (c, "b2");
    struct vms_stored_file f = { .writer_id = "w", .component = "c",
                                 .path = "/p", .kind = VMS_FILE_PLAIN };
    if (txn == NULL || vms_repo_txn_add_file (txn, &f, idx) == -1 ||
        pack_flush (c) == -1)
      _exit (1);
    raise (SIGKILL);
  }
  int status;
  assert_int_equal (waitpid (pid, &status, 0), pid);
  assert_true (WIFSIGNALED (status) && WTERMSIG (status) == SIGKILL);
  r = open_v2 ();
  int packs = count_files ("packs");
  assert_int_equal (packs, 2);
  vms_repo_close (r);
  r = open_v2 ();
  assert_int_equal (vms_repo_gc (r, 3600, &removed, &freed), 0);
  assert_true (exists ("backups/b2/file-0.idx"));
  assert_int_equal (count_files ("packs"), 2);
  /* Grace 0, but the killed backup's lease has not lapsed yet: it might
   * still be writing, so its objects and its pack stay (the pack is
   * condemned, gc waits for the session). */
  assert_int_equal (vms_repo_gc (r, 0, &removed, &freed), 0);
  assert_true (exists ("backups/b2/file-0.idx"));
  assert_int_equal (count_files ("packs"), 2);
  assert_int_equal (removed, 0);
  sleep (7);
  assert_int_equal (vms_repo_gc (r, 0, &removed, &freed), 0);
  assert_false (exists ("backups/b2/file-0.idx"));
  assert_int_equal (count_files ("packs"), 1);
  assert_int_equal (removed, 1);
  /* The killed session's expired lease is gone; r's own is left. */
  assert_int_equal (count_files ("sessions"), 1);
  assert_int_equal (count_files ("gc"), 0);
  struct lines l = { .n = 0 };
  assert_int_equal (vms_repo_verify (r, NULL, 1, collect, &l), 0);
  vms_repo_close (r);
}

struct put_arg {
  vms_repo *r;
  const uint8_t *data;
  int seed;
  uint64_t stored;
};

static void *
put_thread (void *opaque)
{
  struct put_arg *a = opaque;
  uint8_t own[4096];
  for (size_t c = 0; c < 32; c++) {
    struct vms_digest d;
    uint64_t s;
    if (vms_repo_chunk_put (a->r, a->data + c * CS, CS, &d, &s) == -1)
      return (void *) 1;
    a->stored += s;
    fill_random (own, sizeof own, (uint64_t) a->seed * 1000 + c);
    if (vms_repo_chunk_put (a->r, own, sizeof own, &d, &s) == -1)
      return (void *) 1;
  }
  return NULL;
}

static void
concurrent_puts_store_each_chunk_once (void **state)
{
  vms_repo *r = open_v2 ();
  uint8_t *data = xmalloc (32 * CS);
  pthread_t t[4];
  struct put_arg a[4];
  uint64_t total = 0;

  fill_random (data, 32 * CS, 9);
  for (int i = 0; i < 4; i++) {
    a[i] = (struct put_arg) { .r = r, .data = data, .seed = i };
    assert_int_equal (pthread_create (&t[i], NULL, put_thread, &a[i]), 0);
  }
  for (int i = 0; i < 4; i++) {
    void *ret;
    pthread_join (t[i], &ret);
    assert_null (ret);
    total += a[i].stored;
  }
  assert_int_equal (total, 32 * CS);
  assert_int_equal (pack_flush (r), 0);
  /* Packs are cut at the pack size (1 MiB here): only the last, put by
   * pack_flush, may be smaller. A thread that found the pack full while
   * another pack was in flight used to put out the next pack too, a few
   * chunks in (issue 12: backups wrote 1-5 packs too many). */
  int small = count_files_below ("packs", (off_t) 1 << 20);
  if (small > 1)
    fail_msg ("%d of %d packs are under the pack size", small,
              count_files ("packs"));
  vms_index *idx = vms_index_new (32 * CS);
  uint8_t *back = xmalloc (32 * CS);
  for (size_t c = 0; c < 32; c++) {
    struct vms_digest d;
    assert_int_equal (vms_repo_chunk_put (r, data + c * CS, CS, &d, NULL), 0);
    vms_index_set (idx, c, &d);
  }
  vms_repo *rd = vms_repo_open (repo_dir, 0);
  assert_int_equal (vms_repo_read (rd, idx, back, 32 * CS, 0), 0);
  assert_memory_equal (back, data, 32 * CS);
  vms_repo_close (rd);
  vms_index_free (idx);
  free (back);
  free (data);
  vms_repo_close (r);
}

static void
upgrade_moves_a_version_1_repository_to_version_2_keeping_every_backup (void **state)
{
  size_t n = 12 * CS + 777;
  uint8_t *a = xmalloc (n), *b = xmalloc (n), *back = xmalloc (n);
  struct lines l = { .n = 0 };
  char **ids;
  size_t nids;

  setenv (REPO_FORMAT_ENV, "1", 1);
  vms_repo *r = vms_repo_open (repo_dir, VMS_REPO_CREATE | VMS_REPO_WRITE);
  unsetenv (REPO_FORMAT_ENV);
  assert_non_null (r);
  fill_random (a, n, 11);
  memset (a + 4 * CS, 'z', 2 * CS);     /* compressible chunks too */
  memcpy (b, a, n);
  fill_random (b + 6 * CS, CS, 12);     /* b: one chunk of its own */
  make_backup (r, "b1", a, n);
  sleep (1);
  make_backup (r, "b2", b, n);
  struct vms_digest junk;
  uint8_t j[100] = { 5 };
  assert_int_equal (vms_repo_chunk_put (r, j, sizeof j, &junk, NULL), 0);
  vms_repo_close (r);
  r = vms_repo_open (repo_dir, 0);
  vms_manifest *m = vms_manifest_open (r, "b1");
  int64_t t1 = vms_manifest_time (m);
  vms_manifest_free (m);
  vms_repo_close (r);

  /* A damaged chunk stops it; the repository stays version 1. */
  char path[512], hex[65];
  r = vms_repo_open (repo_dir, 0);
  m = vms_manifest_open (r, "b2");
  vms_index *idx = vms_manifest_load_index (r, m, 0);
  vms_digest_hex (vms_index_get (idx, 6), hex);
  vms_index_free (idx);
  vms_manifest_free (m);
  vms_repo_close (r);
  snprintf (path, sizeof path, "%s/chunks/%.2s/%s", repo_dir, hex, hex);
  flip_byte (path, 100, 0x40);
  r = vms_repo_open (repo_dir, VMS_REPO_WRITE);
  assert_int_equal (vms_repo_upgrade (r, collect, &l), -1);
  assert_error_contains ("upgrade stopped, the repository is still version 1");
  assert_error_contains ("backup b2");
  assert_int_equal (vms_repo_format_version (r), 1);
  vms_repo_close (r);
  flip_byte (path, 100, 0x40);

  /* Again: it resumes and completes. */
  r = vms_repo_open (repo_dir, VMS_REPO_WRITE);
  assert_int_equal (vms_repo_upgrade (r, collect, &l), 2);
  assert_true (lines_contain (&l, "upgraded b1"));
  assert_true (lines_contain (&l, "upgraded b2"));
  lines_free (&l);
  assert_int_equal (vms_repo_format_version (r), 2);
  /* The handle goes on as version 2's. */
  assert_int_equal (vms_repo_verify (r, NULL, 1, collect, &l), 0);
  assert_int_equal (vms_repo_upgrade (r, NULL, NULL), -1);
  assert_error_contains ("format version 2 already");
  vms_repo_close (r);

  assert_false (exists ("chunks"));
  assert_false (exists ("backups/b1/manifest.json"));
  assert_false (exists ("backups/b1/indexes"));
  assert_true (exists ("backups/b1/manifest"));
  r = vms_repo_open (repo_dir, 0);
  assert_int_equal (vms_repo_format_version (r), 2);
  assert_int_equal (vms_repo_list (r, &ids, &nids), 0);
  assert_int_equal (nids, 2);
  assert_string_equal (ids[0], "b1");
  assert_string_equal (ids[1], "b2");
  free (ids[0]);
  free (ids[1]);
  free (ids);
  m = vms_manifest_open (r, "b1");
  assert_int_equal (vms_manifest_time (m), t1);
  assert_non_null (vms_manifest_components (m));
  assert_string_equal (vms_manifest_attrs (m), "{\"type\":\"full\"}");
  idx = vms_manifest_load_index (r, m, 0);
  assert_int_equal (vms_repo_read (r, idx, back, n, 0), 0);
  assert_memory_equal (back, a, n);
  vms_index_free (idx);
  vms_manifest_free (m);
  m = vms_manifest_open (r, "b2");
  idx = vms_manifest_load_index (r, m, 0);
  assert_int_equal (vms_repo_read (r, idx, back, n, 0), 0);
  assert_memory_equal (back, b, n);
  vms_index_free (idx);
  vms_manifest_free (m);
  /* The chunk no backup referenced was not carried over. */
  assert_int_equal (vms_repo_chunk_exists (r, &junk), 0);
  char *cp, *bid;
  assert_int_equal (vms_repo_last_checkpoint (r, "6c0a5e43-2b8e-4c39-9d59-4b8b2b6a1f00",
                                              "web01", NULL, &cp, &bid), 1);
  assert_string_equal (bid, "b2");
  free (cp);
  free (bid);
  assert_int_equal (vms_repo_verify (r, NULL, 1, collect, &l), 0);
  vms_repo_close (r);
  free (a);
  free (b);
  free (back);
}

static void
verify_sample_checks_about_that_share_of_the_chunks (void **state)
{
  vms_repo *r = open_v2 ();
  size_t n = 64 * CS;
  uint8_t *data = xmalloc (n);
  struct lines l = { .n = 0 };

  fill_random (data, n, 31);
  make_backup (r, "b1", data, n);
  vms_repo_close (r);
  /* Every pack gone: every chunk is missing. */
  char cmd[512];
  snprintf (cmd, sizeof cmd, "rm -rf %s/packs", repo_dir);
  assert_int_equal (system (cmd), 0);
  r = vms_repo_open (repo_dir, 0);
  assert_int_equal (vms_repo_verify_sample (r, NULL, 0, 100, NULL, NULL), 64);
  int p = vms_repo_verify_sample (r, NULL, 0, 25, collect, &l);
  print_message ("# a 25 %% sample found %d of 64 missing chunks\n", p);
  /* Binomial(64, 1/4): 16 on average; outside 2..40 once in 10^9 runs. */
  assert_true (p >= 2 && p <= 40);
  assert_true (lines_contain (&l, "is missing"));
  lines_free (&l);
  assert_int_equal (vms_repo_verify_sample (r, NULL, 0, 0, NULL, NULL), -1);
  assert_int_equal (vms_get_errno (), EINVAL);
  assert_int_equal (vms_repo_verify_sample (r, NULL, 0, 101, NULL, NULL), -1);
  vms_repo_close (r);
  free (data);
}

/* ---- verify --resume (issue 12) ---- */

static void
kill_at (void *opaque, uint64_t packs_done)
{
  if (packs_done >= *(const uint64_t *) opaque)
    raise (SIGKILL);              /* as a crash, once the record says so */
}

/* A verify in a child, SIGKILLed once at packs are recorded done. */
static void
killed_verify (int dirfd, const char *backup, int deep, unsigned pct,
               uint64_t at)
{
  pid_t pid = fork ();
  assert_true (pid >= 0);
  if (pid == 0) {
    vms_repo *c = vms_repo_open (repo_dir, 0);
    struct vms_verify_run run = { .state_dirfd = dirfd, .state_dir = "state",
                                  .saved = kill_at, .opaque = &at };
    if (c)
      vms_repo_verify_run (c, backup, deep, pct, &run, NULL, NULL);
    _exit (3);                  /* not killed: it ended first */
  }
  int status;
  assert_int_equal (waitpid (pid, &status, 0), pid);
  assert_true (WIFSIGNALED (status) && WTERMSIG (status) == SIGKILL);
}

static int
resume (vms_repo *r, int dirfd, const char *backup, int deep, unsigned pct,
        struct vms_verify_run *run, struct lines *l)
{
  *run = (struct vms_verify_run) { .state_dirfd = dirfd, .state_dir = "state",
                                   .resume = 1 };
  return vms_repo_verify_run (r, backup, deep, pct, run, collect, l);
}

static void
an_interrupted_verify_resumes_with_the_packs_it_had_not_checked (void **state)
{
  vms_repo *r = open_v2 ();
  size_t n = 64 * CS;
  uint8_t *data = xmalloc (n);
  struct lines l = { .n = 0 };
  struct vms_verify_run run;
  char sdir[256], rec[512];

  fill_random (data, n, 41);
  make_backup (r, "b1", data, n);
  vms_repo_close (r);
  r = vms_repo_open (repo_dir, 0);
  assert_non_null (r);
  snprintf (sdir, sizeof sdir, "%s-state", repo_dir);
  assert_int_equal (mkdir (sdir, 0700), 0);
  int dfd = open (sdir, O_RDONLY | O_DIRECTORY);
  assert_true (dfd >= 0);
  snprintf (rec, sizeof rec, "%s/verify/%s.json", sdir, r->id);

  /* Killed after 3 packs: the resume checks only the others. */
  killed_verify (dfd, NULL, 1, 100, 3);
  assert_true (access (rec, F_OK) == 0);
  assert_int_equal (resume (r, dfd, NULL, 1, 100, &run, &l), 0);
  print_message ("# resumed: %" PRIu64 " packs before, %" PRIu64 " now, of %"
                 PRIu64 "\n", run.packs_before, run.packs_checked, run.packs);
  assert_int_equal (run.resumed, 1);
  assert_true (run.packs >= 8);
  assert_int_equal (run.packs_before, 3);
  assert_int_equal (run.packs_checked, run.packs - 3);
  assert_int_equal (access (rec, F_OK), -1);     /* ended: removed */
  uint64_t packs = run.packs;

  /* Another selection is refused, and the record stays. */
  killed_verify (dfd, NULL, 1, 100, 2);
  assert_int_equal (resume (r, dfd, NULL, 0, 100, &run, &l), -1);
  assert_int_equal (vms_get_errno (), EINVAL);
  assert_non_null (strstr (vms_get_error (), "was 'verify --deep'"));
  assert_int_equal (resume (r, dfd, "b1", 1, 100, &run, &l), -1);
  assert_int_equal (resume (r, dfd, NULL, 1, 50, &run, &l), -1);
  assert_int_equal (access (rec, F_OK), 0);

  /* A sampled verify resumes with its sample (another sample would be
   * other chunks: a restart). */
  killed_verify (dfd, NULL, 0, 50, 2);
  assert_int_equal (resume (r, dfd, NULL, 0, 50, &run, &l), 0);
  assert_int_equal (run.resumed, 1);
  assert_int_equal (run.packs_before, 2);
  assert_int_equal (run.packs_checked, run.packs - 2);

  /* Damage found before the interruption is reported by the resume. */
  char pat[512];
  glob_t g;
  snprintf (pat, sizeof pat, "%s/packs/*/*", repo_dir);
  assert_int_equal (glob (pat, 0, NULL, &g), 0);
  /* (sorted: the first pack a verify checks) */
  int fd = open (g.gl_pathv[0], O_RDWR);
  globfree (&g);
  assert_true (fd >= 0);
  uint8_t b;
  assert_int_equal (pread (fd, &b, 1, 5000), 1);
  b ^= 0xff;
  assert_int_equal (pwrite (fd, &b, 1, 5000), 1);
  close (fd);
  killed_verify (dfd, NULL, 1, 100, packs - 1);
  assert_int_equal (resume (r, dfd, NULL, 1, 100, &run, &l), 1);
  assert_int_equal (run.packs_checked, 1);
  assert_int_equal (run.bad_before, 1);
  assert_true (lines_contain (&l, "(found before the interruption)"));
  lines_free (&l);

  /* A changed repository (a backup committed since) starts again. */
  killed_verify (dfd, NULL, 0, 100, 2);
  vms_repo *w = open_v2 ();
  fill_random (data, n / 4, 42);
  make_backup (w, "b2", data, n / 4);
  vms_repo_close (w);
  vms_repo_close (r);
  r = vms_repo_open (repo_dir, 0);
  assert_int_equal (resume (r, dfd, NULL, 0, 100, &run, &l), 0);
  assert_int_equal (run.resumed, 0);
  assert_non_null (strstr (run.note, "changed since the interrupted verify"));
  assert_int_equal (run.packs_checked, run.packs);

  /* Nothing recorded: from the beginning, saying so. */
  assert_int_equal (resume (r, dfd, NULL, 0, 100, &run, &l), 0);
  assert_non_null (strstr (run.note, "no interrupted verify"));

  /* Malformed records are refused, clearly. */
  static const char *const bad[] = {
    "{\"format\": \"vmshadow-verify-progress\"",
    "[]",
    "{\"format\": \"vmshadow-verify-progress\", \"version\": 2}",
    "{\"format\": \"vmshadow-verify-progress\", \"version\": 1, "
    "\"repository\": \"0123456789abcdef\"}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    FILE *f = fopen (rec, "w");
    assert_non_null (f);
    fputs (bad[i], f);
    fclose (f);
    assert_int_equal (resume (r, dfd, NULL, 0, 100, &run, &l), -1);
    assert_int_equal (vms_get_errno (), EBADMSG);
    assert_non_null (strstr (vms_get_error (), "is malformed"));
  }
  /* A record whose fields are right but its numbers are not. */
  killed_verify (dfd, NULL, 0, 100, 2);
  char cmd[1024];
  snprintf (cmd, sizeof cmd, "sed -i 's/\"packs_done\":2/\"packs_done\":999999/' %s", rec);
  assert_int_equal (system (cmd), 0);
  assert_int_equal (resume (r, dfd, NULL, 0, 100, &run, &l), -1);
  assert_int_equal (vms_get_errno (), EBADMSG);

  /* No state directory: nothing to resume from. */
  struct vms_verify_run none = { .state_dirfd = -1, .resume = 1 };
  assert_int_equal (vms_repo_verify_run (r, NULL, 0, 100, &none, NULL, NULL), -1);
  assert_int_equal (vms_get_errno (), EINVAL);
  lines_free (&l);
  close (dfd);
  vms_repo_close (r);
  free (data);
}

/* ---- a verify whose storage goes out of reach (issue 12) ----
 * A test double of a backend: the repository's own store, whose reads of
 * packs fail with errno err once `allow` of them were answered (as an S3
 * endpoint or a RADOS cluster gone, once the backend's retries gave up). */
struct flaky {
  struct storage s;
  struct storage *inner;
  int allow, err;
  int spread;                   /* once a pack read failed, every read fails */
  int failed;
};

static int
flaky_fails (struct flaky *f, const char *name)
{
  if (!(f->spread && f->failed) &&
      (strncmp (name, "packs/", 6) != 0 || f->allow-- > 0))
    return 0;
  f->failed = 1;
  errno = f->err;
  return 1;
}

static int
flaky_get (struct storage *s, const char *name, uint64_t off, size_t len,
           void *buf)
{
  struct flaky *f = (struct flaky *) s;
  return flaky_fails (f, name) ? -1
    : f->inner->ops->get (f->inner, name, off, len, buf);
}

static int
flaky_stat (struct storage *s, const char *name, struct storage_stat *st)
{
  struct flaky *f = (struct flaky *) s;
  return flaky_fails (f, name) ? -1 : f->inner->ops->stat (f->inner, name, st);
}

static int
flaky_list (struct storage *s, const char *prefix, storage_list_fn fn,
            void *opaque)
{
  struct flaky *f = (struct flaky *) s;
  return f->inner->ops->list (f->inner, prefix, fn, opaque);
}

static const struct storage_ops flaky_ops = {
  .size = sizeof (struct storage_ops), .name = "flaky", .get = flaky_get,
  .stat = flaky_stat, .list = flaky_list,
};

/* verify (deep or not) of r through a store whose pack reads fail with err
 * after allow of them. */
static int
verify_through_flaky (vms_repo *r, int dfd, int deep, int allow, int err,
                      int spread, struct vms_verify_run *run, struct lines *l)
{
  struct flaky f = { .s = { &flaky_ops }, .inner = r->store, .allow = allow,
                     .err = err, .spread = spread };
  *run = (struct vms_verify_run) { .state_dirfd = dfd, .state_dir = "state" };
  r->store = &f.s;
  int p = vms_repo_verify_run (r, NULL, deep, 100, run, collect, l);
  r->store = f.inner;
  return p;
}

static void
a_verify_that_cannot_reach_its_storage_stops_and_resumes (void **state)
{
  vms_repo *r = open_v2 ();
  size_t n = 64 * CS;
  uint8_t *data = xmalloc (n);
  struct lines l = { .n = 0 };
  struct vms_verify_run run;
  char sdir[256], rec[512];

  fill_random (data, n, 43);
  make_backup (r, "b1", data, n);
  vms_repo_close (r);
  r = vms_repo_open (repo_dir, 0);
  assert_non_null (r);
  snprintf (sdir, sizeof sdir, "%s-state", repo_dir);
  assert_int_equal (mkdir (sdir, 0700), 0);
  int dfd = open (sdir, O_RDONLY | O_DIRECTORY);
  assert_true (dfd >= 0);
  snprintf (rec, sizeof rec, "%s/verify/%s.json", sdir, r->id);

  for (int deep = 0; deep <= 1; deep++) {
    /* The connection lost after 3 pack reads: the verify stops, naming
     * it; nothing is reported damaged. */
    assert_int_equal (verify_through_flaky (r, dfd, deep, 3, ECONNRESET, 0,
                                            &run, &l), -1);
    assert_int_equal (vms_get_errno (), ECONNRESET);
    assert_int_equal (run.unreachable, 1);
    assert_non_null (strstr (vms_get_error (), "could not be read"));
    assert_non_null (strstr (vms_get_error (), "'verify --resume'"));
    assert_int_equal (l.n, 0);
    assert_true (run.packs >= 8);
    assert_int_equal (run.packs_checked, 3);
    assert_int_equal (access (rec, F_OK), 0);     /* kept for a resume */

    /* Resumed with the storage back: the other packs, all sound (none
     * of the packs it read before was recorded bad). */
    assert_int_equal (resume (r, dfd, NULL, deep, 100, &run, &l), 0);
    print_message ("# %s: stopped after 3 packs; resumed: %" PRIu64 " before, "
                   "%" PRIu64 " now, of %" PRIu64 "\n", deep ? "deep" : "plain",
                   run.packs_before, run.packs_checked, run.packs);
    assert_int_equal (run.resumed, 1);
    assert_int_equal (run.packs_before, 3);
    assert_int_equal (run.bad_before, 0);
    assert_int_equal (run.packs_checked, run.packs - 3);
    assert_int_equal (l.n, 0);
    assert_int_equal (access (rec, F_OK), -1);
  }

  /* A read error of the data itself (EIO: a bad sector) is damage: the
   * chunks it hides are reported, the verify goes on to the end. */
  int p = verify_through_flaky (r, dfd, 1, 3, EIO, 0, &run, &l);
  print_message ("# EIO after 3 pack reads: %d problems\n", p);
  assert_true (p > 0);
  assert_int_equal (run.unreachable, 0);
  assert_int_equal (run.packs_checked, run.packs);
  assert_true (lines_contain (&l, "unreadable"));
  lines_free (&l);

  /* The same, with the backup's manifest and indexes unreadable too by
   * the time the bad chunks would be said where they are used: they are
   * still reported, by id (before: "no problems", exit 0). */
  p = verify_through_flaky (r, dfd, 1, 3, EIO, 1, &run, &l);
  print_message ("# EIO after 3 pack reads, then on every read: %d problems\n", p);
  assert_true (p > 0);
  assert_true (lines_contain (&l, "no backup verify could read again names it"));
  lines_free (&l);
  close (dfd);
  vms_repo_close (r);
  free (data);
}

static void
a_full_file_system_fails_the_backup_and_keeps_the_repository_whole (void **state)
{
  char mnt[128], filler[256];
  size_t n = 2u << 20;
  uint8_t *data = xmalloc (n);

  snprintf (mnt, sizeof mnt, "%s/small", workdir);
  assert_int_equal (mkdir (mnt, 0700), 0);
  if (mount_small_fs (mnt, 6u << 20) == -1) {
    print_message ("# SKIP cannot mount a tmpfs in a private mount namespace "
                   "(%s): needs root\n", strerror (errno));
    skip ();
  }
  snprintf (repo_dir, sizeof repo_dir, "%s/repo", mnt);
  vms_repo *r = open_v2 ();
  fill_random (data, n, 21);
  make_backup (r, "b1", data, CS + 1000);

  /* Leave half a pack free: the next pack does not fit. */
  snprintf (filler, sizeof filler, "%s/filler", mnt);
  int fd = open (filler, O_WRONLY | O_CREAT | O_APPEND, 0600);
  assert_true (fd >= 0);
  while (free_bytes (mnt) > (512u << 10)) {
    uint64_t over = free_bytes (mnt) - (512u << 10);
    assert_true (write (fd, data, over < 65536 ? (size_t) over : 65536) > 0);
  }
  close (fd);
  int failed = 0;
  vms_index *idx = vms_index_new (n);
  for (uint64_t c = 0; c < vms_index_chunk_count (idx) && !failed; c++) {
    struct vms_digest d;
    failed = vms_repo_chunk_put (r, data + CS + c * CS / 2, CS, &d, NULL) == -1;
    if (!failed)
      vms_index_set (idx, c, &d);
  }
  assert_true (failed);
  assert_int_equal (vms_get_errno (), ENOSPC);
  assert_error_contains ("no space left on device while writing pack packs/");
  /* Nothing this handle stored may be committed now. */
  vms_repo_txn *txn = vms_repo_txn_begin (r, "b2");
  assert_non_null (txn);
  struct vms_stored_file f = { .writer_id = "w", .component = "c",
                               .path = "/p", .kind = VMS_FILE_PLAIN };
  if (vms_repo_txn_add_file (txn, &f, idx) == 0) {
    assert_int_equal (vms_repo_txn_commit (txn, NULL, NULL, 0, NULL), -1);
    assert_error_contains ("could not be stored");
  }
  vms_repo_txn_free (txn);
  vms_index_free (idx);
  vms_repo_close (r);
  unlink (filler);

  /* b1 alone, whole; no temp file left; gc keeps what b1 needs; a new
   * backup works. */
  char tmpdir[256];
  snprintf (tmpdir, sizeof tmpdir, "%s/tmp", repo_dir);
  DIR *d = opendir (tmpdir);
  struct dirent *e;
  int left = 0;
  while (d && (e = readdir (d)) != NULL)
    left += e->d_name[0] != '.';
  if (d)
    closedir (d);
  assert_int_equal (left, 0);
  r = open_v2 ();
  char **ids;
  size_t nids;
  assert_int_equal (vms_repo_list (r, &ids, &nids), 0);
  assert_int_equal (nids, 1);
  assert_string_equal (ids[0], "b1");
  free (ids[0]);
  free (ids);
  struct lines l = { .n = 0 };
  uint64_t removed = 0, freed = 0;
  assert_int_equal (vms_repo_gc (r, 0, &removed, &freed), 0);
  assert_int_equal (vms_repo_verify (r, NULL, 1, collect, &l), 0);
  make_backup (r, "b3", data, n);
  assert_int_equal (vms_repo_verify (r, NULL, 1, collect, &l), 0);
  vms_repo_close (r);
  free (data);
}

/* Issue 15 (peak memory): a pack is written to tmp/ as it fills, a
 * quarter pack at a time (256 KiB for these 1 MiB packs), not held whole
 * in memory; its chunks read back from the file and from memory before
 * it is put, and after; the put pack is whole (verify deep re-reads its
 * checksum and every blob). */
static void
a_pack_is_written_as_it_fills_and_reads_back_before_and_after_its_put (void **state)
{
  vms_repo *r = open_v2 ();
  size_t n = 7;                 /* 896 KiB: under one pack */
  uint8_t *data = xmalloc (n * CS), *back = xmalloc (CS);
  struct vms_digest d[7];
  char tmp[512], path[512];

  fill_random (data, n * CS, 1515);
  for (size_t c = 0; c < n; c++)
    assert_int_equal (vms_repo_chunk_put (r, data + c * CS, CS, &d[c], NULL), 0);
  /* Not put yet, but on its way: its first pieces are in tmp/. */
  assert_int_equal (count_files ("packs"), 0);
  assert_int_equal (count_files ("tmp"), 1);
  assert_int_equal (first_file ("tmp", tmp, sizeof tmp), 0);
  struct stat st;
  assert_int_equal (stat (tmp, &st), 0);
  if (st.st_size < 512 * 1024)
    fail_msg ("%s holds %jd bytes of a pack of 896 KiB of chunks: not "
              "written as it fills", tmp, (intmax_t) st.st_size);
  for (size_t c = 0; c < n; c++) {
    if (vms_repo_chunk_get (r, &d[c], back, CS, 1) == -1)
      fail_msg ("chunk %zu of the open pack: %s", c, vms_get_error ());
    assert_memory_equal (back, data + c * CS, CS);
  }
  /* A backup of them commits it (pack_flush puts it): read again. */
  make_backup (r, "b1", data, n * CS);
  assert_int_equal (count_files ("packs"), 1);
  assert_int_equal (count_files ("tmp"), 0);
  assert_int_equal (first_file ("packs", path, sizeof path), 0);
  assert_int_equal (stat (path, &st), 0);
  assert_true (st.st_size > (off_t) (n * CS));
  /* Its tail: the trailer just before it, the XXH3-128 of every byte
   * before it (taken piece by piece as the pack was written). */
  {
    size_t len;
    uint8_t *p = file_read (path, &len);
    const uint8_t *tail = p + len - PACK_TAIL_SIZE;
    assert_int_equal (repo_get_le64 (tail) + repo_get_le64 (tail + 8),
                      len - PACK_TAIL_SIZE);
    assert_int_equal (repo_get_le64 (tail + 8), n * SEGMENT_ENTRY_SIZE);
    free (p);
    assert_tail_is_xxh3 (path);
  }
  for (size_t c = 0; c < n; c++) {
    assert_int_equal (vms_repo_chunk_get (r, &d[c], back, CS, 1), 0);
    assert_memory_equal (back, data + c * CS, CS);
  }
  vms_repo *rd = vms_repo_open (repo_dir, 0);
  assert_non_null (rd);
  assert_int_equal (vms_repo_verify (rd, "b1", 1, NULL, NULL), 0);
  vms_repo_close (rd);
  free (data);
  free (back);
  vms_repo_close (r);
}

/* The blob of chunk d in its pack: the pack's path and the blob's offset
 * and length (content and envelope). */
static void
blob_where (vms_repo *r, const struct vms_digest *d, char *pack, size_t size,
            off_t *off, size_t *len)
{
  struct pack_loc loc;
  char name[64];
  assert_int_equal (pack_lookup (r, d, &loc), 1);
  pack_object_name (loc.pack_id, name);
  snprintf (pack, size, "%s/%s", repo_dir, name);
  *off = loc.offset;
  *len = loc.slen + ENVELOPE_OVERHEAD;
}

static void
pack_rw (const char *pack, off_t off, void *buf, size_t len, int write)
{
  int fd = open (pack, write ? O_WRONLY : O_RDONLY);
  assert_true (fd >= 0);
  assert_int_equal (write ? pwrite (fd, buf, len, off)
                    : pread (fd, buf, len, off), (ssize_t) len);
  close (fd);
}

/* A new encrypted repository with visible backup ids, its key in the
 * work directory, its passphrase in the environment (and a cheap scrypt)
 * until encrypted_done. */
static vms_repo *
init_encrypted (void)
{
  char keys[128];
  struct vms_repo_encryption e = { .visible_backup_ids = 1 };

  snprintf (keys, sizeof keys, "%s/keys", workdir);
  setenv ("VMSHADOW_KEY_DIR", keys, 1);
  setenv ("VMSHADOW_PASSPHRASE", "unit-test-passphrase", 1);
  setenv ("VMSHADOW_SCRYPT_LOG2N", "14", 1);
  vms_repo *r = vms_repo_init_encrypted (repo_dir, &e);
  if (r == NULL)
    fail_msg ("init --encrypt: %s", vms_get_error ());
  return r;
}

static void
encrypted_done (void)
{
  unsetenv ("VMSHADOW_KEY_DIR");
  unsetenv ("VMSHADOW_PASSPHRASE");
  unsetenv ("VMSHADOW_SCRYPT_LOG2N");
}

/* Issue 13, R28 (docs/encryption.md "Why a restore does not re-derive
 * chunk ids"): in an encrypted repository AES-256-GCM alone proves that a
 * chunk read is the chunk, since a blob opens only for the chunk id and
 * repository it was sealed for. Two valid blobs swapped in their pack fail
 * authentication, each named (no keyed id is re-derived on this path any
 * more, so this is GCM's doing). The one thing GCM cannot tell is a blob
 * that the key holder itself sealed for a chunk id with other content —
 * what a fault of the host that wrote it would leave: it opens, and
 * verify --deep, which re-derives every chunk id from the content, names
 * it. */
static void
an_encrypted_read_is_proven_by_gcm_and_verify_deep_rederives_ids (void **state)
{
  char pack0[512], pack1[512];
  struct vms_digest d0, d1;
  struct lines l = { .n = 0 };
  size_t n = 3 * CS, len0, len1;
  off_t off0, off1;
  uint8_t *data = xmalloc (n), *buf = xmalloc (CS);
  uint8_t *b0 = xmalloc (CS + ENVELOPE_OVERHEAD);
  uint8_t *b1 = xmalloc (CS + ENVELOPE_OVERHEAD);

  vms_repo *r = init_encrypted ();
  fill_random (data, n, 13);           /* incompressible: raw blobs */
  make_backup (r, "b1", data, n);
  assert_int_equal (repo_chunk_id (r, data, CS, &d0), 0);
  assert_int_equal (repo_chunk_id (r, data + CS, CS, &d1), 0);
  blob_where (r, &d0, pack0, sizeof pack0, &off0, &len0);
  blob_where (r, &d1, pack1, sizeof pack1, &off1, &len1);
  assert_int_equal (len0, CS + ENVELOPE_OVERHEAD);
  assert_int_equal (len1, len0);
  pack_rw (pack0, off0, b0, len0, 0);
  pack_rw (pack1, off1, b1, len1, 0);

  /* Swapped: each is a valid blob, sealed by this key, for the other id. */
  pack_rw (pack0, off0, b1, len1, 1);
  pack_rw (pack1, off1, b0, len0, 1);
  vms_repo *rd = vms_repo_open (repo_dir, 0);
  assert_non_null (rd);
  assert_int_equal (vms_repo_chunk_get (rd, &d0, buf, CS, 1), -1);
  assert_int_equal (vms_get_errno (), EBADMSG);
  assert_error_contains ("failed authentication");
  assert_int_equal (vms_repo_chunk_get (rd, &d1, buf, CS, 1), -1);
  assert_error_contains ("failed authentication");
  vms_repo_close (rd);
  pack_rw (pack0, off0, b0, len0, 1);
  pack_rw (pack1, off1, b1, len1, 1);
  rd = vms_repo_open (repo_dir, 0);
  assert_non_null (rd);
  assert_int_equal (vms_repo_chunk_get (rd, &d1, buf, CS, 1), 0);
  assert_memory_equal (buf, data + CS, CS);
  vms_repo_close (rd);

  /* Chunk 0's content sealed with the key for chunk 1's id. */
  char aad[256], hex[65];
  vms_digest_hex (&d1, hex);
  size_t al = crypt_aad (aad, sizeof aad, r->id, "blob", hex);
  assert_true (al > 0);
  assert_int_equal (crypt_seal (r->key->k_enc, aad, al, data, CS, b1), 0);
  pack_rw (pack1, off1, b1, len1, 1);
  rd = vms_repo_open (repo_dir, 0);
  assert_non_null (rd);
  assert_int_equal (vms_repo_chunk_get (rd, &d1, buf, CS, 1), 0);
  assert_memory_equal (buf, data, CS);
  assert_int_equal (vms_repo_verify (rd, NULL, 1, collect, &l), 1);
  assert_true (lines_contain (&l, "offset 131072: chunk"));
  assert_true (lines_contain (&l, "is corrupt (hash mismatch)"));
  lines_free (&l);
  vms_repo_close (rd);
  vms_repo_close (r);
  encrypted_done ();
  free (data);
  free (buf);
  free (b0);
  free (b1);
}

/* The keyless verify of the repository finds exactly one problem, and
 * names pack (its path) with what. */
static void
keyless_verify_names (const char *pack, const char *what)
{
  struct lines l = { .n = 0 };
  char want[512];
  vms_repo *rd = vms_repo_open (repo_dir, VMS_REPO_NO_KEY);
  assert_non_null (rd);
  assert_int_equal (vms_repo_verify (rd, NULL, 0, collect, &l), 1);
  snprintf (want, sizeof want, "pack %s %s", pack + strlen (repo_dir) + 1,
            what);
  if (!lines_contain (&l, want))
    fail_msg ("verify without the key did not say \"%s\" (first line: %s)",
              want, l.n ? l.v[0] : "none");
  lines_free (&l);
  vms_repo_close (rd);
}

/* Issue 15, R28: a repository holding packs of both pack format versions
 * (one written before issue 15, one after) reads back and verifies with
 * the key, and without it each pack's tail is checked by its version:
 * SHA-256 in version 1, XXH3-128 in version 2 (written in pieces, or put
 * whole as on RADOS and S3). Without the key the tail's checksum is all
 * that finds a damaged blob, so a flipped bit in a pack of either version
 * is named by it; so are a set reserved byte of version 2's tail and a
 * pack format version this build does not read (with the key too). */
static void
packs_of_both_format_versions_restore_and_verify (void **state)
{
  char pack1[512], pack2[512];
  struct vms_digest d[6];
  struct lines l = { .n = 0 };
  size_t n = 3 * CS, blen;
  off_t off;
  struct stat st;
  uint8_t *data = xmalloc (2 * n), *buf = xmalloc (CS);

  vms_repo *r = init_encrypted ();
  fill_random (data, 2 * n, 1513);
  make_backup (r, "b1", data, n);
  /* b2's pack put whole: the store offers no writer. */
  struct storage_ops whole = *r->store->ops;
  const struct storage_ops *ops = r->store->ops;
  whole.writer_open = NULL;
  r->store->ops = &whole;
  make_backup (r, "b2", data + n, n);
  r->store->ops = ops;
  for (size_t c = 0; c < 6; c++)
    assert_int_equal (repo_chunk_id (r, data + c * CS, CS, &d[c]), 0);
  blob_where (r, &d[0], pack1, sizeof pack1, &off, &blen);
  blob_where (r, &d[3], pack2, sizeof pack2, &off, &blen);
  assert_string_not_equal (pack1, pack2);
  vms_repo_close (r);
  assert_tail_is_xxh3 (pack1);
  assert_tail_is_xxh3 (pack2);
  pack_make_version_1 (pack1);

  vms_repo *rd = vms_repo_open (repo_dir, 0);
  assert_non_null (rd);
  for (size_t c = 0; c < 6; c++) {
    if (vms_repo_chunk_get (rd, &d[c], buf, CS, 1) == -1)
      fail_msg ("chunk %zu: %s", c, vms_get_error ());
    assert_memory_equal (buf, data + c * CS, CS);
  }
  assert_int_equal (vms_repo_verify (rd, NULL, 1, collect, &l), 0);
  lines_free (&l);
  vms_repo_close (rd);
  rd = vms_repo_open (repo_dir, VMS_REPO_NO_KEY);
  assert_non_null (rd);
  assert_int_equal (vms_repo_verify (rd, NULL, 0, collect, &l), 0);
  assert_true (lines_contain (&l, "checked without the key: 2 packs"));
  lines_free (&l);
  vms_repo_close (rd);

  /* A bit of the first blob of each pack (the header is 16 bytes). */
  flip_byte (pack1, 100, 0x04);
  keyless_verify_names (pack1, "is corrupt (checksum mismatch");
  flip_byte (pack1, 100, 0x04);
  flip_byte (pack2, 100, 0x04);
  keyless_verify_names (pack2, "is corrupt (checksum mismatch");
  flip_byte (pack2, 100, 0x04);
  assert_int_equal (stat (pack2, &st), 0);
  flip_byte (pack2, st.st_size - 1, 0x01);
  keyless_verify_names (pack2, "is corrupt (its tail's reserved bytes are "
                        "not zero)");
  flip_byte (pack2, st.st_size - 1, 0x01);

  /* Pack format version 3. */
  flip_byte (pack2, 8, 0x01);
  keyless_verify_names (pack2, "has pack format version 3, newer than this "
                        "vmshadow reads");
  rd = vms_repo_open (repo_dir, 0);
  assert_non_null (rd);
  assert_int_equal (vms_repo_verify (rd, NULL, 1, collect, &l), 1);
  assert_true (lines_contain (&l, "has pack format version 3, newer than "
                              "this vmshadow reads"));
  lines_free (&l);
  vms_repo_close (rd);
  encrypted_done ();
  free (data);
  free (buf);
}

/* Issue 15 (and 14's adoption, docs/repository-format.md "Sync"): a pack
 * that no segment names, as a killed sync leaves it, is adopted whatever
 * pack format version it has — one an older vmshadow wrote (1) or this
 * one (2) — and one of a later version is refused with the pack named. */
static void
a_pack_of_either_format_version_is_adopted_and_a_later_one_refused (void **state)
{
  vms_repo *r = open_v2 ();
  size_t n = 3 * CS;
  uint8_t *data = xmalloc (3 * n), *buf = xmalloc (CS);
  uint8_t ids[3][16];
  char path[3][512], name[64];
  glob_t g;

  fill_random (data, 3 * n, 1514);
  for (int i = 0; i < 3; i++) {
    char id[8];
    struct vms_digest d;
    struct pack_loc loc;
    snprintf (id, sizeof id, "b%d", i + 1);
    make_backup (r, id, data + i * n, n);
    assert_int_equal (repo_chunk_id (r, data + i * n, CS, &d), 0);
    assert_int_equal (pack_lookup (r, &d, &loc), 1);
    memcpy (ids[i], loc.pack_id, 16);
    pack_object_name (ids[i], name);
    snprintf (path[i], sizeof path[i], "%s/%s", repo_dir, name);
  }
  vms_repo_close (r);
  pack_make_version_1 (path[0]);
  flip_byte (path[2], 8, 0x01);           /* version 2 -> 3 */
  /* No segment names them any more. */
  char pat[512];
  snprintf (pat, sizeof pat, "%s/index/*", repo_dir);
  assert_int_equal (glob (pat, 0, NULL, &g), 0);
  for (size_t i = 0; i < g.gl_pathc; i++)
    assert_int_equal (unlink (g.gl_pathv[i]), 0);
  globfree (&g);

  r = vms_repo_open (repo_dir, VMS_REPO_WRITE);
  assert_non_null (r);
  for (int i = 0; i < 2; i++) {
    uint64_t chunks;
    const char *why;
    if (pack_adopt (r, ids[i], &chunks, &why) != 1)
      fail_msg ("pack of version %d not adopted: %s", 1 + i,
                why ? why : vms_get_error ());
    assert_int_equal (chunks, 3);
  }
  uint64_t chunks;
  const char *why;
  assert_int_equal (pack_adopt (r, ids[2], &chunks, &why), -1);
  pack_object_name (ids[2], name);
  assert_error_contains (name);
  assert_error_contains ("has pack format version 3, newer than this "
                         "vmshadow reads");
  for (size_t c = 0; c < 6; c++) {
    struct vms_digest d;
    assert_int_equal (repo_chunk_id (r, data + c * CS, CS, &d), 0);
    if (vms_repo_chunk_get (r, &d, buf, CS, 1) == -1)
      fail_msg ("chunk %zu of an adopted pack: %s", c, vms_get_error ());
    assert_memory_equal (buf, data + c * CS, CS);
  }
  vms_repo_close (r);
  free (data);
  free (buf);
}

int
main (int argc, char *argv[])
{
  const struct CMUnitTest tests[] = {
#define T(name, f) { name, f, setup, teardown, NULL }
    T ("chunks-go-into-packs-of-the-configured-size",
       chunks_go_into_packs_of_the_configured_size),
    T ("identical-chunks-are-stored-once-and-zero-chunks-never",
       identical_chunks_are_stored_once_and_zero_chunks_never),
    T ("a-backup-exists-once-its-manifest-is-put",
       a_backup_exists_once_its_manifest_is_put),
    T ("a-version-1-repository-stays-version-1",
       a_version_1_repository_stays_version_1),
    T ("verify-names-a-damaged-blob-and-a-missing-pack",
       verify_names_a_damaged_blob_and_a_missing_pack),
    T ("a-damaged-index-segment-is-refused-and-gc-removes-nothing",
       a_damaged_index_segment_is_refused_and_gc_removes_nothing),
    T ("prune-then-gc-drop-dead-packs-and-repack-mostly-dead-ones",
       prune_then_gc_drop_dead_packs_and_repack_mostly_dead_ones),
    T ("gc-removes-leftovers-of-a-killed-backup-after-the-grace-period",
       gc_removes_leftovers_of_a_killed_backup_after_the_grace_period),
    T ("concurrent-puts-store-each-chunk-once",
       concurrent_puts_store_each_chunk_once),
    T ("verify-sample-checks-about-that-share-of-the-chunks",
       verify_sample_checks_about_that_share_of_the_chunks),
    T ("an-interrupted-verify-resumes-with-the-packs-it-had-not-checked",
       an_interrupted_verify_resumes_with_the_packs_it_had_not_checked),
    T ("a-verify-that-cannot-reach-its-storage-stops-and-resumes",
       a_verify_that_cannot_reach_its_storage_stops_and_resumes),
    T ("a-full-file-system-fails-the-backup-and-keeps-the-repository-whole",
       a_full_file_system_fails_the_backup_and_keeps_the_repository_whole),
    T ("upgrade-moves-a-version-1-repository-to-version-2-keeping-every-backup",
       upgrade_moves_a_version_1_repository_to_version_2_keeping_every_backup),
    T ("a-pack-is-written-as-it-fills-and-reads-back-before-and-after-its-put",
       a_pack_is_written_as_it_fills_and_reads_back_before_and_after_its_put),
    T ("an-encrypted-read-is-proven-by-gcm-and-verify-deep-rederives-ids",
       an_encrypted_read_is_proven_by_gcm_and_verify_deep_rederives_ids),
    T ("packs-of-both-format-versions-restore-and-verify",
       packs_of_both_format_versions_restore_and_verify),
    T ("a-pack-of-either-format-version-is-adopted-and-a-later-one-refused",
       a_pack_of_either_format_version_is_adopted_and_a_later_one_refused),
#undef T
  };
  cmocka_set_message_output (CM_OUTPUT_TAP);
  if (argc > 1)
    cmocka_set_test_filter (argv[1]);
  return cmocka_run_group_tests_name ("repo-v2", tests, NULL, NULL);
}
