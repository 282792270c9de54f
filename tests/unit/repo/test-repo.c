/* Unit tests of the repository (repo.h, docs/repository-format.md): chunks
 * and indexes round-trip, backups appear only when committed, one writer at
 * a time, verify finds what is damaged and says where, damaged and hostile
 * files are refused with clear errors, prune and gc delete exactly what
 * they should, permissions are exact, and a full file system leaves the
 * repository intact.
 *
 * Each test gets a fresh repository under the build directory.
 * Usage: test-repo [test-name]; output is TAP.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <inttypes.h>
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

#include "vmshadow/document.h"
#include "vmshadow/error.h"
#include "vmshadow/repo.h"

#include "repo-internal.h"
#include "repo-test-lib.h"

/* ---- helpers ---- */

static int
setup (void **state)
{
  return repo_test_setup ("repo-test");
}

static int
teardown (void **state)
{
  return repo_test_teardown ();
}

static vms_repo *
open_writer (void)
{
  vms_repo *r = vms_repo_open (repo_dir, VMS_REPO_CREATE | VMS_REPO_WRITE);
  if (r == NULL)
    fail_msg ("cannot open %s: %s", repo_dir, vms_get_error ());
  return r;
}

/* A committed backup "id" of one file of component (path
 * /var/lib/libvirt/images/web01.img) holding data. */
static void
make_backup_of (vms_repo *r, const char *id, const char *component,
                const uint8_t *data, size_t size)
{
  vms_index *idx = store_file (r, data, size);
  vms_repo_txn *txn = vms_repo_txn_begin (r, id);
  if (txn == NULL)
    fail_msg ("txn_begin: %s", vms_get_error ());
  struct vms_stored_file f = {
    .writer_id = "6c0a5e43-2b8e-4c39-9d59-4b8b2b6a1f00",
    .component = component,
    .path = "/var/lib/libvirt/images/web01.img",
    .kind = VMS_FILE_DISK,
    .format = "raw",
    .bytes_read = size,
  };
  assert_int_equal (vms_repo_txn_add_file (txn, &f, idx), 0);
  vms_document *bcd = vms_components_new (id);
  assert_non_null (bcd);
  if (vms_repo_txn_commit (txn, bcd, NULL, 0, NULL) == -1)
    fail_msg ("commit: %s", vms_get_error ());
  vms_document_free (bcd);
  vms_repo_txn_free (txn);
  vms_index_free (idx);
}

/* … of component "web01". */
static void
make_backup (vms_repo *r, const char *id, const uint8_t *data, size_t size)
{
  make_backup_of (r, id, "web01", data, size);
}

/* A backup "id" of files (component, path, checkpoint) of one writer. */
static void
make_checkpointed_backup_with (vms_repo *r, const char *id,
                               const char *const (*files)[3], size_t n,
                               const char *bcd_json)
{
  static const uint8_t data[512] = { 1 };
  vms_index *idx = store_file (r, data, sizeof data);
  vms_repo_txn *txn = vms_repo_txn_begin (r, id);
  assert_non_null (txn);
  for (size_t i = 0; i < n; i++) {
    struct vms_stored_file f = {
      .writer_id = "6c0a5e43-2b8e-4c39-9d59-4b8b2b6a1f00",
      .component = files[i][0], .path = files[i][1], .checkpoint = files[i][2],
      .kind = VMS_FILE_DISK, .format = "raw",
    };
    assert_int_equal (vms_repo_txn_add_file (txn, &f, idx), 0);
  }
  vms_document *bcd = bcd_json ? vms_document_parse (bcd_json, strlen (bcd_json))
    : vms_components_new (id);
  assert_non_null (bcd);
  if (vms_repo_txn_commit (txn, bcd, NULL, 0, NULL) == -1)
    fail_msg ("commit: %s", vms_get_error ());
  vms_document_free (bcd);
  vms_repo_txn_free (txn);
  vms_index_free (idx);
}

static void
make_checkpointed_backup (vms_repo *r, const char *id,
                          const char *const (*files)[3], size_t n)
{
  make_checkpointed_backup_with (r, id, files, n, NULL);
}

/* Number of chunk files (not temp files), raw or zstd, in the
 * repository. */
