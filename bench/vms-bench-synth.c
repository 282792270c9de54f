/* vms-bench-synth — builds a synthetic format version 2 repository of many
 * chunks fast, without VMs (issue 12, bench/repo-scale.sh):
 *
 *   vms-bench-synth REPO NCHUNKS
 *
 * Stores NCHUNKS distinct 128 KiB chunks (chunk i: an 8-byte counter, 8
 * random bytes of this run, zeros — so each is unique but compresses to
 * a few dozen bytes, and the repository stays small on disk) through the
 * repository's own chunk store from two threads, then commits two
 * backups through the repository API: "all" (one file of every chunk)
 * and "half" (one file of the first half). Pruning "all" then leaves the
 * second half dead for gc (whole packs of it, with small packs). Prints
 * one line of timings.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "vmshadow/document.h"
#include "vmshadow/error.h"
#include "vmshadow/repo.h"

#define CHUNK VMS_CHUNK_SIZE

static vms_repo *repo;
static uint64_t nchunks;
static struct vms_digest *digests;
static uint8_t salt[8];
static int failed;

static double
now_s (void)
{
  struct timespec t;
  clock_gettime (CLOCK_MONOTONIC, &t);
  return (double) t.tv_sec + (double) t.tv_nsec / 1e9;
}

struct worker {
  uint64_t from, step;
};

static void *
store (void *arg)
{
  struct worker *w = arg;
  uint8_t *buf = calloc (1, CHUNK);
  if (buf == NULL) {
    failed = 1;
    return NULL;
  }
  memcpy (buf + 8, salt, sizeof salt);
  for (uint64_t i = w->from; i < nchunks && !failed; i += w->step) {
    uint64_t stored;
    memcpy (buf, &i, sizeof i);
    if (vms_repo_chunk_put (repo, buf, CHUNK, &digests[i], &stored) == -1) {
      fprintf (stderr, "vms-bench-synth: chunk %" PRIu64 ": %s\n", i,
               vms_get_error ());
      failed = 1;
    }
  }
  free (buf);
  return NULL;
}

/* A backup of chunks 0 .. n-1. */
static int
commit (const char *id, uint64_t n)
{
  vms_index *idx = vms_index_new ((uint64_t) n * CHUNK);
  vms_document *comp = vms_components_new (id);
  if (idx == NULL || comp == NULL)
    goto fail;
  for (uint64_t k = 0; k < n; k++)
    if (vms_index_set (idx, k, &digests[k]) == -1)
      goto fail;
  vms_repo_txn *txn = vms_repo_txn_begin (repo, id);
  struct vms_stored_file f = {
    .writer_id = "0d9f3c1e-2b4a-4c5d-8e6f-7a8b9c0d1e2f", .component = "synth",
    .path = "/synthetic", .kind = VMS_FILE_PLAIN,
    .bytes_read = n * CHUNK,
  };
  if (txn == NULL || vms_repo_txn_add_file (txn, &f, idx) == -1 ||
      vms_repo_txn_commit (txn, comp, NULL, 0, NULL) == -1) {
    vms_repo_txn_free (txn);
    goto fail;
  }
  vms_repo_txn_free (txn);
  vms_index_free (idx);
  vms_document_free (comp);
  return 0;
 fail:
  vms_index_free (idx);
  vms_document_free (comp);
  return -1;
}

int
main (int argc, char *argv[])
{
  if (argc != 3) {
    fprintf (stderr, "usage: vms-bench-synth REPO NCHUNKS\n");
    return 2;
  }
  nchunks = strtoull (argv[2], NULL, 10);
  if (nchunks == 0 || nchunks > ((uint64_t) 1 << 32)) {
    fprintf (stderr, "vms-bench-synth: bad NCHUNKS %s\n", argv[2]);
    return 2;
  }
  if (getrandom (salt, sizeof salt, 0) != (ssize_t) sizeof salt)
    return 1;
  setenv ("VMSHADOW_REPO_FORMAT", "2", 1);
  repo = vms_repo_open (argv[1], VMS_REPO_CREATE | VMS_REPO_WRITE);
  if (repo == NULL) {
    fprintf (stderr, "vms-bench-synth: %s\n", vms_get_error ());
    return 1;
  }
  digests = calloc (nchunks, sizeof *digests);
  if (digests == NULL)
    return 1;
  double t0 = now_s ();
  pthread_t th[2];
  struct worker w[2] = { { 0, 2 }, { 1, 2 } };
  for (int i = 0; i < 2; i++)
    pthread_create (&th[i], NULL, store, &w[i]);
  for (int i = 0; i < 2; i++)
    pthread_join (th[i], NULL);
  double t1 = now_s ();
  if (failed)
    return 1;
  if (commit ("synth-all", nchunks) == -1 ||
      commit ("synth-half", nchunks / 2) == -1) {
    fprintf (stderr, "vms-bench-synth: commit: %s\n", vms_get_error ());
    return 1;
  }
  double t2 = now_s ();
  vms_repo_close (repo);
  printf ("chunks %" PRIu64 " store_s %.1f commit_s %.1f\n", nchunks,
          t1 - t0, t2 - t1);
  free (digests);
  return 0;
}
