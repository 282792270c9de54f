/* vms_extract_into: write a stored disk back into a device that exists
 * already — a host block device, an RBD image, an iSCSI LUN, an NBD
 * export (issue 11: restore to the same kind) — given as QEMU's block
 * graph. A writable qemu-nbd of ours opens the graph (with the secret
 * object from secret_file); the device must be at least as large as the
 * backup, checked before the first write; then every chunk is written,
 * zero chunks as NBD write-zeroes (the device's old bytes must not show
 * through), each chunk verified against its digest first. Runs of
 * consecutive chunks go as one request (data up to INTO_RUN_CHUNKS
 * chunks, zeros up to the server's largest request), not one a chunk: a
 * device written a synchronous 128 KiB at a time, and a large empty one
 * hundreds of thousands of write-zeroes, ran far below the disk's speed
 * (issue 15; the same runs as vms_extract's to qcow2). The runs are
 * written by one worker a CPU, each over its own connection
 * (extract_into_nbd): reading and verifying the chunks is CPU work, and
 * one thread left the other CPUs idle. Unlike vms_extract there is no
 * temporary file to rename into place: a failure part way leaves the
 * device partly written, and says so.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <libnbd.h>

#include "cleanup.h"
#include "log.h"
#include "vmshadow/datapath.h"
#include "vmshadow/error.h"

#include "datapath-internal.h"

/* Data chunks written in one request (2 MiB), at most. */
#define INTO_RUN_CHUNKS 16

int
vms_extract_into (vms_repo *repo, const vms_index *idx, const char *graph,
                  const char *secret_file, const char *what,
                  vms_progress_fn progress, void *opaque)
{
  struct nbd_server server = { 0 };
  struct nbd_handle *h = NULL;
  uint64_t size = vms_index_size (idx), written = 0;
  unsigned workers = datapath_workers (2);
  int64_t devsize;
  int r = -1;

  if (nbd_server_start_graph (&server, graph, secret_file, what, 1,
                              workers) == -1) {
    vms_set_error (vms_get_errno (), "cannot write %s: %s", what,
                   vms_get_error ());
    return -1;
  }
  h = nbd_create ();
  if (h == NULL || nbd_connect_uri (h, server.uri) == -1 ||
      (devsize = nbd_get_size (h)) == -1) {
    vms_set_error (nbd_get_errno () ? nbd_get_errno () : EIO,
                   "cannot write %s: cannot open it: %s", what,
                   nbd_get_error ());
    goto out;
  }
  if ((uint64_t) devsize < size) {
    vms_set_error (ENOSPC, "cannot write %s: it holds %" PRId64 " bytes, "
                   "fewer than the %" PRIu64 " of the backup; nothing was "
                   "written", what, devsize, size);
    goto out;
  }
  /* The workers' connections take its place (the server takes no more). */
  nbd_close (h);
  h = NULL;
  vms_debug ("writing %s: %u workers", what, workers);
  if (extract_into_nbd (repo, idx, server.uri, what, workers, INTO_RUN_CHUNKS,
                        &written, progress, opaque) == -1) {
    int e = vms_get_errno ();
    CLEANUP_FREE char *msg = strdup (vms_get_error ());
    vms_set_error (e, "%s (%" PRIu64 " of %" PRIu64 " bytes were written: "
                   "it holds part of the backup now)", msg ? msg : "failed",
                   written, size);
    goto out;
  }
  r = 0;

 out:
  if (h)
    nbd_close (h);
  if (server.pid > 0) {
    int e = vms_get_errno ();
    CLEANUP_FREE char *msg = vms_get_error () ? strdup (vms_get_error ()) : NULL;
    if (nbd_server_stop (&server) == -1 && r == 0)
      r = -1;                   /* its error is the stop's */
    else if (msg)
      vms_set_error (e, "%s", msg);
  }
  return r;
}