static int
count_chunks (void)
{
  char path[256];
  int n = 0;
  snprintf (path, sizeof path, "%s/chunks", repo_dir);
  DIR *top = opendir (path);
  assert_non_null (top);
  struct dirent *e;
  while ((e = readdir (top)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    char sub[512];
    snprintf (sub, sizeof sub, "%s/%s", path, e->d_name);
    DIR *d = opendir (sub);
    if (d == NULL)
      continue;
    struct dirent *c;
    while ((c = readdir (d)) != NULL) {
      struct vms_digest dg;
      if (chunk_store_parse_name (c->d_name, &dg) != -1)
        n++;
    }
    closedir (d);
  }
  closedir (top);
  return n;
}

/* Entries in a directory other than . and .. */
static int
count_entries (const char *sub)
{
  char path[256];
  int n = 0;
  snprintf (path, sizeof path, "%s/%s", repo_dir, sub);
  DIR *d = opendir (path);
  if (d == NULL)
    return -1;
  struct dirent *e;
  while ((e = readdir (d)) != NULL)
    if (strcmp (e->d_name, ".") && strcmp (e->d_name, ".."))
      n++;
  closedir (d);
  return n;
}

/* The file of chunk d in its raw form (chunks/ab/<hex>) ... */
static void
chunk_path (const struct vms_digest *d, char *out, size_t len)
{
  char hex[65];
  vms_digest_hex (d, hex);
  snprintf (out, len, "%s/chunks/%.2s/%s", repo_dir, hex, hex);
}

/* ... and in its zstd form (chunks/ab/<hex>.zst). */
static void
chunk_path_zst (const struct vms_digest *d, char *out, size_t len)
{
  char hex[65];
  vms_digest_hex (d, hex);
  snprintf (out, len, "%s/chunks/%.2s/%s.zst", repo_dir, hex, hex);
}

static int
exists (const char *path)
{
  struct stat st;
  return lstat (path, &st) == 0;
}

static uint32_t
le32 (const uint8_t *p)
{
  return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 |
    (uint32_t) p[3] << 24;
}

static void
write_file (const char *path, const void *buf, size_t len)
{
  FILE *fp = fopen (path, "w");
  assert_non_null (fp);
  assert_int_equal (fwrite (buf, 1, len, fp), len);
  assert_int_equal (fclose (fp), 0);
}

static char *
read_whole (const char *path, size_t *len)
{
  FILE *fp = fopen (path, "r");
  assert_non_null (fp);
  fseek (fp, 0, SEEK_END);
  long n = ftell (fp);
  rewind (fp);
  char *buf = malloc ((size_t) n + 1);
  assert_non_null (buf);
  assert_int_equal (fread (buf, 1, (size_t) n, fp), (size_t) n);
  buf[n] = '\0';
  fclose (fp);
  *len = (size_t) n;
  return buf;
}

/* ---- chunks ---- */

static void
chunk_round_trips_and_compresses_compressible_data (void **state)
{
  vms_repo *r = open_writer ();
  uint8_t *data = xmalloc (CS), *back = xmalloc (CS);
  for (size_t i = 0; i < CS; i++)
    data[i] = (uint8_t) ("abcdefgh"[i % 8]);
  struct vms_digest d;
  uint64_t stored;

  char path[256];
  struct stat st;

  assert_int_equal (vms_repo_chunk_put (r, data, CS, &d, &stored), 0);
  assert_false (vms_digest_is_zero (&d));
  assert_true (stored > 0 && stored < CS / 10);
  assert_int_equal (vms_repo_chunk_exists (r, &d), 1);
  assert_int_equal (vms_repo_chunk_get (r, &d, back, CS, 1), 0);
  assert_memory_equal (data, back, CS);

  /* Stored as chunks/ab/<hex>.zst: header and zstd frame; no raw file. */
  chunk_path (&d, path, sizeof path);
  assert_false (exists (path));
  chunk_path_zst (&d, path, sizeof path);
  assert_int_equal (stat (path, &st), 0);
  assert_int_equal (st.st_size, stored);
  FILE *fp = fopen (path, "r");
  assert_non_null (fp);
  uint8_t h[CHUNK_HEADER_SIZE + 4];
  assert_int_equal (fread (h, 1, sizeof h, fp), sizeof h);
  fclose (fp);
  assert_memory_equal (h, "VMSC", 4);
  assert_int_equal (h[4], CHUNK_VERSION);
  assert_int_equal (h[5], CHUNK_COMPRESSION_ZSTD);
  assert_int_equal (h[6], 0);
  assert_int_equal (h[7], 0);
  assert_int_equal (le32 (h + 8), CS);
  assert_int_equal (le32 (h + 12), stored - CHUNK_HEADER_SIZE);
  assert_memory_equal (h + 16, "\x28\xb5\x2f\xfd", 4);   /* zstd frame magic */
  assert_int_equal (count_chunks (), 1);
  free (data);
  free (back);
  vms_repo_close (r);
}

static void
incompressible_chunk_is_stored_raw (void **state)
{
  vms_repo *r = open_writer ();
  uint8_t *data = xmalloc (CS), *back = xmalloc (CS);
  fill_random (data, CS, 1);
  struct vms_digest d;
  uint64_t stored;
  char path[256];
  struct stat st;

  /* Stored as chunks/ab/<hex>, no header: exactly the content, so a
   * 128 KiB chunk takes 32 blocks of 4 KiB, not 33. No .zst file. */
  assert_int_equal (vms_repo_chunk_put (r, data, CS, &d, &stored), 0);
  assert_int_equal (stored, CS);
  chunk_path (&d, path, sizeof path);
  assert_int_equal (stat (path, &st), 0);
  assert_int_equal (st.st_size, CS);
  size_t n;
  char *file = read_whole (path, &n);
  assert_int_equal (n, CS);
  assert_memory_equal (file, data, CS);
  free (file);
  chunk_path_zst (&d, path, sizeof path);
  assert_false (exists (path));
  assert_int_equal (vms_repo_chunk_get (r, &d, back, CS, 1), 0);
  assert_memory_equal (data, back, CS);
  /* A one-byte chunk cannot be compressed: raw too. */
  uint8_t one = 7;
  assert_int_equal (vms_repo_chunk_put (r, &one, 1, &d, &stored), 0);
  assert_int_equal (stored, 1);
  chunk_path (&d, path, sizeof path);
  assert_int_equal (stat (path, &st), 0);
  assert_int_equal (st.st_size, 1);
  uint8_t back1 = 0;
  assert_int_equal (vms_repo_chunk_get (r, &d, &back1, 1, 1), 0);
  assert_int_equal (back1, 7);
  free (data);
  free (back);
  vms_repo_close (r);
}

static void
zero_chunk_is_never_stored (void **state)
{
  vms_repo *r = open_writer ();
  uint8_t *data = calloc (1, CS), *back = xmalloc (CS);
  struct vms_digest d;
  uint64_t stored = 99;

  assert_int_equal (vms_repo_chunk_put (r, data, CS, &d, &stored), 0);
  assert_true (vms_digest_is_zero (&d));
  assert_int_equal (stored, 0);
  assert_int_equal (count_chunks (), 0);
  memset (back, 0xff, CS);
  assert_int_equal (vms_repo_chunk_get (r, &d, back, CS, 1), 0);
  assert_memory_equal (data, back, CS);
  free (data);
  free (back);
  vms_repo_close (r);
}

static void
identical_chunks_are_stored_once (void **state)
{
  vms_repo *r = open_writer ();
  uint8_t *data = xmalloc (CS);
  fill_random (data, CS, 2);
  struct vms_digest d1, d2;
  uint64_t s1, s2;

  assert_int_equal (vms_repo_chunk_put (r, data, CS, &d1, &s1), 0);
  assert_int_equal (vms_repo_chunk_put (r, data, CS, &d2, &s2), 0);
  assert_memory_equal (d1.b, d2.b, VMS_DIGEST_LEN);
  assert_true (s1 > 0);
  assert_int_equal (s2, 0);
  assert_int_equal (count_chunks (), 1);
  free (data);
  vms_repo_close (r);
}

/* Put data (len bytes) whose chunk file, at path, has been damaged as by a
 * crash before a commit's syncfs: the chunk is written again and reads
 * back. */
static void
put_rewrites (vms_repo *r, const uint8_t *data, size_t len, const char *path)
{
  struct vms_digest d;
  uint64_t stored;
  uint8_t *back = xmalloc (len);
  assert_int_equal (vms_repo_chunk_put (r, data, len, &d, &stored), 0);
  assert_true (stored > 0);
  assert_true (exists (path));
  assert_int_equal (vms_repo_chunk_get (r, &d, back, len, 1), 0);
  assert_memory_equal (data, back, len);
  assert_int_equal (count_chunks (), 1);
  free (back);
}

static void
half_written_chunk_is_written_again (void **state)
{
  vms_repo *r = open_writer ();
  uint8_t *data = xmalloc (CS);
  struct vms_digest d;
  char path[256];
  int fd;

  /* Raw: cut short; then the right size but its first page zeros (pages
   * not written back before the crash). */
  fill_random (data, 1000, 3);
  assert_int_equal (vms_repo_chunk_put (r, data, 1000, &d, NULL), 0);
  chunk_path (&d, path, sizeof path);
  assert_int_equal (truncate (path, 7), 0);
  put_rewrites (r, data, 1000, path);
  assert_int_equal (truncate (path, 0), 0);
  assert_int_equal (truncate (path, 1000), 0);
  put_rewrites (r, data, 1000, path);
  assert_int_equal (unlink (path), 0);

  /* zstd: cut short inside the header, then inside the frame. */
  memset (data, 'q', CS);
  assert_int_equal (vms_repo_chunk_put (r, data, CS, &d, NULL), 0);
  chunk_path_zst (&d, path, sizeof path);
  assert_int_equal (truncate (path, 7), 0);
  put_rewrites (r, data, CS, path);
  assert_int_equal (truncate (path, CHUNK_HEADER_SIZE + 2), 0);
  put_rewrites (r, data, CS, path);
  /* A temp file left by a crash is not the chunk. */
  assert_int_equal (unlink (path), 0);
  char tmp[300];
  char hex[65];
  vms_digest_hex (&d, hex);
  snprintf (tmp, sizeof tmp, "%s/chunks/%.2s/.tmp-999999-0", repo_dir, hex);
  fd = open (tmp, O_WRONLY | O_CREAT | O_EXCL, 0600);
  assert_true (fd >= 0);
  close (fd);
  assert_int_equal (vms_repo_chunk_exists (r, &d), 0);
  assert_int_equal (count_chunks (), 0);
  put_rewrites (r, data, CS, path);
  assert_true (exists (tmp));           /* gc's to remove */
  free (data);
  vms_repo_close (r);
}

static void
chunk_put_needs_the_writer_lock (void **state)
{
  vms_repo_close (open_writer ());
  vms_repo *r = vms_repo_open (repo_dir, 0);
  assert_non_null (r);
  uint8_t data[16] = { 1 };
  struct vms_digest d;
  assert_int_equal (vms_repo_chunk_put (r, data, sizeof data, &d, NULL), -1);
  assert_error_contains ("writer lock");
  assert_null (vms_repo_txn_begin (r, "b1"));
  vms_repo_close (r);
}

static void
missing_chunk_read_fails_with_enoent (void **state)
{
  vms_repo *r = open_writer ();
  struct vms_digest d;
  uint8_t buf[16];
  memset (d.b, 0xab, sizeof d.b);
  assert_int_equal (vms_repo_chunk_exists (r, &d), 0);
  assert_int_equal (vms_repo_chunk_get (r, &d, buf, sizeof buf, 1), -1);
  assert_int_equal (vms_get_errno (), ENOENT);
  assert_error_contains ("is missing");
  vms_repo_close (r);
}

struct putter {
  vms_repo *repo;
  uint8_t *data[4];
  struct vms_digest d[8];
  int failed;
};

static void *
put_chunks (void *arg)
{
  struct putter *p = arg;
  for (int i = 0; i < 8; i++)
    if (vms_repo_chunk_put (p->repo, p->data[i % 4], CS / 4, &p->d[i], NULL) == -1)
      p->failed = 1;
  return NULL;
}

static void
concurrent_puts_of_the_same_chunks_store_each_once (void **state)
{
  vms_repo *r = open_writer ();
  struct putter p[4] = { { 0 } };
  pthread_t th[4];
  uint8_t *data[4], *back = xmalloc (CS / 4);

  for (int i = 0; i < 4; i++) {
    data[i] = xmalloc (CS / 4);
    fill_random (data[i], CS / 4, 40 + (uint64_t) i);
    if (i == 3)
      memset (data[i], 'z', CS / 4);    /* one compressible */
  }
  for (int t = 0; t < 4; t++) {
    p[t].repo = r;
    memcpy (p[t].data, data, sizeof data);
    assert_int_equal (pthread_create (&th[t], NULL, put_chunks, &p[t]), 0);
  }
  for (int t = 0; t < 4; t++) {
    pthread_join (th[t], NULL);
    assert_false (p[t].failed);
    assert_memory_equal (p[t].d, p[0].d, sizeof p[0].d);
  }
  assert_int_equal (count_chunks (), 4);
  for (int i = 0; i < 4; i++) {
    assert_int_equal (vms_repo_chunk_get (r, &p[0].d[i], back, CS / 4, 1), 0);
    assert_memory_equal (back, data[i], CS / 4);
    free (data[i]);
  }
  free (back);
  vms_repo_close (r);
}

/* ---- indexes and reads ---- */

static void
file_of_non_multiple_size_round_trips_through_random_reads (void **state)
{
  vms_repo *r = open_writer ();
  size_t size = 2 * CS + 12345;
  uint8_t *data = xmalloc (size), *back = xmalloc (size);
  fill_random (data, size, 4);
  memset (data + CS, 0, CS);    /* a zero chunk in the middle */

  make_backup (r, "b1", data, size);
  vms_manifest *m = vms_manifest_open (r, "b1");
  assert_non_null (m);
  vms_index *idx = vms_manifest_load_index (r, m, 0);
  if (idx == NULL)
    fail_msg ("load_index: %s", vms_get_error ());
  assert_int_equal (vms_index_size (idx), size);
  assert_int_equal (vms_index_chunk_count (idx), 3);
  assert_true (vms_digest_is_zero (vms_index_get (idx, 1)));
  assert_int_equal (vms_index_chunk_len (idx, 2), 12345);
  assert_null (vms_index_get (idx, 3));

  assert_int_equal (vms_repo_read (r, idx, back, size, 0), 0);
  assert_memory_equal (data, back, size);
  /* Reads across chunk boundaries, inside the zero chunk, at the end. */
  const struct { uint64_t off; size_t len; } reads[] = {
    { CS - 100, 200 }, { CS + 5, 4096 }, { 2 * CS - 1, 2 }, { size - 1, 1 },
    { 7, CS }, { size, 0 },
  };
  for (size_t i = 0; i < sizeof reads / sizeof reads[0]; i++) {
    memset (back, 0x5a, reads[i].len);
    assert_int_equal (vms_repo_read (r, idx, back, reads[i].len, reads[i].off), 0);
    assert_memory_equal (data + reads[i].off, back, reads[i].len);
  }
  assert_int_equal (vms_repo_read (r, idx, back, 2, size - 1), -1);
  assert_error_contains ("past the end");

  vms_index_free (idx);
  vms_manifest_free (m);
  free (data);
  free (back);
  vms_repo_close (r);
}

static void
zero_byte_file_round_trips (void **state)
{
  vms_repo *r = open_writer ();
  make_backup (r, "empty", NULL, 0);
  vms_manifest *m = vms_manifest_open (r, "empty");
  assert_non_null (m);
  uint64_t size = 99;
  struct vms_stored_file f;
  assert_int_equal (vms_manifest_file (m, 0, &f, &size), 0);
  assert_int_equal (size, 0);
  vms_index *idx = vms_manifest_load_index (r, m, 0);
  assert_non_null (idx);
  assert_int_equal (vms_index_size (idx), 0);
  assert_int_equal (vms_index_chunk_count (idx), 0);
  assert_int_equal (vms_repo_read (r, idx, NULL, 0, 0), 0);
  vms_index_free (idx);
  vms_manifest_free (m);
  vms_repo_close (r);
}

static void
index_resize_zeroes_chunks_whose_length_changes (void **state)
{
  vms_index *idx = vms_index_new (CS + 10);
  struct vms_digest d;
  memset (d.b, 7, sizeof d.b);
  assert_int_equal (vms_index_set (idx, 0, &d), 0);
  assert_int_equal (vms_index_set (idx, 1, &d), 0);
  assert_int_equal (vms_index_set (idx, 2, &d), -1);
  /* Grows: the old partial chunk 1 no longer fits; chunk 0 stays. */
  assert_int_equal (vms_index_resize (idx, 3 * CS), 0);
  assert_int_equal (vms_index_chunk_count (idx), 3);
  assert_false (vms_digest_is_zero (vms_index_get (idx, 0)));
  assert_true (vms_digest_is_zero (vms_index_get (idx, 1)));
  assert_true (vms_digest_is_zero (vms_index_get (idx, 2)));
  /* Shrinks to a whole chunk: chunk 0 is still whole. */
  assert_int_equal (vms_index_resize (idx, CS), 0);
  assert_int_equal (vms_index_chunk_count (idx), 1);
  assert_false (vms_digest_is_zero (vms_index_get (idx, 0)));
  vms_index *c = vms_index_copy (idx);
  /* Shrinks into chunk 0: it is partial now. */
  assert_int_equal (vms_index_resize (idx, 100), 0);
  assert_true (vms_digest_is_zero (vms_index_get (idx, 0)));
  assert_false (vms_digest_is_zero (vms_index_get (c, 0)));
  vms_index_free (c);
  vms_index_free (idx);
}

/* ---- backups ---- */

static void
committed_backup_is_listed_with_its_documents (void **state)
{
  vms_repo *r = open_writer ();
  uint8_t data[5000];
  fill_random (data, sizeof data, 5);
  vms_index *idx = store_file (r, data, sizeof data);

  vms_repo_txn *txn = vms_repo_txn_begin (r, "2024-05-01T02:00:00Z");
  assert_non_null (txn);
  struct vms_stored_file f = {
    .writer_id = "w1", .component = "db01", .path = "/srv/db01.qcow2",
    .kind = VMS_FILE_DISK, .format = "qcow2", .bytes_read = 5000,
    .bytes_stored = 4000, .checkpoint = "vmshadow-1",
  }, g = {
    .writer_id = "w1", .component = "db01", .path = "/etc/libvirt/db01.xml",
    .kind = VMS_FILE_PLAIN,
  };
  assert_int_equal (vms_repo_txn_add_file (txn, &f, idx), 0);
  assert_int_equal (vms_repo_txn_add_file (txn, &g, idx), 0);
  vms_document *bcd = vms_components_new ("2024-05-01T02:00:00Z");
  vms_document *md = vms_metadata_new ("vm", "w1");
  assert_non_null (vms_metadata_add_component (md, "db01", "Database VM"));
  const vms_document *mds[] = { md };
  assert_int_equal (vms_repo_txn_commit (txn, bcd, mds, 1,
                                         "{\"type\": \"full\"}"), 0);
  vms_repo_txn_free (txn);

  char **ids;
  size_t n;
  assert_int_equal (vms_repo_list (r, &ids, &n), 0);
  assert_int_equal (n, 1);
  assert_string_equal (ids[0], "2024-05-01T02:00:00Z");
  free (ids[0]);
  free (ids);

  vms_manifest *m = vms_manifest_open (r, "2024-05-01T02:00:00Z");
  if (m == NULL)
    fail_msg ("%s", vms_get_error ());
  assert_string_equal (vms_manifest_backup_id (m), "2024-05-01T02:00:00Z");
  assert_true (vms_manifest_time (m) > 1700000000);
  assert_non_null (vms_manifest_components (m));
  assert_string_equal (vms_components_backup_id (vms_manifest_components (m)),
                       "2024-05-01T02:00:00Z");
  assert_int_equal (vms_manifest_metadata_count (m), 1);
  assert_string_equal (vms_metadata_writer_id (vms_manifest_metadata (m, 0)), "w1");
  assert_non_null (strstr (vms_manifest_attrs (m), "\"full\""));
  assert_int_equal (vms_manifest_file_count (m), 2);
  struct vms_stored_file back;
  uint64_t size;
  assert_int_equal (vms_manifest_file (m, 0, &back, &size), 0);
  assert_string_equal (back.writer_id, "w1");
  assert_string_equal (back.component, "db01");
  assert_string_equal (back.path, "/srv/db01.qcow2");
  assert_int_equal (back.kind, VMS_FILE_DISK);
  assert_string_equal (back.format, "qcow2");
  assert_string_equal (back.checkpoint, "vmshadow-1");
  assert_int_equal (back.bytes_read, 5000);
  assert_int_equal (back.bytes_stored, 4000);
  assert_int_equal (size, 5000);
  assert_int_equal (vms_manifest_file (m, 1, &back, &size), 0);
  assert_null (back.format);
  assert_null (back.checkpoint);
  assert_int_equal (vms_manifest_find_file (m, "db01", "/etc/libvirt/db01.xml"), 1);
  assert_int_equal (vms_manifest_find_file (m, "db01", "/nope"), -1);
  assert_int_equal (vms_manifest_file (m, 2, &back, &size), -1);
  vms_manifest_free (m);

  /* The id is taken now. */
  assert_null (vms_repo_txn_begin (r, "2024-05-01T02:00:00Z"));
  assert_error_contains ("already exists");
  assert_int_equal (count_entries ("tmp"), 0);

  vms_document_free (bcd);
  vms_document_free (md);
  vms_index_free (idx);
  vms_repo_close (r);
}

/* Issue 10: the catalogue. Each stored file records the checkpoint its
 * next incremental starts from; the newest one wins, a backup without one
 * (an offline capture) does not hide an older one, and a component or
 * file never checkpointed has none; a file's own checkpoint (issue 11)
 * is no component's. */
static void
catalogue_gives_the_newest_checkpoint_of_a_file_and_of_a_component (void **state)
{
  const char *wid = "6c0a5e43-2b8e-4c39-9d59-4b8b2b6a1f00";
  vms_repo *r = vms_repo_open (repo_dir, VMS_REPO_CREATE | VMS_REPO_WRITE);
  char *cp, *id;
  assert_non_null (r);
  const char *const b1[][3] = { { "vm1", "/i/vda", "cp-1" }, { "vm1", "/i/vdb", "cp-1" },
                                { "app", "/a/db", NULL } };
  const char *const b2[][3] = { { "vm1", "/i/vda", NULL } };
  const char *const b3[][3] = { { "vm1", "/i/vdb", "cp-3" } };
  make_checkpointed_backup (r, "b1", b1, 3);
  make_checkpointed_backup (r, "b2", b2, 1);
  make_checkpointed_backup (r, "b3", b3, 1);

  assert_int_equal (vms_repo_last_checkpoint (r, wid, "vm1", "/i/vda", &cp, &id), 1);
  assert_string_equal (cp, "cp-1");
  assert_string_equal (id, "b1");
  free (cp); free (id);
  assert_int_equal (vms_repo_last_checkpoint (r, wid, "vm1", "/i/vdb", &cp, &id), 1);
  assert_string_equal (cp, "cp-3");
  assert_string_equal (id, "b3");
  free (cp); free (id);
  assert_int_equal (vms_repo_last_checkpoint (r, wid, "vm1", NULL, &cp, NULL), 1);
  assert_string_equal (cp, "cp-3");
  free (cp);
  assert_int_equal (vms_repo_last_checkpoint (r, wid, "app", NULL, &cp, &id), 0);
  assert_null (cp);
  assert_null (id);
  assert_int_equal (vms_repo_last_checkpoint (r, "another-writer", "vm1", NULL, &cp, NULL), 0);

  /* Issue 11: a stopped VM's backup records its RBD disk's own checkpoint
   * (the image's snapshot, "checkpoint:<path>" in its component) and none
   * for its qcow2 disk. The RBD disk's next incremental starts there; the
   * component's (an online backup's, whose qcow2 bitmaps libvirt knows)
   * is still cp-3, and the qcow2 disk's cp-1. */
  const char *const b4[][3] = { { "vm1", "/i/vda", NULL }, { "vm1", "rbd://m/p/img", "snap-4" } };
  make_checkpointed_backup_with (r, "b4", b4, 2,
    "{\"format\": \"vmshadow-backup-components\", \"version\": 1,"
    " \"backup_id\": \"b4\", \"writers\": [{\"name\": \"vm\","
    " \"id\": \"6c0a5e43-2b8e-4c39-9d59-4b8b2b6a1f00\", \"components\":"
    " [{\"name\": \"vm1\", \"attributes\": {\"method\": \"offline\","
    " \"checkpoint:rbd://m/p/img\": \"snap-4\"}}]}]}");
  assert_int_equal (vms_repo_last_checkpoint (r, wid, "vm1", "rbd://m/p/img", &cp, &id), 1);
  assert_string_equal (cp, "snap-4");
  assert_string_equal (id, "b4");
  free (cp); free (id);
  assert_int_equal (vms_repo_last_checkpoint (r, wid, "vm1", NULL, &cp, &id), 1);
  assert_string_equal (cp, "cp-3");
  assert_string_equal (id, "b3");
  free (cp); free (id);
  assert_int_equal (vms_repo_last_checkpoint (r, wid, "vm1", "/i/vda", &cp, &id), 1);
  assert_string_equal (cp, "cp-1");
  free (cp); free (id);
  /* A file whose checkpoint is the component's (an online backup's) still
   * counts for the component. */
  const char *const b5[][3] = { { "vm1", "/i/vda", "cp-5" }, { "vm1", "rbd://m/p/img", "cp-5" } };
  make_checkpointed_backup_with (r, "b5", b5, 2,
    "{\"format\": \"vmshadow-backup-components\", \"version\": 1,"
    " \"backup_id\": \"b5\", \"writers\": [{\"name\": \"vm\","
    " \"id\": \"6c0a5e43-2b8e-4c39-9d59-4b8b2b6a1f00\", \"components\":"
    " [{\"name\": \"vm1\", \"attributes\": {\"checkpoint\": \"cp-5\"}}]}]}");
  assert_int_equal (vms_repo_last_checkpoint (r, wid, "vm1", NULL, &cp, &id), 1);
  assert_string_equal (cp, "cp-5");
  assert_string_equal (id, "b5");
  free (cp); free (id);
  vms_repo_close (r);
}

static void
uncommitted_backup_is_invisible (void **state)
{
  vms_repo *r = open_writer ();
  uint8_t data[100] = { 1, 2, 3 };
  vms_index *idx = store_file (r, data, sizeof data);
  vms_repo_txn *txn = vms_repo_txn_begin (r, "b1");
  assert_non_null (txn);
  struct vms_stored_file f = { .writer_id = "w", .component = "c",
                               .path = "/p", .kind = VMS_FILE_PLAIN };
  assert_int_equal (vms_repo_txn_add_file (txn, &f, idx), 0);

  char **ids;
  size_t n;
  assert_int_equal (vms_repo_list (r, &ids, &n), 0);
  assert_int_equal (n, 0);
  free (ids);
  assert_null (vms_manifest_open (r, "b1"));
  assert_error_contains ("no backup \"b1\"");
  assert_int_equal (count_entries ("tmp"), 1);

  vms_repo_txn_free (txn);      /* dropped without commit */
  assert_int_equal (count_entries ("tmp"), 0);
  assert_int_equal (count_entries ("backups"), 0);
  vms_index_free (idx);
  vms_repo_close (r);
}

static void
second_writer_is_refused_with_the_holders_pid (void **state)
{
  vms_repo *r = open_writer ();
  char expect[64];
  snprintf (expect, sizeof expect, "is locked by pid %d", (int) getpid ());

  assert_null (vms_repo_open (repo_dir, VMS_REPO_WRITE));
  assert_int_equal (vms_get_errno (), EBUSY);
  assert_error_contains (expect);
  assert_error_contains ("another backup, prune or gc is running");
  /* Readers need no lock. */
  vms_repo *reader = vms_repo_open (repo_dir, 0);
  assert_non_null (reader);
  vms_repo_close (reader);

  vms_repo_close (r);
  r = vms_repo_open (repo_dir, VMS_REPO_WRITE);
  assert_non_null (r);
  vms_repo_close (r);
}

static void
open_refuses_a_directory_that_is_not_a_repository (void **state)
{
  char path[256];
  assert_null (vms_repo_open (repo_dir, 0));
  assert_error_contains ("no repository at");
  assert_int_equal (mkdir (repo_dir, 0700), 0);
  snprintf (path, sizeof path, "%s/something", repo_dir);
  write_file (path, "x", 1);
  assert_null (vms_repo_open (repo_dir, VMS_REPO_CREATE));
  assert_error_contains ("not a vmshadow repository");
  assert_null (vms_repo_open (repo_dir, VMS_REPO_CREATE | VMS_REPO_WRITE));
  assert_error_contains ("not a vmshadow repository");
  assert_null (vms_repo_open (repo_dir, VMS_REPO_WRITE));
  assert_error_contains ("no repository at");
  /* ... and it left no lock file behind in someone else's directory. */
  assert_int_equal (count_entries (""), 1);

  /* A config from a newer format version. */
  snprintf (path, sizeof path, "%s/config", repo_dir);
  char cfg[256];
  snprintf (cfg, sizeof cfg, "{\"format\": \"vmshadow-repository\", "
            "\"version\": 3, \"chunk_size\": %u}", VMS_CHUNK_SIZE);
  write_file (path, cfg, strlen (cfg));
  assert_null (vms_repo_open (repo_dir, 0));
  assert_error_contains ("format version 3");
}

static void
repository_files_are_0600_and_directories_0700 (void **state)
{
  mode_t old = umask (0277);    /* would leave 0400/0500 if it mattered */
  vms_repo *r = open_writer ();
  uint8_t data[3000];
  fill_random (data, sizeof data, 6);
  make_backup (r, "b1", data, sizeof data);
  umask (old);
  vms_index *idx = store_file (r, data, sizeof data);
  char hex[65];
  vms_digest_hex (vms_index_get (idx, 0), hex);
  vms_index_free (idx);

  const char *dirs[] = { "", "chunks", "backups", "tmp", "backups/b1",
                         "backups/b1/indexes", "backups/b1/metadata" };
  const char *files[] = { "config", "lock", "backups/b1/manifest.json",
                          "backups/b1/components.json",
                          "backups/b1/indexes/0.idx" };
  char path[512];
  struct stat st;
  for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
    snprintf (path, sizeof path, "%s/%s", repo_dir, dirs[i]);
    assert_int_equal (stat (path, &st), 0);
    if ((st.st_mode & 07777) != 0700)
      fail_msg ("%s has mode %o, expected 700", path, st.st_mode & 07777);
  }
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    snprintf (path, sizeof path, "%s/%s", repo_dir, files[i]);
    assert_int_equal (stat (path, &st), 0);
    if ((st.st_mode & 07777) != 0600)
      fail_msg ("%s has mode %o, expected 600", path, st.st_mode & 07777);
  }
  snprintf (path, sizeof path, "%s/chunks/%.2s", repo_dir, hex);
  assert_int_equal (stat (path, &st), 0);
  assert_int_equal (st.st_mode & 07777, 0700);
  snprintf (path, sizeof path, "%s/chunks/%.2s/%s", repo_dir, hex, hex);
  assert_int_equal (stat (path, &st), 0);
  assert_int_equal (st.st_mode & 07777, 0600);
  vms_repo_close (r);
}

