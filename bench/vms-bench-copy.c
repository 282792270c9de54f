/* vms-bench-copy: a small driver of the data path for bench/datapath.sh
 * (not installed; the vmshadow CLI does this for users).
 *
 *   vms-bench-copy full    REPO SOURCE INDEX-OUT
 *   vms-bench-copy incr    REPO SOURCE BITMAP PARENT-INDEX INDEX-OUT
 *   vms-bench-copy extract REPO INDEX FORMAT OUT
 *   vms-bench-copy chunk-size               (prints VMS_CHUNK_SIZE)
 *
 * SOURCE is an NBD URI (nbd+unix://...), or FORMAT:IMAGE (raw:/x.img,
 * qcow2:/x.qcow2, raw:/dev/loop0) to export the image read-only with
 * qemu-nbd first (with BITMAP for incr), or QEMU's block graph "json:{…}"
 * (an RBD image, issue 11) exported the same way, or a plain path. Indexes are kept in a bench-private
 * file (magic, chunk size, file size, digests), so that each phase is one process whose
 * peak memory /usr/bin/time -v can measure. Statistics are printed as
 * key=value lines on stdout.
 *
 * full and incr also commit the copy as a backup of one file (as vmshadow
 * backup does), so that the time includes what a backup must do before it
 * exists: v1's syncfs, v2's last pack and its index segment (without the
 * commit a version 2 repository would never put that pack).
 * $VMSHADOW_REPO_FORMAT and $VMSHADOW_REPO_PACK_SIZE choose the format of
 * a repository that full creates (bench/repo-format.sh).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmshadow/datapath.h"
#include "vmshadow/error.h"
#include "vmshadow/repo.h"

static const char magic[8] = "VMSBIDX2";

static void __attribute__ ((noreturn))
die (const char *what)
{
  const char *e = vms_get_error ();
  fprintf (stderr, "vms-bench-copy: %s: %s\n", what, e ? e : strerror (errno));
  exit (1);
}

static void
index_save (const vms_index *idx, const char *path)
{
  FILE *fp = fopen (path, "wb");
  uint64_t size = vms_index_size (idx);
  uint32_t cs = VMS_CHUNK_SIZE;

  if (fp == NULL || fwrite (magic, sizeof magic, 1, fp) != 1
      || fwrite (&cs, sizeof cs, 1, fp) != 1
      || fwrite (&size, sizeof size, 1, fp) != 1)
    die (path);
  for (uint64_t i = 0; i < vms_index_chunk_count (idx); i++)
    if (fwrite (vms_index_get (idx, i), sizeof (struct vms_digest), 1, fp) != 1)
      die (path);
  if (fclose (fp) != 0)
    die (path);
}

static vms_index *
index_load (const char *path)
{
  FILE *fp = fopen (path, "rb");
  char m[8];
  uint32_t cs;
  uint64_t size;
  vms_index *idx;

  if (fp == NULL || fread (m, sizeof m, 1, fp) != 1
      || memcmp (m, magic, sizeof m) != 0 || fread (&cs, sizeof cs, 1, fp) != 1
      || fread (&size, sizeof size, 1, fp) != 1)
    die (path);
  if (cs != VMS_CHUNK_SIZE) {
    fprintf (stderr, "vms-bench-copy: %s: made with %" PRIu32 "-byte chunks, "
             "this build uses %u\n", path, cs, VMS_CHUNK_SIZE);
    exit (1);
  }
  idx = vms_index_new (size);
  if (idx == NULL)
    die ("index");
  for (uint64_t i = 0; i < vms_index_chunk_count (idx); i++) {
    struct vms_digest d;
    if (fread (&d, sizeof d, 1, fp) != 1 || vms_index_set (idx, i, &d) == -1)
      die (path);
  }
  fclose (fp);
  return idx;
}

static void
print_stats (const struct vms_copy_stats *st)
{
  printf ("size=%" PRIu64 "\nbytes_read=%" PRIu64 "\nbytes_stored=%" PRIu64
          "\nchunks_new=%" PRIu64 "\nchunks_reused=%" PRIu64
          "\nchunks_zero=%" PRIu64 "\nelapsed_ms=%" PRId64
          "\ncbt_sampled=%" PRIu64 "\ncbt_differed=%" PRIu64 "\n",
          st->size, st->bytes_read, st->bytes_stored, st->chunks_new,
          st->chunks_reused, st->chunks_zero, st->elapsed_ms,
          st->cbt_sampled, st->cbt_differed);
}

/* Copy from source (see the header comment) into the repository. */
static vms_index *
copy (vms_repo *repo, const char *source, const char *bitmap,
      const vms_index *parent, struct vms_copy_stats *st)
{
  struct vms_source src = { 0 };
  vms_nbd_export *e = NULL;
  char ctx[256];
  const char *colon = strchr (source, ':');
  vms_index *idx;

  if (strncmp (source, "nbd", 3) == 0)
    src.nbd_uri = source;
  else if (strncmp (source, "json:", 5) == 0) {
    e = vms_nbd_export_open_graph (source, NULL, "the benchmark's device");
    if (e == NULL)
      die ("export");
    src.nbd_uri = vms_nbd_export_uri (e);
  }
  else if (colon && (strncmp (source, "raw:", 4) == 0
                     || strncmp (source, "qcow2:", 6) == 0)) {
    char fmt[8];
    snprintf (fmt, sizeof fmt, "%.*s", (int) (colon - source), source);
    e = vms_nbd_export_open (colon + 1, fmt, bitmap);
    if (e == NULL)
      die ("export");
    src.nbd_uri = vms_nbd_export_uri (e);
  }
  else
    src.path = source;
  if (bitmap) {
    snprintf (ctx, sizeof ctx, "qemu:dirty-bitmap:%s", bitmap);
    src.dirty_context = ctx;
    src.parent = parent;
    /* VMSHADOW_CBT_SAMPLE as the requester reads it: "off" or a fraction. */
    const char *sample = getenv ("VMSHADOW_CBT_SAMPLE");
    if (sample && *sample)
      src.cbt_sample = strcmp (sample, "off") == 0 ? -1 : atof (sample);
  }
  idx = vms_copy_to_repo (repo, &src, st, NULL, NULL);
  vms_nbd_export_close (e);
  if (idx == NULL)
    die ("copy");
  return idx;
}

