/* backup-a-file: back up one plain file into a vmshadow repository and
 * restore it, through the public API of libvmshadow only (vmshadow(3)).
 *
 *   cc backup-a-file.c $(pkg-config --cflags --libs vmshadow)
 *   ./a.out REPO FILE RESTORED
 *
 * REPO is created if it does not exist. The file is read into the
 * repository as a backup of its own; then the backup is opened again as a
 * restore would, and the file written back out to RESTORED (which must
 * not exist). Prints the backup's ID. Exits 1 with vmshadow's message on
 * any error.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <vmshadow/datapath.h>
#include <vmshadow/error.h>
#include <vmshadow/repo.h>

static int
fail (const char *what)
{
  fprintf (stderr, "backup-a-file: %s: %s\n", what, vms_get_error ());
  return 1;
}

/* Store path as backup id in repo (open for writing). */
static int
back_up (vms_repo *repo, const char *path, const char *id)
{
  struct vms_source src = { .path = path };
  struct vms_copy_stats stats;
  vms_index *idx;
  vms_repo_txn *txn;
  int r = -1;

  idx = vms_copy_to_repo (repo, &src, &stats, NULL, NULL);
  if (idx == NULL)
    return -1;
  struct vms_stored_file file = {
    .writer_id = "backup-a-file", .component = "file", .path = path,
    .kind = VMS_FILE_PLAIN, .bytes_read = stats.bytes_read,
    .bytes_stored = stats.bytes_stored,
  };
  txn = vms_repo_txn_begin (repo, id);
  if (txn != NULL && vms_repo_txn_add_file (txn, &file, idx) == 0
      && vms_repo_txn_commit (txn, NULL, NULL, 0, NULL) == 0) {
    printf ("%s: %" PRIu64 " bytes, %" PRIu64 " chunks new, %" PRIu64
            " zero\n", id, stats.size, stats.chunks_new, stats.chunks_zero);
    r = 0;
  }
  vms_repo_txn_free (txn);
  vms_index_free (idx);
  return r;
}

/* Write the file of backup id back out to to_path. */
static int
restore (vms_repo *repo, const char *id, const char *path,
         const char *to_path)
{
  vms_manifest *m = vms_manifest_open (repo, id);
  vms_index *idx = NULL;
  int i, r = -1;

  if (m == NULL)
    return -1;
  i = vms_manifest_find_file (m, "file", path);
  if (i == -1)
    vms_set_error (0, "backup %s has no file %s", id, path);
  else if ((idx = vms_manifest_load_index (repo, m, (size_t) i)) != NULL)
    r = vms_extract (repo, idx, to_path, "raw", 0, NULL, NULL);
  vms_index_free (idx);
  vms_manifest_free (m);
  return r;
}

int
main (int argc, char *argv[])
{
  vms_repo *repo;
  char id[64];

  if (argc != 4) {
    fprintf (stderr, "usage: backup-a-file REPO FILE RESTORED\n");
    return 2;
  }
  snprintf (id, sizeof id, "example-%lld", (long long) time (NULL));

  repo = vms_repo_open (argv[1], VMS_REPO_CREATE | VMS_REPO_WRITE);
  if (repo == NULL)
    return fail ("opening the repository");
  if (back_up (repo, argv[2], id) == -1) {
    vms_repo_close (repo);
    return fail ("backing up");
  }
  vms_repo_close (repo);

  repo = vms_repo_open (argv[1], 0);
  if (repo == NULL)
    return fail ("opening the repository");
  if (restore (repo, id, argv[2], argv[3]) == -1) {
    vms_repo_close (repo);
    return fail ("restoring");
  }
  vms_repo_close (repo);
  return 0;
}