/* ---- verify ---- */

static void
verify_deep_names_every_backup_file_and_offset_of_a_flipped_byte (void **state)
{
  vms_repo *r = open_writer ();
  size_t size = 3 * CS;
  uint8_t *data = xmalloc (size);
  fill_random (data, size, 7);
  make_backup (r, "b1", data, size);
  make_backup (r, "b2", data, size);    /* shares every chunk */

  struct lines l = { .n = 0 };
  assert_int_equal (vms_repo_verify (r, NULL, 1, collect, &l), 0);

  /* Flip one byte of chunk 2 (random data: a raw file, the content). */
  vms_manifest *m = vms_manifest_open (r, "b1");
  vms_index *idx = vms_manifest_load_index (r, m, 0);
  char path[256], hex[65];
  chunk_path (vms_index_get (idx, 2), path, sizeof path);
  vms_digest_hex (vms_index_get (idx, 2), hex);
  flip_byte (path, 1000, 0x01);

  /* A shallow verify cannot see it; a deep one can, in both backups. */
  assert_int_equal (vms_repo_verify (r, NULL, 0, collect, &l), 0);
  assert_int_equal (vms_repo_verify (r, NULL, 1, collect, &l), 2);
  char expect[512];
  for (int i = 1; i <= 2; i++) {
    snprintf (expect, sizeof expect, "backup b%d, component web01, file "
              "/var/lib/libvirt/images/web01.img, offset %zu: chunk %s is "
              "corrupt (hash mismatch)", i, 2 * CS, hex);
    if (!lines_contain (&l, expect))
      fail_msg ("no report line \"%s\" (first line: %s)", expect,
                l.n ? l.v[0] : "(none)");
  }
  lines_free (&l);
  /* One backup only. */
  assert_int_equal (vms_repo_verify (r, "b2", 1, collect, &l), 1);
  assert_true (lines_contain (&l, "backup b2, "));
  lines_free (&l);

  /* Reading it fails instead of returning wrong data. */
  uint8_t *buf = xmalloc (CS);
  assert_int_equal (vms_repo_read (r, idx, buf, 100, 2 * CS), -1);
  assert_int_equal (vms_get_errno (), EBADMSG);
  assert_error_contains ("hash mismatch");
  free (buf);

  vms_index_free (idx);
  vms_manifest_free (m);
  free (data);
  vms_repo_close (r);
}