/* Commit idx as backup "bench-<pid>" of one file. */
static void
commit (vms_repo *repo, const vms_index *idx, const char *source,
        const struct vms_copy_stats *st)
{
  char id[64];
  snprintf (id, sizeof id, "bench-%d", (int) getpid ());
  vms_repo_txn *txn = vms_repo_txn_begin (repo, id);
  struct vms_stored_file f = {
    .writer_id = "bench", .component = "bench", .path = source,
    .kind = VMS_FILE_DISK, .bytes_read = st->bytes_read,
    .bytes_stored = st->bytes_stored,
  };
  if (txn == NULL || vms_repo_txn_add_file (txn, &f, idx) == -1 ||
      vms_repo_txn_commit (txn, NULL, NULL, 0, NULL) == -1)
    die ("commit");
  vms_repo_txn_free (txn);
}

int
main (int argc, char *argv[])
{
  vms_repo *repo;
  struct vms_copy_stats st;

  if (argc < 2) {
  usage:
    fprintf (stderr, "usage: vms-bench-copy full REPO SOURCE INDEX-OUT\n"
             "       vms-bench-copy incr REPO SOURCE BITMAP PARENT-INDEX INDEX-OUT\n"
             "       vms-bench-copy extract REPO INDEX FORMAT OUT\n"
             "       vms-bench-copy into REPO INDEX GRAPH\n"
             "       vms-bench-copy chunk-size\n");
    return 2;
  }
  /* How long opening the repository took (an encrypted one's key is
   * unlocked there: scrypt), for bench/encryption.sh. */
  struct timespec o0, o1;
  clock_gettime (CLOCK_MONOTONIC, &o0);
#define OPENED() do { clock_gettime (CLOCK_MONOTONIC, &o1);                 \
    printf ("repository opened in %.3f s\n", (double) (o1.tv_sec - o0.tv_sec) \
            + (double) (o1.tv_nsec - o0.tv_nsec) / 1e9); } while (0)
  if (strcmp (argv[1], "chunk-size") == 0 && argc == 2) {
    printf ("%u\n", VMS_CHUNK_SIZE);
    return 0;
  }
  if (strcmp (argv[1], "full") == 0 && argc == 5) {
    vms_index *idx;
    repo = vms_repo_open (argv[2], VMS_REPO_CREATE | VMS_REPO_WRITE);
    if (repo == NULL)
      die (argv[2]);
    OPENED ();
    idx = copy (repo, argv[3], NULL, NULL, &st);
    commit (repo, idx, argv[3], &st);
    print_stats (&st);
    index_save (idx, argv[4]);
    vms_index_free (idx);
  }
  else if (strcmp (argv[1], "incr") == 0 && argc == 7) {
    vms_index *parent, *idx;
    repo = vms_repo_open (argv[2], VMS_REPO_WRITE);
    if (repo == NULL)
      die (argv[2]);
    OPENED ();
    parent = index_load (argv[5]);
    idx = copy (repo, argv[3], argv[4], parent, &st);
    commit (repo, idx, argv[3], &st);
    print_stats (&st);
    index_save (idx, argv[6]);
    vms_index_free (idx);
    vms_index_free (parent);
  }
  else if ((strcmp (argv[1], "extract") == 0 && argc == 6) ||
           (strcmp (argv[1], "into") == 0 && argc == 5)) {
    /* "into": a device that exists, given as QEMU's block graph
     * ("json:{...}"), as a restore to the same kind writes it. */
    int into = argv[1][0] == 'i';
    vms_index *idx;
    repo = vms_repo_open (argv[2], 0);
    if (repo == NULL)
      die (argv[2]);
    OPENED ();
    idx = index_load (argv[3]);
    if ((into ? vms_extract_into (repo, idx, argv[4], NULL, argv[4], NULL, NULL)
         : vms_extract (repo, idx, argv[5], argv[4], 1, NULL, NULL)) == -1)
      die (argv[1]);
    vms_index_free (idx);
  }
  else
    goto usage;
  vms_repo_close (repo);
  return 0;
}