static void
verify_finds_a_missing_chunk (void **state)
{
  vms_repo *r = open_writer ();
  size_t size = 2 * CS;
  uint8_t *data = xmalloc (size);
  fill_random (data, size, 8);
  make_backup (r, "b1", data, size);

  vms_manifest *m = vms_manifest_open (r, "b1");
  vms_index *idx = vms_manifest_load_index (r, m, 0);
  char path[256], hex[65], expect[256];
  chunk_path (vms_index_get (idx, 1), path, sizeof path);
  vms_digest_hex (vms_index_get (idx, 1), hex);
  assert_int_equal (unlink (path), 0);

  struct lines l = { .n = 0 };
  assert_int_equal (vms_repo_verify (r, NULL, 0, collect, &l), 1);
  snprintf (expect, sizeof expect, "backup b1, component web01, file "
            "/var/lib/libvirt/images/web01.img, offset %zu: chunk %s is missing",
            CS, hex);
  if (!lines_contain (&l, expect))
    fail_msg ("no report line \"%s\" (got: %s)", expect, l.n ? l.v[0] : "(none)");
  lines_free (&l);
  assert_int_equal (vms_repo_verify (r, "nope", 0, collect, &l), -1);
  assert_error_contains ("no backup \"nope\"");
  vms_index_free (idx);
  vms_manifest_free (m);
  free (data);
  vms_repo_close (r);
}

/* ---- damaged and hostile files ---- */

/* Damage to either form of a chunk is found: a raw file of the wrong size
 * and a zstd file with a bad header by a shallow verify, a changed byte of
 * either only by a deep one; reading any of them fails. */
static void
verify_finds_damage_to_raw_and_zstd_chunks (void **state)
{
  vms_repo *r = open_writer ();
  size_t size = 5 * CS;
  uint8_t *data = xmalloc (size);
  fill_random (data, 2 * CS, 9);                  /* chunks 0, 1: raw */
  for (size_t i = 2 * CS; i < size; i++)          /* chunks 2-4: zstd */
    data[i] = (uint8_t) ("abcdefgh"[i % 8] + (i / CS) + (i % 1000 == 0));
  make_backup (r, "b1", data, size);
  vms_manifest *m = vms_manifest_open (r, "b1");
  vms_index *idx = vms_manifest_load_index (r, m, 0);
  char path[5][256], hex[5][65];
  for (int c = 0; c < 5; c++) {
    vms_digest_hex (vms_index_get (idx, (uint64_t) c), hex[c]);
    if (c < 2)
      chunk_path (vms_index_get (idx, (uint64_t) c), path[c], sizeof path[c]);
    else
      chunk_path_zst (vms_index_get (idx, (uint64_t) c), path[c], sizeof path[c]);
    assert_true (exists (path[c]));
  }
  struct lines l = { .n = 0 };
  assert_int_equal (vms_repo_verify (r, NULL, 1, collect, &l), 0);

  struct stat st3, st4;
  assert_int_equal (stat (path[3], &st3), 0);
  assert_int_equal (stat (path[4], &st4), 0);
  assert_int_equal (truncate (path[0], (off_t) CS - 1), 0);   /* raw, short */
  flip_byte (path[1], (off_t) CS - 1, 0x80);                  /* raw, a byte */
  flip_byte (path[2], 0, 0x20);                               /* zstd, magic */
  flip_byte (path[3], st3.st_size - 1, 0x01);                 /* zstd, frame */
  assert_int_equal (truncate (path[4], st4.st_size + 1), 0);  /* zstd, long */

  char short_raw[64];
  snprintf (short_raw, sizeof short_raw, "holds %zu bytes, expected %zu",
            CS - 1, CS);
  const char *const shallow[] = {
    short_raw, NULL, "bad magic", NULL, "file is ",
  };
  assert_int_equal (vms_repo_verify (r, NULL, 0, collect, &l), 3);
  for (int c = 0; c < 5; c++) {
    char expect[512];
    if (shallow[c] == NULL)
      continue;
    snprintf (expect, sizeof expect, "offset %zu: chunk %s is corrupt (%s",
              (size_t) c * CS, hex[c], shallow[c]);
    if (!lines_contain (&l, expect))
      fail_msg ("no report line containing \"%s\" (first line: %s)", expect,
                l.n ? l.v[0] : "(none)");
  }
  lines_free (&l);
  assert_int_equal (vms_repo_verify (r, NULL, 1, collect, &l), 5);
  for (int c = 0; c < 5; c++) {
    char expect[512];
    snprintf (expect, sizeof expect, "offset %zu: chunk %s is corrupt (",
              (size_t) c * CS, hex[c]);
    if (!lines_contain (&l, expect))
      fail_msg ("no report line containing \"%s\"", expect);
  }
  assert_true (lines_contain (&l, "is corrupt (hash mismatch)"));
  lines_free (&l);

  uint8_t *buf = xmalloc (CS);
  for (uint64_t c = 0; c < 5; c++) {
    vms_clear_error ();
    assert_int_equal (vms_repo_read (r, idx, buf, CS, c * CS), -1);
    assert_int_equal (vms_get_errno (), EBADMSG);
    assert_error_contains ("is corrupt");
  }
  free (buf);
  vms_index_free (idx);
  vms_manifest_free (m);
  free (data);
  vms_repo_close (r);
}

/* A chunk is there if either of its files, raw or zstd, is there and
 * sound; a damaged file of the other form does not hide it, and a chunk
 * written again replaces a damaged file of the other form. */
static void
a_chunk_in_either_form_is_found (void **state)
{
  vms_repo *r = open_writer ();
  uint8_t *data = xmalloc (CS), *back = xmalloc (CS), *junk = xmalloc (CS);
  memset (data, 'e', CS);
  fill_random (junk, CS, 50);
  struct vms_digest d, d2;
  uint64_t stored;
  char raw[256], zst[256];

  assert_int_equal (vms_repo_chunk_put (r, data, CS, &d, NULL), 0);
  chunk_path (&d, raw, sizeof raw);
  chunk_path_zst (&d, zst, sizeof zst);
  assert_true (exists (zst));

  /* Only a raw file (as a build that did not compress it would write). */
  write_file (raw, data, CS);
  assert_int_equal (unlink (zst), 0);
  assert_int_equal (vms_repo_chunk_exists (r, &d), 1);
  assert_int_equal (vms_repo_chunk_get (r, &d, back, CS, 1), 0);
  assert_memory_equal (back, data, CS);
  assert_int_equal (vms_repo_chunk_put (r, data, CS, &d2, &stored), 0);
  assert_int_equal (stored, 0);
  assert_false (exists (zst));

  /* Both; the raw one damaged (the right size, wrong bytes). */
  assert_int_equal (unlink (raw), 0);
  assert_int_equal (vms_repo_chunk_put (r, data, CS, &d2, &stored), 0);
  assert_true (stored > 0 && exists (zst));
  write_file (raw, junk, CS);
  assert_int_equal (vms_repo_chunk_get (r, &d, back, CS, 1), 0);
  assert_memory_equal (back, data, CS);
  assert_int_equal (chunk_store_check (r, &d, CS), 0);
  assert_int_equal (vms_repo_chunk_put (r, data, CS, &d2, &stored), 0);
  assert_int_equal (stored, 0);

  /* Both damaged: the raw file's error; a put writes the chunk again and
   * removes the damaged raw file. */
  assert_int_equal (truncate (zst, CHUNK_HEADER_SIZE), 0);
  assert_int_equal (vms_repo_chunk_get (r, &d, back, CS, 1), -1);
  assert_int_equal (vms_get_errno (), EBADMSG);
  assert_error_contains ("hash mismatch");
  assert_int_equal (vms_repo_chunk_put (r, data, CS, &d2, &stored), 0);
  assert_true (stored > 0);
  assert_false (exists (raw));
  assert_int_equal (vms_repo_chunk_get (r, &d, back, CS, 1), 0);
  assert_memory_equal (back, data, CS);

  /* Only a damaged zstd file: its error. */
  assert_int_equal (truncate (zst, 3), 0);
  assert_int_equal (vms_repo_chunk_get (r, &d, back, CS, 1), -1);
  assert_int_equal (vms_get_errno (), EBADMSG);
  assert_error_contains ("shorter than its header");
  free (data);
  free (back);
  free (junk);
  vms_repo_close (r);
}

static void
truncated_or_garbage_manifest_gives_a_clear_error (void **state)
{
  vms_repo *r = open_writer ();
  uint8_t data[100] = { 9 };
  make_backup (r, "b1", data, sizeof data);
  char path[256];
  size_t len;
  snprintf (path, sizeof path, "%s/backups/b1/manifest.json", repo_dir);
  char *text = read_whole (path, &len);

  write_file (path, text, len / 2);
  assert_null (vms_manifest_open (r, "b1"));
  assert_error_contains ("backup b1: manifest is not valid JSON");
  assert_error_contains ("truncated");

  write_file (path, "\x7f" "ELF garbage", 12);
  assert_null (vms_manifest_open (r, "b1"));
  assert_error_contains ("backup b1: manifest is not valid JSON");

  write_file (path, "", 0);
  assert_null (vms_manifest_open (r, "b1"));
  assert_error_contains ("backup b1: manifest is empty");

  /* verify reports it, and the catalogue still lists the backup. */
  struct lines l = { .n = 0 };
  assert_int_equal (vms_repo_verify (r, NULL, 0, collect, &l), 1);
  assert_true (lines_contain (&l, "backup b1: manifest is empty"));
  lines_free (&l);
  /* gc refuses to guess which chunks that backup needs. */
  assert_int_equal (vms_repo_gc (r, 0, NULL, NULL), -1);
  assert_error_contains ("gc stopped before removing anything");
  free (text);
  vms_repo_close (r);
}

static void
truncated_or_garbage_index_gives_a_clear_error (void **state)
{
  vms_repo *r = open_writer ();
  size_t size = 3 * CS + 1;
  uint8_t *data = calloc (1, size);
  data[0] = 1;
  make_backup (r, "b1", data, size);
  char path[256];
  size_t len;
  snprintf (path, sizeof path, "%s/backups/b1/indexes/0.idx", repo_dir);
  char *idx_bytes = read_whole (path, &len);
  vms_manifest *m = vms_manifest_open (r, "b1");
  assert_non_null (m);
  char expect[128];

  write_file (path, idx_bytes, len - 10);
  assert_null (vms_manifest_load_index (r, m, 0));
  snprintf (expect, sizeof expect, "backup b1: index 0 is truncated (%zu bytes, "
            "expected %zu)", len - 10, len);
  assert_error_contains (expect);

  char *more = (char *) xmalloc (len + 3);
  memcpy (more, idx_bytes, len);
  memcpy (more + len, "abc", 3);
  write_file (path, more, len + 3);
  assert_null (vms_manifest_load_index (r, m, 0));
  assert_error_contains ("backup b1: index 0 has 3 bytes of garbage after its end");

  more[INDEX_HEADER_SIZE + 5] ^= 1;       /* a digest bit */
  write_file (path, more, len);
  assert_null (vms_manifest_load_index (r, m, 0));
  assert_error_contains ("backup b1: index 0 is corrupt (checksum mismatch)");

  write_file (path, "garbage", 7);
  assert_null (vms_manifest_load_index (r, m, 0));
  assert_error_contains ("backup b1: index 0 is truncated (7 bytes");

  unlink (path);
  assert_null (vms_manifest_load_index (r, m, 0));
  assert_error_contains ("backup b1: index 0 (0.idx) is missing");

  struct lines l = { .n = 0 };
  assert_int_equal (vms_repo_verify (r, NULL, 0, collect, &l), 1);
  assert_true (lines_contain (&l, "backup b1: index 0 (0.idx) is missing"));
  lines_free (&l);

  vms_manifest_free (m);
  free (more);
  free (idx_bytes);
  free (data);
  vms_repo_close (r);
}

/* A chunk size other than this build's: half of it, or double when it is
 * the smallest allowed. */
#define OTHER_CS (VMS_CHUNK_SIZE > 4096 ? VMS_CHUNK_SIZE / 2 : VMS_CHUNK_SIZE * 2)

static void
another_chunk_size_is_refused_in_config_manifest_and_index (void **state)
{
  vms_repo *r = open_writer ();
  size_t size = 2 * CS + 7;
  uint8_t *data = xmalloc (size);
  fill_random (data, size, 11);
  make_backup (r, "b1", data, size);
  char path[256], expect[256], needle[64], *at;
  size_t len;

  /* An index that says another chunk size is refused before anything in
   * it is used (it would map offsets to the wrong chunks). */
  snprintf (path, sizeof path, "%s/backups/b1/indexes/0.idx", repo_dir);
  uint8_t *idx_bytes = (uint8_t *) read_whole (path, &len);
  vms_manifest *m = vms_manifest_open (r, "b1");
  assert_non_null (m);
  uint32_t other = OTHER_CS;
  uint8_t saved[4];
  memcpy (saved, idx_bytes + 12, 4);
  for (int i = 0; i < 4; i++)
    idx_bytes[12 + i] = (uint8_t) (other >> (8 * i));
  write_file (path, idx_bytes, len);
  assert_null (vms_manifest_load_index (r, m, 0));
  assert_int_equal (vms_get_errno (), EBADMSG);
  snprintf (expect, sizeof expect, "backup b1: index 0 has chunks of %u bytes; "
            "this vmshadow uses chunks of %u bytes", OTHER_CS, VMS_CHUNK_SIZE);
  assert_error_contains (expect);
  memcpy (idx_bytes + 12, saved, 4);
  write_file (path, idx_bytes, len);
  vms_index *idx = vms_manifest_load_index (r, m, 0);
  assert_non_null (idx);
  vms_index_free (idx);
  vms_manifest_free (m);

  /* A manifest that says another chunk size. */
  snprintf (path, sizeof path, "%s/backups/b1/manifest.json", repo_dir);
  char *text = read_whole (path, &len);
  snprintf (needle, sizeof needle, "\"chunk_size\": %u", VMS_CHUNK_SIZE);
  at = strstr (text, needle);
  assert_non_null (at);
  char *t;
  assert_true (asprintf (&t, "%.*s\"chunk_size\": %u%s", (int) (at - text),
                         text, OTHER_CS, at + strlen (needle)) > 0);
  write_file (path, t, strlen (t));
  assert_null (vms_manifest_open (r, "b1"));
  snprintf (expect, sizeof expect, "backup b1: manifest has chunks of %u "
            "bytes; this vmshadow uses chunks of %u bytes", OTHER_CS,
            VMS_CHUNK_SIZE);
  assert_error_contains (expect);
  write_file (path, text, len);
  free (t);
  free (text);
  vms_repo_close (r);

  /* A repository made with another chunk size is not opened at all, for
   * reading or writing, and says what to do. */
  snprintf (path, sizeof path, "%s/config", repo_dir);
  text = read_whole (path, &len);
  at = strstr (text, needle);
  assert_non_null (at);
  assert_true (asprintf (&t, "%.*s\"chunk_size\": %u%s", (int) (at - text),
                         text, OTHER_CS, at + strlen (needle)) > 0);
  write_file (path, t, strlen (t));
  snprintf (expect, sizeof expect, "repository %s uses chunks of %u bytes; "
            "this vmshadow uses chunks of %u bytes", repo_dir, OTHER_CS,
            VMS_CHUNK_SIZE);
  assert_null (vms_repo_open (repo_dir, 0));
  assert_int_equal (vms_get_errno (), ENOTSUP);
  assert_error_contains (expect);
  assert_error_contains ("a new repository");
  assert_null (vms_repo_open (repo_dir, VMS_REPO_CREATE | VMS_REPO_WRITE));
  assert_error_contains (expect);
  /* Put back, it opens again: nothing was changed by the refusals. */
  write_file (path, text, len);
  r = open_writer ();
  struct lines l = { .n = 0 };
  assert_int_equal (vms_repo_verify (r, NULL, 1, collect, &l), 0);
  lines_free (&l);
  vms_repo_close (r);
  free (t);
  free (text);
  free (idx_bytes);
  free (data);
}

static void
hostile_manifest_names_are_refused (void **state)
{
  vms_repo *r = open_writer ();
  uint8_t data[100] = { 9 };
  make_backup (r, "b1", data, sizeof data);
  char path[256];
  size_t len;
  snprintf (path, sizeof path, "%s/backups/b1/manifest.json", repo_dir);
  char *text = read_whole (path, &len);
  char *at = strstr (text, "\"0.idx\"");
  assert_non_null (at);

  const char *hostile[] = { "../../etc/passwd", "/etc/passwd",
                            ".hidden.idx", "a/b.idx", "0.json" };
  for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
    char *t;
    assert_true (asprintf (&t, "%.*s\"%s\"%s", (int) (at - text), text,
                           hostile[i], at + 7) > 0);
    write_file (path, t, strlen (t));
    free (t);
    assert_null (vms_manifest_open (r, "b1"));
    assert_error_contains ("is not allowed");
  }

  /* A manifest naming another backup, or a backup id with a '/'. */
  char *t;
  at = strstr (text, "\"backup_id\": \"b1\"");
  assert_non_null (at);
  assert_true (asprintf (&t, "%.*s\"backup_id\": \"../b1\"%s", (int) (at - text),
                         text, at + strlen ("\"backup_id\": \"b1\"")) > 0);
  write_file (path, t, strlen (t));
  free (t);
  assert_null (vms_manifest_open (r, "b1"));
  assert_error_contains ("backup id \"../b1\" is not allowed");

  const char *bad_ids[] = { "a/b", "..", ".x", "", "x y", "../../etc" };
  for (size_t i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
    assert_null (vms_repo_txn_begin (r, bad_ids[i]));
    assert_error_contains ("not a valid backup id");
    assert_null (vms_manifest_open (r, bad_ids[i]));
    assert_error_contains ("not a valid backup id");
  }
  char long_id[130];
  memset (long_id, 'a', 129);
  long_id[129] = '\0';
  assert_null (vms_repo_txn_begin (r, long_id));
  long_id[128] = '\0';
  vms_repo_txn *txn = vms_repo_txn_begin (r, long_id);
  assert_non_null (txn);
  vms_repo_txn_free (txn);
  free (text);
  vms_repo_close (r);
}

/* ---- prune and gc ---- */

/* Issue 20: keep-last counts per component. The backups are committed in
 * one second: the id breaks the tie (p5 is the newest). */
static void
prune_keeps_the_newest_of_each_vm_not_of_the_repository (void **state)
{
  vms_repo *r = open_writer ();
  uint8_t data[100];
  const char *ids[] = { "p1", "p2", "p3", "p4", "p5" };
  const char *vms[] = { "vm-b", "vm-a", "vm-a", "vm-a", "vm-a" };
  struct vms_prune_policy last2 = { .keep_last = 2 };
  struct lines l = { .n = 0 };
  char **list;
  size_t n;

  for (int i = 0; i < 5; i++) {
    fill_random (data, sizeof data, 20 + (uint64_t) i);
    make_backup_of (r, ids[i], vms[i], data, sizeof data);
  }
  /* Per repository, p1 (vm-b's only backup) would go. */
  assert_int_equal (vms_repo_prune (r, &last2, 0, collect, &l), 2);
  assert_true (lines_contain (&l, "keep p1 (last)"));
  assert_true (lines_contain (&l, "remove p2"));
  assert_true (lines_contain (&l, "remove p3"));
  lines_free (&l);
  assert_int_equal (vms_repo_list (r, &list, &n), 0);
  assert_int_equal (n, 3);
  assert_string_equal (list[0], "p1");
  assert_string_equal (list[1], "p4");
  assert_string_equal (list[2], "p5");
  for (size_t i = 0; i < n; i++) free (list[i]);
  free (list);
  vms_repo_close (r);
}

static void
prune_dry_run_changes_nothing_and_prune_removes (void **state)
{
  vms_repo *r = open_writer ();
  uint8_t data[100];
  const char *ids[] = { "b1", "b2", "b3" };
  for (int i = 0; i < 3; i++) {
    fill_random (data, sizeof data, 10 + (uint64_t) i);
    make_backup (r, ids[i], data, sizeof data);
  }
  struct vms_prune_policy none = { 0 }, last2 = { .keep_last = 2 };
  struct lines l = { .n = 0 };

  assert_int_equal (vms_repo_prune (r, &none, 1, collect, &l), -1);
  assert_error_contains ("at least one keep rule");

  assert_int_equal (vms_repo_prune (r, &last2, 1, collect, &l), 1);
  assert_true (lines_contain (&l, "remove b1"));
  assert_true (lines_contain (&l, "keep b3 (last)"));
  assert_int_equal (count_entries ("backups"), 3);
  lines_free (&l);

  assert_int_equal (vms_repo_prune (r, &last2, 0, collect, &l), 1);
  lines_free (&l);
  char **list;
  size_t n;
  assert_int_equal (vms_repo_list (r, &list, &n), 0);
  assert_int_equal (n, 2);
  assert_string_equal (list[0], "b2");
  assert_string_equal (list[1], "b3");
  for (size_t i = 0; i < n; i++) free (list[i]);
  free (list);
  assert_int_equal (count_entries ("tmp"), 0);
  vms_repo_close (r);

  /* Read-only handles may not prune. */
  r = vms_repo_open (repo_dir, 0);
  assert_int_equal (vms_repo_prune (r, &last2, 1, NULL, NULL), -1);
  vms_repo_close (r);
}

static void
gc_removes_unreferenced_chunks_and_leftovers_only (void **state)
{
  vms_repo *r = open_writer ();
  size_t size = 2 * CS;
  uint8_t *data = xmalloc (size);
  fill_random (data, size, 20);
  make_backup (r, "b1", data, size);          /* two raw chunks */
  memset (data + CS, 'c', CS);                /* b2 shares chunk 0 */
  make_backup (r, "b2", data, size);          /* chunk 1 is zstd */
  assert_int_equal (count_chunks (), 3);

  /* Orphan chunks of both forms (an interrupted backup's), leftover temp
   * dirs, a chunk temp file, and a file that is no chunk's. */
  uint8_t orphan[4096], orphan_zst[4096];
  fill_random (orphan, sizeof orphan, 22);
  memset (orphan_zst, 'o', sizeof orphan_zst);
  struct vms_digest od, ozd;
  assert_int_equal (vms_repo_chunk_put (r, orphan, sizeof orphan, &od, NULL), 0);
  assert_int_equal (vms_repo_chunk_put (r, orphan_zst, sizeof orphan_zst, &ozd,
                                        NULL), 0);
  char path[256], hex[65], tmpchunk[300], other[300];
  chunk_path_zst (&ozd, path, sizeof path);
  assert_true (exists (path));
  snprintf (path, sizeof path, "%s/tmp/999999.0.backup-x", repo_dir);
  assert_int_equal (mkdir (path, 0700), 0);
  snprintf (path, sizeof path, "%s/tmp/999999.0.backup-x/manifest.json", repo_dir);
  write_file (path, "{}", 2);
  vms_digest_hex (&od, hex);
  snprintf (tmpchunk, sizeof tmpchunk, "%s/chunks/%.2s/.tmp-999999-3", repo_dir, hex);
  write_file (tmpchunk, orphan, sizeof orphan);
  snprintf (other, sizeof other, "%s/chunks/%.2s/%s.zst.old", repo_dir, hex, hex);
  write_file (other, "x", 1);
  assert_int_equal (count_chunks (), 5);

  /* b2's zstd chunk also in raw form (as a build that did not compress it
   * would have stored it): both files are the live chunk. */
  vms_manifest *m2 = vms_manifest_open (r, "b2");
  vms_index *idx2 = vms_manifest_load_index (r, m2, 0);
  struct vms_digest cd = *vms_index_get (idx2, 1);
  vms_index_free (idx2);
  vms_manifest_free (m2);
  char craw[256], czst[256];
  chunk_path (&cd, craw, sizeof craw);
  chunk_path_zst (&cd, czst, sizeof czst);
  assert_true (exists (czst));
  write_file (craw, data + CS, CS);
  assert_int_equal (count_chunks (), 6);

  uint64_t removed, freed;
  /* Within the grace period nothing unreferenced goes; leftovers of
   * another pid do. */
  assert_int_equal (vms_repo_gc (r, 3600, &removed, &freed), 0);
  assert_int_equal (removed, 0);
  assert_int_equal (count_chunks (), 6);
  assert_int_equal (count_entries ("tmp"), 0);  /* another pid's: dead */
  assert_false (exists (tmpchunk));
  assert_true (exists (other));                 /* not gc's to touch */

  assert_int_equal (vms_repo_prune (r, &(struct vms_prune_policy) { .keep_last = 1 },
                                    0, NULL, NULL), 1);
  assert_int_equal (vms_repo_gc (r, 0, &removed, &freed), 0);
  /* Both orphans and b1's own chunk 1 go; b2's chunks stay, the zstd one
   * in both its forms. */
  assert_int_equal (removed, 3);
  assert_true (freed > CS + sizeof orphan);
  assert_int_equal (count_chunks (), 3);
  assert_int_equal (vms_repo_chunk_exists (r, &od), 0);
  assert_int_equal (vms_repo_chunk_exists (r, &ozd), 0);
  assert_true (exists (craw));
  assert_true (exists (czst));
  assert_true (exists (other));
  struct lines l = { .n = 0 };
  assert_int_equal (vms_repo_verify (r, NULL, 1, collect, &l), 0);
  vms_manifest *m = vms_manifest_open (r, "b2");
  vms_index *idx = vms_manifest_load_index (r, m, 0);
  uint8_t *back = xmalloc (size);
  assert_int_equal (vms_repo_read (r, idx, back, size, 0), 0);
  assert_memory_equal (back, data, size);
  free (back);
  vms_index_free (idx);
  vms_manifest_free (m);
  free (data);
  vms_repo_close (r);
}

/* ---- full file system ---- */

static void
full_file_system_fails_clearly_and_leaves_the_repository_intact (void **state)
{
  char mnt[128];
  snprintf (mnt, sizeof mnt, "%s/small", workdir);
  assert_int_equal (mkdir (mnt, 0700), 0);
  if (mount_small_fs (mnt, 2 * CS + (2u << 20)) == -1) {
    print_message ("# SKIP cannot mount a tmpfs in a private mount namespace "
                   "(%s): needs root\n", strerror (errno));
    skip ();
  }
  snprintf (repo_dir, sizeof repo_dir, "%s/repo", mnt);

  vms_repo *r = open_writer ();
  uint8_t *data = xmalloc (CS);
  fill_random (data, CS, 30);
  make_backup (r, "b1", data, CS / 2 + 1000);    /* fits */

  /* Leave half a chunk free: an incompressible chunk does not fit. */
  char filler[256];
  snprintf (filler, sizeof filler, "%s/filler", mnt);
  int fd = open (filler, O_WRONLY | O_CREAT | O_APPEND, 0600);
  assert_true (fd >= 0);
  while (free_bytes (mnt) > CS / 2) {
    uint64_t over = free_bytes (mnt) - CS / 2;
    size_t n = over < 65536 ? (size_t) over : 65536;
    assert_true (write (fd, data, n) > 0);
  }
  struct vms_digest d;
  assert_int_equal (vms_repo_chunk_put (r, data + 1, CS - 1, &d, NULL), -1);
  assert_int_equal (vms_get_errno (), ENOSPC);
  char expect[256];
  snprintf (expect, sizeof expect, "repository %s: no space left on device "
            "while writing chunk ", repo_dir);
  assert_error_contains (expect);

  /* Fill the rest, then try to commit a backup of what is stored. */
  while (write (fd, data, 65536) > 0)
    ;
  while (write (fd, data, 512) > 0)
    ;
  close (fd);
  vms_index *idx = vms_index_new (0);
  vms_repo_txn *txn = vms_repo_txn_begin (r, "b2");
  if (txn) {
    struct vms_stored_file f = { .writer_id = "w", .component = "c",
                                 .path = "/p", .kind = VMS_FILE_PLAIN };
    vms_document *bcd = vms_components_new ("b2");
    for (int i = 0; i < 50 && bcd; i++) {
      char key[32];
      snprintf (key, sizeof key, "pad%d", i);
      vms_components_set_attr_json (bcd, key, "\"a long value to fill a page of "
                                    "the document beyond what is left\"");
    }
    int ok = vms_repo_txn_add_file (txn, &f, idx) == 0 &&
      vms_repo_txn_commit (txn, bcd, NULL, 0, NULL) == 0;
    assert_false (ok);
    assert_error_contains ("no space left on device");
    vms_document_free (bcd);
    vms_repo_txn_free (txn);
  }
  else
    assert_error_contains ("no space left on device");
  vms_index_free (idx);
  unlink (filler);

  /* Nothing half-written remains, and b1 is whole. */
  assert_int_equal (count_entries ("tmp"), 0);
  char **ids;
  size_t n;
  assert_int_equal (vms_repo_list (r, &ids, &n), 0);
  assert_int_equal (n, 1);
  assert_string_equal (ids[0], "b1");
  free (ids[0]);
  free (ids);
  struct lines l = { .n = 0 };
  assert_int_equal (vms_repo_verify (r, NULL, 1, collect, &l), 0);
  uint64_t removed;
  assert_int_equal (vms_repo_gc (r, 0, &removed, NULL), 0);
  assert_int_equal (removed, 0);
  assert_int_equal (vms_repo_verify (r, NULL, 1, collect, &l), 0);
  vms_repo_close (r);
  free (data);
}

int
main (int argc, char *argv[])
{
  const struct CMUnitTest tests[] = {
#define T(name, f) { name, f, setup, teardown, NULL }
    T ("chunk-round-trips-and-compresses-compressible-data", chunk_round_trips_and_compresses_compressible_data),
    T ("incompressible-chunk-is-stored-raw", incompressible_chunk_is_stored_raw),
    T ("zero-chunk-is-never-stored", zero_chunk_is_never_stored),
    T ("identical-chunks-are-stored-once", identical_chunks_are_stored_once),
    T ("half-written-chunk-is-written-again", half_written_chunk_is_written_again),
    T ("chunk-put-needs-the-writer-lock", chunk_put_needs_the_writer_lock),
    T ("missing-chunk-read-fails-with-enoent", missing_chunk_read_fails_with_enoent),
    T ("concurrent-puts-of-the-same-chunks-store-each-once",
       concurrent_puts_of_the_same_chunks_store_each_once),
    T ("file-of-non-multiple-size-round-trips-through-random-reads", file_of_non_multiple_size_round_trips_through_random_reads),
    T ("zero-byte-file-round-trips", zero_byte_file_round_trips),
    T ("index-resize-zeroes-chunks-whose-length-changes", index_resize_zeroes_chunks_whose_length_changes),
    T ("committed-backup-is-listed-with-its-documents", committed_backup_is_listed_with_its_documents),
    T ("catalogue-gives-the-newest-checkpoint-of-a-file-and-of-a-component",
       catalogue_gives_the_newest_checkpoint_of_a_file_and_of_a_component),
    T ("uncommitted-backup-is-invisible", uncommitted_backup_is_invisible),
    T ("second-writer-is-refused-with-the-holders-pid", second_writer_is_refused_with_the_holders_pid),
    T ("open-refuses-a-directory-that-is-not-a-repository", open_refuses_a_directory_that_is_not_a_repository),
    T ("repository-files-are-0600-and-directories-0700", repository_files_are_0600_and_directories_0700),
    T ("verify-deep-names-every-backup-file-and-offset-of-a-flipped-byte", verify_deep_names_every_backup_file_and_offset_of_a_flipped_byte),
    T ("verify-finds-a-missing-chunk", verify_finds_a_missing_chunk),
    T ("verify-finds-damage-to-raw-and-zstd-chunks", verify_finds_damage_to_raw_and_zstd_chunks),
    T ("a-chunk-in-either-form-is-found", a_chunk_in_either_form_is_found),
    T ("truncated-or-garbage-manifest-gives-a-clear-error", truncated_or_garbage_manifest_gives_a_clear_error),
    T ("truncated-or-garbage-index-gives-a-clear-error", truncated_or_garbage_index_gives_a_clear_error),
    T ("another-chunk-size-is-refused-in-config-manifest-and-index",
       another_chunk_size_is_refused_in_config_manifest_and_index),
    T ("hostile-manifest-names-are-refused", hostile_manifest_names_are_refused),
    T ("prune-dry-run-changes-nothing-and-prune-removes", prune_dry_run_changes_nothing_and_prune_removes),
    T ("prune-keeps-the-newest-of-each-vm-not-of-the-repository", prune_keeps_the_newest_of_each_vm_not_of_the_repository),
    T ("gc-removes-unreferenced-chunks-and-leftovers-only", gc_removes_unreferenced_chunks_and_leftovers_only),
    T ("full-file-system-fails-clearly-and-leaves-the-repository-intact", full_file_system_fails_clearly_and_leaves_the_repository_intact),
#undef T
  };
  atexit (repo_test_unmount);
  /* These tests read and damage format 1's files (one per chunk); a new
   * repository is format 2 unless asked otherwise (test-repo-v2.c). */
  setenv ("VMSHADOW_REPO_FORMAT", "1", 1);
  cmocka_set_message_output (CM_OUTPUT_TAP);
  if (argc > 1)
    cmocka_set_test_filter (argv[1]);
  return cmocka_run_group_tests_name ("repo", tests, NULL, NULL);
}
